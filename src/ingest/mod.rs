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
//! reloaded and the flush id looked up before anything is retried.
//!
//! Sources ([`source::Source`]): [`files`] (paths, globs, stdin), [`kafka`] and [`webhook`]
//! (signed HTTP requests through a local write-ahead log), [`objects`] (`s3://`).

pub use crate::project::ingest as config;
pub mod decode;
pub mod files;
pub mod kafka;
pub mod metrics;
pub mod objects;
pub mod records;
pub mod source;
pub mod webhook;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use iceberg::TableIdent;
use iceberg::table::Table;

use config::SourceConfig;
use files::{FileFormat, FileReader, FileSpec};
use records::{Coordinates, DeadLetter, Layout, RawRecord, convert_records, dead_letter_batch};
use source::{Positions, Source};

use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::lakehouse::commit::{self, RebaseFn};
use crate::lakehouse::summary;
use crate::lakehouse::writer::WriteOptions;
use crate::materialize::{self, SchemaChangePolicy, Strategy};

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
            .map(|(table, source)| run_lane(lakehouse, name, config, table, Box::new(source), write, options));
        return futures::future::try_join_all(runs).await;
    }
    if !config.routes.is_empty() {
        return Err(anyhow!("ingest source `{name}`: routes are for webhook sources (from = \"http://host:port\")"));
    }
    let source = open_source(name, config, root, options).await.with_context(|| format!("ingest source `{name}`"))?;
    Ok(vec![run_lane(lakehouse, name, config, &config.table, source, write, options).await?])
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

/// Runs `source` into `table` until it is drained (`once`) or stopped.
async fn run_lane(
    lakehouse: &Lakehouse,
    name: &str,
    config: &SourceConfig,
    table: &str,
    mut source: Box<dyn Source>,
    write: &WriteOptions,
    options: &RunOptions,
) -> Result<SourceReport> {
    let ident = table_ident(table).with_context(|| format!("ingest source `{name}`: bad table"))?;
    let errors = errors_ident(&ident)?;
    let partition_by = partition_fields(name, config)?;
    let mut report = SourceReport { source: name.to_string(), table: table.to_string(), ..Default::default() };
    config.batch.validate(("batch.rows", "batch.bytes_mb", "batch.seconds")).map_err(|e| anyhow!("ingest source `{name}`: {e}"))?;
    let max_rows = config.batch.rows;
    let max_bytes = config.batch.bytes_mb * 1024 * 1024;
    let max_wait = Duration::from_secs_f64(config.batch.seconds.max(0.01));
    let counters = options.metrics.source(name);

    // Once stopping, a source that drains on stop (a webhook log) is looked at once more and
    // read to its end, so that what was acknowledged before the stop is committed now.
    let mut looked_again = false;
    'restart: loop {
        let mut base = lakehouse.load_table(&ident).await?;
        let mut errors_base = lakehouse.load_table(&errors).await?;
        // The positions stored in the table as this process last saw them: a flush's streams
        // must still be there when it commits (the source's own positions may have moved
        // without a commit: a file opened empty, blank lines, a partial first line).
        let mut committed = if source.replayable() { committed_positions(base.as_ref(), name)? } else { Positions::new() };
        let mut errors_stored = committed_positions(errors_base.as_ref(), name)?;
        source.reset(committed.clone()).await.with_context(|| format!("ingest source `{name}`"))?;
        let mut layout: Option<Layout> = None;
        loop {
            // Collect a batch.
            let started = Instant::now();
            let mut batch: Vec<RawRecord> = Vec::new();
            // Records the source could not decode: dead letters of this batch.
            let mut undecodable: Vec<DeadLetter> = Vec::new();
            let mut bytes = 0u64;
            let mut drained = false;
            while batch.len() + undecodable.len() < max_rows && bytes < max_bytes {
                let next = source.next_record().await.with_context(|| format!("ingest source `{name}`"))?;
                for dead in source.take_dead_letters() {
                    bytes += dead.record.payload.len() as u64;
                    undecodable.push(dead);
                }
                match next {
                    Some(record) => {
                        bytes += record.payload.len() as u64;
                        batch.push(record);
                        counters.buffered.store(batch.len() as u64, Ordering::Relaxed);
                    }
                    None => {
                        let stopping = options.stop.load(Ordering::Relaxed) || source.finished();
                        if stopping && source.drains_on_stop() && !looked_again {
                            looked_again = true;
                            source.rescan();
                            continue;
                        }
                        if (options.once && source.caught_up().await?) || stopping {
                            drained = true;
                            break;
                        }
                        if started.elapsed() >= max_wait {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100).min(max_wait)).await;
                        source.rescan();
                    }
                }
                if started.elapsed() >= max_wait && !(batch.is_empty() && undecodable.is_empty()) {
                    break;
                }
            }
            *counters.lag.lock().expect("metrics lock") = source.lag();
            if !batch.is_empty() || !undecodable.is_empty() {
                // Counted once committed: a flush that is redone reads its records again.
                let read = (batch.len() + undecodable.len()) as u64;
                let flush_started = Instant::now();
                let flush_id = uuid::Uuid::now_v7().to_string();
                (options.on_flush)(Flush::Started { id: &flush_id, report: &report, from: &config.from });
                let flushed = flush(
                    lakehouse, name, config, source.kind(), &ident, &errors, &mut base, &mut errors_base, &mut layout,
                    batch, undecodable, &committed, source.positions(), &mut errors_stored, &partition_by, write,
                    source.replayable(), &flush_id,
                )
                .await;
                if let Err(e) = &flushed {
                    let error = e.to_string();
                    (options.on_flush)(Flush::Failed { id: &flush_id, report: &report, from: &config.from, error });
                }
                match flushed {
                    Ok((rows, dead)) => {
                        count_flush(&mut report, &counters, (read, bytes, rows, dead), flush_started);
                        let snapshot_id = base.as_ref().and_then(|t| t.metadata().current_snapshot_id());
                        (options.on_flush)(Flush::Committed { id: &flush_id, report: &report, from: &config.from, rows, dead, snapshot_id });
                        committed = source.positions().clone();
                        source.committed(&committed).await.with_context(|| format!("ingest source `{name}`"))?;
                    }
                    Err(e) if e.commit().is_some_and(commit::Error::is_producer_conflict) => {
                        // Another process consumed a stream of this flush: redo from what is stored.
                        report.redone += 1;
                        tracing::info!("ingest {name}: {e:#}; redoing the flush from the stored positions");
                        continue 'restart;
                    }
                    Err(e) => return Err(anyhow::Error::from(e).context(format!("ingest source `{name}`"))),
                }
            }
            // Drained under --once, stopping, or the input ended: everything read is committed.
            if drained || (options.stop.load(Ordering::Relaxed) && !source.drains_on_stop()) {
                return Ok(report);
            }
        }
    }
}

/// Counts a committed flush of `read` records (`bytes`), `rows` rows and `dead` dead letters.
fn count_flush(report: &mut SourceReport, counters: &metrics::SourceMetrics, (read, bytes, rows, dead): (u64, u64, u64, u64), started: Instant) {
    report.records += read;
    report.rows += rows;
    report.dead_letters += dead;
    report.flushes += 1;
    counters.records.fetch_add(read, Ordering::Relaxed);
    counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    counters.commits.fetch_add(1, Ordering::Relaxed);
    counters.commit_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    counters.dead_letters.fetch_add(dead, Ordering::Relaxed);
    counters.buffered.store(0, Ordering::Relaxed);
}

/// The rebase hook of a flush's commit to a table whose stored positions were `seen` when the
/// flush began: refuses when a stream this flush read moved since, and otherwise stores the
/// base's positions with this flush's streams moved to `done`.
fn positions_rebase(name: &str, kind: records::SourceKind, seen: &Positions, done: &Positions, flush_id: String) -> RebaseFn {
    let (name, seen, done) = (name.to_string(), seen.clone(), done.clone());
    Arc::new(move |base: &Table| -> Result<HashMap<String, String>, commit::Error> {
        let mut stored = committed_positions(Some(base), &name)?;
        for stream in done.keys() {
            if stored.get(stream) != seen.get(stream) {
                return Err(commit::Error::ProducerConflict(format!(
                    "{stream} of ingest source `{name}` was consumed by another process meanwhile; nothing was committed"
                )));
            }
        }
        advance(&mut stored, &done);
        let mut properties = HashMap::new();
        properties.insert(format!("{POSITIONS_PREFIX}{name}"), serde_json::to_string(&stored).map_err(anyhow::Error::from)?);
        if kind == records::SourceKind::Kafka {
            let offsets: std::collections::BTreeMap<&String, u64> = stored.iter().map(|(k, v)| (k, v.consumed)).collect();
            properties.insert(format!("{OFFSETS_PREFIX}{name}"), serde_json::to_string(&offsets).map_err(anyhow::Error::from)?);
        }
        properties.insert(FLUSH_ID.to_string(), flush_id.clone());
        Ok(properties)
    })
}

/// Converts and commits one batch: dead letters (`undecodable` ones and those of the
/// conversion), then rows; returns (rows, dead letters). `start` and `end` are the source's
/// positions before and after the batch.
#[allow(clippy::too_many_arguments)]
async fn flush(
    lakehouse: &Lakehouse,
    name: &str,
    config: &SourceConfig,
    kind: records::SourceKind,
    ident: &TableIdent,
    errors: &TableIdent,
    base: &mut Option<Table>,
    errors_base: &mut Option<Table>,
    layout: &mut Option<Layout>,
    batch: Vec<RawRecord>,
    undecodable: Vec<DeadLetter>,
    start: &Positions,
    end: &Positions,
    errors_stored: &mut Positions,
    partition_by: &[(String, String)],
    write: &WriteOptions,
    replayable: bool,
    flush_id: &str,
) -> Result<(u64, u64), materialize::Error> {
    let loaded_at = chrono::Utc::now().timestamp_micros();
    if layout.is_none() {
        let schema = match base {
            Some(t) => Some(iceberg::arrow::schema_to_arrow_schema(t.metadata().current_schema()).map_err(anyhow::Error::from)?),
            None => None,
        };
        // Only a table that neither exists nor has declared columns is inferred from the batch.
        let sample: Vec<serde_json::Value> = if schema.is_none() && config.columns.is_empty() {
            batch.iter().filter_map(|r| serde_json::from_str(&r.payload).ok()).collect()
        } else {
            Vec::new()
        };
        *layout = Some(Layout::new(
            &config.columns,
            &config.map,
            &config.required,
            config.evolve,
            config.event_type.as_deref(),
            kind,
            schema.as_ref(),
            &sample,
        )?);
    }
    let layout = layout.as_mut().expect("set above");
    let mut converted = convert_records(layout, name, batch, loaded_at)?;
    converted.dead.extend(undecodable);
    // The streams this flush read, where they were, and where they are now.
    let (seen, done): (Positions, Positions) = if replayable {
        let done: Positions = end.iter().filter(|(k, v)| start.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let seen = done.keys().filter_map(|k| start.get(k).map(|v| (k.clone(), v.clone()))).collect();
        (seen, done)
    } else {
        (Positions::new(), Positions::new())
    };
    let properties = summary::stamp(None, Some(&producer(name)));

    // Dead letters first, minus those an earlier (interrupted) flush already stored.
    let dead: Vec<_> = converted.dead.into_iter().filter(|d| !covered(errors_stored, &d.record.at)).collect();
    let dead_count = dead.len() as u64;
    if !dead.is_empty() {
        let rows = dead_letter_batch(name, kind, &dead, loaded_at)?;
        // The errors table may be ahead of the rows (an interrupted flush): compare with what it held.
        let errors_seen: Positions = done.keys().filter_map(|k| errors_stored.get(k).map(|v| (k.clone(), v.clone()))).collect();
        let id = format!("{flush_id}:errors");
        let rebase = positions_rebase(name, kind, &errors_seen, &done, id.clone());
        commit_batch(lakehouse, errors, errors_base, rows, properties.clone(), rebase, &id, &[], write).await?;
        advance(errors_stored, &done);
    }
    let rows = converted.batch.num_rows() as u64;
    if rows > 0 || !done.is_empty() {
        let id = format!("{flush_id}:rows");
        let rebase = positions_rebase(name, kind, &seen, &done, id.clone());
        commit_batch(lakehouse, ident, base, converted.batch, properties, rebase, &id, partition_by, write).await?;
    }
    Ok((rows, dead_count))
}

/// Appends `rows` to `ident` in one snapshot and moves `base` to the committed table. When the
/// catalog's answer was lost, the table is reloaded and the flush id looked up: a commit that
/// landed is not repeated.
#[allow(clippy::too_many_arguments)]
async fn commit_batch(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    base: &mut Option<Table>,
    rows: arrow::array::RecordBatch,
    properties: HashMap<String, String>,
    rebase: RebaseFn,
    flush_id: &str,
    partition_by: &[(String, String)],
    write: &WriteOptions,
) -> Result<(), materialize::Error> {
    let request = materialize::Request {
        ident: ident.clone(),
        base: base.clone(),
        strategy: Strategy::Append,
        partition_by: partition_by.to_vec(),
        watermark_column: None,
        previous_watermark: None,
        fixed_watermark: None,
        delete_when: None,
        on_schema_change: SchemaChangePolicy::AppendNewColumns,
        properties,
        rebase: Some(rebase.clone()),
        write,
    };
    let schema = rows.schema();
    let stream = futures::StreamExt::boxed(futures::stream::iter([Ok(rows)]));
    let result = materialize::materialize(lakehouse, request, schema, stream).await;
    if let Err(e) = result {
        if !e.commit().is_some_and(commit::Error::is_unknown_outcome) {
            return Err(e);
        }
        let reloaded = lakehouse.table(ident).await?;
        let landed = summary::ancestry(&reloaded)
            .iter()
            .any(|s| s.summary().additional_properties.get(FLUSH_ID).map(String::as_str) == Some(flush_id));
        if !landed {
            return Err(anyhow::Error::from(e)
                .context(format!("the commit to {ident} did not land; the flush will be redone"))
                .into());
        }
    }
    *base = Some(lakehouse.table(ident).await?);
    Ok(())
}
