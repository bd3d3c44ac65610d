//! Real Apache Airflow (3.x, from the venv `.ci/run` installs) runs DAGs that `lake dag airflow`
//! generates: the committed `dags/lake_pipeline.py` and DAGs generated for the repository's
//! project and for a fixture project import with no errors and their task dependencies are the
//! model DAG; `airflow dags test` of the committed DAG (and of its `--build` variant) on a copy
//! of the demo project with generated events, and of the fixture's DAG, runs every task by
//! calling the `lake` test binary; a failed model fails its task at once (no retry) and only its
//! downstream tasks are left `upstream_failed`; an unreachable catalog (exit code 3) is the one
//! failure that is retried.
//!
//! Each test has its own throwaway `AIRFLOW_HOME` (SQLite metadata DB, its own dags folder, no
//! example DAGs) and reads task states from that metadata DB, where `dags test` leaves them.
//! `LAKE_AIRFLOW_BIN` names another `airflow` binary.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::dag::{fixture, fixture_upstream, generated_by};
use crate::support::s3::free_port;
use crate::support::{TestProject, lake_bin};

/// The DAG id of the fixture project's generated DAG.
const DAG_ID: &str = "lake_fixture";

/// Longest a `dags test` of the fixture's eight-task DAG may take.
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

/// A throwaway Airflow installation whose `lake_project_dir` Variable is `project`, running
/// the DAG `dag_id` (put its file in [`Airflow::dags`]).
struct Airflow {
    home: tempfile::TempDir,
    bin: PathBuf,
    dag_id: String,
}

/// Generate a DAG for the project at `project` into `out` with `lake dag airflow ARGS`.
fn generate(project: &Path, args: &[&str], out: &Path) {
    let output = Command::new(lake_bin())
        .args(["dag", "airflow"])
        .args(args)
        .arg("--out")
        .arg(out)
        .current_dir(project)
        .env_remove("LAKE_PROJECT_DIR")
        .env_remove("LAKE_TARGET")
        .output()
        .expect("run lake dag airflow");
    assert!(output.status.success(), "lake dag airflow {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

impl Airflow {
    /// An installation running the DAG `lake dag airflow` generates for `project`.
    fn fixture(project: &TestProject) -> Airflow {
        let airflow = Airflow::new(project.path(), DAG_ID);
        generate(project.path(), &["--dag-id", DAG_ID], &airflow.dags().join("lake_fixture.py"));
        airflow
    }

    fn new(project: &Path, dag_id: &str) -> Airflow {
        let bin = airflow_bin();
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(home.path().join("dags")).expect("mkdir dags");
        let airflow = Airflow { home, bin, dag_id: dag_id.to_string() };
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

    /// The dags folder.
    fn dags(&self) -> PathBuf {
        self.home.path().join("dags")
    }

    /// Each task of the DAG in `file` -> its upstream task ids, as Airflow sees them once the
    /// file is imported with the venv's Python.
    fn upstream_of(&self, file: &Path) -> BTreeMap<String, Vec<String>> {
        let script = r#"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("generated_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({t.task_id: sorted(t.upstream_task_ids) for t in module.dag.tasks}))
"#;
        let cmd = self.command(&[]);
        let mut python = Command::new(self.bin.with_file_name("python"));
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => python.env(k, v),
                None => python.env_remove(k),
            };
        }
        let out = python.arg("-c").arg(script).arg(file).output().expect("run python");
        assert!(out.status.success(), "importing {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("task dependencies of {} not JSON ({e}): {stdout}", file.display()))
    }

    /// `airflow dags test <dag_id> DATE` with `env` added, until it exits, `stop` says so
    /// (checked every half second), or [`RUN_TIMEOUT`] passes.
    fn dags_test(&self, date: &str, env: &[(&str, &str)], stop: &dyn Fn(&Airflow) -> bool) -> Finished {
        let log = self.home.path().join(format!("dags-test-{date}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = self.command(&["dags", "test", &self.dag_id, date]);
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
    where ti.dag_id = ? and dr.logical_date like ?""", (sys.argv[3], sys.argv[2] + "%"))
print(json.dumps([list(r) for r in rows]))
"#;
        let db = self.home.path().join("airflow.db");
        let out = Command::new(&python).arg("-c").arg(script).arg(&db).arg(date).arg(&self.dag_id).output().expect("run python");
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


/// What the tasks of `dag` (task -> upstream tasks) should be for the project whose
/// `lake ls --output json` printed `ls`: a task per model that is not ephemeral, reading the
/// models it reads (through ephemeral ones); models reading no model wait for the load tasks
/// (`lake_source_freshness` when there is one, else `lake_ingest` and `lake_seed`); `lake_test`,
/// when there is one, waits for the models no other model reads.
fn expected_upstream(ls: &str, dag: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    let models: BTreeMap<String, serde_json::Value> = ls
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("ls json"))
        .map(|m| (m["name"].as_str().expect("name").to_string(), m))
        .collect();
    let ephemeral = |name: &str| models[name]["materialized"] == "ephemeral";
    let loads: Vec<String> = dag.keys().filter(|t| t.starts_with("lake_") && *t != "lake_test").cloned().collect();
    let gate: Vec<String> = if loads.iter().any(|t| t == "lake_source_freshness") {
        vec!["lake_source_freshness".to_string()]
    } else {
        loads.clone()
    };
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &loads {
        let up = if t == "lake_source_freshness" { loads.iter().filter(|l| *l != t).cloned().collect() } else { vec![] };
        want.insert(t.clone(), up);
    }
    for (name, m) in &models {
        if ephemeral(name) {
            continue;
        }
        let mut up = std::collections::BTreeSet::new();
        let mut stack: Vec<String> =
            m["depends_on"].as_array().expect("depends_on").iter().map(|d| d.as_str().expect("str").to_string()).collect();
        while let Some(parent) = stack.pop() {
            if ephemeral(&parent) {
                stack.extend(models[&parent]["depends_on"].as_array().expect("deps").iter().map(|d| d.as_str().expect("str").to_string()));
            } else {
                up.insert(format!("model_{parent}"));
            }
        }
        let up: Vec<String> = if up.is_empty() { gate.clone() } else { up.into_iter().collect() };
        want.insert(format!("model_{name}"), up);
    }
    if dag.contains_key("lake_test") {
        let read: std::collections::BTreeSet<String> = want.values().flatten().cloned().collect();
        let leaves = want.keys().filter(|t| !read.contains(*t)).cloned().collect();
        want.insert("lake_test".to_string(), leaves);
    }
    want
}

#[test]
fn generated_dags_import_follow_the_model_dag_and_run_with_a_failed_model_failing_only_its_downstream() {
    let project = fixture();
    let airflow = Airflow::fixture(&project);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Beside the fixture's DAG: its per-layer DAG (with --build: no lake_test task) and the
    // committed DAG of the repository's project.
    let layers = airflow.dags().join("lake_fixture_layers.py");
    generate(project.path(), &["--per-layer", "--build", "--dag-id", "lake_fixture_layers"], &layers);
    let committed = airflow.dags().join("lake_pipeline.py");
    std::fs::copy(root.join("dags/lake_pipeline.py"), &committed).expect("copy dags/lake_pipeline.py");

    // Every DAG file imports (parsed here, not from the metadata DB, which nothing has filled).
    let errors = airflow.ok(&["dags", "list-import-errors", "--local", "--output", "json"]);
    let errors: serde_json::Value =
        serde_json::from_str(errors.trim()).unwrap_or_else(|e| panic!("import errors not JSON ({e}):\n{errors}"));
    assert_eq!(errors, serde_json::json!([]), "DAG import errors");

    // Task dependencies, as Airflow sees them, are the model DAG.
    let fixture_dag = airflow.upstream_of(&airflow.dags().join("lake_fixture.py"));
    let want: BTreeMap<String, Vec<String>> = fixture_upstream()
        .into_iter()
        .map(|(t, up)| (t.to_string(), up.into_iter().map(str::to_string).collect()))
        .collect();
    assert_eq!(fixture_dag, want);
    let ls = project.lake(&["ls", "--output", "json"]);
    ls.assert_ok();
    assert_eq!(fixture_dag, expected_upstream(&ls.stdout, &fixture_dag));
    let layer_dag = airflow.upstream_of(&layers);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let want_layers: BTreeMap<String, Vec<String>> = [
        ("lake_ingest", s(&[])),
        ("lake_seed", s(&[])),
        ("lake_source_freshness", s(&["lake_ingest", "lake_seed"])),
        ("layer_staging", s(&["lake_source_freshness"])),
        ("layer_analytics", s(&["layer_staging"])),
        ("layer_marts", s(&["layer_analytics", "layer_staging"])),
    ]
    .into_iter()
    .map(|(t, up)| (t.to_string(), up))
    .collect();
    assert_eq!(layer_dag, want_layers);
    // The committed DAG against the repository project's graph, whatever its models are now.
    let committed_dag = airflow.upstream_of(&committed);
    let repo_ls = Command::new(lake_bin())
        .args(["ls", "--output", "json"])
        .current_dir(root)
        .env_remove("LAKE_PROJECT_DIR")
        .env_remove("LAKE_TARGET")
        .output()
        .expect("lake ls");
    assert!(repo_ls.status.success(), "{}", String::from_utf8_lossy(&repo_ls.stderr));
    let flags = generated_by(&std::fs::read_to_string(&committed).expect("read"));
    assert!(flags.contains(&"--per-model".to_string()), "the committed DAG is no longer per model: {flags:?}; adapt this check");
    assert_eq!(committed_dag, expected_upstream(&String::from_utf8_lossy(&repo_ls.stdout), &committed_dag));

    // The whole DAG, every task calling lake.
    let ok = airflow.dags_test("2026-12-01", &[], &|a| any_up_for_retry(a, "2026-12-01"));
    assert_eq!(ok.code, Some(0), "dags test failed (timed out: {}):\n{}", ok.timed_out, ok.output);
    let states = airflow.task_states("2026-12-01");
    for (task, _) in fixture_upstream() {
        assert_eq!(state(&states, task).as_deref(), Some("success"), "{task}: {states:?}\n{}", ok.output);
    }
    assert_eq!(states.len(), fixture_upstream().len(), "{states:?}");
    // Really ran lake: one JSON summary line per task but the ingest (which logs its own
    // `ingest_finished`), the tables exist, and lake_test ran stg_customers' data tests.
    assert_eq!(ok.output.matches(r#""event":"summary""#).count(), states.len() - 1, "{}", ok.output);
    assert!(ok.output.contains(r#""event":"ingest_finished""#), "{}", ok.output);
    assert_eq!(project.sql_count("select count(*) from marts.mart_customers"), 1);
    assert_eq!(project.sql_count("select n from marts.mart_kinds"), 2);
    assert!(ok.output.contains("not_null_stg_customers_id"), "no data test ran:\n{}", ok.output);

    // A staging model that no longer compiles: its task fails at once (lake exits 1, which is
    // not retried), the tasks downstream of it never run, the others succeed.
    let model = project.path().join("models/staging/stg_customers.sql");
    let sql = std::fs::read_to_string(&model).expect("stg_customers.sql");
    std::fs::write(&model, sql.replace("    name\n", "    no_such_column\n")).expect("write");

    let failed = airflow.dags_test("2026-12-02", &[], &|a| any_up_for_retry(a, "2026-12-02"));
    let states = airflow.task_states("2026-12-02");
    assert!(!failed.timed_out, "dags test did not end (a task waiting for a retry?) {states:?}:\n{}", failed.output);
    assert_ne!(failed.code, Some(0), "dags test succeeded with a broken model:\n{}", failed.output);
    assert!(failed.code.is_some(), "a task went up for retry after a failed model: {states:?}\n{}", failed.output);
    let run = &states["model_stg_customers"];
    assert_eq!(run.state.as_deref(), Some("failed"), "{states:?}\n{}", failed.output);
    assert_eq!((run.try_number, run.earlier_tries), (1, 0), "model_stg_customers was retried: {states:?}");
    assert!(failed.output.contains("non-zero exit code 1"), "{}", failed.output);
    assert!(failed.output.contains("not retried"), "{}", failed.output);
    for task in ["model_customer_events", "model_mart_customers", "lake_test"] {
        assert_eq!(state(&states, task).as_deref(), Some("upstream_failed"), "{task}: {states:?}");
        assert!(!failed.output.contains(&format!("task_id={task}")), "{task} ran:\n{}", failed.output);
    }
    for task in ["lake_ingest", "lake_seed", "lake_source_freshness", "model_stg_events", "model_mart_kinds"] {
        assert_eq!(state(&states, task).as_deref(), Some("success"), "{task}: {states:?}\n{}", failed.output);
    }
}

#[test]
fn generated_dag_retries_a_task_when_the_catalog_cannot_be_reached() {
    let project = fixture();
    let airflow = Airflow::fixture(&project);
    // A Postgres catalog on a loopback port nothing listens on: lake exits 3 at its start.
    let uri = format!("postgres://lake@127.0.0.1:{}/lake", free_port());

    // The retry waits retry_delay (5 minutes), so the run is stopped once a task is up for retry.
    let run = airflow.dags_test("2026-12-01", &[("LAKE_CATALOG_URI", &uri)], &|a| any_up_for_retry(a, "2026-12-01"));
    let states = airflow.task_states("2026-12-01");
    assert!(!run.timed_out, "timed out: {states:?}\n{}", run.output);
    assert_eq!(run.code, None, "dags test ended instead of waiting to retry: {states:?}\n{}", run.output);
    let retrying: Vec<&String> = states.iter().filter(|(_, t)| t.state.as_deref() == Some("up_for_retry")).map(|(k, _)| k).collect();
    assert!(
        retrying.iter().all(|t| *t == "lake_ingest" || *t == "lake_seed") && !retrying.is_empty(),
        "{states:?}\n{}",
        run.output
    );
    let task = &states[retrying[0]];
    assert_eq!((task.try_number, task.earlier_tries), (1, 1), "{states:?}");
    assert!(run.output.contains("non-zero exit code 3"), "{}", run.output);
    assert!(!run.output.contains("not retried"), "{}", run.output);
    assert_eq!(state(&states, "lake_source_freshness"), None, "{states:?}");
}

#[test]
fn committed_dag_and_its_build_variant_run_the_demo_pipeline_under_airflow() {
    let project = TestProject::demo();
    project.lake(&["demo", "generate", "--customers", "80", "--days", "2", "--out", "events"]).assert_ok();
    let committed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dags/lake_pipeline.py"))
        .expect("dags/lake_pipeline.py");
    let dag_id = committed.split("dag_id=\"").nth(1).and_then(|r| r.split('"').next()).expect("dag_id");
    let mut airflow = Airflow::new(project.path(), dag_id);
    std::fs::write(airflow.dags().join("lake_pipeline.py"), &committed).expect("write DAG");
    let tasks = airflow.upstream_of(&airflow.dags().join("lake_pipeline.py"));

    let ok = airflow.dags_test("2026-12-01", &[], &|a| any_up_for_retry(a, "2026-12-01"));
    assert_eq!(ok.code, Some(0), "dags test failed (timed out: {}):\n{}", ok.timed_out, ok.output);
    let states = airflow.task_states("2026-12-01");
    assert_eq!(states.keys().collect::<Vec<_>>(), tasks.keys().collect::<Vec<_>>());
    for task in tasks.keys() {
        assert_eq!(state(&states, task).as_deref(), Some("success"), "{task}: {states:?}\n{}", ok.output);
    }
    // Every task called lake: a summary per task but lake_ingest, which reports per source;
    // none with an error or a failed test.
    let summaries: Vec<&str> = ok.output.lines().filter(|l| l.contains(r#""event":"summary""#)).collect();
    assert_eq!(summaries.len(), tasks.keys().filter(|t| *t != "lake_ingest").count(), "{}", ok.output);
    assert!(summaries.iter().all(|l| l.contains(r#""error":0"#) && l.contains(r#""fail":0"#)), "{summaries:#?}");
    assert!(ok.output.contains(r#""event":"ingest_finished""#), "{}", ok.output);
    assert!(project.sql_count("select count(*) from marts.customer_360") > 0);

    // The same project's DAG with --build: every model's tests in its task, every task succeeds.
    airflow.dag_id = "lake_demo_build".to_string();
    generate(project.path(), &["--build", "--dag-id", "lake_demo_build"], &airflow.dags().join("lake_demo_build.py"));
    let tasks = airflow.upstream_of(&airflow.dags().join("lake_demo_build.py"));
    let built = airflow.dags_test("2026-12-02", &[], &|a| any_up_for_retry(a, "2026-12-02"));
    assert_eq!(built.code, Some(0), "dags test failed (timed out: {}):\n{}", built.timed_out, built.output);
    let states = airflow.task_states("2026-12-02");
    assert_eq!(states.keys().collect::<Vec<_>>(), tasks.keys().collect::<Vec<_>>());
    assert!(states.values().all(|t| t.state.as_deref() == Some("success")), "{states:?}\n{}", built.output);
    assert!(built.output.contains("lake build --select customer_metrics --indirect-selection buildable"), "{}", built.output);
}
