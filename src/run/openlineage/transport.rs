//! Sending events: HTTP POST (JSON body, `Authorization: Bearer <api_key>` when one is set),
//! an NDJSON file, or the console (stderr). The first failure stops the sending: later events
//! are counted, not tried, and [`Outcome::warn`] reports them in one line without a secret.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::project::openlineage::{OpenLineageConfig, Transport};
use crate::project::secrets;

enum Kind {
    Http { client: reqwest::Client, endpoint: String, api_key: Option<String> },
    File { path: std::path::PathBuf },
    Console,
}

pub(super) struct Sink {
    kind: Kind,
    timeout: Duration,
    sent: usize,
    unsent: usize,
    /// Why sending stopped (scrubbed), with where it was going.
    failure: Option<String>,
}

/// How a command's sending went.
pub(super) struct Outcome {
    sent: usize,
    unsent: usize,
    failure: Option<String>,
}

impl Outcome {
    /// One WARN line when events were not sent.
    pub(super) fn warn(&self) {
        if let Some(failure) = &self.failure {
            tracing::warn!(
                "OpenLineage: {failure}; {} of {} events not sent (the run itself is unaffected)",
                self.unsent,
                self.sent + self.unsent
            );
        }
    }
}

impl Sink {
    pub(super) fn new(config: &OpenLineageConfig) -> Sink {
        let kind = match &config.transport {
            Transport::Http { endpoint, api_key } => {
                let client = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout)
                    .build()
                    .unwrap_or_default();
                Kind::Http { client, endpoint: endpoint.clone(), api_key: api_key.clone() }
            }
            Transport::File { path } => Kind::File { path: path.clone() },
            Transport::Console => Kind::Console,
        };
        Sink { kind, timeout: config.timeout, sent: 0, unsent: 0, failure: None }
    }

    pub(super) async fn send(&mut self, event: &Value) {
        if self.failure.is_some() {
            self.unsent += 1;
            return;
        }
        match self.try_send(event).await {
            Ok(()) => self.sent += 1,
            Err(reason) => {
                self.unsent += 1;
                self.failure = Some(secrets::scrub(&reason));
            }
        }
    }

    async fn try_send(&self, event: &Value) -> Result<(), String> {
        match &self.kind {
            Kind::Http { client, endpoint, api_key } => {
                let mut request = client.post(endpoint).json(event);
                if let Some(key) = api_key {
                    request = request.bearer_auth(key);
                }
                let to = crate::lakehouse::catalog::redact_uri(endpoint);
                let response = tokio::time::timeout(self.timeout, request.send())
                    .await
                    .map_err(|_| format!("{to} did not answer within {:.1}s", self.timeout.as_secs_f64()))?
                    .map_err(|e| format!("cannot send events to {to}: {}", without_url(e)))?;
                let status = response.status();
                if !status.is_success() {
                    return Err(format!("{to} answered {status}"));
                }
                Ok(())
            }
            Kind::File { path } => {
                let line = format!("{event}\n");
                let write = || -> std::io::Result<()> {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                    // One write per event: concurrent commands append whole lines.
                    file.write_all(line.as_bytes())
                };
                write().map_err(|e| format!("cannot append events to {}: {e}", path.display()))
            }
            Kind::Console => {
                eprintln!("{event}");
                Ok(())
            }
        }
    }

    pub(super) fn outcome(&self) -> Outcome {
        Outcome { sent: self.sent, unsent: self.unsent, failure: self.failure.clone() }
    }
}

/// A reqwest error's cause chain without the URL it repeats.
fn without_url(e: reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        e.without_url().to_string()
    } else {
        parts.join(": ")
    }
}
