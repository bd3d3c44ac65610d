//! One snapshot per changed table per run; readers polling during full refreshes never see an
//! empty or partial table; PyIceberg and DuckDB read every table after every kind of commit.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::readers::assert_readers_match_lake;
use crate::support::{TestProject, lake_bin};

fn snapshot_counts(p: &TestProject, tables: &[&str]) -> Vec<usize> {
    tables.iter().map(|t| p.snapshot_count(t)).collect()
}

fn project() -> TestProject {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: orders\n    config:\n      files: \"orders_*.csv\"\n      column_types: {id: bigint, day: date, amount: double, seq: bigint}\n",
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: orders\n");
    p.write(
        "models/staging/stg_orders.sql",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', watermark='seq', on_schema_change='append_new_columns') }}\nselect id, day, amount, seq from {{ source('raw', 'orders') }}\n{% if is_incremental() %}where seq > {{ watermark }}{% endif %}\n",
    );
    p.write(
        "models/analytics/daily.sql",
        "{{ config(materialized='incremental', incremental_strategy='replace_range', range_by='day', watermark='last_seq', partition_by=['day']) }}\nselect day, count(*) as orders, sum(amount) as revenue, max(seq) as last_seq from {{ ref('stg_orders') }}\n{% if is_incremental() %}where day >= (select min(day) from {{ ref('stg_orders') }} where seq > {{ watermark }}){% endif %}\ngroup by day\n",
    );
    p.write("models/marts/summary.sql", "select count(*) as orders, sum(revenue) as revenue from {{ ref('daily') }}\n");
    p
}

fn batch(p: &TestProject, n: usize, first_id: usize, seq: usize, day: &str) {
    let mut csv = String::from("id,day,amount,seq\n");
    for i in 0..n {
        csv.push_str(&format!("{},{day},{}.5,{seq}\n", first_id + i, i % 90));
    }
    p.write(&format!("seeds/orders_{seq:03}.csv"), &csv);
}

#[test]
fn each_run_adds_one_snapshot_per_changed_table_and_readers_agree_after_every_commit_kind() {
    let p = project();
    let tables = ["staging.stg_orders", "analytics.daily", "marts.summary"];
    batch(&p, 300, 0, 1, "2026-11-01");
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    assert_eq!(snapshot_counts(&p, &tables), vec![1, 1, 1]);
    assert_readers_match_lake(&p);

    // Merge (updates and new keys) + replace_range + full refresh: one snapshot each.
    batch(&p, 100, 250, 2, "2026-11-02");
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    assert_eq!(snapshot_counts(&p, &tables), vec![2, 2, 2]);
    assert_eq!(p.sql_count("select count(*) from staging.stg_orders"), 350);
    assert_readers_match_lake(&p);

    // No new data: nothing changes; the table model is up to date (same inputs, same SQL).
    p.lake(&["run"]).assert_ok();
    assert_eq!(snapshot_counts(&p, &tables), vec![2, 2, 2]);
    // Forced, it rebuilds: one overwrite snapshot.
    p.lake(&["run", "--force", "--select", "summary"]).assert_ok();
    assert_eq!(snapshot_counts(&p, &tables), vec![2, 2, 3]);

    // Schema change: a new column, in the same commit as the merge.
    p.write(
        "models/staging/stg_orders.sql",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', watermark='seq', on_schema_change='append_new_columns') }}\nselect id, day, amount, seq, amount * 2 as doubled from {{ source('raw', 'orders') }}\n{% if is_incremental() %}where seq > {{ watermark }}{% endif %}\n",
    );
    batch(&p, 10, 1000, 3, "2026-11-03");
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    assert_eq!(snapshot_counts(&p, &tables), vec![3, 3, 4]);
    assert_eq!(p.sql_count("select count(doubled) from staging.stg_orders"), 10);
    assert_readers_match_lake(&p);

    // Compaction and rollback.
    p.write(
        "models/staging/staging.yml",
        "models:\n  - name: stg_orders\n    config:\n      maintenance: {min_input_files: 2, target_file_size_mb: 64, small_file_mb: 64}\n",
    );
    p.lake(&["maintain", "--select", "stg_orders"]).assert_ok();
    let out = p.lake(&["show", "staging.stg_orders", "--log-format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let snaps = doc["snapshots"].as_array().unwrap();
    assert_eq!(snaps.last().unwrap()["operation"], "replace", "{doc}");
    assert_readers_match_lake(&p);
    let first = snaps[0]["snapshot_id"].as_i64().unwrap();
    p.lake(&["rollback", "staging.stg_orders", "--to", &first.to_string()]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from staging.stg_orders"), 300);
    assert_readers_match_lake(&p);
}

#[test]
fn readers_never_see_an_empty_or_partial_table_during_full_refresh() {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: rows\n    config:\n      column_types: {id: bigint, v: bigint}\n",
    );
    let mut csv = String::from("id,v\n");
    for i in 0..60_000 {
        csv.push_str(&format!("{i},{}\n", i % 7));
    }
    p.write("seeds/rows.csv", &csv);
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: rows\n");
    p.write("lake.toml", "name = \"t\"\n[write]\ntarget_file_size_mb = 1\n");
    p.write("models/marts/copy.sql", "select id, v, id * 2 as w from {{ source('raw', 'rows') }}\n");
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        let dir = p.path().to_path_buf();
        std::thread::spawn(move || {
            for _ in 0..6 {
                let status = Command::new(lake_bin())
                    .args(["run", "--full-refresh"])
                    .current_dir(&dir)
                    .stdout(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut polls = 0;
    while !done.load(Ordering::SeqCst) {
        let rows = p.sql_rows("select count(*), count(distinct id), sum(v) from marts.copy");
        assert_eq!(rows[0], vec!["60000", "60000", "179994"], "poll {polls}");
        polls += 1;
    }
    writer.join().unwrap();
    assert!(polls >= 3, "only {polls} polls during the refreshes");
    // Six full refreshes: six more overwrite snapshots, earlier ones kept for time travel.
    let out = p.lake(&["snapshots", "marts.copy"]);
    out.assert_ok();
    assert!(out.stdout.matches("overwrite").count() >= 7, "{}", out.stdout);
}
