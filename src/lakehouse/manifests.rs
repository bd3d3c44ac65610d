//! The one walk over a snapshot's manifests: manifest list → manifests → entries.
//!
//! Everything in `lake` that reads manifest contents goes through here: the live files a commit
//! or a rollback compares, compaction planning, merge and range-replacement planning, the files
//! only expired snapshots use, the files any snapshot references (orphan removal), and the files
//! appended since a snapshot (exact incremental reads). Commits that *rewrite* manifests load
//! them through [`load`] too.
//!
//! ```ignore
//! let snapshot = table.metadata().current_snapshot();
//! for live in manifests::live_data_files(&table, snapshot).await? {
//!     println!("{} ({} rows)", live.file.file_path(), live.file.record_count());
//! }
//! ```

use std::collections::HashSet;

use anyhow::{Context, Result};
use iceberg::spec::{
    DataContentType, DataFile, Manifest, ManifestContentType, ManifestEntry, ManifestFile,
    SnapshotRef,
};
use iceberg::table::Table;

/// The manifests in `snapshot`'s manifest list.
pub async fn manifest_files(table: &Table, snapshot: &SnapshotRef) -> Result<Vec<ManifestFile>> {
    Ok(table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .with_context(|| {
            format!(
                "cannot read the manifest list of snapshot {} of {}",
                snapshot.snapshot_id(),
                table.identifier()
            )
        })?
        .consume_entries()
        .into_iter()
        .collect())
}

/// The manifests of the table's current snapshot (none without a snapshot).
pub async fn current_manifest_files(table: &Table) -> Result<Vec<ManifestFile>> {
    match table.metadata().current_snapshot() {
        Some(s) => manifest_files(table, s).await,
        None => Ok(Vec::new()),
    }
}

/// Load one manifest of `table`.
pub async fn load(table: &Table, manifest: &ManifestFile) -> Result<Manifest> {
    manifest
        .load_manifest(table.file_io())
        .await
        .with_context(|| format!("cannot read manifest {} of {}", manifest.manifest_path, table.identifier()))
}

/// Call `visit` with every entry (any status) of `manifests`, in order, with its manifest.
pub async fn for_each_entry(
    table: &Table,
    manifests: &[ManifestFile],
    mut visit: impl FnMut(&ManifestFile, &ManifestEntry),
) -> Result<()> {
    for manifest_file in manifests {
        let manifest = load(table, manifest_file).await?;
        for entry in manifest.entries() {
            visit(manifest_file, entry);
        }
    }
    Ok(())
}

/// A live (added or existing) file of a snapshot, with the manifest it is listed in.
#[derive(Debug, Clone)]
pub struct LiveFile {
    pub file: DataFile,
    /// The partition spec the file was written with.
    pub spec_id: i32,
    /// Whether the manifest lists data or delete files.
    pub content: ManifestContentType,
}

impl LiveFile {
    /// A data file (not a delete file) in a data manifest.
    pub fn is_data(&self) -> bool {
        self.content == ManifestContentType::Data && self.file.content_type() == DataContentType::Data
    }
}

/// Every live file (data and delete files) listed in `manifests`.
pub async fn live_files(table: &Table, manifests: &[ManifestFile]) -> Result<Vec<LiveFile>> {
    let mut out = Vec::new();
    for_each_entry(table, manifests, |m, e| {
        if e.is_alive() {
            out.push(LiveFile {
                file: e.data_file().clone(),
                spec_id: m.partition_spec_id,
                content: m.content,
            });
        }
    })
    .await?;
    Ok(out)
}

/// The live data files of `snapshot` (none without one), sorted by path.
pub async fn live_data_files(table: &Table, snapshot: Option<&SnapshotRef>) -> Result<Vec<LiveFile>> {
    let Some(snapshot) = snapshot else {
        return Ok(Vec::new());
    };
    let manifests: Vec<ManifestFile> = manifest_files(table, snapshot)
        .await?
        .into_iter()
        .filter(|m| m.content == ManifestContentType::Data)
        .collect();
    let mut files: Vec<LiveFile> = live_files(table, &manifests).await?.into_iter().filter(LiveFile::is_data).collect();
    files.sort_by(|a, b| a.file.file_path().cmp(b.file.file_path()));
    Ok(files)
}

/// The manifests of every snapshot of the table, each listed once (first occurrence), with the
/// ids of the snapshots whose lists were read, in metadata order: `(snapshot id, manifest list, manifests)`.
pub async fn all_snapshot_manifests(table: &Table) -> Result<Vec<(i64, String, Vec<ManifestFile>)>> {
    let mut out = Vec::new();
    for s in table.metadata().snapshots() {
        out.push((s.snapshot_id(), s.manifest_list().to_string(), manifest_files(table, s).await?));
    }
    Ok(out)
}

/// `manifests` without the ones whose path is in `seen` (which grows by the rest).
pub fn unseen(manifests: Vec<ManifestFile>, seen: &mut HashSet<String>) -> Vec<ManifestFile> {
    manifests.into_iter().filter(|m| seen.insert(m.manifest_path.clone())).collect()
}
