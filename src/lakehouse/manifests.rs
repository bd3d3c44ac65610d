//! The one walk over a snapshot's manifests: manifest list → manifests → entries.
//!
//! Everything in `lake` that reads manifest contents goes through here: the live files a commit
//! or a rollback compares, compaction planning, merge and range-replacement planning, the files
//! only expired snapshots use, the files any snapshot references (orphan removal), and the files
//! appended since a snapshot (exact incremental reads). Commits that *rewrite* manifests load
//! them through [`load`] too.
//!
//! Decoded manifests are kept in a small per-process cache by path: a manifest file is never
//! rewritten in place (every commit writes new paths), so a merge that plans on a snapshot's
//! manifests and then checks them again at commit decodes each one once. Manifests are
//! fetched and decoded on their own tasks, side by side.
//!
//! ```ignore
//! let snapshot = table.metadata().current_snapshot();
//! for live in manifests::live_data_files(&table, snapshot).await? {
//!     println!("{} ({} rows)", live.file.file_path(), live.file.record_count());
//! }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};

use anyhow::{Context, Result};
use futures::stream::{self, Stream, StreamExt, TryStreamExt};
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

/// Load one manifest of `table` (from the cache when this process decoded it already).
pub async fn load(table: &Table, manifest: &ManifestFile) -> Result<Arc<Manifest>> {
    let key = CacheKey::of(manifest);
    if let Some(hit) = CACHE.lock().expect("manifest cache").get(&key) {
        return Ok(hit);
    }
    let loaded = Arc::new(
        manifest
            .load_manifest(table.file_io())
            .await
            .with_context(|| format!("cannot read manifest {} of {}", manifest.manifest_path, table.identifier()))?,
    );
    CACHE.lock().expect("manifest cache").put(key, loaded.clone());
    Ok(loaded)
}

/// `manifests` loaded in order, each fetched and decoded on its own task (decoding is
/// CPU-bound: a 1,000-entry manifest takes tens of milliseconds), a few at a time.
fn loading<'a>(table: &Table, manifests: &'a [ManifestFile]) -> impl Stream<Item = Result<Arc<Manifest>>> + 'a {
    let window = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let table = table.clone();
    stream::iter(manifests)
        .map(move |m| {
            let (table, m) = (table.clone(), m.clone());
            tokio::spawn(async move { load(&table, &m).await })
        })
        .buffered(window)
        .map(|joined| joined.context("a manifest read task failed")?)
}

/// Load `manifests` (see [`loading`]), in the order given.
pub async fn load_all(table: &Table, manifests: &[ManifestFile]) -> Result<Vec<Arc<Manifest>>> {
    loading(table, manifests).try_collect().await
}

/// Call `visit` with every entry (any status) of `manifests`, in order, with its manifest.
pub async fn for_each_entry(
    table: &Table,
    manifests: &[ManifestFile],
    mut visit: impl FnMut(&ManifestFile, &ManifestEntry),
) -> Result<()> {
    let mut loaded = std::pin::pin!(loading(table, manifests));
    for manifest_file in manifests {
        let manifest = loaded.next().await.expect("one manifest per file")?;
        for entry in manifest.entries() {
            visit(manifest_file, entry);
        }
    }
    Ok(())
}

/// What identifies a decoded manifest: its path, with its length and adding snapshot as a
/// guard against a path written twice (a failed commit's file rewritten by a later one).
#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    path: String,
    length: i64,
    added_snapshot_id: i64,
    sequence_number: i64,
}

impl CacheKey {
    fn of(m: &ManifestFile) -> Self {
        CacheKey {
            path: m.manifest_path.clone(),
            length: m.manifest_length,
            added_snapshot_id: m.added_snapshot_id,
            // Inherited by ADDED entries on load: part of what a decoded manifest holds.
            sequence_number: m.sequence_number,
        }
    }
}

/// At most this many manifest entries stay decoded (oldest manifests leave first).
const CACHE_ENTRIES: usize = 200_000;

static CACHE: LazyLock<Mutex<ManifestCache>> = LazyLock::new(|| Mutex::new(ManifestCache::default()));

#[derive(Default)]
struct ManifestCache {
    by_key: HashMap<CacheKey, Arc<Manifest>>,
    order: VecDeque<CacheKey>,
    entries: usize,
}

impl ManifestCache {
    fn get(&self, key: &CacheKey) -> Option<Arc<Manifest>> {
        self.by_key.get(key).cloned()
    }

    fn put(&mut self, key: CacheKey, manifest: Arc<Manifest>) {
        let n = manifest.entries().len();
        if n > CACHE_ENTRIES || self.by_key.contains_key(&key) {
            return;
        }
        while self.entries + n > CACHE_ENTRIES {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(m) = self.by_key.remove(&old) {
                self.entries -= m.entries().len();
            }
        }
        self.entries += n;
        self.order.push_back(key.clone());
        self.by_key.insert(key, manifest);
    }
}

/// A live (added or existing) file of a snapshot, with the manifest it is listed in.
#[derive(Debug, Clone)]
pub struct LiveFile {
    pub file: DataFile,
    /// The partition spec the file was written with.
    pub spec_id: i32,
    /// Whether the manifest lists data or delete files.
    pub content: ManifestContentType,
    /// The entry's data sequence number (inherited from its manifest when it was added).
    pub sequence_number: Option<i64>,
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
                sequence_number: e.sequence_number(),
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
