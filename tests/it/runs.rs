//! Running: build skips descendants of a failed test, --fail-fast, parallel threads, json logs,
//! compile output, targets and vars.

use crate::support::TestProject;

fn project() -> TestProject {
    let p = TestProject::new();
    p.write(
        "lake.toml",
        r#"name = "t"
[vars]
factor = 2
[targets.other]
vars = { factor = 10 }
"#,
    );
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: items\n    config:\n      column_types: {id: bigint, v: bigint}\n",
    );
    p.write("seeds/items.csv", "id,v\n1,10\n2,20\n2,30\n");
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: items\n");
    p.write(
        "models/staging/stg_items.sql",
        "select id, v * {{ var('factor') }} as v from {{ source('raw', 'items') }}\n",
    );
    p.write(
        "models/staging/staging.yml",
        "models:\n  - name: stg_items\n    columns:\n      - name: id\n        data_tests: [unique]\n",
    );
    p.write("models/marts/totals.sql", "select sum(v) as total from {{ ref('stg_items') }}\n");
    p.write("models/marts/other.sql", "select 1 as one\n");
    p
}

fn status(p: &TestProject, name: &str) -> String {
    p.run_results()["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .map(|r| r["status"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "absent".into())
}

#[test]
fn build_skips_descendants_of_a_failed_test() {
    let p = project();
    let out = p.lake(&["build"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(status(&p, "stg_items"), "success");
    assert_eq!(status(&p, "unique_stg_items_id"), "fail");
    assert_eq!(status(&p, "totals"), "skipped");
    assert_eq!(status(&p, "other"), "success");

    // As a warning the test no longer blocks the descendants.
    p.write(
        "models/staging/staging.yml",
        "models:\n  - name: stg_items\n    columns:\n      - name: id\n        data_tests:\n          - unique:\n              config: {severity: warn}\n",
    );
    let out = p.lake(&["build"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(status(&p, "unique_stg_items_id"), "warn");
    assert_eq!(p.sql_count("select total from marts.totals"), 120);
}

#[test]
fn fail_fast_stops_the_run() {
    let p = project();
    p.write("models/marts/other.sql", "select no_column from {{ ref('stg_items') }}\n");
    p.lake(&["seed"]).assert_ok();
    let out = p.lake(&["run", "--fail-fast", "--threads", "1"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(status(&p, "other"), "error");
    // Run order is marts.other, marts.totals (by name) after staging: totals never ran.
    assert_eq!(status(&p, "totals"), "skipped");
}

#[test]
fn json_logs_targets_and_vars() {
    let p = project();
    p.lake(&["seed"]).assert_ok();
    let out = p.lake(&["run", "--log-format", "json", "--target", "other"]);
    out.assert_ok();
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not json: {l}: {e}")))
        .collect();
    assert!(events.iter().any(|e| e["event"] == "node_finish" && e["name"] == "totals" && e["status"] == "success"));
    assert!(events.iter().any(|e| e["event"] == "summary"));
    assert_eq!(p.sql_count("select total from marts.totals"), 600);

    p.lake(&["run", "--vars", "{factor: 1}", "--select", "+totals"]).assert_ok();
    assert_eq!(p.sql_count("select total from marts.totals"), 60);

    let out = p.lake(&["run", "--target", "nope"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no target 'nope'") && out.stderr.contains("other"), "{}", out.stderr);
}

#[test]
fn parallel_run_records_input_snapshots() {
    let p = project();
    for i in 0..6 {
        p.write(&format!("models/marts/m{i}.sql"), &format!("select {i} as i, count(*) as n from {{{{ ref('stg_items') }}}}\n"));
    }
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run", "--threads", "4"]).assert_ok();
    let results = p.run_results();
    let rows = results["results"].as_array().unwrap();
    assert_eq!(rows.len(), 9);
    let stg_snapshot = rows.iter().find(|r| r["name"] == "stg_items").unwrap()["snapshot_id"].clone();
    for r in rows.iter().filter(|r| r["name"].as_str().unwrap().starts_with('m')) {
        assert_eq!(r["status"], "success");
        assert_eq!(r["input_snapshots"]["staging.stg_items"], stg_snapshot, "{r}");
    }
    let raw = results["source_snapshots"]["raw.items"].clone();
    assert!(raw.as_i64().is_some(), "{results}");
    for i in 0..6 {
        assert_eq!(p.sql_count(&format!("select n from marts.m{i}")), 3);
    }
}

#[test]
fn compile_writes_rendered_sql() {
    let p = project();
    p.write("models/staging/eph.sql", "{{ config(materialized='ephemeral') }}\nselect id from {{ ref('stg_items') }}\n");
    p.write("models/marts/uses_eph.sql", "with x as (select * from {{ ref('eph') }}) select count(*) as n from x\n");
    let out = p.lake(&["compile", "--select", "uses_eph"]);
    out.assert_ok();
    let sql = std::fs::read_to_string(p.path().join("target/compiled/models/marts/uses_eph.sql")).unwrap();
    assert!(sql.contains("__lake_ephemeral_eph AS ("), "{sql}");
    assert!(sql.contains("\"staging\".\"stg_items\""), "{sql}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("target/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["nodes"]["model.uses_eph"]["depends_on"]["nodes"][0], "model.eph");
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    assert_eq!(p.sql_count("select n from marts.uses_eph"), 3);
}

/// Regression: `lake build` ran a relationships test before the model it reads was built
/// (the demo failed when stg_order_lines' test ran before stg_orders).
#[test]
fn build_runs_a_relationships_test_after_the_model_it_reads() {
    let p = TestProject::new();
    p.write("models/staging/a_lines.sql", "select 1 as id, 10 as order_id\n");
    p.write("models/staging/b_orders.sql", "select 10 as order_id\n");
    p.write(
        "models/staging/staging.yml",
        "models:\n  - name: a_lines\n    columns:\n      - name: order_id\n        data_tests:\n          - relationships: {to: ref('b_orders'), field: order_id}\n",
    );
    let out = p.lake(&["build", "--threads", "1"]);
    out.assert_ok();
    assert!(out.stdout.contains("PASS  test   relationships_a_lines_order_id"), "{}", out.stdout);
}

#[test]
fn build_runs_source_tests_first_and_a_failing_one_skips_the_models_that_read_it() {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: orders\n    config:\n      column_types: {id: bigint, amount: double}\n  - name: refunds\n    config:\n      column_types: {id: bigint}\n",
    );
    p.write("seeds/orders.csv", "id,amount\n1,10\n1,20\n");
    p.write("seeds/refunds.csv", "id\n7\n");
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    tables:\n      - name: orders\n        columns:\n          - name: id\n            data_tests: [unique]\n      - name: refunds\n        columns:\n          - name: id\n            data_tests: [not_null]\n",
    );
    p.write("models/staging/stg_orders.sql", "select * from {{ source('raw', 'orders') }}\n");
    p.write("models/marts/order_total.sql", "select sum(amount) as total from {{ ref('stg_orders') }}\n");
    p.write("models/staging/stg_refunds.sql", "select * from {{ source('raw', 'refunds') }}\n");
    let out = p.lake(&["build"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let status = |name: &str| last_result(&p, name).0;
    assert_eq!(status("stg_orders"), "skipped");
    assert_eq!(status("order_total"), "skipped");
    assert_eq!(status("stg_refunds"), "success");
    assert!(out.all().contains("source raw.orders"), "{}", out.all());
    // Fixed data: the source test passes and the models build.
    p.write("seeds/orders.csv", "id,amount\n1,10\n2,20\n");
    p.lake(&["seed", "--full-refresh"]).assert_ok();
    p.lake(&["build"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from marts.order_total"), 1);
}

#[test]
fn a_seed_in_replace_mode_is_reloaded_in_one_overwrite_when_its_file_changes() {
    let p = TestProject::new();
    let yml = |mode: &str| {
        format!("seeds:\n  - name: rates\n    config:\n      {mode}column_types: {{currency: varchar, rate: double}}\n")
    };
    p.write("seeds/seeds.yml", &yml(""));
    p.write("seeds/rates.csv", "currency,rate\nEUR,1.1\n");
    p.lake(&["seed"]).assert_ok();
    // The default mode refuses a changed file, and says how to reload.
    p.write("seeds/rates.csv", "currency,rate\nEUR,1.2\nGBP,1.3\n");
    let out = p.lake(&["seed"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("mode: replace"), "{}", out.all());

    p.write("seeds/seeds.yml", &yml("mode: replace\n      "));
    p.lake(&["seed"]).assert_ok();
    assert_eq!(p.sql_rows("select currency, rate from raw.rates order by currency"), vec![
        vec!["EUR".to_string(), "1.2".to_string()],
        vec!["GBP".to_string(), "1.3".to_string()],
    ]);
    let snapshots = p.show("raw.rates")["snapshots"].as_array().unwrap().clone();
    assert_eq!(snapshots.len(), 2);
    assert_eq!(snapshots.last().unwrap()["operation"], "overwrite", "{snapshots:?}");
    // Unchanged files: nothing is committed.
    p.lake(&["seed"]).assert_ok();
    assert_eq!(p.show("raw.rates")["snapshots"].as_array().unwrap().len(), 2);
    // A bad mode names the setting.
    p.write("seeds/seeds.yml", &yml("mode: upsert\n      "));
    let out = p.lake(&["seed"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("mode") && out.stderr.contains("seeds/seeds.yml"), "{}", out.stderr);
}

/// Status and message of `name` in the last `target/run_results.json`.
fn last_result(p: &TestProject, name: &str) -> (String, String) {
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("target/run_results.json")).unwrap()).unwrap();
    let r = results["results"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned();
    let r = r.unwrap_or_else(|| panic!("{name} not in {results}"));
    (r["status"].as_str().unwrap().to_string(), r["message"].as_str().unwrap_or("").to_string())
}

#[test]
fn table_models_whose_inputs_and_sql_are_unchanged_are_skipped_as_up_to_date() {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: orders\n    config:\n      files: \"orders*.csv\"\n      column_types: {id: bigint, amount: double}\n  - name: fx\n    config:\n      column_types: {rate: double}\n",
    );
    p.write("seeds/orders_1.csv", "id,amount\n1,10\n2,20\n");
    p.write("seeds/fx.csv", "rate\n2\n");
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: orders\n      - name: fx\n");
    p.write("models/staging/stg_orders.sql", "select id, amount from {{ source('raw', 'orders') }}\n");
    p.write("models/marts/total.sql", "select sum(amount) as total from {{ ref('stg_orders') }}\n");
    p.write("models/marts/fx_copy.sql", "select rate from {{ source('raw', 'fx') }}\n");
    p.lake(&["build"]).assert_ok();
    let snapshots = |t: &str| p.show(t)["snapshots"].as_array().unwrap().len();

    // Nothing changed: every table model is skipped, nothing is committed.
    let out = p.lake(&["run"]);
    assert!(out.assert_ok().stdout.contains("3 up to date"), "{}", out.stdout);
    for m in ["stg_orders", "total", "fx_copy"] {
        let (status, message) = last_result(&p, m);
        assert_eq!(status, "skipped", "{m}");
        assert!(message.contains("up to date"), "{m}: {message}");
    }
    assert_eq!(snapshots("marts.total"), 1);

    // New orders: the models downstream of them run, the one reading fx stays.
    p.write("seeds/orders_2.csv", "id,amount\n3,5\n");
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    assert_eq!(last_result(&p, "stg_orders").0, "success");
    assert_eq!(last_result(&p, "total").0, "success");
    assert_eq!(last_result(&p, "fx_copy").0, "skipped");
    assert_eq!(p.sql_count("select cast(total as bigint) from marts.total"), 35);

    // Changed SQL: that model runs.
    p.write("models/marts/fx_copy.sql", "select rate * 1 as rate from {{ source('raw', 'fx') }}\n");
    p.lake(&["run"]).assert_ok();
    assert_eq!(last_result(&p, "fx_copy").0, "success");
    assert_eq!(last_result(&p, "total").0, "skipped");

    // Compaction keeps the rows: still up to date. --force and --full-refresh rebuild.
    p.lake(&["maintain"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    assert_eq!(last_result(&p, "total").0, "skipped");
    p.lake(&["run", "--force", "--select", "total"]).assert_ok();
    assert_eq!(last_result(&p, "total").0, "success");
    p.lake(&["run", "--full-refresh", "--select", "total"]).assert_ok();
    assert_eq!(last_result(&p, "total").0, "success");

    // Another writer changed the table (a rollback to the first build, whose inputs are gone):
    // the model runs and restores what its inputs say.
    let first = p.show("marts.total")["snapshots"][0]["snapshot_id"].as_i64().unwrap();
    p.lake(&["rollback", "marts.total", "--to", &first.to_string()]).assert_ok();
    assert_eq!(p.sql_count("select cast(total as bigint) from marts.total"), 30);
    p.lake(&["run"]).assert_ok();
    assert_eq!(last_result(&p, "total").0, "success");
    assert_eq!(p.sql_count("select cast(total as bigint) from marts.total"), 35);
}

#[test]
fn source_freshness_passes_warns_and_errors_by_loaded_at_field_or_last_commit() {
    let p = TestProject::new();
    let now = chrono::Utc::now();
    let at = |hours: i64| (now - chrono::Duration::hours(hours)).format("%Y-%m-%d %H:%M:%S").to_string();
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: fresh\n    config:\n      column_types: {id: bigint, loaded_at: timestamp}\n  - name: aging\n    config:\n      column_types: {id: bigint, loaded_at: timestamp}\n  - name: stale\n    config:\n      column_types: {id: bigint, loaded_at: timestamp}\n  - name: events\n    config:\n      column_types: {id: bigint}\n",
    );
    p.write("seeds/fresh.csv", &format!("id,loaded_at\n1,{}\n2,{}\n", at(30), at(1)));
    p.write("seeds/aging.csv", &format!("id,loaded_at\n1,{}\n", at(5)));
    // The newest row is filtered out: only id < 2 counts.
    p.write("seeds/stale.csv", &format!("id,loaded_at\n1,{}\n2,{}\n", at(30), at(0)));
    p.write("seeds/events.csv", "id\n1\n");
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    loaded_at_field: loaded_at\n    freshness:\n      warn_after: {count: 2, period: hour}\n      error_after: {count: 1, period: day}\n    tables:\n      - name: fresh\n      - name: aging\n      - name: stale\n        freshness:\n          error_after: {count: 12, period: hour}\n          filter: id < 2\n      - name: events\n        loaded_at_field: null\n        freshness:\n          warn_after: {count: 1, period: hour}\n      - name: unchecked\n        freshness: null\n",
    );
    p.lake(&["seed"]).assert_ok();
    let out = p.lake(&["source", "freshness"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("target/sources.json")).unwrap()).unwrap();
    let status = |t: &str| {
        doc["results"].as_array().unwrap().iter().find(|r| r["unique_id"] == format!("source.test.raw.{t}")).unwrap()
            ["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("fresh"), "pass");
    assert_eq!(status("aging"), "warn");
    assert_eq!(status("stale"), "error");
    // Without loaded_at_field: the last commit, a moment ago.
    assert_eq!(status("events"), "pass");
    assert_eq!(doc["results"].as_array().unwrap().len(), 4, "{doc}");
    assert!(out.stdout.contains("last loaded 5h"), "{}", out.stdout);

    // Warnings alone exit 0; a selection checks only what it names.
    p.lake(&["source", "freshness", "--select", "source:raw.aging"]).assert_ok();
    let out = p.lake(&["source", "freshness", "--select", "source:raw.nothing"]);
    assert_eq!(out.code, 2, "{}", out.all());
    // A bad period names the key.
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    freshness:\n      warn_after: {count: 2, period: fortnight}\n    tables:\n      - name: fresh\n",
    );
    let out = p.lake(&["source", "freshness"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("freshness.warn_after") && out.stderr.contains("fortnight"), "{}", out.stderr);
}
