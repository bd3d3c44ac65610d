//! `lake lineage <model>[.<column>]`: where a column's values come from (upstream, to the
//! sources) or every column it feeds (downstream), as a tree or JSON.

use anyhow::anyhow;
use clap::Args;

use super::project_cmds::{connect, load};
use super::{CliResult, ExitCodeExt, GlobalArgs};
use crate::engine::lineage::{Direction, Lineage, render_text};
use crate::graph::{Graph, did_you_mean, hint};
use crate::project::model::Materialized;
use crate::run::lineage::project_lineage;

#[derive(Debug, Clone, Args)]
pub struct LineageArgs {
    /// A model (`customer_360`), a model's column (`customer_360.lifetime_value`), or a table
    /// and column (`raw.shopify_orders.total_price`).
    #[arg(value_name = "MODEL[.COLUMN]")]
    pub node: String,
    /// Where the values come from, down to the source tables (the default).
    #[arg(long, conflicts_with = "downstream")]
    pub upstream: bool,
    /// Every column, in every model, that the column feeds.
    #[arg(long)]
    pub downstream: bool,
    /// text (a tree) or json.
    #[arg(long, value_enum, default_value_t = LineageOutput::Text)]
    pub output: LineageOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LineageOutput {
    Text,
    Json,
}

pub(super) async fn lineage(g: &GlobalArgs, args: &LineageArgs) -> CliResult {
    let (project, graph) = load(g)?;
    let lakehouse = connect(&project).await?;
    let all = project_lineage(&project, &graph, &lakehouse).await.environment()?;
    let (table, column) = target(&graph, &all, &args.node).usage()?;
    let columns: Vec<String> = match column {
        Some(c) => vec![c],
        None => all.columns(&table).unwrap_or_default().into_iter().map(str::to_string).collect(),
    };
    let direction = if args.downstream { Direction::Downstream } else { Direction::Upstream };
    let trees: Vec<_> = columns
        .iter()
        .map(|c| match direction {
            Direction::Upstream => all.upstream(&table, c),
            Direction::Downstream => all.downstream(&table, c),
        })
        .collect();
    match args.output {
        LineageOutput::Json => {
            let doc = serde_json::json!({"table": table, "direction": direction, "columns": trees});
            println!("{}", serde_json::to_string_pretty(&doc).expect("lineage serializes"));
        }
        LineageOutput::Text => {
            let texts: Vec<String> = trees.iter().map(render_text).collect();
            print!("{}", texts.join("\n"));
        }
    }
    Ok(0)
}

/// `model`, `model.column`, `namespace.table` or `namespace.table.column` → the table and the
/// column (checked to exist), with a did-you-mean for a misspelt name.
fn target(graph: &Graph, all: &Lineage, text: &str) -> anyhow::Result<(String, Option<String>)> {
    let parts: Vec<&str> = text.splitn(3, '.').collect();
    let model_table = |name: &str| graph.index_of(name).map(|i| graph.model(i));
    let (table, column) = if let Some(m) = model_table(parts[0]) {
        if m.config.materialized == Materialized::Ephemeral {
            return Err(anyhow!(
                "{} is ephemeral: it has no table of its own; its columns are traced through in the lineage of the models that ref it",
                m.name
            ));
        }
        (m.table_name(), text.split_once('.').map(|(_, c)| c.to_string()))
    } else if parts.len() >= 2 && known(all, &format!("{}.{}", parts[0], parts[1])) {
        (format!("{}.{}", parts[0], parts[1]), parts.get(2).map(|c| c.to_string()))
    } else {
        let names: Vec<&str> = graph.models().iter().map(|m| m.name.as_str()).chain(all.tables.keys().map(String::as_str)).collect();
        let guess = did_you_mean(parts[0], names.iter().copied()).or_else(|| did_you_mean(text, names.iter().copied()));
        return Err(anyhow!("no model or table '{}'{}", parts[0], hint(&guess)));
    };
    if let Some(reason) = all.errors.get(&table) {
        return Err(anyhow!("the lineage of {table} is unknown: {reason}"));
    }
    if let Some(c) = &column {
        let columns = all.columns(&table).unwrap_or_default();
        if !columns.contains(&c.as_str()) {
            let guess = did_you_mean(c, columns.iter().copied());
            return Err(anyhow!("{table} has no column '{c}'{} (columns: {})", hint(&guess), columns.join(", ")));
        }
    }
    Ok((table, column))
}

fn known(all: &Lineage, table: &str) -> bool {
    all.tables.contains_key(table) || all.errors.contains_key(table)
}
