//! The trained probabilistic model that `resolve_entities` keeps beside its index (the table
//! `entity_resolution_model` by default), so that later runs score pairs as the run that
//! trained it did: incremental runs then give what a full build gives, and need only the part
//! of the index their change touches.
//!
//! The table holds one row per part: `part = 'params'` with the model's parameters as JSON in
//! `value`, and `part = 'term_frequency'` with a `role`, a `value` and its `count`. Every row
//! carries the `fingerprint` of the settings that trained it ([`Resolver::fingerprint`]); a
//! run whose settings differ trains a new model and replaces the table.

use anyhow::{Context, Result, anyhow, ensure};
use polars::prelude::{Column, DataFrame, DataType, IntoLazy, LazyFrame, NamedFrom, Series, TimeUnit, TimeZone};

use crate::resolve::Resolver;
use crate::resolve::probabilistic::Model;

const PARAMS: &str = "params";
const TERM_FREQUENCY: &str = "term_frequency";

/// The model kept in `table` (its earlier contents), if there is one trained under the
/// resolver's settings.
fn read(table: Option<&LazyFrame>, resolver: &Resolver) -> Result<Option<Model>> {
    let Some(table) = table else {
        return Ok(None);
    };
    let df = table.clone().collect()?;
    if df.height() == 0 {
        return Ok(None);
    }
    let text = |name: &str| -> Result<_> {
        df.column(name)
            .with_context(|| format!("the column `{name}` is missing"))?
            .str()
            .map(|c| c.clone())
            .with_context(|| format!("the column `{name}` is not text"))
    };
    let (fingerprint, part, role, value) = (text("fingerprint")?, text("part")?, text("role")?, text("value")?);
    let count = df.column("count").context("the column `count` is missing")?.cast(&DataType::Int64)?;
    let count = count.i64()?;
    let wanted = resolver.fingerprint();
    if fingerprint.get(0) != Some(wanted.as_str()) {
        tracing::info!("the resolution settings changed since the kept model was trained: training a new one");
        return Ok(None);
    }
    let mut params = None;
    let mut frequencies = Vec::new();
    for i in 0..df.height() {
        match part.get(i) {
            Some(PARAMS) => params = value.get(i),
            Some(TERM_FREQUENCY) => {
                let (Some(role), Some(v), Some(n)) = (role.get(i), value.get(i), count.get(i)) else {
                    continue;
                };
                ensure!(n > 0 && n <= u32::MAX as i64, "a term frequency of {n}");
                frequencies.push((role.to_string(), v.to_string(), n as u32));
            }
            other => return Err(anyhow!("a row of unknown part {other:?}")),
        }
    }
    let params = params.ok_or_else(|| anyhow!("no `params` row"))?;
    Model::from_stored(params, frequencies).map(Some)
}

/// The model kept in `table` to score this run with: the one trained under the resolver's
/// settings, unless the records have doubled since it was trained (`records`: how many the
/// index holds after this run), so that a model trained on a small first load does not stay.
pub(super) fn reusable(table: Option<&LazyFrame>, resolver: &Resolver, records: impl FnOnce() -> Result<usize>) -> Result<Option<Model>> {
    let Some(kept) = read(table, resolver)? else {
        return Ok(None);
    };
    let records = records()? as u64;
    if records >= 2 * kept.records.max(1) {
        tracing::info!("{records} records, {} when the kept model was trained: training a new one", kept.records);
        return Ok(None);
    }
    Ok(Some(kept))
}

/// The table that keeps `model`, trained under the resolver's settings at `now`.
pub(super) fn frame(model: &Model, resolver: &Resolver, now: i64) -> Result<LazyFrame> {
    let mut part = vec![PARAMS];
    let mut role: Vec<Option<&str>> = vec![None];
    let params = model.params_json();
    let mut value: Vec<&str> = vec![params.as_str()];
    let mut count: Vec<Option<i64>> = vec![None];
    for (r, v, n) in model.term_frequencies() {
        part.push(TERM_FREQUENCY);
        role.push(Some(r));
        value.push(v);
        count.push(Some(n as i64));
    }
    let rows = part.len();
    let fingerprint = resolver.fingerprint();
    let trained_at = Series::new("trained_at".into(), vec![now; rows])
        .cast(&DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)))?;
    let columns: Vec<Column> = vec![
        trained_at.into(),
        Series::new("fingerprint".into(), vec![fingerprint.as_str(); rows]).into(),
        Series::new("part".into(), part).into(),
        Series::new("role".into(), role).into(),
        Series::new("value".into(), value).into(),
        Series::new("count".into(), count).into(),
    ];
    Ok(DataFrame::new(rows, columns)?.lazy())
}
