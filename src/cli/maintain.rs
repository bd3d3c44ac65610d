//! `lake maintain`, `lake snapshots <table>` and `lake rollback <table> --to <id>`.

use std::collections::{HashMap, HashSet};

use super::project_cmds::{connect, existing_table, load, selection};
use super::{CliResult, EXIT_FAILED, EXIT_OK, ExitCodeExt, GlobalArgs, LogFormat, SelectArgs};
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::lakehouse::maintenance::{
    self, MaintainOptions, MaintainOutcome, MaintenancePolicy, format_duration,
};
use crate::lakehouse::summary;
use crate::project::model::Materialized;

/// `lake maintain [--select ..] [--dry-run]`: compact, expire snapshots and remove orphan files
/// of each selected model's table.
pub(super) async fn maintain(g: &GlobalArgs, args: &SelectArgs, dry_run: bool) -> CliResult {
    let (project, graph) = load(g)?;
    let selected = selection(&graph, args)?;
    let lakehouse = connect(&project).await?;
    let protected = crate::run::maintain::protected_snapshots(&lakehouse, &graph).await.environment()?;
    let job = Job {
        lakehouse: &lakehouse,
        project: &project,
        protected,
        now: chrono::Utc::now(),
        dry_run,
        json: g.log_format == LogFormat::Json,
    };
    let (mut failed, mut done) = (0usize, 0usize);
    let mut environment_failed = false;
    for i in selected {
        let m = graph.model(i);
        if m.config.materialized == Materialized::Ephemeral {
            continue;
        }
        match job.maintain(m).await? {
            Outcome::Done => done += 1,
            Outcome::Skipped => {}
            Outcome::Failed { environment } => {
                failed += 1;
                if environment {
                    // The catalog or storage failed: the other tables would fail alike.
                    environment_failed = true;
                    break;
                }
            }
        }
    }
    if job.json {
        println!(
            "{}",
            serde_json::json!({"event": "maintain_summary", "tables": done, "failed": failed, "dry_run": dry_run})
        );
    } else {
        let verb = if dry_run { "Planned maintenance of" } else { "Maintained" };
        let failures = if failed > 0 { format!(", {failed} failed") } else { String::new() };
        println!("\n{verb} {done} table(s){failures}");
    }
    Ok(if environment_failed {
        super::EXIT_ENVIRONMENT
    } else if failed > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

/// One `lake maintain` invocation's settings.
struct Job<'a> {
    lakehouse: &'a Lakehouse,
    project: &'a crate::project::Project,
    protected: HashMap<String, HashSet<i64>>,
    now: chrono::DateTime<chrono::Utc>,
    dry_run: bool,
    json: bool,
}

enum Outcome {
    Done,
    Skipped,
    Failed { environment: bool },
}

impl Job<'_> {
    /// Maintain one model's table and report it (a line, or a JSON event).
    async fn maintain(&self, m: &crate::project::model::Model) -> CliResult<Outcome> {
        let relation = m.table_name();
        let ident = table_ident(&relation).usage()?;
        let mut event = serde_json::json!({
            "event": "maintain",
            "model": m.name,
            "relation": relation,
            "dry_run": self.dry_run,
        });
        let Some(table) = self.lakehouse.load_table(&ident).await.environment()? else {
            return Ok(self.skip(&mut event, &relation, "not built"));
        };
        let policy = match MaintenancePolicy::resolve(m.config.maintenance.as_ref(), Some(&table)) {
            Ok(p) => p,
            Err(e) => {
                let message = format!("{}: {e:#}", m.path.display());
                return Ok(self.fail(&mut event, &relation, message, false));
            }
        };
        event["policy"] = serde_json::to_value(&policy).unwrap_or_default();
        if !policy.enabled {
            return Ok(self.skip(&mut event, &relation, "maintenance disabled (maintenance: {enabled: false})"));
        }
        let options = MaintainOptions {
            dry_run: self.dry_run,
            now: self.now,
            protected: self.protected.get(&relation).cloned().unwrap_or_default(),
        };
        let write = &self.project.config.write;
        match maintenance::maintain_table_with(self.lakehouse, &ident, &policy, write, &options).await {
            Ok(outcome) => {
                event["status"] = "success".into();
                if let serde_json::Value::Object(map) = serde_json::to_value(&outcome).unwrap_or_default() {
                    for (k, v) in map.into_iter().filter(|(k, _)| k != "table") {
                        event[k] = v;
                    }
                }
                report(self.json, &event, &describe(&relation, &outcome, &policy));
                Ok(Outcome::Done)
            }
            Err(e) => {
                let fault = crate::lakehouse::fault::classify(&e);
                let environment = fault.is_some();
                let message = match fault {
                    Some(fault) => fault.line(self.lakehouse.spec()),
                    None => format!("{e:#}"),
                };
                Ok(self.fail(&mut event, &relation, message, environment))
            }
        }
    }

    fn skip(&self, event: &mut serde_json::Value, relation: &str, why: &str) -> Outcome {
        event["status"] = "skipped".into();
        event["message"] = why.into();
        report(self.json, event, &format!("{relation:<36} skipped: {why}"));
        Outcome::Skipped
    }

    fn fail(&self, event: &mut serde_json::Value, relation: &str, message: String, environment: bool) -> Outcome {
        let message = crate::project::secrets::scrub(&message);
        event["status"] = "error".into();
        event["message"] = message.clone().into();
        report(self.json, event, &format!("{relation:<36} error: {message}"));
        Outcome::Failed { environment }
    }
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
            Some(id) if c.rewritten > 0 || c.deletes_removed > 0 => parts.push(format!(
                "compacted {} → {} data files ({} rewritten, {} delete file(s) folded in, manifests {} → {}; snapshot {id})",
                c.files_before, c.files_after, c.rewritten, c.deletes_removed, c.manifests_before, c.manifests_after
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

/// `lake snapshots <table>`: every snapshot, oldest first.
pub(super) async fn snapshots(g: &GlobalArgs, name: &str) -> CliResult {
    let (project, _) = load(g)?;
    let lakehouse = connect(&project).await?;
    let table = existing_table(&lakehouse, name).await?;
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
    let table = existing_table(&lakehouse, name).await?;
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
