//! One lane of `lake ingest`: a source into one raw table (and its `__errors` table), batch by
//! batch, as a two-stage pipeline on two cores. While one batch is written and committed on a
//! task of its own, the next is read from the source and converted on the lane's task; the
//! next commit starts only once the previous one is done, so commits stay in order and each
//! commit's positions follow the one before. At most two batches are in memory at once: the
//! one being committed and the one being read.
//!
//! A commit that fails ends the lane after it; one refused because another process consumed a
//! stream meanwhile makes the lane drop the batch it was reading and start again from the
//! positions stored in the table (see the module doc of [`super`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use arrow::array::RecordBatch;
use iceberg::TableIdent;
use iceberg::table::Table;

use super::config::SourceConfig;
use super::records::{self, Converted, DeadLetter, Layout, RawRecord, convert_records, dead_letter_batch};
use super::source::{Positions, Source};
use super::{FLUSH_ID, Flush, OFFSETS_PREFIX, POSITIONS_PREFIX, RunOptions, SourceReport, metrics};
use super::{advance, committed_positions, covered, errors_ident, partition_fields, producer};
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::lakehouse::commit::{self, RebaseFn};
use crate::lakehouse::summary;
use crate::lakehouse::writer::WriteOptions;
use crate::materialize::{self, SchemaChangePolicy, Strategy};

/// What a lane's commits need, owned, so that a commit can run on a task of its own.
#[derive(Clone)]
struct Target {
    lakehouse: Lakehouse,
    name: String,
    kind: records::SourceKind,
    ident: TableIdent,
    errors: TableIdent,
    partition_by: Vec<(String, String)>,
    write: WriteOptions,
}

/// The two tables as this lane last committed them, and the positions its errors table holds
/// (ahead of the rows' after a crash between the two commits). Moved into a commit and back.
struct Tables {
    base: Option<Table>,
    errors_base: Option<Table>,
    errors_stored: Positions,
}

/// A batch read and converted, ready to commit.
struct Batch {
    id: String,
    /// The rows, in record order (one piece per converting thread, all of one schema).
    rows: Vec<RecordBatch>,
    dead: Vec<DeadLetter>,
    /// Records read (rows and dead letters) and their bytes.
    read: u64,
    bytes: u64,
    /// The streams this batch read: where they were before it, and where it left them.
    seen: Positions,
    done: Positions,
    /// The source's positions after the batch.
    end: Positions,
    loaded_at: i64,
}

/// What a commit task gives back: the tables, and (rows, dead letters) committed.
type Committed = (Tables, Result<(u64, u64), materialize::Error>);

/// A commit under way on its own task.
struct Pending {
    task: tokio::task::JoinHandle<Committed>,
    id: String,
    read: u64,
    bytes: u64,
    end: Positions,
    started: Instant,
}

/// A batch being read from the source.
struct Read {
    records: Vec<RawRecord>,
    /// Records the source could not decode: dead letters of this batch.
    undecodable: Vec<DeadLetter>,
    bytes: u64,
    /// Everything there was is read (`--once` caught up, stopping, or the input ended).
    drained: bool,
    started: Instant,
}

impl Read {
    fn new() -> Self {
        Read { records: Vec::new(), undecodable: Vec::new(), bytes: 0, drained: false, started: Instant::now() }
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.undecodable.is_empty()
    }
}

/// Runs `source` into `table` until it is drained (`once`) or stopped.
pub(super) async fn run_lane(
    lakehouse: &Lakehouse,
    name: &str,
    config: &SourceConfig,
    table: &str,
    mut source: Box<dyn Source>,
    write: &WriteOptions,
    options: &RunOptions,
) -> Result<SourceReport> {
    let ident = table_ident(table).with_context(|| format!("ingest source `{name}`: bad table"))?;
    let target = Target {
        lakehouse: lakehouse.clone(),
        name: name.to_string(),
        kind: source.kind(),
        errors: errors_ident(&ident)?,
        ident,
        partition_by: partition_fields(name, config)?,
        write: write.clone(),
    };
    let mut report = SourceReport { source: name.to_string(), table: table.to_string(), ..Default::default() };
    config.batch.validate(("batch.rows", "batch.bytes_mb", "batch.seconds")).map_err(|e| anyhow!("ingest source `{name}`: {e}"))?;
    let counters = options.metrics.source(name);

    // Once stopping, a source that drains on stop (a webhook log) is looked at once more and
    // read to its end, so that what was acknowledged before the stop is committed now.
    let mut looked_again = false;
    'restart: loop {
        let base = lakehouse.load_table(&target.ident).await?;
        let errors_base = lakehouse.load_table(&target.errors).await?;
        // The positions stored in the table as this process last saw them: a batch's streams
        // must still be there when it commits (the source's own positions may have moved
        // without a commit: a file opened empty, blank lines, a partial first line).
        let committed = if source.replayable() { committed_positions(base.as_ref(), name)? } else { Positions::new() };
        let errors_stored = committed_positions(errors_base.as_ref(), name)?;
        source.reset(committed.clone()).await.with_context(|| format!("ingest source `{name}`"))?;
        // The positions the next batch starts from: those after the last batch read.
        let mut last_end = committed;
        let mut tables = Some(Tables { base, errors_base, errors_stored });
        let mut layout: Option<Layout> = None;
        let mut pending: Option<Pending> = None;
        let mut reading = Read::new();
        loop {
            let commit_ended = || pending.as_ref().is_some_and(|p| p.task.is_finished());
            let complete = fill(&mut reading, name, &mut *source, config, options, &counters, &mut looked_again, &commit_ended).await?;
            *counters.lag.lock().expect("metrics lock") = source.lag();
            if !complete {
                // The last commit ended while the source was idle: it is reported now, not when
                // this batch is full, and the batch reads on.
                let done = pending.take().expect("paused for an ended commit");
                match finish(done, &mut report, &counters, config, options, &mut *source).await? {
                    Some(t) => tables = Some(t),
                    None => continue 'restart,
                }
                continue;
            }
            let read = std::mem::replace(&mut reading, Read::new());
            counters.buffered.store(0, Ordering::Relaxed);
            let batch = if read.is_empty() {
                None
            } else {
                // The layout is inferred on a restart's first batch, when no commit is under way.
                let base = tables.as_ref().and_then(|t| t.base.as_ref());
                let id = uuid::Uuid::now_v7().to_string();
                let positions = (&last_end, source.positions());
                let replayable = source.replayable();
                Some((id.clone(), prepare(config, &target, &mut layout, base, id, read.records, read.undecodable, read.bytes, positions, replayable)))
            };
            // The commit before this batch ends first: commits go in order.
            if let Some(done) = pending.take() {
                match finish(done, &mut report, &counters, config, options, &mut *source).await? {
                    Some(t) => tables = Some(t),
                    None => continue 'restart,
                }
            }
            if let Some((id, batch)) = batch {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(e) => {
                        (options.on_flush)(Flush::Started { id: &id, report: &report, from: &config.from });
                        (options.on_flush)(Flush::Failed { id: &id, report: &report, from: &config.from, error: e.to_string() });
                        return Err(anyhow::Error::from(e).context(format!("ingest source `{name}`")));
                    }
                };
                last_end = batch.end.clone();
                (options.on_flush)(Flush::Started { id: &batch.id, report: &report, from: &config.from });
                let taken = tables.take().expect("no commit is under way");
                pending = Some(start_commit(&target, taken, batch));
            }
            // Drained under --once, stopping, or the input ended: everything read is committed.
            if read.drained || (options.stop.load(Ordering::Relaxed) && !source.drains_on_stop()) {
                if let Some(done) = pending.take()
                    && finish(done, &mut report, &counters, config, options, &mut *source).await?.is_none()
                {
                    continue 'restart;
                }
                return Ok(report);
            }
        }
    }
}

/// Reads into `read` until it holds `batch.rows` records or `batch.bytes_mb`, or
/// `batch.seconds` passed since it began, or (under `--once` or stopping) the source has
/// nothing more: then `true`. `false` when it stopped early because the source had nothing
/// right now and `commit_ended` said the commit under way is done.
#[allow(clippy::too_many_arguments)]
async fn fill(
    read: &mut Read,
    name: &str,
    source: &mut dyn Source,
    config: &SourceConfig,
    options: &RunOptions,
    counters: &metrics::SourceMetrics,
    looked_again: &mut bool,
    commit_ended: &dyn Fn() -> bool,
) -> Result<bool> {
    let max_rows = config.batch.rows;
    let max_bytes = config.batch.bytes_mb * 1024 * 1024;
    let max_wait = Duration::from_secs_f64(config.batch.seconds.max(0.01));
    while read.records.len() + read.undecodable.len() < max_rows && read.bytes < max_bytes {
        let next = source.next_record().await.with_context(|| format!("ingest source `{name}`"))?;
        for dead in source.take_dead_letters() {
            read.bytes += dead.record.payload.len() as u64;
            read.undecodable.push(dead);
        }
        match next {
            Some(record) => {
                read.bytes += record.payload.len() as u64;
                read.records.push(record);
                counters.buffered.store(read.records.len() as u64, Ordering::Relaxed);
            }
            None => {
                let stopping = options.stop.load(Ordering::Relaxed) || source.finished();
                if stopping && source.drains_on_stop() && !*looked_again {
                    *looked_again = true;
                    source.rescan();
                    continue;
                }
                if (options.once && source.caught_up().await?) || stopping {
                    read.drained = true;
                    break;
                }
                if read.started.elapsed() >= max_wait {
                    break;
                }
                if commit_ended() {
                    return Ok(false);
                }
                tokio::time::sleep(Duration::from_millis(100).min(max_wait)).await;
                source.rescan();
            }
        }
        if read.started.elapsed() >= max_wait && !read.is_empty() {
            break;
        }
    }
    Ok(true)
}

/// Converts the batch `id`, read between the positions `start` and `end`. The layout is
/// inferred on the first batch (from `base`'s schema, the declared columns or the batch).
#[allow(clippy::too_many_arguments)]
fn prepare(
    config: &SourceConfig,
    target: &Target,
    layout: &mut Option<Layout>,
    base: Option<&Table>,
    id: String,
    records: Vec<RawRecord>,
    undecodable: Vec<DeadLetter>,
    bytes: u64,
    (start, end): (&Positions, &Positions),
    replayable: bool,
) -> Result<Batch, materialize::Error> {
    let loaded_at = chrono::Utc::now().timestamp_micros();
    let read = (records.len() + undecodable.len()) as u64;
    if layout.is_none() {
        let schema = match base {
            Some(t) => Some(iceberg::arrow::schema_to_arrow_schema(t.metadata().current_schema()).map_err(anyhow::Error::from)?),
            None => None,
        };
        // Only a table that neither exists nor has declared columns is inferred from the batch.
        let sample: Vec<serde_json::Value> = if schema.is_none() && config.columns.is_empty() {
            records.iter().filter_map(|r| serde_json::from_str(&r.payload).ok()).collect()
        } else {
            Vec::new()
        };
        *layout = Some(Layout::new(
            &config.columns,
            &config.map,
            &config.required,
            config.evolve,
            config.event_type.as_deref(),
            target.kind,
            schema.as_ref(),
            &sample,
        )?);
    }
    let layout = layout.as_mut().expect("set above");
    let converting = Instant::now();
    let (mut rows, mut dead) = (Vec::new(), Vec::new());
    for converted in convert_halves(layout, &target.name, records, loaded_at)? {
        rows.push(converted.batch);
        dead.extend(converted.dead);
    }
    dead.extend(undecodable);
    let (name, threads, took) = (&target.name, rows.len(), converting.elapsed());
    tracing::debug!("ingest {name}: batch {id} of {read} records converted on {threads} thread{} in {took:?}", if threads == 1 { "" } else { "s" });
    // The streams this batch read, where they were, and where they are now.
    let (seen, done): (Positions, Positions) = if replayable {
        let done: Positions = end.iter().filter(|(k, v)| start.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let seen = done.keys().filter_map(|k| start.get(k).map(|v| (k.clone(), v.clone()))).collect();
        (seen, done)
    } else {
        (Positions::new(), Positions::new())
    };
    Ok(Batch { id, rows, dead, read, bytes, seen, done, end: end.clone(), loaded_at })
}

/// Batches of fewer records are converted on one thread.
const SPLIT_RECORDS: usize = 2_000;

/// Converts `records`, in record order. A layout without `evolve` cannot change while it
/// converts (fields without a column go to `_extra`, which such a layout always has), so the
/// two halves of a large batch are converted at once, on this thread and another; else the
/// batch is converted in one piece.
fn convert_halves(layout: &mut Layout, name: &str, mut records: Vec<RawRecord>, loaded_at: i64) -> Result<Vec<Converted>> {
    if layout.evolve || !layout.extra || records.len() < SPLIT_RECORDS {
        return Ok(vec![convert_records(layout, name, records, loaded_at)?]);
    }
    let second = records.split_off(records.len() / 2);
    let mut other = layout.clone();
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| convert_records(&mut other, name, second, loaded_at));
        (convert_records(layout, name, records, loaded_at), second.join())
    });
    let second = second.map_err(|_| anyhow!("converting a batch of ingest source `{name}` panicked"))?;
    let (first, second) = (first?, second?);
    debug_assert!(first.added_columns.is_empty() && second.added_columns.is_empty(), "a layout without evolve changed");
    Ok(vec![first, second])
}

/// Starts committing `batch` on a task of its own.
fn start_commit(target: &Target, tables: Tables, batch: Batch) -> Pending {
    let (id, read, bytes, end) = (batch.id.clone(), batch.read, batch.bytes, batch.end.clone());
    let target = target.clone();
    let task = tokio::spawn(async move {
        let (mut tables, started) = (tables, Instant::now());
        let id = batch.id.clone();
        let result = commit_batch(&target, &mut tables, batch).await;
        tracing::debug!("ingest {}: batch {id} written and committed in {:?}", target.name, started.elapsed());
        (tables, result)
    });
    Pending { task, id, read, bytes, end, started: Instant::now() }
}

/// Waits for a commit, counts it, tells `on_flush` and the source (which may release what it
/// committed): the tables after it, or `None` when another process consumed a stream of it
/// meanwhile (the lane starts again from the stored positions).
async fn finish(
    pending: Pending,
    report: &mut SourceReport,
    counters: &metrics::SourceMetrics,
    config: &SourceConfig,
    options: &RunOptions,
    source: &mut dyn Source,
) -> Result<Option<Tables>> {
    let name = report.source.clone();
    let (tables, result) = pending.task.await.map_err(|e| anyhow!("ingest source `{name}`: the commit of a batch panicked: {e}"))?;
    if let Err(e) = &result {
        let error = e.to_string();
        (options.on_flush)(Flush::Failed { id: &pending.id, report, from: &config.from, error });
    }
    match result {
        Ok((rows, dead)) => {
            count_flush(report, counters, (pending.read, pending.bytes, rows, dead), pending.started);
            let snapshot_id = tables.base.as_ref().and_then(|t| t.metadata().current_snapshot_id());
            (options.on_flush)(Flush::Committed { id: &pending.id, report, from: &config.from, rows, dead, snapshot_id });
            source.committed(&pending.end).await.with_context(|| format!("ingest source `{name}`"))?;
            Ok(Some(tables))
        }
        Err(e) if e.commit().is_some_and(commit::Error::is_producer_conflict) => {
            report.redone += 1;
            tracing::info!("ingest {name}: {e:#}; redoing the flush from the stored positions");
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!("ingest source `{name}`"))),
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

/// Commits one batch: its dead letters (but those the errors table already holds), then its
/// rows; returns (rows, dead letters).
async fn commit_batch(target: &Target, tables: &mut Tables, batch: Batch) -> Result<(u64, u64), materialize::Error> {
    let (name, kind) = (target.name.as_str(), target.kind);
    let properties = summary::stamp(None, Some(&producer(name)));
    let Batch { id: flush_id, rows, dead, seen, done, loaded_at, .. } = batch;

    // Dead letters first, minus those an earlier (interrupted) flush already stored.
    let dead: Vec<_> = dead.into_iter().filter(|d| !covered(&tables.errors_stored, &d.record.at)).collect();
    let dead_count = dead.len() as u64;
    if !dead.is_empty() {
        let rows = dead_letter_batch(name, kind, &dead, loaded_at)?;
        // The errors table may be ahead of the rows (an interrupted flush): compare with what it held.
        let errors_seen: Positions = done.keys().filter_map(|k| tables.errors_stored.get(k).map(|v| (k.clone(), v.clone()))).collect();
        let id = format!("{flush_id}:errors");
        let rebase = positions_rebase(name, kind, &errors_seen, &done, id.clone());
        append(target, &target.errors, &mut tables.errors_base, vec![rows], properties.clone(), rebase, &id, &[]).await?;
        advance(&mut tables.errors_stored, &done);
    }
    let count = rows.iter().map(|b| b.num_rows() as u64).sum();
    if count > 0 || !done.is_empty() {
        let id = format!("{flush_id}:rows");
        let rebase = positions_rebase(name, kind, &seen, &done, id.clone());
        append(target, &target.ident, &mut tables.base, rows, properties, rebase, &id, &target.partition_by).await?;
    }
    Ok((count, dead_count))
}

/// Appends `rows` (batches of one schema, at least one) to `ident` in one snapshot and moves `base` to the committed table. When the
/// catalog's answer was lost, the table is reloaded and the flush id looked up: a commit that
/// landed is not repeated.
#[allow(clippy::too_many_arguments)]
async fn append(
    target: &Target,
    ident: &TableIdent,
    base: &mut Option<Table>,
    rows: Vec<RecordBatch>,
    properties: HashMap<String, String>,
    rebase: RebaseFn,
    flush_id: &str,
    partition_by: &[(String, String)],
) -> Result<(), materialize::Error> {
    let lakehouse = &target.lakehouse;
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
        write: &target.write,
    };
    let schema = rows.first().ok_or_else(|| anyhow!("an ingest commit without a batch"))?.schema();
    let stream = futures::StreamExt::boxed(futures::stream::iter(rows.into_iter().map(Ok)));
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
