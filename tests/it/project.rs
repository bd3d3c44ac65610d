//! The project layer: `lake.toml` (keys, types, sections, secrets), YAML property files,
//! templates as dbt users write them, and `lake compile` showing exactly what a run executes.

use crate::support::TestProject;

const EXIT_USAGE: i32 = 2;

fn seeded() -> TestProject {
    let p = TestProject::with_orders_seed();
    p.lake(&["seed"]).assert_ok();
    p
}

#[test]
fn values_from_the_environment_are_never_echoed_in_config_errors() {
    let p = TestProject::new();
    let secret = "s3cr3t-value-from-env";
    p.write("lake.toml", "name = \"t\"\n[write]\ncompression = \"${S3_SECRET}\"\n");
    let out = p.lake_env(&["ls"], &[("S3_SECRET", secret)]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("write.compression"), "{}", out.stderr);
    assert!(!out.all().contains(secret), "{}", out.all());

    // A wrong type from the environment: the key is named, the value is not.
    p.write("lake.toml", "name = \"t\"\n[storage]\n\"s3.region\" = \"x\"\n[run]\nthreads = \"${S3_SECRET}\"\n");
    let out = p.lake_env(&["ls"], &[("S3_SECRET", secret)]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("run.threads"), "{}", out.stderr);
    assert!(!out.all().contains(secret), "{}", out.all());

    // A TOML syntax error names the line, not its text.
    p.write("lake.toml", "name = \"t\"\n[catalog]\ntoken = \"abc-very-secret-token\n");
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("line 3"), "{}", out.stderr);
    assert!(!out.all().contains("very-secret"), "{}", out.all());
}

#[test]
fn config_errors_name_the_key_and_its_section() {
    let p = TestProject::new();
    p.write("lake.toml", "name = \"t\"\n[run]\nthreads = \"four\"\n");
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("run.threads"), "{}", out.stderr);

    p.write(
        "lake.toml",
        "name = \"t\"\n[ingest.orders]\nfrom = \"in/*.ndjson\"\ntable = \"raw.orders\"\nbatch_rowz = 5\n",
    );
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("ingest.orders"), "should name the source: {}", out.stderr);
    assert!(out.stderr.contains("batch_rowz"), "{}", out.stderr);
}

#[test]
fn unknown_keys_under_a_data_test_config_are_errors() {
    let p = seeded();
    p.write("models/staging/stg.sql", "select * from {{ source('raw', 'orders') }}\n");
    p.write(
        "models/staging/stg.yml",
        "models:\n  - name: stg\n    columns:\n      - name: id\n        data_tests:\n          - unique:\n              config:\n                severity: warn\n                sevrity: error\n",
    );
    let out = p.lake(&["ls"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("sevrity"), "{}", out.stderr);
    assert!(out.stderr.contains("models/staging/stg.yml"), "{}", out.stderr);
}

#[test]
fn templates_render_vars_env_vars_target_and_config() {
    let p = seeded();
    p.write(
        "lake.toml",
        "name = \"test\"\n[vars]\nmin_amount = 5\n[targets.ci]\nvars = { min_amount = 1 }\n",
    );
    p.write(
        "models/staging/big.sql",
        "{{ config(materialized='table', tags=['t1']) }}\n\
         select id, '{{ env_var('LAKE_TEST_REGION', 'eu') }}' as region, '{{ target.name }}' as target\n\
         from {{ source('raw', 'orders') }} where amount >= {{ var('min_amount') }}\n",
    );
    p.lake_env(&["run"], &[("LAKE_TEST_REGION", "us")]).assert_ok();
    assert_eq!(p.sql_rows("select id, region, target from staging.big"), vec![vec!["1".to_string(), "us".into(), "default".into()]]);
    p.lake(&["run", "--target", "ci"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from staging.big where region = 'eu' and target = 'ci'"), 2);
    let out = p.lake(&["ls", "--select", "tag:t1"]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "staging.big");

    // An undefined variable names the file and the variable.
    p.write("models/staging/big.sql", "select {{ var('nope') }} as x\n");
    let out = p.lake(&["run"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("models/staging/big.sql") && out.stderr.contains("nope"), "{}", out.stderr);
}

#[test]
fn compile_renders_the_watermark_exactly_as_run_executes_it() {
    // `lake compile` once rendered the stored watermark without `lookback` and without
    // checking that it tracks the configured column; a run did both.
    let p = seeded();
    p.write(
        "models/staging/recent.sql",
        "{{ config(materialized='incremental', watermark='id', lookback='1') }}\n\
         select id, amount from {{ source('raw', 'orders') }}\n\
         {% if is_incremental() %}where id > {{ watermark }}{% endif %}\n",
    );
    p.lake(&["run"]).assert_ok();
    p.lake(&["compile"]).assert_ok();
    let compiled = std::fs::read_to_string(p.path().join("target/compiled/models/staging/recent.sql")).unwrap();
    assert!(compiled.contains("where id > (2 - 1)"), "compile must apply the lookback: {compiled}");

    // The watermark now tracks another column: the stored one no longer applies, in a run
    // and in compile alike.
    p.write(
        "models/staging/recent.sql",
        "{{ config(materialized='incremental', watermark='amount') }}\n\
         select id, amount from {{ source('raw', 'orders') }}\n\
         {% if is_incremental() %}where amount > {{ watermark }}{% endif %}\n",
    );
    p.lake(&["compile"]).assert_ok();
    let compiled = std::fs::read_to_string(p.path().join("target/compiled/models/staging/recent.sql")).unwrap();
    assert!(compiled.contains("where amount > NULL"), "{compiled}");
}
