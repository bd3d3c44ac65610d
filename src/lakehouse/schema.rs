//! Mapping query output (Arrow) onto Iceberg schemas and partition specs.
//!
//! Query engines produce types Iceberg cannot store (string views, nanosecond timestamps,
//! unsigned ints, dictionaries). [`storable_arrow_schema`] maps them to the nearest Iceberg
//! type; [`evolve_schema`] keeps field ids stable across rebuilds; [`conform_batch`] casts
//! batches to the table's Arrow schema (field ids included) before they reach the writer.
//! [`parse_partition_field`] reads the `partition_by` entries models and ingest sources share.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, Schema as ArrowSchema, SchemaRef, TimeUnit};
use iceberg::arrow::{arrow_schema_to_schema_auto_assign_ids, schema_to_arrow_schema};
use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PartitionSpec, Schema, StructType, Transform,
    Type, UnboundPartitionSpec,
};

/// The Iceberg-storable version of a query's output schema: every field nullable, types mapped.
pub fn storable_arrow_schema(schema: &ArrowSchema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), storable_type(f.data_type()), true))
        .collect();
    Arc::new(ArrowSchema::new(fields))
}

fn storable_type(t: &DataType) -> DataType {
    use DataType::*;
    match t {
        Utf8View | LargeUtf8 => Utf8,
        BinaryView | LargeBinary => Binary,
        Int8 | Int16 | UInt8 | UInt16 => Int32,
        UInt32 | UInt64 => Int64,
        Float16 => Float32,
        Date64 => Date32,
        Null => Utf8,
        Timestamp(_, tz) => Timestamp(
            TimeUnit::Microsecond,
            tz.as_ref().map(|_| Arc::from("+00:00")),
        ),
        Time32(_) | Time64(_) => Time64(TimeUnit::Microsecond),
        Decimal256(p, s) if *p <= 38 => Decimal128(*p, *s),
        Dictionary(_, value) => storable_type(value),
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) | FixedSizeList(f, _) => {
            List(Arc::new(storable_field(f)))
        }
        Struct(fields) => Struct(fields.iter().map(|f| Arc::new(storable_field(f))).collect()),
        Map(f, sorted) => Map(Arc::new(storable_field(f)), *sorted),
        other => other.clone(),
    }
}

fn storable_field(f: &FieldRef) -> Field {
    Field::new(f.name(), storable_type(f.data_type()), f.is_nullable())
}

/// The Iceberg schema for a query output, reusing the field ids of `existing` for columns whose
/// name and type are unchanged; new or retyped columns get fresh ids above the table's last id.
pub fn evolve_schema(output: &ArrowSchema, existing: Option<(&Schema, i32)>) -> Result<Schema> {
    let storable = storable_arrow_schema(output);
    let fresh = arrow_schema_to_schema_auto_assign_ids(&storable)
        .map_err(|e| anyhow!("cannot store this output in Iceberg: {e}"))?;
    let Some((existing, last_column_id)) = existing else {
        return Ok(fresh);
    };
    let mut next_id = last_column_id.max(existing.highest_field_id()) + 1;
    let mut fields: Vec<NestedFieldRef> = Vec::new();
    for field in fresh.as_struct().fields() {
        match existing.as_struct().field_by_name(&field.name) {
            Some(old) if same_shape(&old.field_type, &field.field_type) => fields.push(old.clone()),
            _ => fields.push(Arc::new(reassign(field, &mut next_id))),
        }
    }
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| anyhow!("invalid schema: {e}"))
}

/// The same field with fresh ids for itself and all nested fields.
fn reassign(field: &NestedField, next_id: &mut i32) -> NestedField {
    let id = *next_id;
    *next_id += 1;
    let field_type = match field.field_type.as_ref() {
        Type::Struct(s) => Type::Struct(StructType::new(
            s.fields().iter().map(|f| Arc::new(reassign(f, next_id))).collect(),
        )),
        Type::List(l) => Type::List(ListType::new(Arc::new(reassign(&l.element_field, next_id)))),
        Type::Map(m) => Type::Map(MapType::new(
            Arc::new(reassign(&m.key_field, next_id)),
            Arc::new(reassign(&m.value_field, next_id)),
        )),
        p => p.clone(),
    };
    NestedField::new(id, &field.name, field_type, field.required)
}

/// Types equal up to field ids.
fn same_shape(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Primitive(x), Type::Primitive(y)) => x == y,
        (Type::Struct(x), Type::Struct(y)) => {
            x.fields().len() == y.fields().len()
                && x.fields().iter().zip(y.fields()).all(|(f, g)| {
                    f.name == g.name && same_shape(&f.field_type, &g.field_type)
                })
        }
        (Type::List(x), Type::List(y)) => {
            same_shape(&x.element_field.field_type, &y.element_field.field_type)
        }
        (Type::Map(x), Type::Map(y)) => {
            same_shape(&x.key_field.field_type, &y.key_field.field_type)
                && same_shape(&x.value_field.field_type, &y.value_field.field_type)
        }
        _ => false,
    }
}

/// Column names that `output` adds to, and removes from, `table` (top level).
pub fn column_changes(table: &Schema, output: &ArrowSchema) -> (Vec<String>, Vec<String>) {
    let added = output
        .fields()
        .iter()
        .filter(|f| table.field_by_name(f.name()).is_none())
        .map(|f| f.name().clone())
        .collect();
    let removed = table
        .as_struct()
        .fields()
        .iter()
        .filter(|f| output.field_with_name(&f.name).is_err())
        .map(|f| f.name.clone())
        .collect();
    (added, removed)
}

/// The Arrow schema (with field-id metadata) that the writer expects for `schema`.
pub fn writer_arrow_schema(schema: &Schema) -> Result<SchemaRef> {
    Ok(Arc::new(
        schema_to_arrow_schema(schema).map_err(|e| anyhow!("schema conversion failed: {e}"))?,
    ))
}

/// Cast `batch` to `target` by column name. Every target column must be present; extra columns
/// are an error (the caller decides schema changes before writing).
pub fn conform_batch(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| anyhow!("output has no column '{}'", field.name()))?;
        let column = if column.data_type() == field.data_type() {
            column.clone()
        } else {
            cast_with_options(column, field.data_type(), &options).with_context(|| {
                format!(
                    "column '{}': cannot convert {} to {}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                )
            })?
        };
        columns.push(column);
    }
    if batch.num_columns() > target.fields().len() {
        let extra: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .filter(|f| target.field_with_name(f.name()).is_err())
            .map(|f| f.name().as_str())
            .collect();
        bail!("output has columns the table lacks: {}", extra.join(", "));
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(target.clone(), columns, &options)?)
}

/// Build a partition spec from `(column, transform)` pairs such as `("created_at", "day")` or
/// `("customer_id", "bucket[16]")`. Partition field names follow Iceberg Java's convention.
pub fn partition_spec(schema: &Schema, fields: &[(String, String)]) -> Result<UnboundPartitionSpec> {
    let mut builder = PartitionSpec::builder(Arc::new(schema.clone()));
    for (column, transform) in fields {
        let parsed: Transform = transform
            .parse()
            .map_err(|_| anyhow!("partition_by: unknown transform '{transform}' for column '{column}' (use identity, year, month, day, hour, bucket[N] or truncate[N])"))?;
        if schema.field_by_name(column).is_none() {
            bail!("partition_by: the output has no column '{column}'");
        }
        let name = match parsed {
            Transform::Identity => column.clone(),
            Transform::Bucket(_) => format!("{column}_bucket"),
            Transform::Truncate(_) => format!("{column}_trunc"),
            Transform::Year => format!("{column}_year"),
            Transform::Month => format!("{column}_month"),
            Transform::Day => format!("{column}_day"),
            Transform::Hour => format!("{column}_hour"),
            _ => format!("{column}_{transform}"),
        };
        builder = builder
            .add_partition_field(column, name, parsed)
            .map_err(|e| anyhow!("partition_by {transform}({column}): {e}"))?;
    }
    Ok(builder
        .build()
        .map_err(|e| anyhow!("invalid partition spec: {e}"))?
        .into_unbound())
}

/// Whether `spec` (bound to the table) partitions the same way as `wanted`.
pub fn same_partitioning(spec: &PartitionSpec, wanted: &UnboundPartitionSpec) -> bool {
    spec.fields().len() == wanted.fields().len()
        && spec
            .fields()
            .iter()
            .zip(wanted.fields())
            .all(|(a, b)| a.source_id == b.source_id && a.transform == b.transform)
}

/// Arrow type of a SQL type name.
pub fn sql_type(ty: &str) -> Option<DataType> {
    let t = ty.trim().to_ascii_lowercase();
    if let Some(args) = t
        .strip_prefix("decimal(")
        .or_else(|| t.strip_prefix("numeric("))
        .and_then(|r| r.strip_suffix(')'))
    {
        let mut parts = args.split(',').map(|p| p.trim().parse::<i16>());
        let p = parts.next()?.ok()?;
        let s = parts.next().unwrap_or(Ok(0)).ok()?;
        return (1..=38).contains(&p).then_some(DataType::Decimal128(p as u8, s as i8));
    }
    Some(match t.as_str() {
        "bigint" | "int8" | "long" => DataType::Int64,
        "int" | "integer" | "int4" | "smallint" | "int2" => DataType::Int32,
        "double" | "float8" | "double precision" => DataType::Float64,
        "float" | "real" | "float4" => DataType::Float32,
        "varchar" | "string" | "text" | "char" => DataType::Utf8,
        "boolean" | "bool" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" | "timestamp without time zone" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" | "timestamp with time zone" => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        }
        _ => return None,
    })
}

/// One field of an Iceberg partition spec, as written in `partition_by`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionField {
    pub column: String,
    /// `identity`, `year`, `month`, `day`, `hour`, `bucket[N]` or `truncate[N]`.
    pub transform: String,
}

/// `col` → identity; `day(col)`; `bucket(16, col)` → `bucket[16]`.
pub fn parse_partition_field(s: &str) -> Option<PartitionField> {
    let s = s.trim();
    let Some(open) = s.find('(') else {
        return is_ident(s).then(|| PartitionField {
            column: s.to_string(),
            transform: "identity".into(),
        });
    };
    let func = s[..open].trim().to_ascii_lowercase();
    let inner = s[open + 1..].strip_suffix(')')?;
    let args: Vec<&str> = inner.split(',').map(str::trim).collect();
    match (func.as_str(), args.as_slice()) {
        ("identity" | "year" | "month" | "day" | "hour", [col]) if is_ident(col) => Some(PartitionField {
            column: col.to_string(),
            transform: func,
        }),
        ("bucket" | "truncate", [n, col]) if n.parse::<u32>().is_ok_and(|n| n > 0) && is_ident(col) => {
            Some(PartitionField {
                column: col.to_string(),
                transform: format!("{func}[{n}]"),
            })
        }
        _ => None,
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

