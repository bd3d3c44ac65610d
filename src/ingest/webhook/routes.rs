//! Where a webhook event lands. `[ingest.<name>.routes]` sends events to raw tables by provider
//! and event type (`"shopify:orders/*" = "raw.shopify_orders"`); events no route takes land in
//! the source's `table`. Each table is a lane with its own write-ahead log (lane 0, the
//! source's table, keeps `.lake/ingest/<source>/`; a routed table's log is under
//! `route-<table>/` in it), so each table keeps its own read positions, exactly as a source of
//! its own. An array body (HubSpot sends batches) is split into one event per element at
//! receipt, so each element is routed and stored as its own row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::Value;

use super::wal::Envelope;

/// The routes of one webhook source.
#[derive(Debug, Clone)]
pub struct Routes {
    /// (provider or `*`, event type pattern, lane), most specific first.
    rules: Vec<(String, String, usize)>,
    /// Each lane's table; lane 0 is the source's own.
    tables: Vec<String>,
}

impl Routes {
    /// Parses `routes` (`"<provider>:<event type pattern>" = "<ns.table>"`, `*` matching any
    /// text), checking each provider is served (`serves`).
    pub fn parse(table: &str, routes: &BTreeMap<String, String>, serves: &dyn Fn(&str) -> bool) -> Result<Routes> {
        let mut tables = vec![table.to_string()];
        let mut rules = Vec::new();
        for (key, target) in routes {
            let Some((provider, pattern)) = key.split_once(':') else {
                bail!("routes: `{key}` is not \"<provider>:<event type pattern>\" (e.g. \"shopify:orders/*\")");
            };
            if provider != "*" && !serves(provider) {
                bail!("routes: `{key}` names provider `{provider}`, which has no [webhooks.{provider}] section");
            }
            if crate::lakehouse::catalog::table_ident(target).is_err() || !target.contains('.') {
                bail!("routes: `{key}` = \"{target}\" is not a namespace.table");
            }
            let lane = match tables.iter().position(|t| t == target) {
                Some(lane) => lane,
                None => {
                    tables.push(target.clone());
                    tables.len() - 1
                }
            };
            rules.push((provider.to_string(), pattern.to_string(), lane));
        }
        // Most specific first: a named provider before `*`, then the longer literal text.
        rules.sort_by_key(|(p, pattern, _)| (p == "*", std::cmp::Reverse(pattern.replace('*', "").len())));
        Ok(Routes { rules, tables })
    }

    /// The lane an event of `provider` with `event_type` goes to.
    pub fn lane(&self, provider: &str, event_type: Option<&str>) -> usize {
        self.rules
            .iter()
            .find(|(p, pattern, _)| (p == "*" || p == provider) && glob(pattern, event_type.unwrap_or("")))
            .map_or(0, |(_, _, lane)| *lane)
    }

    /// Each lane's table, lane 0 first.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Each lane's write-ahead log folder under the source's (`root`).
    pub fn dirs(&self, root: &Path) -> Vec<PathBuf> {
        self.tables
            .iter()
            .enumerate()
            .map(|(lane, table)| if lane == 0 { root.to_path_buf() } else { root.join(format!("route-{table}")) })
            .collect()
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The events of one delivery: the delivery itself, or one per element of an array body (its
/// own `eventId` or `id` as id, `{delivery id}#{index}` when it has none; its own
/// `subscriptionType` or `type` as event type).
pub(super) fn split(delivery: Envelope) -> Vec<Envelope> {
    let items = match serde_json::from_str::<Value>(&delivery.body) {
        Ok(Value::Array(items)) if !items.is_empty() => items,
        _ => return vec![delivery],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let text = |v: Option<&Value>| match v {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let id = text(item.get("eventId").or_else(|| item.get("id"))).unwrap_or_else(|| format!("{}#{i}", delivery.id));
            let event_type = text(item.get("subscriptionType").or_else(|| item.get("type"))).or_else(|| delivery.event_type.clone());
            Envelope {
                id,
                provider: delivery.provider.clone(),
                event_type,
                received_at: delivery.received_at,
                body: item.to_string(),
                digest: delivery.digest.as_ref().map(|d| format!("{d}#{i}")),
            }
        })
        .collect()
}
