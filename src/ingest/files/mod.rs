//! The file source: NDJSON or JSON files from a path or a glob, or NDJSON from stdin, read
//! record by record from where the last committed flush stopped.
//!
//! Positions are kept per file (lines consumed and a fingerprint of the file's first bytes)
//! and committed in the raw table's snapshot summary with the rows they cover, so a rerun
//! reads only new files and new lines, and a crash between two flushes re-reads exactly the
//! uncommitted part. A file whose first bytes changed since it was read is an error, never
//! read twice.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

use super::records::{Coordinates, RawRecord, SourceKind};
use super::source::{Position, Positions, Source};

/// How the files are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    Ndjson,
    /// One JSON array of objects (or one object) per file.
    Json,
    /// A header line, then records (`,` or `, ` separated, quoted fields); values are text
    /// and converted to the column types.
    Csv,
    /// Parquet files; each row becomes a record.
    Parquet,
}

impl FileFormat {
    pub fn parse(name: Option<&str>, from: &str) -> Result<Self> {
        match name {
            Some("ndjson") | Some("jsonl") => Ok(FileFormat::Ndjson),
            Some("json") => Ok(FileFormat::Json),
            Some("csv") => Ok(FileFormat::Csv),
            Some("parquet") => Ok(FileFormat::Parquet),
            Some(other) => bail!("format `{other}` is not supported for file ingest (use ndjson, json, csv or parquet)"),
            None if from.ends_with(".json") => Ok(FileFormat::Json),
            None if from.ends_with(".csv") => Ok(FileFormat::Csv),
            None if from.ends_with(".parquet") => Ok(FileFormat::Parquet),
            None => Ok(FileFormat::Ndjson),
        }
    }
}

/// Where the file source reads.
#[derive(Debug, Clone)]
pub enum FileSpec {
    /// A path or glob, relative to the project folder unless absolute.
    Files { pattern: String, root: PathBuf },
    Stdin,
}

impl FileSpec {
    /// `file://…`, a plain path or glob, or `-`.
    pub fn parse(from: &str, root: &Path) -> Result<Self> {
        if from == "-" {
            return Ok(FileSpec::Stdin);
        }
        let pattern = from.strip_prefix("file://").unwrap_or(from);
        if let Some((scheme, _)) = pattern.split_once("://") {
            bail!("`{from}`: the {scheme}:// source is not supported yet (file paths, globs and `-` for stdin are)");
        }
        Ok(FileSpec::Files { pattern: pattern.to_string(), root: root.to_path_buf() })
    }

    /// The files the pattern matches now, sorted.
    pub fn list(&self) -> Result<Vec<(String, PathBuf)>> {
        let FileSpec::Files { pattern, root } = self else {
            return Ok(vec![("-".to_string(), PathBuf::from("-"))]);
        };
        let full = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { root.join(pattern) };
        let full_text = full.to_string_lossy().to_string();
        let mut files = Vec::new();
        if full_text.contains(['*', '?', '[']) {
            let (dir, name_glob) = match full_text.rsplit_once('/') {
                Some((d, n)) => (PathBuf::from(d), n.to_string()),
                None => (PathBuf::from("."), full_text.clone()),
            };
            if dir.to_string_lossy().contains(['*', '?', '[']) {
                bail!("`{pattern}`: only the file name may hold wildcards");
            }
            let entries = std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().to_string();
                if entry.file_type()?.is_file() && glob_match(&name_glob, &name) {
                    files.push(entry.path());
                }
            }
        } else if full.is_file() {
            files.push(full);
        } else {
            bail!("{}: no such file", full.display());
        }
        files.sort();
        Ok(files.into_iter().map(|p| (p.to_string_lossy().to_string(), p)).collect())
    }
}

/// `*` and `?` wildcards over a file name.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// Fingerprint of `bytes`, as positions store it.
pub(crate) fn fingerprint(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// Fingerprint of the first `limit` bytes (or fewer, if the file is shorter), with its length.
fn head_of(path: &Path, limit: u64) -> Result<(String, u64)> {
    let mut buf = vec![0u8; limit as usize];
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok((fingerprint(&buf[..filled]), filled as u64))
}

pub(crate) const HEAD_BYTES: u64 = 1024;

/// Reads records after the committed positions, file by file.
pub struct FileReader {
    spec: FileSpec,
    format: FileFormat,
    /// Positions including what has been handed out since the last commit.
    positions: Positions,
    current: Option<Current>,
    /// Files of this pass not opened yet (listed once per pass; `None`: list at the next open).
    pass: Option<std::collections::VecDeque<(String, PathBuf)>>,
    /// Leave a last line without a newline for later (a log still being written).
    complete_lines_only: bool,
}

/// Lines of a reader; with `complete_only`, a last line without its newline is not handed out.
struct Lines<R> {
    reader: R,
    complete_only: bool,
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = std::io::Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) if !line.ends_with('\n') && self.complete_only => None,
            Ok(_) => {
                let trimmed = line.trim_end_matches(['\n', '\r']).len();
                line.truncate(trimmed);
                Some(Ok(line))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

struct Current {
    key: String,
    lines: Box<dyn Iterator<Item = std::io::Result<String>> + Send>,
    consumed: u64,
}

impl FileReader {
    pub fn new(spec: FileSpec, format: FileFormat, committed: Positions) -> Self {
        Self { spec, format, positions: committed, current: None, pass: None, complete_lines_only: false }
    }

    /// Reads only newline-terminated lines (for logs being appended to while read).
    pub fn complete_lines_only(mut self) -> Self {
        self.complete_lines_only = true;
        self
    }

    /// The next record, or `None` when every file is read to its current end.
    fn read_next(&mut self, received_at: i64) -> Result<Option<RawRecord>> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let current = self.current.as_mut().expect("opened");
            match current.lines.next() {
                Some(line) => {
                    let line = line.with_context(|| format!("cannot read {}", current.key))?;
                    current.consumed += 1;
                    let at = Coordinates::File { path: current.key.clone(), line: current.consumed };
                    if let Some(p) = self.positions.get_mut(&current.key) {
                        p.consumed = current.consumed;
                    }
                    if line.trim().is_empty() {
                        continue;
                    }
                    return Ok(Some(RawRecord { payload: line, at, received_at, event_type: None }));
                }
                None => self.current = None,
            }
        }
    }

    /// Opens the next file with unread records; false when there is none.
    fn open_next(&mut self) -> Result<bool> {
        if self.pass.is_none() {
            self.pass = Some(self.spec.list()?.into());
        }
        while let Some((key, path)) = self.pass.as_mut().and_then(|p| p.pop_front()) {
            if key == "-" {
                let stdin = std::io::stdin();
                let lines = BufReader::new(stdin).lines();
                self.positions.entry(key.clone()).or_insert(Position { consumed: 0, head: String::new(), head_len: 0 });
                self.current = Some(Current { key, lines: Box::new(lines), consumed: 0 });
                return Ok(true);
            }
            let known = self.positions.get(&key);
            let (head, head_len) = head_of(&path, known.map_or(HEAD_BYTES, |p| p.head_len))?;
            let skip = match known {
                Some(p) if !p.head.is_empty() && (p.head != head || p.head_len != head_len) => {
                    bail!("{key} changed since lake ingest read it (its first bytes differ); move it away or give it a new name")
                }
                Some(p) => p.consumed,
                None => 0,
            };
            let mut lines: Box<dyn Iterator<Item = std::io::Result<String>> + Send> = match self.format {
                FileFormat::Ndjson => {
                    let file = File::open(&path).with_context(|| format!("cannot open {key}"))?;
                    Box::new(Lines { reader: BufReader::with_capacity(1 << 20, file), complete_only: self.complete_lines_only })
                }
                FileFormat::Json => Box::new(json_elements(&path)?.into_iter().map(Ok)),
                FileFormat::Csv => Box::new(csv_objects(&path)?.into_iter().map(Ok)),
                FileFormat::Parquet => Box::new(parquet_objects(&path)?.into_iter().map(Ok)),
            };
            // Skip what earlier flushes committed.
            let mut consumed = 0;
            while consumed < skip {
                match lines.next() {
                    Some(line) => {
                        line.with_context(|| format!("cannot read {key}"))?;
                        consumed += 1;
                    }
                    None => break,
                }
            }
            if consumed < skip {
                return Err(anyhow!(
                    "{key} has {consumed} records but {skip} were already loaded from it; it was truncated or replaced"
                ));
            }
            self.positions.entry(key.clone()).or_insert(Position { consumed: 0, head, head_len });
            self.current = Some(Current { key, lines, consumed });
            return Ok(true);
        }
        Ok(false)
    }
}

/// The elements of a JSON file holding an array (or one object), each as JSON text.
fn json_elements(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    json_elements_of(&text, &path.display().to_string())
}

/// The elements of JSON text holding an array (or one object), each as JSON text.
pub(crate) fn json_elements_of(text: &str, name: &str) -> Result<Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(text).with_context(|| format!("{name}: not valid JSON"))?;
    Ok(match value {
        serde_json::Value::Array(items) => items.into_iter().map(|v| v.to_string()).collect(),
        other => vec![other.to_string()],
    })
}

#[async_trait::async_trait]
impl Source for FileReader {
    fn kind(&self) -> SourceKind {
        SourceKind::Files
    }

    async fn next_record(&mut self) -> Result<Option<RawRecord>> {
        self.read_next(chrono::Utc::now().timestamp_micros())
    }

    fn positions(&self) -> &Positions {
        &self.positions
    }

    fn rescan(&mut self) {
        self.pass = None;
        self.current = None;
    }

    async fn reset(&mut self, positions: Positions) -> Result<()> {
        self.positions = positions;
        self.pass = None;
        self.current = None;
        Ok(())
    }

    fn replayable(&self) -> bool {
        !matches!(self.spec, FileSpec::Stdin)
    }
}

/// The records of a CSV file as JSON objects keyed by the header (empty unquoted fields are
/// left out, so they read as null).
fn csv_objects(path: &Path) -> Result<Vec<String>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    csv_objects_of(BufReader::with_capacity(1 << 20, file), &path.display().to_string())
}

/// The records of CSV text as JSON objects keyed by the header.
pub(crate) fn csv_objects_of(mut reader: impl BufRead, name: &str) -> Result<Vec<String>> {
    let mut record = crate::csv::CsvRecord::default();
    let mut line = 0u64;
    if !record.read(&mut reader, &mut line).with_context(|| format!("{} line 1", name))? {
        return Ok(Vec::new());
    }
    let header: Vec<String> = record.fields().map(|f| f.unwrap_or("").to_string()).collect();
    let mut out = Vec::new();
    loop {
        let first = line + 1;
        if !record.read(&mut reader, &mut line).with_context(|| format!("{} line {first}", name))? {
            break;
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
    Ok(out)
}

/// The rows of a Parquet file as JSON objects.
fn parquet_objects(path: &Path) -> Result<Vec<String>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    parquet_objects_of(file, &path.display().to_string())
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
