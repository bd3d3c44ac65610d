//! `lake seed`, `lake run`, `lake test` and `lake build`.

use std::sync::Arc;
use std::time::Instant;

use super::project_cmds::{connect, load, selection};
use super::{CliResult, ExecArgs, ExitCodeExt, GlobalArgs, SelectArgs};
use crate::engine::rust_model::Registry;
use crate::run::report::Reporter;
use crate::run::results::{NodeResult, Status, write_manifest, write_run_results};
use crate::run::openlineage::Emitter;
use crate::run::{self, IndirectSelection, RunContext, RunOptions, seeds};

pub(super) async fn seed(g: &GlobalArgs, names: &[String], full_refresh: bool) -> CliResult {
    let (project, graph) = load(g)?;
    let lakehouse = connect(&project).await?;
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let run_id = uuid::Uuid::now_v7().to_string();
    let emitter = openlineage(&project, &graph, &lakehouse, "seed", &run_id);
    let mut reporter = Reporter::new(g.log_format).with_lineage(emitter.as_ref().map(Emitter::hook));
    let results = load_seeds(&project, &lakehouse, &mut reporter, names, &run_id, full_refresh).await;
    let results = match results {
        Ok(r) => r,
        Err(e) => return flushed(emitter, Err(e)).await,
    };
    let elapsed = clock.elapsed().as_secs_f64();
    reporter.summary(&results, elapsed);
    flushed(emitter, finish(&project, &graph, &run_id, "seed", started, elapsed, &results, &Default::default())).await
}

/// The command's OpenLineage emitter, when `[openlineage]` is configured.
fn openlineage(
    project: &crate::project::Project,
    graph: &crate::graph::Graph,
    lakehouse: &crate::lakehouse::catalog::Lakehouse,
    command: &str,
    run_id: &str,
) -> Option<Emitter> {
    let config = project.config.openlineage.as_ref()?;
    Some(Emitter::start(config, lakehouse.clone(), Some((project.clone(), graph.clone())), Some((command, run_id))))
}

/// `result`, once the emitter sent what is queued (a bounded wait; never changes the result).
async fn flushed(emitter: Option<Emitter>, result: CliResult) -> CliResult {
    if let Some(emitter) = emitter {
        let code = match &result {
            Ok(code) => *code,
            Err(e) => e.code,
        };
        emitter.finish(code).await;
    }
    result
}

async fn load_seeds(
    project: &crate::project::Project,
    lakehouse: &crate::lakehouse::catalog::Lakehouse,
    reporter: &mut Reporter,
    names: &[String],
    run_id: &str,
    full_refresh: bool,
) -> CliResult<Vec<NodeResult>> {
    for n in names {
        if !project.seeds.iter().any(|s| &s.name == n) {
            let known: Vec<&str> = project.seeds.iter().map(|s| s.name.as_str()).collect();
            return Err(anyhow::anyhow!("no seed named '{n}' (seeds: {})", known.join(", "))).usage();
        }
    }
    let seeds: Vec<_> = project
        .seeds
        .iter()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .collect();
    reporter.begin("seed", seeds.len());
    let mut results = Vec::new();
    for s in seeds {
        reporter.started("seed", &s.name);
        let r = seeds::load_seed(lakehouse, &project.config.root, s, run_id, full_refresh, &project.config.write).await;
        reporter.finished(&r);
        results.push(r);
    }
    Ok(results)
}

/// `lake run` (`tests = None`) and `lake build` (seeds, then models each followed by their
/// tests, singular ones chosen by `tests`).
pub(super) async fn run(
    g: &GlobalArgs,
    select: &SelectArgs,
    exec: &ExecArgs,
    registry: Registry,
    tests: Option<IndirectSelection>,
) -> CliResult {
    let build = tests.is_some();
    let (project, graph) = load(g)?;
    let selected = selection(&graph, select)?;
    if exec.threads == Some(0) {
        return Err(anyhow::anyhow!("--threads must be at least 1")).usage();
    }
    let lakehouse = connect(&project).await?;
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let mut results = Vec::new();
    let run_id = uuid::Uuid::now_v7().to_string();
    let emitter = openlineage(&project, &graph, &lakehouse, if build { "build" } else { "run" }, &run_id);
    let mut reporter = Reporter::new(g.log_format).with_lineage(emitter.as_ref().map(Emitter::hook));
    if build {
        match load_seeds(&project, &lakehouse, &mut reporter, &[], &run_id, exec.full_refresh).await {
            Ok(r) => results.extend(r),
            Err(e) => return flushed(emitter, Err(e)).await,
        }
        // The catalog or storage failed: every model would fail the same way.
        if crate::run::results::exit_code(&results) == super::EXIT_ENVIRONMENT {
            let elapsed = clock.elapsed().as_secs_f64();
            reporter.summary(&results, elapsed);
            return flushed(emitter, finish(&project, &graph, &run_id, "build", started, elapsed, &results, &Default::default())).await;
        }
    }
    let options = RunOptions {
        full_refresh: exec.full_refresh,
        threads: exec.threads.unwrap_or(project.config.threads),
        fail_fast: exec.fail_fast,
        with_tests: build,
        maintain: exec.maintain,
        force: exec.force,
        indirect_selection: tests.unwrap_or_default(),
    };
    let runnable = selected
        .iter()
        .filter(|&&i| graph.model(i).config.materialized != crate::project::model::Materialized::Ephemeral)
        .count();
    let mut ctx = RunContext::new(project.clone(), graph.clone(), lakehouse, registry, Reporter::new(g.log_format), options);
    let all = select.select.is_empty() && select.exclude.is_empty();
    let tests = if build { run::build_test_count(&ctx, &selected, all) } else { 0 };
    reporter.begin(if build { "build" } else { "run" }, runnable + tests);
    ctx.reporter = reporter;
    ctx.run_id = run_id.clone();
    if let Err(e) = ctx.pin_inputs(&selected).await.environment() {
        return flushed(emitter, Err(e)).await;
    }
    let mut selected = selected;
    if build {
        // Source tests first: a failing one blocks the models that read the source.
        let (tested, blocked) = run::run_source_tests_before(&ctx, &selected, all).await;
        results.extend(tested);
        for (&i, reason) in &blocked {
            if selected.contains(&i) {
                let m = graph.model(i);
                let r = NodeResult::new("model", &m.name, Some(format!("{}.{}", m.layer, m.name)), Status::Skipped)
                    .with_message(reason.clone());
                ctx.reporter.finished(&r);
                results.push(r);
            }
        }
        selected.retain(|i| !blocked.contains_key(i));
    }
    let ctx = Arc::new(ctx);
    results.extend(run::run_models(ctx.clone(), &selected).await);
    if build {
        // Singular tests run once the models they read are built.
        let singular = run::run_singular_tests_after(&ctx, &selected, all, &results).await;
        results.extend(singular);
    }
    let elapsed = clock.elapsed().as_secs_f64();
    let read = ctx.pins.snapshot_ids();
    let mut ctx = Arc::try_unwrap(ctx).map_err(|_| anyhow::anyhow!("run still in use")).environment()?;
    ctx.reporter.summary(&results, elapsed);
    let result = finish(&project, &graph, &run_id, if build { "build" } else { "run" }, started, elapsed, &results, &read);
    flushed(emitter, result).await
}

pub(super) async fn test(g: &GlobalArgs, select: &SelectArgs, registry: Registry, indirect_selection: IndirectSelection) -> CliResult {
    let (project, graph) = load(g)?;
    let selected = selection(&graph, select)?;
    let lakehouse = connect(&project).await?;
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let mut reporter = Reporter::new(g.log_format);
    let all = select.select.is_empty() && select.exclude.is_empty();
    let mut ctx = RunContext::new(project.clone(), graph.clone(), lakehouse, registry, Reporter::new(g.log_format), RunOptions { indirect_selection, ..RunOptions::default() });
    reporter.begin("test", run::test_count(&ctx, &selected, all));
    ctx.reporter = reporter;
    ctx.pin_inputs(&selected).await.environment()?;
    let results = run::run_tests(&ctx, &selected, all).await;
    let elapsed = clock.elapsed().as_secs_f64();
    let run_id = ctx.run_id.clone();
    let read = ctx.pins.snapshot_ids();
    ctx.reporter.summary(&results, elapsed);
    finish(&project, &graph, &run_id, "test", started, elapsed, &results, &read)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    project: &crate::project::Project,
    graph: &crate::graph::Graph,
    run_id: &str,
    command: &str,
    started: chrono::DateTime<chrono::Utc>,
    elapsed: f64,
    results: &[NodeResult],
    read: &std::collections::BTreeMap<String, Option<i64>>,
) -> CliResult {
    let dir = project.config.artifact_dir();
    write_manifest(&dir, project, graph).environment()?;
    write_run_results(&dir, run_id, command, started, elapsed, results, read).environment()?;
    Ok(crate::run::results::exit_code(results))
}
