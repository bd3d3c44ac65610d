//! Reading chosen data files of a table snapshot as Arrow ([`FileReader`], the one reader of
//! data files that `lake` itself rewrites: compaction, merge, range replacement), and finding the files appended
//! between two snapshots (exact incremental reads).

use std::collections::HashSet;

use anyhow::{Context, Result, anyhow, bail};
use arrow::array::RecordBatch;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::Runtime;
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::scan::FileScanTask;
use iceberg::spec::{DataContentType, ManifestStatus, Operation, SnapshotRef};
use iceberg::table::Table;

use super::manifests;
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
        let mut tasks = Vec::new();
        let snapshot_id = snapshot_id.or_else(|| table.metadata().current_snapshot_id());
        if let (Some(snapshot), false) = (snapshot_id, paths.is_empty()) {
            let scan = table.scan().snapshot_id(snapshot).build()?;
            let mut stream = scan.plan_files().await?;
            while let Some(task) = stream.try_next().await? {
                if paths.contains(&task.data_file_path) {
                    tasks.push(task);
                }
            }
        }
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
