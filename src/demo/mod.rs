//! `lake demo generate`: realistic webhook events for the demo pipeline. Shopify orders and
//! customers, Stripe charges and customers, HubSpot contacts, in the providers' JSON shapes,
//! from a seeded generator: the same people across the three sources with messy emails, phones
//! and names, and a few events that arrive late, twice or malformed. `--out` writes NDJSON per
//! raw table plus `truth.csv` (who is who); `--post` signs each request as its provider does and
//! posts it to a running `lake ingest` webhook server.

mod payloads;
mod people;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, Utc};

pub use payloads::Event;
use payloads::Activity;
use people::{Person, Rng};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub customers: usize,
    pub days: u32,
    pub seed: u64,
    /// The first day's midnight (UTC).
    pub start: DateTime<Utc>,
}

/// The raw tables the events land in, in a stable order.
pub const TABLES: [&str; 5] = ["shopify_orders", "shopify_customers", "stripe_charges", "stripe_customers", "hubspot_contacts"];

/// Every delivery, in the order the providers send them: by send time, with ~3% sent one to
/// three days late, ~1% sent twice (same delivery id) and ~0.5% with a broken body.
pub fn generate(o: &Options) -> Vec<Event> {
    let mut rng = Rng::new(o.seed);
    let mut next_order = 0u64;
    let mut events = Vec::new();
    for id in 0..o.customers {
        let person = Person::new(id, &mut rng);
        let mut activity = Activity {
            rng: &mut rng,
            start: o.start,
            days: o.days.max(1),
            next_order: &mut next_order,
        };
        events.extend(activity.events(&person));
    }
    let mut out = Vec::with_capacity(events.len() + events.len() / 50);
    for mut e in events {
        if rng.chance(0.03) {
            e.sent_at += Duration::hours(24 + rng.below(48) as i64);
        }
        if rng.chance(0.005) {
            let mut broken = e.clone();
            broken.body.truncate(broken.body.len() / 2);
            broken.id = format!("{}-broken", e.id);
            broken.record = None;
            out.push(broken);
        }
        if rng.chance(0.01) {
            let mut again = e.clone();
            again.sent_at += Duration::minutes(5);
            again.record = None;
            out.push(again);
        }
        out.push(e);
    }
    out.sort_by_key(|e| e.sent_at);
    out
}

/// What `--out` wrote.
#[derive(Debug, Default)]
pub struct Written {
    pub events: BTreeMap<&'static str, usize>,
    pub truth_rows: usize,
}

/// One NDJSON file per raw table (`<table><suffix>.ndjson`, one body per line in delivery
/// order; the events of a HubSpot array one per line) and `truth.csv`
/// (`source,source_id,person_id`).
pub fn write_out(dir: &Path, events: &[Event], suffix: &str) -> Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Written::default();
    for table in TABLES {
        let path = dir.join(format!("{table}{suffix}.ndjson"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?);
        let mut n = 0;
        for e in events.iter().filter(|e| e.table == table) {
            // HubSpot posts arrays of events: a file holds one event per line.
            let parsed = (e.provider == "hubspot").then(|| serde_json::from_str::<serde_json::Value>(&e.body));
            match parsed {
                Some(Ok(serde_json::Value::Array(items))) => {
                    for item in items {
                        writeln!(f, "{item}")?;
                    }
                }
                _ => writeln!(f, "{}", e.body)?,
            }
            n += 1;
        }
        f.flush().with_context(|| format!("cannot write {}", path.display()))?;
        written.events.insert(table, n);
    }
    let truth: BTreeSet<(&str, &str, usize)> =
        events.iter().filter_map(|e| e.record.as_ref()).map(|(s, id, p)| (*s, id.as_str(), *p)).collect();
    let mut csv = String::from("source,source_id,person_id\n");
    for (s, id, p) in &truth {
        csv.push_str(&format!("{s},{id},{p}\n"));
    }
    std::fs::write(dir.join("truth.csv"), csv).with_context(|| format!("cannot write {}", dir.join("truth.csv").display()))?;
    written.truth_rows = truth.len();
    Ok(written)
}

/// A provider's signing secret and (HubSpot) the public URL it signs.
#[derive(Debug, Clone)]
pub struct Signer {
    pub secret: Vec<u8>,
    pub public_url: Option<String>,
}

/// Post every event to `{base}/webhooks/<provider>`, signed as the provider signs it, in
/// order; a 503 (the server's disk or log is busy) is retried after its Retry-After. Returns
/// the number of deliveries per provider.
pub async fn post(base: &str, events: &[Event], signers: &BTreeMap<String, Signer>) -> Result<BTreeMap<&'static str, usize>> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let base = base.trim_end_matches('/');
    let mut sent = BTreeMap::new();
    for e in events {
        let Some(signer) = signers.get(e.provider) else {
            bail!("no webhook secret for {} (configure [ingest.<name>.webhooks.{}] secret_env in lake.toml)", e.provider, e.provider)
        };
        let path = format!("/webhooks/{}", e.provider);
        let signed_uri = format!("{}{path}", signer.public_url.as_deref().unwrap_or(base).trim_end_matches('/'));
        for attempt in 0.. {
            let mut request = client.post(format!("{base}{path}")).body(e.body.clone()).header("Content-Type", "application/json");
            for (k, v) in crate::ingest::webhook::sign(e.provider, &signer.secret, &signed_uri, e.body.as_bytes(), Utc::now()) {
                request = request.header(k, v);
            }
            request = match e.provider {
                "shopify" => request
                    .header("X-Shopify-Topic", &e.topic)
                    .header("X-Shopify-Webhook-Id", &e.id)
                    .header("X-Shopify-Shop-Domain", "lake-demo.myshopify.com")
                    .header("X-Shopify-Triggered-At", e.sent_at.to_rfc3339()),
                _ => request,
            };
            let response = request.send().await.with_context(|| format!("cannot post to {base}{path}"))?;
            let status = response.status();
            if status.is_success() {
                break;
            }
            if status.as_u16() == 503 && attempt < 20 {
                let wait = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(1);
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                continue;
            }
            let text = response.text().await.unwrap_or_default();
            bail!("{base}{path} answered {status} to {} delivery {}: {}", e.provider, e.id, text.trim());
        }
        *sent.entry(e.provider).or_insert(0) += 1;
    }
    Ok(sent)
}
