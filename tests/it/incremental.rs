//! Append-incremental models, watermarks in snapshot summaries, seeds loaded once, and
//! full rebuilds as one overwrite snapshot.

use crate::support::TestProject;

fn project() -> TestProject {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        r#"seeds:
  - name: events
    config:
      files: "events*.ndjson"
      column_types: {id: bigint, kind: varchar, amount: "decimal(10,2)", at: timestamptz}
"#,
    );
    p.write(
        "seeds/events_1.ndjson",
        r#"{"id": 1, "kind": "a", "amount": 1.50, "at": "2026-01-01T10:00:00Z"}
{"id": 2, "kind": "b", "amount": 2.25, "at": "2026-01-02T10:00:00Z"}
{"id": 3, "kind": "a", "amount": 3.00, "at": "2026-01-03T10:00:00Z"}
"#,
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: events\n");
    p.write(
        "models/staging/stg_events.sql",
        r#"{{ config(materialized='incremental', incremental_strategy='append', watermark='at') }}
select id, kind, amount, at from {{ source('raw', 'events') }}
{% if is_incremental() %}where at > {{ watermark }}{% endif %}
"#,
    );
    p.write(
        "models/marts/kinds.sql",
        "select kind, count(*) as n, sum(amount) as total from {{ ref('stg_events') }} group by kind\n",
    );
    p
}

#[test]
fn append_incremental_appends_exactly_new_rows_and_advances_the_watermark() {
    let p = project();
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from staging.stg_events"), 3);
    let first = p.current_snapshot("staging.stg_events");
    assert_eq!(first["operation"], "append");
    assert_eq!(first["summary"]["lake.watermark"], "2026-01-03T10:00:00.000000Z");
    assert_eq!(first["summary"]["lake.watermark.column"], "at");
    assert_eq!(first["summary"]["lake.model"], "stg_events");

    // No new data: same rows, no new snapshot.
    let before = p.snapshot_count("staging.stg_events");
    p.lake(&["seed"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.events"), 3, "a loaded file is not loaded again");
    p.lake(&["run"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from staging.stg_events"), 3);
    assert_eq!(p.snapshot_count("staging.stg_events"), before);
    let results = p.run_results();
    let stg = results["results"].as_array().unwrap().iter().find(|r| r["name"] == "stg_events").unwrap();
    assert_eq!(stg["rows_written"], 0);
    assert_eq!(stg["watermark_before"], "2026-01-03T10:00:00.000000Z");

    // New raw rows: exactly those are appended, the watermark advances in the new snapshot.
    p.write(
        "seeds/events_2.ndjson",
        r#"{"id": 4, "kind": "b", "amount": 4.00, "at": "2026-01-04T10:00:00Z"}
{"id": 5, "kind": "c", "amount": 5.50, "at": "2026-01-05T12:30:00Z"}
"#,
    );
    p.lake(&["seed"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.events"), 5);
    p.lake(&["run"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from staging.stg_events"), 5);
    assert_eq!(p.sql_count("select count(distinct id) from staging.stg_events"), 5);
    let latest = p.current_snapshot("staging.stg_events");
    assert_eq!(latest["operation"], "append");
    assert_eq!(latest["summary"]["lake.watermark"], "2026-01-05T12:30:00.000000Z");
    assert_eq!(latest["summary"]["added-records"], "2");
    assert_eq!(latest["summary"]["total-records"], "5");
    assert_eq!(p.snapshot_count("staging.stg_events"), before + 1);

    let out = p.lake(&["watermarks", "--log-format", "json"]);
    out.assert_ok();
    assert!(out.stdout.contains("2026-01-05T12:30:00.000000Z"), "{}", out.stdout);

    // Downstream table model sees all rows.
    assert_eq!(p.sql_count("select sum(n) from marts.kinds"), 5);
}

#[test]
fn table_rebuild_is_one_overwrite_snapshot_with_time_travel() {
    let p = project();
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    let first = p.current_snapshot("marts.kinds");
    let first_id = first["snapshot_id"].as_i64().unwrap();
    assert_eq!(p.sql_count("select count(*) from marts.kinds"), 2);

    p.write("seeds/events_2.ndjson", r#"{"id": 9, "kind": "z", "amount": 1, "at": "2026-02-01T00:00:00Z"}"#);
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    let second = p.current_snapshot("marts.kinds");
    assert_eq!(second["operation"], "overwrite");
    assert_eq!(second["summary"]["deleted-records"], "2");
    assert_eq!(second["summary"]["total-records"], "3");
    assert_eq!(p.sql_count("select count(*) from marts.kinds"), 3);
    // The old snapshot is still there for time travel.
    assert_eq!(
        p.sql_count(&format!("select count(*) from snapshot('marts.kinds', {first_id})")),
        2
    );

    // --full-refresh rebuilds the incremental model as one overwrite.
    p.lake(&["run", "--full-refresh", "--select", "stg_events"]).assert_ok();
    let refreshed = p.current_snapshot("staging.stg_events");
    assert_eq!(refreshed["operation"], "overwrite");
    assert_eq!(p.sql_count("select count(*) from staging.stg_events"), 4);
}

#[test]
fn changed_seed_file_is_reported_not_loaded_twice() {
    let p = project();
    p.lake(&["seed"]).assert_ok();
    p.write(
        "seeds/events_1.ndjson",
        r#"{"id": 1, "kind": "a", "amount": 9.99, "at": "2026-01-01T10:00:00Z"}"#,
    );
    let out = p.lake(&["seed"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("events_1.ndjson changed"), "{}", out.all());
    assert_eq!(p.sql_count("select count(*) from raw.events"), 3);
    p.lake(&["seed", "--full-refresh"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.events"), 1);
}
