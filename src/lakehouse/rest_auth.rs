//! Authentication to an Iceberg REST catalog: a fixed bearer `token`, or an OAuth2 client
//! `credential` (`id:secret`) exchanged at the token endpoint (`oauth2-server-uri`, else the
//! catalog's `/v1/oauth/tokens`) for access tokens that are refreshed before they expire
//! (a fifth of their lifetime, at most a minute, ahead) and again when the server answers 401.
//!
//! A refused token or credential (and a refused `warehouse`) is [`Refused`]: an environment
//! fault (exit 3) whose line names the setting to fix, never the secret.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::header::HeaderValue;
use tokio::sync::Mutex;

/// The REST catalog refused our credentials (HTTP 401/403) or a setting (an unknown
/// `warehouse`), or the token endpoint refused the client credential.
#[derive(Debug)]
pub struct Refused {
    /// The `[catalog]` setting to fix.
    pub setting: &'static str,
    /// What answered what (no secret).
    pub detail: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.detail)
    }
}

impl std::error::Error for Refused {}

/// How requests to one REST catalog are authenticated.
#[derive(Debug)]
pub struct RestAuth {
    client: reqwest::Client,
    kind: Kind,
    token: Mutex<Option<Token>>,
}

#[derive(Debug)]
enum Kind {
    None,
    Fixed(String),
    Credential {
        endpoint: String,
        id: Option<String>,
        secret: String,
        scope: String,
    },
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    /// When to fetch the next one (`None`: the endpoint gave no lifetime).
    refresh_after: Option<Instant>,
    /// How long after its fetch a token is replaced.
    interval: Option<Duration>,
}

impl RestAuth {
    /// From the catalog properties: `token` wins over `credential`; neither means no auth.
    pub fn new(uri: &str, props: &HashMap<String, String>, client: reqwest::Client) -> Self {
        let kind = match (props.get("token"), props.get("credential")) {
            (Some(t), _) => Kind::Fixed(t.clone()),
            (None, Some(c)) => {
                let (id, secret) = match c.split_once(':') {
                    Some((id, secret)) => (Some(id.to_string()), secret.to_string()),
                    None => (None, c.clone()),
                };
                Kind::Credential {
                    endpoint: props
                        .get("oauth2-server-uri")
                        .cloned()
                        .unwrap_or_else(|| format!("{}/v1/oauth/tokens", uri.trim_end_matches('/'))),
                    id,
                    secret,
                    scope: props.get("scope").cloned().unwrap_or_else(|| "catalog".into()),
                }
            }
            _ => Kind::None,
        };
        RestAuth {
            client,
            kind,
            token: Mutex::new(None),
        }
    }

    /// Whether tokens come from a client credential (and so can be refreshed).
    pub fn refreshes(&self) -> bool {
        matches!(self.kind, Kind::Credential { .. })
    }

    /// The `[catalog]` setting that holds the credentials.
    pub fn setting(&self) -> &'static str {
        match self.kind {
            Kind::Credential { .. } => "catalog.credential",
            Kind::Fixed(_) => "catalog.token",
            Kind::None => "catalog.token or catalog.credential",
        }
    }

    /// How long after it is fetched a token is replaced (fetching one if none was yet);
    /// `None` when tokens are not refreshed or the endpoint gives no lifetime.
    pub async fn refresh_interval(&self) -> Result<Option<Duration>> {
        if !self.refreshes() {
            return Ok(None);
        }
        self.header().await?;
        Ok(self.token.lock().await.as_ref().and_then(|t| t.interval))
    }

    /// The `Authorization` header value for the next request, refreshing a token that is due.
    pub async fn header(&self) -> Result<Option<HeaderValue>> {
        let value = match &self.kind {
            Kind::None => return Ok(None),
            Kind::Fixed(t) => t.clone(),
            Kind::Credential { .. } => {
                let mut token = self.token.lock().await;
                let fresh = token.as_ref().filter(|t| t.refresh_after.is_none_or(|at| Instant::now() < at));
                match fresh {
                    Some(t) => t.value.clone(),
                    None => {
                        let t = self.exchange().await?;
                        let value = t.value.clone();
                        *token = Some(t);
                        value
                    }
                }
            }
        };
        let mut header = HeaderValue::from_str(&format!("Bearer {value}")).context("the catalog token is not a valid header value")?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    /// Forget the current token (the server refused it): the next [`Self::header`] fetches one.
    pub async fn invalidate(&self) {
        *self.token.lock().await = None;
    }

    /// OAuth2 client credentials → access token.
    async fn exchange(&self) -> Result<Token> {
        let Kind::Credential { endpoint, id, secret, scope } = &self.kind else {
            unreachable!("only credentials are exchanged")
        };
        let mut form = vec![("grant_type", "client_credentials"), ("client_secret", secret.as_str()), ("scope", scope.as_str())];
        if let Some(id) = id {
            form.push(("client_id", id.as_str()));
        }
        let response = self
            .client
            .post(endpoint)
            .form(&form)
            .send()
            .await
            .with_context(|| format!("the OAuth2 token endpoint {endpoint}"))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::BAD_REQUEST {
            return Err(Refused {
                setting: "catalog.credential",
                detail: format!("the OAuth2 token endpoint {endpoint} refused the client credential ({status})"),
            }
            .into());
        }
        let answer: serde_json::Value = response
            .error_for_status()
            .with_context(|| format!("the OAuth2 token endpoint {endpoint}"))?
            .json()
            .await
            .with_context(|| format!("the OAuth2 token endpoint {endpoint} answered no JSON"))?;
        let value = answer["access_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the OAuth2 token endpoint {endpoint} answered without an access_token"))?
            .to_string();
        let interval = answer["expires_in"].as_u64().map(|secs| {
            let lifetime = Duration::from_secs(secs);
            lifetime - (lifetime / 5).min(Duration::from_secs(60))
        });
        Ok(Token {
            value,
            refresh_after: interval.map(|i| Instant::now() + i),
            interval,
        })
    }

    /// The error for a 401/403 answer to `what`.
    pub fn refused(&self, what: &str, status: reqwest::StatusCode) -> Refused {
        let hint = match self.kind {
            Kind::None => "the catalog requires authentication",
            Kind::Fixed(_) => "the token is wrong or has expired",
            Kind::Credential { .. } => "the credential's token was refused",
        };
        Refused {
            setting: self.setting(),
            detail: format!("the REST catalog refused {what} ({status}: {hint})"),
        }
    }
}
