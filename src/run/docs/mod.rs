//! `lake docs`: a static documentation site for a project, one self-contained `index.html`
//! (HTML, CSS, JS and the data inline: it opens from `file://` on a machine with no network).
//!
//! The invariant: the site shows what `lake` already knows, computed where it is computed
//! for every other command. Column lineage is [`super::lineage::project_lineage`]'s, compiled
//! SQL is [`super::compile::compile`]'s (as a full run compiles it), the last results are
//! `target/run_results.json`'s and table facts are the catalog's
//! ([`crate::lakehouse::maintenance::snapshots`]). A project not built yet still gets its docs,
//! without the facts of tables that do not exist.
//!
//! - [`collect`]: project, graph, catalog and artifacts → a [`Site`] (serializable), with
//!   every node placed on the DAG drawing (a layered layout computed here, so the page never
//!   lays out: it draws once).
//! - [`write_site`]: a [`Site`] → `<out>/index.html`.
//! - [`serve`]: serve a folder over HTTP until Ctrl-C or SIGTERM.
//!
//! ```no_run
//! # async fn f(project: lake::project::Project, graph: lake::graph::Graph, lh: lake::lakehouse::catalog::Lakehouse) -> anyhow::Result<()> {
//! let site = lake::run::docs::collect(&project, &graph, &lh).await?;
//! lake::run::docs::write_site(&site, std::path::Path::new("target/docs"))?;
//! # Ok(()) }
//! ```

mod facts;
mod layout;
mod nodes;
mod serve;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::graph::Graph;
use crate::lakehouse::catalog::Lakehouse;
use crate::project::Project;

pub use nodes::{DocColumn, DocNode, DocTest, LastRun, TableFacts};
pub use serve::serve;

/// The page: markup, style and script, with the data spliced in where `/*DATA*/` stands.
const PAGE: &str = include_str!("site.html");
const STYLE: &str = include_str!("site.css");
const SCRIPT: &str = include_str!("site.js");

/// Everything the site shows.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub project: String,
    pub generated_at: String,
    /// The project's layers, in order (the drawing's bands, left to right).
    pub layers: Vec<String>,
    /// The command, id and time of the run `target/run_results.json` records, if any.
    pub last_invocation: Option<serde_json::Value>,
    /// Sources, ingest and seed tables, then models in run order (every node after its parents).
    pub nodes: Vec<DocNode>,
    /// The drawing's size and its layer bands (`[layer, x from, x to]`).
    pub width: f64,
    pub height: f64,
    pub bands: Vec<(String, f64, f64)>,
}

/// The site of `project`: its nodes with their SQL, columns, lineage, tests, last run and table
/// facts, laid out. Errors only when the catalog cannot be read.
pub async fn collect(project: &Project, graph: &Graph, lakehouse: &Lakehouse) -> Result<Site> {
    let lineage = super::lineage::project_lineage(project, graph, lakehouse).await?;
    let results = facts::RunResults::read(&project.config.artifact_dir())?;
    let mut nodes = nodes::build(project, graph, &lineage, &results);
    for node in &mut nodes {
        if let Some(table) = node.table.clone() {
            facts::add_catalog_facts(lakehouse, &table, node).await?;
        }
    }
    let drawing = layout::layout(&mut nodes, &project.config.layers);
    Ok(Site {
        project: project.config.name.clone(),
        generated_at: chrono::Utc::now().to_rfc3339(),
        layers: project.config.layers.clone(),
        last_invocation: results.invocation(),
        nodes,
        width: drawing.width,
        height: drawing.height,
        bands: drawing.bands,
    })
}

/// Write `site` as `<out>/index.html` (creating `out`); returns the file written.
pub fn write_site(site: &Site, out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create the docs folder {}", out.display()))?;
    let path = out.join("index.html");
    let html = render(site)?;
    std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The page with `site` inline. `<` is escaped in the JSON (it occurs only inside strings), so
/// no SQL or description can close the script element the data sits in.
fn render(site: &Site) -> Result<String> {
    let data = serde_json::to_string(site)?.replace('<', "\\u003c");
    Ok(PAGE
        .replace("/*STYLE*/", STYLE)
        .replace("/*SCRIPT*/", SCRIPT)
        .replace("/*TITLE*/", &escape_html(&site.project))
        .replace("/*DATA*/", &data))
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
