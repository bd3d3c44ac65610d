//! Vectorized decoding of a batch of JSON records into the raw table's payload columns, with
//! exactly the results of the per-record conversion in [`super::records`].
//!
//! Each payload is first scanned once with serde_json, without building a `Value` tree: the
//! scan validates the whole line as serde_json does, looks at every top-level key and the kind
//! of every value, and sorts the record into one of two groups:
//!
//! * **regular**: a JSON object whose keys are all columns (each once), whose required columns
//!   are present and not null, and whose values each convert one way only. Integer, boolean
//!   and string columns are then decoded in one go by arrow-json's [`arrow_json::Decoder`]
//!   over all regular lines of the batch; double, timestamp and date values, and nested objects
//!   or arrays in varchar columns (stored as compact JSON text), come from the scan itself,
//!   because arrow-json's number parsing, timestamp formats and lack of JSON-text columns
//!   differ from what `lake` has always stored.
//! * **irregular**: anything else (malformed JSON, not an object, unknown or duplicate keys,
//!   a field named like a metadata column, keys of mapped nested paths, strings where numbers
//!   belong, numbers in varchar columns, a missing required field, ...). These records go
//!   through the per-record conversion, which gives their dead letters, `_extra` values and
//!   `evolve` columns exactly as before.
//!
//! A regular record never becomes a dead letter and never changes the layout, so converting
//! the two groups separately and interleaving the rows in record order stores what converting
//! record by record stored.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use anyhow::Result;
use arrow::array::{Array, ArrayRef, Date32Array, Float64Array, StringArray, TimestampMicrosecondArray, new_null_array};
use arrow::datatypes::{Field, Schema};
use chrono::NaiveDate;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};

use super::records::{ColumnType, Layout, RawRecord, parse_timestamp};

/// The payload columns of the regular records of a batch, in the layout's column order.
pub struct Decoded {
    /// One array per layout column (as the layout was when the batch began).
    pub columns: Vec<ArrayRef>,
    /// `_event_type` per regular record.
    pub event_types: Vec<Option<String>>,
}

/// How a column of the layout is filled for regular records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// By arrow-json (bigint, int, boolean, varchar strings).
    Arrow,
    /// By the scan (double, timestamptz, date).
    Scan,
    /// Never: its path is nested (`map = { x = "a.b" }`), so regular records have it null.
    Null,
}

/// What the scan needs to know about the layout.
struct Plan {
    /// Top-level key → column index, for columns read from a top-level key.
    keys: HashMap<String, usize>,
    /// Per column, the top-level key it is read from (`None`: a nested path).
    key: Vec<Option<String>>,
    fill: Vec<Fill>,
    types: Vec<ColumnType>,
    required: Vec<bool>,
    /// The column whose string value is the `_event_type` (a top-level `event_type` key).
    event_column: Option<usize>,
}

impl Plan {
    /// `None` when no record of this layout can be regular.
    fn new(layout: &Layout) -> Option<Plan> {
        let n = layout.columns.len();
        let mut plan = Plan {
            keys: HashMap::new(),
            key: Vec::with_capacity(n),
            fill: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            required: Vec::with_capacity(n),
            event_column: None,
        };
        // Keys a regular line must not have: roots of nested paths (a key missing from
        // `keys` makes its line irregular).
        let mut nested_roots = Vec::new();
        for (i, (name, ty, path)) in layout.columns.iter().enumerate() {
            let required = layout.required.contains(name);
            plan.types.push(*ty);
            plan.required.push(required);
            if path.len() == 1 {
                if plan.keys.insert(path[0].clone(), i).is_some() {
                    return None; // two columns read one key
                }
                plan.key.push(Some(path[0].clone()));
                plan.fill.push(match ty {
                    ColumnType::BigInt | ColumnType::Int | ColumnType::Boolean | ColumnType::Varchar => Fill::Arrow,
                    ColumnType::Double | ColumnType::TimestampTz | ColumnType::Date => Fill::Scan,
                });
            } else {
                if required {
                    return None; // only lines with the nested root could have it
                }
                nested_roots.push(path[0].clone());
                plan.key.push(None);
                plan.fill.push(Fill::Null);
            }
        }
        if let Some(path) = &layout.event_type {
            match plan.keys.get(&path[0]) {
                Some(&i) if path.len() == 1 && plan.fill[i] == Fill::Arrow && plan.types[i] == ColumnType::Varchar => {
                    plan.event_column = Some(i)
                }
                _ => nested_roots.push(path[0].clone()),
            }
        }
        for root in nested_roots {
            plan.keys.remove(&root);
        }
        Some(plan)
    }
}

/// One value the scan keeps for a regular line.
#[derive(Clone)]
enum Kept {
    Absent,
    F64(f64),
    Micros(i64),
    Days(i32),
    /// A nested object or array in a varchar column, as compact JSON: a range of the batch's text.
    Json(usize, usize),
    /// The `_event_type` string.
    Event(String),
}

/// Why a line is not regular (never shown: the per-record path gives the real reason).
#[derive(Debug)]
struct Irregular;

impl fmt::Display for Irregular {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("irregular")
    }
}

impl std::error::Error for Irregular {}

impl serde::de::Error for Irregular {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Irregular
    }
}

/// The state of one line's scan: per column, seen / non-null and the value kept.
struct Line<'p> {
    plan: &'p Plan,
    /// The compact JSON text of nested values of the batch's regular lines, one after another.
    json: Vec<u8>,
    seen: Vec<bool>,
    present: Vec<bool>,
    kept: Vec<Kept>,
    event: Option<String>,
}

impl<'p> Line<'p> {
    fn new(plan: &'p Plan) -> Self {
        let n = plan.types.len();
        Line { plan, json: Vec::new(), seen: vec![false; n], present: vec![false; n], kept: vec![Kept::Absent; n], event: None }
    }

    fn reset(&mut self) {
        self.seen.fill(false);
        self.present.fill(false);
        self.kept.fill(Kept::Absent);
        self.event = None;
    }

    /// Scans `payload`; true when it is regular.
    fn scan(&mut self, payload: &str) -> bool {
        self.reset();
        let mark = self.json.len();
        let mut de = serde_json::Deserializer::from_str(payload);
        let regular = serde::Deserializer::deserialize_any(&mut de, TopLevel(self)).is_ok()
            && de.end().is_ok()
            && (0..self.seen.len()).all(|i| !self.plan.required[i] || self.present[i]);
        if !regular {
            self.json.truncate(mark);
        }
        regular
    }
}

/// The payload's top level: an object of known keys.
struct TopLevel<'a, 'p>(&'a mut Line<'p>);

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let line = self.0;
        while let Some(key) = map.next_key_seed(Key)? {
            let Some(&i) = line.plan.keys.get(key.as_ref()) else {
                return Err(A::Error::custom(Irregular));
            };
            if std::mem::replace(&mut line.seen[i], true) {
                return Err(A::Error::custom(Irregular)); // a duplicate key: the last one wins, per record
            }
            let event = line.plan.event_column == Some(i);
            let (present, kept) = map.next_value_seed(Cell { ty: line.plan.types[i], event, json: &mut line.json })?;
            line.present[i] = present;
            match kept {
                Kept::Event(s) => line.event = Some(s),
                other => line.kept[i] = other,
            }
        }
        Ok(())
    }
}

/// A key, borrowed from the payload unless it has escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// A top-level value of column type `ty`: (not null, what the scan keeps of it), or an error
/// when it would not convert the one way the per-record path converts it for sure.
struct Cell<'j> {
    ty: ColumnType,
    /// The value is also the `_event_type` (kept when a string).
    event: bool,
    /// Where nested values are written.
    json: &'j mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Cell<'_> {
    type Value = (bool, Kept);

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Cell<'_> {
    type Value = (bool, Kept);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        // A null `_event_type` field is stored as the text `null`: per record.
        if self.event { Err(E::custom(Irregular)) } else { Ok((false, Kept::Absent)) }
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        if self.ty == ColumnType::Boolean { Ok((true, Kept::Absent)) } else { Err(E::custom(Irregular)) }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match self.ty {
            ColumnType::BigInt => Ok((true, Kept::Absent)),
            ColumnType::Int if i32::try_from(v).is_ok() => Ok((true, Kept::Absent)),
            ColumnType::Double => Ok((true, Kept::F64(v as f64))),
            _ => Err(E::custom(Irregular)),
        }
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match self.ty {
            ColumnType::BigInt if i64::try_from(v).is_ok() => Ok((true, Kept::Absent)),
            ColumnType::Int if i32::try_from(v).is_ok() => Ok((true, Kept::Absent)),
            ColumnType::Double => Ok((true, Kept::F64(v as f64))),
            _ => Err(E::custom(Irregular)),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if self.ty == ColumnType::Double { Ok((true, Kept::F64(v))) } else { Err(E::custom(Irregular)) }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let kept = match self.ty {
            ColumnType::Varchar if self.event => Kept::Event(v.to_string()),
            ColumnType::Varchar => Kept::Absent,
            ColumnType::TimestampTz => Kept::Micros(parse_timestamp(v).ok_or_else(|| E::custom(Irregular))?),
            ColumnType::Date => match NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d") {
                Ok(d) => Kept::Days((d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32),
                Err(_) => return Err(E::custom(Irregular)),
            },
            _ => return Err(E::custom(Irregular)),
        };
        Ok((true, kept))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        if self.ty != ColumnType::Varchar || self.event {
            return Err(A::Error::custom(Irregular));
        }
        let start = self.json.len();
        Compact(self.json).visit_map(map)?;
        Ok((true, Kept::Json(start, self.json.len())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        if self.ty != ColumnType::Varchar || self.event {
            return Err(A::Error::custom(Irregular));
        }
        let start = self.json.len();
        Compact(self.json).visit_seq(seq)?;
        Ok((true, Kept::Json(start, self.json.len())))
    }
}

/// Writes the value it visits as `serde_json::Value::to_string` would write it (compact, keys
/// in their order), without building the `Value`. A key repeated within one object is an
/// error: `Value` keeps the last value at the first key's place, which the per-record path
/// reproduces.
struct Compact<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Compact<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn write_json<T: serde::Serialize + ?Sized, E: serde::de::Error>(out: &mut Vec<u8>, v: &T) -> Result<(), E> {
    serde_json::to_writer(out, v).map_err(|_| E::custom(Irregular))
}

impl<'de> Visitor<'de> for Compact<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        write_json(self.0, &v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        write_json(self.0, &v)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        // As `serde_json::Number` writes it (a float that is not finite cannot be parsed).
        write_json(self.0, &v)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        write_json(self.0, v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(b'[');
        let mut first = true;
        loop {
            let mark = self.0.len();
            if !first {
                self.0.push(b',');
            }
            if seq.next_element_seed(Compact(&mut *self.0))?.is_none() {
                self.0.truncate(mark);
                break;
            }
            first = false;
        }
        self.0.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push(b'{');
        // Keys written so far, and a 64-bit filter of them that spares most comparisons.
        let (mut keys, mut filter): (Vec<(usize, usize)>, u64) = (Vec::new(), 0);
        while let Some(key) = map.next_key_seed(Key)? {
            if !keys.is_empty() {
                self.0.push(b',');
            }
            let start = self.0.len();
            write_json(self.0, key.as_ref())?;
            let end = self.0.len();
            let k = key.as_bytes();
            let bit = 1u64 << ((k.len() + 7 * k.first().map_or(0, |b| *b as usize) + k.last().map_or(0, |b| *b as usize)) % 64);
            if filter & bit != 0 && keys.iter().any(|&(s, e)| self.0[s..e] == self.0[start..end]) {
                return Err(A::Error::custom(Irregular));
            }
            filter |= bit;
            keys.push((start, end));
            self.0.push(b':');
            map.next_value_seed(Compact(&mut *self.0))?;
        }
        self.0.push(b'}');
        Ok(())
    }
}

/// What the regular lines of a batch give a column, gathered line by line.
enum Gathered {
    /// Decoded by arrow-json; nested values (row, range of compact JSON) replace its nulls.
    Arrow(Vec<(usize, usize, usize)>),
    F64(Vec<Option<f64>>),
    Micros(Vec<Option<i64>>),
    Days(Vec<Option<i32>>),
    Null,
}

impl Gathered {
    fn new(fill: Fill, ty: ColumnType) -> Self {
        match (fill, ty) {
            (Fill::Arrow, _) => Gathered::Arrow(Vec::new()),
            (Fill::Scan, ColumnType::TimestampTz) => Gathered::Micros(Vec::new()),
            (Fill::Scan, ColumnType::Date) => Gathered::Days(Vec::new()),
            (Fill::Scan, _) => Gathered::F64(Vec::new()),
            (Fill::Null, _) => Gathered::Null,
        }
    }

    fn push(&mut self, row: usize, kept: Kept) {
        match (self, kept) {
            (Gathered::Arrow(json), Kept::Json(start, end)) => json.push((row, start, end)),
            (Gathered::F64(v), Kept::F64(x)) => v.push(Some(x)),
            (Gathered::F64(v), _) => v.push(None),
            (Gathered::Micros(v), Kept::Micros(x)) => v.push(Some(x)),
            (Gathered::Micros(v), _) => v.push(None),
            (Gathered::Days(v), Kept::Days(x)) => v.push(Some(x)),
            (Gathered::Days(v), _) => v.push(None),
            _ => {}
        }
    }

    /// The column's array, given arrow-json's (for arrow-filled columns).
    fn finish(self, ty: ColumnType, decoded: Option<&ArrayRef>, text: &[u8], rows: usize) -> Result<ArrayRef> {
        Ok(match self {
            Gathered::Arrow(json) => {
                let decoded = decoded.ok_or_else(|| anyhow::anyhow!("arrow-json decoded no column"))?.clone();
                if json.is_empty() {
                    decoded
                } else {
                    let strings = decoded.as_any().downcast_ref::<StringArray>().ok_or_else(|| anyhow::anyhow!("not text"))?;
                    let text = std::str::from_utf8(text)?;
                    let mut json = json.into_iter().peekable();
                    let merged: StringArray = (0..rows)
                        .map(|r| match json.next_if(|(row, _, _)| *row == r) {
                            Some((_, start, end)) => Some(&text[start..end]),
                            None => strings.is_valid(r).then(|| strings.value(r)),
                        })
                        .collect();
                    Arc::new(merged)
                }
            }
            Gathered::F64(v) => Arc::new(Float64Array::from(v)),
            Gathered::Micros(v) => Arc::new(TimestampMicrosecondArray::from(v).with_timezone("+00:00")),
            Gathered::Days(v) => Arc::new(Date32Array::from(v)),
            Gathered::Null => new_null_array(&ty.arrow(), rows),
        })
    }
}

/// Decodes the regular records of `records` (per record: whether it is regular); the others
/// are left to the per-record conversion. With a layout no record can be regular under, or
/// when arrow-json refuses the regular lines (never expected), every record is irregular.
pub fn decode(layout: &Layout, records: &[RawRecord]) -> (Vec<bool>, Option<Decoded>) {
    let none = || (vec![false; records.len()], None);
    let Some(plan) = Plan::new(layout) else { return none() };
    let mut line = Line::new(&plan);
    let mut gathered: Vec<Gathered> = plan.fill.iter().zip(&plan.types).map(|(f, t)| Gathered::new(*f, *t)).collect();
    let mut regular = Vec::with_capacity(records.len());
    let mut event_types = Vec::new();
    let mut text = Vec::with_capacity(records.iter().map(|r| r.payload.len() + 1).sum());
    for record in records {
        let ok = line.scan(&record.payload);
        regular.push(ok);
        if !ok {
            continue;
        }
        let row = event_types.len();
        for (g, kept) in gathered.iter_mut().zip(line.kept.iter_mut()) {
            g.push(row, std::mem::replace(kept, Kept::Absent));
        }
        event_types.push(line.event.take().or_else(|| record.event_type.clone()));
        text.extend_from_slice(record.payload.as_bytes());
        text.push(b'\n');
    }
    let rows = event_types.len();
    if rows == 0 {
        return none();
    }
    match arrow_columns(&plan, &text, rows).and_then(|decoded| {
        let mut columns = Vec::with_capacity(gathered.len());
        let mut next = decoded.iter();
        for (i, g) in gathered.into_iter().enumerate() {
            let own = if plan.fill[i] == Fill::Arrow { next.next() } else { None };
            columns.push(g.finish(plan.types[i], own, &line.json, rows)?);
        }
        Ok(columns)
    }) {
        Ok(columns) => (regular, Some(Decoded { columns, event_types })),
        Err(e) => {
            tracing::warn!("ingest: the vectorized decoder refused a batch ({e:#}); converting it record by record");
            none()
        }
    }
}

/// arrow-json's arrays of the arrow-filled columns (in column order) for `rows` lines of `text`.
fn arrow_columns(plan: &Plan, text: &[u8], rows: usize) -> Result<Vec<ArrayRef>> {
    let fields: Vec<Field> = (0..plan.types.len())
        .filter(|&i| plan.fill[i] == Fill::Arrow)
        .map(|i| Field::new(plan.key[i].as_deref().unwrap_or_default(), plan.types[i].arrow(), true))
        .collect();
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    let mut decoder = arrow_json::ReaderBuilder::new(Arc::new(Schema::new(fields)))
        .with_batch_size(rows)
        .with_strict_mode(false)
        // Nested values of varchar columns decode as null here and come from the scan.
        .with_ignore_type_conflicts(true)
        .build_decoder()?;
    let mut rest = text;
    while !rest.is_empty() {
        let used = decoder.decode(rest)?;
        if used == 0 {
            break;
        }
        rest = &rest[used..];
    }
    let batch = decoder.flush()?.ok_or_else(|| anyhow::anyhow!("no rows"))?;
    anyhow::ensure!(rest.is_empty() && batch.num_rows() == rows, "{} rows decoded of {rows}", batch.num_rows());
    Ok(batch.columns().to_vec())
}
