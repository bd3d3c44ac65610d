//! Data tests: generic tests on models and sources, singular SQL tests, and which of them a
//! selection runs. A test counts the rows its query returns; any row is a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Result, anyhow};

use crate::engine::session::read_only_query;
use crate::project::model::{DataTest, Dependency, Model, Severity, SingularTest, SourceTable};

use super::results::{NodeResult, Status};
use crate::graph::Graph;
use super::{RunContext, compile, data_tests};

/// Run one generic data test on `layer.table`.
pub async fn run_generic_test(ctx: &RunContext, namespace: &str, table: &str, test: &DataTest) -> NodeResult {
    let started = Instant::now();
    let relation = format!("{namespace}.{table}");
    let mut result = NodeResult::new("test", &test.name, Some(relation.clone()), Status::Pass);
    let outcome: Result<u64> = async {
        let sql = data_tests::generic_test_sql(test, namespace, table, &|d| ctx.resolve_table(d))
            .map_err(|e| anyhow!(e))?;
        let mut tables = BTreeSet::from([relation.clone()]);
        if let crate::project::model::DataTestKind::Relationships { to, .. } = &test.kind {
            if let Some((n, t)) = ctx.resolve_table(to) {
                tables.insert(format!("{n}.{t}"));
            }
        }
        count_rows(ctx, &tables, &sql).await
    }
    .await;
    finish_test(ctx, &mut result, &format!("test {}", test.name), outcome, test.severity);
    result.duration_seconds = started.elapsed().as_secs_f64();
    result
}

/// Run a singular SQL test.
pub async fn run_singular_test(ctx: &RunContext, test: &SingularTest) -> NodeResult {
    let started = Instant::now();
    let mut result = NodeResult::new("test", &test.name, None, Status::Pass);
    let outcome: Result<u64> = async {
        let compiled = compile::compile_standalone(
            &ctx.graph,
            &test.path,
            &test.raw_sql,
            &test.depends_on,
            &ctx.project.template_vars(),
        )?;
        count_rows(ctx, &compiled.reads, &compiled.sql).await
    }
    .await;
    let context = test.path.display().to_string();
    finish_test(ctx, &mut result, &context, outcome, test.severity);
    if result.status == Status::Fail || result.status == Status::Warn {
        if let Some(m) = &mut result.message {
            *m = format!("{context}: {m}");
        }
    }
    result.duration_seconds = started.elapsed().as_secs_f64();
    result
}

fn finish_test(ctx: &RunContext, result: &mut NodeResult, context: &str, outcome: Result<u64>, severity: Severity) {
    match outcome {
        Ok(0) => result.failures = Some(0),
        Ok(n) => {
            result.failures = Some(n);
            result.status = match severity {
                Severity::Error => Status::Fail,
                Severity::Warn => Status::Warn,
            };
            result.message = Some(format!("{n} failing row{}", if n == 1 { "" } else { "s" }));
        }
        Err(e) => result.fail(context, &e, ctx.lakehouse.spec()),
    }
}

async fn count_rows(ctx: &RunContext, tables: &BTreeSet<String>, sql: &str) -> Result<u64> {
    let (session, _) = ctx.session_for(tables, &BTreeMap::new(), &Default::default()).await?;
    let counted = format!("SELECT COUNT(*) AS n FROM (\n{sql}\n) AS failures");
    let batches = read_only_query(&session, &counted)
        .await?
        .collect()
        .await
        .map_err(|e| anyhow!("SQL error: {e}"))?;
    let n = batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    Ok(n as u64)
}

/// Run the data tests of the selected models, then the singular tests that read them.
pub async fn run_tests(
    ctx: &RunContext,
    selected: &[usize],
    include_sources: bool,
) -> Vec<NodeResult> {
    let mut results = Vec::new();
    if include_sources {
        for s in &ctx.project.sources {
            for t in &s.tests {
                ctx.reporter.started("test", &t.name);
                let r = run_generic_test(ctx, &s.source, &s.table, t).await;
                ctx.reporter.finished(&r);
                results.push(r);
            }
        }
    }
    for &i in selected {
        let m = ctx.graph.model(i);
        for t in &m.tests {
            ctx.reporter.started("test", &t.name);
            let r = run_generic_test(ctx, &m.layer, &m.name, t).await;
            ctx.reporter.finished(&r);
            results.push(r);
        }
    }
    for t in singular_tests_for(ctx, selected, include_sources) {
        ctx.reporter.started("test", &t.name);
        let r = run_singular_test(ctx, t).await;
        ctx.reporter.finished(&r);
        results.push(r);
    }
    results
}

/// Which singular tests a selection of models takes in (dbt's `--indirect-selection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IndirectSelection {
    /// Those reading at least one selected model.
    #[default]
    Eager,
    /// Those whose every model is selected.
    Cautious,
    /// Those whose every model is selected or upstream of a selected one: built before the
    /// selection, so the test sees their current state.
    Buildable,
}

/// Whether the singular test `test` goes with the models `selected` (node indices) under
/// `mode`. A test reading no model goes with no selection.
pub fn singular_test_selected(graph: &Graph, test: &SingularTest, selected: &BTreeSet<usize>, mode: IndirectSelection) -> bool {
    let mut models = test.depends_on.iter().filter_map(|d| match d {
        Dependency::Model { name, .. } => graph.index_of(name),
        Dependency::Source { .. } => None,
    });
    match mode {
        IndirectSelection::Eager => models.any(|i| selected.contains(&i)),
        IndirectSelection::Cautious => {
            let models: Vec<usize> = models.collect();
            !models.is_empty() && models.iter().all(|i| selected.contains(i))
        }
        IndirectSelection::Buildable => {
            let models: Vec<usize> = models.collect();
            let upstream: BTreeSet<usize> = selected.iter().flat_map(|&i| graph.ancestors(i)).collect();
            !models.is_empty()
                && models.iter().any(|i| selected.contains(i))
                && models.iter().all(|i| selected.contains(i) || upstream.contains(i))
        }
    }
}

/// The singular tests that go with the selected models (all of them when `all`), by
/// `ctx.options.indirect_selection`.
pub fn singular_tests_for<'a>(ctx: &'a RunContext, selected: &[usize], all: bool) -> Vec<&'a SingularTest> {
    let selected: BTreeSet<usize> = selected.iter().copied().collect();
    let mode = ctx.options.indirect_selection;
    ctx.project
        .singular_tests
        .iter()
        .filter(|t| all || singular_test_selected(&ctx.graph, t, &selected, mode))
        .collect()
}

/// Number of data tests `lake build` runs for a selection: the tests of the sources it reads,
/// the selected models' tests and the singular tests that read them.
pub fn build_test_count(ctx: &RunContext, selected: &[usize], all: bool) -> usize {
    let model_tests: usize = selected.iter().map(|&i| ctx.graph.model(i).tests.len()).sum();
    let source_tests: usize = sources_read(ctx, selected, all).iter().map(|s| s.tests.len()).sum();
    source_tests + model_tests + singular_tests_for(ctx, selected, all).len()
}

/// The sources the selected models read (every source when `all`).
fn sources_read<'a>(ctx: &'a RunContext, selected: &[usize], all: bool) -> Vec<&'a SourceTable> {
    ctx.project
        .sources
        .iter()
        .filter(|s| all || selected.iter().any(|&i| reads_source(ctx.graph.model(i), s)))
        .collect()
}

fn reads_source(model: &Model, s: &SourceTable) -> bool {
    model
        .depends_on
        .iter()
        .any(|d| matches!(d, Dependency::Source { source, table, .. } if *source == s.source && *table == s.table))
}

/// `lake build`'s source tests, before any model runs (as dbt's `build`): the tests of every
/// source the selection reads. A failing test (severity error) blocks the selected models that
/// read that source and everything downstream of them: they are returned, each with the reason.
pub async fn run_source_tests_before(
    ctx: &RunContext,
    selected: &[usize],
    all: bool,
) -> (Vec<NodeResult>, BTreeMap<usize, String>) {
    let mut results = Vec::new();
    let mut blocked = BTreeMap::new();
    for s in sources_read(ctx, selected, all) {
        for t in &s.tests {
            ctx.reporter.started("test", &t.name);
            let r = run_generic_test(ctx, &s.source, &s.table, t).await;
            ctx.reporter.finished(&r);
            if r.status == Status::Fail || r.status == Status::Error {
                let reason = format!("test {} on source {} did not pass", t.name, s.table_name());
                for &i in selected.iter().filter(|&&i| reads_source(ctx.graph.model(i), s)) {
                    for j in std::iter::once(i).chain(ctx.graph.descendants(i)) {
                        blocked.entry(j).or_insert_with(|| reason.clone());
                    }
                }
            }
            results.push(r);
        }
    }
    (results, blocked)
}

/// `lake build`'s singular tests, after the models: a test reading a model that did not
/// build (per `model_results`) is skipped, the others run.
pub async fn run_singular_tests_after(
    ctx: &RunContext,
    selected: &[usize],
    all: bool,
    model_results: &[NodeResult],
) -> Vec<NodeResult> {
    let failed: BTreeSet<&str> = model_results
        .iter()
        .filter(|r| r.kind == "model" && !r.status.is_ok())
        .map(|r| r.name.as_str())
        .collect();
    let mut results = Vec::new();
    for t in singular_tests_for(ctx, selected, all) {
        let blocked = t
            .depends_on
            .iter()
            .any(|d| matches!(d, Dependency::Model { name, .. } if failed.contains(name.as_str())));
        let r = if blocked {
            NodeResult::new("test", &t.name, None, Status::Skipped).with_message("a model it reads failed")
        } else {
            ctx.reporter.started("test", &t.name);
            run_singular_test(ctx, t).await
        };
        ctx.reporter.finished(&r);
        results.push(r);
    }
    results
}

/// Number of data tests that would run for a selection.
pub fn test_count(ctx: &RunContext, selected: &[usize], include_sources: bool) -> usize {
    let model_tests: usize = selected.iter().map(|&i| ctx.graph.model(i).tests.len()).sum();
    let source_tests: usize = if include_sources {
        ctx.project.sources.iter().map(|s| s.tests.len()).sum()
    } else {
        0
    };
    model_tests + source_tests + singular_tests_for(ctx, selected, include_sources).len()
}
