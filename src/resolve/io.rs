//! Files in and out of `lake resolve`: reads CSV, Parquet or NDJSON inputs row by row (only
//! the columns asked for, as text), and writes `pairs.csv` and `clusters.csv`.
//!
//! The CSV reader accepts `, ` as well as `,` between fields, quoted fields with embedded
//! commas, doubled quotes and line breaks, and reads an empty unquoted field as null.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;

use crate::csv::CsvRecord;

/// The formats an input can have, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
    Ndjson,
}

impl Format {
    pub fn of(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(Format::Csv),
            "parquet" | "pq" => Ok(Format::Parquet),
            "ndjson" | "jsonl" | "json" => Ok(Format::Ndjson),
            _ => bail!(
                "{}: cannot tell the format from the extension `.{ext}`; use .csv, .parquet or .ndjson",
                path.display()
            ),
        }
    }
}

/// Calls `row` with the values of the `wanted` columns of every row of `path`, in order.
/// Returns the number of rows read.
pub fn for_each_row(
    path: &Path,
    wanted: &[&str],
    mut row: impl FnMut(&[Option<&str>]) -> Result<()>,
) -> Result<u64> {
    match Format::of(path)? {
        Format::Csv => read_csv(path, wanted, &mut row),
        Format::Ndjson => read_ndjson(path, wanted, &mut row),
        Format::Parquet => read_parquet(path, wanted, &mut row),
    }
}

fn missing_column(path: &Path, column: &str, have: &[String]) -> anyhow::Error {
    anyhow!(
        "{}: no column `{column}`; its columns are: {}",
        path.display(),
        have.join(", ")
    )
}

fn read_csv(path: &Path, wanted: &[&str], row: &mut dyn FnMut(&[Option<&str>]) -> Result<()>) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut record = CsvRecord::default();
    let mut line_no = 0u64;
    let start_line = |line_no: u64| line_no + 1;
    let read = |reader: &mut BufReader<File>, record: &mut CsvRecord, line_no: &mut u64| -> Result<bool> {
        let first = start_line(*line_no);
        let got = record
            .read(reader, line_no)
            .with_context(|| format!("{} line {first}", path.display()))?;
        Ok(got)
    };
    if !read(&mut reader, &mut record, &mut line_no)? {
        bail!("{}: the file is empty (a header line is expected)", path.display());
    }
    let header: Vec<String> = record.fields().map(|f| f.unwrap_or("").to_string()).collect();
    let positions = wanted
        .iter()
        .map(|w| header.iter().position(|h| h == w).ok_or_else(|| missing_column(path, w, &header)))
        .collect::<Result<Vec<_>>>()?;
    let mut rows = 0u64;
    loop {
        let first = start_line(line_no);
        if !read(&mut reader, &mut record, &mut line_no)? {
            break;
        }
        if record.is_blank() {
            continue;
        }
        if record.len() != header.len() {
            bail!(
                "{} line {first}: {} fields, but the header has {}",
                path.display(),
                record.len(),
                header.len()
            );
        }
        let values: Vec<Option<&str>> = positions.iter().map(|&p| record.field(p)).collect();
        row(&values).with_context(|| format!("{} line {first}", path.display()))?;
        rows += 1;
    }
    Ok(rows)
}

fn read_ndjson(path: &Path, wanted: &[&str], row: &mut dyn FnMut(&[Option<&str>]) -> Result<()>) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut rows = 0;
    let mut texts: Vec<Option<String>> = Vec::with_capacity(wanted.len());
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{} line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not a JSON object", path.display(), n + 1))?;
        texts.clear();
        for w in wanted {
            texts.push(match object.get(*w) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            });
        }
        let values: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
        row(&values).with_context(|| format!("{} line {}", path.display(), n + 1))?;
        rows += 1;
    }
    Ok(rows)
}

fn read_parquet(path: &Path, wanted: &[&str], row: &mut dyn FnMut(&[Option<&str>]) -> Result<()>) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{}: not a Parquet file", path.display()))?;
    let schema = builder.schema().clone();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let positions = wanted
        .iter()
        .map(|w| names.iter().position(|h| h == w).ok_or_else(|| missing_column(path, w, &names)))
        .collect::<Result<Vec<_>>>()?;
    let mut rows = 0;
    for batch in builder.build()? {
        let batch = batch.with_context(|| format!("{}: cannot read", path.display()))?;
        let columns = positions
            .iter()
            .map(|&p| arrow::compute::cast(batch.column(p), &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: a column cannot be read as text", path.display()))?;
        let strings: Vec<_> = columns.iter().map(|c| c.as_string::<i32>()).collect();
        let mut values: Vec<Option<&str>> = Vec::with_capacity(wanted.len());
        for r in 0..batch.num_rows() {
            values.clear();
            values.extend(strings.iter().map(|s| if s.is_null(r) { None } else { Some(s.value(r)) }));
            row(&values).with_context(|| format!("{} row {}", path.display(), rows + 1))?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// A CSV writer that quotes fields when they need it.
pub struct CsvWriter {
    out: BufWriter<File>,
}

impl CsvWriter {
    pub fn create(path: &Path, header: &[&str]) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = Self { out: BufWriter::new(file) };
        writer.row(header)?;
        Ok(writer)
    }

    pub fn row(&mut self, fields: &[&str]) -> Result<()> {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            if f.contains([',', '"', '\n', '\r']) || f.starts_with(' ') {
                write!(self.out, "\"{}\"", f.replace('"', "\"\""))?;
            } else {
                self.out.write_all(f.as_bytes())?;
            }
        }
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
