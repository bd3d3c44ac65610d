//! `merge` and `replace_range`: changes planned against the files of one table state. The
//! output is collected and checked; then either the touched files are rewritten without the
//! replaced rows (copy-on-write: removed + added files in one snapshot), or, for a merge in
//! `merge-on-read` mode, position delete files mark the replaced rows (see
//! [`super::merge_on_read`]). A concurrent writer that removed a file the plan replaces, or
//! added data since it was planned (see [`super::guard`]), makes it plan again on the new state.

use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::spec::{DataFile, Operation};
use iceberg::table::Table;

use super::{
    Error, Outcome, REWRITE_ATTEMPTS, Request, Strategy, align, commit_properties, final_watermark, guard, merge,
    merge_on_read, new_tracker, replace_range, schema_change, tombstones, unique,
};
use crate::lakehouse::catalog::Lakehouse;
use crate::lakehouse::commit::{self, Change, MetadataChanges};
use crate::lakehouse::schema::writer_arrow_schema;
use crate::lakehouse::summary;
use crate::lakehouse::writer::MergeMode;

/// What a copy-on-write plan wrote: files to remove (by path), files to add.
pub(super) struct Rewrite {
    pub removed: Vec<String>,
    pub added: Vec<DataFile>,
    /// Files read and rewritten without their replaced rows, and their bytes.
    pub files_rewritten: usize,
    pub bytes_rewritten: u64,
}

/// The change one planning attempt commits, with what it cost.
struct Planned {
    change: Change,
    files_rewritten: usize,
    bytes_rewritten: u64,
}

/// The merge mode of a merge into `table`: the model's, else the table's `write.merge.mode`
/// property, else the project's `[write] merge_mode`, else copy-on-write.
fn merge_mode(request: &Request<'_>, table: &Table, mode: Option<MergeMode>) -> Result<MergeMode> {
    if let Some(m) = mode {
        return Ok(m);
    }
    if let Some(v) = table.metadata().properties().get(MergeMode::TABLE_PROPERTY) {
        return MergeMode::parse(v).ok_or_else(|| {
            anyhow::anyhow!(
                "table {} has {} = '{v}': use copy-on-write or merge-on-read",
                request.ident,
                MergeMode::TABLE_PROPERTY
            )
        });
    }
    Ok(request.write.merge_mode.unwrap_or_default())
}

/// Plan the change of `rows` (aligned to `target`) on `table`'s current files.
async fn plan_change(
    table: &Table,
    target: &iceberg::spec::TableMetadata,
    rows: arrow::array::RecordBatch,
    request: &Request<'_>,
) -> Result<(arrow::array::RecordBatch, Planned)> {
    let plan = match &request.strategy {
        Strategy::Merge { unique_key, dedupe_by, mode } => {
            let rows = unique::unique_and_sorted(&request.ident, rows, unique_key, dedupe_by.as_deref())?;
            // Every incoming key replaces its row; only the rows not marked deleted are written.
            let (keys, rows) = match &request.delete_when {
                Some(column) => (tombstones::without(&rows, column)?, tombstones::kept(&rows, column)?),
                None => (rows.clone(), rows),
            };
            if merge_mode(request, table, *mode)? == MergeMode::MergeOnRead {
                let delta = merge_on_read::plan(table, target, &keys, &rows, unique_key, request.write).await?;
                let change = if delta.deletes.is_empty() {
                    Change::Append(delta.added)
                } else {
                    Change::RowDelta {
                        added: delta.added,
                        deletes: delta.deletes,
                        referenced: delta.referenced,
                    }
                };
                let planned = Planned { change, files_rewritten: 0, bytes_rewritten: 0 };
                return Ok((rows, planned));
            }
            let plan = merge::rewrite(table, target, &keys, &rows, unique_key, request.write).await?;
            (rows, plan)
        }
        Strategy::ReplaceRange { column } => {
            replace_range::check_rows(&request.ident, &rows, column)?;
            let plan = replace_range::rewrite(table, target, &rows, column, request.write).await?;
            (rows, plan)
        }
        _ => unreachable!("planned changes are merge and replace_range"),
    };
    let (rows, plan) = plan;
    let change = if plan.removed.is_empty() {
        // Nothing replaced: a plain append (exact incremental reads downstream stay possible).
        Change::Append(plan.added)
    } else {
        Change::Rewrite {
            removed: plan.removed,
            added: plan.added,
            operation: Operation::Overwrite,
        }
    };
    let planned = Planned { change, files_rewritten: plan.files_rewritten, bytes_rewritten: plan.bytes_rewritten };
    Ok((rows, planned))
}

/// `merge` and `replace_range`: collect the output, check it, plan the change on the table's
/// files and commit it as one snapshot. A concurrent writer that removed one of the files this
/// change replaces (or added data meanwhile) makes it start over on the new table state.
pub(super) async fn planned_change(
    lakehouse: &Lakehouse,
    mut table: Table,
    created: bool,
    request: &Request<'_>,
    schema: &ArrowSchemaRef,
    batches: &mut BoxStream<'_, Result<arrow::array::RecordBatch>>,
) -> Result<Outcome, Error> {
    let mut tracker = new_tracker(request);
    let mut collected = Vec::new();
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        if let Some(t) = tracker.as_mut() {
            t.update(&batch)?;
        }
        collected.push(batch);
    }
    let collected_schema = collected.first().map(|b| b.schema()).unwrap_or_else(|| schema.clone());
    let mut incoming = arrow::compute::concat_batches(&collected_schema, &collected)
        .context("cannot collect the model's output")?;
    drop(collected);
    // `delete_when`: which rows delete their key, kept beside the rows (see `tombstones`).
    let deleted = match &request.delete_when {
        Some(column) if collected_schema.index_of(column).is_ok() => {
            let marks = tombstones::marks(&incoming, column)?;
            incoming = tombstones::without(&incoming, column)?;
            Some((column.clone(), marks))
        }
        _ => None,
    };
    let output_schema = incoming.schema();
    let watermark = final_watermark(request, tracker)?;

    match &request.strategy {
        Strategy::Merge { unique_key, dedupe_by, .. } => {
            unique::check_columns(&request.ident, &output_schema, unique_key, dedupe_by.as_deref())?
        }
        Strategy::ReplaceRange { column } => replace_range::check_column(&request.ident, &output_schema, column)?,
        _ => unreachable!("planned changes are merge and replace_range"),
    }
    if !created {
        // Checked before anything else, so that `fail` reports a changed output even when
        // there are no rows to write.
        schema_change::incremental_changes(&table, &output_schema, request.on_schema_change)?;
    }
    let is_merge = matches!(request.strategy, Strategy::Merge { .. });
    if incoming.num_rows() == 0 && !(is_merge && super::moves_fixed_watermark(request)) {
        return Ok(Outcome {
            watermark,
            ..Default::default()
        });
    }

    let mut attempt = 1;
    loop {
        let changes = if created {
            MetadataChanges::default()
        } else {
            schema_change::incremental_changes(&table, &output_schema, request.on_schema_change)?
        };
        let target = changes.target_metadata(&table)?;
        let target_arrow = writer_arrow_schema(target.current_schema())?;
        // The rows as they will be stored: keys and ranges compare in the table's types.
        let mut rows = align(&incoming, &target_arrow)?;
        if let Some((column, marks)) = &deleted {
            rows = with_column(&rows, column, Arc::new(marks.clone()))?;
        }
        let (rows, plan) = plan_change(&table, &target, rows, request).await?;
        let properties = commit_properties(request, &watermark);
        let guard = guard::planned_on(&table, request.properties.get(summary::MODEL).cloned());
        let rebase = request.rebase.as_ref().or(Some(&guard));
        match commit::commit(lakehouse, table.clone(), &changes, plan.change, properties, rebase).await {
            Ok(outcome) => {
                tracing::info!(
                    table = %request.ident,
                    operation = %outcome.operation,
                    files_rewritten = plan.files_rewritten,
                    bytes_rewritten = plan.bytes_rewritten,
                    files_added = outcome.files_added,
                    bytes_added = outcome.bytes_added,
                    delete_files_added = outcome.delete_files_added,
                    position_deletes = outcome.position_deletes_added,
                    "committed"
                );
                return Ok(Outcome {
                    rows_written: rows.num_rows() as u64,
                    commit: Some(outcome),
                    watermark,
                    created_table: false,
                    files_rewritten: plan.files_rewritten,
                    bytes_rewritten: plan.bytes_rewritten,
                });
            }
            Err(e) if e.is_stale() && attempt < REWRITE_ATTEMPTS => {
                tracing::info!(table = %request.ident, error = %e, "files changed under the planned change; planning again");
                attempt += 1;
                table = lakehouse.table(&request.ident).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `batch` with `array` appended as a column named `name`.
fn with_column(batch: &arrow::array::RecordBatch, name: &str, array: arrow::array::ArrayRef) -> Result<arrow::array::RecordBatch> {
    let mut fields: Vec<arrow::datatypes::FieldRef> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new(name, array.data_type().clone(), true)));
    let mut columns = batch.columns().to_vec();
    columns.push(array);
    Ok(arrow::array::RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)?)
}
