//! Moves columnar data between arrow-rs ([`RecordBatch`]es, as DataFusion and the Iceberg
//! writers use) and Polars ([`DataFrame`]s, as Rust models use) through the
//! [Arrow C data interface](https://arrow.apache.org/docs/format/CDataInterface.html),
//! so that buffers are shared rather than copied.
//!
//! Into Polars, every batch becomes one chunk of each column. Fixed-width columns (integers,
//! floats, booleans, dates, timestamps, decimals) are shared as they are; Polars itself copies
//! `Utf8`/`Binary` columns into its view layout. A few Arrow types Polars is built without
//! (8- and 16-bit integers, `Float16`, dictionaries) are widened or decoded first.
//!
//! Out of Polars, every chunk becomes one batch, and the types are normalised to the plain
//! ones that Iceberg writers expect: string and binary views (and their large variants) become
//! `Utf8`/`Binary`, large lists become lists, unsigned integers become `Int64` (an overflowing
//! `UInt64` value is an error naming the column). Timestamps keep their unit and time zone,
//! `Date32` and `Decimal128` stay as they are. Every output field is nullable, as Polars does
//! not track nullability.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{ArrayRef, Int64Array, RecordBatch};
//! use lake::engine::polars_bridge::{dataframe_to_record_batches, record_batches_to_dataframe};
//!
//! let batch = RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)])?;
//! let df = record_batches_to_dataframe(&batch.schema(), &[batch])?;
//! assert_eq!(df.height(), 2);
//! let (schema, batches) = dataframe_to_record_batches(df)?;
//! assert_eq!((schema.fields().len(), batches.len()), (1, 1));
//! # anyhow::Ok(())
//! ```

use std::mem::ManuallyDrop;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow::array::{
    Array as _, ArrayRef, RecordBatch, RecordBatchOptions, make_array, new_empty_array,
};
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use polars::prelude::{Column, CompatLevel, DataFrame, Series};
use polars_arrow::array::Array as PolarsArray;
use polars_arrow::datatypes::Field as PolarsField;
use polars_arrow::ffi as polars_ffi;

// arrow-rs and polars-arrow each declare the C data interface structs `ArrowArray` and
// `ArrowSchema` as `#[repr(C)]` structs with the fields, in order, of the C definitions
// (see the specification linked above). They are therefore layout-identical; these checks make
// the compiler confirm the parts of that claim it can see.
const _: () = {
    use std::mem::{align_of, size_of};
    assert!(size_of::<FFI_ArrowArray>() == size_of::<polars_ffi::ArrowArray>());
    assert!(align_of::<FFI_ArrowArray>() == align_of::<polars_ffi::ArrowArray>());
    assert!(size_of::<FFI_ArrowSchema>() == size_of::<polars_ffi::ArrowSchema>());
    assert!(align_of::<FFI_ArrowSchema>() == align_of::<polars_ffi::ArrowSchema>());
};

/// Turns arrow-rs record batches into a Polars [`DataFrame`] with one chunk per non-empty batch.
///
/// `schema` gives the column names and types; every batch must match it. Zero batches (or only
/// empty ones) give an empty frame with the same columns.
pub fn record_batches_to_dataframe(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<DataFrame> {
    for (n, batch) in batches.iter().enumerate() {
        check_batch_matches(schema, batch)
            .with_context(|| format!("record batch {n} does not match the schema"))?;
    }
    let batches: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
    let height = batches.iter().map(|b| b.num_rows()).sum();

    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let arrays: Vec<ArrayRef> = if batches.is_empty() {
            vec![new_empty_array(field.data_type())]
        } else {
            batches.iter().map(|b| Arc::clone(b.column(i))).collect()
        };
        let column = column_to_polars(field, &arrays).with_context(|| {
            format!(
                "column `{}` ({}) cannot be passed to Polars",
                field.name(),
                field.data_type()
            )
        })?;
        columns.push(column);
    }
    DataFrame::new(height, columns)
        .context("cannot build a Polars DataFrame from the record batches")
}

/// Turns a Polars [`DataFrame`] into arrow-rs record batches, one per non-empty chunk, with
/// types normalised as described in the [module documentation](self).
///
/// The frame is rechunked only if its columns' chunks do not line up.
pub fn dataframe_to_record_batches(mut df: DataFrame) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    if !chunks_aligned(&df) {
        df.rechunk_mut();
    }
    let compat = CompatLevel::newest();

    let mut fields = Vec::with_capacity(df.width());
    for column in df.columns() {
        let polars_field = column.field().to_arrow(compat);
        let exported = polars_ffi::export_field_to_c(&polars_field);
        let field = Field::try_from(polars_schema_as_arrow_rs(&exported)).with_context(|| {
            format!(
                "column `{}`: cannot describe Polars type {} to Arrow",
                column.name(),
                column.dtype()
            )
        })?;
        fields.push(Field::new(
            field.name(),
            output_type(field.data_type()),
            true,
        ));
    }
    let schema = Arc::new(Schema::new(fields));

    let series: Vec<&Series> = df
        .columns()
        .iter()
        .map(Column::as_materialized_series)
        .collect();
    let Some(first) = series.first() else {
        // No columns: keep the row count, which a batch without columns can carry.
        let batches = if df.height() == 0 {
            Vec::new()
        } else {
            let options = RecordBatchOptions::new().with_row_count(Some(df.height()));
            vec![RecordBatch::try_new_with_options(
                Arc::clone(&schema),
                Vec::new(),
                &options,
            )?]
        };
        return Ok((schema, batches));
    };

    let mut batches = Vec::with_capacity(first.n_chunks());
    for chunk_idx in 0..first.n_chunks() {
        if first.chunks()[chunk_idx].is_empty() {
            continue;
        }
        let columns = series
            .iter()
            .zip(schema.fields())
            .map(|(s, field)| chunk_to_arrow_rs(s.to_arrow(chunk_idx, compat), field))
            .collect::<Result<Vec<_>>>()?;
        batches.push(
            RecordBatch::try_new(Arc::clone(&schema), columns)
                .context("cannot assemble a record batch from Polars chunks")?,
        );
    }
    Ok((schema, batches))
}

/// Checks that a batch has the schema's column count and types (names may differ, as they do
/// between DataFusion plans and their output schema).
fn check_batch_matches(schema: &SchemaRef, batch: &RecordBatch) -> Result<()> {
    if batch.num_columns() != schema.fields().len() {
        bail!(
            "it has {} columns, the schema {}",
            batch.num_columns(),
            schema.fields().len()
        );
    }
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        if field.data_type() != array.data_type() {
            bail!(
                "column `{}` is {} in the batch but {} in the schema",
                field.name(),
                array.data_type(),
                field.data_type()
            );
        }
    }
    Ok(())
}

/// Builds one Polars column from one arrow-rs array per chunk.
fn column_to_polars(field: &FieldRef, arrays: &[ArrayRef]) -> Result<Column> {
    let mut chunks = Vec::with_capacity(arrays.len());
    let mut dtype = None;
    for array in arrays {
        let array = match polars_input_type(array.data_type()) {
            Some(target) => cast(array, &target)?,
            None => Arc::clone(array),
        };
        if !polars_can_import(array.data_type()) {
            bail!("Rust models do not support this type yet");
        }
        let (chunk_type, chunk) = array_to_polars(&array)?;
        dtype = Some(chunk_type);
        chunks.push(chunk);
    }
    let Some(dtype) = dtype else {
        bail!("no chunks were given");
    };
    let polars_field = PolarsField::new(field.name().as_str().into(), dtype, field.is_nullable());
    Ok(Series::try_from((&polars_field, chunks))?.into())
}

/// The type to cast an arrow-rs array to before handing it to Polars, for types this build of
/// Polars cannot import directly; `None` when the type can go as it is.
fn polars_input_type(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => {
            Some(DataType::Int32)
        }
        DataType::Float16 => Some(DataType::Float32),
        DataType::Dictionary(_, values) => {
            Some(polars_input_type(values).unwrap_or_else(|| values.as_ref().clone()))
        }
        DataType::List(item) => polars_input_type(item.data_type())
            .map(|t| DataType::List(Arc::new(item.as_ref().clone().with_data_type(t)))),
        DataType::LargeList(item) => polars_input_type(item.data_type())
            .map(|t| DataType::LargeList(Arc::new(item.as_ref().clone().with_data_type(t)))),
        _ => None,
    }
}

/// Whether this build of Polars can import arrays of `data_type` (after [`polars_input_type`]).
/// Checked up front because Polars panics on some types it was built without.
fn polars_can_import(data_type: &DataType) -> bool {
    match data_type {
        DataType::Null
        | DataType::Boolean
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_)
        | DataType::Date32
        | DataType::Date64
        | DataType::Timestamp(_, _)
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => true,
        DataType::List(item) | DataType::LargeList(item) => polars_can_import(item.data_type()),
        _ => false,
    }
}

/// Shares one arrow-rs array with Polars through the C data interface.
fn array_to_polars(
    array: &ArrayRef,
) -> Result<(polars_arrow::datatypes::ArrowDataType, Box<dyn PolarsArray>)> {
    let (ffi_array, ffi_schema) = to_ffi(&array.to_data())?;
    // SAFETY: `ffi_schema` was just produced by arrow-rs and is a valid, unreleased ArrowSchema;
    // the reference cast is sound by the layout identity checked at the top of this module, and
    // `ffi_schema` outlives the borrow (arrow-rs releases it when it is dropped below).
    let field = unsafe { polars_ffi::import_field_from_c(arrow_rs_schema_as_polars(&ffi_schema)) }?;
    // SAFETY: `ffi_array` was just produced by arrow-rs for this very data and matches `field`.
    // Ownership moves to polars-arrow, which calls arrow-rs's release callback once the
    // imported buffers are no longer used, keeping the arrow-rs buffers alive until then.
    let imported = unsafe {
        polars_ffi::import_array_from_c(arrow_rs_array_into_polars(ffi_array), field.dtype.clone())
    }?;
    Ok((field.dtype, imported))
}

/// Shares one Polars chunk with arrow-rs through the C data interface, then casts it to the
/// normalised output type of `field`.
fn chunk_to_arrow_rs(chunk: Box<dyn PolarsArray>, field: &FieldRef) -> Result<ArrayRef> {
    let name = field.name();
    let exported_schema = polars_ffi::export_field_to_c(&PolarsField::new(
        name.as_str().into(),
        chunk.dtype().clone(),
        true,
    ));
    let exported_array = polars_array_into_arrow_rs(polars_ffi::export_array_to_c(chunk));
    // SAFETY: both structs were just exported by polars-arrow from the same chunk, so the schema
    // describes the array; the reference cast is sound by the layout identity checked at the top
    // of this module. arrow-rs takes ownership of the array and calls polars-arrow's release
    // callback when the last buffer is dropped; polars-arrow releases the schema when
    // `exported_schema` is dropped, after `from_ffi` has only read it.
    let data = unsafe { from_ffi(exported_array, polars_schema_as_arrow_rs(&exported_schema)) }
        .with_context(|| {
            format!("column `{name}`: cannot import the Polars chunk into arrow-rs")
        })?;
    let array = make_array(data);
    if array.data_type() == field.data_type() {
        return Ok(array);
    }
    // `safe: false` turns values that do not fit (a `UInt64` above `i64::MAX`) into errors
    // rather than nulls.
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(&array, field.data_type(), &options).with_context(|| {
        format!(
            "column `{name}`: cannot convert {} to {}",
            array.data_type(),
            field.data_type()
        )
    })
}

/// The plain Arrow type a Polars output column of `data_type` is written as.
fn output_type(data_type: &DataType) -> DataType {
    let field = |f: &FieldRef| Arc::new(Field::new(f.name(), output_type(f.data_type()), true));
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::List(f) | DataType::LargeList(f) => DataType::List(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        other => other.clone(),
    }
}

/// Whether every column has the same chunk lengths, so that chunk `i` of all columns can form
/// one record batch.
fn chunks_aligned(df: &DataFrame) -> bool {
    let mut lengths = df.columns().iter().map(|c| {
        c.as_materialized_series()
            .chunks()
            .iter()
            .map(|a| a.len())
            .collect::<Vec<_>>()
    });
    match lengths.next() {
        None => true,
        Some(first) => lengths.all(|l| l == first),
    }
}

/// Moves an exported arrow-rs C array into a polars-arrow one.
fn arrow_rs_array_into_polars(array: FFI_ArrowArray) -> polars_ffi::ArrowArray {
    // The source must not be dropped: its `Drop` would call the release callback, which now
    // belongs to the copy.
    let array = ManuallyDrop::new(array);
    // SAFETY: the two types are layout-identical `#[repr(C)]` structs (checked above). The C data
    // interface allows moving the struct by bitwise copy: the release callback and private data
    // travel with it and do not depend on its address. The source is never used or dropped again.
    unsafe { std::ptr::read((&*array as *const FFI_ArrowArray).cast::<polars_ffi::ArrowArray>()) }
}

/// Moves an exported polars-arrow C array into an arrow-rs one.
fn polars_array_into_arrow_rs(array: polars_ffi::ArrowArray) -> FFI_ArrowArray {
    let array = ManuallyDrop::new(array);
    // SAFETY: as in `arrow_rs_array_into_polars`, in the other direction.
    unsafe { std::ptr::read((&*array as *const polars_ffi::ArrowArray).cast::<FFI_ArrowArray>()) }
}

/// Views an arrow-rs C schema as a polars-arrow one, without taking ownership.
fn arrow_rs_schema_as_polars(schema: &FFI_ArrowSchema) -> &polars_ffi::ArrowSchema {
    // SAFETY: layout-identical `#[repr(C)]` structs (checked above); the borrow keeps the owner,
    // which alone releases the schema, alive and unmoved.
    unsafe { &*(schema as *const FFI_ArrowSchema).cast::<polars_ffi::ArrowSchema>() }
}

/// Views a polars-arrow C schema as an arrow-rs one, without taking ownership.
fn polars_schema_as_arrow_rs(schema: &polars_ffi::ArrowSchema) -> &FFI_ArrowSchema {
    // SAFETY: as in `arrow_rs_schema_as_polars`, in the other direction.
    unsafe { &*(schema as *const polars_ffi::ArrowSchema).cast::<FFI_ArrowSchema>() }
}
