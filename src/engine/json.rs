//! JSON functions for SQL over raw payload columns that hold JSON text (the nested objects and
//! arrays `lake ingest` keeps): `json_get_str(col, 'key', ...)`, `json_get_int`,
//! `json_get_float`, `json_get_bool` and `json_length`. The path is string keys and integer
//! array indices; a missing path, a value of another type or text that is not JSON gives NULL.
//! Each call walks only its path: other fields are skipped, not built.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One step of a path: an object key or an array index.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

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
                ColumnarValue::Scalar(s) => match s {
                    ScalarValue::Utf8(Some(k)) | ScalarValue::LargeUtf8(Some(k)) | ScalarValue::Utf8View(Some(k)) => {
                        Ok(Step::Key(k.clone()))
                    }
                    ScalarValue::Int64(Some(i)) if *i >= 0 => Ok(Step::Index(*i as usize)),
                    ScalarValue::Int32(Some(i)) if *i >= 0 => Ok(Step::Index(*i as usize)),
                    other => exec_err!("{name}: a path step must be a text key or a non-negative index, got {other}"),
                },
                ColumnarValue::Array(_) => exec_err!("{name}: path steps must be literals"),
            })
            .collect::<Result<Vec<_>>>()?;
        let texts = args.args[0].clone().into_array(args.number_rows)?;
        let texts = arrow::compute::cast(&texts, &DataType::Utf8)?;
        let texts = texts.as_any().downcast_ref::<arrow::array::StringArray>().expect("cast to Utf8");
        let counting = self.get == Get::Length;
        let values = texts.iter().map(|t| t.and_then(|t| lookup(t, &path, counting)));
        let out: ArrayRef = match self.get {
            Get::Str => {
                let mut b = StringBuilder::with_capacity(texts.len(), texts.len() * 8);
                for v in values {
                    b.append_option(v.and_then(|v| match v {
                        Value::String(s) => Some(s),
                        Value::Null => None,
                        other => Some(other.to_string()),
                    }));
                }
                Arc::new(b.finish())
            }
            Get::Int => {
                let mut b = Int64Builder::with_capacity(texts.len());
                for v in values {
                    b.append_option(v.and_then(|v| match v {
                        Value::Number(n) => n.as_i64(),
                        Value::String(s) => s.trim().parse().ok(),
                        _ => None,
                    }));
                }
                Arc::new(b.finish())
            }
            Get::Float => {
                let mut b = Float64Builder::with_capacity(texts.len());
                for v in values {
                    b.append_option(v.and_then(|v| match v {
                        Value::Number(n) => n.as_f64(),
                        Value::String(s) => s.trim().parse().ok(),
                        _ => None,
                    }));
                }
                Arc::new(b.finish())
            }
            Get::Bool => {
                let mut b = BooleanBuilder::with_capacity(texts.len());
                for v in values {
                    b.append_option(v.and_then(|v| v.as_bool()));
                }
                Arc::new(b.finish())
            }
            Get::Length => {
                let mut b = Int64Builder::with_capacity(texts.len());
                for v in values {
                    b.append_option(v.and_then(|v| v.as_i64()));
                }
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The value at `path` in the JSON text, built alone (`None`: not JSON, or no such path); with
/// `counting`, the number of elements (array) or entries (object) there instead, as a number,
/// none of them built.
fn lookup(text: &str, path: &[Step], counting: bool) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    let found = Walk(path, counting).deserialize(&mut de).ok().flatten();
    // Text after the value (other than whitespace) is not JSON either.
    de.end().ok().and(found)
}

/// Follows the remaining path through whatever value comes next, skipping the rest; at its
/// end, builds the value, or counts its members (`true`: arrays and objects; none built).
struct Walk<'p>(&'p [Step], bool);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        match (self.0.first(), self.1) {
            (None, false) => serde::Deserialize::deserialize(d).map(Some),
            // Counting, or on along the path: the visitor below.
            _ => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        if self.0.is_empty() {
            let mut n = 0i64;
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                n += 1;
            }
            return Ok(Some(Value::from(n)));
        }
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &self.0[0] {
                Step::Key(k) if found.is_none() && key == k.as_str() => found = map.next_value_seed(Walk(&self.0[1..], self.1))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        if self.0.is_empty() {
            let mut n = 0i64;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            return Ok(Some(Value::from(n)));
        }
        let mut found = None;
        let mut i = 0;
        loop {
            let hit = matches!(&self.0[0], Step::Index(n) if *n == i);
            if hit {
                match seq.next_element_seed(Walk(&self.0[1..], self.1))? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    // Scalars where the path goes on, or to count: nothing there.
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
}
