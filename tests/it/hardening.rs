//! Hostile and careless input: SQL that tries to write, secrets in settings, a corrupt table,
//! and the small things a demanding user trips over. Each test is named after what went wrong.

use crate::support::TestProject;

const EXIT_USAGE: i32 = 2;
const EXIT_ENVIRONMENT: i32 = 3;

/// A project with one seed table `raw.orders` (2 rows), loaded.
fn seeded() -> TestProject {
    let p = TestProject::with_orders_seed();
    p.lake(&["seed"]).assert_ok();
    p
}

#[test]
fn lake_sql_refuses_statements_that_write_and_leaves_the_catalog_intact() {
    let p = seeded();
    let catalog = p.path().join(".lake/catalog.db");
    let before = std::fs::read(&catalog).unwrap();
    let outside = p.path().join("leak.csv");
    let copy_to_catalog = format!("COPY (SELECT 1 AS x) TO '{}' STORED AS CSV", catalog.display());
    let copy_out = format!("COPY (SELECT * FROM raw.orders) TO '{}' STORED AS CSV", outside.display());
    let explain_copy = format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{}' STORED AS CSV", outside.display());
    let external = format!("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}'", outside.display());
    for statement in [
        copy_to_catalog.as_str(),
        copy_out.as_str(),
        explain_copy.as_str(),
        external.as_str(),
        "CREATE TABLE t AS SELECT 1 AS x",
        "DROP TABLE raw.orders",
        "INSERT INTO raw.orders VALUES (3, 1.0)",
        "SELECT * INTO t2 FROM raw.orders",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let out = p.lake(&["sql", statement]);
        assert_eq!(out.code, EXIT_USAGE, "{statement}: {}", out.all());
        assert!(
            out.stderr.contains("read-only queries"),
            "{statement}: the error should say only read-only queries run: {}",
            out.stderr
        );
    }
    assert!(!outside.exists(), "a refused COPY wrote {}", outside.display());
    assert_eq!(std::fs::read(&catalog).unwrap(), before, "the catalog database changed");
    assert_eq!(p.sql_count("select count(*) from raw.orders"), 2);
    // Reads of every kind still work.
    for query in [
        "SELECT count(*) FROM raw.orders",
        "WITH o AS (SELECT * FROM raw.orders) SELECT sum(amount) FROM o",
        "VALUES (1, 'a')",
        "EXPLAIN SELECT * FROM raw.orders",
    ] {
        p.lake(&["sql", query]).assert_ok();
    }
}

#[test]
fn model_sql_that_writes_a_file_fails_with_exit_2_and_writes_nothing() {
    let p = seeded();
    let leak = p.path().join("model_leak.csv");
    p.write(
        "models/staging/leaky.sql",
        &format!("COPY (SELECT * FROM {{{{ source('raw', 'orders') }}}}) TO '{}' STORED AS CSV\n", leak.display()),
    );
    let out = p.lake(&["run"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.all().contains("COPY is not allowed"), "{}", out.all());
    assert!(out.all().contains("models/staging/leaky.sql"), "{}", out.all());
    assert!(!leak.exists(), "the model wrote {}", leak.display());
    let results = p.run_results();
    assert_eq!(results["results"][0]["error_kind"], "usage", "{results}");
}

#[test]
fn lake_sql_out_writes_result_files_but_never_inside_the_lakehouse() {
    let p = seeded();
    let query = "select id, amount from raw.orders order by id";
    p.lake(&["sql", query, "--out", "result.csv"]).assert_ok();
    assert_eq!(std::fs::read_to_string(p.path().join("result.csv")).unwrap(), "id,amount\n1,10.5\n2,3.0\n");
    p.lake(&["sql", query, "--out", "result.json"]).assert_ok();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("result.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().map(|a| a.len()), Some(2), "{json}");
    p.lake(&["sql", query, "--out", "result.parquet"]).assert_ok();
    let rows = std::process::Command::new("python3")
        .args(["-c", "import sys, pyarrow.parquet as pq; print(pq.read_table(sys.argv[1]).num_rows)"])
        .arg(p.path().join("result.parquet"))
        .output()
        .expect("python3 with pyarrow (installed by .ci/run)");
    assert_eq!(String::from_utf8_lossy(&rows.stdout).trim(), "2", "{}", String::from_utf8_lossy(&rows.stderr));

    let catalog = p.path().join(".lake/catalog.db");
    let before = std::fs::read(&catalog).unwrap();
    for target in [".lake/catalog.db", ".lake/catalog.db-wal", ".lake/warehouse/raw/orders/data/x.parquet"] {
        let out = p.lake(&["sql", query, "--out", target, "--format", "csv"]);
        assert_eq!(out.code, EXIT_USAGE, "--out {target}: {}", out.all());
        assert!(out.stderr.contains("refusing to write inside the lakehouse"), "{}", out.stderr);
    }
    assert_eq!(std::fs::read(&catalog).unwrap(), before);
    assert!(!p.path().join(".lake/warehouse/raw/orders/data/x.parquet").exists());
    let out = p.lake(&["sql", query, "--out", "result.txt"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
}

#[test]
fn empty_results_print_one_empty_array_or_a_header() {
    let p = seeded();
    let out = p.lake(&["sql", "select id, amount from raw.orders where id > 100", "--format", "json"]);
    out.assert_ok();
    assert_eq!(out.stdout, "[]\n");
    let out = p.lake(&["sql", "select id, amount from raw.orders where id > 100", "--format", "csv"]);
    out.assert_ok();
    assert_eq!(out.stdout, "id,amount\n");
}

#[test]
fn one_corrupt_table_fails_only_the_queries_that_read_it() {
    let p = seeded();
    p.write("seeds/customers.csv", "id,name\n1,Ann\n");
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: orders\n    config:\n      column_types: {id: bigint, amount: double}\n  - name: customers\n    config:\n      column_types: {id: bigint, name: varchar}\n",
    );
    p.lake(&["seed"]).assert_ok();
    let metadata = p.show("raw.customers")["metadata_location"].as_str().unwrap().to_string();
    let path = metadata.strip_prefix("file://").unwrap_or(&metadata).to_string();
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();

    assert_eq!(p.sql_count("select count(*) from raw.orders"), 2);
    let out = p.lake(&["sql", "select count(*) from raw.customers"]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("raw.customers"), "the error should name the table: {}", out.stderr);
}

#[test]
fn passwords_in_catalog_uris_are_never_printed() {
    let p = TestProject::new();
    // A password with '@' in it, and one as a query parameter; nothing listens on port 1.
    for (uri, secrets) in [
        ("postgres://lake:p@ss@w0rd@127.0.0.1:1/lake", vec!["p@ss@w0rd", "ss@w0rd", "w0rd"]),
        ("postgres://127.0.0.1:1/lake?user=lake&password=hunter22secret", vec!["hunter22secret"]),
    ] {
        p.write("lake.toml", &format!("name = \"t\"\n[catalog]\nuri = \"{uri}\"\n"));
        let out = p.lake(&["sql", "select 1"]);
        assert_eq!(out.code, EXIT_ENVIRONMENT, "{}", out.all());
        for s in secrets {
            assert!(!out.all().contains(s), "{s} printed: {}", out.all());
        }
        assert!(out.stderr.contains("catalog.uri"), "should name the setting: {}", out.stderr);
        let out = p.lake(&["sql", "select 1", "--log-format", "json"]);
        assert!(!out.all().contains("w0rd") && !out.all().contains("hunter22"), "{}", out.all());
    }
}

#[test]
fn excluding_everything_or_nothing_that_exists_is_a_usage_error() {
    let p = seeded();
    p.write("models/staging/stg.sql", "select * from {{ source('raw', 'orders') }}\n");
    let out = p.lake(&["run", "--exclude", "*"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    let out = p.lake(&["run", "--exclude", "stg_typo"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("did you mean 'stg'"), "{}", out.stderr);
    // Named as the --exclude term it is, not mistaken for a --select one.
    assert!(out.stderr.contains("error: --exclude selector 'stg_typo' matched no model"), "{}", out.stderr);
}

#[test]
fn show_of_a_missing_table_is_a_usage_error_with_a_suggestion() {
    let p = seeded();
    let out = p.lake(&["show", "raw.ordrs"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.all());
    assert!(out.stderr.contains("did you mean 'raw.orders'"), "{}", out.stderr);
}
