//! Materializations: turning a model's output stream into exactly one Iceberg commit.
//!
//! - [`Strategy::Replace`] (`table`, and `--full-refresh`): one `overwrite` snapshot replacing
//!   every file; schema and partition changes ride in the same commit.
//! - [`Strategy::Append`] (`incremental` + `append`): one `append` snapshot, or none when the
//!   model produced no rows.
//! - [`Strategy::Merge`] (`incremental` + `merge` on `unique_key`): copy-on-write of the files
//!   that hold incoming keys, or (`merge_mode` merge-on-read) position delete files for the
//!   replaced rows; one `overwrite` snapshot (`append` when no key matched, none when there are
//!   no rows). See [`merge`] and [`merge_on_read`].
//! - [`Strategy::ReplaceRange`] (`incremental` + `replace_range`): rows in the range the batch
//!   covers are replaced, one `overwrite` snapshot (likewise). See [`replace_range`].
//!
//! Merge and range replacement collect the output in memory; on the first run (the table is
//! created for the output) they are appends after the same checks of the incoming rows. If a
//! concurrent writer removed a file they replace, they plan again on the new table state.
//!
//! Incremental strategies follow [`SchemaChangePolicy`] when the output's columns differ from
//! the table's (see [`schema_change`]); the new schema commits with the data, and every batch
//! written (incoming or carried over from a rewritten file) is aligned to it by column name.
//!
//! The watermark (max of the configured column over the rows written, merged with the stored
//! one, or a value fixed by the caller) is put in the same snapshot's summary as the data.

mod guard;
mod merge;
mod merge_on_read;
mod planned;
mod replace_range;
mod schema_change;
mod tombstones;
mod unique;
pub mod watermark;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    FixedSizeBinaryArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    RecordBatchOptions, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
    TimestampNanosecondArray, make_comparator, new_null_array,
};
use arrow::compute::{SortOptions, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use futures::stream::BoxStream;
use futures::StreamExt;
use iceberg::TableIdent;
use iceberg::spec::{
    DataFile, Literal, PrimitiveLiteral,
    PrimitiveType, TableMetadata, Transform, Type,
};
use iceberg::table::Table;

use watermark::{Watermark, WatermarkTracker};
use crate::lakehouse::catalog::Lakehouse;
use crate::lakehouse::commit::{self, Change, CommitOutcome, MetadataChanges};
use crate::lakehouse::manifests::LiveFile;
use crate::lakehouse::reader::FileReader;
use crate::lakehouse::schema::{
    conform_batch, evolve_schema, partition_spec, same_partitioning,
};
use crate::lakehouse::summary;
use crate::lakehouse::writer::{DataWriter, MergeMode, WriteOptions};
use planned::Rewrite;

/// How the output is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Replace,
    /// Replace, with the rows checked and deduplicated as a merge checks them (no NULL key, no
    /// duplicate key unless `dedupe_by` picks one): the full refresh of a merge model.
    ReplaceUnique {
        unique_key: Vec<String>,
        dedupe_by: Option<String>,
    },
    Append,
    Merge {
        unique_key: Vec<String>,
        /// Keep, per duplicated incoming key, the row with the greatest value of this column.
        dedupe_by: Option<String>,
        /// `None`: the table's `write.merge.mode`, else the project's default (see [`planned`]).
        mode: Option<MergeMode>,
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
    /// A boolean output column: rows where it is true delete their key (merge) or are left
    /// out (other strategies); the column is never stored. See [`tombstones`].
    pub delete_when: Option<String>,
    /// `lake.*` summary properties.
    pub properties: HashMap<String, String>,
    /// Properties computed from each attempt's base (see [`commit::RebaseFn`]).
    pub rebase: Option<commit::RebaseFn>,
    pub write: &'a WriteOptions,
}

/// What a materialization did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Rows of the model's output committed (after `dedupe_by`); rows carried over from
    /// rewritten files are not counted.
    pub rows_written: u64,
    /// `None` when nothing was committed (zero rows to append, merge or replace).
    pub commit: Option<CommitOutcome>,
    pub watermark: Option<Watermark>,
    pub created_table: bool,
    /// Existing data files that were read and rewritten without their replaced rows
    /// (copy-on-write by `merge` and `replace_range`). Files that `replace_range` drops whole
    /// are not counted here (they are in the commit's `files_removed`, as are these).
    pub files_rewritten: usize,
    /// Bytes of those files.
    pub bytes_rewritten: u64,
}

/// Why a materialization failed: a commit error (typed, so callers can match on its kind, see
/// [`commit::Error`]) or any other.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Commit(#[from] commit::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    /// The commit error, if the commit is what failed.
    pub fn commit(&self) -> Option<&commit::Error> {
        match self {
            Error::Commit(e) => Some(e),
            Error::Other(_) => None,
        }
    }
}

/// Attempts of a copy-on-write change when a concurrent writer removed a file it replaces.
const REWRITE_ATTEMPTS: u32 = 5;

/// Write `batches` (with `schema`) to the table and commit once.
pub async fn materialize(
    lakehouse: &Lakehouse,
    request: Request<'_>,
    schema: ArrowSchemaRef,
    batches: BoxStream<'_, Result<arrow::array::RecordBatch>>,
) -> Result<Outcome, Error> {
    // A merge turns `delete_when` rows into deletes (see `planned`); other writes leave them out.
    let (schema, mut batches) = match &request.delete_when {
        Some(column) => {
            let stripped = tombstones::stripped(&request.ident, &schema, column)?;
            match request.strategy {
                Strategy::Merge { .. } => (stripped, batches),
                _ => (stripped, tombstones::drop_deletions(batches, column.clone())),
            }
        }
        None => (schema, batches),
    };
    let mut created = request.base.is_none();
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
                Err(e) => match lakehouse.load_table(&request.ident).await? {
                    // Created by another writer meanwhile: a writer with a rebase hook decides
                    // on the new table whether its change still applies.
                    Some(existing) if request.rebase.is_some() => {
                        created = false;
                        existing
                    }
                    // Otherwise this output was computed from the table's absence.
                    Some(_) => {
                        return Err(anyhow!(
                            "commit to {} conflicted: another writer created the table meanwhile; nothing was committed, run again",
                            request.ident
                        )
                        .into());
                    }
                    None => return Err(e.into()),
                },
            }
        }
    };

    let result = match &request.strategy {
        Strategy::Replace | Strategy::Append => {
            let changes = match (&request.strategy, created) {
                (_, true) => Ok(MetadataChanges::default()),
                (Strategy::Replace, false) => replace_changes(&table, &schema, &request.partition_by),
                (_, false) => schema_change::incremental_changes(&table, &schema, request.on_schema_change),
            };
            match changes {
                Ok(changes) => write_and_commit(lakehouse, &table, &changes, &request, &mut batches).await,
                Err(e) => Err(e.into()),
            }
        }
        Strategy::ReplaceUnique { unique_key, dedupe_by } => {
            let prepared = async {
                let rows = unique::unique_rows(&request.ident, &schema, &mut batches, unique_key, dedupe_by.as_deref()).await?;
                let changes = if created { MetadataChanges::default() } else { replace_changes(&table, &schema, &request.partition_by)? };
                Ok::<_, anyhow::Error>((rows, changes))
            };
            match prepared.await {
                Ok((mut rows, changes)) => write_and_commit(lakehouse, &table, &changes, &request, &mut rows).await,
                Err(e) => Err(e.into()),
            }
        }
        Strategy::Merge { .. } | Strategy::ReplaceRange { .. } => {
            planned::planned_change(lakehouse, table, created, &request, &schema, &mut batches).await
        }
    };
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

/// `table` replace / append: batches are streamed to the writer.
async fn write_and_commit(
    lakehouse: &Lakehouse,
    table: &Table,
    changes: &MetadataChanges,
    request: &Request<'_>,
    batches: &mut BoxStream<'_, Result<arrow::array::RecordBatch>>,
) -> Result<Outcome, Error> {
    let target = changes.target_metadata(table)?;
    let mut writer = DataWriter::for_metadata(table.file_io().clone(), &target, request.write)?;
    let target_arrow = writer.arrow_schema().clone();
    let mut tracker = new_tracker(request);

    let written: Result<()> = async {
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            if let Some(t) = tracker.as_mut() {
                t.update(&batch)?;
            }
            writer.write(&align(&batch, &target_arrow)?).await?;
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
            return Err(e.into());
        }
    };
    let watermark = final_watermark(request, tracker)?;

    // No rows, nothing to commit: unless the writer keeps state in the summary (its rebase
    // hook: ingest read positions; source snapshots read), which must move on even when a
    // batch held only dead letters or a run found nothing to change.
    if request.strategy == Strategy::Append && files.is_empty() && request.rebase.is_none() && !moves_fixed_watermark(request) {
        return Ok(Outcome {
            watermark,
            ..Default::default()
        });
    }
    let change = match &request.strategy {
        Strategy::Replace | Strategy::ReplaceUnique { .. } => Change::ReplaceAll(files),
        _ => Change::Append(files),
    };
    let properties = commit_properties(request, &watermark);
    let outcome = commit::commit(lakehouse, table.clone(), changes, change, properties, request.rebase.as_ref()).await?;
    Ok(Outcome {
        rows_written: rows,
        commit: Some(outcome),
        watermark,
        ..Default::default()
    })
}

fn new_tracker(request: &Request<'_>) -> Option<WatermarkTracker> {
    match request.fixed_watermark {
        Some(_) => None,
        None => request.watermark_column.as_deref().map(WatermarkTracker::new),
    }
}

/// Whether the request stores a fixed watermark (the source snapshots a `watermark: snapshot`
/// model read) other than the one stored: then even a write of no rows commits (an empty
/// snapshot), so the next run does not read the same rows again and can be skipped.
fn moves_fixed_watermark(request: &Request<'_>) -> bool {
    request.fixed_watermark.is_some() && request.fixed_watermark != request.previous_watermark
}

/// The watermark to store after this write.
fn final_watermark(request: &Request<'_>, tracker: Option<WatermarkTracker>) -> Result<Option<Watermark>> {
    let new_watermark = match tracker {
        Some(t) => t.finish()?,
        None => None,
    };
    Ok(match (&request.fixed_watermark, new_watermark, &request.strategy) {
        (Some(fixed), _, _) => Some(fixed.clone()),
        (None, w, Strategy::Replace | Strategy::ReplaceUnique { .. }) => w,
        (None, Some(w), _) => Some(w.max(request.previous_watermark.clone())),
        (None, None, _) => request.previous_watermark.clone(),
    })
}

/// The summary properties of the commit: the request's plus the watermark.
fn commit_properties(request: &Request<'_>, watermark: &Option<Watermark>) -> HashMap<String, String> {
    let mut properties = request.properties.clone();
    if let Strategy::Merge { unique_key, .. } = &request.strategy {
        properties.insert(summary::UPSERT_KEY.into(), unique_key.join(","));
    }
    if let (Some(w), Some(column)) = (watermark, &request.watermark_column) {
        properties.insert(summary::WATERMARK.into(), w.value.clone());
        properties.insert(summary::WATERMARK_TYPE.into(), w.kind.clone());
        properties.insert(summary::WATERMARK_COLUMN.into(), column.clone());
    }
    properties
}

/// `batch` with exactly `target`'s columns, matched by name: columns it lacks are null, columns
/// `target` lacks are dropped, types are cast to the target's.
fn align(batch: &RecordBatch, target: &ArrowSchemaRef) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut fields = Vec::with_capacity(target.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        match batch.column_by_name(field.name()) {
            Some(c) => {
                fields.push(Field::new(field.name(), c.data_type().clone(), true));
                columns.push(c.clone());
            }
            None => {
                fields.push(Field::new(field.name(), field.data_type().clone(), true));
                columns.push(new_null_array(field.data_type(), rows));
            }
        }
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    let projected = RecordBatch::try_new_with_options(Arc::new(ArrowSchema::new(fields)), columns, &options)?;
    conform_batch(&projected, target)
}

/// What a data file's metadata says about one column's non-null values.
struct ColumnRange {
    /// Lower bound, as a one-row array of the column's Arrow type (`None`: unknown).
    lower: Option<ArrayRef>,
    /// Upper bound, likewise.
    upper: Option<ArrayRef>,
    /// The file holds no non-null value of the column.
    empty: bool,
    /// Nulls in the column: `Some(0)` when known to be none.
    nulls: Option<u64>,
}

impl ColumnRange {
    fn unknown() -> Self {
        ColumnRange {
            lower: None,
            upper: None,
            empty: false,
            nulls: None,
        }
    }
}

/// The range of column `field_id` (of Arrow type `arrow_type` in the rows compared with it)
/// in `live`, from an identity partition value or the column bounds.
fn column_range(metadata: &TableMetadata, live: &LiveFile, field_id: i32, arrow_type: &DataType) -> ColumnRange {
    let file = &live.file;
    let Some(field) = metadata.current_schema().field_by_id(field_id) else {
        return ColumnRange::unknown();
    };
    let Type::Primitive(ty) = field.field_type.as_ref() else {
        return ColumnRange::unknown();
    };
    let mut nulls = file.null_value_counts().get(&field_id).copied();
    if let Some(spec) = metadata.partition_spec_by_id(live.spec_id) {
        for (i, p) in spec.fields().iter().enumerate() {
            if p.source_id != field_id || p.transform != Transform::Identity {
                continue;
            }
            match file.partition().fields().get(i) {
                Some(Some(Literal::Primitive(value))) => {
                    if let Some(a) = literal_array(ty, value, arrow_type) {
                        return ColumnRange {
                            lower: Some(a.clone()),
                            upper: Some(a),
                            empty: false,
                            nulls: Some(0),
                        };
                    }
                }
                Some(None) => {
                    return ColumnRange {
                        lower: None,
                        upper: None,
                        empty: true,
                        nulls: Some(file.record_count()),
                    };
                }
                _ => {}
            }
        }
    }
    if nulls.is_some_and(|n| n >= file.record_count()) {
        return ColumnRange {
            lower: None,
            upper: None,
            empty: true,
            nulls,
        };
    }
    let trusted = match ty {
        // -0.0 / NaN ordering differs between writers: do not prune on floating-point bounds.
        PrimitiveType::Float | PrimitiveType::Double => false,
        // iceberg-rust skips inexact (truncated) row-group statistics when it aggregates a
        // file's bounds, so with several row groups a long value can lie outside them. Trust
        // variable-length bounds only for single-row-group files.
        PrimitiveType::String | PrimitiveType::Binary => file.split_offsets().is_some_and(|s| s.len() <= 1),
        _ => true,
    };
    if !trusted {
        nulls = None;
        return ColumnRange { nulls, ..ColumnRange::unknown() };
    }
    let bound = |d: Option<&iceberg::spec::Datum>| {
        d.filter(|d| d.data_type() == ty)
            .and_then(|d| literal_array(ty, d.literal(), arrow_type))
    };
    ColumnRange {
        lower: bound(file.lower_bounds().get(&field_id)),
        upper: bound(file.upper_bounds().get(&field_id)),
        empty: false,
        nulls,
    }
}

/// A one-row Arrow array of `target` type holding an Iceberg value.
fn literal_array(ty: &PrimitiveType, value: &PrimitiveLiteral, target: &DataType) -> Option<ArrayRef> {
    use PrimitiveLiteral as L;
    use PrimitiveType as P;
    let array: ArrayRef = match (ty, value) {
        (P::Boolean, L::Boolean(v)) => Arc::new(BooleanArray::from(vec![*v])),
        (P::Int, L::Int(v)) => Arc::new(Int32Array::from(vec![*v])),
        (P::Long, L::Long(v)) => Arc::new(Int64Array::from(vec![*v])),
        (P::Float, L::Float(v)) => Arc::new(Float32Array::from(vec![v.0])),
        (P::Double, L::Double(v)) => Arc::new(Float64Array::from(vec![v.0])),
        (P::String, L::String(v)) => Arc::new(StringArray::from(vec![v.as_str()])),
        (P::Binary, L::Binary(v)) => Arc::new(BinaryArray::from(vec![v.as_slice()])),
        (P::Fixed(_), L::Binary(v)) => {
            Arc::new(FixedSizeBinaryArray::try_from_iter(std::iter::once(v.as_slice())).ok()?)
        }
        (P::Uuid, L::UInt128(v)) => {
            Arc::new(FixedSizeBinaryArray::try_from_iter(std::iter::once(v.to_be_bytes())).ok()?)
        }
        (P::Date, L::Int(v)) => Arc::new(Date32Array::from(vec![*v])),
        (P::Time, L::Long(v)) => Arc::new(Time64MicrosecondArray::from(vec![*v])),
        (P::Timestamp, L::Long(v)) => Arc::new(TimestampMicrosecondArray::from(vec![*v])),
        (P::Timestamptz, L::Long(v)) => {
            Arc::new(TimestampMicrosecondArray::from(vec![*v]).with_timezone("+00:00"))
        }
        (P::TimestampNs, L::Long(v)) => Arc::new(TimestampNanosecondArray::from(vec![*v])),
        (P::TimestamptzNs, L::Long(v)) => {
            Arc::new(TimestampNanosecondArray::from(vec![*v]).with_timezone("+00:00"))
        }
        (P::Decimal { precision, scale }, L::Int128(v)) => Arc::new(
            Decimal128Array::from(vec![*v])
                .with_precision_and_scale(u8::try_from(*precision).ok()?, i8::try_from(*scale).ok()?)
                .ok()?,
        ),
        _ => return None,
    };
    if array.data_type() == target {
        return Some(array);
    }
    arrow::compute::cast(&array, target).ok()
}

/// Compares rows of an array with a one-row value: `cmp(i)` is `array[i]` against `value`.
type RowCmp = Box<dyn Fn(usize) -> std::cmp::Ordering + Send + Sync>;

/// `None` when the types cannot be compared (the bound is then treated as unknown).
fn comparator_with(array: &dyn Array, value: &ArrayRef) -> Option<RowCmp> {
    let c = make_comparator(array, value.as_ref(), SortOptions::default()).ok()?;
    Some(Box::new(move |i| c(i, 0)))
}

/// First index in `0..n` where `pred` is false (`pred` true then false over the range).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Copy-on-write of `paths` (live data files of `table`'s current snapshot): each file is read,
/// aligned to `rows`' schema and filtered by `keep`; a file that lost at least one row is
/// rewritten (its survivors written), the others stay untouched. Then `rows` are written.
/// Returns the new files and the paths of the rewritten ones; the new files are deleted when
/// this fails.
async fn rewrite_files(
    table: &Table,
    target: &TableMetadata,
    options: &WriteOptions,
    paths: &[String],
    rows: &RecordBatch,
    keep: impl Fn(&RecordBatch) -> Result<BooleanArray>,
) -> Result<(Vec<DataFile>, Vec<String>)> {
    let wanted: HashSet<String> = paths.iter().cloned().collect();
    let mut reader = FileReader::new(table, None, &wanted).await?;
    let target_arrow = rows.schema();
    let mut writer = DataWriter::for_metadata(table.file_io().clone(), target, options)?;
    let mut rewritten = Vec::new();
    let result: Result<()> = async {
        for path in paths {
            let mut survivors = Vec::new();
            let mut dropped = 0;
            for batch in reader.read(path).await? {
                let batch = align(&batch, &target_arrow)?;
                let kept = filter_record_batch(&batch, &keep(&batch)?)?;
                dropped += batch.num_rows() - kept.num_rows();
                survivors.push(kept);
            }
            if dropped > 0 {
                for s in &survivors {
                    writer.write(s).await?;
                }
                rewritten.push(path.clone());
            }
        }
        writer.write(rows).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok((writer.close().await.context("cannot finish the data files")?, rewritten)),
        Err(e) => {
            if let Ok(files) = writer.close().await {
                commit::discard_files(table, &files).await;
            }
            Err(e)
        }
    }
}
