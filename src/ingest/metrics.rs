//! Prometheus metrics of a running `lake ingest` (`--metrics-addr host:port` serves them at
//! `GET /metrics` in the text exposition format): records, dead letters and bytes read,
//! commits and their latency, records waiting in the current batch, and consumer lag per
//! Kafka partition.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

/// Counters of one source.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    /// Records (rows and dead letters) and their payload bytes, counted when their flush commits.
    pub records: AtomicU64,
    pub dead_letters: AtomicU64,
    pub bytes: AtomicU64,
    pub commits: AtomicU64,
    pub commit_micros: AtomicU64,
    /// Records read but not yet committed.
    pub buffered: AtomicU64,
    /// Messages behind the broker's high watermark, per stream (Kafka partitions).
    pub lag: Mutex<BTreeMap<String, i64>>,
}

/// The metrics of every source of this process.
#[derive(Debug, Default)]
pub struct Metrics {
    sources: Mutex<BTreeMap<String, Arc<SourceMetrics>>>,
}

impl Metrics {
    /// The counters of `source` (created on first use).
    pub fn source(&self, source: &str) -> Arc<SourceMetrics> {
        self.sources.lock().expect("metrics lock").entry(source.to_string()).or_default().clone()
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let sources = self.sources.lock().expect("metrics lock").clone();
        let mut out = String::new();
        let counters: [(&str, &str, fn(&SourceMetrics) -> f64); 6] = [
            ("lake_ingest_records_total", "Records read from the source and committed (rows and dead letters; a redone flush counts once).", |m| m.records.load(Ordering::Relaxed) as f64),
            ("lake_ingest_dead_letters_total", "Records stored in the dead-letter table.", |m| m.dead_letters.load(Ordering::Relaxed) as f64),
            ("lake_ingest_bytes_total", "Payload bytes of the committed records.", |m| m.bytes.load(Ordering::Relaxed) as f64),
            ("lake_ingest_commits_total", "Flushes committed.", |m| m.commits.load(Ordering::Relaxed) as f64),
            ("lake_ingest_commit_seconds_total", "Time spent writing and committing flushes.", |m| {
                m.commit_micros.load(Ordering::Relaxed) as f64 / 1e6
            }),
            ("lake_ingest_buffered_records", "Records read and not yet committed.", |m| m.buffered.load(Ordering::Relaxed) as f64),
        ];
        for (name, help, value) in counters {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (source, m) in &sources {
                let _ = writeln!(out, "{name}{{source=\"{}\"}} {}", escape(source), value(m));
            }
        }
        let _ = writeln!(out, "# HELP lake_ingest_consumer_lag Messages behind the partition's high watermark.\n# TYPE lake_ingest_consumer_lag gauge");
        for (source, m) in &sources {
            for (stream, lag) in m.lag.lock().expect("metrics lock").iter() {
                let _ = writeln!(out, "lake_ingest_consumer_lag{{source=\"{}\",partition=\"{}\"}} {lag}", escape(source), escape(stream));
            }
        }
        out
    }

    /// Serves `GET /metrics` on `addr` until the process ends.
    pub async fn serve(self: Arc<Self>, addr: &str) -> Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot serve metrics on {addr}"))?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = self.clone();
                async move { metrics.render() }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("metrics server stopped: {e}");
            }
        });
        Ok(())
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
