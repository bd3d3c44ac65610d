//! The file source: NDJSON, JSON, CSV or Parquet files from a path or a glob, or NDJSON from
//! stdin, read record by record from where the last committed flush stopped.
//!
//! Positions are kept per file (records consumed, a fingerprint of the file's first bytes,
//! and for NDJSON the byte offset where the consumed lines end) and committed in the raw
//! table's snapshot summary with the rows they cover, so a rerun reads only new files and new
//! records (an NDJSON file from its byte offset on, not from its start), and a crash between
//! two flushes re-reads exactly the uncommitted part. A file whose first bytes changed since
//! it was read, that is shorter than what was read, or where no line ends at the stored offset
//! any more is an error, never read twice nor skipped. A running reader opens only files
//! whose size or modification time changed since it read them to their end.
//!
//! Files may still be written while they are read, so only complete records are consumed:
//! NDJSON and CSV up to their last newline (a partial last line is read again later, never
//! stored or dead-lettered), JSON and Parquet files not before they are settled. A file is
//! settled when its size and modification time have not changed for the settle time
//! (`settle_seconds`); the last line of a settled text file is complete without a newline.
//! A line that is not UTF-8 is a dead letter, not the end of the source. Stdin is read by a
//! thread of its own ([`stdin`]); its end is the end of the source.

mod formats;
mod stdin;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

use formats::decode_line;
pub(crate) use formats::{Line, csv_objects_of, json_elements_of, ndjson_lines_of, parquet_objects_of};
use super::records::{Coordinates, DeadLetter, RawRecord, SourceKind};
use super::source::{Position, Positions, Source};
use stdin::StdinLines;

/// How long a file must stay unchanged before it counts as completely written, by default.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis((crate::project::ingest::DEFAULT_SETTLE_SECONDS * 1000.0) as u64);

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

/// `*` and `?` wildcards over a file name. As in a shell, they do not match a leading `.`:
/// a writer can write to a hidden name and rename the file when it is done.
fn glob_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
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

/// A file's size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: SystemTime,
}

impl Stamp {
    /// `None` when the file is gone (removed or renamed since it was listed).
    fn of(path: &Path) -> Result<Option<Self>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(Stamp { len: m.len(), modified: m.modified()? })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("cannot read the metadata of {}", path.display()))),
        }
    }
}

/// Reads records after the committed positions, file by file.
pub struct FileReader {
    spec: FileSpec,
    format: FileFormat,
    /// Positions including what has been handed out since the last commit.
    positions: Positions,
    current: Option<Current>,
    /// Files of this pass not opened yet (listed once per pass; `None`: list at the next open).
    pass: Option<VecDeque<(String, PathBuf)>>,
    /// A log lake writes itself: a last line without its newline is never complete, and a line
    /// that is not UTF-8 is an error.
    own_log: bool,
    settle: Duration,
    /// Per file: its stamp, and since when it has been seen unchanged.
    seen: HashMap<String, (Stamp, Instant)>,
    /// Files read to their end at this stamp: not opened again until it changes.
    read_through: HashMap<String, Stamp>,
    /// Files of this pass with data left until they settle.
    waiting: BTreeSet<String>,
    /// Lines read but not decodable, for [`Source::take_dead_letters`].
    dead: Vec<DeadLetter>,
    stdin: Option<StdinLines>,
}

struct Current {
    key: String,
    records: Records,
    consumed: u64,
    stamp: Stamp,
}

/// The records of one open file.
enum Records {
    /// An NDJSON file read line by line; a last line without a newline is complete only when
    /// it ends at `tail_at` (the length of the settled file). `offset`: bytes handed out;
    /// `open_line`: the last line handed out had no newline (`offset` is no line start then).
    Lines { reader: BufReader<File>, offset: u64, tail_at: Option<u64>, open_line: bool },
    /// Records parsed from the whole file or its complete part (`partial`: more to come).
    Parsed { records: std::vec::IntoIter<String>, partial: bool },
}

enum Next {
    Record(Line),
    /// The end of the file.
    End,
    /// The end of the complete records; the rest is read once it is complete or settled.
    Left,
}

impl Records {
    fn next(&mut self) -> std::io::Result<Next> {
        match self {
            Records::Lines { reader, offset, tail_at, open_line } => {
                let mut buf = Vec::new();
                let n = reader.read_until(b'\n', &mut buf)? as u64;
                if n == 0 {
                    return Ok(Next::End);
                }
                let open = buf.last() != Some(&b'\n');
                if open && *tail_at != Some(*offset + n) {
                    return Ok(Next::Left);
                }
                *open_line = open;
                *offset += n;
                Ok(Next::Record(decode_line(buf)))
            }
            Records::Parsed { records, partial } => Ok(match records.next() {
                Some(record) => Next::Record(Line::Text(record)),
                None if *partial => Next::Left,
                None => Next::End,
            }),
        }
    }

    /// Lines: the byte offset after the records handed out, when it is a line start.
    fn boundary(&self) -> Option<u64> {
        match self {
            Records::Lines { offset, open_line: false, .. } => Some(*offset),
            _ => None,
        }
    }

    /// Passes over one record consumed earlier (complete or not: it was complete then).
    fn skip_one(&mut self) -> std::io::Result<bool> {
        match self {
            Records::Lines { reader, offset, open_line, .. } => {
                let mut buf = Vec::new();
                let n = reader.read_until(b'\n', &mut buf)? as u64;
                *open_line = buf.last().is_some_and(|b| *b != b'\n');
                *offset += n;
                Ok(n > 0)
            }
            Records::Parsed { records, .. } => Ok(records.next().is_some()),
        }
    }
}

impl FileReader {
    pub fn new(spec: FileSpec, format: FileFormat, committed: Positions) -> Self {
        Self {
            spec,
            format,
            positions: committed,
            current: None,
            pass: None,
            own_log: false,
            settle: DEFAULT_SETTLE,
            seen: HashMap::new(),
            read_through: HashMap::new(),
            waiting: BTreeSet::new(),
            dead: Vec::new(),
            stdin: None,
        }
    }

    /// For a log lake appends to itself (webhooks): reads only newline-terminated lines,
    /// however long the last one has been waiting, and fails on a line that is not UTF-8.
    pub fn complete_lines_only(mut self) -> Self {
        self.own_log = true;
        self
    }

    /// How long a file must stay unchanged (size and modification time) to count as
    /// completely written.
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The next record, or `None` when every file is read as far as it is complete.
    fn read_next(&mut self, received_at: i64) -> Result<Option<RawRecord>> {
        if matches!(self.spec, FileSpec::Stdin) {
            return self.read_stdin(received_at);
        }
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let current = self.current.as_mut().expect("opened");
            match current.records.next().with_context(|| format!("cannot read {}", current.key))? {
                Next::Record(line) => {
                    current.consumed += 1;
                    let at = Coordinates::File { path: current.key.clone(), line: current.consumed };
                    if let Some(p) = self.positions.get_mut(&current.key) {
                        p.consumed = current.consumed;
                        if let Some(at) = current.records.boundary() {
                            p.boundary = Some((current.consumed, at));
                        }
                    }
                    if let Some(record) = self.deliver(line, at, received_at)? {
                        return Ok(Some(record));
                    }
                }
                next => {
                    let current = self.current.take().expect("opened");
                    if matches!(next, Next::End) {
                        self.read_through.insert(current.key, current.stamp);
                    } else if !self.own_log {
                        self.waiting.insert(current.key);
                    }
                }
            }
        }
    }

    /// A decoded line as a record; `None` for a blank line or a dead letter (kept for
    /// [`Source::take_dead_letters`]).
    fn deliver(&mut self, line: Line, at: Coordinates, received_at: i64) -> Result<Option<RawRecord>> {
        match line {
            Line::Text(text) if text.trim().is_empty() => Ok(None),
            Line::Text(payload) => Ok(Some(RawRecord { payload, at, received_at, event_type: None })),
            Line::Undecodable { text, error } => {
                if self.own_log {
                    bail!("{} line {}: {error}", at.stream(), at.consumed());
                }
                let record = RawRecord { payload: text, at, received_at, event_type: None };
                self.dead.push(DeadLetter { error_type: "parse", message: error, record });
                Ok(None)
            }
        }
    }

    /// The next line of stdin, as it arrives.
    fn read_stdin(&mut self, received_at: i64) -> Result<Option<RawRecord>> {
        loop {
            let stdin = self.stdin.get_or_insert_with(StdinLines::start);
            let Some(bytes) = stdin.next().context("cannot read stdin")? else { return Ok(None) };
            let consumed = stdin.consumed;
            self.positions.insert("-".to_string(), Position::at(consumed));
            let at = Coordinates::File { path: "-".to_string(), line: consumed };
            if let Some(record) = self.deliver(decode_line(bytes), at, received_at)? {
                return Ok(Some(record));
            }
        }
    }

    /// Whether `key` at `stamp` is settled: unchanged for the settle time (by its
    /// modification time, or since this reader first saw it so).
    fn settled(&mut self, key: &str, stamp: Stamp) -> bool {
        let now = Instant::now();
        let since = match self.seen.get(key) {
            Some((seen, since)) if *seen == stamp => *since,
            _ => {
                self.seen.insert(key.to_string(), (stamp, now));
                now
            }
        };
        let age = SystemTime::now().duration_since(stamp.modified).unwrap_or_default();
        age >= self.settle || now.duration_since(since) >= self.settle
    }

    /// Opens the next file with unread records; false when there is none.
    fn open_next(&mut self) -> Result<bool> {
        if self.pass.is_none() {
            self.pass = Some(self.spec.list()?.into());
            self.waiting.clear();
        }
        while let Some((key, path)) = self.pass.as_mut().and_then(|p| p.pop_front()) {
            let Some(stamp) = Stamp::of(&path)? else { continue };
            if self.read_through.get(&key) == Some(&stamp) {
                continue; // Read to its end, unchanged since.
            }
            let settled = self.settled(&key, stamp);
            let (head, head_len) = self.checked_head(&key, &path, stamp)?;
            let known = self.positions.get(&key);
            let (skip, boundary) = known.map_or((0, None), |p| (p.consumed, p.boundary));
            let Some(mut records) = self.open_records(&key, &path, stamp, settled)? else {
                self.waiting.insert(key);
                continue;
            };
            let Some(consumed) = self.skip(&key, &mut records, skip, boundary, stamp)? else {
                self.waiting.insert(key);
                continue;
            };
            let position = self.positions.entry(key.clone()).or_insert(Position { consumed: 0, head, head_len, boundary: None });
            if let Some(at) = records.boundary().filter(|_| consumed > 0) {
                position.boundary = Some((consumed, at));
            }
            self.current = Some(Current { key, records, consumed, stamp });
            return Ok(true);
        }
        Ok(false)
    }

    /// The fingerprint of `key`'s first bytes and its length, checked against its position:
    /// an error when they differ (the file was replaced). A short fingerprint (the file was
    /// shorter than [`HEAD_BYTES`] when first read: empty, say) grows with the file while all
    /// that was consumed lies within it, so a file first seen empty is still told from another.
    fn checked_head(&mut self, key: &str, path: &Path, stamp: Stamp) -> Result<(String, u64)> {
        let Some(known) = self.positions.get_mut(key) else { return head_of(path, HEAD_BYTES) };
        if known.head.is_empty() {
            return Ok((String::new(), 0)); // Stored without a fingerprint.
        }
        let (head, head_len) = head_of(path, known.head_len)?;
        if known.head != head || known.head_len != head_len {
            bail!("{key} changed since lake ingest read it (its first bytes differ); move it away or give it a new name")
        }
        let within = known.consumed == 0 || known.boundary.is_some_and(|(lines, bytes)| lines == known.consumed && bytes <= head_len);
        if head_len < HEAD_BYTES && stamp.len > head_len && within {
            (known.head, known.head_len) = head_of(path, HEAD_BYTES)?;
        }
        Ok((known.head.clone(), known.head_len))
    }

    /// Passes over the `skip` records earlier flushes committed, from `boundary` on (seeking
    /// past the lines before it) when known; returns how many that was, or `None` when the
    /// complete part of a file being written does not reach that far yet (a last record
    /// without a newline, read when the file had settled). A file shorter than the boundary, or
    /// with no line ending there any more, was truncated or replaced: an error.
    fn skip(&self, key: &str, records: &mut Records, skip: u64, boundary: Option<(u64, u64)>, stamp: Stamp) -> Result<Option<u64>> {
        let mut consumed = 0;
        if let Records::Lines { reader, offset, .. } = records
            && let Some((lines, bytes)) = boundary.filter(|&(lines, bytes)| lines <= skip && bytes > 0)
        {
            if bytes > stamp.len {
                bail!(
                    "{key} is {} bytes, shorter than the {bytes} bytes already loaded from it: it was truncated or replaced \
                     (rotated?); nothing more is read from it: move it away or give it a new name",
                    stamp.len
                );
            }
            let mut last = [0u8; 1];
            reader.seek(SeekFrom::Start(bytes - 1)).and_then(|_| reader.read_exact(&mut last)).with_context(|| format!("cannot read {key}"))?;
            if last[0] != b'\n' {
                bail!("{key} changed since lake ingest read it (byte {bytes} no longer ends a line): it was replaced; move it away or give it a new name");
            }
            *offset = bytes;
            consumed = lines;
        }
        while consumed < skip && records.skip_one().with_context(|| format!("cannot read {key}"))? {
            consumed += 1;
        }
        if consumed < skip && matches!(records, Records::Parsed { partial: true, .. }) {
            return Ok(None);
        }
        if consumed < skip {
            return Err(anyhow!(
                "{key} has {consumed} records but {skip} were already loaded from it; it was truncated or replaced"
            ));
        }
        Ok(Some(consumed))
    }

    /// The records of `path` as far as they are complete; `None` when nothing can be read
    /// before the file settles (a JSON or Parquet file being written).
    fn open_records(&self, key: &str, path: &Path, stamp: Stamp, settled: bool) -> Result<Option<Records>> {
        let settled = settled && !self.own_log;
        let whole = |records: Vec<String>| -> Result<Option<Records>> {
            // Changed while it was read: not settled after all.
            if Stamp::of(path)? != Some(stamp) {
                return Ok(None);
            }
            Ok(Some(Records::Parsed { records: records.into_iter(), partial: false }))
        };
        match self.format {
            FileFormat::Ndjson => {
                let file = File::open(path).with_context(|| format!("cannot open {key}"))?;
                let reader = BufReader::with_capacity(1 << 20, file);
                Ok(Some(Records::Lines { reader, offset: 0, tail_at: settled.then_some(stamp.len), open_line: false }))
            }
            FileFormat::Json if settled => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {key}"))?;
                whole(json_elements_of(&text, key)?)
            }
            FileFormat::Parquet if settled => {
                let file = File::open(path).with_context(|| format!("cannot open {key}"))?;
                whole(parquet_objects_of(file, key)?)
            }
            FileFormat::Json | FileFormat::Parquet => Ok(None),
            FileFormat::Csv => {
                let bytes = std::fs::read(path).with_context(|| format!("cannot read {key}"))?;
                let all = settled && bytes.len() as u64 == stamp.len;
                // Unless settled, only up to the last newline: the rest is still being written.
                let complete = if all { bytes.len() } else { bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) };
                let (records, partial) = formats::csv_records(&bytes[..complete], key, !all)?;
                Ok(Some(Records::Parsed { records: records.into_iter(), partial: partial || complete < bytes.len() }))
            }
        }
    }
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
        // Stdin goes on where it is: it cannot be read again.
        self.positions = positions;
        self.pass = None;
        self.current = None;
        self.read_through.clear();
        self.waiting.clear();
        self.dead.clear();
        Ok(())
    }

    fn replayable(&self) -> bool {
        !matches!(self.spec, FileSpec::Stdin)
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }

    /// Files: nothing is left waiting to settle. Stdin: the input ended.
    async fn caught_up(&mut self) -> Result<bool> {
        Ok(match self.spec {
            FileSpec::Stdin => self.finished(),
            FileSpec::Files { .. } => self.waiting.is_empty(),
        })
    }

    fn finished(&self) -> bool {
        self.stdin.as_ref().is_some_and(|s| s.ended)
    }
}
