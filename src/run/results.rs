//! Results of executing nodes, and the artifacts written for schedulers and other tools:
//! `target/manifest.json` (the parsed project) and `target/run_results.json` (what a run did).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::engine::session::NotReadOnly;
use crate::graph::Graph;
use crate::lakehouse::catalog::CatalogSpec;
use crate::lakehouse::fault;
use crate::project::Project;

/// Outcome of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A model or seed committed (or had nothing to commit).
    Success,
    /// A model or seed failed.
    Error,
    /// Not run because an upstream node failed (or `--fail-fast` stopped the run).
    Skipped,
    /// Not run because its table is up to date: the same inputs and the same compiled model
    /// as its last build (`skipped` in `run_results.json`, with that message).
    #[serde(rename = "skipped")]
    UpToDate,
    /// A data test found no failing rows.
    Pass,
    /// A data test with severity `error` found failing rows.
    Fail,
    /// A data test with severity `warn` found failing rows.
    Warn,
}

impl Status {
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Error | Status::Fail)
    }

    /// The node's table is as it should be: built now, or up to date.
    pub fn is_ok(self) -> bool {
        matches!(self, Status::Success | Status::UpToDate)
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Success => "OK",
            Status::Error => "ERROR",
            Status::Skipped | Status::UpToDate => "SKIP",
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
        }
    }
}

/// Why a node failed, which decides the exit code: `environment` (the catalog or storage
/// failed: 3), `usage` (the project asked for something not allowed: 2), `model` (1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Model,
    Usage,
    Environment,
}

/// What happened to one node, as written to `run_results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    /// `model.<name>`, `test.<name>`, `seed.<name>`.
    pub unique_id: String,
    pub kind: &'static str,
    pub name: String,
    /// The Iceberg table written or tested, if any.
    pub relation: Option<String>,
    pub status: Status,
    pub message: Option<String>,
    /// Set when `status` is `error`.
    pub error_kind: Option<ErrorKind>,
    pub duration_seconds: f64,
    pub rows_written: Option<u64>,
    pub failures: Option<u64>,
    pub operation: Option<String>,
    pub files_added: Option<usize>,
    pub files_removed: Option<usize>,
    /// Existing data files read and rewritten without replaced rows (merge, replace_range).
    pub files_rewritten: Option<usize>,
    /// Bytes of those files.
    pub bytes_rewritten: Option<u64>,
    /// Position delete files written (merge-on-read merge).
    pub delete_files_added: Option<usize>,
    pub snapshot_id: Option<i64>,
    pub watermark_before: Option<String>,
    pub watermark_after: Option<String>,
    /// Snapshot ids of the tables this node read.
    pub input_snapshots: BTreeMap<String, Option<i64>>,
    /// Incremental runs with `watermark: snapshot`: per input, the data files read (those
    /// appended since the last run; the rest of the table is not read).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub input_files_read: BTreeMap<String, usize>,
}

impl NodeResult {
    pub fn new(kind: &'static str, name: &str, relation: Option<String>, status: Status) -> Self {
        NodeResult {
            unique_id: format!("{kind}.{name}"),
            kind,
            name: name.to_string(),
            relation,
            status,
            message: None,
            error_kind: None,
            duration_seconds: 0.0,
            rows_written: None,
            failures: None,
            operation: None,
            files_added: None,
            files_removed: None,
            files_rewritten: None,
            bytes_rewritten: None,
            delete_files_added: None,
            snapshot_id: None,
            watermark_before: None,
            watermark_after: None,
            input_snapshots: BTreeMap::new(),
            input_files_read: BTreeMap::new(),
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Mark the node failed by `error`. A catalog or storage fault becomes one line naming
    /// the setting to fix (see [`crate::lakehouse::fault`]); other errors keep their causes
    /// after `context` (e.g. `model staging.x (models/staging/x.sql)`).
    pub fn fail(&mut self, context: &str, error: &anyhow::Error, catalog: &CatalogSpec) {
        self.status = Status::Error;
        let (kind, message) = if let Some(fault) = fault::classify(error) {
            (ErrorKind::Environment, format!("{context}: {}", fault.line(catalog)))
        } else if error.chain().any(|c| c.is::<NotReadOnly>()) {
            (ErrorKind::Usage, format!("{context}: {error:#}"))
        } else {
            (ErrorKind::Model, format!("{context}: {error:#}"))
        };
        self.error_kind = Some(kind);
        self.message = Some(crate::project::secrets::scrub(&message));
    }
}

/// The exit code of a command that produced `results`: 3 when a node failed on the catalog or
/// storage, else 2 when one asked for something not allowed, else 1 on any failure, else 0.
pub fn exit_code(results: &[NodeResult]) -> i32 {
    let worst = results
        .iter()
        .filter(|r| r.status.is_failure())
        .map(|r| r.error_kind.unwrap_or(ErrorKind::Model))
        .max();
    match worst {
        None => 0,
        Some(ErrorKind::Model) => 1,
        Some(ErrorKind::Usage) => 2,
        Some(ErrorKind::Environment) => 3,
    }
}

/// The run id of one node of an invocation: a UUIDv7 with the invocation's time and bits
/// derived from the invocation id and the node's `unique_id` (the same inputs give the same id).
/// OpenLineage events carry it (see [`crate::run::openlineage`]); `run_results.json` records it
/// per node as `run_id`.
pub fn node_run_id(invocation_id: &str, unique_id: &str) -> String {
    use sha2::Digest;
    let millis = uuid::Uuid::parse_str(invocation_id)
        .ok()
        .and_then(|u| u.get_timestamp())
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        })
        .unwrap_or(0);
    let digest = sha2::Sha256::digest(format!("{invocation_id}/{unique_id}").as_bytes());
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid().to_string()
}

/// Write `target/run_results.json`.
pub fn write_run_results(
    dir: &Path,
    run_id: &str,
    command: &str,
    started: chrono::DateTime<chrono::Utc>,
    elapsed: f64,
    results: &[NodeResult],
    read_snapshots: &BTreeMap<String, Option<i64>>,
) -> Result<()> {
    let doc = json!({
        "metadata": {
            "lake_version": env!("CARGO_PKG_VERSION"),
            "invocation_id": run_id,
            "command": command,
            "generated_at": chrono::Utc::now().to_rfc3339(),
            "started_at": started.to_rfc3339(),
        },
        "elapsed_time": elapsed,
        "source_snapshots": read_snapshots,
        "results": results.iter().map(|r| with_run_id(r, run_id)).collect::<Vec<_>>(),
    });
    write_json(&dir.join("run_results.json"), &doc)
}

/// A result as `run_results.json` writes it: with its node's run id.
fn with_run_id(result: &NodeResult, invocation_id: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(result).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("run_id".into(), node_run_id(invocation_id, &result.unique_id).into());
    }
    v
}

/// Write `target/manifest.json`: nodes, dependencies, configs and file paths.
pub fn write_manifest(dir: &Path, project: &Project, graph: &Graph) -> Result<()> {
    let mut nodes = serde_json::Map::new();
    for (i, m) in graph.models().iter().enumerate() {
        let parents: Vec<String> = graph
            .parents(i)
            .into_iter()
            .map(|p| format!("model.{}", graph.model(p).name))
            .collect();
        let sources: Vec<String> = m
            .depends_on
            .iter()
            .filter_map(|d| match d {
                crate::project::model::Dependency::Source { source, table, .. } => {
                    Some(format!("source.{source}.{table}"))
                }
                _ => None,
            })
            .collect();
        nodes.insert(
            format!("model.{}", m.name),
            json!({
                "name": m.name,
                "resource_type": "model",
                "layer": m.layer,
                "relation": if m.config.materialized == crate::project::model::Materialized::Ephemeral { None } else { Some(m.table_name()) },
                "original_file_path": m.path,
                "language": match &m.body { crate::project::model::ModelBody::Sql { .. } => "sql", _ => "rust" },
                "function": match &m.body { crate::project::model::ModelBody::Rust { function } => Some(function), _ => None },
                "config": m.config,
                "description": m.description,
                "columns": m.columns,
                "data_tests": m.tests,
                "depends_on": { "nodes": parents, "sources": sources },
            }),
        );
    }
    let sources: serde_json::Map<String, serde_json::Value> = project
        .sources
        .iter()
        .map(|s| {
            (
                format!("source.{}.{}", s.source, s.table),
                json!({
                    "source_name": s.source,
                    "name": s.table,
                    "relation": s.table_name(),
                    "description": s.description,
                    "original_file_path": s.path,
                    "data_tests": s.tests,
                }),
            )
        })
        .collect();
    let seeds: serde_json::Map<String, serde_json::Value> = project
        .seeds
        .iter()
        .map(|s| (format!("seed.{}", s.name), serde_json::to_value(s).unwrap_or_default()))
        .collect();
    let tests: serde_json::Map<String, serde_json::Value> = project
        .singular_tests
        .iter()
        .map(|t| {
            (
                format!("test.{}", t.name),
                json!({"name": t.name, "original_file_path": t.path, "depends_on": t.depends_on, "severity": t.severity}),
            )
        })
        .collect();
    let doc = json!({
        "metadata": {
            "lake_version": env!("CARGO_PKG_VERSION"),
            "project_name": project.config.name,
            "generated_at": chrono::Utc::now().to_rfc3339(),
            "target": project.config.target,
        },
        "layers": project.config.layers,
        "nodes": nodes,
        "sources": sources,
        "seeds": seeds,
        "singular_tests": tests,
    });
    write_json(&dir.join("manifest.json"), &doc)
}

fn write_json(path: &Path, doc: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // A private temporary name: concurrent runs of one project each write whole files.
    let tmp = path.with_extension(format!("json.{}.tmp", uuid::Uuid::now_v7()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(doc)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
