//! Reading chosen data files of a table snapshot as Arrow ([`FileReader`], the one reader of
//! data files that `lake` itself rewrites: compaction, merge, range replacement), planned by
//! [`scan_tasks`] from lake's manifest reads (with [`DeleteIndex`], the one rule of which delete
//! files apply to a data file), and finding the files appended between two snapshots (exact
//! incremental reads).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use arrow::array::RecordBatch;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::Runtime;
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::scan::{FileScanTask, FileScanTaskDeleteFile};
use iceberg::spec::{
    DEFAULT_SCHEMA_NAME_MAPPING, DataContentType, ManifestStatus, NameMapping, Operation, SnapshotRef, Struct, TableMetadata,
};
use iceberg::table::Table;

use super::manifests::{self, LiveFile};
use super::summary::{UPSERT_KEY, ancestry};

/// Reads chosen data files of one table snapshot as Arrow (deletes applied), in that
/// snapshot's schema (columns added later read as null): one file at a time with
/// [`FileReader::read`], or all of them as one stream with [`FileReader::into_stream`].
pub struct FileReader {
    table: Table,
    /// Scan tasks of the chosen files, in planning order.
    tasks: Vec<FileScanTask>,
}

impl FileReader {
    /// Plan the reads of `paths` (as recorded in the manifests) at `snapshot_id`, or at the
    /// current snapshot when `None` (no files without a snapshot).
    pub async fn new(table: &Table, snapshot_id: Option<i64>, paths: &HashSet<String>) -> Result<Self> {
        let snapshot_id = snapshot_id.or_else(|| table.metadata().current_snapshot_id());
        let tasks = match (snapshot_id, paths.is_empty()) {
            (Some(snapshot), false) => scan_tasks(table, snapshot, Some(paths), None).await?,
            _ => Vec::new(),
        };
        Ok(FileReader {
            table: table.clone(),
            tasks,
        })
    }

    fn reader(&self) -> Result<iceberg::arrow::ArrowReader> {
        Ok(ArrowReaderBuilder::new(self.table.file_io().clone(), Runtime::try_current()?).build())
    }

    /// The rows of one data file (each file can be read once).
    pub async fn read(&mut self, path: &str) -> Result<Vec<RecordBatch>> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tasks)
            .into_iter()
            .partition(|t| t.data_file_path == path);
        self.tasks = rest;
        if mine.is_empty() {
            bail!("data file {path} is not in the snapshot read of {}", self.table.identifier());
        }
        let stream = futures::stream::iter(mine.into_iter().map(Ok)).boxed();
        self.reader()?
            .read(stream)?
            .stream()
            .try_collect()
            .await
            .with_context(|| format!("cannot read data file {path} of {}", self.table.identifier()))
    }

    /// The rows of every chosen file, as one stream.
    pub fn into_stream(self) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let reader = self.reader()?;
        let ident = self.table.identifier().clone();
        let tasks = futures::stream::iter(self.tasks.into_iter().map(Ok)).boxed();
        Ok(reader
            .read(tasks)?
            .stream()
            .map_err(move |e| anyhow!("cannot read data files of {ident}: {e}"))
            .boxed())
    }
}

/// Scan tasks for the live data files of `snapshot_id` (those at `paths` when given), planned
/// from the manifests (decoded once per process, side by side, see [`manifests`]). Each task
/// reads `columns` (every column when `None`) in the snapshot's schema and carries the delete
/// files that apply to its file, by the spec's rules (see [`DeleteIndex`]).
pub async fn scan_tasks(
    table: &Table,
    snapshot_id: i64,
    paths: Option<&HashSet<String>>,
    columns: Option<&[String]>,
) -> Result<Vec<FileScanTask>> {
    let metadata = table.metadata();
    let ident = table.identifier();
    let snapshot = metadata
        .snapshot_by_id(snapshot_id)
        .with_context(|| format!("table {ident} has no snapshot {snapshot_id}"))?;
    let schema = snapshot.schema(metadata)?;
    let field_ids: Vec<i32> = match columns {
        Some(names) => names
            .iter()
            .map(|n| schema.field_id_by_name(n).with_context(|| format!("table {ident} has no column {n}")))
            .collect::<Result<_>>()?,
        None => schema.as_struct().fields().iter().map(|f| f.id).collect(),
    };
    let name_mapping = match metadata.properties().get(DEFAULT_SCHEMA_NAME_MAPPING) {
        Some(raw) => Some(Arc::new(
            serde_json::from_str::<NameMapping>(raw)
                .with_context(|| format!("table {ident}: property {DEFAULT_SCHEMA_NAME_MAPPING} is not a name mapping"))?,
        )),
        None => None,
    };
    let listed = manifests::manifest_files(table, snapshot).await?;
    let (data, deletes): (Vec<LiveFile>, Vec<LiveFile>) =
        manifests::live_files(table, &listed).await?.into_iter().partition(LiveFile::is_data);
    let index = DeleteIndex::new(metadata, deletes);
    Ok(data
        .into_iter()
        .filter(|f| paths.is_none_or(|p| p.contains(f.file.file_path())))
        .map(|f| {
            FileScanTask::builder()
                .with_file_size_in_bytes(f.file.file_size_in_bytes())
                .with_start(0)
                .with_length(f.file.file_size_in_bytes())
                .with_record_count(Some(f.file.record_count()))
                .with_data_file_path(f.file.file_path().to_string())
                .with_data_file_format(f.file.file_format())
                .with_schema(schema.clone())
                .with_project_field_ids(field_ids.clone())
                .with_deletes(index.applying_to(&f))
                .with_partition(Some(f.file.partition().clone()))
                .with_name_mapping(name_mapping.clone())
                .with_case_sensitive(true)
                .build()
        })
        .collect())
}

/// Which live delete files apply to a data file (Iceberg spec, "Scan Planning"): a position
/// delete file when it was written at or after the data file (data sequence numbers), in the
/// same partition of the same spec, and names that file when it references one; an equality
/// delete file when it was written after the data file, in the same partition of the same spec
/// or in an unpartitioned spec (a global delete).
struct DeleteIndex {
    by_partition: HashMap<(i32, Struct), Vec<LiveFile>>,
    global: Vec<LiveFile>,
}

impl DeleteIndex {
    fn new(metadata: &TableMetadata, deletes: Vec<LiveFile>) -> Self {
        let mut index = DeleteIndex { by_partition: HashMap::new(), global: Vec::new() };
        for d in deletes {
            let unpartitioned = metadata.partition_spec_by_id(d.spec_id).is_none_or(|s| s.is_unpartitioned());
            if unpartitioned && d.file.content_type() == DataContentType::EqualityDeletes {
                index.global.push(d);
            } else {
                index.by_partition.entry((d.spec_id, d.file.partition().clone())).or_default().push(d);
            }
        }
        index
    }

    /// The delete files that apply to `data` (a live data file).
    fn applying_to(&self, data: &LiveFile) -> Vec<FileScanTaskDeleteFile> {
        let same_partition = self.by_partition.get(&(data.spec_id, data.file.partition().clone()));
        self.global
            .iter()
            .chain(same_partition.into_iter().flatten())
            .filter(|d| applies(d, data))
            .map(|d| {
                FileScanTaskDeleteFile::builder()
                    .with_file_path(d.file.file_path().to_string())
                    .with_file_size_in_bytes(d.file.file_size_in_bytes())
                    .with_file_type(d.file.content_type())
                    .with_partition_spec_id(d.spec_id)
                    .with_equality_ids(d.file.equality_ids())
                    .build()
            })
            .collect()
    }
}

/// Whether delete file `d` (already known to share `data`'s partition, or to be global) applies.
fn applies(d: &LiveFile, data: &LiveFile) -> bool {
    let (Some(delete_seq), Some(data_seq)) = (d.sequence_number, data.sequence_number) else {
        return true;
    };
    match d.file.content_type() {
        DataContentType::PositionDeletes => {
            delete_seq >= data_seq && d.file.referenced_data_file().is_none_or(|p| p == data.file.file_path())
        }
        DataContentType::EqualityDeletes => delete_seq > data_seq,
        DataContentType::Data => false,
    }
}

/// Stream the rows of the given data files (paths as recorded in the manifests) at `snapshot_id`,
/// in that snapshot's schema (columns added later read as null). Deletes are applied.
pub async fn read_files(
    table: &Table,
    snapshot_id: i64,
    paths: HashSet<String>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    FileReader::new(table, Some(snapshot_id), &paths).await?.into_stream()
}

/// What happened to a table since an earlier snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangesSince {
    /// These live data files were added since (possibly none): every row added or changed since
    /// is in them (see [`changes_since`] for what else they may hold).
    Appended(HashSet<String>),
    /// A snapshot did more than the reader can follow (or the earlier snapshot is no longer in
    /// the ancestry): an incremental read cannot be exact.
    Rewritten { reason: String },
}

/// Which snapshots an exact incremental read may follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Appends only: the files added hold exactly the new rows (a consumer that appends).
    Appends,
    /// Also compactions (`replace`, same rows) and `lake` merges (upserts, [`summary::UPSERT_KEY`]):
    /// the files added hold every new and changed row, plus, after a copy-on-write merge or a
    /// compaction, unchanged rows of the rewritten files. Right for a consumer that merges by
    /// key, where reading a row twice changes nothing.
    Upserts,
}

/// The live data files of `table`'s current snapshot that were added after `since`, provided
/// every snapshot since is one `follow` allows.
pub async fn changes_since(table: &Table, since: i64, follow: Follow) -> Result<ChangesSince> {
    let mut newer = HashSet::new();
    let mut reached = false;
    for snapshot in ancestry(table) {
        if snapshot.snapshot_id() == since {
            reached = true;
            break;
        }
        if let Some(reason) = not_followed(table, &snapshot, follow) {
            return Ok(ChangesSince::Rewritten { reason });
        }
        newer.insert(snapshot.snapshot_id());
    }
    if !reached {
        return Ok(ChangesSince::Rewritten {
            reason: format!(
                "snapshot {since} is no longer in the history of {} (rolled back or expired)",
                table.identifier()
            ),
        });
    }
    let mut files = HashSet::new();
    if newer.is_empty() {
        return Ok(ChangesSince::Appended(files));
    }
    let current = table
        .metadata()
        .current_snapshot()
        .ok_or_else(|| anyhow!("table {} has no snapshot", table.identifier()))?;
    // A manifest written before `since` holds only files added before it; a later one may carry
    // files added since as EXISTING entries (a rewritten manifest keeps the adding snapshot id).
    let manifests: Vec<_> = manifests::manifest_files(table, current)
        .await?
        .into_iter()
        .filter(|m| newer.contains(&m.added_snapshot_id))
        .collect();
    manifests::for_each_entry(table, &manifests, |_, entry| {
        if entry.status() != ManifestStatus::Deleted
            && entry.content_type() == DataContentType::Data
            && entry.snapshot_id().is_some_and(|id| newer.contains(&id))
        {
            files.insert(entry.file_path().to_string());
        }
    })
    .await?;
    Ok(ChangesSince::Appended(files))
}

/// Why an exact read cannot follow `snapshot`, or `None` when it can.
fn not_followed(table: &Table, snapshot: &SnapshotRef, follow: Follow) -> Option<String> {
    let summary = snapshot.summary();
    let followed = match (&summary.operation, follow) {
        (Operation::Append, _) => true,
        (Operation::Replace, Follow::Upserts) => true,
        (Operation::Overwrite, Follow::Upserts) => summary.additional_properties.contains_key(UPSERT_KEY),
        _ => false,
    };
    (!followed).then(|| {
        let what = match follow {
            Follow::Appends => "not an append; only a model that merges by key reads through merges and compactions",
            Follow::Upserts => "not an append, a compaction or a merge",
        };
        format!(
            "snapshot {} of {} is an {} ({what})",
            snapshot.snapshot_id(),
            table.identifier(),
            summary.operation.as_str()
        )
    })
}
