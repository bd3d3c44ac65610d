//! One model, start to finish: plan the strategy (full, append, merge, range; exact inputs for
//! `watermark: snapshot`), produce its output (compiled SQL through DataFusion, or a Rust
//! model), and commit it, with any side outputs, through [`crate::materialize`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};

use crate::engine::rust_model::{RustModelCall, SideOutputBatches, SideOutputMode, run_rust_model};
use crate::engine::session::read_only_query;
use crate::lakehouse::catalog::table_ident;
use crate::lakehouse::reader::{ChangesSince, Follow, changes_since};
use crate::lakehouse::summary;
use crate::materialize::watermark::Watermark;
use crate::materialize::{self, SchemaChangePolicy, Strategy};
use crate::project::model::{
    Dependency, IncrementalStrategy, Materialized, Model, ModelBody, OnSchemaChange, WatermarkSpec,
};

use super::results::{NodeResult, Status};
use super::{RunContext, compile, up_to_date};

/// Build one model into its table; the result says what was committed, or why not.
pub(super) async fn execute_model(ctx: &RunContext, model: &Model) -> NodeResult {
    let started = Instant::now();
    let mut result = NodeResult::new("model", &model.name, Some(model.table_name()), Status::Success);
    if let Err(e) = materialize_model(ctx, model, &mut result).await {
        let context = format!("model {} ({})", model.table_name(), model.path.display());
        result.fail(&context, &e, ctx.lakehouse.spec());
    }
    result.duration_seconds = started.elapsed().as_secs_f64();
    result
}

async fn materialize_model(ctx: &RunContext, model: &Model, result: &mut NodeResult) -> Result<()> {
    let plan = Plan::make(ctx, model, result).await?;
    let output = match &model.body {
        ModelBody::Sql { .. } => sql_output(ctx, model, &plan).await?,
        ModelBody::Rust { function } => rust_output(ctx, model, &plan, function).await?,
    };
    let output = match output {
        Produced::Output(o) => o,
        Produced::UpToDate(reads) => {
            result.status = Status::UpToDate;
            result.input_snapshots = reads;
            result.message = Some("skipped (up to date): same inputs and model as its last build".into());
            result.operation = Some("up to date".into());
            result.snapshot_id = plan.existing.as_ref().and_then(|t| t.metadata().current_snapshot_id());
            return Ok(());
        }
    };
    result.input_snapshots = output.reads.clone();
    let Output { schema, batches, reads, side_outputs, fingerprint } = output;
    let started = std::time::Instant::now();
    commit(ctx, model, plan, schema, batches, &reads, &fingerprint, result).await?;
    tracing::debug!(model = %model.name, "wrote and committed its table in {:.2?}", started.elapsed());
    let started = std::time::Instant::now();
    write_side_outputs(ctx, model, side_outputs).await?;
    tracing::debug!(model = %model.name, "wrote its side outputs in {:.2?}", started.elapsed());
    Ok(())
}

/// A model's output, or that its table is up to date (with the snapshots it would have read).
enum Produced {
    Output(Output),
    UpToDate(BTreeMap<String, Option<i64>>),
}

/// `Some` when the model's table is up to date for these reads and this fingerprint.
fn skip_if_up_to_date(ctx: &RunContext, model: &Model, plan: &Plan, reads: &BTreeMap<String, Option<i64>>, fingerprint: &str) -> Option<Produced> {
    let table = plan.existing.as_ref()?;
    (up_to_date::may_skip(model, ctx.options.full_refresh, ctx.options.force)
        && up_to_date::is_up_to_date(table, model, fingerprint, reads))
    .then(|| Produced::UpToDate(reads.clone()))
}

/// How a model runs this time.
struct Plan {
    name: String,
    ident: iceberg::TableIdent,
    /// The model's table as it stands (pinned), if built.
    existing: Option<iceberg::table::Table>,
    is_incremental: bool,
    previous: Option<Watermark>,
    /// `watermark: snapshot`: per input, the data files appended since the last run.
    appended: BTreeMap<String, HashSet<String>>,
    strategy: Strategy,
}

impl Plan {
    async fn make(ctx: &RunContext, model: &Model, result: &mut NodeResult) -> Result<Plan> {
        let name = model.table_name();
        let ident = table_ident(&name)?;
        let existing = match ctx.pins.get(&name) {
            Some(p) => Some(p.table),
            None => ctx.lakehouse.load_table(&ident).await?,
        };
        let incremental_model = model.config.materialized == Materialized::Incremental;
        let mut is_incremental = incremental_model && existing.is_some() && !ctx.options.full_refresh;
        let previous = compile::stored_watermark(model, existing.as_ref());
        result.watermark_before = previous.as_ref().map(|w| w.value.clone());

        // Exact incremental reads: only the data files appended to each input since the last run.
        let mut appended: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        if is_incremental && model.config.watermark == Some(WatermarkSpec::Snapshot) {
            match exact_inputs(ctx, model, previous.as_ref()).await? {
                Ok(files) => {
                    result.input_files_read = files.iter().map(|(t, f)| (t.clone(), f.len())).collect();
                    appended = files;
                }
                Err(reason) => {
                    is_incremental = false;
                    result.message = Some(format!("full refresh: {reason}"));
                    ctx.reporter.info(&format!("{}: full refresh, {reason}", model.table_name()));
                }
            }
        }
        let full = !incremental_model || ctx.options.full_refresh || (existing.is_some() && !is_incremental);
        let strategy = match (full, incremental_strategy(model)) {
            // A merge model rebuilt in full keeps its key unique, as its merges do.
            (true, Ok(Strategy::Merge { unique_key, dedupe_by, .. })) if incremental_model => {
                Strategy::ReplaceUnique { unique_key, dedupe_by }
            }
            (true, _) => Strategy::Replace,
            (false, s) => s?,
        };
        Ok(Plan {
            name,
            ident,
            existing,
            is_incremental,
            previous,
            appended,
            strategy,
        })
    }
}

fn incremental_strategy(model: &Model) -> Result<Strategy> {
    Ok(match model.config.incremental_strategy {
        IncrementalStrategy::Append => Strategy::Append,
        IncrementalStrategy::Merge => Strategy::Merge {
            unique_key: model.config.unique_key.clone(),
            dedupe_by: model.config.dedupe_by.clone(),
            mode: model.config.merge_mode,
        },
        IncrementalStrategy::ReplaceRange => Strategy::ReplaceRange {
            column: model
                .config
                .range_by
                .clone()
                .or_else(|| model.config.watermark.as_ref().and_then(|s| s.column().map(str::to_string)))
                .or_else(|| model.config.partition_by.first().map(|p| p.column.clone()))
                .ok_or_else(|| anyhow!("replace_range needs range_by"))?,
        },
    })
}

/// What a model produced, and the snapshots it read.
struct Output {
    schema: arrow::datatypes::SchemaRef,
    batches: futures::stream::BoxStream<'static, Result<RecordBatch>>,
    reads: BTreeMap<String, Option<i64>>,
    side_outputs: Vec<SideOutputBatches>,
    /// See [`up_to_date::fingerprint`].
    fingerprint: String,
}

/// Compile the SQL (as `lake compile` shows it) and run it as a read-only query.
async fn sql_output(ctx: &RunContext, model: &Model, plan: &Plan) -> Result<Produced> {
    let literal = compile::watermark_literal(model, plan.previous.as_ref(), plan.is_incremental);
    let compiled = compile::compile(&ctx.graph, model, &ctx.project.template_vars(), plan.is_incremental, literal)?;
    let (session, reads) = ctx.session_for(&compiled.reads, &plan.appended, &compiled.whole).await?;
    // A `watermark: snapshot` model's SQL differs between its first (full) run and the
    // incremental ones after it; the fingerprint is always that of the incremental form, so
    // the run after a full build is up to date when nothing changed.
    let fingerprint = match (&model.config.watermark, plan.is_incremental) {
        (Some(WatermarkSpec::Snapshot), false) if model.config.materialized == Materialized::Incremental => {
            let incremental = compile::compile(&ctx.graph, model, &ctx.project.template_vars(), true, None)?;
            up_to_date::fingerprint(model, &incremental.sql)
        }
        _ => up_to_date::fingerprint(model, &compiled.sql),
    };
    if let Some(skip) = skip_if_up_to_date(ctx, model, plan, &reads, &fingerprint) {
        return Ok(skip);
    }
    let df = read_only_query(&session, &compiled.sql).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df
        .execute_stream()
        .await
        .map_err(|e| anyhow!("SQL error: {e}"))?
        .map_err(|e| anyhow!("SQL error while executing: {e}"))
        .boxed();
    Ok(Produced::Output(Output {
        schema,
        batches,
        reads,
        side_outputs: Vec::new(),
        fingerprint,
    }))
}

/// Read the inputs (and the model's own table when its function asks), run the function off
/// the async runtime.
async fn rust_output(ctx: &RunContext, model: &Model, plan: &Plan, function: &str) -> Result<Produced> {
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
    let reads_this = ctx.registry.reads_this(function) && plan.existing.is_some();
    if reads_this {
        tables.insert(plan.name.clone());
    }
    let params = model
        .config
        .extra
        .get("params")
        .and_then(|p| p.as_object())
        .cloned()
        .unwrap_or_default();
    // Tables the function wrote beside its own before (side outputs) and reads back.
    let mut beside = Vec::new();
    for table in ctx.registry.reads_beside(function, &params) {
        let name = format!("{}.{table}", model.layer);
        if ctx.lakehouse.load_table(&table_ident(&name)?).await?.is_some() {
            tables.insert(name.clone());
            beside.push((table, name));
        }
    }
    let (session, mut reads) = ctx.session_for(&tables, &plan.appended, &Default::default()).await?;
    // Neither the model's own table nor those beside it are inputs: they stay out of the
    // watermark and of the up-to-date check.
    for (_, name) in &beside {
        reads.remove(name);
    }
    let fingerprint = up_to_date::fingerprint(model, &format!("rust {function} {}", serde_json::Value::Object(params.clone())));
    let mut own = reads.clone();
    own.remove(&plan.name);
    if let Some(skip) = skip_if_up_to_date(ctx, model, plan, &own, &fingerprint) {
        return Ok(skip);
    }
    let started = std::time::Instant::now();
    // Every input and the model's own table are read at once, each on its own task.
    let read = |table: String| {
        let session = session.clone();
        tokio::spawn(async move {
            let df = session.table(table.as_str()).await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            anyhow::Ok((schema, df.collect().await?))
        })
    };
    let mut reading = Vec::new();
    for dep in &model.depends_on {
        let (ns, t) = ctx
            .resolve_table(dep)
            .ok_or_else(|| anyhow!("input {dep:?} of a Rust model must be a table"))?;
        let input_name = match dep {
            Dependency::Model { name, .. } => name.clone(),
            Dependency::Source { source, table, .. } => format!("{source}.{table}"),
        };
        reading.push((input_name, read(compile::quoted(&ns, &t))));
    }
    let reading_this = reads_this.then(|| {
        let (ns, t) = plan.name.split_once('.').expect("table names are qualified");
        read(compile::quoted(ns, t))
    });
    let mut inputs = Vec::new();
    for (input_name, task) in reading {
        let (schema, batches) = task.await.context("reading an input panicked")??;
        inputs.push((input_name, schema, batches));
    }
    let mut beside_batches = Vec::new();
    for (table, name) in beside {
        let (ns, t) = name.split_once('.').expect("table names are qualified");
        let (schema, batches) = read(compile::quoted(ns, t)).await.context("reading a table beside its own panicked")??;
        beside_batches.push((table, schema, batches));
    }
    let this = match reading_this {
        // The model's own table is not an input: it does not go into the watermark.
        Some(task) => {
            reads.remove(&plan.name);
            Some(task.await.context("reading its own table panicked")??)
        }
        None => None,
    };
    tracing::debug!(model = %model.name, "read its inputs (and its own table) in {:.2?}", started.elapsed());
    let call = RustModelCall {
        model: model.name.clone(),
        inputs,
        params,
        this,
        is_incremental: plan.is_incremental,
        beside: beside_batches,
    };
    let output = tokio::task::spawn_blocking(move || run_rust_model(&f, call))
        .await
        .context("the Rust model panicked")??;
    Ok(Produced::Output(Output {
        schema: output.schema,
        batches: futures::stream::iter(output.batches.into_iter().map(Ok)).boxed(),
        reads,
        side_outputs: output.side_outputs,
        fingerprint,
    }))
}

/// The snapshot summary keys every commit of a model carries.
fn model_properties(ctx: &RunContext, model: &Model) -> HashMap<String, String> {
    summary::stamp(Some(&ctx.run_id), Some(&model.name))
}

/// Commit the model's output as one snapshot, fill in the result, re-pin the table for
/// downstream models.
#[allow(clippy::too_many_arguments)]
async fn commit(
    ctx: &RunContext,
    model: &Model,
    plan: Plan,
    schema: arrow::datatypes::SchemaRef,
    batches: futures::stream::BoxStream<'static, Result<RecordBatch>>,
    reads: &BTreeMap<String, Option<i64>>,
    fingerprint: &str,
    result: &mut NodeResult,
) -> Result<()> {
    let mut properties = model_properties(ctx, model);
    properties.insert(summary::INPUT_SNAPSHOTS.to_string(), serde_json::to_string(reads)?);
    properties.insert(summary::MODEL_FINGERPRINT.to_string(), fingerprint.to_string());
    let spec = model.config.watermark.as_ref();
    let request = materialize::Request {
        ident: plan.ident.clone(),
        base: plan.existing,
        strategy: plan.strategy,
        partition_by: model
            .config
            .partition_by
            .iter()
            .map(|p| (p.column.clone(), p.transform.clone()))
            .collect(),
        watermark_column: spec.map(|s| s.as_str().to_string()),
        previous_watermark: plan.previous,
        fixed_watermark: match spec {
            Some(WatermarkSpec::Snapshot) => Some(Watermark {
                kind: "snapshot".into(),
                value: serde_json::to_string(reads)?,
            }),
            _ => None,
        },
        delete_when: model.config.delete_when.clone(),
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
    result.bytes_rewritten = Some(outcome.bytes_rewritten);
    result.delete_files_added = Some(outcome.commit.as_ref().map_or(0, |c| c.delete_files_added));
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
    let table = ctx.lakehouse.table(&plan.ident).await?;
    ctx.pins.pin(&plan.name, table);
    Ok(())
}

/// A Rust model's side outputs, each one commit to its own table in the model's namespace.
async fn write_side_outputs(ctx: &RunContext, model: &Model, side_outputs: Vec<SideOutputBatches>) -> Result<()> {
    for side in side_outputs {
        let side_name = format!("{}.{}", model.layer, side.table);
        let side_ident = table_ident(&side_name)?;
        let base = ctx.lakehouse.load_table(&side_ident).await?;
        let request = materialize::Request {
            ident: side_ident.clone(),
            base,
            strategy: match side.mode {
                SideOutputMode::Append => Strategy::Append,
                SideOutputMode::Replace => Strategy::Replace,
                SideOutputMode::Merge(unique_key) => Strategy::Merge {
                    unique_key,
                    dedupe_by: None,
                    mode: None,
                },
            },
            partition_by: Vec::new(),
            watermark_column: None,
            previous_watermark: None,
            fixed_watermark: None,
            delete_when: None,
            on_schema_change: SchemaChangePolicy::AppendNewColumns,
            properties: model_properties(ctx, model),
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
    // A model that merges by key may read a changed row again; one that appends may not.
    let follow = match model.config.incremental_strategy {
        IncrementalStrategy::Merge => Follow::Upserts,
        _ => Follow::Appends,
    };
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
            Some(Some(since)) => match changes_since(&pinned.table, *since, follow).await? {
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
