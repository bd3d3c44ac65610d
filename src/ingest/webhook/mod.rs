//! The webhook source: an HTTP server with a route per provider that verifies each request's
//! signature and writes the event to a local write-ahead log before answering 2xx, so an
//! acknowledged webhook is never lost; the source then reads the log like a file.
//!
//! Routes (POST): `/webhooks/shopify` (`X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the
//! raw body; several secrets accepted during rotation), `/webhooks/stripe`
//! (`Stripe-Signature` `t=`/`v1=`: HMAC-SHA256 of `t.body`, 300 s tolerance),
//! `/webhooks/hubspot` (`X-HubSpot-Signature-v3`: base64 HMAC-SHA256 of method + URI + body +
//! `X-HubSpot-Request-Timestamp`, at most 5 minutes old) and `/webhooks/generic`
//! (`X-Signature`: hex HMAC-SHA256 of the body, or of `timestamp.body` with a signed
//! `X-Webhook-Timestamp`; optionally `sha256=`-prefixed). A bad signature gets 401 and stores
//! nothing; a body over the size limit gets 413. Secrets are read from the environment
//! variables the configuration names, never from `lake.toml` itself.
//!
//! Private parts: [`signature`] (verification and deduplication keys), [`wal`] (the durable
//! log and its recovery after a crash or a full disk), [`server`] (the accept loop, its
//! timeouts and connection cap), [`routes`] (which table, and so which log, an event goes to;
//! array bodies split into one event per element).

mod routes;
mod server;
mod signature;
mod wal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};

use super::files::{FileFormat, FileReader, FileSpec};
use super::records::{Coordinates, RawRecord, SourceKind};
use super::source::{Positions, Source};
pub use crate::ingest::config::{ProviderConfig, WebhookConfig};
pub use routes::Routes;
pub use signature::sign;
use wal::Envelope;

/// `http://host:port` → the address to listen on.
pub fn parse_url(url: &str) -> Result<std::net::SocketAddr> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("`{url}` is not an http:// URL"))?;
    let host = rest.trim_end_matches('/');
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .with_context(|| format!("`{url}`: cannot resolve the address to listen on"))?
        .next()
        .ok_or_else(|| anyhow!("`{url}`: no address"))?;
    Ok(addr)
}

/// The webhook source: the server (unless `once`) and a reader of its write-ahead logs.
pub struct WebhookSource {
    reader: FileReader,
    wal_dir: PathBuf,
    /// The log this process appends to (never deleted while serving).
    current: Option<PathBuf>,
    retention: std::time::Duration,
}

impl WebhookSource {
    /// The routes of a webhook source (`table`, `routes`, and the providers it serves).
    pub fn routes(table: &str, routes: &std::collections::BTreeMap<String, String>, config: &WebhookConfig) -> Result<Routes> {
        Routes::parse(table, routes, &|p| config.providers.contains_key(p))
    }

    /// Starts serving on `url` (unless `serve` is false: `--once` only replays the logs) with
    /// one log per lane of `routes` under `wal_dir`, and returns a reader of each lane's logs,
    /// in lane order. Either way, logs left by a crash are repaired first. Once `stopping` is
    /// set, requests are answered 503 (retry later).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        url: &str,
        wal_dir: &Path,
        routes: Routes,
        config: &WebhookConfig,
        max_body_kb: usize,
        retention: std::time::Duration,
        serve: bool,
        stopping: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Vec<Self>> {
        if config.providers.is_empty() {
            bail!("a webhook source needs at least one provider under [ingest.<name>.webhooks.<provider>]");
        }
        // Secrets and the address first: a setting that fails leaves the logs untouched.
        let served = match serve {
            true => {
                let providers = signature::Providers::resolve(&config.providers)?;
                let addr = parse_url(url)?;
                Some((providers, tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?))
            }
            false => None,
        };
        let dirs = routes.dirs(wal_dir);
        let mut wals = Vec::new();
        let mut readers = Vec::new();
        for dir in &dirs {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let spec = FileSpec::Files { pattern: format!("{}/wal-*.ndjson", dir.display()), root: PathBuf::from("/") };
            let reader = FileReader::new(spec, FileFormat::Ndjson, Positions::new()).complete_lines_only();
            // Events already in the logs: a redelivery is acknowledged, not stored twice.
            let seen = wal::recover(dir)?;
            let current = if serve {
                let log = wal::Wal::create(dir, seen)?;
                let path = log.path().to_path_buf();
                wals.push(Mutex::new(log));
                Some(path)
            } else {
                None
            };
            readers.push(Self { reader, wal_dir: dir.clone(), current, retention });
        }
        if let Some((providers, listener)) = served {
            let server = Arc::new(server::Server { providers, routes, wals, stopping });
            tokio::spawn(server::serve(listener, server, server::Limits::new(config, max_body_kb)));
        }
        Ok(readers)
    }
}

#[async_trait::async_trait]
impl Source for WebhookSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Webhook
    }

    async fn next_record(&mut self) -> Result<Option<RawRecord>> {
        let Some(record) = self.reader.next_record().await? else { return Ok(None) };
        let Coordinates::File { path, line } = record.at else { unreachable!("the log is a file") };
        let envelope: Envelope = serde_json::from_str(&record.payload)
            .with_context(|| format!("{path} line {line}: not a webhook log entry"))?;
        // A batch of events in one request (HubSpot sends arrays) is kept whole, as `events`.
        let payload = if envelope.body.trim_start().starts_with('[') {
            format!("{{\"events\": {}}}", envelope.body)
        } else {
            envelope.body
        };
        Ok(Some(RawRecord {
            payload,
            at: Coordinates::Webhook { log: path, line, id: envelope.id, provider: envelope.provider },
            received_at: envelope.received_at,
            event_type: envelope.event_type,
        }))
    }

    fn positions(&self) -> &Positions {
        self.reader.positions()
    }

    fn rescan(&mut self) {
        self.reader.rescan();
    }

    fn drains_on_stop(&self) -> bool {
        true
    }

    async fn reset(&mut self, positions: Positions) -> Result<()> {
        self.reader.reset(positions).await
    }

    /// Deletes log files, other than those being written (this process's, or one a running
    /// server holds locked), whose every event is committed and which are older than the
    /// retention.
    async fn committed(&mut self, positions: &Positions) -> Result<()> {
        for entry in std::fs::read_dir(&self.wal_dir)? {
            let path = entry?.path();
            if !wal::is_log(&path) || Some(&path) == self.current.as_ref() || wal::is_live(&path) {
                continue;
            }
            let age = std::fs::metadata(&path)?.modified()?.elapsed().unwrap_or_default();
            if age < self.retention {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            let complete = text.matches('\n').count() as u64;
            let key = path.to_string_lossy().to_string();
            if positions.get(&key).is_some_and(|p| p.consumed >= complete) {
                std::fs::remove_file(&path).with_context(|| format!("cannot delete {key}"))?;
            }
        }
        Ok(())
    }
}
