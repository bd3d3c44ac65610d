//! `merge`: copy-on-write upsert on `unique_key` (one or more columns).
//!
//! The incoming rows are checked (see [`super::unique`]),
//! then the live data files that can hold an incoming key are found from their identity
//! partition values and key column bounds; only those are read. A file holding at least one
//! incoming key is rewritten without the matching rows; files without a match stay untouched.
//! The survivors and the incoming rows (sorted by the key, so files keep narrow key ranges) are
//! written with one writer and committed with the removed files as one `overwrite` snapshot
//! (an `append` when no existing row matched).

use std::cmp::Ordering;
use std::collections::HashSet;

use anyhow::Result;
use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::{sort_to_indices, take};
use iceberg::spec::TableMetadata;
use iceberg::table::Table;

use super::unique::{key_columns, key_converter};
use super::{Rewrite, column_range, comparator_with, partition_point, rewrite_files};
use crate::lakehouse::manifests::{LiveFile, live_data_files};
use crate::lakehouse::writer::WriteOptions;

/// Plan and write the merge of `incoming` (unique keys, aligned to `target`) into `table`:
/// the files holding an incoming key are rewritten without it, and `rows` (the incoming rows
/// that are not deletions) are written.
pub(super) async fn rewrite(
    table: &Table,
    target: &TableMetadata,
    incoming: &RecordBatch,
    rows: &RecordBatch,
    unique_key: &[String],
    options: &WriteOptions,
) -> Result<Rewrite> {
    let keys = key_columns(incoming, unique_key)?;
    let converter = key_converter(&keys)?;
    let encoded = converter.convert_columns(&keys)?;
    let incoming: HashSet<&[u8]> = encoded.iter().map(|r| r.data()).collect();
    let live = candidate_files(table, &keys, unique_key).await?;
    tracing::debug!(table = %table.identifier(), candidates = live.len(), "merge candidates");
    let candidates: Vec<String> = live.iter().map(|l| l.file.file_path().to_string()).collect();

    let (added, removed) = rewrite_files(table, target, options, &candidates, rows, |batch| {
        let existing = converter.convert_columns(&key_columns(batch, unique_key)?)?;
        Ok(existing.iter().map(|r| Some(!incoming.contains(r.data()))).collect())
    })
    .await?;
    let files_rewritten = removed.len();
    let gone: HashSet<&str> = removed.iter().map(String::as_str).collect();
    let bytes_rewritten = live
        .iter()
        .filter(|l| gone.contains(l.file.file_path()))
        .map(|l| l.file.file_size_in_bytes())
        .sum();
    Ok(Rewrite {
        removed,
        added,
        files_rewritten,
        bytes_rewritten,
    })
}

/// The live data files that may hold one of the incoming `keys`: for every key column,
/// some incoming key lies within the file's [lower, upper] (from an identity partition value or
/// the column bounds; unknown bounds do not exclude a file).
pub(super) async fn candidate_files(
    table: &Table,
    keys: &[ArrayRef],
    unique_key: &[String],
) -> Result<Vec<LiveFile>> {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    let mut field_ids = Vec::with_capacity(unique_key.len());
    for name in unique_key {
        match schema.field_by_name(name) {
            Some(f) => field_ids.push(f.id),
            // A key column the table does not have yet: every existing row reads NULL there,
            // and no incoming key is NULL.
            None => return Ok(Vec::new()),
        }
    }
    let files = live_data_files(table, table.metadata().current_snapshot()).await?;
    if files.is_empty() {
        return Ok(Vec::new());
    }
    // Incoming keys sorted by the first key column: a file's [lower, upper] on that column is
    // a range of positions found by binary search.
    let order = sort_to_indices(&keys[0], None, None)?;
    let sorted: Vec<ArrayRef> = keys
        .iter()
        .map(|k| take(k.as_ref(), &order, None))
        .collect::<Result<_, _>>()?;
    let n = sorted[0].len();

    let mut candidates = Vec::new();
    for live in files {
        let ranges: Vec<_> = field_ids
            .iter()
            .zip(&sorted)
            .map(|(id, k)| column_range(metadata, &live, *id, k.data_type()))
            .collect();
        if ranges.iter().any(|r| r.empty) {
            continue;
        }
        let first = &ranges[0];
        let start = match first
            .lower
            .as_ref()
            .and_then(|lo| comparator_with(sorted[0].as_ref(), lo))
        {
            Some(c) => partition_point(n, |i| c(i) == Ordering::Less),
            None => 0,
        };
        let end = match first
            .upper
            .as_ref()
            .and_then(|hi| comparator_with(sorted[0].as_ref(), hi))
        {
            Some(c) => partition_point(n, |i| c(i) != Ordering::Greater),
            None => n,
        };
        if start >= end {
            continue;
        }
        // Other key columns: some key in [start, end) must also be within their bounds.
        let mut checks = Vec::new();
        for (j, r) in ranges.iter().enumerate().skip(1) {
            if let Some(c) = r
                .lower
                .as_ref()
                .and_then(|lo| comparator_with(sorted[j].as_ref(), lo))
            {
                checks.push((c, Ordering::Less));
            }
            if let Some(c) = r
                .upper
                .as_ref()
                .and_then(|hi| comparator_with(sorted[j].as_ref(), hi))
            {
                checks.push((c, Ordering::Greater));
            }
        }
        let hit = checks.is_empty()
            || (start..end).any(|i| checks.iter().all(|(c, outside)| c(i) != *outside));
        if hit {
            candidates.push(live);
        }
    }
    Ok(candidates)
}
