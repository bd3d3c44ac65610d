//! What a run tells its user: a progress bar and one line per node on a terminal, plain lines
//! under cron, or one JSON object per line with `--log-format json` (for Airflow and log shippers).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::results::{NodeResult, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Reports node progress and results.
pub struct Reporter {
    format: LogFormat,
    bar: Option<ProgressBar>,
    total: AtomicUsize,
    done: AtomicUsize,
    out: Mutex<()>,
    /// OpenLineage: node starts and results are handed on as events.
    lineage: Option<super::openlineage::Hook>,
}

impl Reporter {
    pub fn new(format: LogFormat) -> Self {
        Reporter {
            format,
            bar: None,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            out: Mutex::new(()),
            lineage: None,
        }
    }

    /// Also hand every node's start and result to `hook` (OpenLineage events).
    pub fn with_lineage(mut self, hook: Option<super::openlineage::Hook>) -> Self {
        self.lineage = hook;
        self
    }

    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// Begin a phase of `total` nodes (shows a bar when stderr is a terminal in text mode).
    pub fn begin(&mut self, phase: &str, total: usize) {
        self.total.store(total, Ordering::SeqCst);
        self.done.store(0, Ordering::SeqCst);
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        match self.format {
            LogFormat::Json => self.json(json!({"event": "phase_start", "phase": phase, "nodes": total})),
            LogFormat::Text => {
                self.line(&format!("{phase}: {total} node{}", if total == 1 { "" } else { "s" }));
                if std::io::stderr().is_terminal() && total > 0 {
                    let bar = ProgressBar::new(total as u64);
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
                            .expect("valid template")
                            .progress_chars("=> "),
                    );
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bar = Some(bar);
                }
            }
        }
    }

    pub fn started(&self, kind: &str, name: &str) {
        if let Some(hook) = &self.lineage {
            hook.node_started(kind, name);
        }
        match self.format {
            LogFormat::Json => self.json(json!({"event": "node_start", "kind": kind, "name": name})),
            LogFormat::Text => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("{kind} {name}"));
                }
            }
        }
    }

    pub fn finished(&self, result: &NodeResult) {
        if let Some(hook) = &self.lineage {
            hook.node_finished(result);
        }
        let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        let total = self.total.load(Ordering::SeqCst);
        match self.format {
            LogFormat::Json => {
                let mut v = serde_json::to_value(result).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("event".into(), "node_finish".into());
                }
                self.json(v);
            }
            LogFormat::Text => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                // Models and seeds by table; tests by name (several tests share a table).
                let what = match (result.kind, &result.relation) {
                    ("test", _) | (_, None) => result.name.clone(),
                    (_, Some(relation)) => relation.clone(),
                };
                let detail = detail(result);
                self.line(&format!(
                    "{n:>3} of {total:<3} {:<5} {:<6} {what} {detail}",
                    result.status.label(),
                    result.kind,
                ));
                if let Some(msg) = &result.message {
                    if result.status.is_failure() || result.status == Status::Warn || result.status == Status::Skipped {
                        for l in msg.lines() {
                            self.line(&format!("            {l}"));
                        }
                    }
                }
            }
        }
    }

    pub fn info(&self, message: &str) {
        match self.format {
            LogFormat::Json => self.json(json!({"event": "info", "message": message})),
            LogFormat::Text => self.line(message),
        }
    }

    /// The closing summary.
    pub fn summary(&mut self, results: &[NodeResult], elapsed: f64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let count = |s: Status| results.iter().filter(|r| r.status == s).count();
        let up_to_date = count(Status::UpToDate);
        let (ok, err, skip, pass, fail, warn) = (
            count(Status::Success),
            count(Status::Error),
            count(Status::Skipped),
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Warn),
        );
        match self.format {
            LogFormat::Json => self.json(json!({
                "event": "summary", "elapsed_seconds": elapsed, "success": ok, "error": err,
                "skipped": skip, "up_to_date": up_to_date, "pass": pass, "fail": fail, "warn": warn,
            })),
            LogFormat::Text => self.line(&format!(
                "Done in {elapsed:.1}s: {ok} ok, {}{err} error, {skip} skipped; tests: {pass} passed, {fail} failed, {warn} warned",
                if up_to_date > 0 { format!("{up_to_date} up to date, ") } else { String::new() }
            )),
        }
    }

    fn line(&self, text: &str) {
        let _guard = self.out.lock().expect("reporter");
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    fn json(&self, mut value: serde_json::Value) {
        if let Some(obj) = value.as_object_mut() {
            obj.insert("ts".into(), chrono::Utc::now().to_rfc3339().into());
        }
        let _guard = self.out.lock().expect("reporter");
        println!("{value}");
    }
}

fn detail(r: &NodeResult) -> String {
    let mut parts = Vec::new();
    if let Some(op) = &r.operation {
        parts.push(op.clone());
    }
    if let Some(rows) = r.rows_written {
        parts.push(format!("{rows} rows"));
    }
    if let Some(f) = r.failures {
        if f > 0 {
            parts.push(format!("{f} failing"));
        }
    }
    if let Some(w) = &r.watermark_after {
        parts.push(format!("watermark {w}"));
    }
    parts.push(format!("{:.2}s", r.duration_seconds));
    format!("[{}]", parts.join(", "))
}
