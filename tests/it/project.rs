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

#[test]
fn macros_in_the_macro_path_are_callable_from_models_and_tests() {
    let p = TestProject::with_orders_seed();
    p.write(
        "macros/money.sql",
        "{% macro cents(col) %}cast(round({{ col }} * 100) as bigint){% endmacro %}\n\
         {% macro orders() %}{{ source('raw', 'orders') }}{% endmacro %}\n",
    );
    p.write("macros/sub/filters.sql", "{%- macro positive(col) -%}{{ col }} > 0{%- endmacro %}\n");
    p.write(
        "models/staging/stg_orders.sql",
        "select id, {{ cents('amount') }} as amount_cents from {{ orders() }} where {{ positive('amount') }}\n",
    );
    p.write(
        "tests/no_negative_cents.sql",
        "select * from {{ ref('stg_orders') }} where not ({{ positive('amount_cents') }})\n",
    );
    p.lake(&["build"]).assert_ok();
    assert_eq!(p.sql_rows("select id, amount_cents from staging.stg_orders order by id"), vec![
        vec!["1".to_string(), "1050".to_string()],
        vec!["2".to_string(), "300".to_string()],
    ]);
    // The macro's source() is a dependency of the model.
    p.write("models/staging/unrelated.sql", "select 1 as x\n");
    let out = p.lake(&["ls", "--select", "source:raw.orders+"]);
    assert_eq!(out.assert_ok().stdout.trim(), "staging.stg_orders");

    // An error inside a macro names the macro file and the model that called it.
    p.write("macros/sub/filters.sql", "{%- macro positive(col) -%}{{ col }} > {{ nothing.here }}{%- endmacro %}\n");
    let out = p.lake(&["run"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("macros/sub/filters.sql:1"), "{}", out.stderr);
    assert!(out.stderr.contains("models/staging/stg_orders.sql"), "{}", out.stderr);

    // Two macros with one name: an error naming both files.
    p.write("macros/sub/filters.sql", "{% macro cents(col) %}{{ col }}{% endmacro %}\n");
    let out = p.lake(&["run"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("macro `cents` is defined twice"), "{}", out.stderr);
    assert!(out.stderr.contains("macros/money.sql") && out.stderr.contains("macros/sub/filters.sql"), "{}", out.stderr);

    // macro_path moves the folder.
    p.write("lake.toml", "name = \"test\"\nmacro_path = \"jinja\"\n");
    std::fs::rename(p.path().join("macros/money.sql"), p.path().join("jinja_money.sql")).unwrap();
    std::fs::remove_dir_all(p.path().join("macros")).unwrap();
    std::fs::create_dir_all(p.path().join("jinja")).unwrap();
    std::fs::rename(p.path().join("jinja_money.sql"), p.path().join("jinja/money.sql")).unwrap();
    p.write("jinja/filters.sql", "{%- macro positive(col) -%}{{ col }} > 0{%- endmacro %}\n");
    p.lake(&["run", "--full-refresh"]).assert_ok();
}
