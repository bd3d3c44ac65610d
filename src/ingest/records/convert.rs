//! Records to Arrow rows: the regular ones of a batch vectorized ([`crate::ingest::decode`]),
//! the others one by one through `serde_json::Value` (dead letters, `_extra`, `evolve`), rows
//! in the order of the records.

use std::sync::Arc;

use anyhow::Result;
use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use chrono::NaiveDate;
use serde_json::Value;

use super::{ColumnType, DeadLetter, Layout, RawRecord, leftover, lookup, parse_timestamp, reserved};

/// One converted value.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    I64(i64),
    I32(i32),
    F64(f64),
    Bool(bool),
    Str(String),
    Ts(i64),
    Date(i32),
}

fn convert(value: &Value, ty: ColumnType) -> std::result::Result<Cell, String> {
    let fail = || Err(format!("expected {}, got {}", ty.name(), truncate(&value.to_string(), 60)));
    if value.is_null() {
        return Ok(Cell::Null);
    }
    Ok(match ty {
        ColumnType::BigInt => match value {
            Value::Number(n) => match n.as_i64() {
                Some(v) => Cell::I64(v),
                None => return fail(),
            },
            Value::String(s) => match s.trim().parse() {
                Ok(v) => Cell::I64(v),
                Err(_) => return fail(),
            },
            _ => return fail(),
        },
        ColumnType::Int => match value {
            Value::Number(n) => match n.as_i64().and_then(|v| i32::try_from(v).ok()) {
                Some(v) => Cell::I32(v),
                None => return fail(),
            },
            Value::String(s) => match s.trim().parse() {
                Ok(v) => Cell::I32(v),
                Err(_) => return fail(),
            },
            _ => return fail(),
        },
        ColumnType::Double => match value {
            Value::Number(n) => Cell::F64(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => match s.trim().parse() {
                Ok(v) => Cell::F64(v),
                Err(_) => return fail(),
            },
            _ => return fail(),
        },
        ColumnType::Boolean => match value {
            Value::Bool(b) => Cell::Bool(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Cell::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Cell::Bool(false),
            _ => return fail(),
        },
        ColumnType::Varchar => match value {
            Value::String(s) => Cell::Str(s.clone()),
            other => Cell::Str(other.to_string()),
        },
        ColumnType::TimestampTz => match value {
            Value::String(s) => match parse_timestamp(s) {
                Some(v) => Cell::Ts(v),
                None => return fail(),
            },
            _ => return fail(),
        },
        ColumnType::Date => match value {
            Value::String(s) => match NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
                Ok(d) => Cell::Date((d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32),
                Err(_) => return fail(),
            },
            _ => return fail(),
        },
    })
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

/// The rows of one flush, converted, and the records that could not be.
pub struct Converted {
    pub batch: RecordBatch,
    pub dead: Vec<DeadLetter>,
    /// Columns `evolve` added in this flush.
    pub added_columns: Vec<String>,
}

/// Converts `records` into a batch of the layout (growing it when `evolve` meets new fields):
/// the regular records vectorized ([`super::decode`]), the others one by one, rows in the
/// order of the records.
pub fn convert_records(layout: &mut Layout, source: &str, records: Vec<RawRecord>, loaded_at: i64) -> Result<Converted> {
    let total = records.len();
    let (regular, decoded) = crate::ingest::decode::decode(layout, &records);
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    for (record, regular) in records.into_iter().zip(&regular) {
        if *regular { fast.push(record) } else { slow.push(record) }
    }
    tracing::debug!("ingest {source}: {} of {total} records decoded vectorized", fast.len());
    let each = convert_each(layout, slow);
    // Where each row comes from, in record order: (0, regular row) or (1, row converted alone).
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(fast.len() + each.kept.len());
    let (mut f, mut s, mut converted) = (0, 0, each.kept_flags.iter());
    for regular in &regular {
        if *regular {
            order.push((0, f));
            f += 1;
        } else if *converted.next().expect("one flag per record") {
            order.push((1, s));
            s += 1;
        }
    }
    let kept: Vec<&RawRecord> = order.iter().map(|&(from, i)| if from == 0 { &fast[i] } else { &each.kept[i] }).collect();

    let schema = layout.schema();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, ((_, ty, _), column)) in layout.columns.iter().zip(&each.cells).enumerate() {
        let alone = build_array(*ty, column);
        let array = match &decoded {
            None => alone,
            Some(d) => {
                let vectorized = d.columns.get(i).cloned().unwrap_or_else(|| arrow::array::new_null_array(&ty.arrow(), fast.len()));
                // Every row regular (the others, if any, were dead letters): no copy needed.
                if each.kept.is_empty() { vectorized } else { arrow::compute::interleave(&[vectorized.as_ref(), alone.as_ref()], &order)? }
            }
        };
        arrays.push(array);
    }
    let merge = |regular: &dyn Fn(usize) -> Option<String>, alone: &[Option<String>]| -> Vec<Option<String>> {
        order.iter().map(|&(from, i)| if from == 0 { regular(i) } else { alone[i].clone() }).collect()
    };
    if layout.extra {
        arrays.push(Arc::new(arrow::array::StringArray::from(merge(&|_| None, &each.extra))));
    }
    let event_types = merge(&|i| decoded.as_ref().and_then(|d| d.event_types[i].clone()), &each.event_types);
    let n = kept.len();
    arrays.push(Arc::new(arrow::array::StringArray::from(vec![Some(source); n])));
    arrays.extend(layout.kind.arrays(&kept));
    arrays.push(Arc::new(arrow::array::StringArray::from(event_types)));
    arrays.push(Arc::new(
        arrow::array::TimestampMicrosecondArray::from_iter_values(kept.iter().map(|r| r.received_at)).with_timezone("+00:00"),
    ));
    arrays.push(Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![loaded_at; n]).with_timezone("+00:00")));
    let batch = RecordBatch::try_new(schema, arrays)?;
    Ok(Converted { batch, dead: each.dead, added_columns: each.added_columns })
}

/// Records converted one at a time (through `serde_json::Value`).
struct Each {
    /// Per column of the layout (as it is after these records), a cell per kept record.
    cells: Vec<Vec<Cell>>,
    /// `_extra` per kept record (when the layout has it).
    extra: Vec<Option<String>>,
    event_types: Vec<Option<String>>,
    kept: Vec<RawRecord>,
    /// Per record given: whether it was kept (else it is a dead letter).
    kept_flags: Vec<bool>,
    dead: Vec<DeadLetter>,
    added_columns: Vec<String>,
}

/// Converts `records` one by one, growing the layout when `evolve` meets new fields.
fn convert_each(layout: &mut Layout, records: Vec<RawRecord>) -> Each {
    let mut cells: Vec<Vec<Cell>> = vec![Vec::with_capacity(records.len()); layout.columns.len()];
    let mut extra: Vec<Option<String>> = Vec::new();
    let mut event_types: Vec<Option<String>> = Vec::new();
    let mut kept: Vec<RawRecord> = Vec::with_capacity(records.len());
    let mut kept_flags = Vec::with_capacity(records.len());
    let mut dead = Vec::new();
    let mut added_columns = Vec::new();
    'records: for record in records {
        let value: Value = match serde_json::from_str(&record.payload) {
            Ok(v @ Value::Object(_)) => v,
            Ok(other) => {
                let kind = match other { Value::Array(_) => "an array", Value::String(_) => "a string", Value::Number(_) => "a number", Value::Bool(_) => "a boolean", _ => "null" };
                kept_flags.push(false);
                dead.push(DeadLetter { error_type: "parse", message: format!("expected a JSON object, got {kind}"), record });
                continue;
            }
            Err(e) => {
                kept_flags.push(false);
                dead.push(DeadLetter { error_type: "parse", message: format!("invalid JSON: {e}"), record });
                continue;
            }
        };
        if layout.evolve {
            let Value::Object(map) = &value else { unreachable!() };
            for (key, v) in map {
                if reserved(key) {
                    if !layout.extra {
                        // Kept in `_extra`, which this flush adds.
                        layout.extra = true;
                        extra = vec![None; kept.len()];
                    }
                } else if !layout.columns.iter().any(|(c, _, p)| c == key || p[0] == *key)
                    && let Some(ty) = ColumnType::infer(v)
                {
                    layout.columns.push((key.clone(), ty, vec![key.clone()]));
                    cells.push(vec![Cell::Null; kept.len()]);
                    added_columns.push(key.clone());
                }
            }
        }
        let mut row = Vec::with_capacity(layout.columns.len());
        for (name, ty, p) in &layout.columns {
            let v = lookup(&value, p).unwrap_or(&Value::Null);
            match convert(v, *ty) {
                Ok(Cell::Null) if layout.required.contains(name) => {
                    kept_flags.push(false);
                    dead.push(DeadLetter { error_type: "validation", message: format!("required field `{}` is missing or null", p.join(".")), record });
                    continue 'records;
                }
                Ok(cell) => row.push(cell),
                Err(e) => {
                    kept_flags.push(false);
                    dead.push(DeadLetter { error_type: "type", message: format!("field `{}`: {e}", p.join(".")), record });
                    continue 'records;
                }
            }
        }
        for (column, cell) in cells.iter_mut().zip(row) {
            column.push(cell);
        }
        // What no column took, never dropped: into `_extra` (added to the table when needed).
        let paths: Vec<&[String]> = layout.columns.iter().map(|(_, _, p)| p.as_slice()).collect();
        let rest = leftover(&value, &paths, layout.evolve);
        if !rest.is_empty() && !layout.extra {
            layout.extra = true;
            extra = vec![None; kept.len()];
        }
        if layout.extra {
            extra.push((!rest.is_empty()).then(|| Value::Object(rest).to_string()));
        }
        event_types.push(
            layout
                .event_type
                .as_ref()
                .and_then(|p| lookup(&value, p))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .or_else(|| record.event_type.clone()),
        );
        kept_flags.push(true);
        kept.push(record);
    }

    Each { cells, extra, event_types, kept, kept_flags, dead, added_columns }
}

fn build_array(ty: ColumnType, cells: &[Cell]) -> ArrayRef {
    macro_rules! build {
        ($builder:expr, $variant:ident) => {{
            let mut b = $builder;
            for c in cells {
                match c {
                    Cell::$variant(v) => b.append_value(v.clone()),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match ty {
        ColumnType::BigInt => build!(Int64Builder::new(), I64),
        ColumnType::Int => build!(Int32Builder::new(), I32),
        ColumnType::Double => build!(Float64Builder::new(), F64),
        ColumnType::Boolean => build!(BooleanBuilder::new(), Bool),
        ColumnType::Varchar => build!(StringBuilder::new(), Str),
        ColumnType::TimestampTz => {
            let a = build!(TimestampMicrosecondBuilder::new(), Ts);
            let a = a.as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>().expect("timestamps").clone();
            Arc::new(a.with_timezone("+00:00"))
        }
        ColumnType::Date => build!(Date32Builder::new(), Date),
    }
}

