//! `lake init [DIR]`: scaffold a project that `lake build` builds at once.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{CliResult, ExitCodeExt};

const FILES: &[(&str, &str)] = &[
    (
        "lake.toml",
        r#"name = "{name}"
# Layers in dependency order; a model may read only from its own or earlier layers.
layers = ["raw", "staging", "semantic", "analytics", "marts"]

[catalog]
type = "sql"                      # "sql" (SQLite or Postgres) or "rest"
name = "lake"
uri = "sqlite:.lake/catalog.db"   # e.g. "postgres://lake:${PGPASSWORD}@db/lake" for Postgres
warehouse = ".lake/warehouse"     # a folder, or s3://bucket/prefix with [storage] s3.* keys

[vars]
"#,
    ),
    (".gitignore", ".lake/\ntarget/\n"),
    (
        "seeds/seeds.yml",
        r#"version: 2
seeds:
  - name: events
    description: Example events, loaded into raw.events by `lake seed`.
    config:
      namespace: raw
      files: "events*.csv"
      column_types:
        id: bigint
        user_id: bigint
        kind: varchar
        amount: double
        occurred_at: timestamptz
"#,
    ),
    (
        "seeds/events.csv",
        "id,user_id,kind,amount,occurred_at\n1,10,signup,0,2026-01-01T09:00:00Z\n2,10,purchase,19.5,2026-01-02T10:30:00Z\n3,11,signup,0,2026-01-02T11:00:00Z\n4,11,purchase,5.25,2026-01-03T08:15:00Z\n5,10,purchase,12,2026-01-04T17:45:00Z\n",
    ),
    (
        "models/sources.yml",
        r#"version: 2
sources:
  - name: raw
    tables:
      - name: events
        columns:
          - name: id
            data_tests: [unique, not_null]
"#,
    ),
    (
        "models/staging/stg_events.sql",
        r#"{{ config(materialized='incremental', incremental_strategy='append', watermark='occurred_at') }}
select id, user_id, lower(kind) as kind, amount, occurred_at
from {{ source('raw', 'events') }}
{% if is_incremental() %}
where occurred_at > {{ watermark }}
{% endif %}
"#,
    ),
    (
        "models/staging/staging.yml",
        r#"version: 2
models:
  - name: stg_events
    description: Events, appended incrementally by occurred_at.
    columns:
      - name: id
        data_tests: [unique, not_null]
      - name: kind
        data_tests:
          - accepted_values:
              values: ['signup', 'purchase']
"#,
    ),
    (
        "models/marts/user_revenue.sql",
        r#"{{ config(materialized='table') }}
select user_id, count(*) as purchases, sum(amount) as revenue
from {{ ref('stg_events') }}
where kind = 'purchase'
group by user_id
"#,
    ),
    (
        "models/marts/marts.yml",
        r#"version: 2
models:
  - name: user_revenue
    description: Purchases and revenue per user.
    columns:
      - name: user_id
        data_tests:
          - unique
          - not_null
          - relationships:
              to: ref('stg_events')
              field: user_id
"#,
    ),
    (
        "tests/assert_revenue_not_negative.sql",
        "select * from {{ ref('user_revenue') }} where revenue < 0\n",
    ),
];

pub(super) fn init(dir: PathBuf) -> CliResult {
    if dir.join("lake.toml").exists() {
        return Err(anyhow::anyhow!(
            "{} already holds a lake.toml; not overwriting it",
            dir.display()
        ))
        .usage();
    }
    let name = project_name(&dir);
    write_files(&dir, &name).environment()?;
    println!("Created a lake project in {}", dir.display());
    println!("Next: cd {} && lake build", dir.display());
    Ok(0)
}

fn project_name(dir: &Path) -> String {
    let base = std::path::absolute(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "lakehouse".into());
    let cleaned: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    if cleaned.is_empty() { "lakehouse".into() } else { cleaned }
}

fn write_files(dir: &Path, name: &str) -> anyhow::Result<()> {
    for (path, _) in FILES {
        let target = dir.join(path);
        if target.exists() {
            bail!("{} already exists; not overwriting it", target.display());
        }
    }
    for (path, content) in FILES {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, content.replace("{name}", name))
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(())
}
