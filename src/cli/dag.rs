//! `lake dag airflow`: an Apache Airflow DAG file generated from the project graph.
//!
//! The file is self-contained Python (Airflow 3, or 2.9 and later): one `LakeOperator` task
//! per model (or per layer), its dependencies exactly the model DAG ([`Graph::subset_parents`],
//! or [`Graph::layer_parents`] per layer), with `lake ingest --all --once`, `lake seed` and
//! `lake source freshness` tasks ahead of the models when the project has `[ingest.*]`
//! sources, seeds, or sources declaring freshness, and a `lake test` task after them when the
//! project has data tests (with `--build`, which tests each model in its task, only when a
//! singular test fits no task). The same project always gives the same
//! bytes (no paths, no clock), so a committed file can be checked against a fresh one.
//!
//! `LakeOperator` (retry only exit code 3) exists once, in `dag_airflow.py` beside this file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Args;

use super::project_cmds::load;
use super::{CliResult, ExitCodeExt, GlobalArgs};
use crate::graph::Graph;
use crate::project::Project;
use crate::project::model::{DataTestKind, Dependency, Materialized};
use crate::run::{IndirectSelection, singular_test_selected};

/// Imports, `LakeOperator`, default arguments and the arguments every task shares.
const PREAMBLE: &str = include_str!("dag_airflow.py");

/// The schedule when `--schedule` is not given: every day at 02:00.
const DEFAULT_SCHEDULE: &str = "0 2 * * *";

#[derive(Debug, Clone, Args)]
pub struct AirflowArgs {
    /// One task per model (the default).
    #[arg(long, conflicts_with = "per_layer")]
    pub per_model: bool,
    /// One task per layer (`lake run --select layer:<layer>`), ordered by the models' edges.
    #[arg(long)]
    pub per_layer: bool,
    /// Tasks run `lake build` (each model followed by its tests, so a failed test fails the
    /// task and holds back the models downstream) instead of `lake run` and a final `lake test`.
    #[arg(long)]
    pub build: bool,
    /// Write the DAG to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The DAG id (default: lake_<project name>).
    #[arg(long)]
    pub dag_id: Option<String>,
    /// Cron expression or Airflow preset (`@hourly`); `none` for manual runs only.
    #[arg(long, default_value = DEFAULT_SCHEDULE)]
    pub schedule: String,
}

/// `lake dag airflow`.
pub(super) fn airflow(g: &GlobalArgs, args: &AirflowArgs) -> CliResult {
    let (project, graph) = load(g)?;
    let mut tasks = plan(&project, &graph, args).usage()?;
    // The project as this command loaded it: every task gets the same --target and --vars.
    let globals = global_flags(g);
    for t in &mut tasks {
        t.command = format!("lake{globals}{}", t.command.strip_prefix("lake").unwrap_or(&t.command));
    }
    let dag_id = match &args.dag_id {
        Some(id) => id.clone(),
        None => format!("lake_{}", task_id_part(&project.config.name)),
    };
    if !valid_id(&dag_id) {
        return Err(anyhow!("--dag-id '{dag_id}': Airflow ids take only letters, digits, '_', '-' and '.'")).usage();
    }
    let text = render(&project, args, &dag_id, &globals, &tasks);
    match &args.out {
        Some(path) => path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, text))
            .with_context(|| format!("cannot write the DAG to {}", path.display()))
            .usage()?,
        None => print!("{text}"),
    }
    Ok(0)
}

/// One Airflow task: the `lake` command it runs and the tasks that must succeed first.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Task {
    id: String,
    command: String,
    upstream: BTreeSet<String>,
}

const INGEST: &str = "lake_ingest";
const SEED: &str = "lake_seed";
const FRESHNESS: &str = "lake_source_freshness";
const TEST: &str = "lake_test";

/// The tasks, in a deterministic order where each comes after its upstream tasks.
fn plan(project: &Project, graph: &Graph, args: &AirflowArgs) -> anyhow::Result<Vec<Task>> {
    let mut tasks = Vec::new();
    let mut loads = BTreeSet::new();
    if !project.config.ingest.is_empty() {
        tasks.push(task(INGEST, "lake ingest --all --once --log-format json", BTreeSet::new()));
        loads.insert(INGEST.to_string());
    }
    if !project.seeds.is_empty() {
        tasks.push(task(SEED, "lake seed --log-format json", BTreeSet::new()));
        loads.insert(SEED.to_string());
    }
    // What every model task waits for (through its parents, if not directly).
    let gate = if project.sources.iter().any(|s| s.freshness.is_some()) {
        tasks.push(task(FRESHNESS, "lake source freshness --log-format json", loads));
        BTreeSet::from([FRESHNESS.to_string()])
    } else {
        loads
    };

    // Ephemeral models are inlined into their readers: no task, dependencies pass through them.
    let runnable: BTreeSet<usize> = (0..graph.models().len())
        .filter(|&i| graph.model(i).config.materialized != Materialized::Ephemeral)
        .collect();
    // With --build, a task runs the singular tests whose models are all built by then.
    let (verb, tests) = if args.build { ("build", " --indirect-selection buildable") } else { ("run", "") };
    // Each model task's selection, to tell which singular tests some task runs.
    let mut selections: Vec<BTreeSet<usize>> = Vec::new();
    let with_gate = |upstream: BTreeSet<String>| if upstream.is_empty() { gate.clone() } else { upstream };
    let mut ids = BTreeMap::new();
    if args.per_layer {
        for (layer, reads) in graph.layer_parents(&runnable)? {
            selections.push((0..graph.models().len()).filter(|&i| graph.model(i).layer == layer).collect());
            let id = unique_id(&mut ids, format!("layer_{}", task_id_part(&layer)), &layer)?;
            let upstream = reads.iter().map(|l| format!("layer_{}", task_id_part(l))).collect();
            let command = format!("lake {verb} --select {}{tests} --log-format json", shell_word(&format!("layer:{layer}")));
            tasks.push(task(&id, &command, with_gate(upstream)));
        }
    } else {
        let layers: BTreeSet<&str> = graph.models().iter().map(|m| m.layer.as_str()).collect();
        let parents = graph.subset_parents(&runnable);
        let id_of = |i: usize| format!("model_{}", task_id_part(&graph.model(i).name));
        for i in graph.run_order(&runnable) {
            let model = graph.model(i);
            // A name selector also selects the layer so named.
            if layers.contains(model.name.as_str()) {
                return Err(anyhow!(
                    "{}: model '{}' has the name of a layer, so `--select {}` would select the whole layer; rename the model",
                    model.path.display(),
                    model.name,
                    model.name
                ));
            }
            selections.push(BTreeSet::from([i]));
            let id = unique_id(&mut ids, id_of(i), &model.name)?;
            let mut upstream: BTreeSet<String> = parents[&i].iter().map(|&p| id_of(p)).collect();
            if args.build {
                upstream.extend(tested_against(graph, i, &runnable).into_iter().map(id_of));
            }
            let command = format!("lake {verb} --select {}{tests} --log-format json", shell_word(&model.name));
            tasks.push(task(&id, &command, with_gate(upstream)));
        }
    }
    // Without --build, the data tests run once every model is built; with it, only when a
    // singular test goes with no task (it reads models of parallel tasks, or only sources).
    let has_tests = graph.models().iter().any(|m| !m.tests.is_empty())
        || project.sources.iter().any(|s| !s.tests.is_empty())
        || !project.singular_tests.is_empty();
    let uncovered = project.singular_tests.iter().any(|t| {
        !selections.iter().any(|sel| singular_test_selected(graph, t, sel, IndirectSelection::Buildable))
    });
    if if args.build { uncovered } else { has_tests } {
        let upstream: BTreeSet<String> = tasks.iter().flat_map(|t| t.upstream.iter().cloned()).collect();
        let leaves = tasks.iter().filter(|t| !upstream.contains(&t.id)).map(|t| t.id.clone()).collect();
        tasks.push(task(TEST, "lake test --log-format json", leaves));
    }
    Ok(tasks)
}

/// Models (of `runnable`) that model `i`'s `relationships` tests read, when they are not
/// downstream of it: with `--build` its task runs those tests, so it waits for them.
fn tested_against(graph: &Graph, i: usize, runnable: &BTreeSet<usize>) -> BTreeSet<usize> {
    let downstream = graph.descendants(i);
    graph
        .model(i)
        .tests
        .iter()
        .filter_map(|t| match &t.kind {
            DataTestKind::Relationships { to: Dependency::Model { name, .. }, .. } => graph.index_of(name),
            _ => None,
        })
        .filter(|j| *j != i && runnable.contains(j) && !downstream.contains(j))
        .collect()
}

fn task(id: &str, command: &str, upstream: BTreeSet<String>) -> Task {
    Task {
        id: id.to_string(),
        command: command.to_string(),
        upstream,
    }
}

/// `id`, unless another model or layer already sanitized to it.
fn unique_id(ids: &mut BTreeMap<String, String>, id: String, name: &str) -> anyhow::Result<String> {
    if let Some(other) = ids.insert(id.clone(), name.to_string()) {
        return Err(anyhow!("'{other}' and '{name}' both give the Airflow task id '{id}'; rename one"));
    }
    Ok(id)
}

/// `name` with every character Airflow does not take in a task id (or that would nest it in a
/// task group, like `.`) replaced by `_`.
fn task_id_part(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 250 && id.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// `word` as one shell word: as is when plain, else single-quoted.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:/,+@".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// ` --target T --vars V` as given to this command (each only when given).
fn global_flags(g: &GlobalArgs) -> String {
    let mut flags = String::new();
    if let Some(target) = &g.target {
        write!(flags, " --target {}", shell_word(target)).expect("write to String");
    }
    if let Some(vars) = &g.vars {
        write!(flags, " --vars {}", shell_word(vars)).expect("write to String");
    }
    flags
}

/// A Python string literal (JSON's escapes are Python's).
fn py(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The options that reproduce this file, `--out` aside.
fn regenerate_command(args: &AirflowArgs, dag_id: &str, project: &Project, globals: &str) -> String {
    let mut cmd = format!("lake{globals} dag airflow");
    cmd.push_str(if args.per_layer { " --per-layer" } else { " --per-model" });
    if args.build {
        cmd.push_str(" --build");
    }
    if dag_id != format!("lake_{}", task_id_part(&project.config.name)) {
        write!(cmd, " --dag-id {}", shell_word(dag_id)).expect("write to String");
    }
    if args.schedule != DEFAULT_SCHEDULE {
        write!(cmd, " --schedule {}", shell_word(&args.schedule)).expect("write to String");
    }
    cmd
}

fn render(project: &Project, args: &AirflowArgs, dag_id: &str, globals: &str, tasks: &[Task]) -> String {
    let name = &project.config.name;
    let verb = if args.build { "build" } else { "run" };
    let unit = if args.per_layer { "layer" } else { "model" };
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "\"\"\"Airflow DAG of the `lake` project {name} (Apache Airflow 3, or 2.9 and later).");
    let _ = writeln!(w);
    let _ = writeln!(w, "GENERATED by `{}` from the project's models:", regenerate_command(args, dag_id, project, globals));
    let _ = writeln!(w, "do not edit it by hand; change the project and run that command again (with --out FILE).");
    let _ = writeln!(w);
    let _ = writeln!(w, "One task per {unit} runs `lake {verb} --select <{unit}> --log-format json`; a task runs once");
    let _ = writeln!(w, "the tasks of the {unit}s it reads have succeeded (the model DAG). Ahead of the models, when the");
    let _ = writeln!(w, "project has them: `lake ingest --all --once` drains the [ingest.*] sources, `lake seed` loads");
    let _ = writeln!(w, "the seeds, and `lake source freshness` checks the sources that declare freshness.");
    if args.build {
        let _ = writeln!(w, "Each task runs the model's data tests and the singular tests whose models are all built by");
        let _ = writeln!(w, "then (`--indirect-selection buildable`); `lake test` runs at the end only when a singular test");
        let _ = writeln!(w, "fits no task.");
    } else {
        let _ = writeln!(w, "Once every model is built, `lake test` runs the data tests.");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "Each task runs in the project directory, taken from the Airflow Variable");
    let _ = writeln!(w, "``lake_project_dir`` (set it with ``airflow variables set lake_project_dir /path/to/project``),");
    let _ = writeln!(w, "which is also exported to the command as ``LAKE_PROJECT_DIR``. The ``lake`` binary must be on");
    let _ = writeln!(w, "the worker's PATH.");
    let _ = writeln!(w);
    let _ = writeln!(w, "Exit codes: ``lake`` exits 0 when everything succeeded, 1 when a model, seed or data test failed,");
    let _ = writeln!(w, "2 on a project or usage error and 3 when the catalog or storage could not be reached or");
    let _ = writeln!(w, "written. Any non-zero exit code fails the task, and the tasks after it end ``upstream_failed``.");
    let _ = writeln!(w, "Only exit code 3 is retried (twice, five minutes apart); any other failure fails the same way");
    let _ = writeln!(w, "until someone fixes it, so it fails the task at once, without retries.");
    let _ = writeln!(w, "\"\"\"");
    let _ = writeln!(w);
    w.push_str(PREAMBLE);
    let _ = writeln!(w);
    let _ = writeln!(w, "# Task id -> the `lake` command it runs.");
    let _ = writeln!(w, "TASKS = {{");
    for t in tasks {
        let _ = writeln!(w, "    {}: {},", py(&t.id), py(&t.command));
    }
    let _ = writeln!(w, "}}");
    let _ = writeln!(w);
    let _ = writeln!(w, "# (upstream, downstream): each task runs once its upstream tasks have succeeded.");
    let _ = writeln!(w, "DEPENDENCIES = [");
    for t in tasks {
        for up in &t.upstream {
            let _ = writeln!(w, "    ({}, {}),", py(up), py(&t.id));
        }
    }
    let _ = writeln!(w, "]");
    let _ = writeln!(w);
    let schedule = if args.schedule == "none" { "None".to_string() } else { py(&args.schedule) };
    let description = format!("{} the {name} lakehouse with lake, one task per {unit}", if args.build { "Build and test" } else { "Refresh" });
    let _ = writeln!(w, "with DAG(");
    let _ = writeln!(w, "    dag_id={},", py(dag_id));
    let _ = writeln!(w, "    description={},", py(&description));
    let _ = writeln!(w, "    schedule={schedule},");
    let _ = writeln!(w, "    start_date=datetime(2026, 11, 1),");
    let _ = writeln!(w, "    catchup=False,");
    let _ = writeln!(w, "    max_active_runs=1,");
    let _ = writeln!(w, "    default_args=default_args,");
    let _ = writeln!(w, "    tags=[\"lake\", \"iceberg\"],");
    let _ = writeln!(w, ") as dag:");
    let _ = writeln!(w, "    tasks = {{");
    let _ = writeln!(w, "        task_id: LakeOperator(task_id=task_id, bash_command=command, **COMMON)");
    let _ = writeln!(w, "        for task_id, command in TASKS.items()");
    let _ = writeln!(w, "    }}");
    let _ = writeln!(w, "    for upstream, downstream in DEPENDENCIES:");
    let _ = writeln!(w, "        tasks[upstream] >> tasks[downstream]");
    out
}
