//! `lake ingest`: run the sources declared under `[ingest.<name>]` in `lake.toml` (or one
//! ad-hoc source given by `--from` and `--table`) until stopped, or drain them with `--once`;
//! `--status` summarizes what each source has stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow};

use super::{CliResult, EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, ExitCodeExt, GlobalArgs};
use crate::ingest::config::{BatchConfig, SourceConfig};
use crate::ingest::{Flush, RunOptions, SourceReport, committed_positions, run_source};
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::project::config::ProjectConfig;
use crate::run::report::LogFormat;

/// What `lake ingest` was asked to do (its command-line arguments).
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Sources from lake.toml [ingest.<name>] to run.
    pub sources: Vec<String>,
    /// Run every source in lake.toml.
    #[arg(long)]
    pub all: bool,
    /// Drain what is available and exit (for cron and Airflow); otherwise run until SIGINT/SIGTERM.
    #[arg(long)]
    pub once: bool,
    /// Ad-hoc source: kafka://host:port/topic, s3://bucket/prefix/, a file path or glob (file://...), or - for stdin.
    #[arg(long)]
    pub from: Option<String>,
    /// With --from: the raw table, namespace.table.
    #[arg(long)]
    pub table: Option<String>,
    /// With --from: ndjson, json, csv or parquet (default: from the extension, else ndjson).
    #[arg(long)]
    pub format: Option<String>,
    /// Flush after this many records (default 10000).
    #[arg(long)]
    pub batch_rows: Option<usize>,
    /// Flush after this many seconds (default 10).
    #[arg(long)]
    pub batch_seconds: Option<f64>,
    /// Flush after this many MiB of records (default 64).
    #[arg(long)]
    pub batch_bytes_mb: Option<u64>,
    /// Exit non-zero when more than this share (0..1) of the records were dead letters.
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// Summarize what each source has stored, then exit.
    #[arg(long)]
    pub status: bool,
    /// Kafka: read these partitions (e.g. 0,2) instead of joining the consumer group.
    #[arg(long, value_delimiter = ',')]
    pub partitions: Option<Vec<i32>>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics_addr: Option<String>,
}

pub(super) async fn ingest(g: &GlobalArgs, args: IngestArgs) -> CliResult {
    let config = super::project_cmds::load_config(g)?;
    let sources = chosen_sources(&config, &args).usage()?;
    for (name, source) in &sources {
        if source.from.starts_with("http://") {
            crate::ingest::webhook::WebhookSource::routes(&source.table, &source.routes, &source.webhooks)
                .with_context(|| format!("[ingest.{name}]"))
                .usage()?;
        } else if !source.routes.is_empty() {
            return Err(anyhow!("[ingest.{name}] routes: only webhook sources (from = \"http://host:port\") route events to tables")).usage();
        }
    }
    super::remember_catalog(&config.catalog);
    let lakehouse = Lakehouse::connect(&config.catalog).await.environment()?;
    if args.status {
        return status(g, &lakehouse, &sources).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(stop.clone());
    let metrics = Arc::new(crate::ingest::metrics::Metrics::default());
    if let Some(addr) = &args.metrics_addr {
        metrics.clone().serve(addr).await.usage()?;
    }
    let format = g.log_format;
    let emitter = config
        .openlineage
        .as_ref()
        .map(|c| crate::run::openlineage::Emitter::start(c, lakehouse.clone(), None, None));
    let hook = emitter.as_ref().map(|e| e.hook());
    let root = config.root.clone();
    let options = RunOptions {
        once: args.once,
        stop,
        on_flush: Arc::new(move |flush: Flush<'_>| {
            if let Some(hook) = &hook {
                hook.flush(lineage_flush(&root, &flush));
            }
            if let Flush::Committed { report, rows, dead, .. } = flush {
                log_flush(format, report, rows, dead);
            }
        }),
        metrics,
        storage: config.catalog.props().clone(),
    };
    let runs = sources.iter().map(|(name, source)| {
        let (lakehouse, root, write, options) = (&lakehouse, &config.root, &config.write, &options);
        async move { (name, source, run_source(lakehouse, root, name, source, write, options).await) }
    });
    let mut code = EXIT_OK;
    let finished = futures::future::join_all(runs).await;
    for (name, source, result) in finished {
        match result {
            Ok(reports) => {
                for report in reports {
                    if report_finished(format, name, &report, args.max_error_rate.or(source.max_error_rate)) {
                        code = code.max(EXIT_FAILED);
                    }
                }
            }
            Err(e) => {
                // A catalog or storage fault (full, read-only, unreachable) exits 3 with one
                // line naming the setting to fix, as every command does; secrets scrubbed.
                let message = if crate::lakehouse::fault::classify(&e).is_some() {
                    code = code.max(EXIT_ENVIRONMENT);
                    format!("ingest source `{name}`: {}", super::error_message(EXIT_ENVIRONMENT, &e))
                } else {
                    code = code.max(EXIT_FAILED);
                    super::error_message(EXIT_FAILED, &e)
                };
                match format {
                    LogFormat::Json => println!("{}", serde_json::json!({"event": "error", "source": name, "message": message})),
                    LogFormat::Text => eprintln!("error: {message}"),
                }
            }
        }
    }
    if let Some(emitter) = emitter {
        emitter.finish(code).await;
    }
    Ok(code)
}

/// One line per committed flush.
fn log_flush(format: LogFormat, report: &SourceReport, rows: u64, dead: u64) {
    match format {
        LogFormat::Json => println!(
            "{}",
            serde_json::json!({"event": "ingest_flush", "source": report.source, "table": report.table,
                "rows": rows, "dead_letters": dead, "total_rows": report.rows, "total_dead_letters": report.dead_letters})
        ),
        LogFormat::Text => eprintln!(
            "ingest {}: +{rows} rows, {dead} dead letters → {} ({} rows, {} dead letters so far)",
            report.source, report.table, report.rows, report.dead_letters
        ),
    }
}

/// An ingest flush as the OpenLineage emitter takes it: a relative file source made absolute.
fn lineage_flush(root: &std::path::Path, flush: &Flush<'_>) -> crate::run::openlineage::Flush {
    use crate::run::openlineage::FlushState;
    let (id, report, from, state) = match flush {
        Flush::Started { id, report, from } => (id, report, from, FlushState::Started),
        Flush::Committed { id, report, from, rows, dead, snapshot_id } => {
            (id, report, from, FlushState::Committed { rows: *rows, dead_letters: *dead, snapshot_id: *snapshot_id })
        }
        Flush::Failed { id, report, from, error } => (id, report, from, FlushState::Failed { message: error.clone() }),
    };
    let from = if from.contains("://") || *from == "-" {
        from.to_string()
    } else {
        let path = from.strip_prefix("file:").unwrap_or(from);
        root.join(path).display().to_string()
    };
    crate::run::openlineage::Flush { source: report.source.clone(), from, table: report.table.clone(), id: id.to_string(), state }
}

/// Prints what a source did for one table; true when its dead letters are above `threshold`.
fn report_finished(format: LogFormat, name: &str, report: &SourceReport, threshold: Option<f64>) -> bool {
    let too_many = threshold.is_some_and(|t| report.error_rate() > t);
    match format {
        LogFormat::Json => println!(
            "{}",
            serde_json::json!({"event": "ingest_finished", "source": name, "report": report,
                "error_rate": report.error_rate(), "max_error_rate": threshold, "ok": !too_many})
        ),
        LogFormat::Text => println!(
            "{name}: {} records read, {} rows to {}, {} dead letters to {}__errors in {} flushes",
            report.records, report.rows, report.table, report.dead_letters, report.table, report.flushes
        ),
    }
    if too_many {
        eprintln!(
            "error: ingest source `{name}`: {:.1}% of its records to {} were dead letters, above max_error_rate {:.1}%",
            report.error_rate() * 100.0,
            report.table,
            threshold.unwrap_or(0.0) * 100.0
        );
    }
    too_many
}

/// The sources to run: named ones, `--all`, or the ad-hoc `--from`/`--table`.
fn chosen_sources(config: &ProjectConfig, args: &IngestArgs) -> anyhow::Result<Vec<(String, SourceConfig)>> {
    let mut out = Vec::new();
    match (&args.from, &args.table) {
        (Some(from), Some(table)) => {
            if !args.sources.is_empty() || args.all {
                return Err(anyhow!("give either --from/--table or source names (or --all), not both"));
            }
            let name = table_ident(table)?.name().to_string();
            out.push((
                name,
                SourceConfig {
                    from: from.clone(),
                    table: table.clone(),
                    format: args.format.clone(),
                    settle_seconds: crate::ingest::config::default_settle_seconds(),
                    columns: Default::default(),
                    required: Vec::new(),
                    map: Default::default(),
                    evolve: false,
                    max_error_rate: None,
                    partition_by: Vec::new(),
                    event_type: None,
                    batch: BatchConfig::default(),
                    group: None,
                    partitions: args.partitions.clone(),
                    kafka: Default::default(),
                    webhooks: Default::default(),
                    routes: Default::default(),
                    max_body_kb: 1024,
                    wal_retention_hours: 168.0,
                },
            ));
        }
        (Some(_), None) | (None, Some(_)) => return Err(anyhow!("--from and --table go together")),
        (None, None) => {
            if args.all || (args.sources.is_empty() && args.status) {
                out.extend(config.ingest.iter().map(|(n, s)| (n.clone(), s.clone())));
            } else {
                for name in &args.sources {
                    let source = config.ingest.get(name).ok_or_else(|| {
                        anyhow!(
                            "no ingest source `{name}` in lake.toml; sources: {}",
                            config.ingest.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    })?;
                    out.push((name.clone(), source.clone()));
                }
            }
            if out.is_empty() {
                return Err(anyhow!(
                    "nothing to ingest: name sources from [ingest.<name>] in lake.toml, use --all, or give --from and --table"
                ));
            }
        }
    }
    // The flags first, named as typed; then each source's resulting limits, named by its key.
    let flags = BatchConfig {
        rows: args.batch_rows.unwrap_or(1),
        bytes_mb: args.batch_bytes_mb.unwrap_or(1),
        seconds: args.batch_seconds.unwrap_or(1.0),
    };
    flags.validate(("--batch-rows", "--batch-bytes-mb", "--batch-seconds")).map_err(|e| anyhow!(e))?;
    for (name, source) in &mut out {
        if let Some(rows) = args.batch_rows {
            source.batch.rows = rows;
        }
        if let Some(seconds) = args.batch_seconds {
            source.batch.seconds = seconds;
        }
        if let Some(mb) = args.batch_bytes_mb {
            source.batch.bytes_mb = mb;
        }
        if args.partitions.is_some() {
            source.partitions = args.partitions.clone();
        }
        let key = |k: &str| format!("[ingest.{name}.batch] {k}");
        source.batch.validate((&key("rows"), &key("bytes_mb"), &key("seconds"))).map_err(|e| anyhow!(e))?;
    }
    Ok(out)
}

fn spawn_signal_handler(stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.store(true, Ordering::Relaxed);
    });
}

async fn status(g: &GlobalArgs, lakehouse: &Lakehouse, sources: &[(String, SourceConfig)]) -> CliResult {
    for (name, source) in sources {
        // The source's table, then each table its routes send events to.
        let mut tables = vec![source.table.clone()];
        for t in source.routes.values() {
            if !tables.contains(t) {
                tables.push(t.clone());
            }
        }
        for target in &tables {
            status_line(g, lakehouse, name, source, target).await?;
        }
    }
    Ok(EXIT_OK)
}

async fn status_line(g: &GlobalArgs, lakehouse: &Lakehouse, name: &str, source: &SourceConfig, target: &str) -> CliResult<()> {
    {
        let ident = table_ident(target).usage()?;
        let errors = table_ident(&format!("{target}__errors")).usage()?;
        let table = lakehouse.load_table(&ident).await.environment()?;
        let errors_table = lakehouse.load_table(&errors).await.environment()?;
        let records = |t: &Option<iceberg::table::Table>| {
            t.as_ref()
                .and_then(|t| t.metadata().current_snapshot())
                .and_then(|s| s.summary().additional_properties.get("total-records").cloned())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let last = table
            .as_ref()
            .and_then(|t| t.metadata().current_snapshot())
            .map(|s| chrono::DateTime::from_timestamp_millis(s.timestamp_ms()).map(|t| t.to_rfc3339()).unwrap_or_default());
        let positions = committed_positions(table.as_ref(), name).environment()?;
        let lines: u64 = positions.values().map(|p| p.consumed).sum();
        match g.log_format {
            LogFormat::Json => println!(
                "{}",
                serde_json::json!({"source": name, "from": source.from, "table": target, "rows": records(&table),
                    "dead_letters": records(&errors_table), "last_commit": last, "streams": positions.len(), "records_read": lines})
            ),
            LogFormat::Text => println!(
                "{name}: {} → {}: {} rows, {} dead letters, {} streams ({} records read), last commit {}",
                source.from,
                target,
                records(&table),
                records(&errors_table),
                positions.len(),
                lines,
                last.unwrap_or_else(|| "never".into())
            ),
        }
    }
    Ok(())
}
