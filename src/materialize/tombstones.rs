//! `delete_when`: a boolean output column that marks rows as deletions. In a `merge`, a marked
//! row deletes its key (the existing row is replaced by nothing); in any other write a marked
//! row is left out. The column itself is never stored.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::TableIdent;

/// `schema` without `column`, after checking that `column` is a boolean column of it.
pub(super) fn stripped(ident: &TableIdent, schema: &ArrowSchemaRef, column: &str) -> Result<ArrowSchemaRef> {
    let field = schema.field_with_name(column).map_err(|_| {
        anyhow!("model output for {ident} has no column `{column}` (delete_when); add it, true for the rows that delete their key")
    })?;
    if field.data_type() != &DataType::Boolean {
        return Err(anyhow!(
            "delete_when column `{column}` of {ident} is {}, not boolean",
            field.data_type()
        ));
    }
    let fields: Vec<_> = schema.fields().iter().filter(|f| f.name() != column).cloned().collect();
    Ok(Arc::new(ArrowSchema::new_with_metadata(fields, schema.metadata().clone())))
}

/// Whether each row of `batch` is a deletion (`column` true; null is not).
pub(super) fn marks(batch: &RecordBatch, column: &str) -> Result<BooleanArray> {
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| anyhow!("the output has no column `{column}` (delete_when)"))?;
    let flags = array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| anyhow!("delete_when column `{column}` is not boolean"))?;
    Ok(flags.iter().map(|v| Some(v == Some(true))).collect())
}

/// `batch` without `column`.
pub(super) fn without(batch: &RecordBatch, column: &str) -> Result<RecordBatch> {
    match batch.schema().index_of(column) {
        Ok(i) => {
            let mut batch = batch.clone();
            batch.remove_column(i);
            Ok(batch)
        }
        Err(_) => Ok(batch.clone()),
    }
}

/// The rows of `batch` that are not deletions, without `column` (all of them when it has no
/// such column: no rows came, so none were marked).
pub(super) fn kept(batch: &RecordBatch, column: &str) -> Result<RecordBatch> {
    if batch.column_by_name(column).is_none() {
        return Ok(batch.clone());
    }
    let keep = arrow::compute::not(&marks(batch, column)?)?;
    Ok(arrow::compute::filter_record_batch(&without(batch, column)?, &keep)?)
}

/// `batches` without their deletion rows and without `column` (writes other than merge).
pub(super) fn drop_deletions<'a>(
    batches: BoxStream<'a, Result<RecordBatch>>,
    column: String,
) -> BoxStream<'a, Result<RecordBatch>> {
    batches.map(move |b| b.and_then(|b| kept(&b, &column))).boxed()
}
