//! dbt-style YAML property files: `sources:`, `models:` and `seeds:` with descriptions, columns,
//! `config:` and `data_tests:` (`tests:` is accepted too).

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use serde_json::Value as Json;

use super::model::{ColumnDoc, DataTest, DataTestKind, Dependency, Severity};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyFile {
    #[serde(default)]
    pub version: Option<Json>,
    #[serde(default)]
    pub sources: Vec<SourceDef>,
    #[serde(default)]
    pub models: Vec<ModelDef>,
    #[serde(default)]
    pub seeds: Vec<SeedDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub meta: Option<Json>,
    #[serde(default)]
    pub tables: Vec<SourceTableDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTableDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub meta: Option<Json>,
    #[serde(default)]
    pub columns: Vec<ColumnDef>,
    #[serde(default)]
    pub data_tests: Vec<Json>,
    #[serde(default)]
    pub tests: Vec<Json>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub meta: Option<Json>,
    #[serde(default)]
    pub docs: Option<Json>,
    #[serde(default)]
    pub config: serde_json::Map<String, Json>,
    #[serde(default)]
    pub columns: Vec<ColumnDef>,
    #[serde(default)]
    pub data_tests: Vec<Json>,
    #[serde(default)]
    pub tests: Vec<Json>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub meta: Option<Json>,
    #[serde(default)]
    pub config: SeedConfigDef,
    #[serde(default)]
    pub columns: Vec<ColumnDef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedConfigDef {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub files: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
    /// `append` (default: each file loaded once) or `replace` (reload every file when one changed).
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub column_types: Option<serde_yaml_ng::Mapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default)]
    pub meta: Option<Json>,
    #[serde(default)]
    pub data_tests: Vec<Json>,
    #[serde(default)]
    pub tests: Vec<Json>,
}

impl ColumnDef {
    pub fn doc(&self) -> ColumnDoc {
        ColumnDoc {
            name: self.name.clone(),
            description: self.description.clone(),
            data_type: self.data_type.clone(),
        }
    }
}

/// Parse one property file; errors name the file and line.
pub fn parse(path: &Path, text: &str) -> Result<PropertyFile> {
    if text.trim().is_empty() {
        return Ok(PropertyFile::default());
    }
    serde_yaml_ng::from_str(text).map_err(|e| {
        let location = e
            .location()
            .map(|l| format!(":{}", l.line()))
            .unwrap_or_default();
        anyhow!("{}{location}: {e}", path.display())
    })
}

/// Turn the YAML test entries on a table (and its columns) into [`DataTest`]s.
///
/// `table` names the tested node (`stg_orders` or `raw_shopify_orders`) for test names.
pub fn data_tests(
    path: &Path,
    table: &str,
    table_tests: &[Json],
    columns: &[ColumnDef],
) -> Result<Vec<DataTest>> {
    let mut out = Vec::new();
    for t in table_tests {
        out.push(parse_test(path, table, None, t)?);
    }
    for c in columns {
        for t in c.data_tests.iter().chain(&c.tests) {
            out.push(parse_test(path, table, Some(&c.name), t)?);
        }
    }
    Ok(out)
}

fn parse_test(path: &Path, table: &str, column: Option<&str>, entry: &Json) -> Result<DataTest> {
    let where_ = || format!("{}: test on {table}{}", path.display(), column.map(|c| format!(".{c}")).unwrap_or_default());
    let (kind_name, args) = match entry {
        Json::String(s) => (s.clone(), serde_json::Map::new()),
        Json::Object(map) if map.len() == 1 => {
            let (k, v) = map.iter().next().expect("one entry");
            let args = match v {
                Json::Object(a) => a.clone(),
                Json::Null => serde_json::Map::new(),
                _ => bail!("{}: arguments of '{k}' must be a mapping", where_()),
            };
            (k.clone(), args)
        }
        _ => bail!("{}: a test is a name (`- unique`) or a one-key mapping (`- accepted_values: {{values: [...]}}`)", where_()),
    };
    // dbt 1.10 nests arguments under `arguments:`; older files put them beside `config:`.
    let mut arguments = args.clone();
    if let Some(Json::Object(nested)) = args.get("arguments") {
        arguments.extend(nested.clone());
    }
    let config = match args.get("config") {
        Some(Json::Object(c)) => c.clone(),
        None | Some(Json::Null) => serde_json::Map::new(),
        Some(_) => bail!("{}: config of '{kind_name}' must be a mapping", where_()),
    };
    const TEST_CONFIG_KEYS: [&str; 2] = ["severity", "where"];
    if let Some(unknown) = config.keys().find(|k| !TEST_CONFIG_KEYS.contains(&k.as_str())) {
        bail!(
            "{}: unknown config key '{unknown}' in test '{kind_name}' (known: {})",
            where_(),
            TEST_CONFIG_KEYS.join(", ")
        );
    }
    let severity = match config.get("severity").or(arguments.get("severity")) {
        None => Severity::Error,
        Some(Json::String(s)) if s.eq_ignore_ascii_case("error") => Severity::Error,
        Some(Json::String(s)) if s.eq_ignore_ascii_case("warn") => Severity::Warn,
        Some(other) => bail!("{}: severity {other} must be error or warn", where_()),
    };
    let where_clause = config
        .get("where")
        .or(arguments.get("where"))
        .and_then(|w| w.as_str())
        .map(str::to_string);
    let column = column
        .map(str::to_string)
        .or_else(|| arguments.get("column_name").and_then(|c| c.as_str()).map(str::to_string));
    let needs_column = || {
        column
            .clone()
            .ok_or_else(|| anyhow!("{}: '{kind_name}' needs a column (put it under columns:, or give column_name)", where_()))
    };
    let kind = match kind_name.as_str() {
        "unique" => {
            needs_column()?;
            DataTestKind::Unique
        }
        "not_null" => {
            needs_column()?;
            DataTestKind::NotNull
        }
        "accepted_values" => {
            needs_column()?;
            let values = match arguments.get("values") {
                Some(Json::Array(v)) if !v.is_empty() => v.clone(),
                _ => bail!("{}: accepted_values needs a non-empty `values:` list", where_()),
            };
            DataTestKind::AcceptedValues { values }
        }
        "relationships" => {
            needs_column()?;
            let to = arguments
                .get("to")
                .and_then(|t| t.as_str())
                .ok_or_else(|| anyhow!("{}: relationships needs `to:` (e.g. ref('customers'))", where_()))?;
            let field = arguments
                .get("field")
                .and_then(|t| t.as_str())
                .ok_or_else(|| anyhow!("{}: relationships needs `field:`", where_()))?;
            DataTestKind::Relationships {
                to: parse_relation(to).ok_or_else(|| {
                    anyhow!("{}: relationships `to: {to}` must be ref('model') or source('src', 'table')", where_())
                })?,
                field: field.to_string(),
            }
        }
        other => bail!(
            "{}: unknown test '{other}' (generic tests: unique, not_null, accepted_values, relationships; write others as SQL files under tests/)",
            where_()
        ),
    };
    let name = match &column {
        Some(c) => format!("{kind_name}_{table}_{c}"),
        None => format!("{kind_name}_{table}"),
    };
    Ok(DataTest {
        name,
        kind,
        column,
        severity,
        where_clause,
    })
}

/// Parse `ref('m')` or `source('s', 't')` as written in a `relationships` test.
fn parse_relation(s: &str) -> Option<Dependency> {
    let s = s.trim();
    let args = |inner: &str| -> Vec<String> {
        inner
            .split(',')
            .map(|a| a.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
            .collect()
    };
    if let Some(inner) = s.strip_prefix("ref(").and_then(|r| r.strip_suffix(')')) {
        let a = args(inner);
        return (a.len() == 1 && !a[0].is_empty()).then(|| Dependency::Model {
            name: a[0].clone(),
            line: 0,
        });
    }
    if let Some(inner) = s.strip_prefix("source(").and_then(|r| r.strip_suffix(')')) {
        let a = args(inner);
        return (a.len() == 2).then(|| Dependency::Source {
            source: a[0].clone(),
            table: a[1].clone(),
            line: 0,
        });
    }
    None
}
