//! The Rust models built into the `lake` binary, in one registry: `dedupe_latest`,
//! `union_all` and `resolve_entities` (entity resolution, from [`crate::resolve`]).
//!
//! This module sits above [`crate::engine`] and [`crate::resolve`] so that neither needs the
//! other: the engine runs whatever a [`Registry`] holds, and resolution knows nothing of the
//! registry it is put in.

use std::collections::HashSet;

use anyhow::{Result, bail, ensure};
use polars::prelude::{
    DataType, Expr, LazyFrame, NULL, PlSmallStr, SortMultipleOptions, UnionArgs, UniqueKeepStrategy, col,
    concat, lit,
};

use crate::engine::rust_model::{Registry, RustModelContext};

/// A registry with the built-in functions:
///
/// - `dedupe_latest` — params `input` (optional when there is one input), `key` (a column
///   or a list of columns) and `order_by` (a column): keeps, per key, the row with the
///   greatest `order_by` (nulls count as smallest; on ties, the row that comes last in
///   the input).
/// - `union_all` — stacks all inputs, matching columns by name (a column missing from an
///   input is null there; types are widened to a common one), and adds an `_input` column
///   holding the input's name.
/// - `resolve_entities` — entity resolution across the inputs; see
///   [`crate::resolve::model`].
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register("dedupe_latest", dedupe_latest)
        .register("union_all", union_all)
        .register_reading_beside(
            "resolve_entities",
            crate::resolve::model::resolve_entities,
            crate::resolve::model::reads_beside,
        );
    registry
}

/// The built-in `dedupe_latest`; see [`registry`].
fn dedupe_latest(ctx: RustModelContext) -> Result<LazyFrame> {
    let (input, frame) = ctx.input_named_by("input")?;
    let keys = ctx.param_str_list("key")?;
    let order_by = ctx.param_str("order_by")?;

    let schema = frame.clone().collect_schema()?;
    for column in keys.iter().map(String::as_str).chain([order_by]) {
        if !schema.contains(column) {
            let columns: Vec<&str> = schema.iter_names().map(PlSmallStr::as_str).collect();
            bail!(
                "model `{}` (dedupe_latest): input `{input}` has no column `{column}`; its columns: {}",
                ctx.model,
                columns.join(", ")
            );
        }
    }

    // A stable sort keeps input order among equal `order_by` values, so "last per key" is
    // well defined: the greatest `order_by`, and on ties the row that came last.
    let sorted = frame.sort_by_exprs(
        [col(order_by)],
        SortMultipleOptions::default().with_maintain_order(true),
    );
    let subset = keys.iter().map(|k| col(k.as_str())).collect();
    Ok(sorted.unique_stable_generic(Some(subset), UniqueKeepStrategy::Last))
}

/// The name of the column `union_all` adds.
const UNION_INPUT_COLUMN: &str = "_input";

/// The built-in `union_all`; see [`registry`].
fn union_all(ctx: RustModelContext) -> Result<LazyFrame> {
    ensure!(
        !ctx.inputs.is_empty(),
        "model `{}` (union_all): it has no inputs (list them under `inputs:`)",
        ctx.model
    );

    // Every column of every input, in order of first appearance, with its first type.
    let mut schemas = Vec::with_capacity(ctx.inputs.len());
    let mut columns: Vec<(PlSmallStr, DataType)> = Vec::new();
    let mut seen = HashSet::new();
    for (name, frame) in &ctx.inputs {
        let schema = frame.clone().collect_schema()?;
        ensure!(
            !schema.contains(UNION_INPUT_COLUMN),
            "model `{}` (union_all): input `{name}` already has a column `{UNION_INPUT_COLUMN}`",
            ctx.model
        );
        for (column, dtype) in schema.iter() {
            if seen.insert(column.clone()) {
                columns.push((column.clone(), dtype.clone()));
            }
        }
        schemas.push(schema);
    }

    let frames: Vec<LazyFrame> = ctx
        .inputs
        .iter()
        .zip(&schemas)
        .map(|((name, frame), schema)| {
            let select: Vec<Expr> = columns
                .iter()
                .map(|(column, dtype)| {
                    if schema.contains(column) {
                        col(column.clone())
                    } else {
                        lit(NULL).cast(dtype.clone()).alias(column.clone())
                    }
                })
                .collect();
            frame
                .clone()
                .select(select)
                .with_column(lit(name.as_str()).alias(UNION_INPUT_COLUMN))
        })
        .collect();
    let args = UnionArgs {
        to_supertypes: true,
        ..UnionArgs::default()
    };
    Ok(concat(frames, args)?)
}
