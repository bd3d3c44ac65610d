//! dbt's node-selection grammar: `--select` and `--exclude` over a [`Graph`].
//!
//! An argument holds space-separated terms (union); a term holds comma-joined parts
//! (intersection); a part is an atom with optional graph operators:
//!
//! | part                  | selects                                                        |
//! |-----------------------|----------------------------------------------------------------|
//! | `name`, `stg_*`       | models by name (glob `*`, `?`), plus every model of a layer so named |
//! | `layer:staging`       | models of a layer                                              |
//! | `tag:nightly`         | models tagged so                                               |
//! | `path:models/staging` | models whose file is at or under that path                     |
//! | `config.<key>:<v>`    | models whose config value (or one of its values) is `v`        |
//! | `source:raw.orders`   | models reading that source table directly (`source:raw`: any table of it) |
//! | `+m`, `2+m`           | `m` and its ancestors (up to 2 generations)                    |
//! | `m+`, `m+2`           | `m` and its descendants (up to 2 generations)                  |
//! | `@m`                  | `m`, its descendants and all their ancestors                   |
//!
//! Values of `tag:`, `layer:`, `config.<key>:` and `source:` may be globs too.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::{Graph, did_you_mean, hint};
use crate::project::model::{Dependency, Model, ModelConfig};

const KNOWN_METHODS: &str = "tag, path, layer, config.<key>, source";

/// Why a selection could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectionError {
    /// A `--select` (or, with `exclude`, an `--exclude`) term, as typed, matched no model;
    /// `suggestion` is a corrected term.
    NoMatch {
        selector: String,
        suggestion: Option<String>,
        exclude: bool,
    },
    /// A part names a method the grammar does not have.
    UnknownMethod { method: String, selector: String },
    /// A part is malformed.
    Invalid { selector: String, reason: String },
    /// `--exclude` removed every model `--select` chose.
    NothingLeft,
}

impl fmt::Display for SelectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectionError::NoMatch {
                selector,
                suggestion,
                exclude,
            } => {
                write!(
                    f,
                    "{}selector '{selector}' matched no model{}",
                    if *exclude { "--exclude " } else { "" },
                    hint(suggestion)
                )
            }
            SelectionError::UnknownMethod { method, selector } => write!(
                f,
                "unknown selector method '{method}' in '{selector}'; known: {KNOWN_METHODS}"
            ),
            SelectionError::Invalid { selector, reason } => {
                write!(f, "invalid selector '{selector}': {reason}")
            }
            SelectionError::NothingLeft => {
                write!(f, "--exclude left no model to run (nothing selected)")
            }
        }
    }
}

impl std::error::Error for SelectionError {}

/// Select models: the union of the `select` terms (all models when there are none), minus
/// the union of the `exclude` terms, in [`Graph::run_order`].
///
/// A `select` or `exclude` term matching no model is an error (a typo would otherwise
/// silently select more than meant), and so is excluding every selected model.
pub fn select(
    graph: &Graph,
    select: &[String],
    exclude: &[String],
) -> Result<Vec<usize>, SelectionError> {
    let mut selected = BTreeSet::new();
    let mut any_term = false;
    for term in select.iter().flat_map(|arg| arg.split_whitespace()) {
        any_term = true;
        let matched = eval_term(graph, term)?;
        if matched.is_empty() {
            return Err(SelectionError::NoMatch {
                selector: term.to_string(),
                suggestion: suggest_term(graph, term),
                exclude: false,
            });
        }
        selected.extend(matched);
    }
    if !any_term {
        selected = (0..graph.models().len()).collect();
    }
    let mut any_excluded = false;
    for term in exclude.iter().flat_map(|arg| arg.split_whitespace()) {
        let matched = eval_term(graph, term)?;
        if matched.is_empty() {
            return Err(SelectionError::NoMatch {
                selector: term.to_string(),
                suggestion: suggest_term(graph, term),
                exclude: true,
            });
        }
        any_excluded = true;
        for idx in matched {
            selected.remove(&idx);
        }
    }
    if any_excluded && selected.is_empty() && !graph.models().is_empty() {
        return Err(SelectionError::NothingLeft);
    }
    Ok(graph.run_order(&selected))
}

/// How far a graph operator reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    Limited(usize),
    Unlimited,
}

/// What an atom matches before graph operators.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Method<'a> {
    /// A model name (or glob), or a layer name.
    Name(&'a str),
    Layer(&'a str),
    Tag(&'a str),
    Path(&'a str),
    Config {
        key: &'a str,
        value: &'a str,
    },
    Source {
        source: &'a str,
        table: Option<&'a str>,
    },
}

/// One comma-separated part of a term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Atom<'a> {
    /// `@`: the matched models, their descendants and all ancestors of those.
    at: bool,
    parents: Option<Depth>,
    children: Option<Depth>,
    method: Method<'a>,
    /// Byte range of the method's value within the part, for suggestions.
    value_range: (usize, usize),
}

/// The comma-separated parts of `term` with their byte offsets.
fn parts(term: &str) -> impl Iterator<Item = (usize, &str)> {
    term.split(',').scan(0, |offset, part| {
        let start = *offset;
        *offset += part.len() + 1;
        Some((start, part))
    })
}

fn eval_term(graph: &Graph, term: &str) -> Result<BTreeSet<usize>, SelectionError> {
    let mut result: Option<BTreeSet<usize>> = None;
    for (_, part) in parts(term) {
        let atom = parse_atom(part)?;
        let matched = expand(graph, &atom, matches(graph, &atom.method));
        result = Some(match result {
            None => matched,
            Some(so_far) => so_far.intersection(&matched).copied().collect(),
        });
    }
    Ok(result.unwrap_or_default())
}

/// `term` with the value of its first part that matches nothing replaced by a close
/// existing value, if there is one.
fn suggest_term(graph: &Graph, term: &str) -> Option<String> {
    for (offset, part) in parts(term) {
        let atom = parse_atom(part).ok()?;
        if !matches(graph, &atom.method).is_empty() {
            continue;
        }
        let models = graph.models();
        let candidates: BTreeSet<String> = match atom.method {
            Method::Name(_) => models
                .iter()
                .flat_map(|m| [m.name.clone(), m.layer.clone()])
                .collect(),
            Method::Layer(_) => models.iter().map(|m| m.layer.clone()).collect(),
            Method::Tag(_) => models
                .iter()
                .flat_map(|m| m.config.tags.iter().cloned())
                .collect(),
            Method::Source { .. } => models.iter().flat_map(source_names).collect(),
            Method::Path(_) | Method::Config { .. } => return None,
        };
        let (start, end) = atom.value_range;
        let value = &part[start..end];
        let better = did_you_mean(value, candidates.iter().map(String::as_str))?;
        let (start, end) = (offset + start, offset + end);
        return Some(format!("{}{better}{}", &term[..start], &term[end..]));
    }
    None
}

fn source_names(model: &Model) -> Vec<String> {
    model
        .depends_on
        .iter()
        .filter_map(|dep| match dep {
            Dependency::Source { source, table, .. } => Some(format!("{source}.{table}")),
            Dependency::Model { .. } => None,
        })
        .collect()
}

fn invalid(part: &str, reason: impl Into<String>) -> SelectionError {
    SelectionError::Invalid {
        selector: part.to_string(),
        reason: reason.into(),
    }
}

fn parse_depth(part: &str, digits: &str) -> Result<Depth, SelectionError> {
    if digits.is_empty() {
        return Ok(Depth::Unlimited);
    }
    digits
        .parse()
        .map(Depth::Limited)
        .map_err(|_| invalid(part, format!("depth {digits} is too large")))
}

fn parse_atom(part: &str) -> Result<Atom<'_>, SelectionError> {
    if part.is_empty() {
        return Err(invalid(
            part,
            "empty part; write parts joined by ',' without spaces, e.g. 'tag:nightly,staging'",
        ));
    }
    let (mut start, mut end) = (0, part.len());

    let at = part.starts_with('@');
    if at {
        start += 1;
    }
    let digits = part[start..].bytes().take_while(u8::is_ascii_digit).count();
    let parents = if part[start + digits..].starts_with('+') {
        let depth = parse_depth(part, &part[start..start + digits])?;
        start += digits + 1;
        Some(depth)
    } else {
        None
    };
    let children = match part[start..].rfind('+') {
        Some(pos) if part[start + pos + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            let depth = parse_depth(part, &part[start + pos + 1..])?;
            end = start + pos;
            Some(depth)
        }
        _ => None,
    };
    if at && parents.is_some() {
        return Err(invalid(
            part,
            "'@' already selects all ancestors; drop the leading '+'",
        ));
    }
    let body = &part[start..end];
    if body.is_empty() {
        return Err(invalid(
            part,
            "a graph operator needs a model, e.g. '+stg_orders' or 'stg_orders+'",
        ));
    }

    let Some((name, value)) = body.split_once(':') else {
        return Ok(Atom {
            at,
            parents,
            children,
            method: Method::Name(body),
            value_range: (start, end),
        });
    };
    let example = match name {
        "tag" => "tag:nightly",
        "path" => "path:models/staging",
        "layer" => "layer:staging",
        "source" => "source:raw.orders",
        "config" | "config." => {
            return Err(invalid(
                part,
                "'config' needs a key, e.g. 'config.materialized:incremental'",
            ));
        }
        _ if name.starts_with("config.") => "config.materialized:incremental",
        _ => {
            return Err(SelectionError::UnknownMethod {
                method: name.to_string(),
                selector: part.to_string(),
            });
        }
    };
    if value.is_empty() {
        return Err(invalid(
            part,
            format!("'{name}:' needs a value, e.g. '{example}'"),
        ));
    }
    let method = match name {
        "tag" => Method::Tag(value),
        "path" => Method::Path(value),
        "layer" => Method::Layer(value),
        "source" => match value.split_once('.') {
            Some((source, table)) => Method::Source {
                source,
                table: Some(table),
            },
            None => Method::Source {
                source: value,
                table: None,
            },
        },
        _ => Method::Config {
            key: &name["config.".len()..],
            value,
        },
    };
    let value_start = start + name.len() + 1;
    Ok(Atom {
        at,
        parents,
        children,
        method,
        value_range: (value_start, end),
    })
}

/// Models matched by `method`, before graph operators.
fn matches(graph: &Graph, method: &Method<'_>) -> BTreeSet<usize> {
    let models = graph.models().iter().enumerate();
    match *method {
        Method::Name(pattern) => models
            .filter(|(_, m)| glob(pattern, &m.name) || m.layer == pattern)
            .map(|(i, _)| i)
            .collect(),
        Method::Layer(pattern) => models
            .filter(|(_, m)| glob(pattern, &m.layer))
            .map(|(i, _)| i)
            .collect(),
        Method::Tag(pattern) => models
            .filter(|(_, m)| m.config.tags.iter().any(|t| glob(pattern, t)))
            .map(|(i, _)| i)
            .collect(),
        Method::Path(path) => models
            .filter(|(_, m)| path_matches(&m.path, path))
            .map(|(i, _)| i)
            .collect(),
        Method::Config { key, value } => models
            .filter(|(_, m)| config_values(&m.config, key).iter().any(|v| glob(value, v)))
            .map(|(i, _)| i)
            .collect(),
        Method::Source { source, table } => models
            .filter(|(_, m)| {
                m.depends_on.iter().any(|dep| match dep {
                    Dependency::Source {
                        source: s,
                        table: t,
                        ..
                    } => glob(source, s) && table.is_none_or(|table| glob(table, t)),
                    Dependency::Model { .. } => false,
                })
            })
            .map(|(i, _)| i)
            .collect(),
    }
}

/// Apply `atom`'s graph operators to the models it matched.
fn expand(graph: &Graph, atom: &Atom<'_>, matched: BTreeSet<usize>) -> BTreeSet<usize> {
    let mut out = matched.clone();
    if let Some(depth) = atom.parents {
        out.extend(walk(graph, &matched, depth, Graph::parents));
    }
    if let Some(depth) = atom.children {
        out.extend(walk(graph, &matched, depth, Graph::children));
    }
    if atom.at {
        let mut downstream = matched.clone();
        downstream.extend(walk(graph, &matched, Depth::Unlimited, Graph::children));
        out.extend(walk(graph, &downstream, Depth::Unlimited, Graph::parents));
        out.extend(downstream);
    }
    out
}

/// Models within `depth` steps of any of `from` along `step` (a start model is included only
/// if another start reaches it).
fn walk(
    graph: &Graph,
    from: &BTreeSet<usize>,
    depth: Depth,
    step: fn(&Graph, usize) -> Vec<usize>,
) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut frontier: Vec<usize> = from.iter().copied().collect();
    let mut generation = 0;
    while !frontier.is_empty() && depth != Depth::Limited(generation) {
        generation += 1;
        frontier = frontier
            .into_iter()
            .flat_map(|idx| step(graph, idx))
            .filter(|&next| seen.insert(next))
            .collect();
    }
    seen
}

/// Whether the model file at `model_path` is `selector` or lies under it, component-wise;
/// a selector with `*` or `?` is matched as a glob against the file and its folders.
fn path_matches(model_path: &Path, selector: &str) -> bool {
    let normalize = |p: &Path| -> PathBuf {
        p.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect()
    };
    let model_path = normalize(model_path);
    if selector.contains(['*', '?']) {
        let pattern = selector.trim_end_matches('/');
        let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
        return model_path
            .ancestors()
            .any(|dir| glob(pattern, &dir.to_string_lossy().replace('\\', "/")));
    }
    model_path.starts_with(normalize(Path::new(selector)))
}

/// The values of config `key` as strings: one for scalars, each element for lists.
fn config_values(config: &ModelConfig, key: &str) -> Vec<String> {
    match key {
        "materialized" => vec![config.materialized.as_str().to_string()],
        "incremental_strategy" => vec![config.incremental_strategy.as_str().to_string()],
        "unique_key" => config.unique_key.clone(),
        "watermark" => config.watermark.iter().map(|w| w.as_str().to_string()).collect(),
        "partition_by" => config
            .partition_by
            .iter()
            .map(|p| p.column.clone())
            .collect(),
        "tags" => config.tags.clone(),
        "enabled" => vec![config.enabled.to_string()],
        "allow_back_edges" => vec![config.allow_back_edges.to_string()],
        _ => match config.extra.get(key) {
            Some(serde_json::Value::Array(items)) => items.iter().map(json_string).collect(),
            Some(value) => vec![json_string(value)],
            None => Vec::new(),
        },
    }
}

fn json_string(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters and `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` seen and of the text it currently stands in for.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}
