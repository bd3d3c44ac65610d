//! Reading chosen data files of a table snapshot as Arrow, and finding the files appended
//! between two snapshots (exact incremental reads).

use std::collections::HashSet;

use anyhow::{Result, anyhow};
use arrow::array::RecordBatch;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::Runtime;
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::spec::{ManifestStatus, Operation};
use iceberg::table::Table;

use super::summary::ancestry;

/// Stream the rows of the given data files (paths as recorded in the manifests) at `snapshot_id`,
/// in that snapshot's schema (columns added later read as null). Deletes are applied.
pub async fn read_files(
    table: &Table,
    snapshot_id: i64,
    paths: HashSet<String>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let scan = table.scan().snapshot_id(snapshot_id).build()?;
    let tasks = scan
        .plan_files()
        .await?
        .try_filter(move |t| futures::future::ready(paths.contains(&t.data_file_path)))
        .boxed();
    let reader = ArrowReaderBuilder::new(table.file_io().clone(), Runtime::try_current()?).build();
    let ident = table.identifier().clone();
    Ok(reader
        .read(tasks)?
        .stream()
        .map_err(move |e| anyhow!("cannot read data files of {ident}: {e}"))
        .boxed())
}

/// What happened to a table since an earlier snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangesSince {
    /// Only appends: these data files were added (possibly none).
    Appended(HashSet<String>),
    /// A snapshot did more than append (or the earlier snapshot is no longer in the ancestry):
    /// an incremental read cannot be exact.
    Rewritten { reason: String },
}

/// Data files appended to `table` after `since` up to its current snapshot.
pub async fn changes_since(table: &Table, since: i64) -> Result<ChangesSince> {
    let mut newer = HashSet::new();
    let mut reached = false;
    for snapshot in ancestry(table) {
        if snapshot.snapshot_id() == since {
            reached = true;
            break;
        }
        if snapshot.summary().operation != Operation::Append {
            return Ok(ChangesSince::Rewritten {
                reason: format!(
                    "snapshot {} of {} is an {} (not an append)",
                    snapshot.snapshot_id(),
                    table.identifier(),
                    snapshot.summary().operation.as_str()
                ),
            });
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
    let list = table.manifest_list_reader(current).load().await?;
    for manifest_file in list.entries() {
        if !newer.contains(&manifest_file.added_snapshot_id) {
            continue;
        }
        let manifest = manifest_file.load_manifest(table.file_io()).await?;
        for entry in manifest.entries() {
            if entry.status() == ManifestStatus::Added
                && entry.snapshot_id().is_some_and(|id| newer.contains(&id))
            {
                files.insert(entry.file_path().to_string());
            }
        }
    }
    Ok(ChangesSince::Appended(files))
}
