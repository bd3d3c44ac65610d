//! DataFusion sessions whose tables are Iceberg tables pinned to one snapshot each.
//!
//! A run pins every table it reads at the snapshot that was current when the run started
//! ([`SnapshotPins`]); a model built earlier in the same run re-pins its table to the snapshot
//! it committed, so downstream models read exactly that.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use datafusion::catalog::{MemorySchemaProvider, TableFunctionImpl};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{SessionConfig, SessionContext};
use iceberg::table::Table;
use iceberg_datafusion::IcebergStaticTableProvider;

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

/// A new DataFusion session for running one model or query.
pub fn new_session() -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("lake", "public")
        .with_create_default_catalog_and_schema(true);
    SessionContext::new_with_config(config)
}

/// Register `pinned` as `<namespace>.<table>` in the session.
pub async fn register(ctx: &SessionContext, name: &str, pinned: &PinnedTable) -> Result<()> {
    let (namespace, table) = name
        .split_once('.')
        .ok_or_else(|| anyhow!("'{name}' is not namespace.table"))?;
    let provider = provider(pinned).await?;
    register_provider(ctx, namespace, table, provider)
}

fn register_provider(
    ctx: &SessionContext,
    namespace: &str,
    table: &str,
    provider: Arc<dyn TableProvider>,
) -> Result<()> {
    let catalog = ctx
        .catalog("lake")
        .ok_or_else(|| anyhow!("session has no default catalog"))?;
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

async fn provider(pinned: &PinnedTable) -> Result<Arc<dyn TableProvider>> {
    let provider = match pinned.snapshot_id {
        Some(id) => {
            IcebergStaticTableProvider::try_new_from_table_snapshot(pinned.table.clone(), id).await?
        }
        None => IcebergStaticTableProvider::try_new_from_table(pinned.table.clone()).await?,
    };
    Ok(Arc::new(provider))
}

/// `snapshot('ns.table', <snapshot id>)`: time travel in `lake sql`.
#[derive(Debug)]
pub struct SnapshotFunction {
    tables: BTreeMap<String, Table>,
}

impl SnapshotFunction {
    pub fn new(tables: BTreeMap<String, Table>) -> Self {
        SnapshotFunction { tables }
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
        let table = self.tables.get(&name).ok_or_else(|| {
            DataFusionError::Plan(format!("snapshot(): no table '{name}' in the catalog"))
        })?;
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
