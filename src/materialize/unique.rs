//! Unique keys of a model's output: the `unique_key` (and `dedupe_by`) checks that `merge` and
//! a full rebuild of a merge model share, and the order the kept rows are written in.
//!
//! The incoming rows are checked (no NULL key, no duplicate key unless `dedupe_by` picks one)
//! and come back sorted by the key: written so, each data file holds a narrow key range, and a
//! later merge of a few keys finds few files whose bounds can hold them. The rows may arrive
//! as many batches; they are ordered where they are and copied once, in output-sized chunks,
//! never gathered into one batch first.

use std::cmp::Ordering;

use anyhow::{Result, anyhow, bail};
use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{interleave_record_batch, take_record_batch};
use arrow::datatypes::Schema as ArrowSchema;
use arrow::row::{RowConverter, Rows, SortField};
use arrow::util::display::array_value_to_string;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::TableIdent;
use rayon::slice::ParallelSliceMut;

/// Rows per batch when sorted rows are copied out of many batches.
const OUTPUT_ROWS: usize = 65_536;

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
    columns(rows, unique_key, "key")
}

fn columns(rows: &RecordBatch, names: &[String], what: &str) -> Result<Vec<ArrayRef>> {
    names
        .iter()
        .map(|k| {
            rows.column_by_name(k)
                .cloned()
                .ok_or_else(|| anyhow!("the rows have no {what} column {k}"))
        })
        .collect()
}

pub(super) fn key_converter(keys: &[ArrayRef]) -> Result<RowConverter> {
    converter(keys.iter().map(|k| k.data_type().clone()))
}

fn converter(types: impl Iterator<Item = arrow::datatypes::DataType>) -> Result<RowConverter> {
    Ok(RowConverter::new(types.map(SortField::new).collect())?)
}

fn render_key(keys: &[ArrayRef], row: usize) -> String {
    keys.iter()
        .map(|k| array_value_to_string(k, row).unwrap_or_else(|_| "?".into()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `names`' columns of every batch, row-encoded into one `Rows` (row `i` of batch `b` at
/// `starts[b] + i`).
fn encode(batches: &[RecordBatch], names: &[String], what: &str) -> Result<Rows> {
    let first = columns(&batches[0], names, what)?;
    let converter = key_converter(&first)?;
    let total = batches.iter().map(RecordBatch::num_rows).sum();
    let mut rows = converter.empty_rows(total, 0);
    for batch in batches {
        converter.append(&mut rows, &columns(batch, names, what)?)?;
    }
    Ok(rows)
}

/// Where each batch starts in the rows of all of them.
fn starts(batches: &[RecordBatch]) -> Vec<usize> {
    batches
        .iter()
        .scan(0, |at, b| {
            let start = *at;
            *at += b.num_rows();
            Some(start)
        })
        .collect()
}

/// Batch and row of the `global`th row.
fn locate(starts: &[usize], global: usize) -> (usize, usize) {
    let batch = starts.partition_point(|&s| s <= global) - 1;
    (batch, global - starts[batch])
}

/// Check `batches` (non-empty, one schema holding the key columns) and return the rows to keep,
/// as indexes into all rows in arrival order, sorted by `unique_key`. NULL keys are rejected;
/// so are duplicate keys, unless `dedupe_by` keeps per key the row with the greatest
/// `dedupe_by` value (NULL lowest; ties broken by the whole row, so the choice does not depend
/// on the order the rows arrived in).
fn unique_order(
    ident: &TableIdent,
    batches: &[RecordBatch],
    unique_key: &[String],
    dedupe_by: Option<&str>,
) -> Result<Vec<u32>> {
    let key_list = unique_key.join(", ");
    for batch in batches {
        for (name, column) in unique_key.iter().zip(key_columns(batch, unique_key)?) {
            if column.logical_null_count() > 0 {
                if unique_key.len() == 1 {
                    bail!("merge into {ident}: unique_key ({key_list}) is NULL in an incoming row");
                }
                bail!(
                    "merge into {ident}: unique_key ({key_list}) is NULL in an incoming row (column {name})"
                );
            }
        }
    }
    // Row-encoded keys compare as the keys do: one sort (on every core) orders the rows and
    // puts the rows of a key side by side, in arrival order.
    let encoded = encode(batches, unique_key, "key")?;
    let key = |i: u32| encoded.row(i as usize);
    let mut order: Vec<u32> = (0..encoded.num_rows() as u32).collect();
    order.par_sort_unstable_by(|&a, &b| key(a).cmp(&key(b)).then(a.cmp(&b)));

    let better = dedupe_order(batches, dedupe_by)?;
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
        let (batch, row) = locate(&starts(batches), first as usize);
        bail!(
            "merge into {ident}: key ({key_list})=({}) appears {count} times in the incoming rows; set dedupe_by to keep one",
            render_key(&key_columns(&batches[batch], unique_key)?, row)
        );
    }
    Ok(kept)
}

/// `unique_order` over one batch: the rows kept, in key order.
pub(super) fn unique_and_sorted(
    ident: &TableIdent,
    rows: RecordBatch,
    unique_key: &[String],
    dedupe_by: Option<&str>,
) -> Result<RecordBatch> {
    if rows.num_rows() == 0 {
        return Ok(rows);
    }
    let kept = unique_order(ident, std::slice::from_ref(&rows), unique_key, dedupe_by)?;
    if in_arrival_order(&kept, rows.num_rows()) {
        return Ok(rows);
    }
    Ok(take_record_batch(&rows, &UInt32Array::from(kept))?)
}

fn in_arrival_order(kept: &[u32], rows: usize) -> bool {
    kept.len() == rows && kept.iter().enumerate().all(|(at, &i)| at == i as usize)
}

type RowOrder = Box<dyn Fn(usize, usize) -> Ordering>;

/// How two rows with the same key rank under `dedupe_by`: by its value, then by the whole row.
fn dedupe_order(batches: &[RecordBatch], dedupe_by: Option<&str>) -> Result<Option<RowOrder>> {
    let Some(column) = dedupe_by else {
        return Ok(None);
    };
    let by_value = encode(batches, &[column.to_string()], "dedupe_by")?;
    let names: Vec<String> = batches[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    let fields: Vec<SortField> = batches[0]
        .columns()
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let whole: Option<Rows> = if RowConverter::supports_fields(&fields) {
        Some(encode(batches, &names, "")?)
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

/// The whole output, checked and deduplicated on `unique_key` as a merge does, sorted by it.
/// The output is held as it arrived; the sorted rows are copied out a chunk at a time.
pub(super) async fn unique_rows<'a>(
    ident: &TableIdent,
    schema: &arrow::datatypes::SchemaRef,
    batches: &mut BoxStream<'a, Result<RecordBatch>>,
    unique_key: &[String],
    dedupe_by: Option<&str>,
) -> Result<BoxStream<'a, Result<RecordBatch>>> {
    let mut collected = Vec::new();
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        if batch.num_rows() > 0 {
            collected.push(batch);
        }
    }
    let output_schema = collected.first().map(|b| b.schema()).unwrap_or_else(|| schema.clone());
    check_columns(ident, &output_schema, unique_key, dedupe_by)?;
    if collected.is_empty() {
        return Ok(futures::stream::iter([Ok(RecordBatch::new_empty(output_schema))]).boxed());
    }
    let kept = unique_order(ident, &collected, unique_key, dedupe_by)?;
    let total = collected.iter().map(RecordBatch::num_rows).sum();
    if in_arrival_order(&kept, total) {
        return Ok(futures::stream::iter(collected.into_iter().map(Ok)).boxed());
    }
    // Each chunk's (batch, row) places are found as it is copied: 4 bytes a kept row held, not 16.
    let starts = starts(&collected);
    let chunks = (0..kept.len()).step_by(OUTPUT_ROWS);
    let sorted = chunks.map(move |from| {
        let chunk = &kept[from..(from + OUTPUT_ROWS).min(kept.len())];
        let places: Vec<(usize, usize)> = chunk.iter().map(|&g| locate(&starts, g as usize)).collect();
        let refs: Vec<&RecordBatch> = collected.iter().collect();
        Ok(interleave_record_batch(&refs, &places)?)
    });
    Ok(futures::stream::iter(sorted).boxed())
}
