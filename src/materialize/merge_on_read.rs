//! `merge` in `merge-on-read` mode: the replaced rows stay in their data files and are marked
//! by Iceberg v2 position delete files; only the incoming rows are written as data.
//!
//! The live data files that can hold an incoming key are found as copy-on-write finds them
//! ([`merge::candidate_files`]); of those, only the key columns are read, in file order, with
//! no delete applied, so the n-th row read is at position n. A row whose key is incoming and
//! whose position no existing delete file already deletes is deleted: one position delete file
//! per touched data file, naming it (`referenced_data_file`, Iceberg's file granularity), sorted
//! by position as the spec asks.
//! A row deleted earlier never comes back and is never deleted twice. The data files and the
//! delete files are committed together as one `overwrite` snapshot ([`Change::RowDelta`]).
//!
//! [`Change::RowDelta`]: crate::lakehouse::commit::Change::RowDelta

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result, bail};
use arrow::array::{ArrayRef, RecordBatch};
use futures::StreamExt;
use iceberg::Runtime;
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::spec::{DataFile, TableMetadata};
use iceberg::table::Table;

use super::{merge, unique};
use crate::lakehouse::commit;
use crate::lakehouse::deletes::{self, DeletedPositions};
use crate::lakehouse::manifests::LiveFile;
use crate::lakehouse::reader;
use crate::lakehouse::writer::{DataWriter, WriteOptions};

/// What a merge-on-read plan wrote.
pub(super) struct Delta {
    /// Data files of the incoming rows.
    pub added: Vec<DataFile>,
    /// `(partition spec id, position delete file)`.
    pub deletes: Vec<(i32, DataFile)>,
    /// The data files the deletes point into.
    pub referenced: Vec<String>,
}

/// Plan and write the merge of `incoming` (unique keys, aligned to `target`) into `table`:
/// every incoming key's live row is deleted, and `rows` (the incoming rows that are not
/// deletions) are written.
pub(super) async fn plan(
    table: &Table,
    target: &TableMetadata,
    incoming: &RecordBatch,
    rows: &RecordBatch,
    unique_key: &[String],
    options: &WriteOptions,
) -> Result<Delta> {
    let keys = unique::key_columns(incoming, unique_key)?;
    let candidates = merge::candidate_files(table, &keys, unique_key).await?;
    let positions = match table.metadata().current_snapshot_id() {
        Some(snapshot) if !candidates.is_empty() => {
            replaced_positions(table, snapshot, &candidates, &keys, unique_key).await?
        }
        _ => Vec::new(),
    };
    let mut written: Vec<DataFile> = Vec::new();
    let result: Result<Delta> = async {
        // One delete file per data file (Iceberg's `write.delete.granularity=file`): a reader
        // of a data file loads only the deletes that name it, so a later merge or scan pays
        // for the deletes of the files it touches, not for every earlier merge in the table.
        let mut deletes = Vec::new();
        let mut referenced = Vec::new();
        // Collected first: a stream holding the mapping closure would not be `Send`.
        let files: Vec<_> = positions
            .iter()
            .map(|(live, hits)| deletes::write_position_deletes(table, live, hits, options.codec))
            .collect();
        let mut writes = futures::stream::iter(files).buffered(DELETE_WRITES);
        let mut failed = None;
        for (live, _) in &positions {
            match writes.next().await.expect("one outcome per file") {
                Ok(file) => {
                    written.push(file.clone());
                    deletes.push((live.spec_id, file));
                    referenced.push(live.file.file_path().to_string());
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let mut writer = DataWriter::for_metadata(table.file_io().clone(), target, options)?;
        let outcome = writer.write(rows).await;
        let added = writer.close().await.context("cannot finish the data files")?;
        written.extend(added.iter().cloned());
        outcome?;
        Ok(Delta {
            added,
            deletes,
            referenced,
        })
    }
    .await;
    if result.is_err() {
        commit::discard_files(table, &written).await;
    }
    result
}

/// Delete files written at once (object stores take each as one request).
const DELETE_WRITES: usize = 8;

/// The live positions in `candidates` whose key is among the incoming `keys`, per candidate
/// that has any.
async fn replaced_positions<'a>(
    table: &Table,
    snapshot: i64,
    candidates: &'a [LiveFile],
    keys: &[ArrayRef],
    unique_key: &[String],
) -> Result<Vec<(&'a LiveFile, Vec<i64>)>> {
    let converter = unique::key_converter(keys)?;
    let encoded = converter.convert_columns(keys)?;
    let incoming: HashSet<&[u8]> = encoded.iter().map(|r| r.data()).collect();
    let wanted: HashSet<String> = candidates.iter().map(|l| l.file.file_path().to_string()).collect();
    let tasks = reader::scan_tasks(table, snapshot, Some(&wanted), Some(unique_key)).await?;
    let mut deleted = DeletedPositions::default();
    let mut found: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for task in tasks {
        let path = task.data_file_path.clone();
        let already = deleted.of(table, &path, &task.deletes).await?.clone();
        let expected = task.record_count;
        // Read the file as written: no deletes, no filter, so row n is at position n.
        let mut raw = task;
        raw.deletes = Vec::new();
        raw.predicate = None;
        let reader = ArrowReaderBuilder::new(table.file_io().clone(), Runtime::try_current()?).build();
        let mut batches = reader.read(futures::stream::iter([Ok(raw)]).boxed())?.stream();
        let mut position: i64 = 0;
        let mut hits = Vec::new();
        while let Some(batch) = batches.next().await {
            let batch = batch.with_context(|| format!("cannot read data file {path} of {}", table.identifier()))?;
            let columns: Vec<ArrayRef> = keys
                .iter()
                .zip(unique_key)
                .map(|(incoming, name)| {
                    let column = batch.column_by_name(name).with_context(|| format!("data file {path} read without key column {name}"))?;
                    Ok(arrow::compute::cast(column, incoming.data_type())?)
                })
                .collect::<Result<_>>()?;
            for (i, row) in converter.convert_columns(&columns)?.iter().enumerate() {
                let pos = position + i as i64;
                if incoming.contains(row.data()) && !already.contains(&pos) {
                    hits.push(pos);
                }
            }
            position += batch.num_rows() as i64;
        }
        if let Some(n) = expected
            && n != position as u64
        {
            bail!("data file {path} of {} has {n} rows but {position} were read; nothing was committed", table.identifier());
        }
        if !hits.is_empty() {
            found.insert(path, hits);
        }
    }
    Ok(candidates
        .iter()
        .filter_map(|live| found.remove(live.file.file_path()).map(|hits| (live, hits)))
        .collect())
}
