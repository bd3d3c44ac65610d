//! Building RunEvents: the envelope (eventType, eventTime, producer, schemaURL), the job
//! (namespace, name, jobType facet), the run (id, parent and errorMessage facets) and the
//! datasets each node reads and writes (their facets: see [`super::datasets`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::graph::Graph;
use crate::lakehouse::catalog::Lakehouse;
use crate::project::Project;
use crate::project::model::{Dependency, Materialized, ModelBody};

use super::datasets::{Datasets, facet};
use super::{Flush, FlushState};
use crate::run::results::{NodeResult, Status, node_run_id};

const SPEC: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

/// The command's own run: every node's parent.
pub(super) struct Parent {
    pub job: String,
    pub run_id: String,
}

pub(super) struct Builder {
    namespace: String,
    models: Option<(Project, Graph)>,
    parent: Option<Parent>,
    datasets: Datasets,
    /// Nodes started, by unique id: their inputs and outputs as the START event named them.
    started: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// Tables written by a node that completed: (kind, name) of that node.
    written_by: BTreeMap<String, (String, String)>,
    /// Those of them tested after the node completed.
    tested_after: std::collections::BTreeSet<String>,
}

impl Builder {
    pub(super) fn new(namespace: String, lakehouse: Lakehouse, models: Option<(Project, Graph)>, parent: Option<Parent>) -> Builder {
        Builder {
            namespace,
            datasets: Datasets::new(lakehouse),
            models,
            parent,
            started: BTreeMap::new(),
            written_by: BTreeMap::new(),
            tested_after: Default::default(),
        }
    }

    /// The command's run: START when it begins, COMPLETE or FAIL (with its exit code) at the end.
    pub(super) fn parent_event(&self, event_type: &str, at: DateTime<Utc>, exit_code: i32) -> Option<Value> {
        let parent = self.parent.as_ref()?;
        let mut run_facets = serde_json::Map::new();
        if event_type == "FAIL" {
            run_facets.insert("errorMessage".into(), error_facet(&format!("the command exited with code {exit_code}"), "SQL"));
        }
        let job = self.job(&parent.job, "COMMAND");
        Some(envelope(event_type, at, json!({"runId": parent.run_id, "facets": run_facets}), job, Vec::new(), Vec::new()))
    }

    pub(super) async fn node_started(&mut self, kind: &str, name: &str, at: DateTime<Utc>) -> Option<Value> {
        let (inputs, outputs) = self.node_tables(kind, name)?;
        let unique_id = format!("{kind}.{name}");
        let inputs_json = self.datasets.inputs(&inputs, None).await;
        let outputs_json = self.datasets.outputs(&outputs, None).await;
        self.started.insert(unique_id.clone(), (inputs, outputs));
        Some(self.node_event("START", kind, name, at, serde_json::Map::new(), inputs_json, outputs_json))
    }

    pub(super) async fn node_finished(&mut self, result: &NodeResult, at: DateTime<Utc>) -> Option<Value> {
        if result.kind == "test" {
            if let Some(table) = self.datasets.record_test(result, self.models.as_ref().map(|(p, g)| (p, g))) {
                if self.written_by.contains_key(&table) {
                    self.tested_after.insert(table);
                }
            }
            return None;
        }
        // Nodes skipped without starting (an upstream failed) have no run.
        let (inputs, outputs) = self.started.remove(&result.unique_id)?;
        let mut run_facets = serde_json::Map::new();
        let event_type = match result.status {
            Status::Error | Status::Fail => {
                let message = result.message.clone().unwrap_or_else(|| format!("{} failed", result.unique_id));
                run_facets.insert("errorMessage".into(), error_facet(&message, self.language(result)));
                "FAIL"
            }
            _ => "COMPLETE",
        };
        let complete = event_type == "COMPLETE";
        if complete {
            for table in &outputs {
                self.written_by.insert(table.clone(), (result.kind.to_string(), result.name.clone()));
            }
        }
        let inputs_json = self.datasets.inputs(&inputs, Some(&result.input_snapshots)).await;
        let lineage = match (&self.models, complete && result.kind == "model") {
            (Some((project, graph)), true) => Some((project, graph)),
            _ => None,
        };
        let outputs_json = self.datasets.outputs(&outputs, complete.then_some((result, lineage))).await;
        Some(self.node_event(event_type, result.kind, &result.name, at, run_facets, inputs_json, outputs_json))
    }

    /// At the end of the command: for each node whose table was tested after it completed (a
    /// model's own tests under `lake build`), an OTHER event of its run (the spec's way to add
    /// metadata to a finished run) with the test results on its output.
    pub(super) async fn test_results(&mut self, at: DateTime<Utc>) -> Vec<Value> {
        let mut out = Vec::new();
        for table in std::mem::take(&mut self.tested_after) {
            let Some((kind, name)) = self.written_by.get(&table).cloned() else { continue };
            let outputs = self.datasets.tested(&table).await;
            out.push(self.node_event("OTHER", &kind, &name, at, serde_json::Map::new(), Vec::new(), outputs));
        }
        out
    }

    /// An ingest flush: its source (a file, object prefix or topic) in, its table out.
    pub(super) async fn flush(&mut self, flush: &Flush, at: DateTime<Utc>) -> Option<Value> {
        let job = self.job(&format!("ingest.{}", flush.source), "INGEST");
        let inputs: Vec<Value> = super::datasets::source_dataset(&flush.from).into_iter().collect();
        let tables = vec![flush.table.clone()];
        let (event_type, run_facets, outputs) = match &flush.state {
            FlushState::Started => ("START", serde_json::Map::new(), self.datasets.outputs(&tables, None).await),
            FlushState::Committed { rows, dead_letters: _, snapshot_id } => {
                let mut result = NodeResult::new("ingest", &flush.source, Some(flush.table.clone()), Status::Success);
                result.rows_written = Some(*rows);
                result.snapshot_id = *snapshot_id;
                ("COMPLETE", serde_json::Map::new(), self.datasets.outputs(&tables, Some((&result, None))).await)
            }
            FlushState::Failed { message } => {
                let mut facets = serde_json::Map::new();
                facets.insert("errorMessage".into(), error_facet(message, "Rust"));
                ("FAIL", facets, self.datasets.outputs(&tables, None).await)
            }
        };
        Some(envelope(event_type, at, json!({"runId": flush.id, "facets": run_facets}), job, inputs, outputs))
    }

    #[allow(clippy::too_many_arguments)]
    fn node_event(
        &self,
        event_type: &str,
        kind: &str,
        name: &str,
        at: DateTime<Utc>,
        mut run_facets: serde_json::Map<String, Value>,
        inputs: Vec<Value>,
        outputs: Vec<Value>,
    ) -> Value {
        let unique_id = format!("{kind}.{name}");
        let invocation = self.parent.as_ref().map(|p| p.run_id.clone()).unwrap_or_default();
        if let Some(parent) = &self.parent {
            let mut f = facet("https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet");
            f.insert("run".into(), json!({"runId": parent.run_id}));
            f.insert("job".into(), json!({"namespace": self.namespace, "name": parent.job}));
            run_facets.insert("parent".into(), Value::Object(f));
        }
        let job_name = if kind == "model" { name.to_string() } else { unique_id.clone() };
        let job = self.job(&job_name, &kind.to_ascii_uppercase());
        let run = json!({"runId": node_run_id(&invocation, &unique_id), "facets": run_facets});
        envelope(event_type, at, run, job, inputs, outputs)
    }

    fn job(&self, name: &str, job_type: &str) -> Value {
        let mut f = facet("https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet");
        f.insert("processingType".into(), "BATCH".into());
        f.insert("integration".into(), "LAKE".into());
        f.insert("jobType".into(), job_type.into());
        json!({"namespace": self.namespace, "name": name, "facets": {"jobType": f}})
    }

    fn language(&self, result: &NodeResult) -> &'static str {
        let rust = self.models.as_ref().is_some_and(|(_, graph)| {
            result.kind == "model"
                && graph.index_of(&result.name).is_some_and(|i| matches!(graph.model(i).body, ModelBody::Rust { .. }))
        });
        if rust { "Rust" } else { "SQL" }
    }

    /// The tables (`namespace.table`, or `file:<path>` for a seed's files) a node reads and
    /// writes; `None` for a node that is no model or seed of the project.
    fn node_tables(&self, kind: &str, name: &str) -> Option<(Vec<String>, Vec<String>)> {
        let (project, graph) = self.models.as_ref()?;
        match kind {
            "model" => {
                let model = graph.model(graph.index_of(name)?);
                Some((model_inputs(graph, model), vec![model.table_name()]))
            }
            "seed" => {
                let seed = project.seeds.iter().find(|s| s.name == name)?;
                let files = seed.files.iter().map(|f| format!("file:{}", project.config.root.join(f).display())).collect();
                Some((files, vec![format!("{}.{}", seed.namespace, seed.table)]))
            }
            _ => None,
        }
    }
}

/// The tables a model reads: its sources and models, through ephemeral models to theirs.
fn model_inputs(graph: &Graph, model: &crate::project::model::Model) -> Vec<String> {
    let mut out = Vec::new();
    for dep in &model.depends_on {
        match dep {
            Dependency::Source { source, table, .. } => out.push(format!("{source}.{table}")),
            Dependency::Model { name, .. } => {
                if let Some(m) = graph.index_of(name).map(|i| graph.model(i)) {
                    if m.config.materialized == Materialized::Ephemeral {
                        out.extend(model_inputs(graph, m));
                    } else {
                        out.push(m.table_name());
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn envelope(event_type: &str, at: DateTime<Utc>, run: Value, job: Value, inputs: Vec<Value>, outputs: Vec<Value>) -> Value {
    json!({
        "eventType": event_type,
        "eventTime": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "producer": super::PRODUCER,
        "schemaURL": SPEC,
        "run": run,
        "job": job,
        "inputs": inputs,
        "outputs": outputs,
    })
}

fn error_facet(message: &str, language: &str) -> Value {
    let mut f = facet("https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet");
    f.insert("message".into(), crate::project::secrets::scrub(message).into());
    f.insert("programmingLanguage".into(), language.into());
    Value::Object(f)
}
