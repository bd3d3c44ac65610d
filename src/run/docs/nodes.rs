//! The docs' nodes: every source, ingest and seed table and every model, with what the project
//! declares (description, layer, materialization, SQL, columns, tests), its column lineage and
//! the last results of its runs and tests; edges as node indices.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::facts::RunResults;
use crate::engine::lineage::{Edge, Lineage};
use crate::graph::Graph;
use crate::project::Project;
use crate::project::model::{DataTest, DataTestKind, Dependency, Materialized, Model, ModelBody, Severity};
use crate::run::compile;

/// One node of the site: a table lake reads or a model.
#[derive(Debug, Clone, Serialize)]
pub struct DocNode {
    /// `model=<name>`, `source=<ns.table>`, `ingest=<ns.table>` or `seed=<ns.table>`: the page's
    /// URL hash.
    pub key: String,
    pub name: String,
    /// `model`, `source`, `ingest` or `seed`.
    pub kind: String,
    /// `namespace.table` (none for an ephemeral model).
    pub table: Option<String>,
    pub layer: String,
    pub description: Option<String>,
    pub path: Option<String>,
    /// `sql` or `rust` (models).
    pub language: Option<String>,
    pub materialized: Option<String>,
    /// The incremental strategy (incremental models).
    pub strategy: Option<String>,
    /// Other settings worth reading: unique key, watermark, partitioning, tags, ...
    pub config: BTreeMap<String, Value>,
    /// The SQL a full run executes; or why it does not compile.
    pub sql: Option<String>,
    pub sql_error: Option<String>,
    /// A Rust model's registered function.
    pub function: Option<String>,
    /// What loads the table: `ingest <name> from <uri>`, `seed <name>`.
    pub loaded_by: Vec<String>,
    pub columns: Vec<DocColumn>,
    pub tests: Vec<DocTest>,
    pub last_run: Option<LastRun>,
    pub facts: Option<TableFacts>,
    /// Why the column lineage is unknown.
    pub lineage_error: Option<String>,
    pub parents: Vec<usize>,
    pub children: Vec<usize>,
    /// Top-left corner on the drawing.
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DocColumn {
    pub name: String,
    pub data_type: Option<String>,
    pub description: Option<String>,
    /// Columns whose values flow into this one.
    pub sources: Vec<Edge>,
    /// Columns that decide which rows there are.
    pub indirect: Vec<Edge>,
}

impl DocColumn {
    pub(super) fn named(name: &str, data_type: Option<String>) -> Self {
        DocColumn { name: name.to_string(), data_type, description: None, sources: Vec::new(), indirect: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DocTest {
    pub name: String,
    /// `unique`, `not_null`, `accepted_values [..]`, `relationships → x.field`, `singular`.
    pub test: String,
    pub column: Option<String>,
    pub severity: Severity,
    /// The last result (`pass`, `fail`, `warn`, `error`, `skipped`), when the run results hold one.
    pub status: Option<String>,
    pub failures: Option<u64>,
    pub message: Option<String>,
}

/// A node's last run: from `run_results.json`, or else the table's current snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// `run_results` or `catalog`.
    pub from: String,
    pub status: Option<String>,
    pub message: Option<String>,
    pub rows: Option<u64>,
    pub snapshot_id: Option<i64>,
    pub duration_seconds: Option<f64>,
    pub watermark: Option<String>,
    pub operation: Option<String>,
    /// When the snapshot was committed (catalog only).
    pub at: Option<String>,
    pub run_id: Option<String>,
}

/// A table as the catalog holds it.
#[derive(Debug, Clone, Serialize)]
pub struct TableFacts {
    pub location: String,
    pub format_version: String,
    pub current_snapshot_id: Option<i64>,
    pub snapshots: usize,
    pub data_files: Option<u64>,
    pub delete_files: Option<u64>,
    pub records: Option<u64>,
    pub size_bytes: Option<u64>,
    pub last_updated: Option<String>,
}

/// Every node, tables first, then models in run order; parents and children filled in.
pub(super) fn build(project: &Project, graph: &Graph, lineage: &Lineage, results: &RunResults) -> Vec<DocNode> {
    let mut nodes = table_nodes(project, results);
    let mut by_table: BTreeMap<String, usize> =
        nodes.iter().enumerate().filter_map(|(i, n)| Some((n.table.clone()?, i))).collect();
    let mut by_model: BTreeMap<usize, usize> = BTreeMap::new();
    let all = (0..graph.models().len()).collect();
    for idx in graph.run_order(&all) {
        let model = graph.model(idx);
        let mut node = model_node(project, graph, model, results);
        for p in graph.parents(idx) {
            node.parents.extend(by_model.get(&p));
        }
        for dep in &model.depends_on {
            if let Dependency::Source { source, table, .. } = dep {
                node.parents.extend(by_table.get(&format!("{source}.{table}")));
            }
        }
        node.parents.sort_unstable();
        node.parents.dedup();
        by_model.insert(idx, nodes.len());
        if let Some(t) = &node.table {
            by_table.insert(t.clone(), nodes.len());
        }
        nodes.push(node);
    }
    for i in 0..nodes.len() {
        for p in nodes[i].parents.clone() {
            nodes[p].children.push(i);
        }
    }
    for node in &mut nodes {
        add_lineage(node, lineage);
    }
    nodes
}

fn blank(key: String, name: String, kind: &str, table: Option<String>, layer: String) -> DocNode {
    DocNode {
        key,
        name,
        kind: kind.to_string(),
        table,
        layer,
        description: None,
        path: None,
        language: None,
        materialized: None,
        strategy: None,
        config: BTreeMap::new(),
        sql: None,
        sql_error: None,
        function: None,
        loaded_by: Vec::new(),
        columns: Vec::new(),
        tests: Vec::new(),
        last_run: None,
        facts: None,
        lineage_error: None,
        parents: Vec::new(),
        children: Vec::new(),
        x: 0.0,
        y: 0.0,
    }
}

/// Declared sources, then ingest and seed tables not declared as sources (a declared source
/// loaded by ingest or a seed says so in `loaded_by`).
fn table_nodes(project: &Project, results: &RunResults) -> Vec<DocNode> {
    let layer_of = |table: &str| {
        let ns = table.split_once('.').map_or(table, |(ns, _)| ns);
        match project.config.layers.iter().find(|l| *l == ns) {
            Some(l) => l.clone(),
            None => project.config.layers.first().cloned().unwrap_or_else(|| ns.to_string()),
        }
    };
    let mut nodes: Vec<DocNode> = Vec::new();
    for s in &project.sources {
        let t = s.table_name();
        let mut node = blank(format!("source={t}"), t.clone(), "source", Some(t.clone()), layer_of(&t));
        node.description = s.description.clone();
        node.path = Some(s.path.display().to_string());
        node.tests = tests_of(project, &s.tests, &Dependency::Source { source: s.source.clone(), table: s.table.clone(), line: 0 }, results);
        nodes.push(node);
    }
    for (name, ingest) in &project.config.ingest {
        let t = ingest.table.clone();
        let i = match nodes.iter().position(|n| n.table.as_deref() == Some(&t)) {
            Some(i) => i,
            None => {
                let mut node = blank(format!("ingest={t}"), t.clone(), "ingest", Some(t.clone()), layer_of(&t));
                node.columns = ingest.columns.iter().map(|(c, ty)| DocColumn::named(c, Some(ty.clone()))).collect();
                nodes.push(node);
                nodes.len() - 1
            }
        };
        nodes[i].loaded_by.push(format!("lake ingest {name} (from {}; dead letters in {t}__errors)", ingest.from));
    }
    for seed in &project.seeds {
        let t = format!("{}.{}", seed.namespace, seed.table);
        let i = match nodes.iter().position(|n| n.table.as_deref() == Some(&t)) {
            Some(i) => i,
            None => {
                let mut node = blank(format!("seed={t}"), t.clone(), "seed", Some(t.clone()), layer_of(&t));
                node.path = Some(seed.path.display().to_string());
                node.columns = seed.column_types.iter().map(|(c, ty)| DocColumn::named(c, Some(ty.clone()))).collect();
                nodes.push(node);
                nodes.len() - 1
            }
        };
        nodes[i].loaded_by.push(format!("lake seed {} ({} file(s))", seed.name, seed.files.len()));
        if nodes[i].last_run.is_none() {
            nodes[i].last_run = results.last_run(&format!("seed.{}", seed.name));
        }
    }
    nodes
}

fn model_node(project: &Project, graph: &Graph, m: &Model, results: &RunResults) -> DocNode {
    let ephemeral = m.config.materialized == Materialized::Ephemeral;
    let table = (!ephemeral).then(|| m.table_name());
    let mut node = blank(format!("model={}", m.name), m.name.clone(), "model", table, m.layer.clone());
    node.description = m.description.clone();
    node.path = Some(m.path.display().to_string());
    node.materialized = Some(m.config.materialized.as_str().to_string());
    if m.config.materialized == Materialized::Incremental {
        node.strategy = Some(m.config.incremental_strategy.as_str().to_string());
    }
    let c = &m.config;
    let mut put = |k: &str, v: Value| {
        if !(v.is_null() || v == Value::Array(Vec::new())) {
            node.config.insert(k.to_string(), v);
        }
    };
    put("unique_key", serde_json::to_value(&c.unique_key).unwrap_or_default());
    put("watermark", c.watermark.as_ref().map(|w| Value::from(w.as_str())).unwrap_or_default());
    put("lookback", c.lookback.clone().map(Value::from).unwrap_or_default());
    put("range_by", c.range_by.clone().map(Value::from).unwrap_or_default());
    put("partition_by", serde_json::to_value(&c.partition_by).unwrap_or_default());
    put("tags", serde_json::to_value(&c.tags).unwrap_or_default());
    match &m.body {
        ModelBody::Sql { .. } => {
            node.language = Some("sql".into());
            match compile::compile(graph, m, &project.template_vars(), false, None) {
                Ok(compiled) => node.sql = Some(compiled.sql),
                Err(e) => node.sql_error = Some(format!("{e:#}")),
            }
        }
        ModelBody::Rust { function } => {
            node.language = Some("rust".into());
            node.function = Some(function.clone());
        }
    }
    node.columns = m
        .columns
        .iter()
        .map(|c| DocColumn { description: c.description.clone(), ..DocColumn::named(&c.name, c.data_type.clone()) })
        .collect();
    node.tests = tests_of(project, &m.tests, &Dependency::Model { name: m.name.clone(), line: 0 }, results);
    node.last_run = results.last_run(&format!("model.{}", m.name));
    node
}

/// The node's declared data tests and the singular tests that read it, with their last results.
fn tests_of(project: &Project, declared: &[DataTest], node: &Dependency, results: &RunResults) -> Vec<DocTest> {
    let same = |d: &Dependency| match (d, node) {
        (Dependency::Model { name: a, .. }, Dependency::Model { name: b, .. }) => a == b,
        (Dependency::Source { source: a, table: t, .. }, Dependency::Source { source: b, table: u, .. }) => a == b && t == u,
        _ => false,
    };
    let mut out: Vec<DocTest> = declared
        .iter()
        .map(|t| DocTest { name: t.name.clone(), test: describe(&t.kind), column: t.column.clone(), severity: t.severity, status: None, failures: None, message: None })
        .collect();
    for t in project.singular_tests.iter().filter(|t| t.depends_on.iter().any(same)) {
        let test = format!("singular ({})", t.path.display());
        out.push(DocTest { name: t.name.clone(), test, column: None, severity: t.severity, status: None, failures: None, message: None });
    }
    for t in &mut out {
        if let Some(r) = results.get(&format!("test.{}", t.name)) {
            t.status = r["status"].as_str().map(str::to_string);
            t.failures = r["failures"].as_u64();
            t.message = r["message"].as_str().map(str::to_string);
        }
    }
    out
}

fn describe(kind: &DataTestKind) -> String {
    match kind {
        DataTestKind::Unique => "unique".into(),
        DataTestKind::NotNull => "not_null".into(),
        DataTestKind::AcceptedValues { values } => {
            format!("accepted_values [{}]", values.iter().map(Value::to_string).collect::<Vec<_>>().join(", "))
        }
        DataTestKind::Relationships { to, field } => match to {
            Dependency::Model { name, .. } => format!("relationships → {name}.{field}"),
            Dependency::Source { source, table, .. } => format!("relationships → {source}.{table}.{field}"),
        },
    }
}

/// Each column's lineage, in the lineage's column order; documented columns it does not list
/// after them.
fn add_lineage(node: &mut DocNode, lineage: &Lineage) {
    let Some(table) = node.table.as_deref() else {
        return;
    };
    if let Some(reason) = lineage.errors.get(table) {
        node.lineage_error = Some(reason.clone());
    }
    let Some(t) = lineage.tables.get(table) else {
        return;
    };
    let mut rest = std::mem::take(&mut node.columns);
    for c in &t.columns {
        let mut column = match rest.iter().position(|d| d.name == c.column) {
            Some(i) => rest.remove(i),
            None => DocColumn::named(&c.column, None),
        };
        column.sources = c.sources.clone();
        column.indirect = c.indirect.clone();
        node.columns.push(column);
    }
    node.columns.extend(rest);
}
