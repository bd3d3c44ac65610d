//! Real Apache Airflow (3.x, from the venv `.ci/run` installs) runs the repository's `dags/`
//! against a fresh copy of the demo project: the DAG files import with no errors,
//! `airflow dags test lake_daily` runs every task by calling the `lake` test binary, a failed
//! model fails its task at once (no retry) and its downstream task never runs, and an
//! unreachable catalog (exit code 3) is the one failure that is retried.
//!
//! Each test has its own throwaway `AIRFLOW_HOME` (SQLite metadata DB, a copy of `dags/`, no
//! example DAGs) and reads task states from that metadata DB, where `dags test` leaves them.
//! `LAKE_AIRFLOW_BIN` names another `airflow` binary.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::s3::free_port;
use crate::support::{lake_bin, TestProject};

/// Longest a `dags test` of the three-task DAG may take (it takes ~30 s on a debug build).
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

fn airflow_bin() -> PathBuf {
    let bin = match std::env::var_os("LAKE_AIRFLOW_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(&std::env::var("HOME").expect("HOME")).join(".cache/lake-tools/airflow-venv/bin/airflow"),
    };
    assert!(
        bin.is_file(),
        "Apache Airflow not found at {} (`bash .ci/run` installs it into $HOME/.cache/lake-tools/airflow-venv; \
         LAKE_AIRFLOW_BIN names another `airflow` binary)",
        bin.display()
    );
    bin
}

/// A task instance as the metadata DB holds it.
#[derive(Debug, Clone, PartialEq)]
struct TaskState {
    /// `success`, `failed`, `upstream_failed`, `up_for_retry`, ... or `None` when never scheduled.
    state: Option<String>,
    try_number: i64,
    /// Earlier tries of this task instance (Airflow keeps one row per try that was retried).
    earlier_tries: i64,
}

/// How a `dags test` ended.
struct Finished {
    /// Exit code, or `None` when it was stopped (by `stop` or the timeout).
    code: Option<i32>,
    timed_out: bool,
    output: String,
}

/// A throwaway Airflow installation whose `lake_project_dir` Variable is `project`.
struct Airflow {
    home: tempfile::TempDir,
    bin: PathBuf,
}

impl Airflow {
    fn new(project: &Path) -> Airflow {
        let bin = airflow_bin();
        let home = tempfile::tempdir().expect("tempdir");
        let dags = Path::new(env!("CARGO_MANIFEST_DIR")).join("dags");
        std::fs::create_dir(home.path().join("dags")).expect("mkdir dags");
        for f in std::fs::read_dir(&dags).expect("dags/") {
            let f = f.expect("entry").path();
            if f.extension().and_then(|e| e.to_str()) == Some("py") {
                std::fs::copy(&f, home.path().join("dags").join(f.file_name().expect("name"))).expect("copy dag");
            }
        }
        let airflow = Airflow { home, bin };
        airflow.ok(&["db", "migrate"]);
        airflow.ok(&["variables", "set", "lake_project_dir", project.to_str().expect("utf-8 path")]);
        airflow
    }

    /// `airflow ARGS` in this installation, with the `lake` test binary first on PATH.
    fn command(&self, args: &[&str]) -> Command {
        let home = self.home.path();
        let lake_dir = lake_bin().parent().expect("lake's folder").to_path_buf();
        let path = std::env::join_paths(
            std::iter::once(lake_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .expect("PATH");
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(home)
            .env("AIRFLOW_HOME", home)
            .env("AIRFLOW__CORE__DAGS_FOLDER", home.join("dags"))
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", format!("sqlite:///{}", home.join("airflow.db").display()))
            // Keeps Python warnings (graphviz missing, ...) out of the JSON the CLI prints.
            .env("PYTHONWARNINGS", "ignore")
            .env("PATH", path)
            .env_remove("LAKE_TARGET")
            .env_remove("LAKE_LOG_FORMAT")
            .stdin(Stdio::null());
        cmd
    }

    /// `airflow ARGS`, which must succeed; its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run airflow");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "airflow {args:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `airflow dags test lake_daily DATE` with `env` added, until it exits, `stop` says so
    /// (checked every half second), or [`RUN_TIMEOUT`] passes.
    fn dags_test(&self, date: &str, env: &[(&str, &str)], stop: &dyn Fn(&Airflow) -> bool) -> Finished {
        let log = self.home.path().join(format!("dags-test-{date}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = self.command(&["dags", "test", "lake_daily", date]);
        cmd.envs(env.iter().copied())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .process_group(0);
        let mut child = GroupGuard(cmd.spawn().expect("spawn airflow dags test"));
        let started = Instant::now();
        let (code, timed_out) = loop {
            if let Some(status) = child.0.try_wait().expect("wait") {
                break (status.code(), false);
            }
            if stop(self) {
                break (None, false);
            }
            if started.elapsed() > RUN_TIMEOUT {
                break (None, true);
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        drop(child);
        Finished {
            code,
            timed_out,
            output: std::fs::read_to_string(&log).unwrap_or_default(),
        }
    }

    /// The DAG run of logical date `date` (YYYY-MM-DD): each task's state, read from the
    /// metadata DB with the venv's Python.
    fn task_states(&self, date: &str) -> BTreeMap<String, TaskState> {
        let python = self.bin.with_file_name("python");
        let script = r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
rows = db.execute("""
    select ti.task_id, ti.state, ti.try_number,
           (select count(*) from task_instance_history h
             where h.dag_id = ti.dag_id and h.run_id = ti.run_id and h.task_id = ti.task_id)
    from task_instance ti join dag_run dr on dr.dag_id = ti.dag_id and dr.run_id = ti.run_id
    where ti.dag_id = 'lake_daily' and dr.logical_date like ?""", (sys.argv[2] + "%",))
print(json.dumps([list(r) for r in rows]))
"#;
        let db = self.home.path().join("airflow.db");
        let out = Command::new(&python).arg("-c").arg(script).arg(&db).arg(date).output().expect("run python");
        assert!(out.status.success(), "reading {}: {}", db.display(), String::from_utf8_lossy(&out.stderr));
        let rows: Vec<(String, Option<String>, i64, i64)> = serde_json::from_slice(&out.stdout).expect("task rows");
        rows.into_iter()
            .map(|(task, state, try_number, earlier_tries)| (task, TaskState { state, try_number, earlier_tries }))
            .collect()
    }
}

/// Kills the whole process group of `airflow dags test` (the task runner and `lake` with it).
struct GroupGuard(Child);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // SAFETY: kill(2) on the group this test started (process_group(0) made its id the child's pid).
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

fn state(states: &BTreeMap<String, TaskState>, task: &str) -> Option<String> {
    states.get(task).unwrap_or_else(|| panic!("no task {task} in {states:?}")).state.clone()
}

fn any_up_for_retry(airflow: &Airflow, date: &str) -> bool {
    airflow.task_states(date).values().any(|t| t.state.as_deref() == Some("up_for_retry"))
}

#[test]
fn dag_imports_runs_the_demo_and_a_failed_model_fails_its_task_without_retry() {
    let project = TestProject::demo();
    project.lake(&["demo", "generate", "--customers", "80", "--days", "2", "--out", "events"]).assert_ok();
    let airflow = Airflow::new(project.path());

    // Every DAG file in dags/ imports (parsed here, not from the metadata DB, which nothing has filled).
    let errors = airflow.ok(&["dags", "list-import-errors", "--local", "--output", "json"]);
    let errors: serde_json::Value =
        serde_json::from_str(errors.trim()).unwrap_or_else(|e| panic!("import errors not JSON ({e}):\n{errors}"));
    assert_eq!(errors, serde_json::json!([]), "DAG import errors");

    // The whole DAG, every task calling lake.
    let ok = airflow.dags_test("2026-12-01", &[], &|a| any_up_for_retry(a, "2026-12-01"));
    assert_eq!(ok.code, Some(0), "dags test failed (timed out: {}):\n{}", ok.timed_out, ok.output);
    let states = airflow.task_states("2026-12-01");
    for task in ["lake_ingest", "lake_run", "lake_test"] {
        assert_eq!(state(&states, task).as_deref(), Some("success"), "{task}: {states:?}\n{}", ok.output);
    }
    assert_eq!(states.len(), 3, "{states:?}");
    // Really ran lake: one JSON summary line per task, the tables exist, and the last run
    // results are lake test's, all passing.
    assert_eq!(ok.output.matches(r#""event":"summary""#).count(), 2, "{}", ok.output);
    assert_eq!(ok.output.matches(r#""event":"ingest_finished""#).count(), 5, "{}", ok.output);
    let orders = project.sql_count("select count(*) from raw.shopify_orders");
    assert!(orders > 0, "raw.shopify_orders is empty");
    assert_eq!(project.sql_count("select count(*) from staging.stg_shopify_orders"), project.sql_count("select count(distinct id) from raw.shopify_orders"));
    assert!(project.sql_count("select count(*) from marts.customer_360") > 0);
    let results = project.run_results()["results"].as_array().expect("results").clone();
    assert!(!results.is_empty());
    assert!(
        results.iter().all(|r| r["kind"] == "test" && r["status"] == "pass"),
        "lake test results: {results:?}"
    );

    // A staging model that no longer compiles: lake run exits 1, which is not retried.
    let model = project.path().join("models/staging/stg_shopify_orders.sql");
    let sql = std::fs::read_to_string(&model).expect("stg_shopify_orders.sql");
    assert!(sql.contains("        order_number,\n"), "stg_shopify_orders.sql changed; pick another column to break");
    std::fs::write(&model, sql.replace("        order_number,\n", "        no_such_column,\n")).expect("write");

    let failed = airflow.dags_test("2026-12-02", &[], &|a| any_up_for_retry(a, "2026-12-02"));
    let states = airflow.task_states("2026-12-02");
    assert!(!failed.timed_out, "dags test did not end (a task waiting for a retry?) {states:?}:\n{}", failed.output);
    assert_ne!(failed.code, Some(0), "dags test succeeded with a broken model:\n{}", failed.output);
    assert!(failed.code.is_some(), "a task went up for retry after a failed model: {states:?}\n{}", failed.output);
    assert_eq!(state(&states, "lake_ingest").as_deref(), Some("success"), "{states:?}");
    let run = &states["lake_run"];
    assert_eq!(run.state.as_deref(), Some("failed"), "{states:?}\n{}", failed.output);
    assert_eq!((run.try_number, run.earlier_tries), (1, 0), "lake_run was retried: {states:?}");
    assert!(failed.output.contains("non-zero exit code 1"), "{}", failed.output);
    assert!(failed.output.contains("not retried"), "{}", failed.output);
    assert_eq!(state(&states, "lake_test").as_deref(), Some("upstream_failed"), "{states:?}");
    assert!(!failed.output.contains("task_id=lake_test"), "lake_test ran:\n{}", failed.output);
}

#[test]
fn dag_retries_a_task_when_the_catalog_cannot_be_reached() {
    let project = TestProject::demo();
    let airflow = Airflow::new(project.path());
    // A Postgres catalog on a loopback port nothing listens on: lake exits 3 at its start.
    let uri = format!("postgres://lake@127.0.0.1:{}/lake", free_port());

    // The retry waits retry_delay (5 minutes), so the run is stopped once the task is up for retry.
    let run = airflow.dags_test("2026-12-01", &[("LAKE_CATALOG_URI", &uri)], &|a| any_up_for_retry(a, "2026-12-01"));
    let states = airflow.task_states("2026-12-01");
    assert!(!run.timed_out, "timed out: {states:?}\n{}", run.output);
    assert_eq!(run.code, None, "dags test ended instead of waiting to retry: {states:?}\n{}", run.output);
    let seed = &states["lake_ingest"];
    assert_eq!(seed.state.as_deref(), Some("up_for_retry"), "{states:?}\n{}", run.output);
    assert_eq!((seed.try_number, seed.earlier_tries), (1, 1), "{states:?}");
    assert!(run.output.contains("non-zero exit code 3"), "{}", run.output);
    assert!(!run.output.contains("not retried"), "{}", run.output);
    assert_eq!(state(&states, "lake_run"), None, "{states:?}");
}
