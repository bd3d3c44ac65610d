//! `replace_range`: the incoming rows replace every row of the table whose range column lies
//! within [min, max] of the incoming rows' values.
//!
//! From identity partition values and column bounds, each live data file is either outside the
//! range (kept untouched), entirely inside it with no NULLs (removed whole, not read), or
//! overlapping (read and rewritten without its in-range rows, if it had any). Rows with a NULL
//! range value are never in the range. One `overwrite` snapshot (an `append` when nothing was
//! replaced).

use std::cmp::Ordering;

use anyhow::{Result, anyhow, bail};
use arrow::array::{Array, ArrayRef, RecordBatch, Scalar};
use arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use arrow::compute::{and, sort_to_indices};
use arrow::datatypes::Schema as ArrowSchema;
use iceberg::TableIdent;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;

use super::{Rewrite, column_range, comparator_with, rewrite_files};
use crate::lakehouse::manifests::live_data_files;
use crate::lakehouse::writer::WriteOptions;

/// The range column must be in the model's output.
pub(super) fn check_column(ident: &TableIdent, output: &ArrowSchema, column: &str) -> Result<()> {
    if output.field_with_name(column).is_err() {
        let columns: Vec<&str> = output.fields().iter().map(|f| f.name().as_str()).collect();
        bail!(
            "replace_range into {ident}: range column {column} is not in the model's output (columns: {})",
            columns.join(", ")
        );
    }
    Ok(())
}

/// The range column must have a value in every incoming row.
pub(super) fn check_rows(ident: &TableIdent, rows: &RecordBatch, column: &str) -> Result<()> {
    let values = range_column(rows, column)?;
    if values.logical_null_count() > 0 {
        bail!("replace_range into {ident}: range column ({column}) is NULL in an incoming row");
    }
    Ok(())
}

fn range_column(rows: &RecordBatch, column: &str) -> Result<ArrayRef> {
    rows.column_by_name(column)
        .cloned()
        .ok_or_else(|| anyhow!("the rows have no range column {column}"))
}

/// Plan and write the replacement of [min, max] of `column` by `rows` (aligned to `target`).
pub(super) async fn rewrite(
    table: &Table,
    target: &TableMetadata,
    rows: &RecordBatch,
    column: &str,
    options: &WriteOptions,
) -> Result<Rewrite> {
    let values = range_column(rows, column)?;
    let order = sort_to_indices(&values, None, None)?;
    let min = values.slice(order.value(0) as usize, 1);
    let max = values.slice(order.value(order.len() - 1) as usize, 1);

    let mut removed: Vec<String> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let mut sizes: std::collections::HashMap<String, u64> = Default::default();
    let metadata = table.metadata();
    // A range column the table does not have yet holds no value in range in any existing row.
    if let Some(field) = metadata.current_schema().field_by_name(column) {
        for live in live_data_files(table, table.metadata().current_snapshot()).await? {
            let r = column_range(metadata, &live, field.id, values.data_type());
            if r.empty {
                continue;
            }
            let cmp = |bound: &Option<ArrayRef>, with: &ArrayRef| {
                bound
                    .as_ref()
                    .and_then(|b| comparator_with(b.as_ref(), with))
                    .map(|c| c(0))
            };
            let below = cmp(&r.upper, &min) == Some(Ordering::Less);
            let above = cmp(&r.lower, &max) == Some(Ordering::Greater);
            if below || above {
                continue;
            }
            let from_min = matches!(
                cmp(&r.lower, &min),
                Some(Ordering::Greater | Ordering::Equal)
            );
            let to_max = matches!(cmp(&r.upper, &max), Some(Ordering::Less | Ordering::Equal));
            let path = live.file.file_path().to_string();
            sizes.insert(path.clone(), live.file.file_size_in_bytes());
            if from_min && to_max && r.nulls == Some(0) {
                removed.push(path);
            } else {
                partial.push(path);
            }
        }
    }

    let (min_s, max_s) = (Scalar::new(min), Scalar::new(max));
    let (added, rewritten) = rewrite_files(table, target, options, &partial, rows, |batch| {
        let v = range_column(batch, column)?;
        let in_range = and(&gt_eq(&v, &min_s)?, &lt_eq(&v, &max_s)?)?;
        // NULL (no value) is never in range.
        Ok(in_range.iter().map(|x| Some(!x.unwrap_or(false))).collect())
    })
    .await?;
    let files_rewritten = rewritten.len();
    let bytes_rewritten = rewritten.iter().filter_map(|p| sizes.get(p)).sum();
    removed.extend(rewritten);
    Ok(Rewrite {
        removed,
        added,
        files_rewritten,
        bytes_rewritten,
    })
}
