//! Two `lake` processes committing to the same tables at once (appends, merges, full
//! refreshes and seeds), on SQLite, Postgres and REST (rustberg) catalogs: every commit lands once or fails with a clear conflict; rows are never lost or
//! doubled, and a rerun converges.

use std::process::{Command, Stdio};

use crate::support::postgres::PgServer;
use crate::support::rustberg::Rustberg;
use crate::support::{TestProject, lake_bin};

/// `catalog`: the `[catalog]` section's lines (none: the embedded SQLite catalog).
fn project(catalog: Option<&str>) -> TestProject {
    let p = TestProject::new();
    let catalog = match catalog {
        Some(lines) => format!("[catalog]\n{lines}"),
        None => String::new(),
    };
    p.write("lake.toml", &format!("name = \"race\"\n{catalog}"));
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: events\n    config:\n      files: \"events*.csv\"\n      column_types: {id: bigint, at: bigint}\n",
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: events\n");
    p.write(
        "models/staging/stg_events.sql",
        "{{ config(materialized='incremental', watermark='at') }}\nselect id, at from {{ source('raw', 'events') }}\n{% if is_incremental() %}where at > {{ watermark }}{% endif %}\n",
    );
    p.write(
        "models/staging/latest_by_bucket.sql",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='bucket', dedupe_by='at', watermark='at') }}\nselect id % 17 as bucket, id, at from {{ source('raw', 'events') }}\n{% if is_incremental() %}where at > {{ watermark }}{% endif %}\n",
    );
    p.write("models/marts/event_count.sql", "select count(*) as n from {{ ref('stg_events') }}\n");
    p
}

fn batch(p: &TestProject, round: usize, rows: usize) {
    let mut csv = String::from("id,at\n");
    for i in 0..rows {
        let id = round * 1000 + i;
        csv.push_str(&format!("{id},{id}\n"));
    }
    p.write(&format!("seeds/events_{round:03}.csv"), &csv);
}

/// Run `args` in two processes at once; return their exit codes and output.
fn twice(p: &TestProject, args: &[&str]) -> Vec<(i32, String)> {
    at_once(p, &[args, args])
}

/// Run each command line in its own process, all at once; return their exit codes and output.
fn at_once(p: &TestProject, commands: &[&[&str]]) -> Vec<(i32, String)> {
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            Command::new(lake_bin())
                .args(*args)
                .current_dir(p.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn lake")
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            )
        })
        .collect()
}

fn race(p: &TestProject) {
    let mut expected = 0;
    for round in 0..4 {
        batch(p, round, 50);
        expected += 50;
        // Two seeds of the same new file: it is loaded exactly once.
        for (code, out) in twice(p, &["seed"]) {
            assert!(code == 0 || (code == 1 && out.contains("conflicted")), "seed exit {code}: {out}");
        }
        p.lake(&["seed"]).assert_ok();
        assert_eq!(p.sql_count("select count(*) from raw.events"), expected);
        assert_eq!(p.sql_count("select count(distinct id) from raw.events"), expected);

        // Two runs of the same incremental model: its rows are appended exactly once.
        for (code, out) in twice(p, &["run"]) {
            assert!(code == 0 || (code == 1 && out.contains("conflicted")), "run exit {code}: {out}");
        }
        p.lake(&["run"]).assert_ok();
        assert_eq!(p.sql_count("select count(*) from staging.stg_events"), expected);
        assert_eq!(p.sql_count("select count(distinct id) from staging.stg_events"), expected);
        assert_eq!(p.sql_count("select n from marts.event_count"), expected);
        // The merged table holds the latest row per bucket, once.
        assert_eq!(p.sql_count("select count(*) from staging.latest_by_bucket"), 17);
        assert_eq!(
            p.sql_count("select count(*) from staging.latest_by_bucket l join (select id % 17 as b, max(at) as m from raw.events group by id % 17) x on l.bucket = x.b and l.at = x.m"),
            17
        );
    }
}

#[test]
fn concurrent_commits_on_sqlite_never_lose_or_double_rows() {
    race(&project(None));
}

#[test]
fn concurrent_commits_on_postgres_never_lose_or_double_rows() {
    let pg = PgServer::start();
    let url = pg.database("lake_race");
    let p = project(Some(&format!("uri = \"{url}\"\n")));
    race(&p);
    // The tables live in Postgres's iceberg_tables, where other JDBC-catalog clients find them.
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "postgres", "-d", "lake_race", "-tAc",
               "select table_namespace || '.' || table_name from iceberg_tables order by 1"])
        .output()
        .unwrap();
    let tables = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        tables.trim(),
        "marts.event_count\nraw.events\nstaging.latest_by_bucket\nstaging.stg_events",
        "{tables}"
    );
}

#[test]
fn concurrent_commits_through_a_rest_catalog_never_lose_or_double_rows() {
    // Every commit goes through rustberg's commit endpoint, which answers a stale
    // assert-ref-snapshot-id with 409: the loser reloads, re-checks and redoes its change.
    let server = Rustberg::start();
    let p = project(Some(&format!("type = \"rest\"\nuri = \"{}\"\n", server.uri())));
    race(&p);
}

/// A merge model and an ingest appending to its table at once, four rounds: the merge keeps
/// the latest row per source key, the appended rows (keys of their own) all stay, once.
/// `merge_mode` is the model's (copy-on-write or merge-on-read).
fn merge_against_append(catalog: Option<&str>, merge_mode: &str) {
    let p = project(catalog);
    p.write(
        "models/staging/latest_by_id.sql",
        &format!("{{{{ config(materialized='incremental', incremental_strategy='merge', merge_mode='{merge_mode}', unique_key='id', dedupe_by='at', on_schema_change='append_new_columns') }}}}\nselect id % 40 as id, at from {{{{ source('raw', 'events') }}}}\n"),
    );
    batch(&p, 0, 50);
    p.lake(&["build", "--select", "latest_by_id"]).assert_ok();
    let mut appended = 0;
    for round in 1..5 {
        batch(&p, round, 50);
        p.lake(&["seed"]).assert_ok();
        let lines: String = (0..30).map(|i| format!("{{\"id\": {}, \"at\": 0}}\n", 100_000 * round + i)).collect();
        p.write(&format!("extra_{round}.ndjson"), &lines);
        appended += 30;
        let file = format!("extra_{round}.ndjson");
        let ingest = ["ingest", "--from", &file, "--table", "staging.latest_by_id", "--once", "--batch-rows", "10"];
        for (code, out) in at_once(&p, &[&["run", "--select", "latest_by_id"], &ingest]) {
            assert_eq!(code, 0, "round {round}: {out}");
        }
        let expected = 40 + appended;
        assert_eq!(p.sql_count("select count(*) from staging.latest_by_id"), expected);
        assert_eq!(p.sql_count("select count(distinct id) from staging.latest_by_id"), expected);
        // Every source key holds its latest row.
        assert_eq!(
            p.sql_count("select count(*) from staging.latest_by_id l join (select id % 40 as k, max(at) as m from raw.events group by id % 40) x on l.id = x.k and l.at = x.m"),
            40
        );
    }
}

#[test]
fn a_merge_and_an_append_to_one_table_at_once_keep_both_on_sqlite() {
    merge_against_append(None, "copy-on-write");
}

#[test]
fn a_merge_on_read_and_an_append_to_one_table_at_once_keep_both_on_sqlite() {
    merge_against_append(None, "merge-on-read");
}

#[test]
fn a_merge_and_an_append_to_one_table_at_once_keep_both_through_rest() {
    let server = Rustberg::start();
    merge_against_append(Some(&format!("type = \"rest\"\nuri = \"{}\"\n", server.uri())), "copy-on-write");
}

#[test]
fn a_merge_on_read_and_an_append_to_one_table_at_once_keep_both_through_rest() {
    let server = Rustberg::start();
    merge_against_append(Some(&format!("type = \"rest\"\nuri = \"{}\"\n", server.uri())), "merge-on-read");
}
