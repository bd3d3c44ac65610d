//! Datasets and their facets. A table is named as OpenLineage names a table format on storage:
//! namespace = its location's scheme and authority (`file`, `s3://bucket`), name = the path of
//! its location; a `symlinks` facet carries its catalog identifier (`<warehouse>` +
//! `namespace.table`, type TABLE).
//!
//! Facets: `schema` (the table's current Iceberg schema), `lake_iceberg` (the snapshot read or
//! written: a custom facet, schema in `schemas/openlineage/LakeIcebergDatasetFacet.json`), on
//! outputs `outputStatistics` (rows written, bytes and data files added) and `columnLineage`
//! (from [`project_lineage`](crate::run::lineage::project_lineage)), on inputs
//! `dataQualityAssertions` (the data tests on that table this command ran so far; a table
//! tested after the node that wrote it completed gets them in an OTHER event of that run).

use std::collections::{BTreeMap, BTreeSet};

use iceberg::spec::{NestedFieldRef, Type};
use iceberg::table::Table;
use serde_json::{Map, Value, json};

use crate::engine::lineage::{Edge, Kind, Lineage};
use crate::graph::Graph;
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::project::Project;
use crate::project::model::{DataTest, DataTestKind};
use crate::run::results::{NodeResult, Status};

const LAKE_ICEBERG_SCHEMA: &str =
    "https://raw.githubusercontent.com/lake/lake/main/schemas/openlineage/LakeIcebergDatasetFacet.json#/$defs/LakeIcebergDatasetFacet";

/// A facet with `_producer` and `_schemaURL`.
pub(super) fn facet(schema_url: &str) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("_producer".into(), super::PRODUCER.into());
    f.insert("_schemaURL".into(), schema_url.into());
    f
}

/// OpenLineage's (namespace, name) of a storage location: `file:///p` → (`file`, `/p`),
/// `s3://bucket/key` → (`s3://bucket`, `key`), `hdfs://host:port/p` → (`hdfs://host:port`, `/p`).
pub fn location_dataset(location: &str) -> (String, String) {
    let Ok(url) = url::Url::parse(location) else {
        return ("file".into(), location.to_string());
    };
    let host = url.host_str().unwrap_or_default().to_string();
    if url.scheme() == "file" {
        let path = url.to_file_path().map(|p| p.display().to_string()).unwrap_or_else(|_| url.path().to_string());
        return if host.is_empty() || host == "localhost" { ("file".into(), path) } else { (format!("file://{host}"), path) };
    }
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    let path = url.path();
    // Object stores name an object by its key, without the leading slash.
    let object_store = matches!(url.scheme(), "s3" | "s3a" | "s3n" | "gs" | "gcs" | "wasbs" | "abfss" | "oss");
    let name = if object_store { path.trim_start_matches('/').to_string() } else { path.to_string() };
    (format!("{}://{authority}", url.scheme()), name)
}

/// The dataset an ingest source reads: a Kafka topic, an object prefix, a file or glob;
/// `None` for a webhook server.
pub(super) fn source_dataset(from: &str) -> Option<Value> {
    if from.starts_with("http://") || from.starts_with("https://") || from == "-" {
        return None;
    }
    let (namespace, name) = match from.strip_prefix("kafka://") {
        Some(rest) => {
            let (servers, topic) = rest.split_once('/')?;
            let first = servers.split(',').next().unwrap_or(servers);
            (format!("kafka://{first}"), topic.to_string())
        }
        None => location_dataset(from),
    };
    Some(json!({"namespace": namespace, "name": name, "facets": {}}))
}

/// Datasets of the catalog, and what this command learned about them.
pub(super) struct Datasets {
    lakehouse: Lakehouse,
    /// Table → data test results seen (assertions).
    assertions: BTreeMap<String, Vec<Value>>,
    lineage: Option<Lineage>,
    /// A model was built since the lineage was computed.
    stale: bool,
}

impl Datasets {
    pub(super) fn new(lakehouse: Lakehouse) -> Datasets {
        Datasets { lakehouse, assertions: BTreeMap::new(), lineage: None, stale: true }
    }

    /// A data test's result, as an assertion on the table it tested; returns that table.
    pub(super) fn record_test(&mut self, result: &NodeResult, models: Option<(&Project, &Graph)>) -> Option<String> {
        let (Some(table), Some((project, graph))) = (&result.relation, models) else { return None };
        if !matches!(result.status, Status::Pass | Status::Fail | Status::Warn | Status::Error) {
            return None;
        }
        let test = graph
            .models()
            .iter()
            .flat_map(|m| m.tests.iter())
            .chain(project.sources.iter().flat_map(|s| s.tests.iter()))
            .find(|t| t.name == result.name);
        let mut assertion = json!({"assertion": test.map(test_kind).unwrap_or("test"), "success": result.status == Status::Pass, "name": result.name});
        if let Some(t) = test {
            if let Some(c) = &t.column {
                assertion["column"] = c.clone().into();
            }
            assertion["severity"] = serde_json::to_value(t.severity).unwrap_or_default();
        }
        if let Some(failures) = result.failures {
            assertion["actual"] = format!("{failures} failing rows").into();
            assertion["expected"] = "0 failing rows".into();
        }
        self.assertions.entry(table.clone()).or_default().push(assertion);
        Some(table.clone())
    }

    /// A table tested after it was written: the dataset with its `dataQualityAssertions`.
    pub(super) async fn tested(&mut self, table: &str) -> Vec<Value> {
        let (mut dataset, _) = self.dataset(table, None).await;
        if let Some(f) = self.assertions_facet(table) {
            dataset["facets"]["dataQualityAssertions"] = f;
        }
        vec![dataset]
    }

    fn assertions_facet(&self, table: &str) -> Option<Value> {
        let assertions = self.assertions.get(table)?;
        let mut f = facet("https://openlineage.io/spec/facets/1-1-0/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet");
        f.insert("assertions".into(), assertions.clone().into());
        Some(f.into())
    }

    /// Input datasets; `snapshots` are the snapshot ids the node read.
    pub(super) async fn inputs(&mut self, tables: &[String], snapshots: Option<&BTreeMap<String, Option<i64>>>) -> Vec<Value> {
        let mut out = Vec::new();
        for name in tables {
            let snapshot = snapshots.and_then(|s| s.get(name).copied().flatten());
            let (mut dataset, _) = self.dataset(name, snapshot).await;
            if let Some(f) = self.assertions_facet(name) {
                dataset["inputFacets"] = json!({"dataQualityAssertions": f});
            }
            out.push(dataset);
        }
        out
    }

    /// Output datasets; with `finished`, the node's result (statistics, snapshot) and, for a
    /// model built, the project (column lineage).
    pub(super) async fn outputs(&mut self, tables: &[String], finished: Option<(&NodeResult, Option<(&Project, &Graph)>)>) -> Vec<Value> {
        let mut out = Vec::new();
        for name in tables {
            let snapshot = finished.and_then(|(r, _)| r.snapshot_id);
            let (mut dataset, table) = self.dataset(name, snapshot).await;
            if let Some((result, models)) = finished {
                if let Some(rows) = result.rows_written {
                    let mut f = facet("https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet");
                    f.insert("rowCount".into(), rows.into());
                    let added = |key: &str| snapshot_summary(table.as_ref(), snapshot, key);
                    if let Some(bytes) = added("added-files-size") {
                        f.insert("size".into(), bytes.into());
                    }
                    if let Some(files) = added("added-data-files") {
                        f.insert("fileCount".into(), files.into());
                    }
                    dataset["outputFacets"] = json!({"outputStatistics": f});
                }
                if let Some((project, graph)) = models {
                    self.stale = true;
                    if let Some(f) = self.column_lineage(name, project, graph).await {
                        dataset["facets"]["columnLineage"] = f;
                    }
                }
            }
            out.push(dataset);
        }
        out
    }

    /// A dataset with its `schema`, `symlinks` and `lake_iceberg` facets, and the table (when
    /// it exists). `file:<path>` names a file (a seed's).
    async fn dataset(&self, name: &str, snapshot: Option<i64>) -> (Value, Option<Table>) {
        if let Some(path) = name.strip_prefix("file:") {
            return (json!({"namespace": "file", "name": path, "facets": {}}), None);
        }
        let table = self.load(name).await;
        let (namespace, path) = self.dataset_id(name, table.as_ref());
        let mut facets = Map::new();
        if let Some(t) = &table {
            let mut f = facet("https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet");
            f.insert("fields".into(), schema_fields(t.metadata().current_schema().as_struct().fields()).into());
            facets.insert("schema".into(), f.into());
        }
        if let Some(warehouse) = self.lakehouse.spec().warehouse() {
            let mut f = facet("https://openlineage.io/spec/facets/1-0-1/SymlinksDatasetFacet.json#/$defs/SymlinksDatasetFacet");
            let (ns, _) = location_dataset(warehouse);
            f.insert("identifiers".into(), json!([{"namespace": ns_with_path(warehouse, &ns), "name": name, "type": "TABLE"}]));
            facets.insert("symlinks".into(), f.into());
        }
        let snapshot = snapshot.or_else(|| table.as_ref().and_then(|t| t.metadata().current_snapshot_id()));
        let mut f = facet(LAKE_ICEBERG_SCHEMA);
        f.insert("catalog".into(), self.lakehouse.spec().name().into());
        f.insert("table".into(), name.into());
        f.insert("snapshotId".into(), snapshot.map(Value::from).unwrap_or(Value::Null));
        facets.insert("lake_iceberg".into(), f.into());
        (json!({"namespace": namespace, "name": path, "facets": facets}), table)
    }

    /// The table's (namespace, name): from its location, or where the catalog will put it.
    fn dataset_id(&self, name: &str, table: Option<&Table>) -> (String, String) {
        if let Some(t) = table {
            return location_dataset(t.metadata().location());
        }
        match self.lakehouse.spec().warehouse() {
            Some(w) => location_dataset(&format!("{}/{}", w.trim_end_matches('/'), name.replace('.', "/"))),
            None => (format!("iceberg://{}", self.lakehouse.spec().name()), name.to_string()),
        }
    }

    async fn load(&self, name: &str) -> Option<Table> {
        let ident = table_ident(name).ok()?;
        self.lakehouse.load_table(&ident).await.ok().flatten()
    }

    /// The `columnLineage` facet of a model's table.
    async fn column_lineage(&mut self, table: &str, project: &Project, graph: &Graph) -> Option<Value> {
        let known = |l: &Lineage| l.tables.get(table).is_some_and(|t| t.columns.iter().all(|c| c.column != "*"));
        if self.stale && !self.lineage.as_ref().is_some_and(known) {
            self.lineage = crate::run::lineage::project_lineage(project, graph, &self.lakehouse).await.ok();
            self.stale = false;
        }
        let lineage = self.lineage.as_ref()?;
        let columns = lineage.tables.get(table)?.columns.clone();
        let mut ids: BTreeMap<String, (String, String)> = BTreeMap::new();
        let read: BTreeSet<&str> = columns.iter().flat_map(|c| c.sources.iter().chain(&c.indirect)).map(|e| e.table.as_str()).collect();
        for t in read {
            let loaded = self.load(t).await;
            ids.insert(t.to_string(), self.dataset_id(t, loaded.as_ref()));
        }
        let mut fields = Map::new();
        for column in columns.iter().filter(|c| c.column != "*") {
            let input_fields: Vec<Value> = column
                .sources
                .iter()
                .chain(&column.indirect)
                .flat_map(|e| expand(e, lineage))
                .filter_map(|(e, col)| {
                    let (namespace, name) = ids.get(&e.table)?;
                    Some(json!({"namespace": namespace, "name": name, "field": col, "transformations": [transformation(e)]}))
                })
                .collect();
            fields.insert(column.column.clone(), json!({"inputFields": input_fields}));
        }
        let mut f = facet("https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet");
        f.insert("fields".into(), fields.into());
        Some(f.into())
    }
}

/// An edge's source columns: `*` (an opaque model reads every column) as the input's columns.
fn expand<'a>(edge: &'a Edge, lineage: &Lineage) -> Vec<(&'a Edge, String)> {
    if edge.column != "*" {
        return vec![(edge, edge.column.clone())];
    }
    match lineage.tables.get(&edge.table) {
        Some(t) => t.columns.iter().filter(|c| c.column != "*").map(|c| (edge, c.column.clone())).collect(),
        None => Vec::new(),
    }
}

/// OpenLineage's transformation type and subtype of a lineage edge.
fn transformation(edge: &Edge) -> Value {
    let (kind, subtype, description) = match edge.kind {
        Kind::Direct => ("DIRECT", "IDENTITY", "copied, renamed or cast"),
        Kind::Expression => ("DIRECT", "TRANSFORMATION", "computed by an expression"),
        Kind::Window => ("DIRECT", "TRANSFORMATION", "a window function's argument, partition or order"),
        Kind::Aggregate => ("DIRECT", "AGGREGATION", "an aggregate's argument"),
        Kind::Opaque => ("DIRECT", "TRANSFORMATION", "read by a Rust model (opaque)"),
        Kind::Filter => ("INDIRECT", "FILTER", "a filter reads it"),
        Kind::Join => ("INDIRECT", "JOIN", "a join key or condition"),
        Kind::GroupBy => ("INDIRECT", "GROUP_BY", "a GROUP BY key"),
    };
    let description = if edge.via.is_empty() { description.to_string() } else { format!("{description}, via {}", edge.via.join(", ")) };
    json!({"type": kind, "subtype": subtype, "description": description, "masking": false})
}

/// The schema facet's fields: name, Iceberg type, doc, position; struct fields nested.
fn schema_fields(fields: &[NestedFieldRef]) -> Vec<Value> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut v = json!({"name": f.name, "type": f.field_type.to_string(), "ordinal_position": i + 1});
            if let Some(doc) = &f.doc {
                v["description"] = doc.clone().into();
            }
            if let Type::Struct(s) = f.field_type.as_ref() {
                v["type"] = "struct".into();
                v["fields"] = schema_fields(s.fields()).into();
            }
            v
        })
        .collect()
}

fn test_kind(test: &DataTest) -> &'static str {
    match test.kind {
        DataTestKind::Unique => "unique",
        DataTestKind::NotNull => "not_null",
        DataTestKind::AcceptedValues { .. } => "accepted_values",
        DataTestKind::Relationships { .. } => "relationships",
    }
}

/// A number from the summary of `snapshot` of `table`.
fn snapshot_summary(table: Option<&Table>, snapshot: Option<i64>, key: &str) -> Option<u64> {
    let snapshot = table?.metadata().snapshot_by_id(snapshot?)?;
    snapshot.summary().additional_properties.get(key)?.parse().ok()
}

/// A symlink's namespace: the warehouse location (scheme, authority and path).
fn ns_with_path(warehouse: &str, namespace: &str) -> String {
    let (_, path) = location_dataset(warehouse);
    if namespace == "file" { format!("file://{path}") } else { format!("{namespace}/{}", path.trim_start_matches('/')) }
}
