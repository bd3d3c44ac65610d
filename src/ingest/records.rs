//! From raw payloads to Arrow: the raw table's layout (declared, inferred from the first
//! batch, or read from the existing table), conversion ([`convert`]: vectorized for regular
//! records, per record for the others), and dead letters for records that fail parsing,
//! validation or type conversion.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use crate::lakehouse::schema::sql_type;

mod convert;
pub use convert::{Converted, convert_records};

/// Columns raw tables get beside the payload's (the coordinate columns depend on the source
/// kind). Not `_file` or `_partition`: Iceberg readers reserve those names.
pub const METADATA_COLUMNS: [&str; 13] = [
    "_source", "_record_id", "_path", "_line", "_topic", "_kafka_partition", "_offset", "_key", "_webhook_id", "_provider", "_event_type",
    "_received_at", "_loaded_at",
];
/// Where payload fields without a column go: every one when the schema does not evolve, and
/// those named like a metadata column (which cannot become columns) when it does.
pub const EXTRA_COLUMN: &str = "_extra";

/// Whether a payload field's name is taken by a column `lake` fills itself.
fn reserved(key: &str) -> bool {
    METADATA_COLUMNS.contains(&key) || key == EXTRA_COLUMN
}

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coordinates {
    /// A line of a file (or of stdin, `-`); for JSON-array files, the element's position.
    File { path: String, line: u64 },
    /// A Kafka message.
    Kafka { topic: String, partition: i32, offset: i64, key: Option<String> },
    /// A webhook, at its line of the write-ahead log.
    Webhook { log: String, line: u64, id: String, provider: String },
}

impl Coordinates {
    /// The stream the record belongs to (a file, a topic partition): positions are per stream.
    pub fn stream(&self) -> String {
        match self {
            Coordinates::File { path, .. } => path.clone(),
            Coordinates::Kafka { topic, partition, .. } => format!("{topic}/{partition}"),
            Coordinates::Webhook { log, .. } => log.clone(),
        }
    }

    /// Records of the stream up to and including this one (a line number; an offset + 1), so
    /// that a stored position is the count of records consumed (for Kafka: the next offset).
    pub fn consumed(&self) -> u64 {
        match self {
            Coordinates::File { line, .. } | Coordinates::Webhook { line, .. } => *line,
            Coordinates::Kafka { offset, .. } => *offset as u64 + 1,
        }
    }

    /// The record's id, the same shape for every kind (`_record_id`): `<path>:<line>`,
    /// `<topic>/<partition>/<offset>`, or `<provider>:<webhook id>`.
    pub fn record_id(&self) -> String {
        match self {
            Coordinates::File { path, line } => format!("{path}:{line}"),
            Coordinates::Kafka { topic, partition, offset, .. } => format!("{topic}/{partition}/{offset}"),
            Coordinates::Webhook { id, provider, .. } => format!("{provider}:{id}"),
        }
    }
}

/// Which coordinate columns a source fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `_path`, `_line` (every kind also fills `_record_id`).
    Files,
    /// `_topic`, `_kafka_partition`, `_offset`, `_key`.
    Kafka,
    /// `_webhook_id`, `_provider`.
    Webhook,
}

impl SourceKind {
    /// `_record_id`, then the kind's own coordinate columns.
    fn fields(self) -> Vec<Field> {
        let mut fields = vec![Field::new("_record_id", DataType::Utf8, true)];
        fields.extend(self.own_fields());
        fields
    }

    fn own_fields(self) -> Vec<Field> {
        match self {
            SourceKind::Files => vec![Field::new("_path", DataType::Utf8, true), Field::new("_line", DataType::Int64, true)],
            SourceKind::Kafka => vec![
                Field::new("_topic", DataType::Utf8, true),
                Field::new("_kafka_partition", DataType::Int32, true),
                Field::new("_offset", DataType::Int64, true),
                Field::new("_key", DataType::Utf8, true),
            ],
            SourceKind::Webhook => vec![Field::new("_webhook_id", DataType::Utf8, true), Field::new("_provider", DataType::Utf8, true)],
        }
    }

    fn arrays(self, records: &[&RawRecord]) -> Vec<ArrayRef> {
        let ids: ArrayRef = Arc::new(arrow::array::StringArray::from_iter_values(records.iter().map(|r| r.at.record_id())));
        let mut arrays = vec![ids];
        arrays.extend(self.own_arrays(records));
        arrays
    }

    fn own_arrays(self, records: &[&RawRecord]) -> Vec<ArrayRef> {
        match self {
            SourceKind::Files => {
                let (mut paths, mut lines) = (Vec::new(), Vec::new());
                for r in records {
                    match &r.at {
                        Coordinates::File { path, line } => {
                            paths.push(Some(path.as_str()));
                            lines.push(Some(*line as i64));
                        }
                        _ => {
                            paths.push(None);
                            lines.push(None);
                        }
                    }
                }
                vec![Arc::new(arrow::array::StringArray::from(paths)), Arc::new(arrow::array::Int64Array::from(lines))]
            }
            SourceKind::Kafka => {
                let (mut topics, mut partitions, mut offsets, mut keys) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for r in records {
                    match &r.at {
                        Coordinates::Kafka { topic, partition, offset, key } => {
                            topics.push(Some(topic.as_str()));
                            partitions.push(Some(*partition));
                            offsets.push(Some(*offset));
                            keys.push(key.as_deref());
                        }
                        _ => {
                            topics.push(None);
                            partitions.push(None);
                            offsets.push(None);
                            keys.push(None);
                        }
                    }
                }
                vec![
                    Arc::new(arrow::array::StringArray::from(topics)),
                    Arc::new(arrow::array::Int32Array::from(partitions)),
                    Arc::new(arrow::array::Int64Array::from(offsets)),
                    Arc::new(arrow::array::StringArray::from(keys)),
                ]
            }
            SourceKind::Webhook => {
                let (mut ids, mut providers) = (Vec::new(), Vec::new());
                for r in records {
                    match &r.at {
                        Coordinates::Webhook { id, provider, .. } => {
                            ids.push(Some(id.as_str()));
                            providers.push(Some(provider.as_str()));
                        }
                        _ => {
                            ids.push(None);
                            providers.push(None);
                        }
                    }
                }
                vec![Arc::new(arrow::array::StringArray::from(ids)), Arc::new(arrow::array::StringArray::from(providers))]
            }
        }
    }
}

/// One record as read, before conversion.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub payload: String,
    pub at: Coordinates,
    /// Microseconds since the epoch.
    pub received_at: i64,
    /// The event type the transport gave (a webhook's topic header), if any.
    pub event_type: Option<String>,
}

/// A record that could not be stored in the raw table.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// `parse`, `validation` or `type`.
    pub error_type: &'static str,
    pub message: String,
    pub record: RawRecord,
}

/// Column types a payload field can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    BigInt,
    Int,
    Double,
    Boolean,
    Varchar,
    TimestampTz,
    Date,
}

impl ColumnType {
    pub fn parse(name: &str) -> Result<Self> {
        let t = sql_type(name).ok_or_else(|| anyhow!("unknown column type `{name}`"))?;
        Self::of_arrow(&t).ok_or_else(|| anyhow!("column type `{name}` is not supported for ingest (use bigint, int, double, boolean, varchar, timestamptz or date)"))
    }

    pub fn of_arrow(t: &DataType) -> Option<Self> {
        Some(match t {
            DataType::Int64 => ColumnType::BigInt,
            DataType::Int32 => ColumnType::Int,
            DataType::Float64 => ColumnType::Double,
            DataType::Boolean => ColumnType::Boolean,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Varchar,
            DataType::Timestamp(_, Some(_)) => ColumnType::TimestampTz,
            DataType::Date32 => ColumnType::Date,
            _ => return None,
        })
    }

    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Int => DataType::Int32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Varchar => DataType::Utf8,
            ColumnType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            ColumnType::Date => DataType::Date32,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ColumnType::BigInt => "bigint",
            ColumnType::Int => "int",
            ColumnType::Double => "double",
            ColumnType::Boolean => "boolean",
            ColumnType::Varchar => "varchar",
            ColumnType::TimestampTz => "timestamptz",
            ColumnType::Date => "date",
        }
    }

    /// The type a first value suggests (`None` for null).
    fn infer(value: &Value) -> Option<Self> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => ColumnType::Boolean,
            Value::Number(n) if n.is_i64() => ColumnType::BigInt,
            Value::Number(_) => ColumnType::Double,
            Value::String(s) if parse_timestamp(s).is_some() && s.len() >= 16 => ColumnType::TimestampTz,
            _ => ColumnType::Varchar,
        })
    }

    /// The wider of two inferred types.
    fn widen(self, other: Self) -> Self {
        match (self, other) {
            (a, b) if a == b => a,
            (ColumnType::BigInt, ColumnType::Double) | (ColumnType::Double, ColumnType::BigInt) => ColumnType::Double,
            _ => ColumnType::Varchar,
        }
    }
}

/// An ISO-8601 timestamp with a zone (`2026-11-30T10:00:00+01:00`, `…Z`), or without one
/// (read as UTC), in microseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc).timestamp_micros());
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// The payload columns of a raw table and how records fill them.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Payload columns in order, with the dotted path each is read from.
    pub columns: Vec<(String, ColumnType, Vec<String>)>,
    pub required: Vec<String>,
    pub evolve: bool,
    /// Whether unknown fields are kept in `_extra` (tables without `evolve`).
    pub extra: bool,
    pub event_type: Option<Vec<String>>,
    pub kind: SourceKind,
}

fn path(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_string).collect()
}

/// The fields of `value` that no column's path takes: a field mapped whole is taken; an object
/// whose inner fields are mapped (`customer.email`) keeps its other fields. With `evolve`,
/// unmapped top-level fields have columns of their own (or are null so far), except those
/// named like a metadata column.
fn leftover(value: &Value, paths: &[&[String]], evolve: bool) -> serde_json::Map<String, Value> {
    let Value::Object(map) = value else { return serde_json::Map::new() };
    let mut rest = serde_json::Map::new();
    for (k, v) in map {
        let tails: Vec<&[String]> = paths.iter().filter(|p| p[0] == *k).map(|p| &p[1..]).collect();
        if tails.iter().any(|t| t.is_empty()) {
            continue;
        }
        if tails.is_empty() {
            if !evolve || reserved(k) {
                rest.insert(k.clone(), v.clone());
            }
            continue;
        }
        match v {
            Value::Object(_) => {
                let inner = leftover(v, &tails, false);
                if !inner.is_empty() {
                    rest.insert(k.clone(), Value::Object(inner));
                }
            }
            // A path into something that is not an object takes nothing from it.
            other => {
                rest.insert(k.clone(), other.clone());
            }
        }
    }
    rest
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = value;
    for part in path {
        v = match v {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

impl Layout {
    /// A layout from declared columns (in the order given), the existing table's schema, or
    /// (when neither) inferred from `sample`: every top-level field in order of appearance,
    /// typed by its values.
    pub fn new(
        declared: &BTreeMap<String, String>,
        map: &BTreeMap<String, String>,
        required: &[String],
        evolve: bool,
        event_type: Option<&str>,
        kind: SourceKind,
        table: Option<&Schema>,
        sample: &[Value],
    ) -> Result<Self> {
        let mut columns: Vec<(String, ColumnType)> = Vec::new();
        // Without evolve, fields without a column are kept in `_extra` (added to a table
        // that lacks it); with evolve, a table that has it goes on filling it.
        let mut extra = !evolve;
        if let Some(schema) = table {
            extra |= schema.field_with_name(EXTRA_COLUMN).is_ok();
            for f in schema.fields() {
                let name = f.name();
                if METADATA_COLUMNS.contains(&name.as_str()) || name == EXTRA_COLUMN {
                    continue;
                }
                let ty = ColumnType::of_arrow(f.data_type())
                    .ok_or_else(|| anyhow!("column `{name}` of the raw table has type {} which ingest cannot fill", f.data_type()))?;
                columns.push((name.clone(), ty));
            }
        } else if !declared.is_empty() {
            for (name, ty) in declared {
                columns.push((name.clone(), ColumnType::parse(ty).map_err(|e| anyhow!("column `{name}`: {e}"))?));
            }
        } else {
            let mut types: Vec<(String, Option<ColumnType>)> = Vec::new();
            for value in sample {
                let Value::Object(map) = value else { continue };
                for (key, v) in map {
                    if reserved(key) {
                        continue;
                    }
                    let inferred = ColumnType::infer(v);
                    match types.iter_mut().find(|(k, _)| k == key) {
                        Some((_, slot)) => {
                            *slot = match (*slot, inferred) {
                                (Some(a), Some(b)) => Some(a.widen(b)),
                                (a, b) => a.or(b),
                            }
                        }
                        None => types.push((key.clone(), inferred)),
                    }
                }
            }
            columns = types.into_iter().map(|(k, t)| (k, t.unwrap_or(ColumnType::Varchar))).collect();
        }
        for column in map.keys().chain(required) {
            if !columns.iter().any(|(c, _)| c == column) {
                bail!("`{column}` is mapped or required but is not a column; columns: {}", columns.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", "));
            }
        }
        let columns = columns
            .into_iter()
            .map(|(name, ty)| {
                let p = map.get(&name).map(|m| path(m)).unwrap_or_else(|| vec![name.clone()]);
                (name, ty, p)
            })
            .collect();
        Ok(Layout { columns, required: required.to_vec(), evolve, extra, event_type: event_type.map(path), kind })
    }

    /// The Arrow schema of the raw table.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> =
            self.columns.iter().map(|(name, ty, _)| Field::new(name, ty.arrow(), true)).collect();
        if self.extra {
            fields.push(Field::new(EXTRA_COLUMN, DataType::Utf8, true));
        }
        fields.push(Field::new("_source", DataType::Utf8, true));
        fields.extend(self.kind.fields());
        fields.push(Field::new("_event_type", DataType::Utf8, true));
        fields.push(Field::new("_received_at", ColumnType::TimestampTz.arrow(), true));
        fields.push(Field::new("_loaded_at", ColumnType::TimestampTz.arrow(), true));
        Arc::new(Schema::new(fields))
    }
}

/// The dead-letter table's rows.
pub fn dead_letter_batch(source: &str, kind: SourceKind, dead: &[DeadLetter], loaded_at: i64) -> Result<RecordBatch> {
    let ts = ColumnType::TimestampTz.arrow();
    let mut fields = vec![
        Field::new("error_type", DataType::Utf8, true),
        Field::new("error_message", DataType::Utf8, true),
        Field::new("raw_payload", DataType::Utf8, true),
        Field::new("_source", DataType::Utf8, true),
    ];
    fields.extend(kind.fields());
    fields.push(Field::new("_received_at", ts.clone(), true));
    fields.push(Field::new("_loaded_at", ts, true));
    let n = dead.len();
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(arrow::array::StringArray::from_iter(dead.iter().map(|d| Some(d.error_type)))),
        Arc::new(arrow::array::StringArray::from_iter(dead.iter().map(|d| Some(d.message.as_str())))),
        Arc::new(arrow::array::StringArray::from_iter(dead.iter().map(|d| Some(d.record.payload.as_str())))),
        Arc::new(arrow::array::StringArray::from(vec![Some(source); n])),
    ];
    arrays.extend(kind.arrays(&dead.iter().map(|d| &d.record).collect::<Vec<_>>()));
    arrays.push(Arc::new(
        arrow::array::TimestampMicrosecondArray::from_iter_values(dead.iter().map(|d| d.record.received_at)).with_timezone("+00:00"),
    ));
    arrays.push(Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![loaded_at; n]).with_timezone("+00:00")));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}
