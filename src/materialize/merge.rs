//! `merge`: copy-on-write upsert on `unique_key` (one or more columns).
//!
//! The incoming rows are checked (no NULL key, no duplicate key unless `dedupe_by` picks one),
//! then the live data files that can hold an incoming key are found from their identity
//! partition values and key column bounds; only those are read. A file holding at least one
//! incoming key is rewritten without the matching rows; files without a match stay untouched.
//! The survivors and the incoming rows (sorted by the key, so files keep narrow key ranges) are
//! written with one writer and committed with the removed files as one `overwrite` snapshot
//! (an `append` when no existing row matched).

use std::cmp::Ordering;
use std::collections::HashSet;

use anyhow::{Result, anyhow, bail};
use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{sort_to_indices, take, take_record_batch};
use arrow::datatypes::Schema as ArrowSchema;
use arrow::row::{RowConverter, Rows, SortField};
use rayon::slice::ParallelSliceMut;
use arrow::util::display::array_value_to_string;
use iceberg::TableIdent;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;

use super::{Rewrite, column_range, comparator_with, partition_point, rewrite_files};
use crate::lakehouse::manifests::{LiveFile, live_data_files};
use crate::lakehouse::writer::WriteOptions;

/// The key (and `dedupe_by`) columns must be in the model's output.
pub(super) fn check_columns(
    ident: &TableIdent,
    output: &ArrowSchema,
    unique_key: &[String],
    dedupe_by: Option<&str>,
) -> Result<()> {
    if unique_key.is_empty() {
        bail!("merge into {ident}: unique_key is empty");
    }
    for k in unique_key {
        if output.field_with_name(k).is_err() {
            bail!(
                "merge into {ident}: unique_key column {k} is not in the model's output (columns: {})",
                column_list(output)
            );
        }
    }
    if let Some(d) = dedupe_by
        && output.field_with_name(d).is_err()
    {
        bail!(
            "merge into {ident}: dedupe_by column {d} is not in the model's output (columns: {})",
            column_list(output)
        );
    }
    Ok(())
}

fn column_list(schema: &ArrowSchema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn key_columns(rows: &RecordBatch, unique_key: &[String]) -> Result<Vec<ArrayRef>> {
    unique_key
        .iter()
        .map(|k| {
            rows.column_by_name(k)
                .cloned()
                .ok_or_else(|| anyhow!("the rows have no key column {k}"))
        })
        .collect()
}

pub(super) fn key_converter(keys: &[ArrayRef]) -> Result<RowConverter> {
    Ok(RowConverter::new(
        keys.iter()
            .map(|k| SortField::new(k.data_type().clone()))
            .collect(),
    )?)
}

fn render_key(keys: &[ArrayRef], row: usize) -> String {
    keys.iter()
        .map(|k| array_value_to_string(k, row).unwrap_or_else(|_| "?".into()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reject NULL keys; reject duplicate keys, or with `dedupe_by` keep per key the row with the
/// greatest `dedupe_by` value (NULL lowest; ties broken by the whole row, so the choice does
/// not depend on the order the rows arrived in). The rows come back in `unique_key` order:
/// written so, each data file holds a narrow key range, and a later merge of a few keys finds
/// few files whose bounds can hold them (and rewrites only those).
pub(super) fn unique_and_sorted(
    ident: &TableIdent,
    rows: RecordBatch,
    unique_key: &[String],
    dedupe_by: Option<&str>,
) -> Result<RecordBatch> {
    let keys = key_columns(&rows, unique_key)?;
    let key_list = unique_key.join(", ");
    for (name, column) in unique_key.iter().zip(&keys) {
        if column.logical_null_count() > 0 {
            if unique_key.len() == 1 {
                bail!("merge into {ident}: unique_key ({key_list}) is NULL in an incoming row");
            }
            bail!(
                "merge into {ident}: unique_key ({key_list}) is NULL in an incoming row (column {name})"
            );
        }
    }
    // Row-encoded keys compare as the keys do: one sort (on every core) orders the rows and
    // puts the rows of a key side by side, in arrival order.
    let encoded = key_converter(&keys)?.convert_columns(&keys)?;
    let key = |i: u32| encoded.row(i as usize);
    let mut order: Vec<u32> = (0..rows.num_rows() as u32).collect();
    order.par_sort_unstable_by(|&a, &b| key(a).cmp(&key(b)).then(a.cmp(&b)));

    let better = dedupe_order(&rows, dedupe_by)?;
    let mut kept: Vec<u32> = Vec::with_capacity(order.len());
    // The duplicated key that arrived first: its first row and its number of rows.
    let mut duplicated: Option<(u32, usize)> = None;
    for group in order.chunk_by(|&a, &b| key(a) == key(b)) {
        let chosen = match &better {
            _ if group.len() == 1 => group[0],
            None => {
                if duplicated.is_none_or(|(first, _)| group[0] < first) {
                    duplicated = Some((group[0], group.len()));
                }
                continue;
            }
            Some(better) => group
                .iter()
                .copied()
                .reduce(|chosen, i| if better(i as usize, chosen as usize) == Ordering::Greater { i } else { chosen })
                .expect("groups are not empty"),
        };
        kept.push(chosen);
    }
    if let Some((first, count)) = duplicated {
        bail!(
            "merge into {ident}: key ({key_list})=({}) appears {count} times in the incoming rows; set dedupe_by to keep one",
            render_key(&keys, first as usize)
        );
    }
    if kept.iter().enumerate().all(|(at, &i)| at == i as usize) {
        return Ok(rows);
    }
    Ok(take_record_batch(&rows, &UInt32Array::from(kept))?)
}

type RowOrder = Box<dyn Fn(usize, usize) -> Ordering>;

/// How two rows with the same key rank under `dedupe_by`: by its value, then by the whole row.
fn dedupe_order(rows: &RecordBatch, dedupe_by: Option<&str>) -> Result<Option<RowOrder>> {
    let Some(column) = dedupe_by else {
        return Ok(None);
    };
    let values = rows
        .column_by_name(column)
        .cloned()
        .ok_or_else(|| anyhow!("the rows have no dedupe_by column {column}"))?;
    let by_value: Rows = RowConverter::new(vec![SortField::new(values.data_type().clone())])?
        .convert_columns(&[values])?;
    let fields: Vec<SortField> = rows
        .columns()
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let whole: Option<Rows> = if RowConverter::supports_fields(&fields) {
        Some(RowConverter::new(fields)?.convert_columns(rows.columns())?)
    } else {
        None
    };
    Ok(Some(Box::new(move |a, b| {
        by_value
            .row(a)
            .cmp(&by_value.row(b))
            .then_with(|| match &whole {
                Some(w) => w.row(a).cmp(&w.row(b)),
                None => a.cmp(&b),
            })
    })))
}

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

/// The whole output, checked and deduplicated on `unique_key` as a merge does, as one batch.
pub(super) async fn unique_rows<'a>(
    ident: &TableIdent,
    schema: &arrow::datatypes::SchemaRef,
    batches: &mut futures::stream::BoxStream<'a, Result<RecordBatch>>,
    unique_key: &[String],
    dedupe_by: Option<&str>,
) -> Result<futures::stream::BoxStream<'a, Result<RecordBatch>>> {
    use anyhow::Context;
    use futures::StreamExt;
    let mut collected = Vec::new();
    while let Some(batch) = batches.next().await {
        collected.push(batch?);
    }
    let output_schema = collected.first().map(|b| b.schema()).unwrap_or_else(|| schema.clone());
    check_columns(ident, &output_schema, unique_key, dedupe_by)?;
    let rows = arrow::compute::concat_batches(&output_schema, &collected).context("cannot collect the model's output")?;
    let rows = unique_and_sorted(ident, rows, unique_key, dedupe_by)?;
    Ok(futures::stream::iter([Ok(rows)]).boxed())
}

