//! `merge` (copy-on-write upsert on unique_key), `replace_range`, and `on_schema_change`, end
//! to end: every run is one snapshot, only the files holding replaced rows are rewritten.

use crate::support::TestProject;

/// A project whose seed `raw.items` is loaded from `seeds/items_*.csv`, one file per batch.
fn project(model: &str) -> TestProject {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        r#"seeds:
  - name: items
    config:
      files: "items_*.csv"
      column_types: {id: bigint, region: varchar, name: varchar, amount: bigint, version: int, day: date, batch: int}
"#,
    );
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    tables:\n      - name: items\n",
    );
    p.write("models/staging/items.sql", model);
    p
}

const MERGE_MODEL: &str = r#"{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', watermark='batch') }}
select id, name, amount, batch from {{ source('raw', 'items') }}
{% if is_incremental() %}where batch > {{ watermark }}{% endif %}
"#;

const HEADER: &str = "id,region,name,amount,version,day,batch\n";

/// Write seed batch `n` with `rows` (CSV lines without the header) and load it.
fn deliver(p: &TestProject, n: u32, rows: &[&str]) {
    p.write(
        &format!("seeds/items_{n:03}.csv"),
        &format!("{HEADER}{}\n", rows.join("\n")),
    );
    p.lake(&["seed"]).assert_ok();
}

fn columns(p: &TestProject, table: &str) -> Vec<String> {
    p.show(table)["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

fn model_result(p: &TestProject, name: &str) -> serde_json::Value {
    p.run_results()["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .expect("model result")
}

/// `lake run` that must add exactly one snapshot to `table`.
fn run_one_snapshot(p: &TestProject, table: &str) {
    let before = show_snapshots_or_zero(p, table);
    p.lake(&["run"]).assert_ok();
    assert_eq!(
        p.snapshot_count(table),
        before + 1,
        "one run, one snapshot of {table}"
    );
}

fn show_snapshots_or_zero(p: &TestProject, table: &str) -> usize {
    let out = p.lake(&["show", table, "--log-format", "json"]);
    if out.code != 0 {
        return 0;
    }
    let doc: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("show json");
    doc["snapshots"].as_array().unwrap().len()
}

fn rows(p: &TestProject, sql: &str) -> Vec<String> {
    p.sql_rows(sql).into_iter().map(|r| r.join(",")).collect()
}

#[test]
fn merge_upserts_and_rewrites_only_the_files_holding_incoming_keys() {
    let p = project(MERGE_MODEL);
    deliver(
        &p,
        1,
        &[
            "1,eu,a,10,1,2026-01-01,1",
            "2,eu,b,20,1,2026-01-01,1",
            "3,eu,c,30,1,2026-01-01,1",
        ],
    );
    run_one_snapshot(&p, "staging.items");
    assert_eq!(p.current_snapshot("staging.items")["operation"], "append");
    // New keys only: nothing matches, a plain append.
    deliver(
        &p,
        2,
        &[
            "4,eu,d,40,1,2026-01-02,2",
            "5,eu,e,50,1,2026-01-02,2",
            "6,eu,f,60,1,2026-01-02,2",
        ],
    );
    run_one_snapshot(&p, "staging.items");
    deliver(
        &p,
        3,
        &[
            "7,eu,g,70,1,2026-01-03,3",
            "8,eu,h,80,1,2026-01-03,3",
            "9,eu,i,90,1,2026-01-03,3",
        ],
    );
    run_one_snapshot(&p, "staging.items");
    let summary = p.current_snapshot("staging.items");
    assert_eq!(summary["operation"], "append");
    assert_eq!(summary["summary"]["total-data-files"], "3");
    assert_eq!(model_result(&p, "items")["files_removed"], 0);

    // Update key 5 (in the second file only) and add key 10.
    deliver(
        &p,
        4,
        &["5,eu,E,55,2,2026-01-04,4", "10,eu,j,100,1,2026-01-04,4"],
    );
    run_one_snapshot(&p, "staging.items");
    let summary = p.current_snapshot("staging.items");
    assert_eq!(summary["operation"], "overwrite");
    assert_eq!(summary["summary"]["deleted-data-files"], "1", "{summary}");
    assert_eq!(summary["summary"]["deleted-records"], "3");
    assert_eq!(
        summary["summary"]["added-records"], "4",
        "survivors 4 and 6, incoming 5 and 10"
    );
    assert_eq!(summary["summary"]["total-records"], "10");
    assert_eq!(summary["summary"]["total-data-files"], "3");
    assert_eq!(summary["summary"]["lake.watermark"], "4");
    let result = model_result(&p, "items");
    assert_eq!(result["files_removed"], 1);
    assert_eq!(result["rows_written"], 2);

    assert_eq!(p.sql_count("select count(*) from staging.items"), 10);
    assert_eq!(
        p.sql_count("select count(distinct id) from staging.items"),
        10
    );
    assert_eq!(
        rows(
            &p,
            "select id, name, amount from staging.items where id in (4, 5, 6, 10) order by id"
        ),
        vec!["4,d,40", "5,E,55", "6,f,60", "10,j,100"]
    );

    // Keys spread over two files: both are rewritten, the third stays.
    deliver(
        &p,
        5,
        &["1,eu,A,11,2,2026-01-05,5", "9,eu,I,99,2,2026-01-05,5"],
    );
    run_one_snapshot(&p, "staging.items");
    let summary = p.current_snapshot("staging.items");
    assert_eq!(summary["summary"]["deleted-data-files"], "2", "{summary}");
    assert_eq!(p.sql_count("select count(*) from staging.items"), 10);
    assert_eq!(
        rows(
            &p,
            "select id, name from staging.items where id in (1, 9) order by id"
        ),
        vec!["1,A", "9,I"]
    );

    // Nothing new: no snapshot.
    let before = p.snapshot_count("staging.items");
    p.lake(&["run"]).assert_ok();
    assert_eq!(p.snapshot_count("staging.items"), before);
}

#[test]
fn merge_rejects_duplicate_and_null_keys_and_dedupes_by_a_column() {
    // A NULL key on the first run: error, and no table is left behind.
    let p = project(MERGE_MODEL);
    deliver(
        &p,
        1,
        &["1,eu,a,10,1,2026-01-01,1", ",eu,b,20,1,2026-01-01,1"],
    );
    let out = p.lake(&["run"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all()
            .contains("merge into staging.items: unique_key (id) is NULL in an incoming row"),
        "{}",
        out.all()
    );
    assert_ne!(
        p.lake(&["show", "staging.items"]).code,
        0,
        "the table created by the failed run is dropped"
    );

    let model = MERGE_MODEL.replace("select id, name", "select id, version, name");
    let p = project(&model);
    deliver(
        &p,
        1,
        &["1,eu,a,10,1,2026-01-01,1", "2,eu,b,20,1,2026-01-01,1"],
    );
    run_one_snapshot(&p, "staging.items");
    deliver(
        &p,
        2,
        &[
            "42,eu,x,1,1,2026-01-02,2",
            "2,eu,y,2,1,2026-01-02,2",
            "42,eu,z,3,2,2026-01-02,2",
        ],
    );
    let before = p.snapshot_count("staging.items");
    let out = p.lake(&["run"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains(
            "merge into staging.items: key (id)=(42) appears 2 times in the incoming rows; set dedupe_by to keep one"
        ),
        "{}",
        out.all()
    );
    assert_eq!(
        p.snapshot_count("staging.items"),
        before,
        "a failed merge commits nothing"
    );
    assert_eq!(p.sql_count("select count(*) from staging.items"), 2);

    // dedupe_by: per key, the row with the greatest version wins.
    p.write(
        "models/staging/items.sql",
        &model.replace("unique_key='id'", "unique_key='id', dedupe_by='version'"),
    );
    run_one_snapshot(&p, "staging.items");
    assert_eq!(
        rows(
            &p,
            "select id, name, version from staging.items order by id"
        ),
        vec!["1,a,1", "2,y,1", "42,z,2"]
    );
}

#[test]
fn merge_on_a_composite_key_prunes_by_partition_and_bounds() {
    let p = project(
        r#"{{ config(materialized='incremental', incremental_strategy='merge', unique_key=['region', 'id'], partition_by=['region'], watermark='batch') }}
select region, id, name, batch from {{ source('raw', 'items') }}
{% if is_incremental() %}where batch > {{ watermark }}{% endif %}
"#,
    );
    deliver(
        &p,
        1,
        &[
            "1,eu,a,0,1,2026-01-01,1",
            "2,eu,b,0,1,2026-01-01,1",
            "1,us,c,0,1,2026-01-01,1",
            "2,us,d,0,1,2026-01-01,1",
        ],
    );
    // The on_schema_change default (fail) must not trip: the model keeps its columns.
    run_one_snapshot(&p, "staging.items");
    assert_eq!(
        p.current_snapshot("staging.items")["summary"]["total-data-files"],
        "2"
    );

    // (eu, 1) is updated; (us, 3) is new: only the eu file is rewritten.
    deliver(
        &p,
        2,
        &["1,eu,A,0,1,2026-01-02,2", "3,us,e,0,1,2026-01-02,2"],
    );
    run_one_snapshot(&p, "staging.items");
    let summary = p.current_snapshot("staging.items");
    assert_eq!(summary["operation"], "overwrite");
    assert_eq!(summary["summary"]["deleted-data-files"], "1", "{summary}");
    assert_eq!(
        rows(
            &p,
            "select region, id, name from staging.items order by region, id"
        ),
        vec!["eu,1,A", "eu,2,b", "us,1,c", "us,2,d", "us,3,e"]
    );

    // The same id in two regions is two keys, not a duplicate.
    deliver(
        &p,
        3,
        &["2,eu,B,0,1,2026-01-03,3", "2,us,D,0,1,2026-01-03,3"],
    );
    run_one_snapshot(&p, "staging.items");
    assert_eq!(
        p.current_snapshot("staging.items")["summary"]["deleted-data-files"],
        "2"
    );
    assert_eq!(
        rows(
            &p,
            "select region, id, name from staging.items order by region, id"
        ),
        vec!["eu,1,A", "eu,2,B", "us,1,c", "us,2,D", "us,3,e"]
    );
}

#[test]
fn replace_range_replaces_the_delivered_days_only() {
    let p = project(
        r#"{{ config(materialized='incremental', incremental_strategy='replace_range', range_by='day', partition_by=['day'], watermark='batch') }}
select day, id, amount, batch from {{ source('raw', 'items') }}
{% if is_incremental() %}where batch > {{ watermark }}{% endif %}
"#,
    );
    p.write(
        "models/staging/items_flat.sql",
        r#"{{ config(materialized='incremental', incremental_strategy='replace_range', range_by='day', watermark='batch') }}
select day, id, amount, batch from {{ source('raw', 'items') }}
{% if is_incremental() %}where batch > {{ watermark }}{% endif %}
"#,
    );
    deliver(
        &p,
        1,
        &[
            "1,eu,a,10,1,2026-01-01,1",
            "2,eu,a,20,1,2026-01-01,1",
            "3,eu,a,30,1,2026-01-02,1",
            "4,eu,a,40,1,2026-01-02,1",
            "5,eu,a,50,1,2026-01-02,1",
            "6,eu,a,60,1,2026-01-03,1",
        ],
    );
    p.lake(&["run"]).assert_ok();
    assert_eq!(p.snapshot_count("staging.items"), 1);
    assert_eq!(p.snapshot_count("staging.items_flat"), 1);

    // Day 2 re-delivered with other rows. Its file in the partitioned table is replaced whole:
    // it is never read (deleting it first proves that).
    let day2: Vec<_> = data_files(&p, "staging", "items")
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("day=2026-01-02"))
        .collect();
    assert_eq!(day2.len(), 1, "{day2:?}");
    std::fs::remove_file(&day2[0]).unwrap();
    deliver(
        &p,
        2,
        &["3,eu,a,33,1,2026-01-02,2", "7,eu,a,70,1,2026-01-02,2"],
    );
    p.lake(&["run"]).assert_ok();
    for table in ["staging.items", "staging.items_flat"] {
        assert_eq!(p.snapshot_count(table), 2, "{table}");
        assert_eq!(
            p.sql_count(&format!("select count(*) from {table}")),
            5,
            "{table}"
        );
        assert_eq!(
            rows(
                &p,
                &format!("select day, id, amount from {table} order by day, id")
            ),
            vec![
                "2026-01-01,1,10",
                "2026-01-01,2,20",
                "2026-01-02,3,33",
                "2026-01-02,7,70",
                "2026-01-03,6,60"
            ],
            "{table}"
        );
        assert_eq!(p.current_snapshot(table)["operation"], "overwrite");
    }
    // Partitioned by day: the day-2 file is dropped whole, the others untouched.
    let partitioned = p.current_snapshot("staging.items");
    assert_eq!(
        partitioned["summary"]["deleted-data-files"], "1",
        "{partitioned}"
    );
    assert_eq!(partitioned["summary"]["deleted-records"], "3");
    assert_eq!(partitioned["summary"]["added-records"], "2");
    // One file with every day: rewritten without day 2.
    let flat = p.current_snapshot("staging.items_flat");
    assert_eq!(flat["summary"]["deleted-data-files"], "1", "{flat}");
    assert_eq!(flat["summary"]["deleted-records"], "6");
    assert_eq!(flat["summary"]["added-records"], "5");

    // A range spanning days 3 and 4: day 3 replaced, day 4 new, days 1 and 2 untouched.
    deliver(
        &p,
        3,
        &["8,eu,a,80,1,2026-01-03,3", "9,eu,a,90,1,2026-01-04,3"],
    );
    p.lake(&["run"]).assert_ok();
    for table in ["staging.items", "staging.items_flat"] {
        assert_eq!(p.snapshot_count(table), 3, "{table}");
        assert_eq!(
            rows(&p, &format!("select day, id from {table} order by day, id")),
            vec![
                "2026-01-01,1",
                "2026-01-01,2",
                "2026-01-02,3",
                "2026-01-02,7",
                "2026-01-03,8",
                "2026-01-04,9"
            ],
            "{table}"
        );
    }
    let partitioned = p.current_snapshot("staging.items");
    assert_eq!(
        partitioned["summary"]["deleted-data-files"], "1",
        "only the day-3 file: {partitioned}"
    );
}

#[test]
fn replace_range_rejects_null_range_values() {
    let p = project(
        r#"{{ config(materialized='incremental', incremental_strategy='replace_range', range_by='day') }}
select day, id from {{ source('raw', 'items') }}
"#,
    );
    deliver(&p, 1, &["1,eu,a,10,1,2026-01-01,1", "2,eu,a,20,1,,1"]);
    let out = p.lake(&["run"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all()
            .contains("range column (day) is NULL in an incoming row"),
        "{}",
        out.all()
    );
}

#[test]
fn merge_with_schema_changes_append_sync_and_fail() {
    let p = project(MERGE_MODEL);
    deliver(
        &p,
        1,
        &[
            "1,eu,a,10,1,2026-01-01,1",
            "2,eu,b,20,1,2026-01-01,1",
            "3,eu,c,30,1,2026-01-01,1",
        ],
    );
    run_one_snapshot(&p, "staging.items");

    // fail (the default): a new column is an error naming it, nothing is committed.
    p.write(
        "models/staging/items.sql",
        &MERGE_MODEL.replace(
            "select id, name, amount",
            "select id, name, amount, amount * 2 as double_amount",
        ),
    );
    deliver(
        &p,
        2,
        &["2,eu,B,21,1,2026-01-02,2", "4,eu,d,40,1,2026-01-02,2"],
    );
    let before = p.snapshot_count("staging.items");
    let out = p.lake(&["run"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains("adds column(s) double_amount"),
        "{}",
        out.all()
    );
    assert!(
        out.all().contains("on_schema_change = fail"),
        "{}",
        out.all()
    );
    assert_eq!(p.snapshot_count("staging.items"), before);

    // append_new_columns: the column is added in the same snapshot as the merge; old rows
    // (including those carried over from the rewritten file) read NULL, no row is duplicated.
    p.write(
        "models/staging/items.sql",
        &MERGE_MODEL
            .replace(
                "select id, name, amount",
                "select id, name, amount, amount * 2 as double_amount",
            )
            .replace(
                "watermark='batch'",
                "watermark='batch', on_schema_change='append_new_columns'",
            ),
    );
    run_one_snapshot(&p, "staging.items");
    assert_eq!(
        columns(&p, "staging.items"),
        vec!["id", "name", "amount", "batch", "double_amount"]
    );
    assert_eq!(p.sql_count("select count(*) from staging.items"), 4);
    assert_eq!(
        p.sql_count("select count(distinct id) from staging.items"),
        4
    );
    assert_eq!(
        rows(
            &p,
            "select id, name, double_amount from staging.items order by id"
        ),
        vec!["1,a,", "2,B,42", "3,c,", "4,d,80"]
    );

    // append_new_columns with a column missing from the output: kept, written as NULL.
    p.write(
        "models/staging/items.sql",
        &MERGE_MODEL
            .replace(
                "select id, name, amount",
                "select id, name, amount * 2 as double_amount",
            )
            .replace(
                "watermark='batch'",
                "watermark='batch', on_schema_change='append_new_columns'",
            ),
    );
    deliver(&p, 3, &["5,eu,e,50,1,2026-01-03,3"]);
    run_one_snapshot(&p, "staging.items");
    assert_eq!(
        columns(&p, "staging.items"),
        vec!["id", "name", "amount", "batch", "double_amount"]
    );
    assert_eq!(
        rows(
            &p,
            "select id, amount, double_amount from staging.items where id >= 4 order by id"
        ),
        vec!["4,40,80", "5,,100"]
    );

    // sync_all_columns: the table's columns become the output's (amount dropped).
    p.write(
        "models/staging/items.sql",
        &MERGE_MODEL
            .replace(
                "select id, name, amount",
                "select id, name, amount * 2 as double_amount",
            )
            .replace(
                "watermark='batch'",
                "watermark='batch', on_schema_change='sync_all_columns'",
            ),
    );
    deliver(
        &p,
        4,
        &["1,eu,A,11,1,2026-01-04,4", "6,eu,f,60,1,2026-01-04,4"],
    );
    run_one_snapshot(&p, "staging.items");
    assert_eq!(
        columns(&p, "staging.items"),
        vec!["id", "name", "double_amount", "batch"]
    );
    assert_eq!(p.sql_count("select count(*) from staging.items"), 6);
    assert_eq!(
        p.sql_count("select count(distinct id) from staging.items"),
        6
    );
    assert_eq!(
        rows(
            &p,
            "select id, name, double_amount from staging.items order by id"
        ),
        vec!["1,A,22", "2,B,42", "3,c,", "4,d,80", "5,e,100", "6,f,120"]
    );
    let out = p.lake(&["sql", "select amount from staging.items"]);
    assert_ne!(out.code, 0, "amount was dropped: {}", out.all());
}

/// Data files of `namespace/table` on disk, oldest first (file names start with a UUIDv7).
fn data_files(p: &TestProject, namespace: &str, table: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &p.path()
            .join(".lake/warehouse")
            .join(namespace)
            .join(table)
            .join("data"),
        &mut out,
    );
    out.sort_by_key(|f| f.file_name().unwrap().to_owned());
    out
}

#[test]
fn merge_never_opens_files_that_cannot_hold_an_incoming_key() {
    // Bounds: three files of ids 1-3, 4-6, 7-9; a merge of keys 5 and 10 reads only 4-6.
    let p = project(MERGE_MODEL);
    deliver(
        &p,
        1,
        &["1,eu,a,10,1,2026-01-01,1", "3,eu,c,30,1,2026-01-01,1"],
    );
    p.lake(&["run"]).assert_ok();
    deliver(
        &p,
        2,
        &["4,eu,d,40,1,2026-01-02,2", "6,eu,f,60,1,2026-01-02,2"],
    );
    p.lake(&["run"]).assert_ok();
    deliver(
        &p,
        3,
        &["7,eu,g,70,1,2026-01-03,3", "9,eu,i,90,1,2026-01-03,3"],
    );
    p.lake(&["run"]).assert_ok();
    let files = data_files(&p, "staging", "items");
    assert_eq!(files.len(), 3, "{files:?}");
    std::fs::remove_file(&files[0]).unwrap();
    std::fs::remove_file(&files[2]).unwrap();
    deliver(
        &p,
        4,
        &["5,eu,e,50,1,2026-01-04,4", "10,eu,j,100,1,2026-01-04,4"],
    );
    p.lake(&["run"]).assert_ok();
    let summary = p.current_snapshot("staging.items");
    assert_eq!(
        summary["operation"], "append",
        "no existing row holds key 5 or 10: {summary}"
    );

    deliver(&p, 5, &["6,eu,F,61,1,2026-01-05,5"]);
    p.lake(&["run"]).assert_ok();
    let summary = p.current_snapshot("staging.items");
    assert_eq!(summary["summary"]["deleted-data-files"], "1", "{summary}");

    // Identity partitions: (eu, 1) cannot be in the us file, although its ids span 1.
    let p = project(
        r#"{{ config(materialized='incremental', incremental_strategy='merge', unique_key=['region', 'id'], partition_by=['region'], watermark='batch') }}
select region, id, name, batch from {{ source('raw', 'items') }}
{% if is_incremental() %}where batch > {{ watermark }}{% endif %}
"#,
    );
    deliver(
        &p,
        1,
        &[
            "1,eu,a,0,1,2026-01-01,1",
            "2,eu,b,0,1,2026-01-01,1",
            "1,us,c,0,1,2026-01-01,1",
            "2,us,d,0,1,2026-01-01,1",
        ],
    );
    p.lake(&["run"]).assert_ok();
    let us: Vec<_> = data_files(&p, "staging", "items")
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("region=us"))
        .collect();
    assert_eq!(us.len(), 1, "{us:?}");
    std::fs::remove_file(&us[0]).unwrap();
    deliver(&p, 2, &["1,eu,A,0,1,2026-01-02,2"]);
    p.lake(&["run"]).assert_ok();
    let summary = p.current_snapshot("staging.items");
    assert_eq!(summary["summary"]["deleted-data-files"], "1", "{summary}");
    assert_eq!(
        rows(
            &p,
            "select region, id, name from staging.items where region = 'eu' order by id"
        ),
        vec!["eu,1,A", "eu,2,b"]
    );
}

#[test]
fn a_full_refresh_of_a_merge_model_keeps_its_key_unique_like_its_merges() {
    // Every delivered version of a key stays in raw; the merge model keeps the latest one,
    // and so must its full refresh (which rebuilds from all of raw at once).
    let model = r#"{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', dedupe_by='version', watermark='batch') }}
select id, name, version, batch from {{ source('raw', 'items') }}
{% if is_incremental() %}where batch > {{ watermark }}{% endif %}
"#;
    let p = project(model);
    deliver(&p, 1, &["1,eu,a,10,1,2026-11-01,1", "2,eu,b,20,1,2026-11-01,1"]);
    p.lake(&["run"]).assert_ok();
    deliver(&p, 2, &["1,eu,a2,11,2,2026-11-02,2", "3,us,c,30,1,2026-11-02,2"]);
    p.lake(&["run"]).assert_ok();
    let merged = rows(&p, "select id || ':' || name from staging.items order by id");
    assert_eq!(merged, vec!["1:a2", "2:b", "3:c"]);
    p.lake(&["run", "--full-refresh"]).assert_ok();
    assert_eq!(rows(&p, "select id || ':' || name from staging.items order by id"), merged);

    // Without dedupe_by a duplicate key fails the full refresh as it fails a merge; the
    // table keeps its rows.
    p.write("models/staging/items.sql", &model.replace(", dedupe_by='version'", ""));
    let out = p.lake(&["run", "--full-refresh"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("appears 2 times"), "{}", out.all());
    assert_eq!(rows(&p, "select id || ':' || name from staging.items order by id"), merged);
}

#[test]
fn a_deduplicated_full_refresh_drops_the_losing_rows_wherever_they_arrive() {
    // Rows already in key order, the losing copy of a key last: the kept rows are a prefix of
    // the arrival order, and the copy that lost must still go.
    let p = project(
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', dedupe_by='version') }}\n\
         select id, name, version from {{ source('raw', 'items') }} order by id, version desc\n",
    );
    deliver(&p, 1, &["1,eu,a,10,1,2026-11-01,1", "2,eu,b-new,20,2,2026-11-01,1", "2,eu,b-old,20,1,2026-11-01,1"]);
    p.lake(&["run", "--full-refresh"]).assert_ok();
    assert_eq!(rows(&p, "select id || ':' || name from staging.items order by id"), vec!["1:a", "2:b-new"]);

    // Many batches in scrambled order, every key twice: one row per key, the greater version.
    let p = project(
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', dedupe_by='version') }}\n\
         select id, name, version from {{ source('raw', 'items') }}\n",
    );
    let n: u64 = 150_000;
    let lines: Vec<String> = (0..2 * n)
        .map(|i| {
            let id = i * 7919 % n;
            format!("{id},eu,v{},1,{},2026-11-01,1", i / n, i / n)
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    deliver(&p, 1, &refs);
    p.lake(&["run", "--full-refresh"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from staging.items"), n as i64);
    assert_eq!(p.sql_count("select count(distinct id) from staging.items"), n as i64);
    assert_eq!(p.sql_count("select count(*) from staging.items where name = 'v1' and version = 1"), n as i64);
}

#[test]
fn merged_rows_are_written_in_key_order_so_a_narrow_merge_rewrites_few_files() {
    // 200,000 rows arrive in scrambled key order with incompressible payloads; files roll at
    // 1 MiB. Written in key order, each file holds a narrow id range: updating ten neighbouring
    // ids then reads and rewrites one or two files, not all of them.
    let p = project(
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', watermark='batch') }}\n\
         select id, name, batch from {{ source('raw', 'items') }}\n{% if is_incremental() %}where batch > {{ watermark }}{% endif %}\n",
    );
    p.write("lake.toml", "name = \"test\"\n[write]\ntarget_file_size_mb = 1\n");
    let n: u64 = 200_000;
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^ (z >> 27)
    };
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let id = i * 7919 % n;
            format!("{id},eu,{:016x}{:016x},1,1,2026-11-01,1", mix(id), mix(id + n))
        })
        .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    deliver(&p, 1, &refs);
    p.lake(&["run"]).assert_ok();
    let total = data_files(&p, "staging", "items").len();
    assert!(total >= 3, "expected several files, got {total}");

    let updates: Vec<String> = (100..110).map(|id| format!("{id},eu,updated,2,2,2026-11-02,2")).collect();
    let refs: Vec<&str> = updates.iter().map(String::as_str).collect();
    deliver(&p, 2, &refs);
    p.lake(&["run"]).assert_ok();
    let rewritten = model_result(&p, "items")["files_rewritten"].as_u64().unwrap();
    assert!(rewritten >= 1 && rewritten <= 2, "rewrote {rewritten} of {total} files");
    // The bytes of the rewritten files: more than nothing, less than the whole table.
    let bytes = model_result(&p, "items")["bytes_rewritten"].as_u64().unwrap();
    let table_bytes: u64 = data_files(&p, "staging", "items").iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).sum();
    assert!(bytes > 0 && bytes < table_bytes, "rewrote {bytes} bytes of a {table_bytes}-byte table");
    assert_eq!(p.sql_count("select count(*) from staging.items"), n as i64);
    assert_eq!(p.sql_count("select count(*) from staging.items where name = 'updated'"), 10);
}
