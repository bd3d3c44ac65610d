//! `lake ingest`: the raw layer. Sources land in raw Iceberg tables in batches, exactly once,
//! with records that fail parsing, validation or type conversion in a dead-letter table.
//!
//! A flush converts a batch ([`records`]), commits the dead letters to `<table>__errors`, then
//! the rows to the raw table, each as one append snapshot whose summary carries the source's
//! read positions (`lake.ingest.positions.<source>`) and a flush id. A restart resumes from
//! the raw table's positions and does not store a dead letter again when the errors table's
//! positions already cover it, so a crash between the two commits neither loses nor repeats a
//! record. Each commit attempt merges this flush's positions into those stored in the table it
//! is based on, and is refused when the stored positions of a stream this flush read moved
//! since the flush began (another process consumed it): the flush is then redone from the
//! stored positions, never re-applied. So several processes can share a source (Kafka
//! partitions split by the consumer group). When a commit's outcome is unknown, the table is
//! reloaded and the flush id looked up before anything is retried. Each source's lane reads and
//! converts the next batch while the last one commits ([`lane`]).
//!
//! Sources ([`source::Source`]): [`files`] (paths, globs, stdin), [`kafka`] and [`webhook`]
//! (signed HTTP requests through a local write-ahead log), [`objects`] (`s3://`).

pub use crate::project::ingest as config;
pub mod decode;
pub mod files;
pub mod kafka;
mod lane;
pub mod metrics;
pub mod objects;
pub mod records;
pub mod source;
pub mod webhook;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use iceberg::TableIdent;
use iceberg::table::Table;

use config::SourceConfig;
use files::{FileFormat, FileReader, FileSpec};
use records::Coordinates;
use source::{Positions, Source};

use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::lakehouse::summary;
use crate::lakehouse::writer::WriteOptions;

/// Summary key prefix of a source's read positions.
pub const POSITIONS_PREFIX: &str = "lake.ingest.positions.";
/// Summary key of the flush that wrote a snapshot.
pub const FLUSH_ID: &str = "lake.ingest.flush-id";
/// Summary key prefix of a Kafka source's offsets (`topic/partition` → next offset), written
/// beside its positions for readers that want offsets alone.
pub const OFFSETS_PREFIX: &str = "lake.ingest.offsets.";

/// What one source did in this run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceReport {
    pub source: String,
    pub table: String,
    pub records: u64,
    pub rows: u64,
    pub dead_letters: u64,
    pub flushes: u64,
    /// Flushes redone because another process committed for the source meanwhile.
    pub redone: u64,
}

impl SourceReport {
    pub fn error_rate(&self) -> f64 {
        if self.records == 0 { 0.0 } else { self.dead_letters as f64 / self.records as f64 }
    }
}

/// One flush of a source into a table, as [`RunOptions::on_flush`] sees it. `id` is the flush
/// id (a UUIDv7), stored in the snapshots it commits as [`FLUSH_ID`] (`<id>:rows`).
pub enum Flush<'a> {
    /// Records are read; the flush is about to commit them.
    Started { id: &'a str, report: &'a SourceReport, from: &'a str },
    /// Committed: `rows` rows and `dead` dead letters; the table's snapshot after it.
    Committed { id: &'a str, report: &'a SourceReport, from: &'a str, rows: u64, dead: u64, snapshot_id: Option<i64> },
    /// Nothing of it committed (the source stops, or the flush is redone).
    Failed { id: &'a str, report: &'a SourceReport, from: &'a str, error: String },
}

/// How a run behaves.
#[derive(Clone)]
pub struct RunOptions {
    /// Drain what is there and return (else poll until `stop`).
    pub once: bool,
    /// Set on SIGINT/SIGTERM: flush what is read, commit, return.
    pub stop: Arc<AtomicBool>,
    /// Called as every flush starts, commits or fails (for logs and lineage events).
    pub on_flush: Arc<dyn Fn(Flush<'_>) + Send + Sync>,
    /// Prometheus counters, when served.
    pub metrics: Arc<metrics::Metrics>,
    /// Storage settings for object-storage sources (`s3.endpoint`, ...).
    pub storage: HashMap<String, String>,
}

/// The `lake.model` producer name of a source's commits.
fn producer(source: &str) -> String {
    format!("ingest:{source}")
}

/// Positions committed in a table for `source` (empty when none).
pub fn committed_positions(table: Option<&Table>, source: &str) -> Result<Positions> {
    let Some(table) = table else { return Ok(Positions::new()) };
    match summary::last_value(table, &format!("{POSITIONS_PREFIX}{source}")) {
        Some((snapshot, text)) => serde_json::from_str(&text)
            .with_context(|| format!("snapshot {snapshot} of {} holds unreadable ingest positions", table.identifier())),
        None => Ok(Positions::new()),
    }
}

fn errors_ident(ident: &TableIdent) -> Result<TableIdent> {
    table_ident(&format!("{}.{}__errors", ident.namespace().join("."), ident.name()))
}

/// Moves `positions` forward to `done`, never back: after a crash between the dead-letter and
/// the row commit, the errors table is ahead of the rows that are read again, and a flush of
/// those must not move its positions back (its dead letters would then be stored twice).
fn advance(positions: &mut Positions, done: &Positions) {
    for (stream, position) in done {
        match positions.get(stream) {
            Some(p) if p.consumed >= position.consumed => {}
            _ => {
                positions.insert(stream.clone(), position.clone());
            }
        }
    }
}

/// Whether `at` lies within `positions` (already stored).
fn covered(positions: &Positions, at: &Coordinates) -> bool {
    positions.get(&at.stream()).is_some_and(|p| at.consumed() <= p.consumed)
}

/// Opens the source `config.from` names (webhook sources: see [`run_source`]).
pub async fn open_source(name: &str, config: &SourceConfig, root: &Path, options: &RunOptions) -> Result<Box<dyn Source>> {
    if config.from.starts_with("s3://") {
        let format = FileFormat::parse(config.format.as_deref(), &config.from)?;
        return Ok(Box::new(objects::ObjectSource::connect(&config.from, format, &options.storage)?));
    }
    if config.from.starts_with("kafka://") {
        let group = config.group.clone().unwrap_or_else(|| format!("lake-{name}"));
        // --once reads every partition, assigned directly: a group member that died may still
        // hold some of them until its session times out.
        let source = kafka::KafkaSource::connect(&config.from, &group, config.partitions.as_deref(), options.once, &config.kafka)?;
        return Ok(Box::new(source));
    }
    let spec = FileSpec::parse(&config.from, root)?;
    let format = FileFormat::parse(config.format.as_deref(), &config.from)?;
    let settle = Duration::try_from_secs_f64(config.settle_seconds)
        .map_err(|_| anyhow!("settle_seconds = {} is not a duration in seconds", config.settle_seconds))?;
    Ok(Box::new(FileReader::new(spec, format, Positions::new()).settle(settle)))
}

/// Runs one source until it is drained (`once`) or stopped: one report per table it writes. A
/// webhook source serves (unless `once`: it only replays its logs) and writes each lane of its
/// routes (one table, one log each) as a source of its own.
pub async fn run_source(
    lakehouse: &Lakehouse,
    root: &Path,
    name: &str,
    config: &SourceConfig,
    write: &WriteOptions,
    options: &RunOptions,
) -> Result<Vec<SourceReport>> {
    if config.from.starts_with("http://") {
        let routes = webhook::WebhookSource::routes(&config.table, &config.routes, &config.webhooks)
            .with_context(|| format!("ingest source `{name}`"))?;
        let tables = routes.tables().to_vec();
        let wal = root.join(".lake").join("ingest").join(name);
        let retention = std::time::Duration::from_secs_f64(config.wal_retention_hours.max(0.0) * 3600.0);
        let serve = !options.once;
        let lanes = webhook::WebhookSource::start(&config.from, &wal, routes, &config.webhooks, config.max_body_kb, retention, serve, options.stop.clone())
            .await
            .with_context(|| format!("ingest source `{name}`"))?;
        let runs = tables
            .iter()
            .zip(lanes)
            .map(|(table, source)| lane::run_lane(lakehouse, name, config, table, Box::new(source), write, options));
        return futures::future::try_join_all(runs).await;
    }
    if !config.routes.is_empty() {
        return Err(anyhow!("ingest source `{name}`: routes are for webhook sources (from = \"http://host:port\")"));
    }
    let source = open_source(name, config, root, options).await.with_context(|| format!("ingest source `{name}`"))?;
    Ok(vec![lane::run_lane(lakehouse, name, config, &config.table, source, write, options).await?])
}

/// A source's `partition_by` entries as (column, transform).
fn partition_fields(name: &str, config: &SourceConfig) -> Result<Vec<(String, String)>> {
    config
        .partition_by
        .iter()
        .map(|p| {
            crate::lakehouse::schema::parse_partition_field(p)
                .map(|f| (f.column, f.transform))
                .ok_or_else(|| anyhow!("ingest source `{name}`: bad partition_by entry `{p}`"))
        })
        .collect()
}
