//! OpenLineage run events (spec 2-0-2): with `[openlineage]` in `lake.toml`, every model run,
//! seed load and ingest flush is sent as a START event, then COMPLETE or FAIL; a node whose
//! table was tested after it completed gets an OTHER event with the results at the end.
//!
//! The invariant: lineage never fails or slows what it describes. The run hands each node's
//! start and [`NodeResult`] to an [`Emitter`] through a channel (the [`Hook`] a
//! [`Reporter`](super::report::Reporter) carries); one background task builds the events
//! (reading table metadata and [`project_lineage`](super::lineage::project_lineage), never
//! data) and sends them, one request at a time, each bounded by `timeout_seconds`. At the end
//! of the command [`Emitter::finish`] waits a bounded time for what is queued; an endpoint that
//! cannot be reached or answers non-2xx stops the sending and is reported as one WARN line
//! (without the API key), and the command's exit code is unchanged.
//!
//! Run ids: a command's `invocation_id` (`run_results.json`) is a UUIDv7 and the run id of the
//! parent job `lake.<command>`; each node's run id is derived from it and the node's
//! `unique_id` ([`node_run_id`](super::results::node_run_id), also written to
//! `run_results.json` as the node's `run_id`). An ingest flush's run id is its flush id, the
//! `lake.ingest.flush-id` of the snapshot it committed.
//!
//! ```no_run
//! # async fn f(project: lake::project::Project, graph: lake::graph::Graph, lakehouse: lake::lakehouse::catalog::Lakehouse) {
//! let config = project.config.openlineage.clone().expect("[openlineage] is set");
//! let run_id = uuid::Uuid::now_v7().to_string();
//! let emitter = lake::run::openlineage::Emitter::start(&config, lakehouse, Some((project, graph)), Some(("run", &run_id)));
//! let hook = emitter.hook(); // given to the Reporter: node starts and results become events
//! emitter.finish(0).await;   // bounded wait; warns once if events could not be sent
//! # }
//! ```

mod datasets;
mod events;
mod transport;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::graph::Graph;
use crate::lakehouse::catalog::Lakehouse;
use crate::project::Project;
use crate::project::openlineage::OpenLineageConfig;

use super::results::NodeResult;

/// The producer URI every event and facet carries.
pub const PRODUCER: &str = concat!("https://github.com/lake/lake/tree/v", env!("CARGO_PKG_VERSION"));

/// What the run tells the background task.
enum Msg {
    NodeStarted { kind: String, name: String, at: DateTime<Utc> },
    NodeFinished { result: Box<NodeResult>, at: DateTime<Utc> },
    Flush { flush: Flush, at: DateTime<Utc> },
    Close { exit_code: i32, done: oneshot::Sender<transport::Outcome> },
}

/// One ingest flush, as the emitter is told of it.
#[derive(Debug, Clone)]
pub struct Flush {
    /// The ingest source (`[ingest.<source>]`).
    pub source: String,
    /// Where it reads (`from`).
    pub from: String,
    /// The table written, `namespace.table`.
    pub table: String,
    /// The flush id, a UUIDv7: the event's run id.
    pub id: String,
    pub state: FlushState,
}

#[derive(Debug, Clone)]
pub enum FlushState {
    Started,
    Committed { rows: u64, dead_letters: u64, snapshot_id: Option<i64> },
    Failed { message: String },
}

/// Hands node starts, results and flushes to the emitter; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Hook {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Hook {
    pub fn node_started(&self, kind: &str, name: &str) {
        let _ = self.tx.send(Msg::NodeStarted { kind: kind.to_string(), name: name.to_string(), at: Utc::now() });
    }

    pub fn node_finished(&self, result: &NodeResult) {
        let _ = self.tx.send(Msg::NodeFinished { result: Box::new(result.clone()), at: Utc::now() });
    }

    pub fn flush(&self, flush: Flush) {
        let _ = self.tx.send(Msg::Flush { flush, at: Utc::now() });
    }
}

/// The background task that builds and sends a command's events.
pub struct Emitter {
    hook: Hook,
    wait: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl Emitter {
    /// Start the background task. `models` is the project and its graph (for model and seed
    /// events; `lake ingest` has none); `parent` the command and its invocation id, sent as
    /// the parent run of every node (and as a run of its own, `lake.<command>`).
    pub fn start(config: &OpenLineageConfig, lakehouse: Lakehouse, models: Option<(Project, Graph)>, parent: Option<(&str, &str)>) -> Emitter {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = transport::Sink::new(config);
        let parent = parent.map(|(command, run_id)| events::Parent { job: format!("lake.{command}"), run_id: run_id.to_string() });
        let builder = events::Builder::new(config.namespace.clone(), lakehouse, models, parent);
        let task = tokio::spawn(run(builder, sink, rx));
        let hook = Hook { tx };
        Emitter { hook, wait: config.timeout * 2, task }
    }

    pub fn hook(&self) -> Hook {
        self.hook.clone()
    }

    /// Wait (at most twice `timeout_seconds` beyond what is being sent) for the queued events,
    /// then print one WARN line if some could not be sent. Never fails.
    pub async fn finish(self, exit_code: i32) {
        let (done, outcome) = oneshot::channel();
        let _ = self.hook.tx.send(Msg::Close { exit_code, done });
        match tokio::time::timeout(self.wait, outcome).await {
            Ok(Ok(outcome)) => outcome.warn(),
            _ => {
                self.task.abort();
                tracing::warn!(
                    "OpenLineage: events still queued after waiting {:.0}s were not sent; the run itself is unaffected",
                    self.wait.as_secs_f64()
                );
            }
        }
    }
}

/// The background task: one event at a time, in the order the run reported them.
async fn run(mut builder: events::Builder, mut sink: transport::Sink, mut rx: mpsc::UnboundedReceiver<Msg>) {
    if let Some(event) = builder.parent_event("START", Utc::now(), 0) {
        sink.send(&event).await;
    }
    while let Some(msg) = rx.recv().await {
        let built = match msg {
            Msg::NodeStarted { kind, name, at } => builder.node_started(&kind, &name, at).await,
            Msg::NodeFinished { result, at } => builder.node_finished(&result, at).await,
            Msg::Flush { flush, at } => builder.flush(&flush, at).await,
            Msg::Close { exit_code, done } => {
                for event in builder.test_results(Utc::now()).await {
                    sink.send(&event).await;
                }
                if let Some(event) = builder.parent_event(if exit_code == 0 { "COMPLETE" } else { "FAIL" }, Utc::now(), exit_code) {
                    sink.send(&event).await;
                }
                let _ = done.send(sink.outcome());
                return;
            }
        };
        if let Some(event) = built {
            sink.send(&event).await;
        }
    }
}
