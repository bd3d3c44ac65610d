//! DataFusion sessions whose tables are Iceberg tables pinned to one snapshot each.
//!
//! A run pins every table it reads at the snapshot that was current when the run started
//! ([`SnapshotPins`]); a model built earlier in the same run re-pins its table to the snapshot
//! it committed, so downstream models read exactly that.
//!
//! Every query `lake` runs (`lake sql`, model SQL, data tests) goes through [`read_only_query`]:
//! only `SELECT`, `WITH`, `VALUES` and `EXPLAIN` of those are planned; `COPY`, DDL, DML and
//! `SET` are refused before anything is executed, so no SQL text can write a file or touch
//! the catalog. `lake sql` sees the catalog through [`LazyCatalog`], which loads a table only
//! when a query names it: a broken table fails only the queries that read it.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableFunctionImpl};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::Optimizer;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use iceberg::table::Table;

use super::first_per_group::FirstPerGroup;
use super::scan::SnapshotTable;
use crate::lakehouse::catalog::Lakehouse;

/// A table and the snapshot to read (`None`: the table has no snapshot yet, so it is empty).
#[derive(Clone)]
pub struct PinnedTable {
    pub table: Table,
    pub snapshot_id: Option<i64>,
}

/// Table name (`namespace.table`) → pinned table, shared by the models of one run.
#[derive(Clone, Default)]
pub struct SnapshotPins {
    inner: Arc<Mutex<BTreeMap<String, PinnedTable>>>,
}

impl SnapshotPins {
    pub fn pin(&self, name: &str, table: Table) {
        let snapshot_id = table.metadata().current_snapshot_id();
        self.inner
            .lock()
            .expect("pins")
            .insert(name.to_string(), PinnedTable { table, snapshot_id });
    }

    pub fn get(&self, name: &str) -> Option<PinnedTable> {
        self.inner.lock().expect("pins").get(name).cloned()
    }

    /// Snapshot ids by table name, for run results.
    pub fn snapshot_ids(&self) -> BTreeMap<String, Option<i64>> {
        self.inner
            .lock()
            .expect("pins")
            .iter()
            .map(|(k, v)| (k.clone(), v.snapshot_id))
            .collect()
    }
}

/// A new DataFusion session for running one model or query, with the JSON functions of
/// [`super::json`] (`json_get_str(col, 'a', 'b')`, `json_length`, ...) for raw payload
/// columns that hold JSON text.
pub fn new_session() -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("lake", "public")
        .with_create_default_catalog_and_schema(true);
    // The first-row-per-group rewrite goes before DataFusion's own rules: they then plan the
    // distribution it needs and no sort for the window it replaced.
    let mut rules = PhysicalOptimizer::new().rules;
    rules.insert(0, Arc::new(FirstPerGroup));
    // JSON calls are merged before DataFusion's rules push projections down and merge them.
    let mut logical = Optimizer::new().rules;
    logical.insert(0, Arc::new(super::json::MergeJsonPaths));
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_optimizer_rules(logical)
        .with_physical_optimizer_rules(rules)
        .build();
    let ctx = SessionContext::new_with_state(state);
    for f in super::json::functions() {
        ctx.register_udf(f);
    }
    ctx
}

/// Register `pinned` as `<namespace>.<table>` in the session.
pub async fn register(ctx: &SessionContext, name: &str, pinned: &PinnedTable) -> Result<()> {
    let (namespace, table) = name
        .split_once('.')
        .ok_or_else(|| anyhow!("'{name}' is not namespace.table"))?;
    let provider = provider(pinned).await?;
    register_provider(ctx, namespace, table, provider)
}

/// Register the pinned table `namespace.table` whole in the session catalog `catalog_name`
/// (created when missing), beside the default catalog's `namespace.table`, which may hold only
/// part of it (see [`register_batches`]).
pub async fn register_in(ctx: &SessionContext, catalog_name: &str, name: &str, pinned: &PinnedTable) -> Result<()> {
    let (namespace, table) = name
        .split_once('.')
        .ok_or_else(|| anyhow!("'{name}' is not namespace.table"))?;
    if ctx.catalog(catalog_name).is_none() {
        ctx.register_catalog(catalog_name, Arc::new(datafusion::catalog::MemoryCatalogProvider::new()));
    }
    let provider = provider(pinned).await?;
    register_provider_in(ctx, catalog_name, namespace, table, provider)
}

fn register_provider(
    ctx: &SessionContext,
    namespace: &str,
    table: &str,
    provider: Arc<dyn TableProvider>,
) -> Result<()> {
    register_provider_in(ctx, "lake", namespace, table, provider)
}

fn register_provider_in(
    ctx: &SessionContext,
    catalog_name: &str,
    namespace: &str,
    table: &str,
    provider: Arc<dyn TableProvider>,
) -> Result<()> {
    let catalog = ctx
        .catalog(catalog_name)
        .ok_or_else(|| anyhow!("session has no catalog {catalog_name}"))?;
    if catalog.schema(namespace).is_none() {
        catalog.register_schema(namespace, Arc::new(MemorySchemaProvider::new()))?;
    }
    catalog
        .schema(namespace)
        .expect("schema registered above")
        .register_table(table.to_string(), provider)
        .with_context(|| format!("cannot register {namespace}.{table}"))?;
    Ok(())
}

/// Register `batches` (rows read from `pinned`'s files) as `<namespace>.<table>`.
pub async fn register_batches(
    ctx: &SessionContext,
    name: &str,
    pinned: &PinnedTable,
    batches: Vec<arrow::array::RecordBatch>,
) -> Result<()> {
    let (namespace, table) = name
        .split_once('.')
        .ok_or_else(|| anyhow!("'{name}' is not namespace.table"))?;
    let schema = provider(pinned).await?.schema();
    let batches = batches
        .into_iter()
        .map(|b| arrow::array::RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mem = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
    register_provider(ctx, namespace, table, Arc::new(mem))
}

/// Register an empty table with `schema` as `<namespace>.<table>`: enough to plan a query
/// (lineage), nothing to read.
pub fn register_schema(ctx: &SessionContext, name: &str, schema: arrow::datatypes::SchemaRef) -> Result<()> {
    let (namespace, table) = name
        .split_once('.')
        .ok_or_else(|| anyhow!("'{name}' is not namespace.table"))?;
    let empty = datafusion::datasource::empty::EmptyTable::new(schema);
    register_provider(ctx, namespace, table, Arc::new(empty))
}

/// The columns a query sees in `table` at its current snapshot.
pub async fn table_schema(table: &Table) -> Result<arrow::datatypes::SchemaRef> {
    let pinned = PinnedTable { table: table.clone(), snapshot_id: table.metadata().current_snapshot_id() };
    Ok(provider(&pinned).await?.schema())
}

async fn provider(pinned: &PinnedTable) -> Result<Arc<dyn TableProvider>> {
    Ok(Arc::new(SnapshotTable::new(pinned.table.clone(), pinned.snapshot_id)?))
}

/// `snapshot('ns.table', <snapshot id>)`: time travel in `lake sql`.
#[derive(Debug)]
pub struct SnapshotFunction {
    catalog: LazyCatalog,
}

impl SnapshotFunction {
    fn table(&self, name: &str) -> datafusion::error::Result<Table> {
        if !name.contains('.') {
            return Err(DataFusionError::Plan(format!("snapshot(): '{name}' is not namespace.table")));
        }
        self.catalog.load_blocking(name).map_err(|e| {
            DataFusionError::Plan(format!("snapshot(): table '{name}' cannot be read: {e:#}"))
        })
    }
}

impl TableFunctionImpl for SnapshotFunction {
    fn call(&self, args: &[Expr]) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let usage = || {
            DataFusionError::Plan(
                "snapshot() takes a table name and a snapshot id, e.g. snapshot('marts.sales', 123)"
                    .into(),
            )
        };
        let (name, id) = match args {
            [
                Expr::Literal(ScalarValue::Utf8(Some(name)), _),
                Expr::Literal(id, _),
            ] => (name.clone(), id.clone()),
            _ => return Err(usage()),
        };
        let id: i64 = match id {
            ScalarValue::Int64(Some(v)) => v,
            ScalarValue::Int32(Some(v)) => v as i64,
            ScalarValue::UInt64(Some(v)) => v as i64,
            ScalarValue::Utf8(Some(s)) => s.parse().map_err(|_| usage())?,
            _ => return Err(usage()),
        };
        let table = self.table(&name)?;
        if table.metadata().snapshot_by_id(id).is_none() {
            let known: Vec<String> = table
                .metadata()
                .snapshots()
                .map(|s| s.snapshot_id().to_string())
                .collect();
            return Err(DataFusionError::Plan(format!(
                "snapshot(): table '{name}' has no snapshot {id} (snapshots: {})",
                known.join(", ")
            )));
        }
        // Building the provider does no I/O: it only reads the loaded metadata.
        let pinned = PinnedTable {
            table: table.clone(),
            snapshot_id: Some(id),
        };
        futures::executor::block_on(provider(&pinned))
            .map_err(|e| DataFusionError::External(e.into()))
    }
}

/// A query that is not read-only (`COPY`, `CREATE`, `INSERT`, `SET`, ...): refused before it runs.
#[derive(Debug)]
pub struct NotReadOnly {
    /// The kind of statement, e.g. `COPY` or `CREATE TABLE`.
    pub statement: String,
}

impl std::fmt::Display for NotReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not allowed: lake runs read-only queries (SELECT, WITH, VALUES, EXPLAIN); \
             tables change only through models, seeds and `lake ingest` \
             (to write a query's result to a file, use `lake sql --out FILE`)",
            self.statement
        )
    }
}

impl std::error::Error for NotReadOnly {}

/// Plan `sql` as a read-only query and return it ready to execute.
///
/// Errors: [`NotReadOnly`] (inside the `anyhow` chain) for anything but a query, or
/// `SQL error: ...` when it does not plan.
pub async fn read_only_query(ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
    let plan = read_only_plan(ctx, sql).await?;
    ctx.execute_logical_plan(plan).await.map_err(|e| anyhow!("SQL error: {e}"))
}

/// [`read_only_query`]'s checks and planning, without executing: the unoptimized logical
/// plan (what [`super::lineage::analyze`] reads).
pub async fn read_only_plan(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state.sql_to_statement(sql, &dialect).map_err(|e| anyhow!("SQL error: {e}"))?;
    check_read_only(&statement)?;
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| anyhow!("SQL error: {e}"))?;
    // Belt and braces: the planned query must hold no DDL, DML, COPY or SET anywhere.
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    if let Err(e) = options.verify_plan(&plan) {
        return Err(NotReadOnly {
            statement: e.strip_backtrace().trim_start_matches("Error during planning: ").to_string(),
        }
        .into());
    }
    Ok(plan)
}

fn check_read_only(statement: &DfStatement) -> std::result::Result<(), NotReadOnly> {
    let refuse = |what: &str| NotReadOnly {
        statement: what.to_string(),
    };
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(_) => Ok(()),
            other => {
                let text = other.to_string();
                let words: Vec<&str> = text.split_whitespace().take(2).collect();
                let kind = match words.as_slice() {
                    [a, b] if ["CREATE", "DROP", "ALTER", "INSERT", "DELETE", "UPDATE", "TRUNCATE"]
                        .contains(&a.to_ascii_uppercase().as_str()) =>
                    {
                        format!("{} {}", a.to_ascii_uppercase(), b.to_ascii_uppercase())
                    }
                    [a, ..] => a.to_ascii_uppercase(),
                    [] => "this statement".to_string(),
                };
                Err(refuse(&kind))
            }
        },
        DfStatement::Explain(explain) => check_read_only(&explain.statement),
        DfStatement::CopyTo(_) => Err(refuse("COPY")),
        DfStatement::CreateExternalTable(_) => Err(refuse("CREATE EXTERNAL TABLE")),
        _ => Err(refuse("this statement")),
    }
}

/// The catalog as DataFusion schemas (one per namespace) whose tables load on first use,
/// at their current snapshot. Loaded tables are kept for [`SnapshotFunction`].
#[derive(Clone)]
pub struct LazyCatalog {
    lakehouse: Lakehouse,
    loaded: Arc<Mutex<BTreeMap<String, Table>>>,
}

impl LazyCatalog {
    /// Register every namespace of the catalog in `ctx` (listing only: no table is loaded)
    /// and the `snapshot()` table function.
    pub async fn register(ctx: &SessionContext, lakehouse: &Lakehouse) -> Result<Self> {
        let lazy = LazyCatalog {
            lakehouse: lakehouse.clone(),
            loaded: Arc::default(),
        };
        let mut by_namespace: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for ident in lakehouse.list_tables().await? {
            by_namespace
                .entry(ident.namespace().join("."))
                .or_default()
                .push(ident.name().to_string());
        }
        let catalog = ctx
            .catalog("lake")
            .ok_or_else(|| anyhow!("session has no default catalog"))?;
        for (namespace, tables) in by_namespace {
            let schema = LazySchema {
                namespace: namespace.clone(),
                tables,
                catalog: lazy.clone(),
            };
            catalog.register_schema(&namespace, Arc::new(schema))?;
        }
        ctx.register_udtf("snapshot", Arc::new(SnapshotFunction { catalog: lazy.clone() }));
        Ok(lazy)
    }

    /// Load `namespace.table` (once per session).
    async fn load(&self, name: &str) -> Result<Table> {
        if let Some(t) = self.loaded.lock().expect("tables").get(name) {
            return Ok(t.clone());
        }
        let ident = crate::lakehouse::catalog::table_ident(name)?;
        let table = self.lakehouse.table(&ident).await?;
        self.loaded.lock().expect("tables").insert(name.to_string(), table.clone());
        Ok(table)
    }

    /// [`Self::load`] from synchronous code running on the multi-threaded runtime.
    fn load_blocking(&self, name: &str) -> Result<Table> {
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| handle.block_on(self.load(name)))
    }
}

#[derive(Clone)]
struct LazySchema {
    namespace: String,
    tables: Vec<String>,
    catalog: LazyCatalog,
}

impl std::fmt::Debug for LazySchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazySchema").field("namespace", &self.namespace).finish()
    }
}

#[async_trait::async_trait]
impl SchemaProvider for LazySchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.tables.clone()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        if !self.table_exist(name) {
            return Ok(None);
        }
        let full = format!("{}.{name}", self.namespace);
        let load = async {
            let table = self.catalog.load(&full).await?;
            let pinned = PinnedTable {
                snapshot_id: table.metadata().current_snapshot_id(),
                table,
            };
            provider(&pinned).await
        };
        match load.await {
            Ok(p) => Ok(Some(p)),
            Err(e) => Err(DataFusionError::External(
                anyhow!("table {full} cannot be read: {e:#}").into(),
            )),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}

impl std::fmt::Debug for LazyCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyCatalog").field("catalog", &self.lakehouse).finish()
    }
}
