//! `lake maintain`, `lake snapshots <table>` and `lake rollback <table> --to <id>`.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::project_cmds::{connect, load, selection};
use super::{CliResult, EXIT_FAILED, EXIT_OK, ExitCodeExt, GlobalArgs, LogFormat, SelectArgs};
use crate::graph::Graph;
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::lakehouse::maintenance::{
    self, MaintainOptions, MaintainOutcome, MaintenancePolicy, format_duration,
};
use crate::lakehouse::summary;
use crate::project::model::{Materialized, WatermarkSpec};

/// `lake maintain [--select ..] [--dry-run]`: compact, expire snapshots and remove orphan files
/// of each selected model's table.
pub(super) async fn maintain(g: &GlobalArgs, args: &SelectArgs, dry_run: bool) -> CliResult {
    let (project, graph) = load(g)?;
    let selected = selection(&graph, args)?;
    let lakehouse = connect(&project).await?;
    let protected = protected_snapshots(&lakehouse, &graph).await?;
    let now = chrono::Utc::now();
    let json = g.log_format == LogFormat::Json;
    let mut failed = 0usize;
    let mut done = 0usize;
    for i in selected {
        let m = graph.model(i);
        if m.config.materialized == Materialized::Ephemeral {
            continue;
        }
        let relation = m.table_name();
        let ident = table_ident(&relation).usage()?;
        let mut event = serde_json::json!({
            "event": "maintain",
            "model": m.name,
            "relation": relation,
            "dry_run": dry_run,
        });
        let table = match lakehouse.load_table(&ident).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                event["status"] = "skipped".into();
                event["message"] = "not built".into();
                report(json, &event, &format!("{relation:<36} skipped: not built"));
                continue;
            }
            Err(e) => {
                failed += 1;
                event["status"] = "error".into();
                event["message"] = format!("{e:#}").into();
                report(json, &event, &format!("{relation:<36} error: {e:#}"));
                continue;
            }
        };
        let policy = match MaintenancePolicy::resolve(m.config.maintenance.as_ref(), Some(&table)) {
            Ok(p) => p,
            Err(e) => {
                failed += 1;
                event["status"] = "error".into();
                event["message"] = format!("{}: {e:#}", m.path.display()).into();
                report(
                    json,
                    &event,
                    &format!("{relation:<36} error: {}: {e:#}", m.path.display()),
                );
                continue;
            }
        };
        event["policy"] = serde_json::to_value(&policy).unwrap_or_default();
        if !policy.enabled {
            event["status"] = "skipped".into();
            event["message"] = "maintenance disabled (maintenance: {enabled: false})".into();
            report(
                json,
                &event,
                &format!("{relation:<36} skipped: maintenance disabled"),
            );
            continue;
        }
        let options = MaintainOptions {
            dry_run,
            now,
            protected: protected.get(&relation).cloned().unwrap_or_default(),
        };
        match maintenance::maintain_table_with(
            &lakehouse,
            &ident,
            &policy,
            &project.config.write,
            &options,
        )
        .await
        {
            Ok(outcome) => {
                done += 1;
                event["status"] = "success".into();
                if let serde_json::Value::Object(map) =
                    serde_json::to_value(&outcome).unwrap_or_default()
                {
                    for (k, v) in map {
                        if k != "table" {
                            event[k] = v;
                        }
                    }
                }
                report(json, &event, &describe(&relation, &outcome, &policy));
            }
            Err(e) => {
                failed += 1;
                event["status"] = "error".into();
                event["message"] = format!("{e:#}").into();
                report(json, &event, &format!("{relation:<36} error: {e:#}"));
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "maintain_summary", "tables": done, "failed": failed, "dry_run": dry_run})
        );
    } else {
        println!(
            "\n{} {done} table(s){}",
            if dry_run {
                "Planned maintenance of"
            } else {
                "Maintained"
            },
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        );
    }
    Ok(if failed > 0 { EXIT_FAILED } else { EXIT_OK })
}

fn report(json: bool, event: &serde_json::Value, text: &str) {
    if json {
        println!("{event}");
    } else {
        println!("{text}");
    }
}

fn describe(relation: &str, o: &MaintainOutcome, policy: &MaintenancePolicy) -> String {
    let c = &o.compaction;
    let mut parts = Vec::new();
    if o.dry_run {
        if c.rewritten > 0 {
            parts.push(format!(
                "would compact {} of {} data files",
                c.rewritten, c.files_before
            ));
        } else if c.manifests_before > policy.max_manifests {
            parts.push(format!("would merge {} manifests", c.manifests_before));
        } else {
            parts.push(format!(
                "nothing to compact ({} data files)",
                c.files_before
            ));
        }
        parts.push(format!(
            "would expire {} snapshot(s) (keeping {}, deleting {} files)",
            o.expiry.expired.len(),
            o.expiry.kept.len(),
            o.expiry.deleted_files.len()
        ));
        parts.push(format!(
            "would remove {} orphan file(s) older than {}",
            o.orphans.len(),
            format_duration(policy.orphan_older_than)
        ));
    } else {
        match c.snapshot_id {
            Some(id) if c.rewritten > 0 => parts.push(format!(
                "compacted {} → {} data files ({} rewritten, manifests {} → {}; snapshot {id})",
                c.files_before, c.files_after, c.rewritten, c.manifests_before, c.manifests_after
            )),
            Some(id) => parts.push(format!(
                "merged manifests {} → {} (snapshot {id})",
                c.manifests_before, c.manifests_after
            )),
            None => parts.push(format!(
                "nothing to compact ({} data files)",
                c.files_before
            )),
        }
        parts.push(format!(
            "expired {} snapshot(s) (kept {}, deleted {} files)",
            o.expiry.expired.len(),
            o.expiry.kept.len(),
            o.expiry.deleted_files.len()
        ));
        parts.push(format!("removed {} orphan file(s)", o.orphans.len()));
    }
    let mut text = format!("{relation:<36} {}", parts.join("; "));
    for n in &o.notes {
        text.push_str(&format!("\n{:<36} note: {n}", ""));
    }
    text
}

/// Per table, the snapshots that exact incremental reads of downstream models start from
/// (`watermark: snapshot`): expiry keeps their history so those reads stay incremental.
async fn protected_snapshots(
    lakehouse: &Lakehouse,
    graph: &Graph,
) -> CliResult<HashMap<String, HashSet<i64>>> {
    let mut out: HashMap<String, HashSet<i64>> = HashMap::new();
    for m in graph.models() {
        if m.config.watermark != Some(WatermarkSpec::Snapshot)
            || m.config.materialized == Materialized::Ephemeral
        {
            continue;
        }
        let Ok(ident) = table_ident(&m.table_name()) else {
            continue;
        };
        let Some(table) = lakehouse.load_table(&ident).await.environment()? else {
            continue;
        };
        let Some(w) = summary::watermark(&table) else {
            continue;
        };
        if w.data_type != "snapshot" {
            continue;
        }
        if let Ok(reads) = serde_json::from_str::<BTreeMap<String, Option<i64>>>(&w.value) {
            for (name, id) in reads {
                if let Some(id) = id {
                    out.entry(name).or_default().insert(id);
                }
            }
        }
    }
    Ok(out)
}

/// `lake snapshots <table>`: every snapshot, oldest first.
pub(super) async fn snapshots(g: &GlobalArgs, name: &str) -> CliResult {
    let (project, _) = load(g)?;
    let ident = table_ident(name).usage()?;
    let lakehouse = connect(&project).await?;
    let table = lakehouse.table(&ident).await.usage()?;
    let list = maintenance::snapshots(&table);
    if g.log_format == LogFormat::Json {
        for s in &list {
            println!("{}", serde_json::to_string(s).unwrap_or_default());
        }
        return Ok(EXIT_OK);
    }
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    println!(
        "  {:<20} {:<20} {:<23} {:<10} {:>9} {:>9} {:>9}  {:<20} watermark",
        "snapshot", "parent", "time (UTC)", "operation", "added", "deleted", "total", "by"
    );
    for s in &list {
        let mark = match (s.current, s.in_history) {
            (true, _) => "*",
            (false, true) => " ",
            (false, false) => "x",
        };
        let by = s
            .maintenance
            .as_ref()
            .map(|m| match s.rollback_of {
                Some(id) => format!("{m} to {id}"),
                None => m.clone(),
            })
            .or_else(|| s.model.clone())
            .unwrap_or_else(|| "-".into());
        println!(
            "{mark} {:<20} {:<20} {:<23} {:<10} {:>9} {:>9} {:>9}  {:<20} {}",
            s.snapshot_id,
            s.parent_id
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            chrono::DateTime::from_timestamp_millis(s.timestamp_ms)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                .unwrap_or_default(),
            s.operation,
            opt(s.added_records),
            opt(s.deleted_records),
            opt(s.total_records),
            by,
            s.watermark.as_deref().unwrap_or("-")
        );
    }
    println!(
        "\n{} snapshot(s); * current, x not in the current history (rolled back)",
        list.len()
    );
    Ok(EXIT_OK)
}

/// `lake rollback <table> --to <snapshot_id>`: a new snapshot restoring that one's state.
pub(super) async fn rollback(g: &GlobalArgs, name: &str, to: i64) -> CliResult {
    let (project, _) = load(g)?;
    let ident = table_ident(name).usage()?;
    let lakehouse = connect(&project).await?;
    let table = lakehouse.table(&ident).await.usage()?;
    let metadata = table.metadata();
    if metadata.snapshot_by_id(to).is_none() || metadata.current_snapshot_id() == Some(to) {
        // Unknown id or nothing to do: a usage error with the known ids.
        return maintenance::rollback(&lakehouse, &table, to)
            .await
            .map(|_| EXIT_OK)
            .usage();
    }
    let previous = metadata.current_snapshot_id();
    let outcome = maintenance::rollback(&lakehouse, &table, to)
        .await
        .environment()?;
    let fresh = lakehouse.table(&ident).await.environment()?;
    let watermark = summary::watermark(&fresh).map(|w| w.value);
    if g.log_format == LogFormat::Json {
        println!(
            "{}",
            serde_json::json!({
                "event": "rollback",
                "table": name,
                "to_snapshot": to,
                "previous_snapshot": previous,
                "snapshot_id": outcome.snapshot_id,
                "operation": outcome.operation,
                "files_added": outcome.files_added,
                "files_removed": outcome.files_removed,
                "rows_added": outcome.rows_added,
                "rows_removed": outcome.rows_removed,
                "watermark": watermark,
            })
        );
    } else {
        println!(
            "rolled back {name} to snapshot {to}: new snapshot {} ({}; +{} / -{} files, +{} / -{} rows){}",
            outcome.snapshot_id,
            outcome.operation,
            outcome.files_added,
            outcome.files_removed,
            outcome.rows_added,
            outcome.rows_removed,
            watermark
                .map(|w| format!("; watermark {w}"))
                .unwrap_or_default()
        );
    }
    Ok(EXIT_OK)
}
