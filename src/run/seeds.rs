//! `lake seed`: CSV/NDJSON files under `seeds/` loaded into raw tables, each file once.
//!
//! Loaded files are remembered (path → SHA-256) in the summary of the snapshot that loaded
//! them, so a rerun loads only new files, and a changed file is reported instead of loaded twice.
//! A seed with `mode: replace` is instead reloaded from all its files, in one overwrite
//! snapshot, whenever a file is new, changed or gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use arrow::datatypes::{Field, Schema};
use datafusion::prelude::{CsvReadOptions, JsonReadOptions};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::results::{NodeResult, Status};
use crate::engine::session::new_session;
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::lakehouse::schema::sql_type;
use crate::lakehouse::summary;
use crate::lakehouse::writer::WriteOptions;
use crate::materialize::{self, Strategy};
use crate::project::model::{Seed, SeedFormat, SeedMode};

/// Load one seed. With `full_refresh`, replace the table with every file.
pub async fn load_seed(
    lakehouse: &Lakehouse,
    root: &Path,
    seed: &Seed,
    run_id: &str,
    full_refresh: bool,
    write: &WriteOptions,
) -> NodeResult {
    let started = Instant::now();
    let relation = format!("{}.{}", seed.namespace, seed.table);
    let mut result = NodeResult::new("seed", &seed.name, Some(relation), Status::Success);
    if let Err(e) = load(lakehouse, root, seed, run_id, full_refresh, write, &mut result).await {
        let context = format!("seed {} ({})", seed.name, seed.path.display());
        result.fail(&context, &e, lakehouse.spec());
    }
    result.duration_seconds = started.elapsed().as_secs_f64();
    result
}

async fn load(
    lakehouse: &Lakehouse,
    root: &Path,
    seed: &Seed,
    run_id: &str,
    full_refresh: bool,
    write: &WriteOptions,
    result: &mut NodeResult,
) -> Result<()> {
    let ident = table_ident(&format!("{}.{}", seed.namespace, seed.table))?;
    let schema = Arc::new(seed_schema(seed)?);
    let base = lakehouse.load_table(&ident).await?;
    let loaded = match &base {
        Some(t) if !full_refresh => summary::loaded_seed_files(t),
        _ => BTreeMap::new(),
    };

    let mut all_files = BTreeMap::new();
    let mut changed = Vec::new();
    for file in &seed.files {
        let key = file.to_string_lossy().to_string();
        let bytes = std::fs::read(root.join(file)).with_context(|| format!("cannot read {key}"))?;
        let hash = hex::encode(Sha256::digest(&bytes));
        if loaded.get(&key).is_some_and(|h| *h != hash) {
            changed.push(key.clone());
        }
        all_files.insert(key, hash);
    }
    let new_files: BTreeMap<String, String> =
        all_files.iter().filter(|(k, _)| !loaded.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let gone = loaded.keys().any(|k| !all_files.contains_key(k));
    let replace = full_refresh
        || (seed.mode == SeedMode::Replace && base.is_some() && (!changed.is_empty() || !new_files.is_empty() || gone));
    if !replace {
        if let Some(key) = changed.first() {
            bail!(
                "{key} changed since it was loaded; run `lake seed --full-refresh` to reload the seed, or set `mode: replace` in its config to reload it whenever a file changes"
            );
        }
    }
    let new_files = if replace { all_files } else { new_files };
    if new_files.is_empty() {
        result.rows_written = Some(0);
        result.operation = Some("none".into());
        result.message = Some("every file is already loaded".into());
        return Ok(());
    }

    let ctx = new_session();
    let paths: Vec<String> = new_files
        .keys()
        .map(|k| root.join(k).to_string_lossy().to_string())
        .collect();
    let df = match seed.format {
        SeedFormat::Ndjson => {
            let mut frames = Vec::new();
            for p in &paths {
                let ext = extension(p);
                frames.push(
                    ctx.read_json(p.as_str(), JsonReadOptions::default().schema(&schema).file_extension(&ext))
                        .await
                        .with_context(|| format!("cannot read {p}"))?,
                );
            }
            union(frames)?
        }
        SeedFormat::Csv => {
            let mut frames = Vec::new();
            for p in &paths {
                let ext = extension(p);
                frames.push(
                    ctx.read_csv(
                        p.as_str(),
                        CsvReadOptions::new().schema(&schema).has_header(true).file_extension(&ext),
                    )
                    .await
                    .with_context(|| format!("cannot read {p}"))?,
                );
            }
            union(frames)?
        }
    };
    let stream = df
        .execute_stream()
        .await?
        .map_err(|e| anyhow!("{e}"))
        .boxed();
    let mut properties = summary::stamp(Some(run_id), Some(&format!("seed.{}", seed.name)));
    properties.insert(summary::SEED_FILES.into(), serde_json::to_string(&new_files)?);
    let request = materialize::Request {
        ident,
        base,
        strategy: if replace { Strategy::Replace } else { Strategy::Append },
        partition_by: Vec::new(),
        watermark_column: None,
        previous_watermark: None,
        fixed_watermark: None,
        // A column added to `column_types` is added to the table; older rows read it as null.
        delete_when: None,
        on_schema_change: materialize::SchemaChangePolicy::AppendNewColumns,
        properties,
        rebase: None,
        write,
    };
    let outcome = materialize::materialize(lakehouse, request, schema, stream).await?;
    result.rows_written = Some(outcome.rows_written);
    if let Some(c) = outcome.commit {
        result.operation = Some(c.operation);
        result.files_added = Some(c.files_added);
        result.files_removed = Some(c.files_removed);
        result.snapshot_id = Some(c.snapshot_id);
    }
    result.message = Some(format!("loaded {}", new_files.keys().cloned().collect::<Vec<_>>().join(", ")));
    Ok(())
}

/// `.ndjson` for `a/b.ndjson`: DataFusion reads only files with the given extension.
fn extension(path: &str) -> String {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default()
}

fn union(frames: Vec<datafusion::prelude::DataFrame>) -> Result<datafusion::prelude::DataFrame> {
    let mut iter = frames.into_iter();
    let first = iter.next().ok_or_else(|| anyhow!("no files"))?;
    iter.try_fold(first, |acc, df| acc.union(df).map_err(|e| anyhow!("{e}")))
}

/// The Arrow schema a seed declares in `column_types`.
pub fn seed_schema(seed: &Seed) -> Result<Schema> {
    let fields = seed
        .column_types
        .iter()
        .map(|(name, ty)| {
            sql_type(ty)
                .map(|t| Field::new(name, t, true))
                .ok_or_else(|| anyhow!("{}: seed '{}': column '{name}' has unknown type '{ty}' (use bigint, int, double, decimal(p,s), varchar, boolean, date, timestamp, timestamptz)", seed.path.display(), seed.name))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Schema::new(fields))
}

