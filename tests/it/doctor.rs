//! `lake doctor` on real catalogs and stores (SQLite + a local folder, Postgres + moto S3, a
//! read-only warehouse, a V0 catalog, a missing metadata file), and the clear failures of
//! every command: a wrong Postgres password, a closed catalog port (Postgres and REST), a
//! missing bucket, a JdbcCatalog V0 schema, a wrong REST token. Each: exit code 3, one line
//! naming the setting to fix, and the secret never printed.

use std::process::Command;

use serde_json::Value;

use crate::faults::Tmpfs;
use crate::support::postgres::PgServer;
use crate::support::rustberg::Rustberg;
use crate::support::s3::{Moto, free_port};
use crate::support::{Output, TestProject};

const EXIT_ENVIRONMENT: i32 = 3;
/// A distinctive secret: no output may contain it (nor its tail).
const SECRET: &str = "doctor-secret-Qx7v9-never-printed";

/// Run `lake` with `SECRET` in the environment as `LAKE_SECRET`; the secret must not appear.
fn lake(p: &TestProject, args: &[&str]) -> Output {
    let out = p.lake_env(args, &[("LAKE_SECRET", SECRET)]);
    assert!(!out.all().contains(SECRET) && !out.all().contains("Qx7v9"), "the secret was printed:\n{}", out.all());
    out
}

/// `lake doctor --log-format json`: the exit code and the checks by name.
fn doctor(p: &TestProject) -> (i32, Vec<Value>, Output) {
    let out = lake(p, &["doctor", "--log-format", "json"]);
    let checks = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", out.all())))
        .collect::<Vec<_>>();
    for c in &checks {
        assert_eq!(c["event"], "doctor_check", "{c}");
    }
    (out.code, checks, out)
}

#[track_caller]
fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#?}"))
}

#[track_caller]
fn assert_status(checks: &[Value], name: &str, status: &str) {
    let c = check(checks, name);
    assert_eq!(c["status"], status, "{name}: {c}");
}

/// Exit 3, stderr one line containing every needle.
#[track_caller]
fn assert_one_line_failure(out: &Output, needles: &[&str]) {
    assert_eq!(out.code, EXIT_ENVIRONMENT, "expected exit 3:\n{}", out.all());
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "stderr should be one line, got:\n{}", out.stderr);
    for needle in needles {
        assert!(lines[0].contains(needle), "expected '{needle}' in:\n{}", lines[0]);
    }
}

/// The JdbcCatalog V0 `iceberg_tables` (no `iceberg_type`), as Iceberg's JdbcUtil created it.
const V0_TABLE: &str = "CREATE TABLE iceberg_tables (catalog_name VARCHAR(255) NOT NULL, \
     table_namespace VARCHAR(255) NOT NULL, table_name VARCHAR(255) NOT NULL, metadata_location VARCHAR(1000), \
     previous_metadata_location VARCHAR(1000), PRIMARY KEY (catalog_name, table_namespace, table_name))";
const MIGRATION: &str = "ALTER TABLE iceberg_tables ADD COLUMN iceberg_type VARCHAR(5)";

fn sqlite(db: &std::path::Path, sql: &str) {
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let script = format!("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute(sys.argv[2])\nc.commit()\n");
    let status = Command::new("python3").args(["-c", &script]).arg(db).arg(sql).status().unwrap();
    assert!(status.success(), "sqlite: {sql}");
}

#[test]
fn doctor_on_sqlite_and_a_local_folder_passes_every_check_and_leaves_nothing_behind() {
    let p = TestProject::with_orders_seed();
    lake(&p, &["seed"]).assert_ok();
    let (code, checks, out) = doctor(&p);
    assert_eq!(code, 0, "{}", out.all());
    for name in ["catalog", "catalog_schema", "warehouse", "clock", "table raw.orders"] {
        assert_status(&checks, name, "ok");
    }
    assert!(check(&checks, "catalog_schema")["message"].as_str().unwrap().contains("V1"));
    // The probe object and its folder are gone.
    assert!(!p.path().join(".lake/warehouse/.lake-doctor").exists());

    let text = lake(&p, &["doctor"]);
    text.assert_ok();
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), checks.len(), "one line per check:\n{}", text.stdout);
    assert!(lines.iter().all(|l| l.split_whitespace().nth(1) == Some("ok") || l.contains("table raw.orders")), "{}", text.stdout);
}

#[test]
fn doctor_on_a_read_only_warehouse_fails_the_write_check_with_exit_3() {
    let p = TestProject::with_orders_seed();
    let fs = Tmpfs::mount(&p.path().join(".lake/warehouse"), "16m");
    lake(&p, &["seed"]).assert_ok();
    fs.remount("ro");
    let (code, checks, out) = doctor(&p);
    assert_eq!(code, EXIT_ENVIRONMENT, "{}", out.all());
    assert_status(&checks, "catalog", "ok");
    assert_status(&checks, "warehouse", "fail");
    let message = check(&checks, "warehouse")["message"].as_str().unwrap();
    assert!(message.contains("read-only") && message.contains("catalog.warehouse"), "{message}");
    assert_status(&checks, "clock", "skipped");
    // Reading still works: the table's metadata is fine.
    assert_status(&checks, "table raw.orders", "ok");
    fs.remount("rw");
}

/// `lake.toml` for a Postgres catalog (password from `LAKE_SECRET`) and an S3 warehouse.
fn pg_s3_toml(pg_port: u16, s3: &str, bucket: &str) -> String {
    format!(
        "name = \"t\"\n[catalog]\nuri = \"postgres://postgres:${{LAKE_SECRET}}@127.0.0.1:{pg_port}/lake\"\n\
         warehouse = \"s3://{bucket}/wh\"\nconnect_timeout_seconds = 5\n\
         [storage]\n\"s3.endpoint\" = \"{s3}\"\n\"s3.region\" = \"us-east-1\"\n\"s3.path-style-access\" = \"true\"\n\
         \"s3.access-key-id\" = \"lakekey\"\n\"s3.secret-access-key\" = \"${{LAKE_SECRET}}\"\n"
    )
}

#[test]
fn doctor_on_postgres_and_s3_passes_and_a_wrong_password_or_missing_bucket_is_one_clear_line() {
    let pg = PgServer::start_with_password(SECRET);
    pg.psql("postgres", "CREATE DATABASE lake");
    let moto = Moto::start(0);
    moto.create_bucket("lake");
    let p = TestProject::with_orders_seed();
    p.write("lake.toml", &pg_s3_toml(pg.port, &moto.endpoint(), "lake"));
    lake(&p, &["seed"]).assert_ok();
    let (code, checks, out) = doctor(&p);
    assert_eq!(code, 0, "{}", out.all());
    for name in ["catalog", "catalog_schema", "warehouse", "clock", "table raw.orders"] {
        assert_status(&checks, name, "ok");
    }
    assert!(check(&checks, "warehouse")["message"].as_str().unwrap().contains("s3://lake/wh/.lake-doctor/"));
    assert!(check(&checks, "clock")["message"].as_str().unwrap().contains("object store"));
    moto.boto("assert 'Contents' not in s3.list_objects_v2(Bucket='lake', Prefix='wh/.lake-doctor/')");

    // (a) A wrong password: the server enforces it (SCRAM), lake names the setting.
    let wrong = format!("{SECRET}-wrong");
    p.write("lake.toml", &pg_s3_toml(pg.port, &moto.endpoint(), "lake").replace("${LAKE_SECRET}@", &format!("{wrong}@")));
    let out = lake(&p, &["seed"]);
    assert_one_line_failure(&out, &["refused access", "password", "catalog.uri"]);
    let (code, checks, _) = doctor(&p);
    assert_eq!(code, EXIT_ENVIRONMENT);
    assert_status(&checks, "catalog", "fail");
    assert!(check(&checks, "catalog")["message"].as_str().unwrap().contains("catalog.uri"));
    assert_status(&checks, "warehouse", "ok");

    // (c) A missing bucket, as lake doctor reports it (the commands' failure is in faults.rs).
    p.write("lake.toml", &pg_s3_toml(pg.port, &moto.endpoint(), "no-such-bucket"));
    let (code, checks, out) = doctor(&p);
    assert_eq!(code, EXIT_ENVIRONMENT, "{}", out.all());
    assert_status(&checks, "catalog", "ok");
    let message = check(&checks, "warehouse")["message"].as_str().unwrap();
    assert!(message.contains("no such bucket") && message.contains("catalog.warehouse"), "{message}");
}

#[test]
fn an_unreachable_catalog_is_one_line_naming_catalog_uri() {
    let p = TestProject::with_orders_seed();
    let closed = free_port();
    p.write(
        "lake.toml",
        &format!("name = \"t\"\n[catalog]\nuri = \"postgres://lake:${{LAKE_SECRET}}@127.0.0.1:{closed}/lake\"\nconnect_timeout_seconds = 5\n"),
    );
    let out = lake(&p, &["seed"]);
    assert_one_line_failure(&out, &["cannot be reached", "catalog.uri"]);
    let (code, checks, _) = doctor(&p);
    assert_eq!(code, EXIT_ENVIRONMENT);
    assert_status(&checks, "catalog", "fail");
    assert_status(&checks, "tables", "skipped");

    p.write(
        "lake.toml",
        &format!(
            "name = \"t\"\n[catalog]\ntype = \"rest\"\nuri = \"http://127.0.0.1:{closed}\"\ntoken = \"${{LAKE_SECRET}}\"\n\
             connect_timeout_seconds = 5\n"
        ),
    );
    let out = lake(&p, &["seed"]);
    assert_one_line_failure(&out, &["cannot be reached", "catalog.uri", "server is up"]);
    let (code, checks, _) = doctor(&p);
    assert_eq!(code, EXIT_ENVIRONMENT);
    assert!(check(&checks, "catalog")["message"].as_str().unwrap().contains("catalog.uri"));
}

#[test]
fn a_v0_sqlite_catalog_says_how_to_migrate_and_works_once_migrated() {
    let p = TestProject::with_orders_seed();
    let db = p.path().join(".lake/catalog.db");
    sqlite(&db, V0_TABLE);
    let out = lake(&p, &["seed"]);
    assert_one_line_failure(&out, &["V0", MIGRATION, "catalog.uri"]);
    let (code, checks, out) = doctor(&p);
    assert_eq!(code, EXIT_ENVIRONMENT, "{}", out.all());
    assert_status(&checks, "catalog", "ok");
    assert_status(&checks, "catalog_schema", "fail");
    assert!(check(&checks, "catalog_schema")["message"].as_str().unwrap().contains(MIGRATION));

    sqlite(&db, MIGRATION);
    lake(&p, &["seed"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.orders"), 2);
}

#[test]
fn a_v0_postgres_catalog_says_how_to_migrate_and_works_once_migrated() {
    let pg = PgServer::start_with_password(SECRET);
    pg.psql("postgres", "CREATE DATABASE lake");
    pg.psql("lake", V0_TABLE);
    let p = TestProject::with_orders_seed();
    p.write(
        "lake.toml",
        &format!("name = \"t\"\n[catalog]\nuri = \"postgres://postgres:${{LAKE_SECRET}}@127.0.0.1:{}/lake\"\n", pg.port),
    );
    let out = lake(&p, &["seed"]);
    assert_one_line_failure(&out, &["V0", MIGRATION, "catalog.uri"]);
    let (code, checks, _) = doctor(&p);
    assert_eq!(code, EXIT_ENVIRONMENT);
    assert_status(&checks, "catalog_schema", "fail");

    pg.psql("lake", MIGRATION);
    lake(&p, &["seed"]).assert_ok();
    let (code, checks, out) = doctor(&p);
    assert_eq!(code, 0, "{}", out.all());
    assert_status(&checks, "catalog_schema", "ok");
}

#[test]
fn doctor_names_the_table_whose_metadata_file_is_gone() {
    let p = TestProject::with_orders_seed();
    p.write("models/staging/stg_orders.sql", "select id, amount from {{ source('raw', 'orders') }}\n");
    lake(&p, &["build"]).assert_ok();
    let location = p.show("staging.stg_orders")["metadata_location"].as_str().unwrap().to_string();
    std::fs::remove_file(location.trim_start_matches("file://")).unwrap();
    let (code, checks, out) = doctor(&p);
    assert_eq!(code, EXIT_ENVIRONMENT, "{}", out.all());
    assert_status(&checks, "table raw.orders", "ok");
    assert_status(&checks, "table staging.stg_orders", "fail");
    assert!(check(&checks, "table staging.stg_orders")["message"].as_str().unwrap().contains("staging.stg_orders"));
    let text = lake(&p, &["doctor"]);
    assert!(text.stdout.lines().any(|l| l.starts_with("table staging.stg_orders") && l.contains("FAIL")), "{}", text.stdout);
}

/// `lake.toml` for a REST catalog sending `token` from `LAKE_SECRET`.
fn rest_toml(uri: &str) -> String {
    format!("name = \"t\"\n[catalog]\ntype = \"rest\"\nuri = \"{uri}\"\ntoken = \"${{LAKE_SECRET}}\"\n")
}

#[test]
fn a_rest_catalog_with_a_wrong_token_is_one_line_naming_it_and_the_right_key_works() {
    let key = format!("rb_{SECRET}");
    let server = Rustberg::start_with_api_key(&key);
    let p = TestProject::with_orders_seed();
    p.write("lake.toml", &rest_toml(&server.uri()));
    // A wrong key: 401 from the server.
    let out = p.lake_env(&["seed"], &[("LAKE_SECRET", "rb_wrong-Qx7v9-key")]);
    assert!(!out.all().contains("wrong-Qx7v9"), "{}", out.all());
    assert_one_line_failure(&out, &["refused access", "catalog.token", "wrong or has expired"]);
    let out = p.lake_env(&["doctor"], &[("LAKE_SECRET", "rb_wrong-Qx7v9-key")]);
    assert_eq!(out.code, EXIT_ENVIRONMENT, "{}", out.all());
    assert!(out.stdout.lines().any(|l| l.starts_with("catalog") && l.contains("FAIL") && l.contains("token")), "{}", out.all());
    assert!(!out.all().contains("wrong-Qx7v9"), "{}", out.all());

    // The right key, sent as the bearer token.
    let out = p.lake_env(&["seed"], &[("LAKE_SECRET", &key)]);
    assert!(!out.all().contains(SECRET), "{}", out.all());
    out.assert_ok();
    let out = p.lake_env(&["doctor", "--log-format", "json"], &[("LAKE_SECRET", &key)]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("\"table raw.orders\""), "{}", out.stdout);
}
