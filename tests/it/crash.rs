//! Crash safety: `lake run` killed with SIGKILL at random moments leaves every table at its
//! previous or its next snapshot; the next run converges to the same result, and after
//! `lake maintain` no data file is left that no snapshot references.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestProject, lake_bin};

fn project() -> TestProject {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: events\n    config:\n      files: \"events_*.csv\"\n      column_types: {id: bigint, k: bigint, v: bigint, seq: bigint}\n",
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: events\n");
    let maintenance = "maintenance={'expire_older_than': '0s', 'retain_last': 1, 'orphan_older_than': '0s'}";
    p.write(
        "models/staging/stg_events.sql",
        &format!("{{{{ config(materialized='incremental', watermark='seq', {maintenance}) }}}}\nselect id, k, v, seq from {{{{ source('raw', 'events') }}}}\n{{% if is_incremental() %}}where seq > {{{{ watermark }}}}{{% endif %}}\n"),
    );
    p.write(
        "models/staging/latest_by_key.sql",
        &format!("{{{{ config(materialized='incremental', incremental_strategy='merge', unique_key='k', watermark='seq', {maintenance}) }}}}\nselect k, v, seq from (select k, v, seq, row_number() over (partition by k order by seq desc) as rn from {{{{ source('raw', 'events') }}}}\n{{% if is_incremental() %}}where seq > {{{{ watermark }}}}{{% endif %}}) as t where rn = 1\n"),
    );
    p.write(
        "models/marts/totals.sql",
        &format!("{{{{ config(materialized='table', {maintenance}) }}}}\nselect count(*) as n, sum(v) as total from {{{{ ref('stg_events') }}}}\n"),
    );
    p
}

fn batch(p: &TestProject, round: u64, rows: u64) {
    let mut csv = String::from("id,k,v,seq\n");
    for i in 0..rows {
        let id = round * rows + i;
        csv.push_str(&format!("{id},{},{},{id}\n", id % 997, id % 13));
    }
    p.write(&format!("seeds/events_{round:03}.csv"), &csv);
}

fn counts(p: &TestProject) -> (i64, i64, i64) {
    (
        p.sql_count("select count(*) from staging.stg_events"),
        p.sql_count("select count(*) from staging.latest_by_key"),
        p.sql_count("select n from marts.totals"),
    )
}

#[test]
fn sigkill_leaves_previous_or_next_state_and_no_orphans() {
    let p = project();
    let rows = 20_000;
    batch(&p, 0, rows);
    p.lake(&["seed"]).assert_ok();
    let started = Instant::now();
    p.lake(&["run"]).assert_ok();
    let typical = started.elapsed();
    let mut expected = (rows as i64, 997, rows as i64);
    assert_eq!(counts(&p), expected);

    let mut state = 0x2545F4914F6CDD1Du64;
    for round in 1..8u64 {
        batch(&p, round, rows);
        p.lake(&["seed"]).assert_ok();
        let next = ((round + 1) as i64 * rows as i64, 997, (round + 1) as i64 * rows as i64);
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = Duration::from_micros(state % (typical.as_micros() as u64 * 12 / 10).max(1));
        let mut child = Command::new(lake_bin())
            .arg("run")
            .current_dir(p.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        // Every table is readable, at its previous or its next state.
        let (stg, latest, total) = counts(&p);
        assert!(stg == expected.0 || stg == next.0, "round {round}: stg_events has {stg} rows");
        assert_eq!(latest, 997, "round {round}");
        assert!(total == expected.2 || total == stg, "round {round}: totals {total}, stg {stg}");

        // The next run converges.
        p.lake(&["run"]).assert_ok();
        expected = next;
        assert_eq!(counts(&p), expected, "round {round} after rerun");
        assert_eq!(p.sql_count("select count(distinct id) from staging.stg_events"), expected.0);
        assert_eq!(
            p.sql_count("select count(*) from staging.latest_by_key l join (select k, max(seq) as s from raw.events group by k) m on l.k = m.k and l.seq = m.s"),
            997
        );
    }

    // After maintenance no data file is left that the table does not reference.
    p.lake(&["maintain"]).assert_ok();
    for table in ["staging/stg_events", "staging/latest_by_key", "marts/totals"] {
        let name = table.replace('/', ".");
        let out = p.lake(&["show", &name, "--log-format", "json"]);
        let doc: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        let current = doc["current_snapshot_id"].clone();
        let snapshots = doc["snapshots"].as_array().unwrap();
        let summary = &snapshots.iter().find(|s| s["snapshot_id"] == current).unwrap()["summary"];
        let referenced: usize = summary["total-data-files"].as_str().unwrap().parse().unwrap();
        let data_dir = p.path().join(".lake/warehouse").join(table).join("data");
        let on_disk = walk_files(&data_dir).into_iter().filter(|f| f.ends_with(".parquet")).count();
        assert_eq!(snapshots.len(), 1, "{name}: expired down to the current snapshot");
        assert_eq!(on_disk, referenced, "{name}: parquet files on disk vs referenced");
    }
    assert_eq!(counts(&p), expected);
}

fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk_files(&path));
            } else {
                out.push(path.to_string_lossy().to_string());
            }
        }
    }
    out
}
