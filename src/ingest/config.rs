//! `[ingest.<name>]` in `lake.toml`: where a source reads from, which raw table it lands in,
//! its schema, batching and error policy.
//!
//! ```toml
//! [ingest.orders_feed]
//! from = "file://landing/orders/*.ndjson"   # a path, a glob, "-" for stdin, or kafka://host:port/topic
//! table = "raw.orders_feed"
//! format = "ndjson"                         # ndjson (default), json (one array or object per file), csv
//! settle_seconds = 2                        # a file unchanged this long is completely written
//! columns = { id = "bigint", email = "varchar", total = "double", created_at = "timestamptz" }
//! required = ["id"]
//! map = { email = "customer.email" }        # column = dotted path in the payload
//! evolve = false                            # new fields: add columns (true) or keep them in _extra
//! max_error_rate = 0.05                     # exit non-zero above this share of dead letters
//! partition_by = ["day(_received_at)"]
//! [ingest.orders_feed.batch]
//! rows = 10000
//! bytes_mb = 64
//! seconds = 10
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// One source, as configured.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `file://<path or glob>`, a plain path or glob, or `-` for stdin.
    pub from: String,
    /// `namespace.table` the records land in (dead letters go to `<table>__errors`).
    pub table: String,
    #[serde(default)]
    pub format: Option<String>,
    /// Files: a file whose size and modification time have not changed for this long is
    /// completely written (its last line counts without a newline; JSON and Parquet files
    /// are read only then).
    #[serde(default = "default_settle_seconds")]
    pub settle_seconds: f64,
    /// Declared columns: name → type (`bigint`, `int`, `double`, `boolean`, `varchar`,
    /// `timestamptz`, `date`). Empty: inferred from the first batch, then fixed.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Columns a record must have (non-null), else it is a dead letter.
    #[serde(default)]
    pub required: Vec<String>,
    /// Column → dotted path into the payload (`customer.email`, `items.0.sku`).
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Add new payload fields as nullable columns (true) or keep them in `_extra` (false).
    #[serde(default)]
    pub evolve: bool,
    /// Share of dead letters (0..1) above which `lake ingest` exits non-zero.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Partition transforms, as for models (`day(_received_at)`).
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Dotted path of the event type in the payload, stored in `_event_type`.
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub batch: BatchConfig,
    /// Kafka: the consumer group (default `lake-<source>`).
    #[serde(default)]
    pub group: Option<String>,
    /// Kafka: read these partitions of every topic instead of joining the group.
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    /// Kafka: librdkafka client properties (`security.protocol`, `sasl.username`, ...).
    #[serde(default)]
    pub kafka: BTreeMap<String, String>,
    /// Webhooks (`from = "http://host:port"`): the providers served, each on
    /// `POST /webhooks/<provider>`.
    #[serde(default)]
    pub webhooks: BTreeMap<String, super::webhook::ProviderConfig>,
    /// Webhooks: the largest body accepted (KiB); larger ones get 413.
    #[serde(default = "default_max_body_kb")]
    pub max_body_kb: usize,
    /// Webhooks: write-ahead log files whose events are all committed are deleted once older
    /// than this (hours); redeliveries are recognized while their log file is kept.
    #[serde(default = "default_wal_retention_hours")]
    pub wal_retention_hours: f64,
}

pub fn default_settle_seconds() -> f64 {
    super::files::DEFAULT_SETTLE.as_secs_f64()
}

fn default_wal_retention_hours() -> f64 {
    168.0
}

fn default_max_body_kb() -> usize {
    1024
}

/// When a batch is flushed: at this many rows, bytes or seconds, whichever comes first.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_rows")]
    pub rows: usize,
    #[serde(default = "default_bytes_mb")]
    pub bytes_mb: u64,
    #[serde(default = "default_seconds")]
    pub seconds: f64,
}

fn default_rows() -> usize {
    10_000
}
fn default_bytes_mb() -> u64 {
    64
}
fn default_seconds() -> f64 {
    10.0
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { rows: default_rows(), bytes_mb: default_bytes_mb(), seconds: default_seconds() }
    }
}
