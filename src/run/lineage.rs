//! A project's column lineage: every SQL model compiled as a full (non-incremental) run would
//! compile it, planned over the columns of what it reads, and read by
//! [`crate::engine::lineage::analyze`]; Rust models as opaque, or as their `lineage:` config
//! declares.
//!
//! Nothing is executed and nothing is written. Planning needs the columns of each input: a
//! SQL model's come from its own plan (so lineage follows the SQL as it is now, built or not);
//! a source's or Rust model's from its table in the catalog, so those must have been loaded or
//! built. A model that cannot be planned is recorded in [`Lineage::errors`] with the reason;
//! the others still get their lineage.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow};
use arrow::datatypes::SchemaRef;

use crate::engine::lineage::{self, Edge, Kind, Lineage, TableLineage};
use crate::engine::session::{new_session, read_only_plan, register_schema, table_schema};
use crate::graph::{Graph, did_you_mean, hint};
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::project::Project;
use crate::project::model::{Dependency, Materialized, Model, ModelBody};

use super::compile;

/// The lineage of every source and model of the project. Errors only when the catalog cannot
/// be read (it reads the tables of sources and Rust models, nothing else); a model that does
/// not plan is in the result's `errors`.
pub async fn project_lineage(project: &Project, graph: &Graph, lakehouse: &Lakehouse) -> Result<Lineage> {
    let mut out = Lineage::default();
    let mut schemas: BTreeMap<String, SchemaRef> = BTreeMap::new();
    for source in &project.sources {
        let name = source.table_name();
        match stored_schema(lakehouse, &name).await? {
            Some(schema) => {
                out.tables.insert(name.clone(), source_lineage(&name, &schema));
                schemas.insert(name, schema);
            }
            None => {
                out.errors.insert(name.clone(), format!("{name} has no table yet (load it with `lake ingest` or `lake seed`, or run the model that writes it)"));
            }
        }
    }
    let all: BTreeSet<usize> = (0..graph.models().len()).collect();
    for idx in graph.run_order(&all) {
        let model = graph.model(idx);
        if model.config.materialized == Materialized::Ephemeral {
            continue;
        }
        let name = model.table_name();
        let result = match &model.body {
            ModelBody::Sql { .. } => sql_lineage(project, graph, model, &mut schemas, &out).await,
            ModelBody::Rust { .. } => rust_lineage(graph, model, lakehouse, &mut schemas).await,
        };
        match result {
            Ok(t) => {
                out.tables.insert(name, t);
            }
            Err(e) => {
                out.errors.insert(name, format!("{e:#}"));
            }
        }
    }
    Ok(out)
}

/// The columns of `name` in the catalog; `None` when there is no such table. A catalog that
/// cannot be reached is an error.
async fn stored_schema(lakehouse: &Lakehouse, name: &str) -> Result<Option<SchemaRef>> {
    match lakehouse.load_table(&table_ident(name)?).await? {
        Some(table) => Ok(Some(table_schema(&table).await?)),
        None => Ok(None),
    }
}

fn source_lineage(name: &str, schema: &SchemaRef) -> TableLineage {
    TableLineage {
        table: name.to_string(),
        kind: "source".into(),
        columns: schema
            .fields()
            .iter()
            .map(|f| lineage::ColumnLineage { column: f.name().clone(), sources: Vec::new(), indirect: Vec::new() })
            .collect(),
    }
}

async fn sql_lineage(
    project: &Project,
    graph: &Graph,
    model: &Model,
    schemas: &mut BTreeMap<String, SchemaRef>,
    known: &Lineage,
) -> Result<TableLineage> {
    let compiled = compile::compile(graph, model, &project.template_vars(), false, None)?;
    let ctx = new_session();
    for input in &compiled.reads {
        let schema = schemas.get(input).ok_or_else(|| missing_input(input, known))?;
        register_schema(&ctx, input, schema.clone())?;
    }
    let plan = read_only_plan(&ctx, &compiled.sql).await?;
    schemas.insert(model.table_name(), std::sync::Arc::new(plan.schema().as_arrow().clone()));
    Ok(TableLineage {
        table: model.table_name(),
        kind: "sql".into(),
        columns: lineage::analyze(&plan, &|cte| compile::ephemeral_model(cte)),
    })
}

/// Why an input has no columns to plan over: a source not loaded (or a model that did not
/// plan), or a Rust model not built yet (every table of the catalog was read before).
fn missing_input(input: &str, known: &Lineage) -> anyhow::Error {
    match known.errors.get(input) {
        Some(reason) => anyhow!("it reads {input}, whose lineage is unknown: {reason}"),
        None => anyhow!(
            "it reads {input}, which has no table yet (build it first: `lake run --select +{}`)",
            input.split_once('.').map_or(input, |(_, t)| t)
        ),
    }
}

/// A Rust model: every input table feeds every output column (its columns as built; `*`
/// until it is built), except the columns its `lineage:` config declares.
async fn rust_lineage(graph: &Graph, model: &Model, lakehouse: &Lakehouse, schemas: &mut BTreeMap<String, SchemaRef>) -> Result<TableLineage> {
    // (the name as `inputs:` writes it, the table)
    let mut inputs = Vec::new();
    for dep in &model.depends_on {
        match dep {
            Dependency::Model { name, .. } => {
                if let Some(m) = graph.index_of(name).map(|i| graph.model(i)) {
                    inputs.push((name.clone(), m.table_name()));
                }
            }
            Dependency::Source { source, table, .. } => inputs.push((format!("{source}.{table}"), format!("{source}.{table}"))),
        }
    }
    // Its columns first: models downstream plan over them even when the declaration is wrong.
    let built = stored_schema(lakehouse, &model.table_name()).await?;
    if let Some(schema) = &built {
        schemas.insert(model.table_name(), schema.clone());
    }
    let declared = declared_lineage(model, &inputs, schemas)?;
    let mut outputs: Vec<String> = match built {
        Some(schema) => {
            let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            if let Some(c) = declared.keys().find(|c| !names.contains(c)) {
                return Err(anyhow!(
                    "{}: config lineage declares column '{c}', which {} does not have{} (columns: {})",
                    model.path.display(),
                    model.table_name(),
                    hint(&did_you_mean(c, names.iter().map(String::as_str))),
                    names.join(", ")
                ));
            }
            names
        }
        None => Vec::new(),
    };
    if outputs.is_empty() && !declared.is_empty() {
        // Not built: the declared columns, and `*` for the others.
        outputs = declared.keys().cloned().chain(["*".to_string()]).collect();
    }
    let tables: Vec<String> = inputs.into_iter().map(|(_, t)| t).collect();
    let mut out = lineage::opaque(&model.table_name(), &tables, &outputs);
    for column in &mut out.columns {
        if let Some(edges) = declared.get(&column.column) {
            column.sources = edges.iter().filter(|e| !e.kind.is_indirect()).cloned().collect();
            column.indirect = edges.iter().filter(|e| e.kind.is_indirect()).cloned().collect();
        }
    }
    Ok(out)
}

/// A Rust model's `lineage:` config: `{output column: {kind: [input.column, ...]}}`, with
/// `input` a model named in `inputs:` or a `source.table` there.
fn declared_lineage(model: &Model, inputs: &[(String, String)], schemas: &BTreeMap<String, SchemaRef>) -> Result<BTreeMap<String, Vec<Edge>>> {
    let Some(value) = model.config.extra.get("lineage") else {
        return Ok(BTreeMap::new());
    };
    let at = format!("{}: config lineage", model.path.display());
    let declared: BTreeMap<String, BTreeMap<Kind, Vec<String>>> = serde_json::from_value(value.clone()).map_err(|e| {
        anyhow!("{at}: {e}; write `output_column: {{direct|expression|aggregate|window|filter|join|group_by: [input.column, ...]}}`")
    })?;
    let mut out: BTreeMap<String, Vec<Edge>> = BTreeMap::new();
    for (column, by_kind) in declared {
        for (kind, entries) in by_kind {
            for entry in entries {
                let (input, source_column) = entry
                    .rsplit_once('.')
                    .ok_or_else(|| anyhow!("{at}.{column}: '{entry}' is not input.column"))?;
                let Some((_, table)) = inputs.iter().find(|(name, _)| name == input) else {
                    let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(anyhow!("{at}.{column}: '{input}' is not an input of {}{} (inputs: {})", model.name, hint(&did_you_mean(input, names.iter().copied())), names.join(", ")));
                };
                if let Some(schema) = schemas.get(table)
                    && schema.field_with_name(source_column).is_err()
                {
                    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                    return Err(anyhow!("{at}.{column}: {table} has no column '{source_column}'{}", hint(&did_you_mean(source_column, names.iter().copied()))));
                }
                out.entry(column.clone()).or_default().push(Edge { table: table.clone(), column: source_column.to_string(), kind, via: Vec::new() });
            }
        }
    }
    Ok(out)
}
