//! Executing a selection: the parallel scheduler over the DAG, per-model execution
//! (compile → DataFusion or Rust → materialize), data tests, seeds and artifacts.

pub mod compile;
pub mod data_tests;
pub mod maintain;
pub mod report;
pub mod results;
pub mod seeds;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinSet;

use crate::engine::rust_model::{
    Registry, RustModelCall, SideOutputBatches, SideOutputMode, run_rust_model,
};
use crate::engine::session::{SnapshotPins, new_session, read_only_query, register, register_batches};
use crate::materialize::watermark::Watermark;
use crate::graph::Graph;
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::lakehouse::reader::{ChangesSince, changes_since, read_files};
use crate::lakehouse::summary;
use crate::materialize::{self, SchemaChangePolicy, Strategy};
use crate::project::Project;
use crate::project::model::{
    DataTest, Dependency, IncrementalStrategy, Materialized, Model, ModelBody, OnSchemaChange,
    Severity, SingularTest, WatermarkSpec,
};
use report::Reporter;
use results::{ErrorKind, NodeResult, Status};

/// What to do with the selected nodes.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub full_refresh: bool,
    pub threads: usize,
    pub fail_fast: bool,
    /// Run each model's data tests right after it (`lake build`).
    pub with_tests: bool,
    /// Maintain each model's table (compact, expire, remove orphans) after it is built.
    pub maintain: bool,
}

/// Everything the tasks of one run share.
pub struct RunContext {
    pub project: Project,
    pub graph: Graph,
    pub lakehouse: Lakehouse,
    pub registry: Registry,
    pub pins: SnapshotPins,
    pub run_id: String,
    pub reporter: Reporter,
    pub options: RunOptions,
}

impl RunContext {
    pub fn new(
        project: Project,
        graph: Graph,
        lakehouse: Lakehouse,
        registry: Registry,
        reporter: Reporter,
        options: RunOptions,
    ) -> Self {
        RunContext {
            project,
            graph,
            lakehouse,
            registry,
            pins: SnapshotPins::default(),
            run_id: uuid::Uuid::now_v7().to_string(),
            reporter,
            options,
        }
    }

    /// Pin every existing table the selection may read, at its current snapshot: one run sees one
    /// consistent lakehouse.
    pub async fn pin_inputs(&self, selected: &[usize]) -> Result<()> {
        let mut names = BTreeSet::new();
        for &i in selected {
            let m = self.graph.model(i);
            names.insert(m.table_name());
            for d in &m.depends_on {
                match d {
                    Dependency::Source { source, table, .. } => {
                        names.insert(format!("{source}.{table}"));
                    }
                    Dependency::Model { name, .. } => {
                        if let Some(p) = self.graph.index_of(name) {
                            names.insert(self.graph.model(p).table_name());
                        }
                    }
                }
            }
            for t in &m.tests {
                if let crate::project::model::DataTestKind::Relationships { to, .. } = &t.kind {
                    if let Some((ns, tb)) = self.resolve_table(to) {
                        names.insert(format!("{ns}.{tb}"));
                    }
                }
            }
        }
        for name in names {
            let ident = table_ident(&name)?;
            if let Some(table) = self.lakehouse.load_table(&ident).await? {
                self.pins.pin(&name, table);
            }
        }
        Ok(())
    }

    /// `(namespace, table)` a dependency is stored in (ephemeral models have none).
    pub fn resolve_table(&self, dep: &Dependency) -> Option<(String, String)> {
        match dep {
            Dependency::Model { name, .. } => {
                let m = self.graph.model(self.graph.index_of(name)?);
                (m.config.materialized != Materialized::Ephemeral)
                    .then(|| (m.layer.clone(), m.name.clone()))
            }
            Dependency::Source { source, table, .. } => Some((source.clone(), table.clone())),
        }
    }

    /// A session with `tables` registered at their pinned snapshots (loading any not pinned yet).
    /// Tables in `only` are registered with just the listed data files of their pinned snapshot.
    async fn session_for(
        &self,
        tables: &BTreeSet<String>,
        only: &BTreeMap<String, HashSet<String>>,
    ) -> Result<(datafusion::prelude::SessionContext, BTreeMap<String, Option<i64>>)> {
        let ctx = new_session();
        let mut read = BTreeMap::new();
        for name in tables {
            let pinned = match self.pins.get(name) {
                Some(p) => p,
                None => {
                    let table = self
                        .lakehouse
                        .load_table(&table_ident(name)?)
                        .await?
                        .ok_or_else(|| missing_table_error(&self.graph, name))?;
                    self.pins.pin(name, table);
                    self.pins.get(name).expect("just pinned")
                }
            };
            match (only.get(name), pinned.snapshot_id) {
                (Some(files), Some(snapshot)) => {
                    let batches: Vec<RecordBatch> =
                        read_files(&pinned.table, snapshot, files.clone()).await?.try_collect().await?;
                    register_batches(&ctx, name, &pinned, batches).await?;
                }
                _ => register(&ctx, name, &pinned).await?,
            }
            read.insert(name.clone(), pinned.snapshot_id);
        }
        Ok((ctx, read))
    }
}

fn missing_table_error(graph: &Graph, name: &str) -> anyhow::Error {
    let (ns, table) = name.split_once('.').unwrap_or(("", name));
    match graph.index_of(table).filter(|&i| graph.model(i).layer == ns) {
        Some(_) => anyhow!(
            "table {name} has not been built yet; build it first (e.g. `lake run --select +{table}`)"
        ),
        None => anyhow!(
            "table {name} does not exist in the catalog; load it first (`lake seed`, or `lake ingest`)"
        ),
    }
}

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
            let cause = ctx.graph.model(i).name.clone();
            for d in ctx.graph.descendants(i) {
                if selected_set.contains(&d) && skipped.insert(d) {
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
            if ctx.options.fail_fast {
                stop = true;
            }
        }
    }
    // Tests left waiting for a model that failed or was skipped.
    for m in pending_tests {
        let model = ctx.graph.model(m);
        for t in model.tests.iter().filter(|t| is_deferred(&ctx, t, &test_deps[&m])) {
            let r = NodeResult::new("test", &t.name, None, Status::Skipped)
                .with_message(format!("a model this test of {} reads was not built", model.name));
            ctx.reporter.finished(&r);
            results.push(r);
        }
    }
    if stop {
        // --fail-fast or a catalog/storage fault: everything not run is skipped.
        let done: BTreeSet<String> = results.iter().map(|r| r.unique_id.clone()).collect();
        for &i in selected {
            let m = ctx.graph.model(i);
            if m.config.materialized == Materialized::Ephemeral {
                continue;
            }
            if !done.contains(&format!("model.{}", m.name)) {
                let r = NodeResult::new("model", &m.name, Some(m.table_name()), Status::Skipped)
                    .with_message("not run: the run stopped after a failure (--fail-fast, or the catalog or storage failed)");
                ctx.reporter.finished(&r);
                results.push(r);
            }
        }
    }
    results
}

/// Run one model (and its tests when building). Returns its results and whether descendants may run.
/// Tests reading a model in `deferred` are left for later (see [`run_models`]).
async fn execute_node(ctx: &RunContext, i: usize, deferred: &BTreeSet<usize>) -> (Vec<NodeResult>, bool) {
    let model = ctx.graph.model(i);
    if model.config.materialized == Materialized::Ephemeral {
        return (Vec::new(), true);
    }
    ctx.reporter.started("model", &model.name);
    let mut result = execute_model(ctx, model).await;
    if ctx.options.maintain && result.status == Status::Success {
        if let Err(e) = maintain::maintain_model_table(ctx, model).await {
            let context = format!("model {}: maintenance failed", model.table_name());
            result.fail(&context, &e, ctx.lakehouse.spec());
        }
    }
    ctx.reporter.finished(&result);
    let ok = result.status == Status::Success;
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
        let r = run_generic_test(ctx, &model.layer, &model.name, t).await;
        ctx.reporter.finished(&r);
        if r.status.is_failure() {
            ok = false;
        }
        out.push(r);
    }
    (out, ok)
}

/// `lake run --maintain`: the table's maintenance right after its model committed.
async fn execute_model(ctx: &RunContext, model: &Model) -> NodeResult {
    let started = Instant::now();
    let mut result = NodeResult::new("model", &model.name, Some(model.table_name()), Status::Success);
    match materialize_model(ctx, model, &mut result).await {
        Ok(()) => {}
        Err(e) => {
            let context = format!("model {} ({})", model.table_name(), model.path.display());
            result.fail(&context, &e, ctx.lakehouse.spec());
        }
    }
    result.duration_seconds = started.elapsed().as_secs_f64();
    result
}

async fn materialize_model(ctx: &RunContext, model: &Model, result: &mut NodeResult) -> Result<()> {
    let name = model.table_name();
    let ident = table_ident(&name)?;
    let existing = match ctx.pins.get(&name) {
        Some(p) => Some(p.table),
        None => ctx.lakehouse.load_table(&ident).await?,
    };
    let incremental_model = model.config.materialized == Materialized::Incremental;
    let mut is_incremental = incremental_model && existing.is_some() && !ctx.options.full_refresh;
    let spec = model.config.watermark.clone();
    let previous = compile::stored_watermark(model, existing.as_ref());
    result.watermark_before = previous.as_ref().map(|w| w.value.clone());

    // Exact incremental reads: only the data files appended to each input since the last run.
    let mut appended: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    if is_incremental && spec == Some(WatermarkSpec::Snapshot) {
        match exact_inputs(ctx, model, previous.as_ref()).await? {
            Ok(files) => appended = files,
            Err(reason) => {
                is_incremental = false;
                result.message = Some(format!("full refresh: {reason}"));
                ctx.reporter.info(&format!("{}: full refresh, {reason}", model.table_name()));
            }
        }
    }
    let strategy = if !incremental_model || ctx.options.full_refresh || (existing.is_some() && !is_incremental) {
        Strategy::Replace
    } else {
        match model.config.incremental_strategy {
            IncrementalStrategy::Append => Strategy::Append,
            IncrementalStrategy::Merge => Strategy::Merge {
                unique_key: model.config.unique_key.clone(),
                dedupe_by: model.config.dedupe_by.clone(),
            },
            IncrementalStrategy::ReplaceRange => Strategy::ReplaceRange {
                column: model
                    .config
                    .range_by
                    .clone()
                    .or_else(|| spec.as_ref().and_then(|s| s.column().map(str::to_string)))
                    .or_else(|| model.config.partition_by.first().map(|p| p.column.clone()))
                    .ok_or_else(|| anyhow!("replace_range needs range_by"))?,
            },
        }
    };

    let mut side_outputs: Vec<SideOutputBatches> = Vec::new();
    let (schema, batches, reads): (arrow::datatypes::SchemaRef, futures::stream::BoxStream<'_, Result<RecordBatch>>, _) =
        match &model.body {
            ModelBody::Sql { .. } => {
                let literal = compile::watermark_literal(model, previous.as_ref(), is_incremental);
                let compiled = compile::compile(
                    &ctx.graph,
                    model,
                    &ctx.project.template_vars(),
                    is_incremental,
                    literal,
                )?;
                let (session, reads) = ctx.session_for(&compiled.reads, &appended).await?;
                let df = read_only_query(&session, &compiled.sql).await?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                let stream = df
                    .execute_stream()
                    .await
                    .map_err(|e| anyhow!("SQL error: {e}"))?
                    .map_err(|e| anyhow!("SQL error while executing: {e}"))
                    .boxed();
                (schema, stream, reads)
            }
            ModelBody::Rust { function } => {
                let f = ctx.registry.get(function).ok_or_else(|| {
                    anyhow!(
                        "no Rust model function '{function}' is registered in this binary (registered: {})",
                        ctx.registry.names().join(", ")
                    )
                })?;
                let mut tables: BTreeSet<String> = model
                    .depends_on
                    .iter()
                    .filter_map(|d| ctx.resolve_table(d).map(|(n, t)| format!("{n}.{t}")))
                    .collect();
                let reads_this = ctx.registry.reads_this(function) && existing.is_some();
                if reads_this {
                    tables.insert(name.clone());
                }
                let (session, mut reads) = ctx.session_for(&tables, &appended).await?;
                let mut inputs = Vec::new();
                for dep in &model.depends_on {
                    let (ns, t) = ctx
                        .resolve_table(dep)
                        .ok_or_else(|| anyhow!("input {dep:?} of a Rust model must be a table"))?;
                    let df = session.table(compile::quoted(&ns, &t).as_str()).await?;
                    let schema = Arc::new(df.schema().as_arrow().clone());
                    let batches = df.collect().await?;
                    let input_name = match dep {
                        Dependency::Model { name, .. } => name.clone(),
                        Dependency::Source { source, table, .. } => format!("{source}.{table}"),
                    };
                    inputs.push((input_name, schema, batches));
                }
                let this = if reads_this {
                    let (ns, t) = name.split_once('.').expect("table names are qualified");
                    let df = session.table(compile::quoted(ns, t).as_str()).await?;
                    let schema = Arc::new(df.schema().as_arrow().clone());
                    // The model's own table is not an input: it does not go into the watermark.
                    reads.remove(&name);
                    Some((schema, df.collect().await?))
                } else {
                    None
                };
                let params = model
                    .config
                    .extra
                    .get("params")
                    .and_then(|p| p.as_object())
                    .cloned()
                    .unwrap_or_default();
                let call = RustModelCall {
                    model: model.name.clone(),
                    inputs,
                    params,
                    this,
                    is_incremental,
                };
                let output = tokio::task::spawn_blocking(move || run_rust_model(&f, call))
                    .await
                    .context("the Rust model panicked")??;
                side_outputs = output.side_outputs;
                let (schema, batches) = (output.schema, output.batches);
                (schema, futures::stream::iter(batches.into_iter().map(Ok)).boxed(), reads)
            }
        };
    result.input_snapshots = reads.clone();

    let mut properties = summary::stamp(Some(&ctx.run_id), Some(&model.name));
    properties.insert(summary::INPUT_SNAPSHOTS.to_string(), serde_json::to_string(&reads)?);
    let request = materialize::Request {
        ident: ident.clone(),
        base: existing,
        strategy,
        partition_by: model
            .config
            .partition_by
            .iter()
            .map(|p| (p.column.clone(), p.transform.clone()))
            .collect(),
        watermark_column: spec.as_ref().map(|s| s.as_str().to_string()),
        previous_watermark: previous,
        fixed_watermark: match spec {
            Some(WatermarkSpec::Snapshot) => Some(Watermark {
                kind: "snapshot".into(),
                value: serde_json::to_string(&reads)?,
            }),
            _ => None,
        },
        on_schema_change: match model.config.on_schema_change {
            OnSchemaChange::Fail => SchemaChangePolicy::Fail,
            OnSchemaChange::AppendNewColumns => SchemaChangePolicy::AppendNewColumns,
            OnSchemaChange::SyncAllColumns => SchemaChangePolicy::SyncAllColumns,
        },
        properties,
        rebase: None,
        write: &ctx.project.config.write,
    };
    let outcome = materialize::materialize(&ctx.lakehouse, request, schema, batches).await?;
    result.rows_written = Some(outcome.rows_written);
    result.files_rewritten = Some(outcome.files_rewritten);
    result.watermark_after = outcome.watermark.as_ref().map(|w| w.value.clone());
    match &outcome.commit {
        Some(c) => {
            result.operation = Some(c.operation.clone());
            result.files_added = Some(c.files_added);
            result.files_removed = Some(c.files_removed);
            result.snapshot_id = Some(c.snapshot_id);
        }
        None => {
            result.operation = Some("none".into());
            result.files_added = Some(0);
            result.files_removed = Some(0);
        }
    }
    // Downstream models of this run read what was just committed.
    let table = ctx.lakehouse.table(&ident).await?;
    ctx.pins.pin(&name, table);

    for side in side_outputs {
        let side_name = format!("{}.{}", model.layer, side.table);
        let side_ident = table_ident(&side_name)?;
        let base = ctx.lakehouse.load_table(&side_ident).await?;
        let properties = summary::stamp(Some(&ctx.run_id), Some(&model.name));
        let request = materialize::Request {
            ident: side_ident.clone(),
            base,
            strategy: match side.mode {
                SideOutputMode::Append => Strategy::Append,
                SideOutputMode::Replace => Strategy::Replace,
            },
            partition_by: Vec::new(),
            watermark_column: None,
            previous_watermark: None,
            fixed_watermark: None,
            on_schema_change: SchemaChangePolicy::AppendNewColumns,
            properties,
            rebase: None,
            write: &ctx.project.config.write,
        };
        let stream = futures::stream::iter(side.batches.into_iter().map(Ok)).boxed();
        let outcome = materialize::materialize(&ctx.lakehouse, request, side.schema, stream)
            .await
            .with_context(|| format!("side output {side_name} of model {}", model.name))?;
        ctx.reporter.info(&format!(
            "{}: wrote {} rows to {side_name}",
            model.table_name(),
            outcome.rows_written
        ));
        let table = ctx.lakehouse.table(&side_ident).await?;
        ctx.pins.pin(&side_name, table);
    }
    Ok(())
}

/// For a `watermark = "snapshot"` model: the data files appended to each input since the
/// snapshots recorded by the last run, or why an exact incremental read is impossible.
async fn exact_inputs(
    ctx: &RunContext,
    model: &Model,
    previous: Option<&Watermark>,
) -> Result<std::result::Result<BTreeMap<String, HashSet<String>>, String>> {
    let Some(previous) = previous.filter(|w| w.kind == "snapshot") else {
        return Ok(Err("no source snapshot watermark is stored yet".into()));
    };
    let recorded: BTreeMap<String, Option<i64>> = serde_json::from_str(&previous.value)
        .map_err(|e| anyhow!("stored snapshot watermark is not valid: {e}"))?;
    let mut out = BTreeMap::new();
    for dep in &model.depends_on {
        let Some((ns, t)) = ctx.resolve_table(dep) else {
            return Ok(Err(format!("input {dep:?} is ephemeral; exact reads need tables")));
        };
        let name = format!("{ns}.{t}");
        let Some(pinned) = ctx.pins.get(&name) else {
            return Ok(Err(format!("input {name} does not exist")));
        };
        match recorded.get(&name) {
            Some(Some(since)) => match changes_since(&pinned.table, *since).await? {
                ChangesSince::Appended(files) => {
                    out.insert(name, files);
                }
                ChangesSince::Rewritten { reason } => return Ok(Err(reason)),
            },
            // The input had no snapshot last time: everything in it is new.
            Some(None) => {}
            None => return Ok(Err(format!("input {name} was not read by the last run"))),
        }
    }
    Ok(Ok(out))
}

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
    let (session, _) = ctx.session_for(tables, &BTreeMap::new()).await?;
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

/// Singular tests that read at least one selected model (all of them when `all`).
pub fn singular_tests_for<'a>(ctx: &'a RunContext, selected: &[usize], all: bool) -> Vec<&'a SingularTest> {
    let names: BTreeSet<&str> = selected.iter().map(|&i| ctx.graph.model(i).name.as_str()).collect();
    ctx.project
        .singular_tests
        .iter()
        .filter(|t| {
            all || t.depends_on.iter().any(|d| matches!(d, Dependency::Model { name, .. } if names.contains(name.as_str())))
        })
        .collect()
}

/// Number of data tests `lake build` runs for a selection: the selected models' tests and
/// the singular tests that read them.
pub fn build_test_count(ctx: &RunContext, selected: &[usize], all: bool) -> usize {
    let model_tests: usize = selected.iter().map(|&i| ctx.graph.model(i).tests.len()).sum();
    model_tests + singular_tests_for(ctx, selected, all).len()
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
        .filter(|r| r.kind == "model" && r.status != Status::Success)
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
