//! Executing a selection: the parallel scheduler over the DAG (`schedule`), per-model
//! execution (`model`: plan → compiled SQL or a Rust model → one commit), data tests
//! (`testing`), seeds, maintenance after a model, and the artifacts and progress a run reports.
//! [`RunContext`] is what the tasks of one run share: the project, graph, catalog, and the
//! snapshot every table is read at.

pub mod compile;
pub mod data_tests;
pub mod docs;
pub mod freshness;
pub mod lineage;
pub mod maintain;
mod model;
pub mod openlineage;
pub mod report;
pub mod results;
mod schedule;
pub mod seeds;
mod testing;
mod up_to_date;

pub use schedule::run_models;
pub use testing::{
    IndirectSelection, build_test_count, run_generic_test, run_source_tests_before, run_singular_test, run_singular_tests_after, run_tests, singular_test_selected,
    singular_tests_for, test_count,
};

use std::collections::{BTreeMap, BTreeSet, HashSet};

use anyhow::{Result, anyhow};
use arrow::array::RecordBatch;
use futures::TryStreamExt;

use crate::engine::rust_model::Registry;
use crate::engine::session::{SnapshotPins, new_session, register, register_batches, register_in};
use crate::graph::Graph;
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::lakehouse::reader::read_files;
use crate::project::Project;
use crate::project::templates::WHOLE_CATALOG;
use crate::project::model::{Dependency, Materialized};
use report::Reporter;

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
    /// Rebuild `table` models that are up to date (same inputs and compiled model).
    pub force: bool,
    /// Which singular tests a selection takes in (`lake test`, `lake build`).
    pub indirect_selection: IndirectSelection,
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
        whole: &BTreeSet<String>,
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
            if whole.contains(name) {
                register_in(&ctx, WHOLE_CATALOG, name, &pinned).await?;
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
