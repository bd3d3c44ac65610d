//! Rendering a model to runnable SQL: real relation names, the incremental flag, the watermark,
//! and ephemeral models inlined as CTEs. `lake run` and `lake compile` both take the stored
//! watermark and its literal from here ([`stored_watermark`], [`watermark_literal`]), so
//! compile shows exactly the SQL a run executes.

use std::collections::BTreeSet;

use anyhow::{Result, anyhow};

use iceberg::table::Table;

use crate::graph::Graph;
use crate::lakehouse::summary;
use crate::materialize::watermark::Watermark;
use crate::project::model::{Dependency, Materialized, Model, ModelBody};
use crate::project::templates::{self, Mode, TemplateVars};

/// The SQL name of a dependency as DataFusion resolves it.
pub fn relation(graph: &Graph, dep: &Dependency) -> Option<String> {
    match dep {
        Dependency::Model { name, .. } => {
            let model = graph.model(graph.index_of(name)?);
            Some(match model.config.materialized {
                Materialized::Ephemeral => ephemeral_name(name),
                _ => quoted(&model.layer, &model.name),
            })
        }
        Dependency::Source { source, table, .. } => Some(quoted(source, table)),
    }
}

const EPHEMERAL_PREFIX: &str = "__lake_ephemeral_";

fn ephemeral_name(name: &str) -> String {
    format!("{EPHEMERAL_PREFIX}{name}")
}

/// The ephemeral model a CTE of compiled SQL inlines, from the CTE's name.
pub fn ephemeral_model(cte: &str) -> Option<String> {
    cte.strip_prefix(EPHEMERAL_PREFIX).map(str::to_string)
}

pub fn quoted(namespace: &str, table: &str) -> String {
    format!("\"{}\".\"{}\"", namespace.replace('"', "\"\""), table.replace('"', "\"\""))
}

/// The watermark stored in `table`'s snapshots, when it tracks what `model` is configured to
/// track now (a changed `watermark:` column starts over).
pub fn stored_watermark(model: &Model, table: Option<&Table>) -> Option<Watermark> {
    let spec = model.config.watermark.as_ref()?;
    summary::watermark(table?)
        .filter(|w| spec.as_str() == w.column)
        .map(|w| Watermark {
            kind: w.data_type,
            value: w.value,
        })
}

/// `{{ watermark }}` for an incremental run: the stored value as a SQL literal with the
/// model's `lookback` applied; none on a first or full run, or for `watermark: snapshot`.
pub fn watermark_literal(model: &Model, previous: Option<&Watermark>, is_incremental: bool) -> Option<String> {
    match previous {
        Some(w) if is_incremental && w.kind != "snapshot" => {
            Some(w.sql_literal_with_lookback(model.config.lookback.as_deref()))
        }
        _ => None,
    }
}

/// Compiled SQL plus the tables it reads (`namespace.table`, ephemeral models expanded).
#[derive(Debug, Clone)]
pub struct Compiled {
    pub sql: String,
    pub reads: BTreeSet<String>,
    /// Tables the SQL also reads whole, as `"whole"."<namespace>"."<table>"` (`ref(...,
    /// whole=true)` in an incremental run).
    pub whole: BTreeSet<String>,
}

/// Render `model` (a SQL model) for execution.
pub fn compile(
    graph: &Graph,
    model: &Model,
    vars: &TemplateVars,
    is_incremental: bool,
    watermark: Option<String>,
) -> Result<Compiled> {
    let ModelBody::Sql { raw_sql } = &model.body else {
        return Err(anyhow!("{} is a Rust model; it has no SQL", model.name));
    };
    let this = quoted(&model.layer, &model.name);
    let rendered = render(graph, model, raw_sql, vars, this, is_incremental, watermark)?;
    let mut whole = BTreeSet::new();
    for dep in &rendered.whole {
        if let Some(table) = table_of(graph, dep) {
            whole.insert(table);
        }
    }
    let sql = rendered.sql;
    let mut ctes = Vec::new();
    let mut reads = BTreeSet::new();
    let mut seen = BTreeSet::new();
    collect(graph, model, vars, &mut ctes, &mut reads, &mut seen)?;
    if is_incremental {
        reads.insert(model.table_name());
    }
    Ok(Compiled {
        sql: inject_ctes(&sql, &ctes),
        reads,
        whole,
    })
}

/// The table a dependency reads (`None` for an ephemeral model or an unknown name).
fn table_of(graph: &Graph, dep: &Dependency) -> Option<String> {
    match dep {
        Dependency::Source { source, table, .. } => Some(format!("{source}.{table}")),
        Dependency::Model { name, .. } => {
            let m = graph.model(graph.index_of(name)?);
            (m.config.materialized != Materialized::Ephemeral).then(|| m.table_name())
        }
    }
}

/// Render a singular test or any SQL template that may `ref()` models, with CTEs for ephemerals.
pub fn compile_standalone(
    graph: &Graph,
    path: &std::path::Path,
    raw_sql: &str,
    depends_on: &[Dependency],
    vars: &TemplateVars,
) -> Result<Compiled> {
    let resolver = |dep: &Dependency| relation(graph, dep);
    let rendered = templates::render(
        path,
        raw_sql,
        vars,
        &Mode::Execute {
            relation: &resolver,
            this: "NULL".into(),
            is_incremental: false,
            watermark: None,
        },
    )?;
    let mut ctes = Vec::new();
    let mut reads = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for dep in depends_on {
        visit_dependency(graph, dep, vars, &mut ctes, &mut reads, &mut seen)?;
    }
    Ok(Compiled {
        sql: inject_ctes(&rendered.sql, &ctes),
        reads,
        whole: BTreeSet::new(),
    })
}

fn render(
    graph: &Graph,
    model: &Model,
    raw_sql: &str,
    vars: &TemplateVars,
    this: String,
    is_incremental: bool,
    watermark: Option<String>,
) -> Result<templates::Rendered> {
    let resolver = |dep: &Dependency| relation(graph, dep);
    templates::render(
        &model.path,
        raw_sql,
        vars,
        &Mode::Execute {
            relation: &resolver,
            this,
            is_incremental,
            watermark,
        },
    )
}

/// Walk dependencies: tables read, and ephemeral models' SQL in dependency order.
fn collect(
    graph: &Graph,
    model: &Model,
    vars: &TemplateVars,
    ctes: &mut Vec<(String, String)>,
    reads: &mut BTreeSet<String>,
    seen: &mut BTreeSet<String>,
) -> Result<()> {
    for dep in &model.depends_on {
        visit_dependency(graph, dep, vars, ctes, reads, seen)?;
    }
    Ok(())
}

fn visit_dependency(
    graph: &Graph,
    dep: &Dependency,
    vars: &TemplateVars,
    ctes: &mut Vec<(String, String)>,
    reads: &mut BTreeSet<String>,
    seen: &mut BTreeSet<String>,
) -> Result<()> {
    match dep {
        Dependency::Source { source, table, .. } => {
            reads.insert(format!("{source}.{table}"));
        }
        Dependency::Model { name, .. } => {
            let Some(idx) = graph.index_of(name) else {
                return Err(anyhow!("ref('{name}') names no model"));
            };
            let m = graph.model(idx);
            if m.config.materialized != Materialized::Ephemeral {
                reads.insert(m.table_name());
            } else if seen.insert(m.name.clone()) {
                collect(graph, m, vars, ctes, reads, seen)?;
                let ModelBody::Sql { raw_sql } = &m.body else {
                    return Err(anyhow!("ephemeral model {} must be SQL", m.name));
                };
                let sql = render(graph, m, raw_sql, vars, "NULL".into(), false, None)?.sql;
                ctes.push((ephemeral_name(&m.name), sql));
            }
        }
    }
    Ok(())
}

/// Put `ctes` in front of `sql`, merging with a leading `WITH` if the query has one.
pub fn inject_ctes(sql: &str, ctes: &[(String, String)]) -> String {
    if ctes.is_empty() {
        return sql.to_string();
    }
    let defs: Vec<String> = ctes
        .iter()
        .map(|(name, body)| format!("{name} AS (\n{}\n)", strip_trailing_semicolon(body)))
        .collect();
    let defs = defs.join(",\n");
    let start = skip_comments_and_space(sql);
    let rest = &sql[start..];
    if starts_with_keyword(rest, "with") {
        let after_with = &rest[4..];
        let trimmed = after_with.trim_start();
        if starts_with_keyword(trimmed, "recursive") {
            let offset = start + 4 + (after_with.len() - trimmed.len()) + "recursive".len();
            return format!("{} {defs},{}", &sql[..offset], &sql[offset..]);
        }
        let offset = start + 4;
        return format!("{} {defs},{}", &sql[..offset], &sql[offset..]);
    }
    format!("WITH {defs}\n{}", strip_trailing_semicolon(sql))
}

fn strip_trailing_semicolon(s: &str) -> &str {
    s.trim_end().trim_end_matches(';')
}

fn starts_with_keyword(s: &str, kw: &str) -> bool {
    s.len() >= kw.len()
        && s[..kw.len()].eq_ignore_ascii_case(kw)
        && s[kw.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
}

fn skip_comments_and_space(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if sql[i..].starts_with("--") {
            i = sql[i..].find('\n').map(|n| i + n + 1).unwrap_or(sql.len());
        } else if sql[i..].starts_with("/*") {
            i = sql[i..].find("*/").map(|n| i + n + 2).unwrap_or(sql.len());
        } else {
            return i;
        }
    }
}
