//! Orphan files: objects under a table's `data/` and `metadata/` prefixes that no metadata
//! references, last modified before a safety margin. One rule for every warehouse: the table's
//! location is listed and cleaned through an OpenDAL operator ([`location_operator`]: S3 for
//! `s3://`, the local file system for `file://`), with each object's last-modified time.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use iceberg::table::Table;
use opendal::{EntryMode, ErrorKind, Operator};

use crate::lakehouse::catalog::Lakehouse;
use crate::lakehouse::manifests;
use crate::lakehouse::storage::{location_operator, object_uri, split_s3_url};

/// Objects under the table's `data/` and `metadata/` prefixes that nothing references (no
/// snapshot's data files, manifests or manifest list; not the current metadata file nor one in
/// its metadata log; no statistics file) and that were last modified before `now - older_than`.
pub async fn find_orphans(
    lakehouse: &Lakehouse,
    table: &Table,
    older_than: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    Ok(orphans_of(lakehouse, table, older_than, now).await?.1)
}

/// Delete the files [`find_orphans`] finds; returns them.
pub async fn remove_orphans(
    lakehouse: &Lakehouse,
    table: &Table,
    older_than: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let (op, orphans) = orphans_of(lakehouse, table, older_than, now).await?;
    let mut deleted = Vec::new();
    for uri in orphans {
        let path = object_key(&uri, &uri).expect("an orphan lies in the table's storage");
        op.delete(&path)
            .await
            .with_context(|| format!("cannot delete orphan file {uri}"))?;
        deleted.push(uri);
    }
    Ok(deleted)
}

/// The operator over the table's storage and the orphans in it, as URIs, sorted.
async fn orphans_of(
    lakehouse: &Lakehouse,
    table: &Table,
    older_than: Duration,
    now: DateTime<Utc>,
) -> Result<(Operator, Vec<String>)> {
    let location = table.metadata().location().trim_end_matches('/');
    let location = match local_path(location) {
        Some(path) => format!("file://{}", path.display()),
        None => location.to_string(),
    };
    let spec = lakehouse.spec();
    let (op, root) = location_operator(&location, spec.props(), spec.timeouts())?;
    let referenced: HashSet<String> = referenced_files(table)
        .await?
        .iter()
        .filter_map(|uri| object_key(uri, &location))
        .collect();
    let cutoff: SystemTime = SystemTime::from(now)
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut out = Vec::new();
    for dir in ["data", "metadata"] {
        for (path, modified) in list_files(&op, &format!("{root}/{dir}/")).await? {
            if modified < cutoff && !referenced.contains(&path) {
                out.push(object_uri(&location, &path));
            }
        }
    }
    out.sort();
    Ok((op, out))
}

/// Every file the table's metadata references: metadata files (current and logged), manifest
/// lists, manifests, data and delete files (any entry status), statistics files.
async fn referenced_files(table: &Table) -> Result<HashSet<String>> {
    let metadata = table.metadata();
    let mut out: HashSet<String> = HashSet::new();
    if let Some(l) = table.metadata_location() {
        out.insert(l.to_string());
    }
    out.extend(
        metadata
            .metadata_log()
            .iter()
            .map(|l| l.metadata_file.clone()),
    );
    out.extend(
        metadata
            .statistics_iter()
            .map(|s| s.statistics_path.clone()),
    );
    out.extend(
        metadata
            .partition_statistics_iter()
            .map(|s| s.statistics_path.clone()),
    );
    let mut loaded: HashSet<String> = HashSet::new();
    for (_, list, snapshot_manifests) in manifests::all_snapshot_manifests(table).await? {
        out.insert(list);
        let fresh = manifests::unseen(snapshot_manifests, &mut loaded);
        out.extend(fresh.iter().map(|m| m.manifest_path.clone()));
        manifests::for_each_entry(table, &fresh, |_, e| {
            out.insert(e.file_path().to_string());
        })
        .await?;
    }
    Ok(out)
}

/// `uri` as a path of the operator over `location`'s storage ([`location_operator`]), or
/// `None` when it lies elsewhere (another bucket, another scheme).
fn object_key(uri: &str, location: &str) -> Option<String> {
    match (split_s3_url(location), split_s3_url(uri)) {
        (Ok((bucket, _)), Ok((uri_bucket, key))) => {
            (bucket == uri_bucket).then(|| key.trim_start_matches('/').to_string())
        }
        (Err(_), Err(_)) => local_path(uri).map(|p| p.to_string_lossy().trim_start_matches('/').to_string()),
        _ => None,
    }
}

/// `file:///a/b` (or `file:/a/b`, or a plain absolute path) as a normalized local path.
fn local_path(uri: &str) -> Option<PathBuf> {
    let path = uri
        .strip_prefix("file://")
        .or_else(|| uri.strip_prefix("file:"))
        .unwrap_or(uri);
    if !path.starts_with('/') {
        return None;
    }
    // Remove `.` and `..` components and duplicate slashes without touching the filesystem.
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
}

/// Every file under `prefix` (recursively) with its last-modified time.
async fn list_files(op: &Operator, prefix: &str) -> Result<Vec<(String, SystemTime)>> {
    let entries = match op.list_with(prefix).recursive(true).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {prefix}")),
    };
    let mut out = Vec::new();
    for entry in entries {
        let mut meta = entry.metadata().clone();
        if meta.mode() == EntryMode::DIR || entry.path().ends_with('/') {
            continue;
        }
        if meta.last_modified().is_none() {
            meta = op
                .stat(entry.path())
                .await
                .with_context(|| format!("cannot read the modification time of {}", entry.path()))?;
        }
        let modified = meta
            .last_modified()
            .with_context(|| format!("the storage gives no modification time for {}", entry.path()))?;
        out.push((entry.path().to_string(), SystemTime::from(modified)));
    }
    Ok(out)
}
