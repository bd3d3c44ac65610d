//! `[openlineage]` in `lake.toml`: where `lake` sends OpenLineage run events (an HTTP endpoint
//! such as Marquez or DataHub, an NDJSON file, or the console) and under which job namespace.
//!
//! Validated when the project loads: an unknown key, a bad transport or a transport without
//! its `url`/`path` is a project error naming the key. `api_key` is a secret (registered like
//! every `*api_key*` value, never printed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use super::config::CONFIG_FILE;

/// `[openlineage]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOpenLineage {
    transport: String,
    url: Option<String>,
    api_key: Option<String>,
    path: Option<String>,
    namespace: Option<String>,
    timeout_seconds: Option<f64>,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// POSTed one by one to this endpoint (the full URL, `/api/v1/lineage` added when the
    /// configured `url` has no path).
    Http { endpoint: String, api_key: Option<String> },
    /// Appended to this file, one JSON event per line.
    File { path: PathBuf },
    /// Printed to stderr, one JSON event per line.
    Console,
}

/// A validated `[openlineage]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLineageConfig {
    pub transport: Transport,
    /// The job namespace (default: the project name).
    pub namespace: String,
    /// The limit of one HTTP request; the end of a command waits at most twice this for events
    /// still queued.
    pub timeout: Duration,
}

/// The path Marquez (and DataHub's OpenLineage endpoint under `/openapi`) receive events on.
pub const DEFAULT_ENDPOINT_PATH: &str = "/api/v1/lineage";

impl RawOpenLineage {
    pub(crate) fn validate(self, root: &Path, project: &str) -> Result<OpenLineageConfig> {
        let key = |k: &str| format!("{CONFIG_FILE}: openlineage.{k}");
        let transport = match self.transport.as_str() {
            "http" => {
                let url = self.url.as_deref().ok_or_else(|| anyhow!("{}: required when transport = \"http\"", key("url")))?;
                let parsed = url::Url::parse(url).map_err(|e| anyhow!("{}: not a URL ({e}); write e.g. \"http://localhost:5000\"", key("url")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    bail!("{}: must be an http:// or https:// URL", key("url"));
                }
                let endpoint = if parsed.path().trim_matches('/').is_empty() {
                    format!("{}{DEFAULT_ENDPOINT_PATH}", url.trim_end_matches('/'))
                } else {
                    url.to_string()
                };
                Transport::Http { endpoint, api_key: self.api_key.clone().filter(|k| !k.is_empty()) }
            }
            "file" => {
                let path = self.path.as_deref().filter(|p| !p.is_empty()).ok_or_else(|| anyhow!("{}: required when transport = \"file\"", key("path")))?;
                Transport::File { path: root.join(path) }
            }
            "console" => Transport::Console,
            other => bail!("{}: unknown transport {other:?} (use \"http\", \"file\" or \"console\")", key("transport")),
        };
        for (name, set, wants) in [("url", self.url.is_some(), "http"), ("api_key", self.api_key.is_some(), "http"), ("path", self.path.is_some(), "file")] {
            if set && self.transport != wants {
                bail!("{}: only used with transport = \"{wants}\"", key(name));
            }
        }
        let timeout = match self.timeout_seconds {
            None => Duration::from_secs(5),
            Some(t) if t > 0.0 && t <= 300.0 => Duration::from_secs_f64(t),
            Some(t) => bail!("{} = {t}: must be a number of seconds above 0 and at most 300", key("timeout_seconds")),
        };
        let namespace = self.namespace.unwrap_or_else(|| project.to_string());
        if namespace.trim().is_empty() {
            bail!("{}: must not be empty", key("namespace"));
        }
        Ok(OpenLineageConfig { transport, namespace, timeout })
    }
}
