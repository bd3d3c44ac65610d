//! The object-storage source: `s3://bucket/prefix` (any S3-compatible store), read with
//! OpenDAL. Objects under the prefix are listed in key order and read whole, in the format
//! the source names (NDJSON, JSON, CSV, Parquet); positions work as for local files (records
//! consumed per object key, with a fingerprint of the object's first KiB), so a rerun reads
//! only new objects. An object is written whole (a PUT is atomic), so there is no settle
//! time; an NDJSON line that is not UTF-8 is a dead letter.
//!
//! The endpoint, region and credentials come from `lake.toml`'s `[storage]` (`s3.endpoint`,
//! `s3.region`, `s3.access-key-id`, `s3.secret-access-key`) or the environment
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).

use std::collections::{HashMap, VecDeque};

use anyhow::{Context, Result, anyhow, bail};
use opendal::Operator;

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
        let rest = url.strip_prefix("s3://").ok_or_else(|| anyhow!("`{url}` is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("`{url}`: expected s3://bucket/prefix");
        }
        let setting = |key: &str, env: &str| storage.get(key).cloned().or_else(|| std::env::var(env).ok()).filter(|v| !v.is_empty());
        let mut builder = opendal::services::S3::default().bucket(bucket).root("/").disable_config_load();
        builder = builder.region(&setting("s3.region", "AWS_REGION").unwrap_or_else(|| "us-east-1".into()));
        if let Some(endpoint) = setting("s3.endpoint", "AWS_ENDPOINT_URL") {
            builder = builder.endpoint(&endpoint);
        }
        match (setting("s3.access-key-id", "AWS_ACCESS_KEY_ID"), setting("s3.secret-access-key", "AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => builder = builder.access_key_id(&key).secret_access_key(&secret),
            _ => builder = builder.skip_signature(),
        }
        let op = Operator::new(builder).context("cannot set up the S3 client")?.finish();
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
        self.positions.entry(stream.clone()).or_insert(Position { consumed: skip, head, head_len });
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
