//! Orphan files: files under a table's folders that no metadata references, older than a
//! safety margin (local warehouses only).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use iceberg::table::Table;

use crate::lakehouse::manifests;

/// Files under the table's `data/` and `metadata/` folders that nothing references (no
/// snapshot's data files, manifests or manifest list; not the current metadata file nor one in
/// its metadata log; no statistics file) and that were last modified before `now - older_than`.
/// Local (`file://`) warehouses only.
pub async fn find_orphans(
    table: &Table,
    older_than: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let location = table
        .metadata()
        .location()
        .trim_end_matches('/')
        .to_string();
    let Some(root) = local_path(&location) else {
        bail!(
            "orphan removal supports local warehouses only for now (table {} is at {location})",
            table.identifier()
        );
    };
    let referenced: HashSet<PathBuf> = referenced_files(table)
        .await?
        .iter()
        .filter_map(|p| local_path(p))
        .collect();
    let cutoff: SystemTime = SystemTime::from(now)
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut files = Vec::new();
    for dir in ["data", "metadata"] {
        list_files(&root.join(dir), &mut files)?;
    }
    let mut out = Vec::new();
    for (path, modified) in files {
        if modified >= cutoff || referenced.contains(&path) {
            continue;
        }
        out.push(format!("file://{}", path.display()));
    }
    out.sort();
    Ok(out)
}

/// Delete the files [`find_orphans`] finds; returns them.
pub async fn remove_orphans(
    table: &Table,
    older_than: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let orphans = find_orphans(table, older_than, now).await?;
    let mut deleted = Vec::new();
    for uri in orphans {
        let path = local_path(&uri).expect("a local path");
        match std::fs::remove_file(&path) {
            Ok(()) => deleted.push(uri),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot delete orphan file {}", path.display()));
            }
        }
    }
    Ok(deleted)
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

/// `file:///a/b` (or `file:/a/b`, or a plain absolute path) as a local path.
pub(super) fn local_path(uri: &str) -> Option<PathBuf> {
    let path = if let Some(rest) = uri.strip_prefix("file://") {
        rest
    } else if let Some(rest) = uri.strip_prefix("file:") {
        rest
    } else if uri.starts_with('/') {
        uri
    } else {
        return None;
    };
    Some(normalize(Path::new(path)))
}

/// Remove `.` and `..` components and duplicate slashes without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn list_files(dir: &Path, out: &mut Vec<(PathBuf, SystemTime)>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let kind = entry.file_type()?;
        let path = normalize(&entry.path());
        if kind.is_dir() {
            list_files(&path, out)?;
        } else if kind.is_file() {
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .with_context(|| {
                    format!("cannot read the modification time of {}", path.display())
                })?;
            out.push((path, modified));
        }
    }
    Ok(())
}
