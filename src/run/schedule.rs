//! The scheduler: selected models in dependency order, independent ones in parallel up to
//! `--threads`, each followed by its data tests when building; a failure skips descendants,
//! and `--fail-fast` or a catalog/storage fault stops the run.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::project::model::{DataTest, Dependency, Materialized};

use super::RunContext;
use super::results::{ErrorKind, NodeResult, Status};

/// Run the selected models (and, with `with_tests`, their tests) in dependency order, in parallel.
pub async fn run_models(ctx: Arc<RunContext>, selected: &[usize]) -> Vec<NodeResult> {
    let selected_set: BTreeSet<usize> = selected.iter().copied().collect();
    let mut waiting: HashMap<usize, usize> = selected
        .iter()
        .map(|&i| {
            let n = ctx
                .graph
                .parents(i)
                .into_iter()
                .filter(|p| selected_set.contains(p))
                .count();
            (i, n)
        })
        .collect();
    // Position in run order; `ready` is kept sorted so that pop() yields the earliest node.
    let position: HashMap<usize, usize> = selected.iter().enumerate().map(|(k, &v)| (v, k)).collect();
    let mut ready: Vec<usize> = selected.iter().copied().filter(|i| waiting[i] == 0).collect();
    ready.reverse();
    let mut skipped: BTreeSet<usize> = BTreeSet::new();
    let mut results: Vec<NodeResult> = Vec::new();
    let mut running: JoinSet<(usize, Vec<NodeResult>, bool)> = JoinSet::new();
    // Tests that read another selected model (relationships) run once that model is built
    // too: model -> the other selected models its tests read.
    let test_deps: HashMap<usize, BTreeSet<usize>> = if ctx.options.with_tests {
        selected
            .iter()
            .map(|&i| (i, relationship_targets(&ctx, i).into_iter().filter(|t| *t != i && selected_set.contains(t)).collect()))
            .collect()
    } else {
        HashMap::new()
    };
    let mut built: BTreeSet<usize> = BTreeSet::new();
    let mut pending_tests: Vec<usize> = Vec::new();
    let threads = ctx.options.threads.max(1);
    let mut stop = false;

    loop {
        while !stop && running.len() < threads {
            let Some(i) = ready.pop() else { break };
            if skipped.contains(&i) {
                continue;
            }
            let ctx = ctx.clone();
            let deferred = test_deps.get(&i).cloned().unwrap_or_default();
            running.spawn(async move {
                let (node_results, ok) = execute_node(&ctx, i, &deferred).await;
                (i, node_results, ok)
            });
        }
        let Some(joined) = running.join_next().await else { break };
        let (i, node_results, ok) = match joined {
            Ok(v) => v,
            Err(e) => {
                // A panic inside a task: report it against no node, stop scheduling.
                results.push(
                    NodeResult::new("model", "<internal>", None, Status::Error)
                        .with_message(format!("internal error: {e}")),
                );
                stop = true;
                continue;
            }
        };
        // The catalog or storage failing will fail every later model too: stop scheduling.
        if node_results.iter().any(|r| r.error_kind == Some(ErrorKind::Environment)) {
            stop = true;
        }
        results.extend(node_results);
        if ok {
            built.insert(i);
            if test_deps.get(&i).is_some_and(|d| !d.is_empty()) {
                pending_tests.push(i);
            }
            // Deferred tests whose models are all built now.
            let (now, later): (Vec<usize>, Vec<usize>) =
                pending_tests.drain(..).partition(|m| test_deps[m].iter().all(|d| built.contains(d)));
            pending_tests = later;
            for m in now {
                results.extend(run_model_tests(&ctx, m, TestSet::Deferred(&test_deps[&m])).await.0);
            }
            for c in ctx.graph.children(i) {
                if let Some(n) = waiting.get_mut(&c) {
                    *n -= 1;
                    if *n == 0 && !skipped.contains(&c) {
                        ready.push(c);
                        ready.sort_by_key(|x| std::cmp::Reverse(position[x]));
                    }
                }
            }
        } else {
            skip_descendants(&ctx, i, &selected_set, &mut skipped, &mut results);
            if ctx.options.fail_fast {
                stop = true;
            }
        }
    }
    skip_waiting_tests(&ctx, &pending_tests, &test_deps, &mut results);
    if stop {
        skip_not_run(&ctx, selected, &mut results);
    }
    results
}

/// A model failed: its selected descendants are skipped.
fn skip_descendants(
    ctx: &RunContext,
    i: usize,
    selected: &BTreeSet<usize>,
    skipped: &mut BTreeSet<usize>,
    results: &mut Vec<NodeResult>,
) {
    let cause = &ctx.graph.model(i).name;
    for d in ctx.graph.descendants(i) {
        if selected.contains(&d) && skipped.insert(d) {
            let m = ctx.graph.model(d);
            if m.config.materialized == Materialized::Ephemeral {
                continue;
            }
            let r = NodeResult::new("model", &m.name, Some(m.table_name()), Status::Skipped)
                .with_message(format!("upstream model {cause} failed"));
            ctx.reporter.finished(&r);
            results.push(r);
        }
    }
}

/// Tests left waiting for a model that failed or was skipped.
fn skip_waiting_tests(
    ctx: &RunContext,
    pending: &[usize],
    test_deps: &HashMap<usize, BTreeSet<usize>>,
    results: &mut Vec<NodeResult>,
) {
    for &m in pending {
        let model = ctx.graph.model(m);
        for t in model.tests.iter().filter(|t| is_deferred(ctx, t, &test_deps[&m])) {
            let r = NodeResult::new("test", &t.name, None, Status::Skipped)
                .with_message(format!("a model this test of {} reads was not built", model.name));
            ctx.reporter.finished(&r);
            results.push(r);
        }
    }
}

/// `--fail-fast` or a catalog/storage fault stopped the run: every model not run is skipped.
fn skip_not_run(ctx: &RunContext, selected: &[usize], results: &mut Vec<NodeResult>) {
    let done: BTreeSet<String> = results.iter().map(|r| r.unique_id.clone()).collect();
    for &i in selected {
        let m = ctx.graph.model(i);
        if m.config.materialized == Materialized::Ephemeral || done.contains(&format!("model.{}", m.name)) {
            continue;
        }
        let r = NodeResult::new("model", &m.name, Some(m.table_name()), Status::Skipped)
            .with_message("not run: the run stopped after a failure (--fail-fast, or the catalog or storage failed)");
        ctx.reporter.finished(&r);
        results.push(r);
    }
}

/// Run one model (and its tests when building). Returns its results and whether descendants may run.
/// Tests reading a model in `deferred` are left for later (see [`run_models`]).
async fn execute_node(ctx: &RunContext, i: usize, deferred: &BTreeSet<usize>) -> (Vec<NodeResult>, bool) {
    let model = ctx.graph.model(i);
    if model.config.materialized == Materialized::Ephemeral {
        return (Vec::new(), true);
    }
    ctx.reporter.started("model", &model.name);
    let mut result = super::model::execute_model(ctx, model).await;
    if ctx.options.maintain && result.status == Status::Success {
        if let Err(e) = super::maintain::maintain_model_table(ctx, model).await {
            let context = format!("model {}: maintenance failed", model.table_name());
            result.fail(&context, &e, ctx.lakehouse.spec());
        }
    }
    ctx.reporter.finished(&result);
    let ok = result.status.is_ok();
    let mut out = vec![result];
    if ok && ctx.options.with_tests {
        let (tests, tests_ok) = run_model_tests(ctx, i, TestSet::Immediate(deferred)).await;
        out.extend(tests);
        return (out, tests_ok);
    }
    (out, ok)
}

/// Models (by index) that a model's relationships tests read.
fn relationship_targets(ctx: &RunContext, i: usize) -> BTreeSet<usize> {
    ctx.graph
        .model(i)
        .tests
        .iter()
        .filter_map(|t| match &t.kind {
            crate::project::model::DataTestKind::Relationships { to: Dependency::Model { name, .. }, .. } => {
                ctx.graph.index_of(name)
            }
            _ => None,
        })
        .collect()
}

/// Whether a test reads one of `deferred` (so it runs after those models are built).
fn is_deferred(ctx: &RunContext, test: &DataTest, deferred: &BTreeSet<usize>) -> bool {
    match &test.kind {
        crate::project::model::DataTestKind::Relationships { to: Dependency::Model { name, .. }, .. } => {
            ctx.graph.index_of(name).is_some_and(|t| deferred.contains(&t))
        }
        _ => false,
    }
}

/// Which of a model's tests to run.
enum TestSet<'a> {
    /// Right after the model: all but those reading these (other selected) models.
    Immediate(&'a BTreeSet<usize>),
    /// Later: only those reading these models.
    Deferred(&'a BTreeSet<usize>),
}

/// Runs a model's tests; returns their results and whether none failed.
async fn run_model_tests(ctx: &RunContext, i: usize, set: TestSet<'_>) -> (Vec<NodeResult>, bool) {
    let model = ctx.graph.model(i);
    let mut out = Vec::new();
    let mut ok = true;
    for t in &model.tests {
        let run = match &set {
            TestSet::Immediate(deferred) => !is_deferred(ctx, t, deferred),
            TestSet::Deferred(targets) => is_deferred(ctx, t, targets),
        };
        if !run {
            continue;
        }
        ctx.reporter.started("test", &t.name);
        let r = super::testing::run_generic_test(ctx, &model.layer, &model.name, t).await;
        ctx.reporter.finished(&r);
        if r.status.is_failure() {
            ok = false;
        }
        out.push(r);
    }
    (out, ok)
}
