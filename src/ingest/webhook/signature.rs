//! Verifying a webhook request: each provider's signature scheme (HMAC-SHA256, compared in
//! constant time), its timestamp tolerance, and the keys the event is deduplicated by; and
//! signing one the way each provider does ([`sign`], for `lake demo generate --post`), so both
//! sides of every scheme live here.
//!
//! Deduplication keys ([`Envelope::keys`]): the provider's event id, and for providers whose
//! signature covers no delivery-specific value (Shopify, generic without a timestamp) also a
//! digest of the signed content, so a signed body replayed with a new, unsigned id header is
//! recognized. Stripe and HubSpot sign a timestamp that changes on each legitimate
//! redelivery: their key is the event id from the body (Stripe) or the body's digest (HubSpot).

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use hyper::{HeaderMap, Method, StatusCode, Uri};
use sha2::{Digest, Sha256};

use super::wal::Envelope;
use crate::ingest::config::ProviderConfig;

/// How far a Stripe timestamp, and by default a generic one, may be from now.
const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

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

/// The signature headers `provider` sends with `body`, POSTed to `full_uri` at `now`
/// (Shopify: base64 HMAC of the body; Stripe: `t=<unix>,v1=<hex HMAC of "t.body">`; HubSpot v3:
/// base64 HMAC of method + URI + body + millisecond timestamp; generic: hex HMAC of
/// "timestamp.body" with `X-Webhook-Timestamp`).
pub fn sign(provider: &str, secret: &[u8], full_uri: &str, body: &[u8], now: chrono::DateTime<chrono::Utc>) -> Vec<(String, String)> {
    let b64 = |m: HmacSha256| base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
    match provider {
        "shopify" => vec![("X-Shopify-Hmac-Sha256".into(), b64(mac(secret, &[body])))],
        "stripe" => {
            let t = now.timestamp().to_string();
            let v1 = hex::encode(mac(secret, &[t.as_bytes(), b".", body]).finalize().into_bytes());
            vec![("Stripe-Signature".into(), format!("t={t},v1={v1}"))]
        }
        "hubspot" => {
            let ts = now.timestamp_millis().to_string();
            let sig = b64(mac(secret, &[b"POST", full_uri.as_bytes(), body, ts.as_bytes()]));
            vec![("X-HubSpot-Signature-v3".into(), sig), ("X-HubSpot-Request-Timestamp".into(), ts)]
        }
        _ => {
            let t = now.timestamp().to_string();
            let sig = hex::encode(mac(secret, &[t.as_bytes(), b".", body]).finalize().into_bytes());
            vec![("X-Signature".into(), format!("sha256={sig}")), ("X-Webhook-Timestamp".into(), t)]
        }
    }
}

/// The dedupe digest of a provider's signed content: SHA-256 (hex) of the provider, the signed
/// timestamp (empty when none) and the body.
pub(super) fn content_digest(provider: &str, signed_timestamp: Option<&str>, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(provider.as_bytes());
    h.update([0]);
    h.update(signed_timestamp.unwrap_or("").as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

/// Whether a provider's events are also deduplicated by their content digest.
pub(super) fn dedupes_content(provider: &str) -> bool {
    matches!(provider, "shopify" | "generic")
}

/// Why a request is refused: its status and a one-line reason.
pub(super) struct Refusal(pub StatusCode, pub String);

/// The configured providers with their secrets, resolved from the environment.
pub(super) struct Providers(BTreeMap<String, (ProviderConfig, Vec<Vec<u8>>)>);

impl Providers {
    /// Reads each provider's secrets from the environment variables it names.
    pub fn resolve(providers: &BTreeMap<String, ProviderConfig>) -> anyhow::Result<Self> {
        let mut resolved = BTreeMap::new();
        for (name, config) in providers {
            let mut secrets = Vec::new();
            for var in &config.secret_env {
                match std::env::var(var) {
                    Ok(v) if !v.is_empty() => secrets.push(v.into_bytes()),
                    _ => anyhow::bail!("webhook provider `{name}`: the environment variable {var} (a signing secret) is not set"),
                }
            }
            if secrets.is_empty() {
                anyhow::bail!("webhook provider `{name}`: list its secret's environment variable in secret_env");
            }
            resolved.insert(name.clone(), (config.clone(), secrets));
        }
        Ok(Self(resolved))
    }

    pub fn serves(&self, provider: &str) -> bool {
        self.0.contains_key(provider)
    }

    /// Verifies a request to `/webhooks/<provider>` and makes its log entry.
    pub fn check(&self, provider: &str, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Envelope, Refusal> {
        let (config, secrets) =
            self.0.get(provider).ok_or_else(|| Refusal(StatusCode::NOT_FOUND, format!("no webhook route for `{provider}`")))?;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let unauthorized = |why: &str| Refusal(StatusCode::UNAUTHORIZED, why.to_string());
        let now = chrono::Utc::now();
        let body_text = std::str::from_utf8(body).map_err(|_| Refusal(StatusCode::BAD_REQUEST, "body is not UTF-8".into()))?;
        let json: Option<serde_json::Value> = serde_json::from_str(body_text).ok();
        let field = |key: &str| json.as_ref().and_then(|v| v.get(key)).and_then(|v| v.as_str()).map(str::to_string);
        let digest_id = || hex::encode(&Sha256::digest(body)[..16]);
        let mut signed_timestamp = None;
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
                if now.timestamp().abs_diff(ts) > DEFAULT_TOLERANCE_SECONDS {
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
                if now.timestamp_millis().saturating_sub(ms) > 5 * 60 * 1000 || ms.saturating_sub(now.timestamp_millis()) > 60 * 1000 {
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
                let ok = match header("x-webhook-timestamp") {
                    Some(t) => {
                        let ts: i64 = t.trim().parse().map_err(|_| unauthorized("bad X-Webhook-Timestamp"))?;
                        let tolerance = config.tolerance_seconds.unwrap_or(DEFAULT_TOLERANCE_SECONDS);
                        if now.timestamp().abs_diff(ts) > tolerance {
                            return Err(unauthorized(&format!("X-Webhook-Timestamp is outside the {tolerance} s tolerance")));
                        }
                        let ok = verify(secrets, &[t.trim().as_bytes(), b".", body], &sig);
                        signed_timestamp = Some(t.trim().to_string());
                        ok
                    }
                    None if config.require_timestamp => return Err(unauthorized("missing X-Webhook-Timestamp")),
                    None => verify(secrets, &[body], &sig),
                };
                if !ok {
                    return Err(unauthorized("signature does not match"));
                }
                (header("x-webhook-id").unwrap_or_else(digest_id), header("x-event-type").or_else(|| field("type")))
            }
        };
        let digest = dedupes_content(provider).then(|| content_digest(provider, signed_timestamp.as_deref(), body));
        Ok(Envelope {
            id,
            provider: provider.to_string(),
            event_type,
            received_at: now.timestamp_micros(),
            body: body_text.to_string(),
            digest,
        })
    }
}
