//! `lake sql`: ad-hoc DataFusion SQL over every table in the catalog, at each table's current
//! snapshot, with `snapshot('ns.table', id)` for time travel.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::anyhow;

use super::project_cmds::connect;
use super::{CliResult, ExitCodeExt, GlobalArgs, SqlFormat};
use crate::engine::session::{PinnedTable, SnapshotFunction, new_session, register};
use crate::project::Project;
use crate::project::config::ConfigOverrides;

pub(super) async fn sql(g: &GlobalArgs, query: &str, format: SqlFormat) -> CliResult {
    let overrides = ConfigOverrides {
        target: g.target.clone(),
        vars: g.vars.clone(),
    };
    let config = crate::project::config::ProjectConfig::load(&g.project_dir, &overrides).usage()?;
    let project = Project {
        config,
        models: Vec::new(),
        sources: Vec::new(),
        seeds: Vec::new(),
        singular_tests: Vec::new(),
    };
    let lakehouse = connect(&project).await?;
    let ctx = new_session();
    let mut tables = BTreeMap::new();
    for ident in lakehouse.list_tables().await.environment()? {
        let name = format!("{}.{}", ident.namespace().join("."), ident.name());
        let table = lakehouse.table(&ident).await.environment()?;
        let pinned = PinnedTable {
            snapshot_id: table.metadata().current_snapshot_id(),
            table: table.clone(),
        };
        register(&ctx, &name, &pinned).await.environment()?;
        tables.insert(name, table);
    }
    ctx.register_udtf("snapshot", Arc::new(SnapshotFunction::new(tables)));
    let df = ctx.sql(query).await.map_err(|e| anyhow!("SQL error: {e}")).usage()?;
    let batches = df.collect().await.map_err(|e| anyhow!("SQL error: {e}")).usage()?;
    let mut out = Vec::new();
    match format {
        SqlFormat::Table => {
            let text = arrow::util::pretty::pretty_format_batches(&batches).map_err(anyhow::Error::from).usage()?;
            out.extend_from_slice(text.to_string().as_bytes());
            out.push(b'\n');
        }
        SqlFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            for b in &batches {
                w.write(b).map_err(anyhow::Error::from).usage()?;
            }
        }
        SqlFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            for b in &batches {
                w.write(b).map_err(anyhow::Error::from).usage()?;
            }
            w.finish().map_err(anyhow::Error::from).usage()?;
            if batches.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
        }
    }
    use std::io::Write;
    std::io::stdout().write_all(&out).map_err(anyhow::Error::from).environment()?;
    Ok(0)
}
