//! `lake source freshness`: how long ago each source table with a `freshness:` block was last
//! loaded, against its `warn_after` / `error_after` (dbt's source freshness). The load time is
//! the greatest `loaded_at_field` (rows limited by the block's `filter`), or, without that
//! field, the table's last commit (what `lake ingest` and `lake seed` tables have).

use std::time::Duration;

use anyhow::{Result, anyhow};
use arrow::array::{Array, Float64Array};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::engine::session::{LazyCatalog, new_session, read_only_query};
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::project::model::{Freshness, SourceTable};

use super::results::{NodeResult, Status};

/// One source table's freshness.
#[derive(Debug, Clone)]
pub struct FreshnessResult {
    pub table: String,
    pub max_loaded_at: Option<DateTime<Utc>>,
    pub age: Option<Duration>,
    /// As a node of the terminal report and `run_results.json`: `Pass`, `Warn`, `Fail` (stale
    /// past `error_after`) or `Error` (could not be checked), with the message.
    pub node: NodeResult,
    pub freshness: Freshness,
}

impl FreshnessResult {
    /// dbt's `sources.json` entry.
    pub fn json(&self, project: &str, snapshotted_at: DateTime<Utc>) -> serde_json::Value {
        let after = |d: Option<Duration>| d.map(|d| json!({"count": d.as_secs() / 60, "period": "minute"}));
        json!({
            "unique_id": format!("source.{project}.{}", self.table),
            "max_loaded_at": self.max_loaded_at.map(|t| t.to_rfc3339()),
            "snapshotted_at": snapshotted_at.to_rfc3339(),
            "max_loaded_at_time_ago_in_s": self.age.map(|a| a.as_secs_f64()),
            "status": match self.node.status {
                Status::Pass => "pass",
                Status::Warn => "warn",
                Status::Fail => "error",
                _ => "runtime error",
            },
            "criteria": {
                "warn_after": after(self.freshness.warn_after),
                "error_after": after(self.freshness.error_after),
                "filter": self.freshness.filter,
            },
            "message": self.node.message,
        })
    }
}

/// Check every source table in `sources` that declares freshness, at `now`. Fails only when
/// the catalog cannot be read at all; one table that cannot be checked is that table's error.
pub async fn check(lakehouse: &Lakehouse, sources: &[&SourceTable], now: DateTime<Utc>) -> Result<Vec<FreshnessResult>> {
    let session = new_session();
    LazyCatalog::register(&session, lakehouse).await?;
    let mut out = Vec::new();
    for s in sources {
        let Some(freshness) = s.freshness.clone() else { continue };
        let table = s.table_name();
        let loaded = last_loaded(lakehouse, &session, s, &freshness).await;
        let mut node = NodeResult::new("source", &table, Some(table.clone()), Status::Pass);
        let (mut max_loaded_at, mut age) = (None, None);
        match loaded {
            Ok(Some(at)) => {
                let a = (now - at).to_std().unwrap_or_default();
                node.status = judge(a, &freshness);
                node.message = Some(format!("last loaded {} ago ({})", human(a), criteria(&freshness)));
                (max_loaded_at, age) = (Some(at), Some(a));
            }
            Ok(None) => {
                node.status = Status::Fail;
                node.message = Some("never loaded (no rows, or no commit)".to_string());
            }
            Err(e) => node.fail(&format!("source {table}"), &e, lakehouse.spec()),
        }
        out.push(FreshnessResult {
            table,
            max_loaded_at,
            age,
            node,
            freshness,
        });
    }
    Ok(out)
}

/// Stale past `error_after` → `Fail`, past `warn_after` → `Warn`, else `Pass`.
fn judge(age: Duration, f: &Freshness) -> Status {
    if f.error_after.is_some_and(|e| age > e) {
        Status::Fail
    } else if f.warn_after.is_some_and(|w| age > w) {
        Status::Warn
    } else {
        Status::Pass
    }
}

/// When the table was last loaded: its greatest `loaded_at_field`, or its last commit.
async fn last_loaded(
    lakehouse: &Lakehouse,
    session: &datafusion::prelude::SessionContext,
    s: &SourceTable,
    f: &Freshness,
) -> Result<Option<DateTime<Utc>>> {
    let Some(field) = &f.loaded_at_field else {
        let table = lakehouse.load_table(&table_ident(&s.table_name())?).await?;
        let millis = table.as_ref().and_then(|t| t.metadata().current_snapshot().map(|s| s.timestamp_ms()));
        return Ok(millis.and_then(DateTime::from_timestamp_millis));
    };
    let filter = f.filter.as_ref().map(|c| format!(" WHERE {c}")).unwrap_or_default();
    let sql = format!(
        "SELECT CAST(date_part('epoch', MAX(\"{}\")) AS DOUBLE) AS loaded FROM \"{}\".\"{}\"{filter}",
        field.replace('"', "\"\""),
        s.source.replace('"', "\"\""),
        s.table.replace('"', "\"\"")
    );
    let batches = read_only_query(session, &sql).await?.collect().await.map_err(|e| anyhow!("{e}"))?;
    let value = batches
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<Float64Array>().cloned())
        .filter(|a| !a.is_empty() && a.is_valid(0))
        .map(|a| a.value(0));
    Ok(value.and_then(|secs| DateTime::from_timestamp_micros((secs * 1e6) as i64)))
}

fn criteria(f: &Freshness) -> String {
    let mut parts = Vec::new();
    if let Some(w) = f.warn_after {
        parts.push(format!("warn after {}", human(w)));
    }
    if let Some(e) = f.error_after {
        parts.push(format!("error after {}", human(e)));
    }
    parts.join(", ")
}

/// `3d 4h`, `2h 5m`, `12m`, `40s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}
