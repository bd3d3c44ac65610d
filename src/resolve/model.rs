//! The built-in Rust model `resolve_entities`: resolves customers across its inputs and
//! keeps the entity index as an Iceberg table, with stable ids across runs.
//!
//! ```yaml
//! models:
//!   - name: entity_index
//!     config:
//!       materialized: table            # or incremental + merge on [source, source_id]
//!       function: resolve_entities
//!       inputs: [stg_shopify_customers, stg_stripe_customers]
//!       params:
//!         sources:
//!           stg_shopify_customers: {source: shopify, id: customer_id, email: email, phone: phone,
//!                                   first_name: first_name, last_name: last_name, postcode: zip}
//!           stg_stripe_customers: {source: stripe, id: id, email: email, first_name: given_name,
//!                                  last_name: family_name}
//!         default_region: US             # and the rest of rules.toml: rules, scoring, ...
//! ```
//!
//! The model's rows are the index (`entity_id`, `source`, `source_id`, raw and normalized
//! values per role, `match_rule`, `confidence`, `first_seen`, `updated_at`). Each run also
//! appends to `entity_resolution_stats`, `entity_merges` and `entity_changes` (each record whose
//! entity is new or other than before, with its previous entity) and merges `blocking_index`,
//! all in the model's namespace (names can be changed with `stats_table`, `merges_table`,
//! `changes_table`, `blocking_table`). With the probabilistic scoring (the default without
//! `rules`), the trained model is kept in `entity_resolution_model` (`model_table`): later
//! runs, full or incremental, score with it. A new model is trained when the settings change,
//! when the records have doubled since the kept model was trained (so a model trained on the
//! first small load does not stay), or when that table is dropped; a run that trains one
//! re-resolves the whole index with it.
//!
//! On a full build every record is compared, and records that were in the index keep their
//! entity's id. On an incremental run (`materialized: incremental`, `incremental_strategy:
//! merge`, `unique_key: [source, source_id]`, `watermark: snapshot`), only the records new or
//! changed since the last run, and the other records of the clusters a changed record was in,
//! are compared, against the whole index by blocking key; the model returns the rows whose
//! entity, match or values changed. Such a run reads into records only the part of the index
//! those comparisons need (`neighbourhood`), so its cost follows the change, and it gives what
//! a full build gives, except when a block grows past `max_block_size` (a full build then
//! drops the pairs it held; an incremental run keeps the clusters they made). A run that has
//! to train a model reads the whole index.

use std::collections::BTreeMap;

// foldhash, as in `resolve` (see there).
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail, ensure};
use polars::prelude::{
    Column, DataFrame, DataType, IntoLazy, LazyFrame, NamedFrom, Series, StringChunked, TimeUnit, TimeZone,
};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use super::config::{ResolveConfig, Role, Scoring};
use super::{Entry, Mode, Norm, Prior, Raw, Resolution, Resolver};
use crate::engine::rust_model::{RustModelContext, SideOutputMode};

mod kept;
mod neighbourhood;

/// Where one input's fields are: its source name, id column, and a column per role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceMapping {
    /// The name the records carry in the index (defaults to the input's name).
    source: Option<String>,
    /// The column that identifies a record within the source.
    id: String,
    email: Option<String>,
    phone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    dob: Option<String>,
    postcode: Option<String>,
    address: Option<String>,
}

impl SourceMapping {
    fn columns(&self) -> Vec<(Role, &str)> {
        let all = [
            (Role::Email, &self.email),
            (Role::Phone, &self.phone),
            (Role::FirstName, &self.first_name),
            (Role::LastName, &self.last_name),
            (Role::Dob, &self.dob),
            (Role::Postcode, &self.postcode),
            (Role::Address, &self.address),
        ];
        all.into_iter()
            .filter_map(|(role, column)| column.as_deref().map(|c| (role, c)))
            .collect()
    }
}

/// Where `resolve_entities` keeps its trained model unless `model_table` names another table.
const MODEL_TABLE: &str = "entity_resolution_model";

/// The tables beside its index that `resolve_entities` reads back: its kept model.
pub fn reads_beside(params: &serde_json::Map<String, Value>) -> Vec<String> {
    vec![params.get("model_table").and_then(Value::as_str).unwrap_or(MODEL_TABLE).to_string()]
}

/// The built-in `resolve_entities`; see the module documentation.
pub fn resolve_entities(ctx: RustModelContext) -> Result<LazyFrame> {
    let model = ctx.model.clone();
    let mut params = ctx.params.clone();
    let [stats_table, merges_table, changes_table, blocking_table, model_table] = [
        ("stats_table", "entity_resolution_stats"),
        ("merges_table", "entity_merges"),
        ("changes_table", "entity_changes"),
        ("blocking_table", "blocking_index"),
        ("model_table", MODEL_TABLE),
    ]
    .map(|(key, default)| match params.remove(key) {
        Some(Value::String(s)) => Ok(s),
        None => Ok(default.to_string()),
        Some(other) => Err(anyhow!("model `{model}`: `{key}` must be a table name, not {other}")),
    });
    let (stats_table, merges_table, changes_table) = (stats_table?, merges_table?, changes_table?);
    let (blocking_table, model_table) = (blocking_table?, model_table?);
    let sources: BTreeMap<String, SourceMapping> = serde_json::from_value(
        params
            .remove("sources")
            .ok_or_else(|| anyhow!("model `{model}` (resolve_entities): set `params: sources:` to map each input's columns"))?,
    )
    .with_context(|| format!("model `{model}` (resolve_entities): bad `params: sources:`"))?;
    let config: ResolveConfig = serde_json::from_value(Value::Object(params))
        .with_context(|| format!("model `{model}` (resolve_entities): bad rules in `params:`"))?;
    for input in ctx.input_names() {
        ensure!(
            sources.contains_key(input),
            "model `{model}` (resolve_entities): input `{input}` has no entry under `params: sources:`"
        );
    }
    let mut present: Vec<Role> = sources.values().flat_map(|m| m.columns().into_iter().map(|(r, _)| r)).collect();
    present.sort();
    present.dedup();
    let resolver = Resolver::new(config, &present).with_context(|| format!("model `{model}` (resolve_entities)"))?;
    let started = std::time::Instant::now();
    let incoming = read_incoming(&ctx, &sources, &resolver)?;
    tracing::debug!(model, "read and normalized {} records in {:.2?}", incoming.len(), started.elapsed());
    let started = std::time::Instant::now();
    let index = match &ctx.this {
        Some(frame) => {
            let mut index = frame.clone().collect().with_context(|| format!("model `{model}`: cannot read its own table"))?;
            // One chunk per column: rows are then looked up by position in constant time.
            index.rechunk_mut_par();
            Some(index)
        }
        None => None,
    };
    let now = chrono::Utc::now().timestamp_micros();
    let incremental = ctx.is_incremental && index.is_some();
    // The probabilistic model trained by an earlier run under the same settings.
    let probabilistic = matches!(resolver.config().scoring(), Scoring::Probabilistic { .. });
    let kept = match probabilistic {
        true => kept::reusable(ctx.beside.get(&model_table), &resolver, || {
            records_after(index.as_ref().filter(|_| incremental), &incoming)
        })
        .with_context(|| format!("model `{model}`: cannot read its kept model from `{model_table}`"))?,
        false => None,
    };
    let reuses_model = kept.is_some();
    let resolver = if let Some(trained) = kept { resolver.with_model(trained) } else { resolver };
    // Entries from `arrivals_from` on are the changed records (an incremental run).
    let (resolution, raws, arrivals_from) = match &index {
        Some(index) if incremental => resolve_change(&resolver, index, incoming, probabilistic && !reuses_model, now)
            .with_context(|| format!("model `{model}`: cannot read its own table"))?,
        _ => {
            let priors = std::time::Instant::now();
            let incoming = match &index {
                Some(index) => {
                    with_priors(index, incoming).with_context(|| format!("model `{model}`: cannot read its own table"))?
                }
                None => incoming,
            };
            tracing::debug!(model, "took the priors from its table in {:.2?}", priors.elapsed());
            let (entries, raws): (Vec<Entry>, Vec<Raw>) = incoming.into_iter().unzip();
            (resolver.resolve(entries, Mode::Full, now), raws, 0)
        }
    };

    tracing::debug!(model, "resolved {} records in {:.2?} ({} ms matching and clustering)", resolution.entries.len(), started.elapsed(), resolution.stats.duration_ms);
    let started = std::time::Instant::now();
    // A full build returns the whole index; an incremental run the rows that changed: the
    // changed records, and the others whose entity or match did.
    let mut keep: Vec<usize> = (0..resolution.entries.len())
        .filter(|&i| !incremental || i >= arrivals_from || resolution.assigned[i].changed)
        .collect();
    // In the order of the index's key (source, source_id): a merge into it has nothing to sort.
    let key = |i: usize| (resolution.entries[i].source.as_str(), resolution.entries[i].source_id.as_str());
    keep.par_sort_unstable_by(|&x, &y| key(x).cmp(&key(y)));

    ctx.emit(&stats_table, SideOutputMode::Append, stats_frame(&resolution, incremental, now)?.lazy());
    // With nothing new, the merges and the blocking index stay as they are (no snapshot).
    if !keep.is_empty() || !incremental {
        ctx.emit(&merges_table, SideOutputMode::Append, merges_frame(&resolution, now)?.lazy());
        ctx.emit(&changes_table, SideOutputMode::Append, changes_frame(&resolution, &keep, now)?.lazy());
        // One row per record and rule: a full build replaces the table, an incremental run
        // merges the rows of the changed records (the others' keys are as they were).
        let mode = match incremental {
            true => SideOutputMode::Merge(vec!["rule".into(), "source".into(), "source_id".into()]),
            false => SideOutputMode::Replace,
        };
        ctx.emit(&blocking_table, mode, blocking_frame(&resolver, &resolution, arrivals_from)?.lazy());
    }
    if let Some(trained) = resolution.model.as_ref().filter(|_| probabilistic && !reuses_model) {
        ctx.emit(&model_table, SideOutputMode::Replace, kept::frame(trained, &resolver, now)?);
    }
    let rows = index_frame(&resolution, &raws, &keep, now)?;
    tracing::debug!(model, "built its output frames in {:.2?}", started.elapsed());
    Ok(rows.lazy())
}

/// The records of every input, normalized (no priors yet).
fn read_incoming(
    ctx: &RustModelContext,
    sources: &BTreeMap<String, SourceMapping>,
    resolver: &Resolver,
) -> Result<Vec<(Entry, Raw)>> {
    let model = &ctx.model;
    let inputs: Vec<&String> = sources.keys().collect();
    let mut incoming: Vec<(Entry, Raw)> = Vec::new();
    // The input each record came from, for the error on an id given twice.
    let mut origin: Vec<usize> = Vec::new();
    for (n, (input, mapping)) in sources.iter().enumerate() {
        let frame = ctx.input(input)?;
        let df = frame.collect().with_context(|| format!("model `{model}`: cannot read input `{input}`"))?;
        let source = mapping.source.clone().unwrap_or_else(|| input.clone());
        let in_input = || format!("model `{model}`: input `{input}`");
        let ids = string_column(&df, &mapping.id).with_context(in_input)?;
        let mapped = mapping.columns();
        let values = mapped
            .par_iter()
            .map(|(_, column)| string_column(&df, column).with_context(in_input))
            .collect::<Result<Vec<_>>>()?;
        // Moved, not copied, from the columns into the records.
        let mut columns: Vec<_> = mapped.iter().map(|(role, _)| role.index()).zip(values.into_iter().map(Vec::into_iter)).collect();
        let raws: Vec<Raw> = (0..ids.len())
            .map(|_| {
                let mut raw: Raw = Default::default();
                for (role, values) in &mut columns {
                    raw[*role] = values.next().flatten();
                }
                raw
            })
            .collect();
        let norms = resolver.normalize_all(&raws);
        incoming.reserve(ids.len());
        for (row, ((id, norm), raw)) in ids.into_iter().zip(norms).zip(raws).enumerate() {
            let Some(id) = id else {
                bail!("model `{model}`: input `{input}` has a null `{}` in row {}", mapping.id, row + 1);
            };
            incoming.push((Entry { source: source.clone(), source_id: id, norm, prior: None }, raw));
            origin.push(n);
        }
    }
    let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(incoming.len());
    for (i, (entry, _)) in incoming.iter().enumerate() {
        if let Some(first) = seen.insert((&entry.source, &entry.source_id), i) {
            bail!(
                "model `{model}`: source `{}` has the id `{}` twice (inputs `{}` and `{}`); \
                 give each record once (e.g. deduplicate in staging)",
                entry.source,
                entry.source_id,
                inputs[origin[first]],
                inputs[origin[i]]
            );
        }
    }
    drop(seen);
    Ok(incoming)
}

/// `incoming` with each record's prior: its entity in the stored `index`, if it is there. Reads
/// only the index's key and entity columns, in place.
fn with_priors(index: &DataFrame, mut incoming: Vec<(Entry, Raw)>) -> Result<Vec<(Entry, Raw)>> {
    let text = |name| index_text(index, name);
    let (sources, source_ids, ids, rules) = (text("source")?, text("source_id")?, text("entity_id")?, text("match_rule")?);
    let first_seen = int_column(index, "first_seen")?;
    let confidence = float_column(index, "confidence")?;
    let mut at: HashMap<(&str, &str), usize> = HashMap::with_capacity(index.height());
    for (i, (source, source_id)) in sources.iter().zip(source_ids.iter()).enumerate() {
        let (Some(source), Some(source_id)) = (source, source_id) else {
            bail!("row {} of the entity index lacks its source or source_id", i + 1);
        };
        at.insert((source, source_id), i);
    }
    for (entry, _) in &mut incoming {
        let Some(&i) = at.get(&(entry.source.as_str(), entry.source_id.as_str())) else { continue };
        let Some(entity_id) = ids.get(i) else {
            bail!("row {} of the entity index lacks its entity_id", i + 1);
        };
        entry.prior = Some(Prior {
            entity_id: entity_id.to_string(),
            first_seen: first_seen[i].unwrap_or(0),
            match_rule: rules.get(i).map(str::to_string),
            confidence: confidence[i],
        });
    }
    Ok(incoming)
}

/// The entries of an incremental run, where the re-resolved ones start, and where the changed
/// records among them start.
///
/// An arrival that equals its indexed row is no change and is dropped. The clusters that hold
/// a changed arrival are resolved again from their records (a changed record may leave its
/// cluster or split it), so they come after `compare_from` with the arrivals; every other
/// cluster stays as it is, before it. Given an index that is the full clustering of the data
/// before, the result is the full clustering of the data now (rules scoring; see the module
/// docs for the exceptions).
fn incremental_entries(previous: Vec<IndexRow>, incoming: Vec<(Entry, Raw)>) -> (Vec<Entry>, Vec<Raw>, usize, usize) {
    let at: HashMap<(&str, &str), &IndexRow> =
        previous.iter().map(|r| ((r.entry.source.as_str(), r.entry.source_id.as_str()), r)).collect();
    let mut arrivals: Vec<(Entry, Raw)> = Vec::new();
    let mut affected: HashSet<String> = HashSet::new();
    for (entry, raw) in incoming {
        match at.get(&(entry.source.as_str(), entry.source_id.as_str())) {
            Some(row) if unchanged(row, &entry, &raw) => continue,
            Some(row) => {
                if let Some(p) = &row.entry.prior {
                    affected.insert(p.entity_id.clone());
                }
            }
            None => {}
        }
        arrivals.push((entry, raw));
    }
    drop(at);
    let arrived: HashSet<(&str, &str)> = arrivals.iter().map(|(e, _)| (e.source.as_str(), e.source_id.as_str())).collect();
    let in_affected = |row: &IndexRow| row.entry.prior.as_ref().is_some_and(|p| affected.contains(&p.entity_id));
    let (mut entries, mut raws) = (Vec::with_capacity(previous.len() + arrivals.len()), Vec::new());
    let mut moved = Vec::new();
    for row in previous {
        if arrived.contains(&(row.entry.source.as_str(), row.entry.source_id.as_str())) {
            continue;
        }
        if in_affected(&row) {
            moved.push(row);
        } else {
            entries.push(row.entry);
            raws.push(row.raw);
        }
    }
    drop(arrived);
    let compare_from = entries.len();
    for row in moved {
        entries.push(row.entry);
        raws.push(row.raw);
    }
    let arrivals_from = entries.len();
    for (entry, raw) in arrivals {
        entries.push(entry);
        raws.push(raw);
    }
    (entries, raws, compare_from, arrivals_from)
}

/// An incremental run: resolves the changed records `incoming` against the index. Entries
/// from the returned position on are the changed records.
fn resolve_change(
    resolver: &Resolver,
    index: &DataFrame,
    incoming: Vec<(Entry, Raw)>,
    training: bool,
    now: i64,
) -> Result<(Resolution, Vec<Raw>, usize)> {
    // Rule scoring, and a kept model, need only the part of the index the change touches;
    // training a model needs the whole index.
    let part = match resolver.config().scoring() {
        Scoring::Probabilistic { .. } | Scoring::Rules if !training => neighbourhood::around(index, resolver, incoming)?,
        _ => {
            let rows = read_index(index)?;
            let arrivals = with_priors(index, incoming)?;
            neighbourhood::Neighbourhood { rows, arrivals, ids: Default::default() }
        }
    };
    let (entries, raws, compare_from, arrivals_from) = incremental_entries(part.rows, part.arrivals);
    // Training a new model changes how every pair scores: the run re-resolves the whole index
    // with it, as a full build would.
    let mode = if training { Mode::Full } else { Mode::Incremental { compare_from } };
    Ok((resolver.resolve_beside(entries, mode, now, &part.ids), raws, arrivals_from))
}

/// How many records the index (when given) holds once `incoming` is merged into it.
fn records_after(index: Option<&DataFrame>, incoming: &[(Entry, Raw)]) -> Result<usize> {
    let Some(index) = index else {
        return Ok(incoming.len());
    };
    let (sources, source_ids) = (index_text(index, "source")?, index_text(index, "source_id")?);
    let indexed: HashSet<(&str, &str)> = sources.iter().zip(source_ids.iter()).filter_map(|(s, i)| Some((s?, i?))).collect();
    let new = incoming
        .iter()
        .filter(|(e, _)| !indexed.contains(&(e.source.as_str(), e.source_id.as_str())))
        .count();
    Ok(indexed.len() + new)
}

/// A text column of the stored index, read in place.
fn index_text<'a>(index: &'a DataFrame, name: &str) -> Result<&'a StringChunked> {
    index
        .column(name)
        .with_context(|| format!("the entity index has no column `{name}`"))?
        .str()
        .with_context(|| format!("the entity index's column `{name}` is not text"))
}

/// Whether an arriving record is the same as its row in the index (then it is no change).
fn unchanged(row: &IndexRow, entry: &Entry, raw: &Raw) -> bool {
    row.entry.norm == entry.norm && &row.raw == raw
}

/// One row of the existing index.
struct IndexRow {
    entry: Entry,
    raw: Raw,
}

fn string_column(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>> {
    let column = df.column(name).map_err(|_| {
        let names: Vec<&str> = df.get_column_names().into_iter().map(|n| n.as_str()).collect();
        anyhow!("no column `{name}`; its columns are: {}", names.join(", "))
    })?;
    let series = column.as_materialized_series().cast(&DataType::String)?;
    Ok(series.str()?.iter().map(|v| v.map(str::to_string)).collect())
}

fn int_column(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>> {
    let column = df.column(name)?;
    let series = column.as_materialized_series().cast(&DataType::Int64)?;
    Ok(series.i64()?.iter().collect())
}

fn float_column(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let column = df.column(name)?;
    let series = column.as_materialized_series().cast(&DataType::Float64)?;
    Ok(series.f64()?.iter().collect())
}

fn read_index(df: &DataFrame) -> Result<Vec<IndexRow>> {
    let first_seen = int_column(df, "first_seen")?;
    let confidence = float_column(df, "confidence")?;
    // Every text column, converted on every core: the key and entity columns, then each role's
    // raw and normalized values.
    let mut names = vec!["entity_id".to_string(), "source".into(), "source_id".into(), "match_rule".into()];
    for role in Role::ALL {
        names.push(format!("{}_raw", role.name()));
        names.push(role.name().to_string());
    }
    let texts = names.par_iter().map(|name| index_text(df, name)).collect::<Result<Vec<_>>>()?;
    let (ids, sources, source_ids, rules) = (texts[0], texts[1], texts[2], texts[3]);
    (0..df.height())
        .into_par_iter()
        .map(|i| {
            let (Some(source), Some(source_id), Some(entity_id)) = (sources.get(i), source_ids.get(i), ids.get(i)) else {
                bail!("row {} of the entity index lacks its source, source_id or entity_id", i + 1);
            };
            let mut norm: Norm = Default::default();
            let mut raw: Raw = Default::default();
            for r in 0..Role::ALL.len() {
                raw[r] = texts[4 + 2 * r].get(i).map(str::to_string);
                norm[r] = texts[5 + 2 * r].get(i).map(Arc::from);
            }
            let mut entry = Entry::new(source, source_id, norm);
            entry.prior = Some(Prior {
                entity_id: entity_id.to_string(),
                first_seen: first_seen[i].unwrap_or(0),
                match_rule: rules.get(i).map(str::to_string),
                confidence: confidence[i],
            });
            Ok(IndexRow { entry, raw })
        })
        .collect()
}

fn utc_micros(name: &str, values: Vec<i64>) -> Result<Column> {
    let series = Series::new(name.into(), values)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)))?;
    Ok(series.into())
}

fn strings(name: &str, values: Vec<Option<&str>>) -> Column {
    Series::new(name.into(), values).into()
}

fn index_frame(resolution: &Resolution, raws: &[Raw], keep: &[usize], now: i64) -> Result<DataFrame> {
    let entries = &resolution.entries;
    let assigned = &resolution.assigned;
    type Text<'a> = Box<dyn Fn(usize) -> Option<&'a str> + Sync + 'a>;
    let mut texts: Vec<(String, Text)> = vec![
        ("entity_id".into(), Box::new(|i| Some(assigned[i].entity_id.as_str()))),
        ("source".into(), Box::new(|i| Some(entries[i].source.as_str()))),
        ("source_id".into(), Box::new(|i| Some(entries[i].source_id.as_str()))),
    ];
    for role in Role::ALL {
        let r = role.index();
        texts.push((format!("{}_raw", role.name()), Box::new(move |i| raws[i][r].as_deref())));
        texts.push((role.name().to_string(), Box::new(move |i| entries[i].norm[r].as_deref())));
    }
    texts.push(("match_rule".into(), Box::new(|i| assigned[i].match_rule.as_deref())));
    // The text columns are built on every core, one column per task.
    let mut columns: Vec<Column> =
        texts.par_iter().map(|(name, text)| strings(name, keep.iter().map(|&i| text(i)).collect())).collect();
    columns.push(Series::new("confidence".into(), keep.iter().map(|&i| assigned[i].confidence).collect::<Vec<_>>()).into());
    columns.push(utc_micros("first_seen", keep.iter().map(|&i| assigned[i].first_seen).collect())?);
    columns.push(utc_micros("updated_at", vec![now; keep.len()])?);
    Ok(DataFrame::new(keep.len(), columns)?)
}

fn stats_frame(resolution: &Resolution, incremental: bool, now: i64) -> Result<DataFrame> {
    let s = &resolution.stats;
    let count = |name: &str, v: u64| -> Column { Series::new(name.into(), vec![v as i64]).into() };
    let skipped: Vec<Value> = resolution
        .skipped_blocks
        .iter()
        .take(20)
        .map(|b| serde_json::json!({"rule": b.rule, "key": b.key, "size": b.size}))
        .collect();
    let columns = vec![
        utc_micros("run_at", vec![now])?,
        strings("mode", vec![Some(if incremental { "incremental" } else { "full" })]),
        count("records_in", s.records_in),
        count("records_compared", s.records_compared),
        count("blocks", s.blocks),
        count("candidate_pairs", s.candidate_pairs),
        count("matches", s.matches),
        strings("matches_per_rule", vec![Some(serde_json::to_string(&s.matches_per_rule)?.as_str())]),
        count("clusters", s.clusters),
        count("largest_cluster", s.largest_cluster),
        count("merges", s.merges),
        count("skipped_blocks", s.skipped_blocks),
        strings("largest_skipped_blocks", vec![Some(serde_json::to_string(&skipped)?.as_str())]),
        count("duration_ms", s.duration_ms),
    ];
    Ok(DataFrame::new(1, columns)?)
}

/// The records of `keep` whose entity is new or other than before: `entity_id` and
/// `previous_entity_id` (null for a record seen for the first time). Models that keep one row
/// per entity recompute both ids' rows (the previous one may be gone: delete it).
fn changes_frame(resolution: &Resolution, keep: &[usize], now: i64) -> Result<DataFrame> {
    let moved: Vec<usize> = keep
        .iter()
        .copied()
        .filter(|&i| {
            let prior = resolution.entries[i].prior.as_ref().map(|p| p.entity_id.as_str());
            prior != Some(resolution.assigned[i].entity_id.as_str())
        })
        .collect();
    let entries = &resolution.entries;
    let columns = vec![
        strings("source", moved.iter().map(|&i| Some(entries[i].source.as_str())).collect()),
        strings("source_id", moved.iter().map(|&i| Some(entries[i].source_id.as_str())).collect()),
        strings("entity_id", moved.iter().map(|&i| Some(resolution.assigned[i].entity_id.as_str())).collect()),
        strings(
            "previous_entity_id",
            moved.iter().map(|&i| entries[i].prior.as_ref().map(|p| p.entity_id.as_str())).collect(),
        ),
        utc_micros("changed_at", vec![now; moved.len()])?,
    ];
    Ok(DataFrame::new(moved.len(), columns)?)
}

fn merges_frame(resolution: &Resolution, now: i64) -> Result<DataFrame> {
    let merges = &resolution.merges;
    let columns = vec![
        strings("merged_id", merges.iter().map(|m| Some(m.merged_id.as_str())).collect()),
        strings("into_id", merges.iter().map(|m| Some(m.into_id.as_str())).collect()),
        utc_micros("merged_at", vec![now; merges.len()])?,
    ];
    Ok(DataFrame::new(merges.len(), columns)?)
}

/// The blocking keys of the entries from `from` on: one row per entry and rule, the key null
/// when the entry has none under the rule.
fn blocking_frame(resolver: &Resolver, resolution: &Resolution, from: usize) -> Result<DataFrame> {
    let entries = &resolution.entries[from..];
    let per_entry: Vec<Vec<(&str, Option<String>)>> = entries
        .par_iter()
        .with_min_len(4096)
        .map(|e| resolver.block_key_per_rule(&e.norm).collect())
        .collect();
    // Row j is rule j % rules of entry j / rules.
    let rules = resolver.config().rules.len();
    let height = entries.len() * rules;
    let column = |name: &str| -> Column {
        let values: Vec<Option<&str>> = match name {
            "rule" => per_entry.iter().flat_map(|keys| keys.iter().map(|(r, _)| Some(*r))).collect(),
            "block_key" => per_entry.iter().flat_map(|keys| keys.iter().map(|(_, k)| k.as_deref())).collect(),
            "source" => entries.iter().flat_map(|e| std::iter::repeat_n(Some(e.source.as_str()), rules)).collect(),
            _ => entries.iter().flat_map(|e| std::iter::repeat_n(Some(e.source_id.as_str()), rules)).collect(),
        };
        strings(name, values)
    };
    let columns: Vec<Column> = ["rule", "block_key", "source", "source_id"].par_iter().map(|name| column(name)).collect();
    Ok(DataFrame::new(height, columns)?)
}
