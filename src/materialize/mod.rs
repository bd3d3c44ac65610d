//! Materializations: turning a model's output stream into exactly one Iceberg commit.
//!
//! - [`Strategy::Replace`] (`table`, and `--full-refresh`): one `overwrite` snapshot replacing
//!   every file; schema and partition changes ride in the same commit.
//! - [`Strategy::Append`] (`incremental` + `append`): one `append` snapshot, or none when the
//!   model produced no rows.
//! - [`Strategy::Merge`] (`incremental` + `merge` on `unique_key`): copy-on-write of the files
//!   that can hold incoming keys, one `overwrite` snapshot.
//! - [`Strategy::ReplaceRange`] (`incremental` + `replace_range`): rows in the range the batch
//!   covers are replaced, one `overwrite` snapshot.
//!
//! The watermark (max of the configured column over the rows written, merged with the stored
//! one, or a value fixed by the caller) is put in the same snapshot's summary as the data.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::TableIdent;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use crate::engine::watermark::{Watermark, WatermarkTracker};
use crate::lakehouse::catalog::Lakehouse;
use crate::lakehouse::commit::{self, Change, CommitOutcome, MetadataChanges};
use crate::lakehouse::schema::{column_changes, evolve_schema, partition_spec, same_partitioning};
use crate::lakehouse::summary;
use crate::lakehouse::writer::{DataWriter, WriteOptions};

/// How the output is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Replace,
    Append,
    Merge {
        unique_key: Vec<String>,
        /// Keep, per duplicated incoming key, the row with the greatest value of this column.
        dedupe_by: Option<String>,
    },
    ReplaceRange {
        column: String,
    },
}

/// What an incremental write does when the output's columns differ from the table's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaChangePolicy {
    #[default]
    Fail,
    AppendNewColumns,
    SyncAllColumns,
}

/// One materialization request.
pub struct Request<'a> {
    pub ident: TableIdent,
    /// The table as the output was computed against (`None`: it did not exist). Commits are
    /// based on it, so a concurrent commit since then is detected, never silently rebased over.
    pub base: Option<Table>,
    pub strategy: Strategy,
    /// `(column, transform)` pairs.
    pub partition_by: Vec<(String, String)>,
    pub watermark_column: Option<String>,
    /// The watermark stored before this run (kept when no newer value is written).
    pub previous_watermark: Option<Watermark>,
    /// A watermark decided by the caller (e.g. source snapshot ids), stored as given.
    pub fixed_watermark: Option<Watermark>,
    pub on_schema_change: SchemaChangePolicy,
    /// `lake.*` summary properties.
    pub properties: HashMap<String, String>,
    pub write: &'a WriteOptions,
}

/// What a materialization did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub rows_written: u64,
    /// `None` when nothing was committed (an append of zero rows).
    pub commit: Option<CommitOutcome>,
    pub watermark: Option<Watermark>,
    pub created_table: bool,
}

/// Write `batches` (with `schema`) to the table and commit once.
pub async fn materialize(
    lakehouse: &Lakehouse,
    request: Request<'_>,
    schema: ArrowSchemaRef,
    mut batches: BoxStream<'_, Result<arrow::array::RecordBatch>>,
) -> Result<Outcome> {
    let created = request.base.is_none();
    let table = match request.base.clone() {
        Some(t) => t,
        None => {
            let iceberg_schema = evolve_schema(&schema, None)?;
            let spec = if request.partition_by.is_empty() {
                None
            } else {
                Some(partition_spec(&iceberg_schema, &request.partition_by)?)
            };
            match lakehouse
                .create_table(&request.ident, iceberg_schema, spec, HashMap::new())
                .await
            {
                Ok(t) => t,
                // Created by another writer since this output was computed from its absence.
                Err(_) if lakehouse.load_table(&request.ident).await?.is_some() => bail!(
                    "commit to {} conflicted: another writer created the table meanwhile; nothing was committed, run again",
                    request.ident
                ),
                Err(e) => return Err(e),
            }
        }
    };

    let changes = match (&request.strategy, created) {
        (_, true) => MetadataChanges::default(),
        (Strategy::Replace, false) => replace_changes(&table, &schema, &request.partition_by)?,
        (_, false) => {
            let (added, removed) = column_changes(table.metadata().current_schema(), &schema);
            if !added.is_empty() || !removed.is_empty() {
                let mut parts = Vec::new();
                if !added.is_empty() {
                    parts.push(format!("adds column(s) {}", added.join(", ")));
                }
                if !removed.is_empty() {
                    parts.push(format!("lacks column(s) {}", removed.join(", ")));
                }
                bail!(
                    "the output {} compared with table {} (on_schema_change = fail); run with --full-refresh to rebuild it",
                    parts.join(" and "),
                    request.ident
                );
            }
            MetadataChanges::default()
        }
    };

    let result = write_and_commit(lakehouse, &table, &changes, &request, &mut batches).await;
    if result.is_err() && created {
        // The table was created for this output and holds nothing: do not leave it behind.
        if let Err(e) = lakehouse.catalog().drop_table(&request.ident).await {
            tracing::warn!(table = %request.ident, error = %e, "could not drop the empty table created by a failed run");
        }
    }
    let mut outcome = result?;
    outcome.created_table = created;
    Ok(outcome)
}

/// Schema and spec changes a full rebuild brings.
fn replace_changes(
    table: &Table,
    output: &ArrowSchemaRef,
    partition_by: &[(String, String)],
) -> Result<MetadataChanges> {
    let metadata = table.metadata();
    let current = metadata.current_schema();
    let evolved = evolve_schema(output, Some((current, metadata.last_column_id())))?;
    let mut changes = MetadataChanges::default();
    if evolved.as_struct() != current.as_struct() {
        changes.schema = Some(evolved.clone());
    }
    let wanted = partition_spec(&evolved, partition_by)?;
    if !same_partitioning(metadata.default_partition_spec(), &wanted) {
        changes.partition_spec = Some(wanted);
    }
    Ok(changes)
}

async fn write_and_commit(
    lakehouse: &Lakehouse,
    table: &Table,
    changes: &MetadataChanges,
    request: &Request<'_>,
    batches: &mut BoxStream<'_, Result<arrow::array::RecordBatch>>,
) -> Result<Outcome> {
    let target = changes.target_metadata(table)?;
    let mut writer = DataWriter::new(
        table.file_io().clone(),
        target.location(),
        target.current_schema().clone(),
        target.default_partition_spec().clone(),
        request.write,
    )?;
    let mut tracker = match request.fixed_watermark {
        Some(_) => None,
        None => request.watermark_column.as_deref().map(WatermarkTracker::new),
    };

    let written: Result<()> = async {
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            if let Some(t) = tracker.as_mut() {
                t.update(&batch)?;
            }
            writer.write(&batch).await?;
        }
        Ok(())
    }
    .await;
    let rows = writer.rows();
    let files: Vec<DataFile> = match written {
        Ok(()) => writer.close().await.context("cannot finish the data files")?,
        Err(e) => {
            if let Ok(files) = writer.close().await {
                commit::discard_files(table, &files).await;
            }
            return Err(e);
        }
    };

    let new_watermark = match tracker {
        Some(t) => t.finish()?,
        None => None,
    };
    let watermark = match (&request.fixed_watermark, new_watermark, &request.strategy) {
        (Some(fixed), _, _) => Some(fixed.clone()),
        (None, w, Strategy::Replace) => w,
        (None, Some(w), _) => Some(w.max(request.previous_watermark.clone())),
        (None, None, _) => request.previous_watermark.clone(),
    };

    if request.strategy == Strategy::Append && files.is_empty() {
        return Ok(Outcome {
            rows_written: 0,
            commit: None,
            watermark,
            created_table: false,
        });
    }

    let mut properties = request.properties.clone();
    if let (Some(w), Some(column)) = (&watermark, &request.watermark_column) {
        properties.insert(summary::WATERMARK.into(), w.value.clone());
        properties.insert(summary::WATERMARK_TYPE.into(), w.kind.clone());
        properties.insert(summary::WATERMARK_COLUMN.into(), column.clone());
    }
    let change = match &request.strategy {
        Strategy::Replace => Change::ReplaceAll(files),
        Strategy::Append => Change::Append(files),
        Strategy::Merge { .. } | Strategy::ReplaceRange { .. } => {
            commit::discard_files(table, &files).await;
            bail!("this strategy is not built yet");
        }
    };
    let outcome = commit::commit(lakehouse, table.clone(), changes, change, properties).await?;
    Ok(Outcome {
        rows_written: rows,
        commit: Some(outcome),
        watermark,
        created_table: false,
    })
}
