//! `lake demo generate`: write or post the demo's webhook events (see [`crate::demo`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{CliResult, ExitCodeExt, GlobalArgs};
use crate::demo::{self, Options, Signer};

/// `lake demo generate` arguments.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// People to generate (each appears in one to three sources).
    #[arg(long, default_value_t = 300)]
    pub customers: usize,
    /// Days of activity.
    #[arg(long, default_value_t = 3)]
    pub days: u32,
    /// Random seed: the same seed gives the same events, byte for byte.
    #[arg(long, default_value_t = 20261101)]
    pub seed: u64,
    /// First day (UTC), YYYY-MM-DD.
    #[arg(long, default_value = "2026-11-01")]
    pub start: chrono::NaiveDate,
    /// Only deliveries sent on or after this day (UTC), YYYY-MM-DD: the next window of a
    /// generation whose earlier days were already sent (use the same --seed, --customers,
    /// --start and --days).
    #[arg(long)]
    pub since: Option<chrono::NaiveDate>,
    /// Only deliveries sent before this day (UTC), YYYY-MM-DD.
    #[arg(long)]
    pub until: Option<chrono::NaiveDate>,
    /// Write <table>.ndjson (<table>-<since>.ndjson with --since) per raw table and truth.csv
    /// into this folder.
    #[arg(long, conflicts_with = "post", required_unless_present = "post")]
    pub out: Option<PathBuf>,
    /// Post each event, signed, to a `lake ingest` webhook server at this base URL
    /// (secrets from the project's [ingest.<name>.webhooks.<provider>] secret_env).
    #[arg(long)]
    pub post: Option<String>,
}

pub(super) async fn generate(g: &GlobalArgs, args: GenerateArgs) -> CliResult {
    let options = Options {
        customers: args.customers,
        days: args.days,
        seed: args.seed,
        start: args.start.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
    };
    if args.customers == 0 || args.days == 0 {
        return Err(anyhow::anyhow!("--customers and --days must be at least 1")).usage();
    }
    let midnight = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let (since, until) = (args.since.map(midnight), args.until.map(midnight));
    let events: Vec<_> = demo::generate(&options)
        .into_iter()
        .filter(|e| since.is_none_or(|s| e.sent_at >= s) && until.is_none_or(|u| e.sent_at < u))
        .collect();
    if let Some(dir) = &args.out {
        let suffix = args.since.map(|d| format!("-{d}")).unwrap_or_default();
        let written = demo::write_out(dir, &events, &suffix).environment()?;
        for (table, n) in &written.events {
            println!("{table}: {n} events → {}", dir.join(format!("{table}{suffix}.ndjson")).display());
        }
        println!("truth: {} source records → {}", written.truth_rows, dir.join("truth.csv").display());
        return Ok(0);
    }
    let base = args.post.expect("clap requires --out or --post");
    let signers = signers(&super::project_cmds::load_config(g)?).usage()?;
    let sent = demo::post(&base, &events, &signers).await.environment()?;
    for (provider, n) in sent {
        println!("{provider}: {n} deliveries posted to {}/webhooks/{provider}", base.trim_end_matches('/'));
    }
    Ok(0)
}

/// Each provider's first configured secret (and HubSpot's public URL) from the project's
/// webhook sources.
fn signers(config: &crate::project::config::ProjectConfig) -> anyhow::Result<BTreeMap<String, Signer>> {
    let mut out = BTreeMap::new();
    for source in config.ingest.values() {
        for (provider, p) in &source.webhooks.providers {
            let Some(var) = p.secret_env.first() else { continue };
            let secret = std::env::var(var)
                .map_err(|_| anyhow::anyhow!("webhooks.{provider}.secret_env names {var}, which is not set"))?;
            out.entry(provider.clone()).or_insert(Signer {
                secret: secret.into_bytes(),
                public_url: p.public_url.clone(),
            });
        }
    }
    if out.is_empty() {
        anyhow::bail!("--post needs a webhook source in lake.toml ([ingest.<name>.webhooks.<provider>] with secret_env)");
    }
    Ok(out)
}
