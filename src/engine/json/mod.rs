//! JSON functions for SQL over raw payload columns that hold JSON text (the nested objects and
//! arrays `lake ingest` keeps): `json_get_str(col, 'key', ...)`, `json_get_int`,
//! `json_get_float`, `json_get_bool` and `json_length`. The path is string keys and integer
//! array indices; a missing path, a value of another type or text that is not JSON gives NULL.
//! Each call walks only its path ([`walk`]): other fields are skipped, not built. Calls on the
//! same column in one projection share one walk per row ([`MergeJsonPaths`], in [`many`]).

use std::any::Any;
use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_datafusion_err, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use serde_json::Value;

use walk::{Found, Paths, Step};

mod many;
mod walk;

pub use many::MergeJsonPaths;

/// What a function returns from the value at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Get {
    Str,
    Int,
    Float,
    Bool,
    Length,
}

impl Get {
    fn name(self) -> &'static str {
        match self {
            Get::Str => "json_get_str",
            Get::Int => "json_get_int",
            Get::Float => "json_get_float",
            Get::Bool => "json_get_bool",
            Get::Length => "json_length",
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Get::Str => DataType::Utf8,
            Get::Int | Get::Length => DataType::Int64,
            Get::Float => DataType::Float64,
            Get::Bool => DataType::Boolean,
        }
    }
}

/// The functions, for registering in a session.
pub fn functions() -> Vec<ScalarUDF> {
    [Get::Str, Get::Int, Get::Float, Get::Bool, Get::Length]
        .into_iter()
        .map(|get| ScalarUDF::new_from_impl(JsonGet { get, signature: Signature::variadic_any(Volatility::Immutable) }))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonGet {
    get: Get,
    signature: Signature,
}

impl ScalarUDFImpl for JsonGet {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.get.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.is_empty() || !matches!(args[0], DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null) {
            return exec_err!("{}(json, key, ...) takes a text column first, got {:?}", self.get.name(), args.first());
        }
        Ok(self.get.data_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.get.name();
        let path = args.args[1..]
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => step(s).ok_or_else(|| {
                    exec_datafusion_err!("{name}: a path step must be a text key or a non-negative index, got {s}")
                }),
                ColumnarValue::Array(_) => exec_err!("{name}: path steps must be literals"),
            })
            .collect::<Result<Vec<_>>>()?;
        let paths = Paths::new([(path.as_slice(), self.get == Get::Length)]).expect("one path");
        let mut out = find_all(&args.args[0], args.number_rows, &paths, &[(self.get, 0)])?;
        Ok(ColumnarValue::Array(out.remove(0)))
    }
}

/// A path step from a literal: a text key or a non-negative integer index.
fn step(s: &ScalarValue) -> Option<Step> {
    match s {
        ScalarValue::Utf8(Some(k)) | ScalarValue::LargeUtf8(Some(k)) | ScalarValue::Utf8View(Some(k)) => {
            Some(Step::Key(k.clone()))
        }
        ScalarValue::Int64(Some(i)) if *i >= 0 => Some(Step::Index(*i as usize)),
        ScalarValue::Int32(Some(i)) if *i >= 0 => Some(Step::Index(*i as usize)),
        _ => None,
    }
}

/// Follows `paths` through each JSON text of `texts` once; one output column per `(get, slot)`
/// in `columns`, each the value at that slot's path as `get` returns it.
fn find_all(
    texts: &ColumnarValue,
    rows: usize,
    paths: &Paths,
    columns: &[(Get, usize)],
) -> Result<Vec<ArrayRef>> {
    let texts = texts.clone().into_array(rows)?;
    let texts = arrow::compute::cast(&texts, &DataType::Utf8)?;
    let texts = texts.as_any().downcast_ref::<arrow::array::StringArray>().expect("cast to Utf8");
    let mut builders: Vec<Builder> = columns.iter().map(|(get, _)| Builder::new(*get, texts.len())).collect();
    let mut found = vec![None; paths.slots()];
    for text in texts.iter() {
        match text {
            Some(text) => paths.find(text, &mut found),
            None => found.fill(None),
        }
        for (builder, (_, slot)) in builders.iter_mut().zip(columns) {
            builder.append(found[*slot].as_ref());
        }
    }
    Ok(builders.into_iter().map(Builder::finish).collect())
}

/// An output column being built: what each function makes of the value at its path.
enum Builder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
}

impl Builder {
    fn new(get: Get, rows: usize) -> Self {
        match get {
            Get::Str => Builder::Str(StringBuilder::with_capacity(rows, rows * 8)),
            Get::Int | Get::Length => Builder::Int(Int64Builder::with_capacity(rows)),
            Get::Float => Builder::Float(Float64Builder::with_capacity(rows)),
            Get::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
        }
    }

    /// `json_length` finds a count (an integer), read as `json_get_int` reads one. What is
    /// found as written ([`Found`]) is read as the same value built by serde_json would be.
    fn append(&mut self, v: Option<&Found>) {
        match self {
            Builder::Str(b) => b.append_option(v.and_then(|v| match v {
                Found::Str(s) => Some(Cow::Borrowed(*s)),
                Found::Int(i) => Some(Cow::Owned(i.to_string())),
                Found::Bool(x) => Some(Cow::Borrowed(if *x { "true" } else { "false" })),
                Found::Null | Found::Value(Value::Null) => None,
                Found::Value(Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
                Found::Value(other) => Some(Cow::Owned(other.to_string())),
            })),
            Builder::Int(b) => b.append_option(v.and_then(|v| match v {
                Found::Int(i) => Some(*i),
                Found::Str(s) => s.trim().parse().ok(),
                Found::Value(Value::Number(n)) => n.as_i64(),
                Found::Value(Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            })),
            Builder::Float(b) => b.append_option(v.and_then(|v| match v {
                Found::Int(i) => Some(*i as f64),
                Found::Str(s) => s.trim().parse().ok(),
                Found::Value(Value::Number(n)) => n.as_f64(),
                Found::Value(Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            })),
            Builder::Bool(b) => b.append_option(v.and_then(|v| match v {
                Found::Bool(x) => Some(*x),
                Found::Value(v) => v.as_bool(),
                _ => None,
            })),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Str(mut b) => Arc::new(b.finish()),
            Builder::Int(mut b) => Arc::new(b.finish()),
            Builder::Float(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}
