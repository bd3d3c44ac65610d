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

/// A project of `n` SQL models: model i reads model i-1 and model i/3, every 10th (from 5) is
/// incremental, every 50th (from 25) ephemeral, and each calls one of 20 macros.
fn generated(n: usize) -> TestProject {
    let p = TestProject::new();
    for k in 0..5 {
        let macros: String = (0..4).map(|j| format!("{{% macro plus_{k}_{j}(col) %}}{{{{ col }}}} + {j}{{% endmacro %}}\n")).collect();
        p.write(&format!("macros/m{k}.sql"), &macros);
    }
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: events\n");
    for i in 0..n {
        let layer = if i < n / 2 { "staging" } else { "marts" };
        let body = if i == 0 {
            "select 1 as id, 0 as v, 0 as seq from {{ source('raw', 'events') }}".to_string()
        } else {
            let parents: std::collections::BTreeSet<usize> = [i - 1, i / 3].into();
            let refs: Vec<String> = parents
                .iter()
                .map(|p| format!("select id, {{{{ plus_{}_{}('v') }}}} as v, seq from {{{{ ref('m{p:05}') }}}}", i % 5, i % 4))
                .collect();
            refs.join("\nunion all\n")
        };
        let text = match i {
            _ if i % 50 == 25 => format!("{{{{ config(materialized='ephemeral') }}}}\n{body}\n"),
            _ if i % 10 == 5 => format!(
                "{{{{ config(materialized='incremental', watermark='seq') }}}}\nselect * from (\n{body}\n) t\n\
                 {{% if is_incremental() %}}where seq > {{{{ watermark }}}}{{% endif %}}\n"
            ),
            _ => format!("{body}\n"),
        };
        p.write(&format!("models/{layer}/m{i:05}.sql"), &text);
    }
    p
}

#[test]
fn compile_renders_every_model_of_a_generated_thousand_model_project() {
    let n = 1000;
    let p = generated(n);
    let out = p.lake(&["compile"]);
    out.assert_ok();
    let listed: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(listed.len(), n, "every model: {}", out.all());
    let layer = |i: usize| if i < n / 2 { "staging" } else { "marts" };
    let compiled = |i: usize| std::fs::read_to_string(p.path().join(format!("target/compiled/models/{}/m{i:05}.sql", layer(i)))).unwrap();
    for i in 0..n {
        let sql = compiled(i);
        assert!(!sql.contains("{{") && !sql.contains("{%"), "m{i:05} is not fully rendered: {sql}");
        for parent in [i.saturating_sub(1), i / 3].into_iter().filter(|&p| p != i) {
            let relation = if parent % 50 == 25 { format!("__lake_ephemeral_m{parent:05}") } else { format!("\"{}\".\"m{parent:05}\"", layer(parent)) };
            assert!(sql.contains(&relation), "m{i:05} must read {relation}: {sql}");
        }
        // Each model's own macro, whatever the models rendered before it.
        assert!(i == 0 || sql.contains(&format!("v + {} as v", i % 4)), "m{i:05}: {sql}");
        if i % 10 == 5 && i % 50 != 25 {
            assert!(sql.trim_end().ends_with(") t"), "a first run of m{i:05} has no watermark filter: {sql}");
        }
    }
    assert_eq!(compiled(999), "select id, v + 3 as v, seq from \"staging\".\"m00333\"\nunion all\nselect id, v + 3 as v, seq from \"marts\".\"m00998\"\n");
    assert_eq!(
        compiled(26),
        "WITH __lake_ephemeral_m00025 AS (\n\nselect id, v + 1 as v, seq from \"staging\".\"m00008\"\nunion all\n\
         select id, v + 1 as v, seq from \"staging\".\"m00024\"\n)\nselect id, v + 2 as v, seq from \"staging\".\"m00008\"\n\
         union all\nselect id, v + 2 as v, seq from __lake_ephemeral_m00025"
    );
    // A second compile after one model changed: that file follows, the others stay.
    p.write("models/marts/m00999.sql", "select id from {{ ref('m00998') }}\n");
    p.lake(&["compile"]).assert_ok();
    assert_eq!(compiled(999), "select id from \"marts\".\"m00998\"\n");
    assert!(compiled(998).contains("\"marts\".\"m00997\""));
}
