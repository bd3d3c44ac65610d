//! Commands that need only the project and its graph: `lake ls`, `lake compile`; and the
//! loading steps every other command starts with.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::{CliResult, ExitCodeExt, GlobalArgs, LsOutput, SelectArgs};
use crate::graph::{Graph, select};
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::project::Project;
use crate::project::config::{ConfigOverrides, ProjectConfig};
use crate::project::model::{Materialized, ModelBody};
use crate::run::compile;
use crate::run::results::write_manifest;

/// `--target` and `--vars`, as the project loaders take them.
fn overrides(g: &GlobalArgs) -> ConfigOverrides {
    ConfigOverrides {
        target: g.target.clone(),
        vars: g.vars.clone(),
    }
}

/// Load `lake.toml` only (exit code 2 on any problem), for commands that need no models.
pub(super) fn load_config(g: &GlobalArgs) -> CliResult<ProjectConfig> {
    ProjectConfig::load(&g.project_dir, &overrides(g)).usage()
}

/// Load the project and build its graph (exit code 2 on any problem).
pub(super) fn load(g: &GlobalArgs) -> CliResult<(Project, Graph)> {
    let project = Project::load(&g.project_dir, &overrides(g)).usage()?;
    let graph = Graph::build(project.models.clone(), &project.sources, &project.config.layers).usage()?;
    Ok((project, graph))
}

/// Resolve `--select` / `--exclude` to model indices in run order.
pub(super) fn selection(graph: &Graph, args: &SelectArgs) -> CliResult<Vec<usize>> {
    select(graph, &args.select, &args.exclude).usage()
}

pub(super) async fn connect(project: &Project) -> CliResult<Lakehouse> {
    super::remember_catalog(&project.config.catalog);
    Lakehouse::connect(&project.config.catalog).await.environment()
}

/// Load `namespace.table`: a malformed or unknown name is a usage error (2), the catalog
/// failing an environment error (3).
pub(super) async fn existing_table(lakehouse: &Lakehouse, name: &str) -> CliResult<iceberg::table::Table> {
    let ident = table_ident(name).usage()?;
    match lakehouse.load_table(&ident).await.environment()? {
        Some(table) => Ok(table),
        None => {
            let known: Vec<String> = lakehouse
                .list_tables()
                .await
                .environment()?
                .iter()
                .map(|t| t.to_string())
                .collect();
            let hint = crate::graph::did_you_mean(name, known.iter().map(String::as_str))
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            Err(anyhow::anyhow!("no table {name} in catalog '{}'{hint}", lakehouse.spec().name())).usage()
        }
    }
}

pub(super) fn ls(g: &GlobalArgs, args: &SelectArgs, output: LsOutput) -> CliResult {
    let (project, graph) = load(g)?;
    let selected = selection(&graph, args)?;
    match output {
        LsOutput::Name => {
            for i in &selected {
                println!("{}", graph.model(*i).table_name());
            }
        }
        LsOutput::Json => {
            for i in &selected {
                let m = graph.model(*i);
                let parents: Vec<String> = graph.parents(*i).into_iter().map(|p| graph.model(p).name.clone()).collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "name": m.name,
                        "relation": m.table_name(),
                        "layer": m.layer,
                        "path": m.path,
                        "language": match m.body { ModelBody::Sql { .. } => "sql", ModelBody::Rust { .. } => "rust" },
                        "materialized": m.config.materialized,
                        "incremental_strategy": (m.config.materialized == Materialized::Incremental).then_some(m.config.incremental_strategy),
                        "tags": m.config.tags,
                        "depends_on": parents,
                    })
                );
            }
        }
    }
    write_manifest(&project.config.artifact_dir(), &project, &graph).environment()?;
    Ok(0)
}

/// Render selected SQL models into `target/compiled/<path>`, as they would run now.
pub(super) async fn compile(g: &GlobalArgs, args: &SelectArgs) -> CliResult {
    let (project, graph) = load(g)?;
    let selected = selection(&graph, args)?;
    // The catalog tells whether a model runs incrementally and its watermark; without one,
    // compile as a first run.
    let lakehouse = Lakehouse::connect(&project.config.catalog).await.ok();
    let incremental = incremental_models(lakehouse.as_ref(), &graph, &selected).await?;
    let out_dir = project.config.artifact_dir().join("compiled");
    let vars = project.template_vars();
    let mut dirs = HashSet::new();
    let mut listing = std::io::BufWriter::new(std::io::stdout().lock());
    for &i in &selected {
        let m = graph.model(i);
        if !matches!(m.body, ModelBody::Sql { .. }) {
            continue;
        }
        let (is_incremental, watermark) = incremental.get(&i).cloned().map_or((false, None), |w| (true, w));
        let compiled = compile::compile(&graph, m, &vars, is_incremental, watermark).usage()?;
        let path = out_dir.join(&m.path);
        if let Some(dir) = path.parent()
            && dirs.insert(dir.to_path_buf())
        {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display())).environment()?;
        }
        write_if_changed(&path, &compiled.sql).environment()?;
        let _ = writeln!(listing, "{}", path.strip_prefix(&project.config.root).unwrap_or(&path).display());
    }
    let _ = listing.flush();
    write_manifest(&project.config.artifact_dir(), &project, &graph).environment()?;
    Ok(0)
}

/// The selected incremental SQL models whose table exists, with the watermark literal a run
/// would use now. The catalog is listed once and only existing tables are loaded, several at
/// a time, rather than one lookup per model in turn.
async fn incremental_models(lakehouse: Option<&Lakehouse>, graph: &Graph, selected: &[usize]) -> CliResult<HashMap<usize, Option<String>>> {
    let Some(lakehouse) = lakehouse else { return Ok(HashMap::new()) };
    let wanted: Vec<usize> = selected
        .iter()
        .copied()
        .filter(|&i| matches!(graph.model(i).body, ModelBody::Sql { .. }) && graph.model(i).config.materialized == Materialized::Incremental)
        .collect();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let existing: HashSet<String> = lakehouse.list_tables().await.environment()?.iter().map(|t| t.to_string()).collect();
    let loads = wanted.into_iter().filter(|&i| existing.contains(&graph.model(i).table_name())).map(|i| async move {
        let m = graph.model(i);
        let table = lakehouse.load_table(&table_ident(&m.table_name()).usage()?).await.environment()?;
        Ok::<_, super::CliError>(table.map(|t| {
            let previous = compile::stored_watermark(m, Some(&t));
            (i, compile::watermark_literal(m, previous.as_ref(), true))
        }))
    });
    let mut out = HashMap::new();
    for loaded in futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(futures::stream::iter(loads), 8)).await {
        out.extend(loaded?);
    }
    Ok(out)
}

/// Writes `text` to `path` unless the file already holds it: rewriting (truncating) thousands
/// of unchanged files makes ext4 flush each one to disk on close.
fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
