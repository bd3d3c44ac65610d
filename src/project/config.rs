//! `lake.toml`: project settings, the catalog, storage, named targets and `${ENV}` interpolation.
//!
//! Loading is strict: an unknown key or a bad value is an error naming the key, and a missing
//! environment variable names the key that used it (never the value of a secret).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use super::secrets;
use crate::lakehouse::catalog::{CatalogSpec, Timeouts};
use crate::lakehouse::writer::{Codec, MergeMode, WriteOptions};

pub const CONFIG_FILE: &str = "lake.toml";

/// The default layer order: a model may read only from its own or earlier layers.
pub const DEFAULT_LAYERS: [&str; 5] = ["raw", "staging", "semantic", "analytics", "marts"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    #[serde(default)]
    layers: Option<Vec<String>>,
    #[serde(default)]
    model_path: Option<String>,
    #[serde(default)]
    seed_path: Option<String>,
    #[serde(default)]
    test_path: Option<String>,
    #[serde(default)]
    macro_path: Option<String>,
    #[serde(default)]
    catalog: RawCatalog,
    /// Storage properties passed to FileIO (`s3.endpoint`, `s3.region`, ...).
    #[serde(default)]
    storage: BTreeMap<String, String>,
    #[serde(default)]
    write: RawWrite,
    #[serde(default)]
    run: RawRun,
    #[serde(default)]
    vars: BTreeMap<String, toml::Value>,
    /// `[ingest.<source>]`: sources of `lake ingest`.
    #[serde(default)]
    ingest: BTreeMap<String, super::ingest::SourceConfig>,
    /// `[openlineage]`: where run events are sent.
    #[serde(default)]
    openlineage: Option<super::openlineage::RawOpenLineage>,
    /// Applied before deserializing (see [`ProjectConfig::parse`]); listed so the key is known.
    #[serde(default, rename = "targets")]
    _targets: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(rename = "type", default)]
    kind: Option<CatalogKind>,
    name: Option<String>,
    uri: Option<String>,
    warehouse: Option<String>,
    /// REST: OAuth2 client credential `id:secret`.
    credential: Option<String>,
    /// REST: bearer token.
    token: Option<String>,
    /// Extra catalog properties (`pool.max-connections`, `header.X-Foo`, ...).
    #[serde(default)]
    properties: BTreeMap<String, String>,
    /// Seconds to wait for a connection to the catalog (and the first answer of the storage).
    connect_timeout_seconds: Option<f64>,
    /// Seconds to wait for one catalog or storage request, retries included.
    request_timeout_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    #[default]
    Sql,
    Rest,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWrite {
    target_file_size_mb: Option<u64>,
    compression: Option<String>,
    merge_mode: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    threads: Option<usize>,
}

/// A loaded, validated `lake.toml` with a target applied.
#[derive(Debug, Clone)]
pub struct ProjectConfig {
    pub name: String,
    pub root: PathBuf,
    pub layers: Vec<String>,
    pub model_path: PathBuf,
    pub seed_path: PathBuf,
    pub test_path: PathBuf,
    /// `{% macro %}` files (`macros/`).
    pub macro_path: PathBuf,
    pub catalog: CatalogSpec,
    pub write: WriteOptions,
    pub threads: usize,
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Sources of `lake ingest`, by name.
    pub ingest: BTreeMap<String, super::ingest::SourceConfig>,
    /// `[openlineage]`, when events are to be sent.
    pub openlineage: Option<super::openlineage::OpenLineageConfig>,
    /// The chosen target, if any.
    pub target: Option<String>,
}

/// Options that come from the command line rather than the file.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    pub target: Option<String>,
    /// `--vars` as YAML or JSON.
    pub vars: Option<String>,
}

impl ProjectConfig {
    /// Read `<root>/lake.toml`, apply the target, interpolate `${ENV}` and the `LAKE_*` variables.
    pub fn load(root: &Path, overrides: &ConfigOverrides) -> Result<Self> {
        let path = root.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no {CONFIG_FILE} in {} (run `lake init` to create a project)",
                root.display()
            )
        })?;
        Self::parse(root, &text, overrides)
    }

    pub fn parse(root: &Path, text: &str, overrides: &ConfigOverrides) -> Result<Self> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let target = overrides
            .target
            .clone()
            .or_else(|| std::env::var("LAKE_TARGET").ok().filter(|t| !t.is_empty()));
        if let Some(target) = &target {
            let targets = value.get("targets").and_then(|t| t.as_table());
            let chosen = targets.and_then(|t| t.get(target)).cloned().ok_or_else(|| {
                let known: Vec<String> = targets
                    .map(|t| t.keys().cloned().collect())
                    .unwrap_or_default();
                anyhow!(
                    "{CONFIG_FILE}: no target '{target}' (targets defined: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )
            })?;
            let toml::Value::Table(chosen) = chosen else {
                bail!("{CONFIG_FILE}: targets.{target} must be a table");
            };
            for key in chosen.keys() {
                if !["catalog", "storage", "write", "run", "vars", "openlineage"].contains(&key.as_str()) {
                    bail!(
                        "{CONFIG_FILE}: unknown key 'targets.{target}.{key}' (a target may set catalog, storage, write, run, vars, openlineage)"
                    );
                }
            }
            merge(&mut value, chosen);
        }
        let mut from_env = FromEnv::default();
        interpolate_table(&mut value, "", &mut from_env)?;
        register_secrets(&value, "");
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(value))
            .map_err(|e| from_env.deserialize_error(e))?;
        Self::from_raw(root, raw, target, overrides, &from_env)
    }

    fn from_raw(
        root: &Path,
        raw: RawConfig,
        target: Option<String>,
        overrides: &ConfigOverrides,
        from_env: &FromEnv,
    ) -> Result<Self> {
        let root = std::path::absolute(root)?;
        if raw.name.trim().is_empty() {
            bail!("{CONFIG_FILE}: name must not be empty");
        }
        let layers = raw
            .layers
            .unwrap_or_else(|| DEFAULT_LAYERS.iter().map(|s| s.to_string()).collect());
        if layers.is_empty() {
            bail!("{CONFIG_FILE}: layers must list at least one layer");
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let kind = match env("LAKE_CATALOG_TYPE") {
            Some(t) => match t.as_str() {
                "sql" => CatalogKind::Sql,
                "rest" => CatalogKind::Rest,
                _ => bail!("LAKE_CATALOG_TYPE must be sql or rest (its value is not shown)"),
            },
            None => raw.catalog.kind.unwrap_or_default(),
        };
        let name = env("LAKE_CATALOG_NAME")
            .or(raw.catalog.name.clone())
            .unwrap_or_else(|| "lake".to_string());
        let uri = env("LAKE_CATALOG_URI").or(raw.catalog.uri.clone());
        if let Some(password) = uri.as_deref().and_then(secrets::uri_password) {
            secrets::register(password);
        }
        let warehouse = env("LAKE_WAREHOUSE").or(raw.catalog.warehouse.clone());
        let mut props = storage_props(&raw.storage, &raw.catalog.properties)?;
        let timeouts = timeouts(&raw.catalog)?;
        let catalog = match kind {
            CatalogKind::Sql => {
                let uri = uri.unwrap_or_else(|| "sqlite:.lake/catalog.db".to_string());
                let warehouse = warehouse.unwrap_or_else(|| ".lake/warehouse".to_string());
                CatalogSpec::Sql {
                    name,
                    uri: resolve_sqlite_uri(&root, &uri),
                    warehouse: resolve_location(&root, &warehouse)?,
                    props,
                    timeouts,
                }
            }
            CatalogKind::Rest => {
                let uri = uri.ok_or_else(|| {
                    anyhow!("{CONFIG_FILE}: catalog.uri is required when catalog.type = \"rest\"")
                })?;
                if let Some(c) = &raw.catalog.credential {
                    props.insert("credential".into(), c.clone());
                }
                if let Some(t) = &raw.catalog.token {
                    props.insert("token".into(), t.clone());
                }
                CatalogSpec::Rest {
                    name,
                    uri,
                    warehouse,
                    props,
                    timeouts,
                }
            }
        };
        let write = write_options(&raw.write, from_env)?;
        let threads = raw.run.threads.unwrap_or(4);
        if threads == 0 {
            bail!("{CONFIG_FILE}: run.threads must be at least 1");
        }
        let mut vars = serde_json::Map::new();
        for (k, v) in raw.vars {
            vars.insert(k, serde_json::to_value(v)?);
        }
        if let Some(cli_vars) = &overrides.vars {
            let parsed: serde_json::Value = serde_yaml_ng::from_str(cli_vars)
                .map_err(|e| anyhow!("--vars is not valid YAML or JSON: {e}"))?;
            match parsed {
                serde_json::Value::Object(map) => vars.extend(map),
                serde_json::Value::Null => {}
                _ => bail!("--vars must be a mapping, e.g. '{{\"currency\": \"EUR\"}}'"),
            }
        }
        let openlineage = raw.openlineage.map(|o| o.validate(&root, &raw.name)).transpose()?;
        let path_of = |p: Option<String>, default: &str| root.join(p.unwrap_or_else(|| default.into()));
        Ok(ProjectConfig {
            name: raw.name,
            layers,
            model_path: path_of(raw.model_path, "models"),
            seed_path: path_of(raw.seed_path, "seeds"),
            test_path: path_of(raw.test_path, "tests"),
            macro_path: path_of(raw.macro_path, "macros"),
            root,
            catalog,
            write,
            threads,
            ingest: raw.ingest,
            openlineage,
            vars,
            target,
        })
    }

    /// Where artifacts go (`target/` like dbt).
    pub fn artifact_dir(&self) -> PathBuf {
        self.root.join("target")
    }
}

/// `[storage]` and `[catalog.properties]` completed from the `AWS_*` variables and a profile
/// (lake.toml first): the settings iceberg's FileIO and `lake`'s own storage client share.
/// Every secret among them is registered, wherever it came from.
fn storage_props(
    storage: &BTreeMap<String, String>,
    catalog_properties: &BTreeMap<String, String>,
) -> Result<std::collections::HashMap<String, String>> {
    let mut props: std::collections::HashMap<String, String> = storage.clone().into_iter().collect();
    props.extend(catalog_properties.clone());
    let props = crate::lakehouse::storage::resolve_storage(&props)?;
    for (key, value) in &props {
        if secrets::is_secret_key(key) {
            secrets::register(value);
        }
    }
    Ok(props)
}

/// `catalog.connect_timeout_seconds` and `catalog.request_timeout_seconds`.
fn timeouts(raw: &RawCatalog) -> Result<Timeouts> {
    let mut t = Timeouts::default();
    for (key, value, slot) in [
        ("connect_timeout_seconds", raw.connect_timeout_seconds, &mut t.connect),
        ("request_timeout_seconds", raw.request_timeout_seconds, &mut t.request),
    ] {
        if let Some(v) = value {
            if !(v > 0.0 && v <= 86_400.0) {
                bail!("{CONFIG_FILE}: catalog.{key} = {v}: must be a number of seconds between 0 and 86400");
            }
            *slot = std::time::Duration::from_secs_f64(v);
        }
    }
    Ok(t)
}

/// Deep-merge `over` into `base` (tables merge, other values replace).
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Register the values under a secret key name (`credential`, `s3.secret-access-key`, ...);
/// values from the environment are registered as they are interpolated.
fn register_secrets(table: &toml::Table, prefix: &str) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::String(s) if secrets::is_secret_key(k) => secrets::register(s),
            toml::Value::Table(t) => register_secrets(t, &key),
            _ => {}
        }
    }
}

/// A TOML syntax error as `lake.toml line L, column C: message`, without echoing the line
/// (it may hold a secret).
fn syntax_error(text: &str, e: &toml::de::Error) -> anyhow::Error {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
        format!(" line {line}, column {column}")
    });
    anyhow!("{CONFIG_FILE}{}: {}", at.unwrap_or_default(), e.message().trim())
}

/// The keys whose values came (in part) from the environment: such a value is never printed.
#[derive(Debug, Default)]
pub(crate) struct FromEnv {
    keys: std::collections::BTreeSet<String>,
}

impl FromEnv {
    /// `value` quoted for a message, or a placeholder when `key` took it from the environment.
    pub(crate) fn show(&self, key: &str, value: &str) -> String {
        if self.covers(key) {
            "(a value from the environment, not shown)".to_string()
        } else {
            format!("{value:?}")
        }
    }

    fn covers(&self, key: &str) -> bool {
        self.keys
            .iter()
            .any(|k| k == key || key.starts_with(&format!("{k}.")) || k.starts_with(&format!("{key}.")))
    }

    /// A deserialization error naming the key (`run.threads: invalid type ...`); quoted values
    /// in the message are hidden when the key's value came from the environment.
    fn deserialize_error(&self, e: serde_path_to_error::Error<toml::de::Error>) -> anyhow::Error {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let mut message = inner.message().trim().to_string();
        if self.covers(&path) {
            message = hide_quoted(&message);
        }
        if path == "." || path.is_empty() {
            anyhow!("{CONFIG_FILE}: {message}")
        } else {
            anyhow!("{CONFIG_FILE}: {path}: {message}")
        }
    }
}

/// Replace every `"..."` in `message` by `"***"`.
fn hide_quoted(message: &str) -> String {
    let mut out = String::new();
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        out.push('"');
        out.push_str(if i % 2 == 0 { "***" } else { part });
    }
    out
}

/// Replace `${VAR}` and `${VAR:-default}` in every string value, noting the keys that used one.
fn interpolate_table(table: &mut toml::Table, prefix: &str, from_env: &mut FromEnv) -> Result<()> {
    for (k, v) in table.iter_mut() {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        interpolate_value(v, &key, from_env)?;
    }
    Ok(())
}

fn interpolate_value(value: &mut toml::Value, key: &str, from_env: &mut FromEnv) -> Result<()> {
    match value {
        toml::Value::String(s) => {
            let expanded = interpolate(s, key)?;
            if expanded != *s || s.contains("${") {
                from_env.keys.insert(key.to_string());
            }
            *s = expanded;
        }
        toml::Value::Table(t) => interpolate_table(t, key, from_env)?,
        toml::Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                interpolate_value(v, &format!("{key}[{i}]"), from_env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expand `${VAR}` / `${VAR:-default}` in `s`; `$${` escapes a literal `${`.
pub fn interpolate(s: &str, key: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| anyhow!("{CONFIG_FILE}: {key}: unclosed '${{' in value"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("{CONFIG_FILE}: {key}: '${{{expr}}}' is not a valid environment variable reference");
        }
        match (std::env::var(name).ok(), default) {
            (Some(v), _) => {
                // A value from the environment is never printed (see `secrets`).
                secrets::register(&v);
                out.push_str(&v)
            }
            (None, Some(d)) => out.push_str(d),
            (None, None) => bail!(
                "{CONFIG_FILE}: {key} uses ${{{name}}}, but the environment variable {name} is not set"
            ),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `sqlite:relative/path` → `sqlite:/abs/project/relative/path`.
fn resolve_sqlite_uri(root: &Path, uri: &str) -> String {
    let Some(rest) = uri.strip_prefix("sqlite:") else {
        return uri.to_string();
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" || Path::new(path).is_absolute() {
        return uri.to_string();
    }
    let abs = root.join(path);
    match query {
        Some(q) => format!("sqlite:{}?{q}", abs.display()),
        None => format!("sqlite:{}", abs.display()),
    }
}

/// A warehouse location as a URL: relative paths resolve against the project root.
fn resolve_location(root: &Path, location: &str) -> Result<String> {
    if location.contains("://") {
        return Ok(location.trim_end_matches('/').to_string());
    }
    let path = if Path::new(location).is_absolute() {
        PathBuf::from(location)
    } else {
        root.join(location)
    };
    Ok(format!("file://{}", path.display()).trim_end_matches('/').to_string())
}

/// The `[write]` section: data-file size, compression and the default merge mode.
fn write_options(raw: &RawWrite, from_env: &FromEnv) -> Result<WriteOptions> {
    let mut write = WriteOptions::default();
    if let Some(mb) = raw.target_file_size_mb {
        if mb == 0 {
            bail!("{CONFIG_FILE}: write.target_file_size_mb must be at least 1");
        }
        write.target_file_size = (mb * 1024 * 1024) as usize;
    }
    if let Some(c) = &raw.compression {
        write.codec = Codec::parse(c).ok_or_else(|| {
            anyhow!(
                "{CONFIG_FILE}: write.compression = {}: use zstd, snappy or none",
                from_env.show("write.compression", c)
            )
        })?;
    }
    if let Some(m) = &raw.merge_mode {
        write.merge_mode = Some(MergeMode::parse(m).ok_or_else(|| {
            anyhow!(
                "{CONFIG_FILE}: write.merge_mode = {}: use copy-on-write or merge-on-read",
                from_env.show("write.merge_mode", m)
            )
        })?);
    }
    Ok(write)
}
