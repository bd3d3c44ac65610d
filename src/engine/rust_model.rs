//! Rust models: functions from input [`LazyFrame`]s to an output [`LazyFrame`], registered by
//! name in a [`Registry`] and referred to from a model's YAML.
//!
//! `lake` ships a few functions ([`crate::builtins::registry`]); a team adds its own by
//! building its own binary on the `lake` library with an extended registry
//! (see `examples/custom_binary.rs`).
//!
//! ```
//! use polars::prelude::*;
//!
//! let mut registry = lake::builtins::registry();
//! registry.register("big_orders", |ctx| {
//!     let min_total = ctx.param("min_total").and_then(|v| v.as_f64()).unwrap_or(100.0);
//!     Ok(ctx.input("stg_orders")?.filter(col("total").gt(lit(min_total))))
//! });
//! assert_eq!(registry.names(), ["big_orders", "dedupe_latest", "resolve_entities", "union_all"]);
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use polars::prelude::{IntoLazy, LazyFrame};
use serde_json::Value;

use super::polars_bridge::{dataframe_to_record_batches, record_batches_to_dataframe};

/// What a Rust model function receives.
pub struct RustModelContext {
    /// Input tables by the name used in the model's `inputs:` list (a model name like
    /// `stg_orders`, or `raw.shopify_orders` for a source), as lazy frames.
    pub inputs: BTreeMap<String, LazyFrame>,
    /// Free-form parameters from the model's YAML `config: params:`.
    pub params: serde_json::Map<String, Value>,
    /// The model's name.
    pub model: String,
    /// The model's own table as it stands before this run, when it exists: an incremental
    /// model reads its earlier output here (dbt's `{{ this }}`).
    pub this: Option<LazyFrame>,
    /// Whether this run is incremental: `inputs` may hold only what is new since the last run
    /// and the output is merged or appended into `this`.
    pub is_incremental: bool,
    /// Tables beside its own (in its namespace) as they stood before the run, for a function
    /// registered with [`Registry::register_reading_beside`]: what it wrote there before.
    pub beside: BTreeMap<String, LazyFrame>,
    side_outputs: Arc<Mutex<Vec<SideOutput>>>,
}

/// How a side output lands in its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SideOutputMode {
    /// Added to the table (created on first use).
    Append,
    /// Replaces the table's rows (one overwrite snapshot).
    Replace,
    /// Merged into the table on these key columns (created on first use).
    Merge(Vec<String>),
}

/// A further table a Rust model writes beside its own, in its own namespace.
pub struct SideOutput {
    pub table: String,
    pub mode: SideOutputMode,
    pub frame: LazyFrame,
}

/// A side output computed to Arrow.
pub struct SideOutputBatches {
    pub table: String,
    pub mode: SideOutputMode,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// What a Rust model is called with.
pub struct RustModelCall {
    /// The model's name.
    pub model: String,
    /// `(input name, schema, batches)` of each input.
    pub inputs: Vec<(String, SchemaRef, Vec<RecordBatch>)>,
    pub params: serde_json::Map<String, Value>,
    /// The model's own table before this run, if it exists.
    pub this: Option<(SchemaRef, Vec<RecordBatch>)>,
    pub is_incremental: bool,
    /// `(table, schema, batches)` of each table beside its own that the function reads and
    /// that exists.
    pub beside: Vec<(String, SchemaRef, Vec<RecordBatch>)>,
}

/// What a Rust model produced, as Arrow.
pub struct RustModelOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub side_outputs: Vec<SideOutputBatches>,
}

impl RustModelContext {
    /// The input called `name` (a clone: lazy frames are cheap to clone). The error lists the
    /// inputs the model has.
    pub fn input(&self, name: &str) -> Result<LazyFrame> {
        match self.inputs.get(name) {
            Some(frame) => Ok(frame.clone()),
            None => bail!(
                "model `{}` has no input named `{name}`; {}",
                self.model,
                self.describe_inputs()
            ),
        }
    }

    /// The names of the inputs, sorted.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs.keys().map(String::as_str).collect()
    }

    /// The input named by the string parameter `key`, or, when that parameter is not set, the
    /// model's only input. Returns the input's name with its frame.
    pub fn input_named_by(&self, key: &str) -> Result<(String, LazyFrame)> {
        if let Some(name) = self.param_str_opt(key)? {
            return Ok((name.to_string(), self.input(name)?));
        }
        let mut inputs = self.inputs.iter();
        match (inputs.next(), inputs.next()) {
            (Some((name, frame)), None) => Ok((name.clone(), frame.clone())),
            _ => bail!(
                "model `{}`: set the parameter `{key}` to choose the input; {}",
                self.model,
                self.describe_inputs()
            ),
        }
    }

    /// The raw parameter `key`, if set.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.params.get(key)
    }

    /// The string parameter `key`, which must be set.
    pub fn param_str(&self, key: &str) -> Result<&str> {
        self.param_str_opt(key)?.with_context(|| {
            format!(
                "model `{}`: the parameter `{key}` is required (under `config: params:`)",
                self.model
            )
        })
    }

    /// The string parameter `key`, or `None` when it is not set (or set to null).
    pub fn param_str_opt(&self, key: &str) -> Result<Option<&str>> {
        match self.params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => bail!(
                "model `{}`: the parameter `{key}` must be a string, not {other}",
                self.model
            ),
        }
    }

    /// The parameter `key` as a list of strings: either one string or an array of strings.
    /// It must be set and not empty.
    pub fn param_str_list(&self, key: &str) -> Result<Vec<String>> {
        let model = &self.model;
        let list = match self.params.get(key) {
            None | Some(Value::Null) => {
                bail!(
                    "model `{model}`: the parameter `{key}` is required (under `config: params:`)"
                )
            }
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => bail!(
                        "model `{model}`: the parameter `{key}` must list strings, not {other}"
                    ),
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                bail!(
                    "model `{model}`: the parameter `{key}` must be a string or a list of strings, not {other}"
                )
            }
        };
        ensure!(
            !list.is_empty(),
            "model `{model}`: the parameter `{key}` must not be empty"
        );
        Ok(list)
    }

    /// Writes `frame` to the table `table` in the model's namespace as well, after the model's
    /// own output is committed (each table gets its own commit).
    pub fn emit(&self, table: &str, mode: SideOutputMode, frame: LazyFrame) {
        self.side_outputs
            .lock()
            .expect("side outputs lock")
            .push(SideOutput { table: table.to_string(), mode, frame });
    }

    fn describe_inputs(&self) -> String {
        if self.inputs.is_empty() {
            "it has no inputs (list them under `inputs:`)".to_string()
        } else {
            format!("available inputs: {}", self.input_names().join(", "))
        }
    }
}

/// A registered Rust model function.
pub type RustModelFn = Arc<dyn Fn(RustModelContext) -> Result<LazyFrame> + Send + Sync>;

/// The tables beside its own (names in the model's namespace) that a function reads, from its
/// parameters.
pub type ReadsBeside = fn(&serde_json::Map<String, Value>) -> Vec<String>;

/// Rust model functions by name.
#[derive(Clone, Default)]
pub struct Registry {
    functions: BTreeMap<String, RustModelFn>,
    /// Functions that read their own earlier output ([`RustModelContext::this`]).
    reading_this: HashSet<String>,
    /// Functions that also read tables beside their own.
    reading_beside: BTreeMap<String, ReadsBeside>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `f` under `name`, replacing any function already registered under it (so a
    /// team can override a built-in).
    pub fn register<F>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(RustModelContext) -> Result<LazyFrame> + Send + Sync + 'static,
    {
        self.functions.insert(name.to_string(), Arc::new(f));
        self.reading_this.remove(name);
        self.reading_beside.remove(name);
        self
    }

    /// Like [`Registry::register`], for a function that reads its own table as it stood
    /// before the run ([`RustModelContext::this`]); other functions get `this = None`, which
    /// saves reading the table.
    pub fn register_reading_this<F>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(RustModelContext) -> Result<LazyFrame> + Send + Sync + 'static,
    {
        self.register(name, f);
        self.reading_this.insert(name.to_string());
        self
    }

    /// Like [`Registry::register_reading_this`], for a function that also reads tables it
    /// writes beside its own (side outputs), named by `beside` from its parameters; they come
    /// as [`RustModelContext::beside`] when they exist.
    pub fn register_reading_beside<F>(&mut self, name: &str, f: F, beside: ReadsBeside) -> &mut Self
    where
        F: Fn(RustModelContext) -> Result<LazyFrame> + Send + Sync + 'static,
    {
        self.register_reading_this(name, f);
        self.reading_beside.insert(name.to_string(), beside);
        self
    }

    /// The tables beside its own that the function registered under `name` reads, given its
    /// parameters.
    pub fn reads_beside(&self, name: &str, params: &serde_json::Map<String, Value>) -> Vec<String> {
        self.reading_beside.get(name).map(|f| f(params)).unwrap_or_default()
    }

    /// Whether the function registered under `name` reads its own table.
    pub fn reads_this(&self, name: &str) -> bool {
        self.reading_this.contains(name)
    }

    /// The function registered under `name`.
    pub fn get(&self, name: &str) -> Option<RustModelFn> {
        self.functions.get(name).cloned()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("functions", &self.functions.keys())
            .finish()
    }
}

/// Runs a registered function over Arrow inputs and returns its output (and side outputs)
/// as Arrow, converting both ways with [`super::polars_bridge`].
///
/// This blocks and uses the CPU: async callers run it in `tokio::task::spawn_blocking`.
pub fn run_rust_model(f: &RustModelFn, call: RustModelCall) -> Result<RustModelOutput> {
    let RustModelCall { model, inputs, params, this: this_batches, is_incremental, beside } = call;
    let model = model.as_str();
    let started = std::time::Instant::now();
    // The inputs and the model's own table are loaded side by side.
    let load_this = || match &this_batches {
        Some((schema, batches)) => record_batches_to_dataframe(schema, batches)
            .with_context(|| format!("model `{model}`: cannot load its own table into Polars"))
            .map(|df| Some(df.lazy())),
        None => Ok(None),
    };
    let load_inputs = || -> Result<BTreeMap<String, LazyFrame>> {
        let mut frames = BTreeMap::new();
        for (name, schema, batches) in &inputs {
            let df = record_batches_to_dataframe(schema, batches)
                .with_context(|| format!("model `{model}`: cannot load input `{name}` into Polars"))?;
            if frames.insert(name.clone(), df.lazy()).is_some() {
                bail!("model `{model}`: the input `{name}` is given twice");
            }
        }
        Ok(frames)
    };
    let (frames, this) = rayon::join(load_inputs, load_this);
    let (frames, this) = (frames?, this?);
    drop((inputs, this_batches));
    let mut beside_frames = BTreeMap::new();
    for (table, schema, batches) in beside {
        let df = record_batches_to_dataframe(&schema, &batches)
            .with_context(|| format!("model `{model}`: cannot load its table `{table}` into Polars"))?;
        beside_frames.insert(table, df.lazy());
    }
    let side_outputs = Arc::new(Mutex::new(Vec::new()));
    let context = RustModelContext {
        inputs: frames,
        params,
        model: model.to_string(),
        this,
        is_incremental,
        beside: beside_frames,
        side_outputs: side_outputs.clone(),
    };
    tracing::debug!(model, "loaded its inputs into Polars in {:.2?}", started.elapsed());
    let started = std::time::Instant::now();
    let output = f(context).with_context(|| format!("Rust model `{model}` failed"))?;
    let df = output
        .collect()
        .with_context(|| format!("Rust model `{model}`: its Polars query failed"))?;
    tracing::debug!(model, "ran its function in {:.2?}", started.elapsed());
    let started = std::time::Instant::now();
    let (schema, batches) = dataframe_to_record_batches(df)
        .with_context(|| format!("Rust model `{model}`: cannot convert its output to Arrow"))?;
    let pending = std::mem::take(&mut *side_outputs.lock().expect("side outputs lock"));
    let mut side = Vec::with_capacity(pending.len());
    for SideOutput { table, mode, frame } in pending {
        let df = frame
            .collect()
            .with_context(|| format!("Rust model `{model}`: its side output `{table}` failed"))?;
        let (schema, batches) = dataframe_to_record_batches(df).with_context(|| {
            format!("Rust model `{model}`: cannot convert its side output `{table}` to Arrow")
        })?;
        side.push(SideOutputBatches { table, mode, schema, batches });
    }
    tracing::debug!(model, "converted its outputs to Arrow in {:.2?}", started.elapsed());
    Ok(RustModelOutput { schema, batches, side_outputs: side })
}
