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
use iceberg::spec::{DataFile, Struct, TableMetadata};
use iceberg::table::Table;

use super::merge;
use crate::lakehouse::commit;
use crate::lakehouse::deletes::{self, DeletedPositions, Positions};
use crate::lakehouse::manifests::LiveFile;
use crate::lakehouse::reader;
use crate::lakehouse::writer::{Codec, DataWriter, WriteOptions};

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
    let keys = merge::key_columns(incoming, unique_key)?;
    let candidates = merge::candidate_files(table, &keys, unique_key).await?;
    let positions = match table.metadata().current_snapshot_id() {
        Some(snapshot) if !candidates.is_empty() => {
            replaced_positions(table, snapshot, &candidates, &keys, unique_key).await?
        }
        _ => BTreeMap::new(),
    };
    let mut written: Vec<DataFile> = Vec::new();
    let result: Result<Delta> = async {
        // One delete file per data file (Iceberg's `write.delete.granularity=file`): a reader
        // of a data file loads only the deletes that name it, so a later merge or scan pays
        // for the deletes of the files it touches, not for every earlier merge in the table.
        let mut deletes = Vec::new();
        let mut referenced = Vec::new();
        let mut singles = Vec::new();
        for ((spec_id, _), (partition, by_file)) in positions {
            for (path, hits) in by_file {
                singles.push((spec_id, partition.clone(), Positions::from([(path, hits)])));
            }
        }
        let codec = options.codec;
        let mut writes = futures::stream::iter(
            singles.into_iter().map(|(spec_id, partition, single)| write_deletes(table, spec_id, partition, single, codec)),
        )
        .buffer_unordered(DELETE_WRITES);
        let mut failed = None;
        while let Some((spec_id, single, file)) = writes.next().await {
            match file {
                Ok(file) => {
                    written.push(file.clone());
                    deletes.push((spec_id, file));
                    referenced.extend(single.into_keys());
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

/// Write one position delete file; returns what it deletes beside the outcome.
async fn write_deletes(
    table: &Table,
    spec_id: i32,
    partition: Struct,
    single: Positions,
    codec: Codec,
) -> (i32, Positions, Result<DataFile>) {
    let file = deletes::write_position_deletes(table, spec_id, &partition, &single, codec).await;
    (spec_id, single, file)
}

/// Delete files written at once (object stores take each as one request).
const DELETE_WRITES: usize = 8;

/// Per (spec id, partition text): the partition and the positions to delete per data file.
type Grouped = BTreeMap<(i32, String), (Struct, Positions)>;

/// The live positions in `candidates` whose key is among the incoming `keys`.
async fn replaced_positions(
    table: &Table,
    snapshot: i64,
    candidates: &[LiveFile],
    keys: &[ArrayRef],
    unique_key: &[String],
) -> Result<Grouped> {
    let converter = merge::key_converter(keys)?;
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
    let mut grouped: Grouped = BTreeMap::new();
    for live in candidates {
        if let Some(hits) = found.remove(live.file.file_path()) {
            let partition = live.file.partition();
            grouped
                .entry((live.spec_id, format!("{partition:?}")))
                .or_insert_with(|| (partition.clone(), Positions::new()))
                .1
                .insert(live.file.file_path().to_string(), hits);
        }
    }
    Ok(grouped)
}
