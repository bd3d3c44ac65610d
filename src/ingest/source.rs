//! What every ingest source provides: records one at a time, and its read positions.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::records::{DeadLetter, RawRecord, SourceKind};

/// How far one stream (a file, a topic partition) has been consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Records consumed: lines (or JSON array elements) of a file; for a Kafka partition, the
    /// next offset to read.
    pub consumed: u64,
    /// Files: SHA-256 (hex, 16 digits) of the first `head_len` bytes, to tell a grown file
    /// from a replaced one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub head: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub head_len: u64,
    /// NDJSON files: `(lines, bytes)`, the first `lines` lines (at most `consumed`) end at byte
    /// `bytes`, so a reader seeks there instead of reading the consumed lines again. `None`:
    /// not known (other formats, positions stored by an older lake): lines are counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<(u64, u64)>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Position {
    /// A stream position without a file fingerprint.
    pub fn at(consumed: u64) -> Self {
        Self { consumed, head: String::new(), head_len: 0, boundary: None }
    }
}

/// Positions of a source's streams, by stream name (a file path, `topic/partition`).
pub type Positions = BTreeMap<String, Position>;

/// A source of raw records.
#[async_trait::async_trait]
pub trait Source: Send {
    /// Which coordinate columns its rows get.
    fn kind(&self) -> SourceKind;
    /// The next record, or `None` when nothing is available right now.
    async fn next_record(&mut self) -> Result<Option<RawRecord>>;
    /// Positions after every record handed out so far.
    fn positions(&self) -> &Positions;
    /// Look again for data that may have arrived (new files, appended lines).
    fn rescan(&mut self) {}
    /// Go back to `positions` (the committed ones): after a restart or a refused commit.
    async fn reset(&mut self, positions: Positions) -> Result<()>;
    /// Whether positions can be replayed (stdin: no).
    fn replayable(&self) -> bool {
        true
    }
    /// Called after a flush committed everything handed out so far (`positions`): a source
    /// may release what it no longer needs (webhook logs).
    async fn committed(&mut self, _positions: &Positions) -> Result<()> {
        Ok(())
    }
    /// Messages behind the broker per stream (Kafka partitions; empty for other sources).
    fn lag(&self) -> BTreeMap<String, i64> {
        BTreeMap::new()
    }
    /// Whether everything available now has been handed out (checked when `next_record`
    /// returned `None`). Files: none is left waiting to settle; stdin: its input ended. Kafka:
    /// every assigned partition is read up to its high watermark.
    async fn caught_up(&mut self) -> Result<bool> {
        Ok(true)
    }
    /// Records read but not decodable (a line that is not UTF-8), handed out as dead letters
    /// since the last call; `positions` already cover them. Called after every `next_record`.
    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        Vec::new()
    }
    /// Whether a stop (SIGINT/SIGTERM) reads what is there to its end before the last commit
    /// (a webhook log: short and local, acknowledged already), rather than committing only
    /// what was read (Kafka, files: the rest is read on the next run).
    fn drains_on_stop(&self) -> bool {
        false
    }
    /// Whether the input ended for good (stdin closed): the run flushes, commits and returns,
    /// with or without `--once`.
    fn finished(&self) -> bool {
        false
    }
}
