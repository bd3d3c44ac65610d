//! Jinja templating of SQL models with minijinja: `config()`, `ref()`, `source()`, `this`,
//! `is_incremental()`, `watermark`, `var()` and `env_var()`, as dbt users write them.
//!
//! A template is rendered twice in a run's life: at parse time ([`Mode::Parse`]) to collect its
//! configuration and dependencies, and at execution time ([`Mode::Execute`]) with real relation
//! names, the incremental flag and the stored watermark.
//!
//! The template environment (its functions and the project's macros, compiled) is built once
//! per [`TemplateVars`] and reused by every render, one environment per concurrent render:
//! what differs between renders (the incremental flag, how `ref()` resolves, the `config()`
//! and dependencies collected) lives in a slot the functions read.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};
use minijinja::value::{Kwargs, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use serde_json::Value as Json;

use super::macros::Macros;
use super::model::Dependency;

/// Values every template can see. Environments built from them are kept for later renders
/// (shared by clones), so the fields are not to be changed once rendering has begun.
#[derive(Debug, Clone, Default)]
pub struct TemplateVars {
    /// `lake.toml` `[vars]` merged with `--vars`.
    pub vars: serde_json::Map<String, Json>,
    /// The chosen target name, as `{{ target.name }}`.
    pub target: Option<String>,
    /// The project's macros, callable in every template.
    pub macros: Arc<Macros>,
    /// Environments not in use right now.
    pub(crate) idle: Idle,
}

/// Template environments built for a [`TemplateVars`], waiting for the next render.
#[derive(Clone, Default)]
pub(crate) struct Idle(Arc<Mutex<Vec<Renderer>>>);

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Idle(..)")
    }
}

/// An environment whose functions read and record through `slot`.
struct Renderer {
    env: Environment<'static>,
    slot: Arc<Mutex<Slot>>,
}

/// What one render sees and collects.
#[derive(Default)]
struct Slot {
    state: State,
    is_incremental: bool,
    /// Whether `whole=true` renders the whole-table relation (an executed incremental render).
    whole_prefix: bool,
    resolve: Option<Resolver>,
}

impl Renderer {
    fn new(vars: &TemplateVars) -> Result<Renderer, Error> {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        add_config_and_vars(&mut env, &slot, vars);
        add_ref_and_source(&mut env, &slot);
        vars.macros.register(&mut env)?;
        Ok(Renderer { env, slot })
    }
}

/// How `ref()` and `source()` resolve.
pub enum Mode<'a> {
    /// Collect config and dependencies; relations render as placeholders.
    Parse,
    /// Render runnable SQL.
    Execute {
        /// The SQL relation for a dependency (`"staging"."stg_orders"` or an ephemeral CTE name).
        relation: &'a (dyn Fn(&Dependency) -> Option<String> + Sync),
        this: String,
        is_incremental: bool,
        /// The stored watermark rendered as a SQL literal (`NULL` when there is none).
        watermark: Option<String>,
    },
}

/// The result of rendering a template.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub sql: String,
    /// Keyword arguments of `config(...)` calls, later calls winning.
    pub config: serde_json::Map<String, Json>,
    /// Dependencies in call order (with the line of the call in the file).
    pub depends_on: Vec<Dependency>,
    /// Dependencies read whole (`ref(..., whole=true)`) in an incremental run: they render as
    /// `"whole"."<namespace>"."<table>"` (see [`WHOLE_CATALOG`]).
    pub whole: Vec<Dependency>,
}

/// The session catalog that holds the whole tables of `ref(..., whole=true)` in an
/// incremental run (where `ref()` may read only the rows added since the last run).
pub const WHOLE_CATALOG: &str = "whole";

#[derive(Default)]
struct State {
    config: serde_json::Map<String, Json>,
    depends_on: Vec<Dependency>,
    whole: Vec<Dependency>,
}

/// Render `raw` (from `path`) in `mode`. Errors name the file and line.
pub fn render(path: &Path, raw: &str, vars: &TemplateVars, mode: &Mode<'_>) -> Result<Rendered> {
    match mode {
        Mode::Parse => {
            // Render both branches of `is_incremental()` so refs in either are seen.
            let mut both = render_each(path, raw, vars, mode, &[false, true])?;
            let incremental = both.pop().expect("two renders");
            let mut full = both.pop().expect("two renders");
            for dep in incremental.depends_on {
                if !full.depends_on.contains(&dep) {
                    full.depends_on.push(dep);
                }
            }
            Ok(full)
        }
        Mode::Execute { is_incremental, .. } => {
            Ok(render_each(path, raw, vars, mode, &[*is_incremental])?.pop().expect("one render"))
        }
    }
}

/// Renders `raw` once per `is_incremental` flag, compiling it once, in an idle environment
/// of `vars` (or a new one).
fn render_each(path: &Path, raw: &str, vars: &TemplateVars, mode: &Mode<'_>, flags: &[bool]) -> Result<Vec<Rendered>> {
    let idle = vars.idle.0.lock().expect("template environments").pop();
    let renderer = match idle {
        Some(r) => r,
        None => Renderer::new(vars).map_err(|e| template_error(path, &e))?,
    };
    let rendered = render_with(&renderer, path, raw, vars, mode, flags);
    vars.idle.0.lock().expect("template environments").push(renderer);
    rendered
}

fn render_with(renderer: &Renderer, path: &Path, raw: &str, vars: &TemplateVars, mode: &Mode<'_>, flags: &[bool]) -> Result<Vec<Rendered>> {
    let name = path.display().to_string();
    // The imports go on the template's first line, so its line numbers stay the file's.
    let source = format!("{}{raw}", vars.macros.imports(raw));
    let template = renderer.env.template_from_named_str(&name, &source).map_err(|e| template_error(path, &e))?;
    let context = Value::from_serialize(template_context(mode, vars));
    let resolve = dependency_resolver(mode, raw, &vars.macros);
    let mut out = Vec::with_capacity(flags.len());
    for &is_incremental in flags {
        let whole_prefix = is_incremental && matches!(mode, Mode::Execute { .. });
        *renderer.slot.lock().expect("template state") =
            Slot { state: State::default(), is_incremental, whole_prefix, resolve: Some(resolve.clone()) };
        let rendered = template.render(context.clone());
        let state = std::mem::take(&mut *renderer.slot.lock().expect("template state")).state;
        let sql = rendered.map_err(|e| template_error(path, &e))?;
        let depends_on = state.depends_on.into_iter().map(|d| with_line(raw, d)).fold(Vec::new(), |mut acc, d| {
            if !acc.contains(&d) {
                acc.push(d);
            }
            acc
        });
        out.push(Rendered { sql, config: state.config, depends_on, whole: state.whole.into_iter().map(|d| strip_line(&d)).collect() });
    }
    Ok(out)
}

/// `config(...)`, `var()`, `env_var()` and `is_incremental()`.
fn add_config_and_vars(env: &mut Environment<'_>, slot: &Arc<Mutex<Slot>>, vars: &TemplateVars) {
    let st = slot.clone();
    env.add_function("config", move |kwargs: Kwargs| -> Result<String, Error> {
        let mut st = st.lock().expect("template state");
        for key in kwargs.args() {
            let v: Value = kwargs.get(key)?;
            let json = serde_json::to_value(&v).map_err(|e| {
                Error::new(ErrorKind::InvalidOperation, format!("config({key}=...): {e}"))
            })?;
            st.state.config.insert(key.to_string(), json);
        }
        Ok(String::new())
    });

    let vars_map = vars.vars.clone();
    env.add_function(
        "var",
        move |name: String, default: Option<Value>| -> Result<Value, Error> {
            match vars_map.get(&name) {
                Some(v) => Ok(Value::from_serialize(v)),
                None => default.ok_or_else(|| {
                    Error::new(
                        ErrorKind::UndefinedError,
                        format!("var('{name}') is not set in lake.toml [vars] or --vars, and has no default"),
                    )
                }),
            }
        },
    );
    env.add_function(
        "env_var",
        |name: String, default: Option<String>| -> Result<String, Error> {
            std::env::var(&name).ok().or(default).ok_or_else(|| {
                Error::new(
                    ErrorKind::UndefinedError,
                    format!("env_var('{name}'): the environment variable is not set and no default was given"),
                )
            })
        },
    );
    let st = slot.clone();
    env.add_function("is_incremental", move || st.lock().expect("template state").is_incremental);
}

type Resolver = Arc<dyn Fn(&Dependency) -> Result<String, Error> + Send + Sync>;

/// How `ref()` and `source()` turn into relation names in `mode`.
fn dependency_resolver(mode: &Mode<'_>, raw: &str, macros: &Macros) -> Resolver {
    match mode {
        Mode::Parse => Arc::new(|dep: &Dependency| {
            Ok(match dep {
                Dependency::Model { name, .. } => format!("\"__ref\".\"{name}\""),
                Dependency::Source { source, table, .. } => format!("\"{source}\".\"{table}\""),
            })
        }),
        Mode::Execute { relation, .. } => {
            // Resolve eagerly: the closure handed to minijinja must be 'static.
            let mut known: Vec<(Dependency, String)> = Vec::new();
            for dep in std::iter::once(raw).chain(macros.sources()).flat_map(parse_dependencies) {
                if let Some(r) = relation(&dep) {
                    known.push((strip_line(&dep), r));
                }
            }
            Arc::new(move |dep: &Dependency| {
                let key = strip_line(dep);
                known
                    .iter()
                    .find(|(d, _)| *d == key)
                    .map(|(_, r)| r.clone())
                    .ok_or_else(|| {
                        Error::new(ErrorKind::UndefinedError, format!("cannot resolve {}", describe(dep)))
                    })
            })
        }
    }
}

/// `ref()` and `source()`: record the dependency, then resolve it. With `whole=true` in an
/// incremental run, the relation is the whole table in [`WHOLE_CATALOG`].
fn add_ref_and_source(env: &mut Environment<'_>, slot: &Arc<Mutex<Slot>>) {
    let st = slot.clone();
    env.add_function("ref", move |args: Rest<Value>, kwargs: Kwargs| -> Result<Value, Error> {
        let name = match &args[..] {
            [name] => name.as_str(),
            [_package, name] => name.as_str(),
            _ => None,
        }
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "ref() takes a model name, e.g. ref('stg_orders')"))?;
        let dep = Dependency::Model {
            name: name.to_string(),
            line: 0,
        };
        Ok(Value::from_safe_string(record(&st, dep, &kwargs)?))
    });
    let st = slot.clone();
    env.add_function("source", move |source: String, table: String, kwargs: Kwargs| -> Result<Value, Error> {
        let dep = Dependency::Source {
            source,
            table,
            line: 0,
        };
        Ok(Value::from_safe_string(record(&st, dep, &kwargs)?))
    });
}

/// Records `dep` as a dependency of the template being rendered and resolves it; `whole=true`
/// in an incremental run resolves to the whole table (an ephemeral model, rendered as a CTE
/// name, is always computed from its inputs).
fn record(slot: &Mutex<Slot>, dep: Dependency, kwargs: &Kwargs) -> Result<String, Error> {
    let whole: bool = kwargs.get::<Option<bool>>("whole")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let (resolve, whole_prefix) = {
        let mut slot = slot.lock().expect("template state");
        slot.state.depends_on.push(dep.clone());
        (slot.resolve.clone(), slot.whole_prefix)
    };
    let relation = resolve.ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "ref() and source() work in models only"))?(&dep)?;
    if whole && whole_prefix && relation.contains('.') {
        slot.lock().expect("template state").state.whole.push(dep);
        return Ok(format!("\"{WHOLE_CATALOG}\".{relation}"));
    }
    Ok(relation)
}

/// The template's variables: `this`, `watermark` and `target`.
fn template_context(mode: &Mode<'_>, vars: &TemplateVars) -> serde_json::Map<String, Json> {
    let mut ctx = serde_json::Map::new();
    let (this, watermark) = match mode {
        Mode::Parse => ("\"__this\"".to_string(), "NULL".to_string()),
        Mode::Execute { this, watermark, .. } => {
            (this.clone(), watermark.clone().unwrap_or_else(|| "NULL".to_string()))
        }
    };
    ctx.insert("this".into(), Json::String(this));
    ctx.insert("watermark".into(), Json::String(watermark));
    let mut target = serde_json::Map::new();
    target.insert(
        "name".into(),
        Json::String(vars.target.clone().unwrap_or_else(|| "default".into())),
    );
    ctx.insert("target".into(), Json::Object(target));
    ctx
}

fn template_error(path: &Path, e: &Error) -> anyhow::Error {
    let line = e.line().map(|l| format!(":{l}")).unwrap_or_default();
    let detail = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    // An error inside a macro names the macro file and the model that called it.
    match e.name().filter(|n| *n != path.display().to_string()) {
        Some(file) => anyhow!("{file}{line}: template error: {detail} (called from {})", path.display()),
        None => anyhow!("{}{line}: template error: {detail}", path.display()),
    }
}

fn describe(dep: &Dependency) -> String {
    match dep {
        Dependency::Model { name, .. } => format!("ref('{name}')"),
        Dependency::Source { source, table, .. } => format!("source('{source}', '{table}')"),
    }
}

fn strip_line(dep: &Dependency) -> Dependency {
    match dep {
        Dependency::Model { name, .. } => Dependency::Model {
            name: name.clone(),
            line: 0,
        },
        Dependency::Source { source, table, .. } => Dependency::Source {
            source: source.clone(),
            table: table.clone(),
            line: 0,
        },
    }
}

/// Give a dependency the line (1-based) of its first call in the raw template.
fn with_line(raw: &str, dep: Dependency) -> Dependency {
    let needle_names: Vec<String> = match &dep {
        Dependency::Model { name, .. } => vec![name.clone()],
        Dependency::Source { source, table, .. } => vec![source.clone(), table.clone()],
    };
    let call = match &dep {
        Dependency::Model { .. } => "ref(",
        Dependency::Source { .. } => "source(",
    };
    let quoted: Vec<[String; 2]> = needle_names.iter().map(|n| [format!("'{n}'"), format!("\"{n}\"")]).collect();
    let line = raw
        .lines()
        .position(|l| l.contains(call) && quoted.iter().all(|[single, double]| l.contains(single) || l.contains(double)))
        .map(|i| i + 1)
        .unwrap_or(1);
    match dep {
        Dependency::Model { name, .. } => Dependency::Model { name, line },
        Dependency::Source { source, table, .. } => Dependency::Source {
            source,
            table,
            line,
        },
    }
}

/// Dependencies named by literal `ref('..')` / `source('..', '..')` calls in the raw text.
fn parse_dependencies(raw: &str) -> Vec<Dependency> {
    let mut out = Vec::new();
    for (call, is_ref) in [("ref(", true), ("source(", false)] {
        let mut rest = raw;
        while let Some(pos) = rest.find(call) {
            let after = &rest[pos + call.len()..];
            let Some(end) = after.find(')') else { break };
            // Positional arguments only (`whole=true` and other keywords are not names).
            let args: Vec<String> = after[..end]
                .split(',')
                .filter(|a| !a.contains('='))
                .map(|a| a.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
                .collect();
            let preceded_by_ident = pos > 0
                && rest[..pos]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !preceded_by_ident {
                match (is_ref, args.as_slice()) {
                    (true, [name]) | (true, [_, name]) => out.push(Dependency::Model {
                        name: name.clone(),
                        line: 0,
                    }),
                    (false, [s, t]) => out.push(Dependency::Source {
                        source: s.clone(),
                        table: t.clone(),
                        line: 0,
                    }),
                    _ => {}
                }
            }
            rest = &after[end..];
        }
    }
    out
}
