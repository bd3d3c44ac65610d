//! Record formats shared by the file and object sources: NDJSON lines (decoded one by one, so
//! a line that is not UTF-8 is that line's problem only), JSON arrays, CSV (complete records
//! only, when the text may end mid-record) and Parquet.

use std::io::BufRead;

use anyhow::{Context, Result, bail};

/// One line of an NDJSON file: its text, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    Text(String),
    /// Not UTF-8: the text with the bad bytes replaced (for `raw_payload`) and the message.
    Undecodable { text: String, error: String },
}

/// Decodes one line (its `\n` or `\r\n` removed).
pub(crate) fn decode_line(mut bytes: Vec<u8>) -> Line {
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    match String::from_utf8(bytes) {
        Ok(text) => Line::Text(text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to() + 1;
            Line::Undecodable {
                text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                error: format!("the line is not valid UTF-8 (byte {at})"),
            }
        }
    }
}

/// The lines of NDJSON data that is complete (an object), a last line without a newline included.
pub(crate) fn ndjson_lines_of(bytes: &[u8]) -> Vec<Line> {
    let mut parts: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts.into_iter().map(|p| decode_line(p.to_vec())).collect()
}

/// The elements of JSON text holding an array (or one object), each as JSON text.
pub(crate) fn json_elements_of(text: &str, name: &str) -> Result<Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(text).with_context(|| format!("{name}: not valid JSON"))?;
    Ok(match value {
        serde_json::Value::Array(items) => items.into_iter().map(|v| v.to_string()).collect(),
        other => vec![other.to_string()],
    })
}

/// The records of CSV text as JSON objects keyed by the header (empty unquoted fields are left
/// out, so they read as null).
pub(crate) fn csv_objects_of(reader: impl BufRead, name: &str) -> Result<Vec<String>> {
    Ok(csv_records(reader, name, false)?.0)
}

/// The records of CSV text; with `partial_tail`, text that ends inside a quoted field (a
/// record still being written) ends the records before it instead of being an error. Also
/// says whether such a partial record was left.
pub(crate) fn csv_records(mut reader: impl BufRead, name: &str, partial_tail: bool) -> Result<(Vec<String>, bool)> {
    let mut record = crate::csv::CsvRecord::default();
    let mut line = 0u64;
    let partial = |e: &anyhow::Error| partial_tail && e.downcast_ref::<crate::csv::UnclosedQuote>().is_some();
    match record.read(&mut reader, &mut line) {
        Ok(true) => {}
        Ok(false) => return Ok((Vec::new(), false)),
        Err(e) if partial(&e) => return Ok((Vec::new(), true)),
        Err(e) => return Err(e.context(format!("{name} line 1"))),
    }
    let header: Vec<String> = record.fields().map(|f| f.unwrap_or("").to_string()).collect();
    let mut out = Vec::new();
    loop {
        let first = line + 1;
        match record.read(&mut reader, &mut line) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) if partial(&e) => return Ok((out, true)),
            Err(e) => return Err(e.context(format!("{name} line {first}"))),
        }
        if record.is_blank() {
            continue;
        }
        if record.len() != header.len() {
            bail!("{} line {first}: {} fields, but the header has {}", name, record.len(), header.len());
        }
        let mut object = serde_json::Map::new();
        for (i, name) in header.iter().enumerate() {
            if let Some(v) = record.field(i) {
                object.insert(name.clone(), serde_json::Value::String(v.to_string()));
            }
        }
        out.push(serde_json::Value::Object(object).to_string());
    }
    Ok((out, false))
}

/// The rows of Parquet data as JSON objects.
pub(crate) fn parquet_objects_of<R: parquet::file::reader::ChunkReader + 'static>(data: R, name: &str) -> Result<Vec<String>> {
    let path = name;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data)
        .with_context(|| format!("{path}: not a Parquet file"))?
        .build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("cannot read {path}"))?;
        let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
        writer.write(&batch)?;
        writer.finish()?;
        let text = String::from_utf8(writer.into_inner())?;
        out.extend(text.lines().map(str::to_string));
    }
    Ok(out)
}

