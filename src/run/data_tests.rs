//! Data tests: the generic ones declared in YAML (`unique`, `not_null`, `accepted_values`,
//! `relationships`) compiled to SQL that returns failing rows, and singular SQL tests.

use serde_json::Value as Json;

use super::compile::quoted;
use crate::project::model::{DataTest, DataTestKind, Dependency};

/// SQL selecting the rows that fail `test` on `table` (`namespace.table`), or `None` with a
/// reason when the test cannot be expressed.
pub fn generic_test_sql(
    test: &DataTest,
    namespace: &str,
    table: &str,
    resolve: &dyn Fn(&Dependency) -> Option<(String, String)>,
) -> Result<String, String> {
    let relation = match &test.where_clause {
        Some(w) => format!("(SELECT * FROM {} WHERE {w}) AS t", quoted(namespace, table)),
        None => format!("{} AS t", quoted(namespace, table)),
    };
    let col = test.column.as_deref().map(ident).unwrap_or_default();
    Ok(match &test.kind {
        DataTestKind::NotNull => format!("SELECT * FROM {relation} WHERE {col} IS NULL"),
        DataTestKind::Unique => format!(
            "SELECT {col} AS value, COUNT(*) AS occurrences FROM {relation} \
             WHERE {col} IS NOT NULL GROUP BY {col} HAVING COUNT(*) > 1"
        ),
        DataTestKind::AcceptedValues { values } => {
            let list: Vec<String> = values.iter().map(literal).collect();
            format!(
                "SELECT {col} AS value, COUNT(*) AS occurrences FROM {relation} \
                 WHERE {col} IS NOT NULL AND {col} NOT IN ({}) GROUP BY {col}",
                list.join(", ")
            )
        }
        DataTestKind::Relationships { to, field } => {
            let (parent_ns, parent_table) = resolve(to).ok_or_else(|| match to {
                Dependency::Model { name, .. } => format!("relationships: ref('{name}') names no model that is written to a table"),
                Dependency::Source { source, table, .. } => format!("relationships: source('{source}', '{table}') is not declared"),
            })?;
            format!(
                "SELECT t.{col} AS value FROM {relation} \
                 LEFT JOIN {} AS p ON t.{col} = p.{} \
                 WHERE t.{col} IS NOT NULL AND p.{} IS NULL",
                quoted(&parent_ns, &parent_table),
                ident(field),
                ident(field)
            )
        }
    })
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(v: &Json) -> String {
    match v {
        Json::String(s) => format!("'{}'", s.replace('\'', "''")),
        Json::Null => "NULL".into(),
        Json::Bool(b) => b.to_string().to_uppercase(),
        other => other.to_string(),
    }
}
