//! Column watermarks: the max value of a column among the rows a model wrote, stored as text
//! with its kind, and rendered back as a SQL literal of the column's type for `{{ watermark }}`.

use std::cmp::Ordering;

use anyhow::{Result, anyhow, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::min_max::MaxAccumulator;
use datafusion::logical_expr::Accumulator;

/// A watermark value with the kind that says how to compare and render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// `int`, `float`, `decimal`, `string`, `boolean`, `date`, `timestamp` or `timestamptz`.
    pub kind: String,
    /// Canonical text: numbers as written, dates `YYYY-MM-DD`, timestamps ISO-8601 (µs, `Z` if zoned).
    pub value: String,
}

impl Watermark {
    /// The value as a SQL literal DataFusion compares correctly with the column.
    pub fn sql_literal(&self) -> String {
        match self.kind.as_str() {
            "int" | "float" | "decimal" => self.value.clone(),
            "boolean" => self.value.to_ascii_uppercase(),
            "date" => format!("DATE '{}'", self.value),
            "timestamp" | "timestamptz" => format!("TIMESTAMP '{}'", self.value),
            _ => format!("'{}'", self.value.replace('\'', "''")),
        }
    }

    /// The literal minus a lookback window: `TIMESTAMP '..' - INTERVAL '2 hours'`, `42 - 10`.
    pub fn sql_literal_with_lookback(&self, lookback: Option<&str>) -> String {
        let literal = self.sql_literal();
        match (lookback, self.kind.as_str()) {
            (None, _) => literal,
            (Some(l), "int" | "float" | "decimal") => format!("({literal} - {l})"),
            (Some(l), _) => format!("({literal} - INTERVAL '{}')", l.replace('\'', "")),
        }
    }

    /// Compare two watermarks of the same kind.
    pub fn compare(&self, other: &Watermark) -> Option<Ordering> {
        if self.kind != other.kind {
            return None;
        }
        match self.kind.as_str() {
            "int" => Some(self.value.parse::<i128>().ok()?.cmp(&other.value.parse::<i128>().ok()?)),
            "float" | "decimal" => self
                .value
                .parse::<f64>()
                .ok()?
                .partial_cmp(&other.value.parse::<f64>().ok()?),
            // Fixed-width ISO text and strings compare as text.
            _ => Some(self.value.cmp(&other.value)),
        }
    }

    /// The greater of two watermarks (the first when they cannot be compared).
    pub fn max(self, other: Option<Watermark>) -> Watermark {
        match other {
            Some(o) if self.compare(&o) == Some(Ordering::Less) => o,
            _ => self,
        }
    }
}

/// Tracks the max of one column across the batches a model writes.
pub struct WatermarkTracker {
    column: String,
    accumulator: Option<MaxAccumulator>,
    data_type: Option<DataType>,
}

impl WatermarkTracker {
    pub fn new(column: &str) -> Self {
        WatermarkTracker {
            column: column.to_string(),
            accumulator: None,
            data_type: None,
        }
    }

    pub fn column(&self) -> &str {
        &self.column
    }

    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let array = batch.column_by_name(&self.column).ok_or_else(|| {
            anyhow!(
                "watermark column '{}' is not in the model's output (columns: {})",
                self.column,
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if self.accumulator.is_none() {
            kind_of(array.data_type())?;
            self.accumulator = Some(MaxAccumulator::try_new(array.data_type())?);
            self.data_type = Some(array.data_type().clone());
        }
        self.accumulator
            .as_mut()
            .expect("initialised above")
            .update_batch(std::slice::from_ref(array))?;
        Ok(())
    }

    /// The max seen, or `None` when no non-null value was written.
    pub fn finish(mut self) -> Result<Option<Watermark>> {
        let Some(acc) = self.accumulator.as_mut() else {
            return Ok(None);
        };
        from_scalar(&acc.evaluate()?)
    }
}

fn kind_of(t: &DataType) -> Result<&'static str> {
    use DataType::*;
    Ok(match t {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => "int",
        Float16 | Float32 | Float64 => "float",
        Decimal128(..) | Decimal256(..) => "decimal",
        Utf8 | LargeUtf8 | Utf8View => "string",
        Boolean => "boolean",
        Date32 | Date64 => "date",
        Timestamp(_, None) => "timestamp",
        Timestamp(_, Some(_)) => "timestamptz",
        other => bail!("a watermark column must be a number, string, date or timestamp, not {other}"),
    })
}

fn from_scalar(v: &ScalarValue) -> Result<Option<Watermark>> {
    if v.is_null() {
        return Ok(None);
    }
    let kind = kind_of(&v.data_type())?.to_string();
    let value = match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            s.clone()
        }
        ScalarValue::Date32(Some(days)) => chrono::DateTime::from_timestamp(*days as i64 * 86_400, 0)
            .ok_or_else(|| anyhow!("date out of range"))?
            .format("%Y-%m-%d")
            .to_string(),
        ScalarValue::Date64(Some(ms)) => chrono::DateTime::from_timestamp_millis(*ms)
            .ok_or_else(|| anyhow!("date out of range"))?
            .format("%Y-%m-%d")
            .to_string(),
        ScalarValue::TimestampSecond(Some(x), tz) => ts(*x as i128 * 1_000_000, tz.is_some())?,
        ScalarValue::TimestampMillisecond(Some(x), tz) => ts(*x as i128 * 1_000, tz.is_some())?,
        ScalarValue::TimestampMicrosecond(Some(x), tz) => ts(*x as i128, tz.is_some())?,
        ScalarValue::TimestampNanosecond(Some(x), tz) => ts(*x as i128 / 1_000, tz.is_some())?,
        other => other.to_string(),
    };
    Ok(Some(Watermark { kind, value }))
}

fn ts(micros: i128, zoned: bool) -> Result<String> {
    let t = chrono::DateTime::from_timestamp_micros(micros as i64)
        .ok_or_else(|| anyhow!("timestamp out of range"))?;
    let text = t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    Ok(if zoned { format!("{text}Z") } else { text })
}
