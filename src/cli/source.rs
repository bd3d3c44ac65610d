//! `lake source freshness`: each source table's last load against its `freshness:` block,
//! printed per table, written to `target/sources.json` (dbt's shape); exit 1 when one is
//! stale past `error_after`, 3 when the catalog cannot be read.

use super::project_cmds::{connect, load};
use super::{CliResult, ExitCodeExt, GlobalArgs};
use crate::run::freshness;
use crate::run::report::Reporter;
use crate::run::results::{NodeResult, exit_code};

pub(super) async fn freshness(g: &GlobalArgs, select: &[String]) -> CliResult {
    let (project, _) = load(g)?;
    let matches = |s: &crate::project::model::SourceTable| {
        select.is_empty()
            || select.iter().any(|sel| {
                let sel = sel.strip_prefix("source:").unwrap_or(sel);
                sel == s.source || sel == s.table_name()
            })
    };
    let chosen: Vec<_> = project.sources.iter().filter(|s| matches(s)).collect();
    if !select.is_empty() && chosen.is_empty() {
        let known: Vec<String> = project.sources.iter().map(|s| s.table_name()).collect();
        return Err(anyhow::anyhow!("--select {} matches no source (sources: {})", select.join(" "), known.join(", "))).usage();
    }
    let checked: Vec<_> = chosen.into_iter().filter(|s| s.freshness.is_some()).collect();
    let mut reporter = Reporter::new(g.log_format);
    if checked.is_empty() {
        reporter.info("no selected source declares freshness (a `freshness:` block with warn_after or error_after)");
        return Ok(0);
    }
    let lakehouse = connect(&project).await?;
    let started = chrono::Utc::now();
    reporter.begin("freshness", checked.len());
    let results = freshness::check(&lakehouse, &checked, started).await.environment()?;
    let nodes: Vec<NodeResult> = results.iter().map(|r| r.node.clone()).collect();
    for n in &nodes {
        reporter.finished(n);
    }
    reporter.summary(&nodes, (chrono::Utc::now() - started).num_milliseconds() as f64 / 1000.0);
    let doc = serde_json::json!({
        "metadata": {"generated_at": chrono::Utc::now().to_rfc3339(), "lake_version": env!("CARGO_PKG_VERSION")},
        "elapsed_time": (chrono::Utc::now() - started).num_milliseconds() as f64 / 1000.0,
        "results": results.iter().map(|r| r.json(&project.config.name, started)).collect::<Vec<_>>(),
    });
    let dir = project.config.artifact_dir();
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join("sources.json"), serde_json::to_vec_pretty(&doc).expect("json")))
        .map_err(anyhow::Error::from)
        .environment()?;
    Ok(exit_code(&nodes))
}
