//! The project on disk: `lake.toml`, YAML property files, model discovery and templating.
//!
//! [`Project::load`] reads everything under the project root into plain data ([`model`]);
//! nothing here touches the catalog.

pub mod config;
pub mod ingest;
pub mod macros;
pub mod model;
pub mod openlineage;
pub mod properties;
pub mod secrets;
pub mod templates;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value as Json;

use config::{ConfigOverrides, ProjectConfig};
use model::{
    Dependency, IncrementalStrategy, Materialized, Model, ModelBody, ModelConfig, OnSchemaChange,
    Seed, SeedFormat, SeedMode, Severity, SingularTest, SourceTable, WatermarkSpec,
};
use templates::{Mode, TemplateVars};

/// A parsed project.
#[derive(Debug, Clone)]
pub struct Project {
    pub config: ProjectConfig,
    pub models: Vec<Model>,
    pub sources: Vec<SourceTable>,
    pub seeds: Vec<Seed>,
    pub singular_tests: Vec<SingularTest>,
    /// The macros under the macro path, loaded once.
    pub macros: std::sync::Arc<macros::Macros>,
}

impl Project {
    /// Load the project rooted at `root`.
    pub fn load(root: &Path, overrides: &ConfigOverrides) -> Result<Project> {
        let config = ProjectConfig::load(root, overrides)?;
        Self::load_with_config(config)
    }

    pub fn load_with_config(config: ProjectConfig) -> Result<Project> {
        let macros = std::sync::Arc::new(macros::Macros::load(&config.root, &config.macro_path)?);
        let vars = template_vars(&config, &macros);
        let files = ProjectFiles::discover(&config)?;
        let mut props = read_properties(&config, &files)?;
        let mut models = sql_models(&config, &files.sql, &vars, &mut props.models)?;
        models.extend(rust_models(&config, props.models)?);
        models.retain(|m| m.config.enabled);
        models.sort_by(|a, b| a.name.cmp(&b.name));

        let seeds = props
            .seeds
            .into_iter()
            .map(|(path, def)| seed(&config, &path, def))
            .collect::<Result<Vec<_>>>()?;
        let singular_tests = singular_tests(&config, &vars)?;
        Ok(Project {
            config,
            models,
            sources: props.sources,
            seeds,
            singular_tests,
            macros,
        })
    }

    pub fn template_vars(&self) -> TemplateVars {
        template_vars(&self.config, &self.macros)
    }

    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }
}

fn template_vars(config: &ProjectConfig, macros: &std::sync::Arc<macros::Macros>) -> TemplateVars {
    TemplateVars {
        vars: config.vars.clone(),
        target: config.target.clone(),
        macros: macros.clone(),
        idle: Default::default(),
    }
}

fn finish_model(
    name: String,
    layer: String,
    path: PathBuf,
    body: ModelBody,
    config: ModelConfig,
    depends_on: Vec<Dependency>,
    def: Option<(PathBuf, properties::ModelDef)>,
) -> Result<Model> {
    let (description, columns, tests) = match def {
        Some((yaml_path, d)) => {
            let tests = properties::data_tests(
                &yaml_path,
                &name,
                &[d.data_tests.clone(), d.tests.clone()].concat(),
                &d.columns,
            )?;
            (
                d.description.clone(),
                d.columns.iter().map(|c| c.doc()).collect(),
                tests,
            )
        }
        None => (None, Vec::new(), Vec::new()),
    };
    if config.materialized == Materialized::Ephemeral && !tests.is_empty() {
        bail!("{}: ephemeral model '{name}' is never written, so it cannot have data tests", path.display());
    }
    Ok(Model {
        name,
        layer,
        path,
        body,
        config,
        depends_on,
        description,
        columns,
        tests,
    })
}

/// The layer of a file under the model path: the first folder below it.
fn layer_of(config: &ProjectConfig, path: &Path) -> Result<String> {
    let relative = path.strip_prefix(&config.model_path).unwrap_or(path);
    let mut parts = relative.components();
    let first = parts.next().and_then(|c| c.as_os_str().to_str()).unwrap_or("");
    let display = path.strip_prefix(&config.root).unwrap_or(path).display().to_string();
    if parts.next().is_none() {
        bail!(
            "{display}: models live in a layer folder (models/<layer>/...); layers: {}",
            config.layers.join(", ")
        );
    }
    if !config.layers.iter().any(|l| l == first) {
        bail!(
            "{display}: '{first}' is not a layer in lake.toml (layers: {})",
            config.layers.join(", ")
        );
    }
    Ok(first.to_string())
}

const CONFIG_KEYS: &[&str] = &[
    "materialized",
    "incremental_strategy",
    "unique_key",
    "dedupe_by",
    "delete_when",
    "merge_mode",
    "range_by",
    "on_schema_change",
    "lookback",
    "maintenance",
    "watermark",
    "partition_by",
    "tags",
    "enabled",
    "allow_back_edges",
    "function",
    "inputs",
    "params",
    "lineage",
    "meta",
    "description",
];

/// Parse and validate a model's merged `config`.
fn model_config(path: &Path, cfg: &serde_json::Map<String, Json>) -> Result<ModelConfig> {
    let at = |key: &str| format!("{}: config {key}", path.display());
    let mut out = ModelConfig {
        enabled: true,
        ..Default::default()
    };
    for (key, value) in cfg {
        match key.as_str() {
            "materialized" => {
                let s = value.as_str().unwrap_or_default();
                out.materialized = Materialized::parse(s).ok_or_else(|| {
                    anyhow!("{} = {value}: use 'table', 'incremental' or 'ephemeral'", at(key))
                })?;
            }
            "incremental_strategy" => {
                out.incremental_strategy = value
                    .as_str()
                    .and_then(IncrementalStrategy::parse)
                    .ok_or_else(|| anyhow!("{} = {value}: use 'append', 'merge' or 'replace_range'", at(key)))?;
            }
            "on_schema_change" => {
                out.on_schema_change = value
                    .as_str()
                    .and_then(OnSchemaChange::parse)
                    .ok_or_else(|| anyhow!("{} = {value}: use 'fail', 'append_new_columns' or 'sync_all_columns'", at(key)))?;
            }
            "dedupe_by" => out.dedupe_by = Some(column_name(value).ok_or_else(|| anyhow!("{} must be a column name", at(key)))?),
            "delete_when" => {
                out.delete_when = Some(column_name(value).ok_or_else(|| anyhow!("{} must be a boolean column's name", at(key)))?)
            }
            "merge_mode" => {
                out.merge_mode = Some(value.as_str().and_then(crate::lakehouse::writer::MergeMode::parse).ok_or_else(|| {
                    anyhow!("{} = {value}: use 'copy-on-write' or 'merge-on-read'", at(key))
                })?)
            }
            "range_by" => out.range_by = Some(column_name(value).ok_or_else(|| anyhow!("{} must be a column name", at(key)))?),
            "lookback" => {
                out.lookback = Some(match value {
                    Json::String(s) if !s.trim().is_empty() => s.trim().to_string(),
                    Json::Number(n) => n.to_string(),
                    _ => bail!("{} must be an interval like '2 hours' or a number", at(key)),
                })
            }
            "maintenance" => {
                if !value.is_object() {
                    bail!("{} must be a mapping", at(key));
                }
                out.maintenance = Some(value.clone());
            }
            "unique_key" => out.unique_key = strings(value).ok_or_else(|| anyhow!("{} must be a column name or a list of them", at(key)))?,
            "watermark" => {
                let column = column_name(value)
                    .ok_or_else(|| anyhow!("{} must be a column name or 'snapshot'", at(key)))?;
                out.watermark = Some(if column == "snapshot" {
                    WatermarkSpec::Snapshot
                } else {
                    WatermarkSpec::Column(column)
                });
            }
            "partition_by" => {
                let fields = strings(value).ok_or_else(|| {
                    anyhow!("{} must be a list like ['day(created_at)', 'country']", at(key))
                })?;
                out.partition_by = fields
                    .iter()
                    .map(|f| crate::lakehouse::schema::parse_partition_field(f).ok_or_else(|| anyhow!("{}: cannot read '{f}' (use col, day(col), month(col), year(col), hour(col), bucket(N, col), truncate(N, col))", at(key))))
                    .collect::<Result<_>>()?;
            }
            "tags" => out.tags = strings(value).ok_or_else(|| anyhow!("{} must be a tag or a list of tags", at(key)))?,
            "enabled" => out.enabled = value.as_bool().ok_or_else(|| anyhow!("{} must be true or false", at(key)))?,
            "allow_back_edges" => out.allow_back_edges = value.as_bool().ok_or_else(|| anyhow!("{} must be true or false", at(key)))?,
            other if CONFIG_KEYS.contains(&other) => {
                out.extra.insert(other.to_string(), value.clone());
            }
            other => {
                let hint = CONFIG_KEYS
                    .iter()
                    .map(|k| (strsim::jaro_winkler(k, other), k))
                    .filter(|(s, _)| *s > 0.85)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, k)| format!("; did you mean '{k}'?"))
                    .unwrap_or_default();
                bail!("{}: unknown config key '{other}'{hint}", path.display());
            }
        }
    }
    if out.materialized == Materialized::Incremental {
        match out.incremental_strategy {
            IncrementalStrategy::Merge if out.unique_key.is_empty() => {
                bail!("{}: incremental_strategy 'merge' needs unique_key", path.display())
            }
            IncrementalStrategy::ReplaceRange
                if out.range_by.is_none()
                    && !matches!(out.watermark, Some(WatermarkSpec::Column(_)))
                    && out.partition_by.is_empty() =>
            {
                bail!(
                    "{}: incremental_strategy 'replace_range' needs range_by, a column watermark or partition_by",
                    path.display()
                )
            }
            _ => {}
        }
    }
    if out.lookback.is_some() && !matches!(out.watermark, Some(WatermarkSpec::Column(_))) {
        bail!("{}: lookback needs a column watermark", path.display());
    }
    Ok(out)
}

fn column_name(value: &Json) -> Option<String> {
    value.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn strings(value: &Json) -> Option<Vec<String>> {
    match value {
        Json::String(s) => Some(vec![s.clone()]),
        Json::Array(a) => a.iter().map(|v| v.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// The files a project is made of.
struct ProjectFiles {
    sql: Vec<PathBuf>,
    /// Property files under the model path, then under the seed path.
    yaml: Vec<PathBuf>,
}

impl ProjectFiles {
    fn discover(config: &ProjectConfig) -> Result<Self> {
        let mut sql = Vec::new();
        let mut yaml = Vec::new();
        if config.model_path.is_dir() {
            walk(&config.model_path, &mut |p| match p.extension().and_then(|e| e.to_str()) {
                Some("sql") => sql.push(p.to_path_buf()),
                Some("yml") | Some("yaml") => yaml.push(p.to_path_buf()),
                _ => {}
            })?;
        }
        if config.seed_path.is_dir() {
            walk(&config.seed_path, &mut |p| {
                if matches!(p.extension().and_then(|e| e.to_str()), Some("yml") | Some("yaml")) {
                    yaml.push(p.to_path_buf());
                }
            })?;
        }
        Ok(ProjectFiles { sql, yaml })
    }
}

/// What the property files say, by kind.
struct Properties {
    /// Model name → (property file, its entry).
    models: HashMap<String, (PathBuf, properties::ModelDef)>,
    sources: Vec<SourceTable>,
    seeds: Vec<(PathBuf, properties::SeedDef)>,
}

fn relative(config: &ProjectConfig, p: &Path) -> PathBuf {
    p.strip_prefix(&config.root).unwrap_or(p).to_path_buf()
}

/// Property files first: descriptions, tests and YAML config by model name.
/// A source table's freshness: its own block, else its source's; `loaded_at_field` likewise.
fn source_freshness(
    rel: &Path,
    source: &properties::SourceDef,
    table: &properties::SourceTableDef,
) -> Result<Option<model::Freshness>> {
    let inherited = source.freshness.as_ref();
    let Some(def) = table.freshness.as_ref().map_or(inherited, Option::as_ref) else {
        return Ok(None);
    };
    let at = |k: &str| format!("{}: source {}.{}: freshness.{k}", rel.display(), source.name, table.name);
    let warn_after = def.warn_after.as_ref().map(|a| a.duration(&at("warn_after"))).transpose()?;
    let error_after = def.error_after.as_ref().map(|a| a.duration(&at("error_after"))).transpose()?;
    if warn_after.is_none() && error_after.is_none() {
        bail!("{}: give warn_after, error_after or both", at("").trim_end_matches('.'));
    }
    Ok(Some(model::Freshness {
        warn_after,
        error_after,
        loaded_at_field: table.loaded_at_field.clone().unwrap_or_else(|| source.loaded_at_field.clone()),
        filter: def.filter.clone(),
    }))
}

fn read_properties(config: &ProjectConfig, files: &ProjectFiles) -> Result<Properties> {
    let mut out = Properties {
        models: HashMap::new(),
        sources: Vec::new(),
        seeds: Vec::new(),
    };
    for path in &files.yaml {
        let rel = relative(config, path);
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file = properties::parse(&rel, &text)?;
        for source in file.sources {
            for table in &source.tables {
                let tests = properties::data_tests(
                    &rel,
                    &format!("{}_{}", source.name, table.name),
                    &[table.data_tests.clone(), table.tests.clone()].concat(),
                    &table.columns,
                )?;
                let freshness = source_freshness(&rel, &source, table)?;
                out.sources.push(SourceTable {
                    source: source.name.clone(),
                    table: table.name.clone(),
                    description: table.description.clone(),
                    path: rel.clone(),
                    tests,
                    freshness,
                });
            }
        }
        for m in file.models {
            if let Some((other, _)) = out.models.get(&m.name) {
                bail!("{}: model '{}' is already described in {}", rel.display(), m.name, other.display());
            }
            out.models.insert(m.name.clone(), (rel.clone(), m));
        }
        for s in file.seeds {
            out.seeds.push((rel.clone(), s));
        }
    }
    Ok(out)
}

/// The `.sql` models, each with its property-file entry (taken out of `defs`).
fn sql_models(
    config: &ProjectConfig,
    sql_files: &[PathBuf],
    vars: &TemplateVars,
    defs: &mut HashMap<String, (PathBuf, properties::ModelDef)>,
) -> Result<Vec<Model>> {
    let mut models = Vec::new();
    for path in sql_files {
        let relative = relative(config, path);
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| anyhow!("{}: model file name is not UTF-8", relative.display()))?
            .to_string();
        let layer = layer_of(config, path)?;
        let raw_sql =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", relative.display()))?;
        let rendered = templates::render(&relative, &raw_sql, vars, &Mode::Parse)?;
        let def = defs.remove(&name);
        let mut cfg = def.as_ref().map(|(_, d)| d.config.clone()).unwrap_or_default();
        cfg.extend(rendered.config);
        let config_parsed = model_config(&relative, &cfg)?;
        if let Some(f) = cfg.get("function") {
            bail!("{}: `function` ({f}) is for Rust models declared in YAML; a .sql model runs its SQL", relative.display());
        }
        models.push(finish_model(
            name,
            layer,
            relative,
            ModelBody::Sql { raw_sql },
            config_parsed,
            rendered.depends_on,
            def,
        )?);
    }
    Ok(models)
}

/// YAML entries left after the SQL models are Rust models (or describe a missing SQL file).
fn rust_models(config: &ProjectConfig, defs: HashMap<String, (PathBuf, properties::ModelDef)>) -> Result<Vec<Model>> {
    let mut rest: Vec<_> = defs.into_values().collect();
    rest.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    let mut models = Vec::new();
    for (path, def) in rest {
        let Some(function) = def.config.get("function").and_then(|f| f.as_str()).map(str::to_string) else {
            bail!(
                "{}: model '{}' has no SQL file and no `config: function:` naming a Rust model",
                path.display(),
                def.name
            );
        };
        let layer = layer_of(config, &config.root.join(&path))?;
        let depends_on = rust_inputs(&path, &def.config)?;
        let cfg = model_config(&path, &def.config)?;
        if cfg.materialized == Materialized::Ephemeral {
            bail!("{}: Rust model '{}' cannot be ephemeral", path.display(), def.name);
        }
        models.push(finish_model(
            def.name.clone(),
            layer,
            path.clone(),
            ModelBody::Rust { function },
            cfg,
            depends_on,
            Some((path, def)),
        )?);
    }
    Ok(models)
}

/// A Rust model's `inputs:`: model names, or `source.table` for sources.
fn rust_inputs(path: &Path, cfg: &serde_json::Map<String, Json>) -> Result<Vec<Dependency>> {
    let Some(inputs) = cfg.get("inputs") else {
        return Ok(Vec::new());
    };
    let names = strings(inputs).ok_or_else(|| {
        anyhow!("{}: config inputs must be a list of model names or source.table", path.display())
    })?;
    Ok(names
        .into_iter()
        .map(|n| match n.split_once('.') {
            Some((s, t)) => Dependency::Source {
                source: s.to_string(),
                table: t.to_string(),
                line: 0,
            },
            None => Dependency::Model { name: n, line: 0 },
        })
        .collect())
}

fn seed(config: &ProjectConfig, path: &Path, def: properties::SeedDef) -> Result<Seed> {
    let at = |k: &str| format!("{}: seed '{}': {k}", path.display(), def.name);
    let namespace = def.config.namespace.clone().unwrap_or_else(|| "raw".into());
    let table = def.config.table.clone().unwrap_or_else(|| def.name.clone());
    let pattern = def.config.files.clone();
    let mut files = Vec::new();
    let candidates: Vec<String> = match &pattern {
        Some(p) => vec![p.clone()],
        None => vec![format!("{}.csv", def.name), format!("{}.ndjson", def.name)],
    };
    for pat in &candidates {
        let full = config.seed_path.join(pat);
        let full = full.to_string_lossy().to_string();
        for entry in glob_files(&full)? {
            files.push(entry.strip_prefix(&config.root).unwrap_or(&entry).to_path_buf());
        }
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        bail!(
            "{}: no file matches {} under {}",
            at("files"),
            candidates.join(" or "),
            config.seed_path.strip_prefix(&config.root).unwrap_or(&config.seed_path).display()
        );
    }
    let format = match def.config.format.as_deref() {
        Some("csv") => SeedFormat::Csv,
        Some("ndjson") | Some("jsonl") | Some("json") => SeedFormat::Ndjson,
        Some(other) => bail!("{} = '{other}': use csv or ndjson", at("format")),
        None => {
            let ext = files[0].extension().and_then(|e| e.to_str()).unwrap_or("");
            match ext {
                "csv" => SeedFormat::Csv,
                "ndjson" | "jsonl" | "json" => SeedFormat::Ndjson,
                _ => bail!("{}: cannot tell the format of {}; set config.format", at("format"), files[0].display()),
            }
        }
    };
    let column_types = match &def.config.column_types {
        Some(map) => map
            .iter()
            .map(|(k, v)| {
                let k = k.as_str().ok_or_else(|| anyhow!("{}: column names must be strings", at("column_types")))?;
                let v = v.as_str().ok_or_else(|| anyhow!("{}: type of '{k}' must be a string", at("column_types")))?;
                Ok((k.to_string(), v.to_string()))
            })
            .collect::<Result<Vec<_>>>()?,
        None => bail!("{}: declare every column and its type, e.g. `column_types: {{id: bigint}}`", at("column_types")),
    };
    let mode = match def.config.mode.as_deref() {
        None | Some("append") => SeedMode::Append,
        Some("replace") => SeedMode::Replace,
        Some(other) => bail!("{} = '{other}': use append or replace", at("mode")),
    };
    Ok(Seed {
        name: def.name,
        namespace,
        table,
        format,
        mode,
        files,
        column_types,
        path: path.to_path_buf(),
    })
}

/// Files matching a glob with `*` and `?` in the last path component.
fn glob_files(pattern: &str) -> Result<Vec<PathBuf>> {
    let path = Path::new(pattern);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?']) {
        return Ok(if path.is_file() { vec![path.to_path_buf()] } else { vec![] });
    }
    let mut out = Vec::new();
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(file) = entry.file_name().to_str() {
                if entry.path().is_file() && wildcard_match(name, file) {
                    out.push(entry.path());
                }
            }
        }
    }
    Ok(out)
}

/// `*` and `?` wildcard matching.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn singular_tests(config: &ProjectConfig, vars: &TemplateVars) -> Result<Vec<SingularTest>> {
    let mut files = Vec::new();
    if config.test_path.is_dir() {
        // Only top-level and nested .sql files; Rust tests (tests/it/*.rs) are ignored.
        walk(&config.test_path, &mut |p| {
            if p.extension().and_then(|e| e.to_str()) == Some("sql") {
                files.push(p.to_path_buf());
            }
        })?;
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&config.root).unwrap_or(&path).to_path_buf();
        let raw_sql = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", relative.display()))?;
        let rendered = templates::render(&relative, &raw_sql, vars, &Mode::Parse)?;
        let severity = match rendered.config.get("severity").and_then(|s| s.as_str()) {
            Some(s) if s.eq_ignore_ascii_case("warn") => Severity::Warn,
            _ => Severity::Error,
        };
        out.push(SingularTest {
            name: path.file_stem().and_then(|s| s.to_str()).unwrap_or("test").to_string(),
            path: relative,
            raw_sql,
            depends_on: rendered.depends_on,
            severity,
        });
    }
    Ok(out)
}

/// Visit every file below `dir`, in sorted order, skipping hidden entries.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, f)?;
        } else {
            f(&path);
        }
    }
    Ok(())
}
