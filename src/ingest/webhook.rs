//! The webhook source: an HTTP server (axum) with a route per provider that verifies each
//! request's signature and writes the event to a local write-ahead log before answering 2xx,
//! so an acknowledged webhook is never lost; the source then reads the log like a file.
//!
//! Routes (POST): `/webhooks/shopify` (`X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the
//! raw body; several secrets accepted during rotation; deduplicated by
//! `X-Shopify-Webhook-Id`), `/webhooks/stripe` (`Stripe-Signature` `t=`/`v1=`: HMAC-SHA256
//! of `t.body`, 300 s tolerance), `/webhooks/hubspot` (`X-HubSpot-Signature-v3`: base64
//! HMAC-SHA256 of method + URI + body + `X-HubSpot-Request-Timestamp`, at most 5 minutes
//! old) and `/webhooks/generic` (`X-Signature`: hex HMAC-SHA256 of the body, optionally
//! `sha256=`-prefixed). Signatures are compared in constant time. A bad signature gets 401
//! and stores nothing; a body over the size limit gets 413. Secrets are read from the
//! environment variables the configuration names, never from `lake.toml` itself.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::files::{FileFormat, FileReader, FileSpec};
use super::records::{Coordinates, RawRecord, SourceKind};
use super::source::{Positions, Source};

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
}

/// One event as the write-ahead log holds it.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    id: String,
    provider: String,
    event_type: Option<String>,
    received_at: i64,
    body: String,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any size");
    for p in parts {
        m.update(p);
    }
    m
}

/// Whether `signature` is the HMAC-SHA256 of `parts` under one of `secrets` (constant time).
fn verify(secrets: &[Vec<u8>], parts: &[&[u8]], signature: &[u8]) -> bool {
    secrets.iter().any(|s| mac(s, parts).verify_slice(signature).is_ok())
}

/// Why a request is refused.
struct Refusal(StatusCode, String);

/// The state the routes share.
struct Server {
    providers: BTreeMap<String, (ProviderConfig, Vec<Vec<u8>>)>,
    wal: Mutex<Wal>,
}

/// The write-ahead log: NDJSON envelopes, one file per server start, fsynced per event.
struct Wal {
    file: std::fs::File,
    seen: HashSet<String>,
}

impl Server {
    fn check(&self, provider: &str, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Envelope, Refusal> {
        let (config, secrets) = self
            .providers
            .get(provider)
            .ok_or_else(|| Refusal(StatusCode::NOT_FOUND, format!("no webhook route for `{provider}`")))?;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let unauthorized = |why: &str| Refusal(StatusCode::UNAUTHORIZED, why.to_string());
        let now = chrono::Utc::now();
        let body_text = std::str::from_utf8(body).map_err(|_| Refusal(StatusCode::BAD_REQUEST, "body is not UTF-8".into()))?;
        let json: Option<serde_json::Value> = serde_json::from_str(body_text).ok();
        let field = |key: &str| json.as_ref().and_then(|v| v.get(key)).and_then(|v| v.as_str()).map(str::to_string);
        let digest_id = || hex::encode(&Sha256::digest(body)[..16]);
        let (id, event_type) = match provider {
            "shopify" => {
                let sig = header("x-shopify-hmac-sha256").ok_or_else(|| unauthorized("missing X-Shopify-Hmac-Sha256"))?;
                let sig = base64::engine::general_purpose::STANDARD.decode(sig.trim()).map_err(|_| unauthorized("bad signature encoding"))?;
                if !verify(secrets, &[body], &sig) {
                    return Err(unauthorized("signature does not match"));
                }
                (header("x-shopify-webhook-id").unwrap_or_else(digest_id), header("x-shopify-topic"))
            }
            "stripe" => {
                let sig = header("stripe-signature").ok_or_else(|| unauthorized("missing Stripe-Signature"))?;
                let mut t = None;
                let mut v1 = Vec::new();
                for part in sig.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", v)) => t = Some(v.to_string()),
                        Some(("v1", v)) => v1.push(v.to_string()),
                        _ => {}
                    }
                }
                let t = t.ok_or_else(|| unauthorized("Stripe-Signature has no t="))?;
                let ts: i64 = t.parse().map_err(|_| unauthorized("bad Stripe timestamp"))?;
                if (now.timestamp() - ts).abs() > 300 {
                    return Err(unauthorized("Stripe timestamp is outside the 300 s tolerance"));
                }
                let ok = v1.iter().filter_map(|s| hex::decode(s).ok()).any(|s| verify(secrets, &[t.as_bytes(), b".", body], &s));
                if !ok {
                    return Err(unauthorized("signature does not match"));
                }
                (field("id").unwrap_or_else(digest_id), field("type"))
            }
            "hubspot" => {
                let sig = header("x-hubspot-signature-v3").ok_or_else(|| unauthorized("missing X-HubSpot-Signature-v3"))?;
                let ts = header("x-hubspot-request-timestamp").ok_or_else(|| unauthorized("missing X-HubSpot-Request-Timestamp"))?;
                let ms: i64 = ts.parse().map_err(|_| unauthorized("bad HubSpot timestamp"))?;
                if now.timestamp_millis() - ms > 5 * 60 * 1000 || ms - now.timestamp_millis() > 60 * 1000 {
                    return Err(unauthorized("HubSpot timestamp is older than 5 minutes"));
                }
                let base = match &config.public_url {
                    Some(u) => u.trim_end_matches('/').to_string(),
                    None => format!("http://{}", header("host").unwrap_or_default()),
                };
                let full_uri = format!("{base}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
                let sig = base64::engine::general_purpose::STANDARD.decode(sig.trim()).map_err(|_| unauthorized("bad signature encoding"))?;
                if !verify(secrets, &[method.as_str().as_bytes(), full_uri.as_bytes(), body, ts.as_bytes()], &sig) {
                    return Err(unauthorized("signature does not match"));
                }
                let event_type = json
                    .as_ref()
                    .and_then(|v| v.get(0).or(Some(v)))
                    .and_then(|v| v.get("subscriptionType"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                (digest_id(), event_type)
            }
            _ => {
                let sig = header("x-signature").ok_or_else(|| unauthorized("missing X-Signature"))?;
                let sig = hex::decode(sig.trim().trim_start_matches("sha256=")).map_err(|_| unauthorized("bad signature encoding"))?;
                if !verify(secrets, &[body], &sig) {
                    return Err(unauthorized("signature does not match"));
                }
                (header("x-webhook-id").unwrap_or_else(digest_id), header("x-event-type").or_else(|| field("type")))
            }
        };
        Ok(Envelope {
            id,
            provider: provider.to_string(),
            event_type,
            received_at: now.timestamp_micros(),
            body: body_text.to_string(),
        })
    }

    /// Appends the event to the log and syncs it to disk; false when its id was seen before.
    fn store(&self, envelope: &Envelope) -> Result<bool> {
        let mut wal = self.wal.lock().map_err(|_| anyhow!("the write-ahead log lock is poisoned"))?;
        if !wal.seen.insert(format!("{}:{}", envelope.provider, envelope.id)) {
            return Ok(false);
        }
        let mut line = serde_json::to_string(envelope)?;
        line.push('\n');
        wal.file.write_all(line.as_bytes())?;
        wal.file.sync_data()?;
        Ok(true)
    }
}

async fn receive(
    State(server): State<Arc<Server>>,
    UrlPath(provider): UrlPath<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    match server.check(&provider, &method, &uri, &headers, &body) {
        Err(Refusal(status, why)) => (status, format!("{why}\n")),
        Ok(envelope) => match server.store(&envelope) {
            Ok(true) => (StatusCode::OK, "stored\n".into()),
            Ok(false) => (StatusCode::OK, "duplicate, already stored\n".into()),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("cannot store the event: {e}\n")),
        },
    }
}

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
    /// Starts serving on `url` (unless `serve` is false: `--once` only replays the log).
    pub async fn start(
        url: &str,
        wal_dir: &Path,
        providers: &BTreeMap<String, ProviderConfig>,
        max_body_kb: usize,
        retention: std::time::Duration,
        serve: bool,
    ) -> Result<Self> {
        if providers.is_empty() {
            bail!("a webhook source needs at least one provider under [ingest.<name>.webhooks.<provider>]");
        }
        std::fs::create_dir_all(wal_dir).with_context(|| format!("cannot create {}", wal_dir.display()))?;
        let spec = FileSpec::Files { pattern: format!("{}/wal-*.ndjson", wal_dir.display()), root: PathBuf::from("/") };
        let reader = FileReader::new(spec, FileFormat::Ndjson, Positions::new()).complete_lines_only();
        if !serve {
            return Ok(Self { reader, wal_dir: wal_dir.to_path_buf(), current: None, retention });
        }
        let mut resolved = BTreeMap::new();
        for (name, config) in providers {
            if !["shopify", "stripe", "hubspot", "generic"].contains(&name.as_str()) {
                bail!("unknown webhook provider `{name}` (shopify, stripe, hubspot or generic)");
            }
            let mut secrets = Vec::new();
            for var in &config.secret_env {
                match std::env::var(var) {
                    Ok(v) if !v.is_empty() => secrets.push(v.into_bytes()),
                    _ => bail!("webhook provider `{name}`: the environment variable {var} (a signing secret) is not set"),
                }
            }
            if secrets.is_empty() {
                bail!("webhook provider `{name}`: list its secret's environment variable in secret_env");
            }
            resolved.insert(name.clone(), (config.clone(), secrets));
        }
        // Ids already in the log: a redelivery is acknowledged, not stored twice.
        let mut seen = HashSet::new();
        for entry in std::fs::read_dir(wal_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "ndjson") {
                for line in std::fs::read_to_string(&path)?.lines() {
                    if let Ok(e) = serde_json::from_str::<Envelope>(line) {
                        seen.insert(format!("{}:{}", e.provider, e.id));
                    }
                }
            }
        }
        let name = format!("wal-{}.ndjson", chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(wal_dir.join(&name))?;
        let server = Arc::new(Server { providers: resolved, wal: Mutex::new(Wal { file, seen }) });
        let app = axum::Router::new()
            .route("/webhooks/{provider}", post(receive))
            .layer(DefaultBodyLimit::max(max_body_kb * 1024))
            .with_state(server);
        let addr = parse_url(url)?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("webhook server stopped: {e}");
            }
        });
        Ok(Self { reader, wal_dir: wal_dir.to_path_buf(), current: Some(wal_dir.join(&name)), retention })
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

    async fn reset(&mut self, positions: Positions) -> Result<()> {
        self.reader.reset(positions).await
    }

    /// Deletes log files, other than the one being written, whose every event is committed and
    /// which are older than the retention.
    async fn committed(&mut self, positions: &Positions) -> Result<()> {
        for entry in std::fs::read_dir(&self.wal_dir)? {
            let path = entry?.path();
            let is_log = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("wal-") && n.ends_with(".ndjson"));
            if !is_log || Some(&path) == self.current.as_ref() {
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
