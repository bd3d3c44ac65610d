//! Error cases: each names what is wrong and where, and exits with the documented code.

use crate::support::TestProject;

const EXIT_FAILED: i32 = 1;
const EXIT_USAGE: i32 = 2;

fn seeded_project() -> TestProject {
    TestProject::with_orders_seed()
}

#[test]
fn cycle_prints_the_cycle_path() {
    let p = TestProject::new();
    p.write("models/staging/a.sql", "select * from {{ ref('b') }}\n");
    p.write("models/staging/b.sql", "select * from {{ ref('a') }}\n");
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    let err = out.stderr;
    assert!(err.contains("cycle"), "{err}");
    assert!(
        err.contains("staging.a -> staging.b -> staging.a") || err.contains("staging.b -> staging.a -> staging.b"),
        "{err}"
    );
}

#[test]
fn unknown_ref_names_file_line_and_suggests() {
    let p = TestProject::new();
    p.write("models/staging/stg_orders.sql", "select 1 as id\n");
    p.write("models/marts/totals.sql", "-- totals\nselect count(*) as n\nfrom {{ ref('stg_ordrs') }}\n");
    let out = p.lake(&["run"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("models/marts/totals.sql:3"), "{}", out.stderr);
    assert!(out.stderr.contains("stg_ordrs"), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean 'stg_orders'"), "{}", out.stderr);
}

#[test]
fn layer_back_edge_is_an_error_unless_allowed() {
    let p = TestProject::new();
    p.write("models/marts/m.sql", "select 1 as id\n");
    p.write("models/staging/s.sql", "select * from {{ ref('m') }}\n");
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("models/staging/s.sql:1"), "{}", out.stderr);
    assert!(out.stderr.contains("later layer"), "{}", out.stderr);

    p.write(
        "models/staging/s.sql",
        "{{ config(allow_back_edges=true) }}\nselect * from {{ ref('m') }}\n",
    );
    p.lake(&["ls"]).assert_ok();
}

#[test]
fn bad_lake_toml_key_is_named() {
    let p = TestProject::new();
    p.write("lake.toml", "name = \"t\"\n[catalog]\ntype = \"sql\"\nurl = \"sqlite:x.db\"\n");
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("lake.toml"), "{}", out.stderr);
    assert!(out.stderr.contains("url"), "{}", out.stderr);

    p.write("lake.toml", "name = \"t\"\n[catalog]\ntype = \"mysql\"\n");
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("mysql"), "{}", out.stderr);

    p.write("lake.toml", "name = \"t\"\n[catalog]\nuri = \"postgres://u:${LAKE_TEST_UNSET_SECRET}@h/db\"\n");
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("catalog.uri"), "{}", out.stderr);
    assert!(out.stderr.contains("LAKE_TEST_UNSET_SECRET"), "{}", out.stderr);
}

#[test]
fn sql_error_names_model_and_file() {
    let p = seeded_project();
    p.write(
        "models/staging/broken.sql",
        "select id, no_such_column from {{ source('raw', 'orders') }}\n",
    );
    p.write("models/staging/fine.sql", "select id from {{ source('raw', 'orders') }}\n");
    p.write("models/marts/downstream.sql", "select * from {{ ref('broken') }}\n");
    p.lake(&["seed"]).assert_ok();
    let out = p.lake(&["run"]);
    assert_eq!(out.code, EXIT_FAILED, "{}", out.all());
    let all = out.all();
    assert!(all.contains("staging.broken"), "{all}");
    assert!(all.contains("models/staging/broken.sql"), "{all}");
    assert!(all.contains("no_such_column"), "{all}");
    // The failure skips its descendant; the independent model still runs.
    let results = p.run_results();
    let status = |name: &str| {
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("broken").as_deref(), Some("error"));
    assert_eq!(status("downstream").as_deref(), Some("skipped"));
    assert_eq!(status("fine").as_deref(), Some("success"));
    assert_eq!(p.sql_count("select count(*) from staging.fine"), 2);
}

#[test]
fn selection_matching_nothing_names_the_selector() {
    let p = TestProject::new();
    p.write("models/staging/stg_orders.sql", "select 1 as id\n");
    let out = p.lake(&["run", "--select", "stg_ordrs"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("'stg_ordrs'"), "{}", out.stderr);
    assert!(out.stderr.contains("matched no model"), "{}", out.stderr);
}

#[test]
fn template_error_names_file_and_line() {
    let p = TestProject::new();
    p.write("models/staging/x.sql", "select 1 as id\n{{ var('missing_var') }}\n");
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("models/staging/x.sql:2"), "{}", out.stderr);
    assert!(out.stderr.contains("missing_var"), "{}", out.stderr);
}

#[test]
fn unknown_model_config_key_is_named() {
    let p = TestProject::new();
    p.write("models/staging/x.sql", "{{ config(materialised='table') }}\nselect 1 as id\n");
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("materialised"), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean 'materialized'"), "{}", out.stderr);
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `lake sql ... | head -c 20`: the reader goes away long before the output (far more than
    // a pipe buffer) is written; lake must not panic.
    let p = crate::support::TestProject::new();
    let script = format!(
        "'{}' sql 'select * from range(300000)' --format csv | head -c 20 >/dev/null",
        crate::support::lake_bin().display()
    );
    for _ in 0..3 {
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("set -o pipefail; {script}; echo \"status=$?\" >&2")])
            .current_dir(p.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains("status=0") || stderr.contains("status=141"), "{stderr}");
    }
}
