//! `lake docs [--out DIR] [--serve ADDR]`: write the documentation site (see
//! [`crate::run::docs`]), and serve it over HTTP when asked.

use std::path::PathBuf;

use clap::Args;

use super::project_cmds::{connect, load};
use super::{CliResult, ExitCodeExt, GlobalArgs};
use crate::run::docs;

#[derive(Debug, Clone, Args)]
pub struct DocsArgs {
    /// The folder to write index.html into (default: target/docs in the project).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Then serve the folder over HTTP on this address (e.g. 127.0.0.1:8000) until Ctrl-C.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

pub(super) async fn docs(g: &GlobalArgs, args: &DocsArgs) -> CliResult {
    let (project, graph) = load(g)?;
    let lakehouse = connect(&project).await?;
    let site = docs::collect(&project, &graph, &lakehouse).await.environment()?;
    let out = args.out.clone().unwrap_or_else(|| project.config.artifact_dir().join("docs"));
    let index = docs::write_site(&site, &out).environment()?;
    println!("wrote {} ({} nodes)", index.display(), site.nodes.len());
    if let Some(addr) = &args.serve {
        docs::serve(&out, addr, |url| {
            println!("serving the docs on {url} (Ctrl-C to stop)");
        })
        .await
        .usage()?;
    }
    Ok(0)
}
