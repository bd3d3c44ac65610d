//! The object-storage source: `s3://bucket/prefix` (any S3-compatible store), read with
//! OpenDAL. Objects under the prefix are listed in key order and read whole, in the format
//! the source names (NDJSON, JSON, CSV, Parquet); positions work as for local files (records
//! consumed per object key, with a fingerprint of the object's first KiB), so a rerun reads
//! only new objects. An object is written whole (a PUT is atomic), so there is no settle
//! time; an NDJSON line that is not UTF-8 is a dead letter.
//!
//! The endpoint, region and credentials are the project's effective storage settings
//! (`[storage]`, the `AWS_*` variables or a profile; see `lakehouse::storage`).

use std::collections::{HashMap, VecDeque};

use anyhow::{Context, Result, bail};
use opendal::Operator;

use crate::lakehouse::storage::{Timeouts, s3_operator, split_s3_url};

use super::files::{FileFormat, HEAD_BYTES, Line, csv_objects_of, fingerprint, json_elements_of, ndjson_lines_of, parquet_objects_of};
use super::records::{Coordinates, DeadLetter, RawRecord, SourceKind};
use super::source::{Position, Positions, Source};

/// Reads objects under a prefix.
pub struct ObjectSource {
    op: Operator,
    bucket: String,
    prefix: String,
    format: FileFormat,
    positions: Positions,
    /// Keys still to look at in this pass.
    pending: Option<VecDeque<String>>,
    /// Records of the object being read, each with why it cannot be decoded, if so.
    queue: VecDeque<(RawRecord, Option<String>)>,
    /// Undecodable records handed out, for [`Source::take_dead_letters`].
    dead: Vec<DeadLetter>,
}

impl ObjectSource {
    pub fn connect(url: &str, format: FileFormat, storage: &HashMap<String, String>) -> Result<Self> {
        if !url.starts_with("s3://") {
            bail!("`{url}` is not an s3:// URL");
        }
        let (bucket, prefix) = split_s3_url(url)?;
        let op = s3_operator(bucket, storage, Timeouts::default())?;
        // OpenDAL lists folders: a prefix names one.
        let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
        Ok(Self {
            op,
            bucket: bucket.to_string(),
            prefix,
            format,
            positions: Positions::new(),
            pending: None,
            queue: VecDeque::new(),
            dead: Vec::new(),
        })
    }

    /// Queues the unread records of `key`.
    async fn load(&mut self, key: &str) -> Result<()> {
        let stream = format!("s3://{}/{key}", self.bucket);
        let bytes = self.op.read(key).await.with_context(|| format!("cannot read {stream}"))?.to_bytes();
        let known = self.positions.get(&stream).cloned();
        let head_len = known.as_ref().map_or(HEAD_BYTES, |p| p.head_len).min(bytes.len() as u64);
        let head = fingerprint(&bytes[..head_len as usize]);
        let skip = match &known {
            Some(p) if p.head != head || p.head_len != head_len => {
                bail!("{stream} changed since lake ingest read it (its first bytes differ); give it a new key")
            }
            Some(p) => p.consumed,
            None => 0,
        };
        let text = |records: Vec<String>| records.into_iter().map(Line::Text).collect::<Vec<_>>();
        let records: Vec<Line> = match self.format {
            FileFormat::Ndjson => ndjson_lines_of(&bytes),
            FileFormat::Json => {
                text(json_elements_of(std::str::from_utf8(&bytes).with_context(|| format!("{stream} is not UTF-8"))?, &stream)?)
            }
            FileFormat::Csv => text(csv_objects_of(&bytes[..], &stream)?),
            FileFormat::Parquet => text(parquet_objects_of(bytes.clone(), &stream)?),
        };
        if (records.len() as u64) < skip {
            bail!("{stream} has {} records but {skip} were already loaded from it; it was truncated or replaced", records.len());
        }
        self.positions.entry(stream.clone()).or_insert(Position { consumed: skip, head, head_len, boundary: None });
        let now = chrono::Utc::now().timestamp_micros();
        for (i, line) in records.into_iter().enumerate().skip(skip as usize) {
            let at = Coordinates::File { path: stream.clone(), line: i as u64 + 1 };
            let (payload, error) = match line {
                Line::Text(text) => (text, None),
                Line::Undecodable { text, error } => (text, Some(error)),
            };
            self.queue.push_back((RawRecord { payload, at, received_at: now, event_type: None }, error));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Source for ObjectSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Files
    }

    async fn next_record(&mut self) -> Result<Option<RawRecord>> {
        loop {
            while let Some((record, error)) = self.queue.pop_front() {
                let stream = record.at.stream();
                if let Some(p) = self.positions.get_mut(&stream) {
                    p.consumed = record.at.consumed();
                }
                if let Some(message) = error {
                    self.dead.push(DeadLetter { error_type: "parse", message, record });
                    continue;
                }
                if record.payload.trim().is_empty() {
                    continue;
                }
                return Ok(Some(record));
            }
            if self.pending.is_none() {
                let mut keys: Vec<String> = self
                    .op
                    .list_with(&self.prefix)
                    .recursive(true)
                    .await
                    .with_context(|| format!("cannot list s3://{}/{}", self.bucket, self.prefix))?
                    .into_iter()
                    .filter(|e| e.metadata().is_file())
                    .map(|e| e.path().to_string())
                    .collect();
                keys.sort();
                self.pending = Some(keys.into());
            }
            match self.pending.as_mut().and_then(VecDeque::pop_front) {
                Some(key) => self.load(&key).await?,
                None => return Ok(None),
            }
        }
    }

    fn positions(&self) -> &Positions {
        &self.positions
    }

    fn rescan(&mut self) {
        if self.queue.is_empty() {
            self.pending = None;
        }
    }

    async fn reset(&mut self, positions: Positions) -> Result<()> {
        self.positions = positions;
        self.pending = None;
        self.queue.clear();
        self.dead.clear();
        Ok(())
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }
}
