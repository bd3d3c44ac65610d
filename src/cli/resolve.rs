//! `lake resolve`: ad-hoc entity resolution of one file, without a project or catalog.
//! Writes `pairs.csv` (id_l, id_r, rule, score), `clusters.csv` (id, entity_id) and
//! `stats.json` to the output folder.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use super::{CliResult, EXIT_OK, ExitCodeExt, GlobalArgs};
use crate::resolve::config::{ResolveConfig, Role};
use crate::resolve::io::{CsvWriter, for_each_row};
use crate::resolve::{Entry, Mode, Raw, Resolver};
use crate::run::report::LogFormat;

/// What `lake resolve` was asked to do.
pub struct ResolveArgs {
    pub input: PathBuf,
    pub id: String,
    pub columns: Vec<String>,
    pub config: Option<PathBuf>,
    /// Required unless `explain` is given.
    pub output: Option<PathBuf>,
    /// Two record ids whose comparison to print instead of writing outputs.
    pub explain: Option<Vec<String>>,
}

pub(super) fn resolve(g: &GlobalArgs, args: &ResolveArgs) -> CliResult {
    let started = Instant::now();
    let mapping = parse_columns(&args.columns).usage()?;
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))
                .usage()?;
            ResolveConfig::from_toml(&text)
                .with_context(|| format!("{}: not a valid rules file", path.display()))
                .usage()?
        }
        None => ResolveConfig::default(),
    };
    let roles: Vec<Role> = mapping.iter().map(|(r, _)| *r).collect();
    let resolver = Resolver::new(config, &roles).usage()?;
    let progress = g.log_format == LogFormat::Text && std::io::stderr().is_terminal();

    // Read and normalize.
    let source = args
        .input
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("input")
        .to_string();
    let mut wanted: Vec<&str> = vec![args.id.as_str()];
    wanted.extend(mapping.iter().map(|(_, c)| c.as_str()));
    let mut record_ids: Vec<String> = Vec::new();
    let mut raws: Vec<Raw> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let rows = for_each_row(&args.input, &wanted, |values| {
        let Some(id) = values[0] else {
            bail!("the id column `{}` is empty", args.id);
        };
        if !ids.insert(id.to_string()) {
            bail!("the id `{id}` appears twice in `{}`", args.id);
        }
        let mut raw: Raw = Default::default();
        for ((role, _), v) in mapping.iter().zip(&values[1..]) {
            raw[role.index()] = v.map(str::to_string);
        }
        record_ids.push(id.to_string());
        raws.push(raw);
        Ok(())
    })
    .usage()?;
    drop(ids);
    tracing::debug!("read {rows} records in {:.2?}", started.elapsed());
    let normalizing = std::time::Instant::now();
    let norms = resolver.normalize_all(&raws);
    tracing::debug!("normalized them in {:.2?}", normalizing.elapsed());
    drop(raws);
    let entries: Vec<Entry> = record_ids.iter().zip(norms).map(|(id, norm)| Entry::new(&source, id, norm)).collect();
    drop(record_ids);
    let read_s = started.elapsed().as_secs_f64();
    if progress {
        eprintln!("read and normalized {rows} records in {read_s:.1}s; matching…");
    }

    let resolution = resolver.resolve(entries, Mode::Full, chrono::Utc::now().timestamp_micros());
    if let Some(pair) = &args.explain {
        return explain(g, &resolution, pair);
    }
    let output = args.output.as_ref().ok_or_else(|| anyhow!("--output is required")).usage()?;
    std::fs::create_dir_all(output)
        .with_context(|| format!("cannot create {}", output.display()))
        .usage()?;
    write_outputs(output, &resolver, &resolution).usage()?;

    let s = &resolution.stats;
    let elapsed = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "event": "resolve_finished",
        "records": s.records_in,
        "blocks": s.blocks,
        "comparisons": s.candidate_pairs,
        "matches": s.matches,
        "matches_per_rule": s.matches_per_rule,
        "candidate_pairs_per_rule": s.pairs_per_rule,
        "clusters": s.clusters,
        "largest_cluster": s.largest_cluster,
        "skipped_blocks": s.skipped_blocks,
        "estimated": resolution.estimated.as_ref().map(describe_estimate),
        "model": resolution.model,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "records_per_second": (s.records_in as f64 / elapsed.max(1e-9)).round(),
        "output": output.display().to_string(),
    });
    std::fs::write(output.join("stats.json"), serde_json::to_string_pretty(&summary).unwrap_or_default())
        .with_context(|| format!("cannot write {}", output.join("stats.json").display()))
        .usage()?;
    match g.log_format {
        LogFormat::Json => println!("{summary}"),
        LogFormat::Text => {
            println!(
                "{} records, {} comparisons in {} blocks, {} matched pairs, {} entities (largest {}), {:.2}s",
                s.records_in, s.candidate_pairs, s.blocks, s.matches, s.clusters, s.largest_cluster, elapsed
            );
            for (rule, n) in &s.matches_per_rule {
                println!("  {rule}: {n} pairs");
            }
            for b in resolution.skipped_blocks.iter().take(10) {
                println!("  skipped block: rule {} key {:?} has {} records (max_block_size {})", b.rule, b.key, b.size, resolver.config().max_block_size);
            }
            if let Some(model) = &resolution.model {
                let how = if model.threshold_chosen { "chosen from the model" } else { "configured" };
                println!("  probabilistic model: threshold {:.4} ({how}), prior {:.3e}", model.threshold, model.prior);
            }
            println!("wrote {}/pairs.csv and clusters.csv", output.display());
        }
    }
    Ok(EXIT_OK)
}

/// EM-estimated Fellegi-Sunter parameters as JSON (prior; m and u per comparison level).
fn describe_estimate(scoring: &crate::resolve::config::Scoring) -> serde_json::Value {
    match scoring {
        crate::resolve::config::Scoring::FellegiSunter { prior, comparisons, .. } => serde_json::json!({
            "prior": prior,
            "comparisons": comparisons.iter().map(|c| serde_json::json!({
                "field": c.field.to_string(),
                "levels": c.levels.iter().map(|l| serde_json::json!({"m": l.m, "u": l.u})).collect::<Vec<_>>(),
                "else": {"m": c.otherwise.m, "u": c.otherwise.u},
            })).collect::<Vec<_>>(),
        }),
        _ => serde_json::Value::Null,
    }
}

/// `--explain ID_L ID_R`: each comparison level and weight of the two records.
fn explain(g: &GlobalArgs, resolution: &crate::resolve::Resolution, pair: &[String]) -> CliResult {
    let model = resolution
        .model
        .as_ref()
        .ok_or_else(|| anyhow!("--explain needs the probabilistic scoring: leave out `rules` and `scoring` in --config"))
        .usage()?;
    let find = |id: &str| {
        resolution
            .entries
            .iter()
            .position(|e| e.source_id == id)
            .ok_or_else(|| anyhow!("--explain: no record has the id `{id}`"))
    };
    let (l, r) = (find(&pair[0]).usage()?, find(&pair[1]).usage()?);
    let explanation = model.explain(&resolution.entries[l].norm, &resolution.entries[r].norm);
    let same = resolution.assigned[l].entity_id == resolution.assigned[r].entity_id;
    match g.log_format {
        LogFormat::Json => println!(
            "{}",
            serde_json::json!({"event": "resolve_explain", "id_l": pair[0], "id_r": pair[1], "same_entity": same, "explanation": explanation})
        ),
        LogFormat::Text => {
            println!("{} vs {}", pair[0], pair[1]);
            println!("{explanation}");
            println!("same entity after clustering: {}", if same { "yes" } else { "no" });
        }
    }
    Ok(EXIT_OK)
}

/// `email=mail,phone=tel` → roles with their columns.
fn parse_columns(items: &[String]) -> Result<Vec<(Role, String)>> {
    let mut out: Vec<(Role, String)> = Vec::new();
    for item in items.iter().flat_map(|i| i.split(',')).map(str::trim).filter(|i| !i.is_empty()) {
        let (role, column) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("--columns: `{item}` should be role=column, e.g. email=email_address"))?;
        let role: Role = role.trim().parse().context("--columns")?;
        if out.iter().any(|(r, _)| *r == role) {
            bail!("--columns: the role `{role}` is given twice");
        }
        out.push((role, column.trim().to_string()));
    }
    if out.is_empty() {
        bail!("--columns: map at least one role, e.g. --columns email=email,phone=phone");
    }
    Ok(out)
}

fn write_outputs(dir: &Path, resolver: &Resolver, resolution: &crate::resolve::Resolution) -> Result<()> {
    let entries = &resolution.entries;
    let mut pairs = CsvWriter::create(&dir.join("pairs.csv"), &["id_l", "id_r", "rule", "score"])?;
    for m in &resolution.matches {
        let score = format!("{:.4}", m.score);
        pairs.row(&[
            &entries[m.a as usize].source_id,
            &entries[m.b as usize].source_id,
            resolver.rule_name(m.rule),
            &score,
        ])?;
    }
    pairs.finish()?;
    let mut clusters = CsvWriter::create(&dir.join("clusters.csv"), &["id", "entity_id"])?;
    for (e, a) in entries.iter().zip(&resolution.assigned) {
        clusters.row(&[&e.source_id, &a.entity_id])?;
    }
    clusters.finish()
}
