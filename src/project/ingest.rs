//! `[ingest.<name>]` in `lake.toml`: where a source reads from, which raw table it lands in,
//! its schema, batching and error policy. The settings live with the rest of `lake.toml`
//! (so every command checks them); [`crate::ingest`] runs them and re-exports this module as
//! `ingest::config`.
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
//!
//! A webhook source (`from = "http://host:port"`) has `[ingest.<name>.webhooks]`: the server's
//! limits ([`WebhookConfig`]) beside one table per provider ([`ProviderConfig`]).

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
    pub webhooks: WebhookConfig,
    /// Webhooks: `"<provider>:<event type pattern>" = "<ns.table>"` sends matching events to
    /// that table instead of `table` (see `ingest::webhook` routes).
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// Webhooks: the largest body accepted (KiB); larger ones get 413.
    #[serde(default = "default_max_body_kb")]
    pub max_body_kb: usize,
    /// Webhooks: write-ahead log files whose events are all committed are deleted once older
    /// than this (hours); redeliveries are recognized while their log file is kept.
    #[serde(default = "default_wal_retention_hours")]
    pub wal_retention_hours: f64,
}

/// How long a file must stay unchanged to count as completely written, by default.
pub const DEFAULT_SETTLE_SECONDS: f64 = 2.0;

pub fn default_settle_seconds() -> f64 {
    DEFAULT_SETTLE_SECONDS
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

/// The largest `bytes_mb` (1 TiB): a batch is held in memory before it is written.
pub const MAX_BATCH_MB: u64 = 1 << 20;

impl BatchConfig {
    /// Whether each limit can be met: `rows` and `bytes_mb` (at most [`MAX_BATCH_MB`]) at
    /// least 1, `seconds` a positive number. The message names the setting as `names` spells
    /// it (`(rows, bytes_mb, seconds)`: lake.toml keys or command-line flags).
    pub fn validate(&self, names: (&str, &str, &str)) -> Result<(), String> {
        if self.rows == 0 {
            return Err(format!("{} = 0: a batch must hold at least 1 record", names.0));
        }
        if self.bytes_mb == 0 || self.bytes_mb > MAX_BATCH_MB {
            return Err(format!("{} = {}: give a size in MiB from 1 to {MAX_BATCH_MB}", names.1, self.bytes_mb));
        }
        if !(self.seconds.is_finite() && self.seconds > 0.0) {
            return Err(format!("{} = {}: give a positive number of seconds", names.2, self.seconds));
        }
        Ok(())
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { rows: default_rows(), bytes_mb: default_bytes_mb(), seconds: default_seconds() }
    }
}

/// The webhook providers `lake ingest` knows, each served on `POST /webhooks/<provider>`.
pub const WEBHOOK_PROVIDERS: [&str; 4] = ["shopify", "stripe", "hubspot", "generic"];

/// `[ingest.<name>.webhooks]`: the server's limits and, as sub-tables, the providers served.
///
/// ```toml
/// [ingest.hooks.webhooks]
/// header_timeout_seconds = 10   # a request's headers must arrive within this
/// body_timeout_seconds = 30     # its body within this once the headers are in
/// idle_timeout_seconds = 60     # a kept-alive connection with no request is closed after this
/// max_connections = 1024        # connections served at once (more wait in the listen queue)
/// [ingest.hooks.webhooks.shopify]
/// secret_env = ["SHOPIFY_SECRET"]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "BTreeMap<String, toml::Value>")]
pub struct WebhookConfig {
    pub header_timeout_seconds: f64,
    pub body_timeout_seconds: f64,
    pub idle_timeout_seconds: f64,
    pub max_connections: usize,
    /// Provider (`shopify`, `stripe`, `hubspot`, `generic`) → its settings.
    pub providers: BTreeMap<String, ProviderConfig>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            header_timeout_seconds: 10.0,
            body_timeout_seconds: 30.0,
            idle_timeout_seconds: 60.0,
            max_connections: 1024,
            providers: BTreeMap::new(),
        }
    }
}

const WEBHOOK_SETTINGS: [&str; 4] = ["header_timeout_seconds", "body_timeout_seconds", "idle_timeout_seconds", "max_connections"];

impl TryFrom<BTreeMap<String, toml::Value>> for WebhookConfig {
    type Error = String;

    fn try_from(table: BTreeMap<String, toml::Value>) -> Result<Self, String> {
        let mut config = WebhookConfig::default();
        let seconds = |key: &str, value: &toml::Value| -> Result<f64, String> {
            let n = value.as_float().or_else(|| value.as_integer().map(|i| i as f64));
            match n {
                Some(n) if n > 0.0 && n.is_finite() => Ok(n),
                _ => Err(format!("webhooks.{key} must be a positive number of seconds, not {value}")),
            }
        };
        for (key, value) in table {
            match key.as_str() {
                "header_timeout_seconds" => config.header_timeout_seconds = seconds(&key, &value)?,
                "body_timeout_seconds" => config.body_timeout_seconds = seconds(&key, &value)?,
                "idle_timeout_seconds" => config.idle_timeout_seconds = seconds(&key, &value)?,
                "max_connections" => {
                    config.max_connections = value
                        .as_integer()
                        .filter(|n| *n > 0)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| format!("webhooks.max_connections must be a positive integer, not {value}"))?;
                }
                provider if WEBHOOK_PROVIDERS.contains(&provider) => {
                    let settings: ProviderConfig =
                        value.try_into().map_err(|e| format!("webhooks.{provider}: {}", e.to_string().trim()))?;
                    if provider != "generic" && (settings.require_timestamp || settings.tolerance_seconds.is_some()) {
                        return Err(format!(
                            "webhooks.{provider}: require_timestamp and tolerance_seconds are settings of the generic provider \
                             (the others' signature schemes fix their own)"
                        ));
                    }
                    config.providers.insert(key, settings);
                }
                other => {
                    return Err(format!(
                        "webhooks.{other} is neither a setting ({}) nor a provider ({})",
                        WEBHOOK_SETTINGS.join(", "),
                        WEBHOOK_PROVIDERS.join(", ")
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// A provider's settings under `[ingest.<name>.webhooks.<provider>]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Names of environment variables holding the signing secrets (several during rotation).
    pub secret_env: Vec<String>,
    /// HubSpot: the public base URL HubSpot calls (`https://hooks.example.com`), used to
    /// rebuild the signed URI; default `http://<Host header>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Generic: refuse requests without a signed `X-Webhook-Timestamp`.
    #[serde(default)]
    pub require_timestamp: bool,
    /// Generic: how far (seconds) a signed `X-Webhook-Timestamp` may be from now (default 300).
    #[serde(default)]
    pub tolerance_seconds: Option<u64>,
}
