//! An S3-compatible warehouse (moto on loopback) for every command, with a Postgres and with a
//! SQLite catalog: seeds, model runs (table, incremental append, merge, replace_range, a new
//! column), ad-hoc ingest, `lake show`, rollback, and `lake maintain` (compaction, snapshot
//! expiry deleting the expired files from the bucket, orphan removal listing the bucket).
//! And the credentials: `[storage]`, the `AWS_*` variables and a profile, in that order, for
//! iceberg's FileIO and `lake`'s own client alike; wrong ones fail with exit 3 and one line
//! naming what to fix, without printing a secret.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::postgres::PgServer;
use crate::support::s3::Moto;
use crate::support::{Output, TestProject};

const EXIT_ENVIRONMENT: i32 = 3;

/// Seeds, models and the `[storage]` settings of a project whose warehouse is
/// `s3://lake/wh`; `catalog_uri` `None` is the default SQLite catalog.
fn project(moto: &Moto, catalog_uri: Option<&str>) -> TestProject {
    let p = TestProject::new();
    let uri = catalog_uri.map(|u| format!("uri = \"{u}\"\n")).unwrap_or_default();
    p.write(
        "lake.toml",
        &format!(
            "name = \"t\"\n[catalog]\n{uri}warehouse = \"s3://lake/wh\"\n[storage]\n\"s3.endpoint\" = \"{}\"\n\
             \"s3.region\" = \"us-east-1\"\n\"s3.access-key-id\" = \"{}\"\n\"s3.secret-access-key\" = \"{}\"\n",
            moto.endpoint(),
            moto.access_key_id,
            moto.secret_access_key
        ),
    );
    write_orders(&p, &[(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0), (5, 50.0), (6, 60.0)]);
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: orders\n    config:\n      column_types: {id: bigint, customer: varchar, amount: double}\n",
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: orders\n");
    let src = "{{ source('raw', 'orders') }}";
    p.write("models/staging/tbl.sql", &format!("select id, customer, amount from {src}\n"));
    p.write(
        "models/staging/app.sql",
        &format!(
            "{{{{ config(materialized='incremental', incremental_strategy='append', watermark='id') }}}}\n\
             select id, customer, amount from {src}\n{{% if is_incremental() %}} where id > {{{{ watermark }}}} {{% endif %}}\n"
        ),
    );
    p.write("models/staging/mrg.sql", &merge_model(false));
    p.write(
        "models/staging/rr.sql",
        &format!(
            "{{{{ config(materialized='incremental', incremental_strategy='replace_range', range_by='id') }}}}\n\
             select id, customer, amount from {src}\n{{% if is_incremental() %}} where id >= 2 {{% endif %}}\n"
        ),
    );
    p
}

fn merge_model(with_new_column: bool) -> String {
    let extra = if with_new_column { ", amount * 2 as dbl" } else { "" };
    format!(
        "{{{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', \
         on_schema_change='append_new_columns') }}}}\nselect id, customer, amount{extra} from {{{{ source('raw', 'orders') }}}}\n"
    )
}

fn write_orders(p: &TestProject, rows: &[(i64, f64)]) {
    let mut csv = String::from("id,customer,amount\n");
    for (id, amount) in rows {
        csv.push_str(&format!("{id},c{},{amount}\n", id % 3));
    }
    p.write("seeds/orders.csv", &csv);
}

/// `count(*), sum(<column>)` of a table as text.
fn count_sum(p: &TestProject, table: &str, column: &str) -> Vec<String> {
    p.sql_rows(&format!("select count(*), sum({column}) from {table}"))[0].clone()
}

fn pair(count: i64, sum: &str) -> Vec<String> {
    vec![count.to_string(), sum.to_string()]
}

/// Every command on a warehouse in moto's bucket `lake`, with the given catalog.
fn every_command(catalog_uri: Option<&str>) {
    let moto = Moto::start(0);
    moto.create_bucket("lake");
    let p = project(&moto, catalog_uri);

    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    for table in ["staging.tbl", "staging.app", "staging.mrg", "staging.rr"] {
        assert_eq!(count_sum(&p, table, "amount"), pair(6, "210.0"), "{table}");
    }
    assert!(!moto.keys("lake", "wh/staging/tbl/data/").is_empty(), "no data files in the bucket");

    // New raw data: two new orders and a changed amount.
    write_orders(&p, &[(1, 10.0), (2, 25.0), (3, 30.0), (4, 40.0), (5, 50.0), (6, 60.0), (7, 70.0), (8, 80.0)]);
    p.lake(&["seed", "--full-refresh"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    assert_eq!(count_sum(&p, "staging.tbl", "amount"), pair(8, "365.0"));
    assert_eq!(count_sum(&p, "staging.app", "amount"), pair(8, "360.0"), "append adds only ids above the watermark");
    assert_eq!(count_sum(&p, "staging.mrg", "amount"), pair(8, "365.0"));
    assert_eq!(count_sum(&p, "staging.rr", "amount"), pair(8, "365.0"));

    // A schema change: a new column, in the same commit as the merge.
    p.write("models/staging/mrg.sql", &merge_model(true));
    p.lake(&["run", "--select", "mrg"]).assert_ok();
    assert_eq!(count_sum(&p, "staging.mrg", "dbl"), pair(8, "730.0"));

    // Ad-hoc ingest of a file.
    p.write("in.ndjson", "{\"a\": 1, \"b\": \"x\"}\n{\"a\": 2, \"b\": \"y\"}\n{\"a\": 4, \"b\": \"z\"}\n");
    p.lake(&["ingest", "--from", "in.ndjson", "--table", "raw.x", "--once"]).assert_ok();
    assert_eq!(count_sum(&p, "raw.x", "a"), pair(3, "7"));

    let shown = p.show("staging.mrg");
    assert_eq!(shown["location"], "s3://lake/wh/staging/mrg", "{shown}");

    // Rollback to the first build.
    let first = first_snapshot(&p, "staging.tbl");
    p.lake(&["rollback", "staging.tbl", "--to", &first]).assert_ok();
    assert_eq!(count_sum(&p, "staging.tbl", "amount"), pair(6, "210.0"));

    maintain_and_remove_orphans(&moto, &p);
}

fn first_snapshot(p: &TestProject, table: &str) -> String {
    let out = p.lake(&["snapshots", table, "--log-format", "json"]);
    out.assert_ok();
    let first: serde_json::Value = serde_json::from_str(out.stdout.lines().next().expect("a snapshot")).unwrap();
    first["snapshot_id"].to_string()
}

/// `lake maintain` of `staging.app` (two appended files): compaction, expiry that deletes the
/// expired snapshots' files from the bucket, and orphan removal that deletes an old
/// unreferenced object and keeps a fresh one, every referenced object and any object outside
/// the table's prefix.
fn maintain_and_remove_orphans(moto: &Moto, p: &TestProject) {
    p.write(
        "models/staging/app.yml",
        "models:\n  - name: app\n    config:\n      maintenance: {expire_older_than: 0s, retain_last: 1, orphan_older_than: 8s}\n",
    );
    let old_orphan = "wh/staging/app/data/orphan-old.parquet";
    let fresh_orphan = "wh/staging/app/data/orphan-fresh.parquet";
    let beside = "wh/staging/app_beside/data/old.parquet";
    moto.put("lake", old_orphan);
    moto.put("lake", beside);
    std::thread::sleep(Duration::from_secs(10));
    moto.put("lake", fresh_orphan);
    let before: BTreeSet<String> = moto.keys("lake", "wh/").into_iter().collect();

    let out = p.lake(&["maintain", "--select", "app", "--log-format", "json"]);
    out.assert_ok();
    let event: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(event["status"], "success", "{event}");
    assert_eq!(event["compaction"]["files_before"], 2, "{event}");
    assert_eq!(event["compaction"]["files_after"], 1, "{event}");
    let deleted: BTreeSet<String> = event["expiry"]["deleted_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().strip_prefix("s3://lake/").expect("an s3 path").to_string())
        .collect();
    assert!(deleted.iter().any(|f| f.contains("/data/")), "expiry deleted no data file: {event}");
    assert_eq!(event["orphans"], serde_json::json!([format!("s3://lake/{old_orphan}")]), "{event}");

    let after: BTreeSet<String> = moto.keys("lake", "wh/").into_iter().collect();
    for key in &before {
        let gone = deleted.contains(key) || key == old_orphan;
        assert_eq!(after.contains(key), !gone, "{key}: expected {}", if gone { "deleted" } else { "kept" });
    }
    assert!(after.contains(fresh_orphan) && after.contains(beside));
    assert_eq!(count_sum(p, "staging.app", "amount"), pair(8, "360.0"));
    // Nothing else to remove (the fresh orphan only once it is older than the margin, which a
    // slow machine may reach by now), and the table reads the same after a second pass.
    let again = p.lake(&["maintain", "--select", "app", "--log-format", "json"]);
    again.assert_ok();
    let event: serde_json::Value = serde_json::from_str(again.stdout.lines().next().unwrap()).unwrap();
    let orphans = event["orphans"].as_array().unwrap();
    assert!(
        orphans.is_empty() || *orphans == vec![serde_json::json!(format!("s3://lake/{fresh_orphan}"))],
        "{event}"
    );
    assert_eq!(count_sum(p, "staging.app", "amount"), pair(8, "360.0"));
}

#[test]
fn every_command_works_on_postgres_with_an_s3_warehouse() {
    let pg = PgServer::start();
    let url = pg.database("s3wh");
    every_command(Some(&url));
}

#[test]
fn every_command_works_on_sqlite_with_an_s3_warehouse() {
    every_command(None);
}

// --- credentials -------------------------------------------------------------------------

const WRONG_SECRET: &str = "wrong-secret-never-printed";

/// A project on an authenticating moto whose `[storage]` has the endpoint and `extra`; the
/// shared AWS files live in `aws/` of the project (never the machine's `~/.aws`).
fn auth_project(moto: &Moto, extra: &str) -> TestProject {
    let p = project(moto, None);
    p.write(
        "lake.toml",
        &format!("name = \"t\"\n[catalog]\nwarehouse = \"s3://lake/wh\"\n[storage]\n\"s3.endpoint\" = \"{}\"\n{extra}", moto.endpoint()),
    );
    p
}

/// `lake` with only the `AWS_*` variables given in `env` (the others empty, the shared files
/// in the project's `aws/`); asserts no secret is printed.
fn lake_aws(p: &TestProject, moto: &Moto, args: &[&str], env: &[(&str, &str)]) -> Output {
    let credentials = p.path().join("aws/credentials").display().to_string();
    let config = p.path().join("aws/config").display().to_string();
    let mut all: Vec<(&str, &str)> = vec![
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_SESSION_TOKEN", ""),
        ("AWS_PROFILE", ""),
        ("AWS_REGION", ""),
        ("AWS_ENDPOINT_URL", ""),
        ("AWS_SHARED_CREDENTIALS_FILE", &credentials),
        ("AWS_CONFIG_FILE", &config),
    ];
    all.extend_from_slice(env);
    let out = p.lake_env(args, &all);
    for secret in [WRONG_SECRET, moto.secret_access_key.as_str()] {
        assert!(!out.all().contains(secret), "a secret was printed:\n{}", out.all());
    }
    out
}

#[track_caller]
fn assert_refused(out: &Output, needle: &str) {
    assert_eq!(out.code, EXIT_ENVIRONMENT, "expected exit 3:\n{}", out.all());
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line:\n{}", out.stderr);
    assert!(lines[0].contains("refused access") && lines[0].contains(needle), "expected '{needle}' in:\n{}", lines[0]);
    assert!(lines[0].contains("(SignatureDoesNotMatch: "), "the store's own words: {}", lines[0]);
}

fn sql_env(p: &TestProject, moto: &Moto, query: &str, env: &[(&str, &str)]) -> String {
    let out = lake_aws(p, moto, &["sql", query, "--format", "csv"], env);
    out.assert_ok();
    out.stdout.lines().nth(1).unwrap_or_default().to_string()
}

#[test]
fn a_wrong_secret_in_lake_toml_fails_naming_it_and_profile_credentials_work() {
    let moto = Moto::start_with_auth();
    moto.create_bucket("lake");
    let id = moto.access_key_id.clone();
    let good = format!("aws_access_key_id = {id}\naws_secret_access_key = {}\n", moto.secret_access_key);
    let bad = format!("aws_access_key_id = {id}\naws_secret_access_key = {WRONG_SECRET}\n");
    let p = auth_project(&moto, &format!("\"s3.access-key-id\" = \"{id}\"\n\"s3.secret-access-key\" = \"${{S3_SECRET}}\"\n"));
    p.write("aws/credentials", &format!("[default]\n{good}\n[lakeprof]\n{good}\n[badprof]\n{bad}"));

    // lake.toml wins over a profile with the right keys.
    let out = lake_aws(&p, &moto, &["build"], &[("S3_SECRET", WRONG_SECRET)]);
    assert_refused(&out, "[storage] \"s3.access-key-id\" and \"s3.secret-access-key\" in lake.toml");

    // A profile lake.toml names must exist.
    let p = auth_project(&moto, "\"s3.profile\" = \"nope\"\n");
    p.write("aws/credentials", &format!("[default]\n{good}"));
    let out = lake_aws(&p, &moto, &["build"], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("\"s3.profile\" = \"nope\": no such profile"), "{}", out.stderr);

    // The profile named in lake.toml: iceberg's FileIO and lake's own client both use it.
    let p = auth_project(&moto, "\"s3.profile\" = \"lakeprof\"\n");
    p.write("aws/credentials", &format!("[default]\n{bad}\n[lakeprof]\n{good}\n[badprof]\n{bad}"));
    lake_aws(&p, &moto, &["build"], &[]).assert_ok();
    assert_eq!(sql_env(&p, &moto, "select count(*), sum(amount) from staging.mrg", &[]), "6,210.0");
    assert!(!moto.keys("lake", "wh/staging/mrg/data/").is_empty());

    // A profile chosen by AWS_PROFILE, with a wrong secret: the line names the profile.
    let p = auth_project(&moto, "");
    p.write("aws/credentials", &format!("[default]\n{good}\n[badprof]\n{bad}"));
    let out = lake_aws(&p, &moto, &["build"], &[("AWS_PROFILE", "badprof")]);
    assert_refused(&out, "profile [badprof]");
    assert!(out.stderr.contains("AWS_PROFILE"), "{}", out.stderr);
    // The default profile (keys in the config file this time, with the region).
    p.write("aws/credentials", "");
    p.write("aws/config", &format!("[default]\nregion = us-east-1\n{good}"));
    lake_aws(&p, &moto, &["build"], &[]).assert_ok();
}

#[test]
fn wrong_env_credentials_fail_naming_the_variables_and_right_ones_work() {
    let moto = Moto::start_with_auth();
    moto.create_bucket("lake");
    let id = moto.access_key_id.clone();
    // The endpoint and region from the environment too.
    let p = auth_project(&moto, "");
    let toml = std::fs::read_to_string(p.path().join("lake.toml")).unwrap();
    p.write("lake.toml", &toml.replace(&format!("\"s3.endpoint\" = \"{}\"\n", moto.endpoint()), ""));
    // The environment wins over a profile with the right keys.
    p.write("aws/credentials", &format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {}\n", moto.secret_access_key));
    let endpoint = moto.endpoint();
    let base = [("AWS_ENDPOINT_URL", endpoint.as_str()), ("AWS_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", id.as_str())];

    let mut wrong = base.to_vec();
    wrong.push(("AWS_SECRET_ACCESS_KEY", WRONG_SECRET));
    let out = lake_aws(&p, &moto, &["build"], &wrong);
    assert_refused(&out, "AWS_SECRET_ACCESS_KEY");

    let mut right = base.to_vec();
    right.push(("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.as_str()));
    lake_aws(&p, &moto, &["build"], &right).assert_ok();
    assert_eq!(sql_env(&p, &moto, "select count(*), sum(amount) from staging.tbl", &right), "6,210.0");
    assert!(!moto.keys("lake", "wh/staging/tbl/data/").is_empty());

    // lake.toml wins over the environment: right keys there, wrong ones in the environment.
    let toml = std::fs::read_to_string(p.path().join("lake.toml")).unwrap();
    p.write(
        "lake.toml",
        &format!("{toml}\"s3.access-key-id\" = \"{id}\"\n\"s3.secret-access-key\" = \"{}\"\n", moto.secret_access_key),
    );
    assert_eq!(sql_env(&p, &moto, "select count(*) from staging.tbl", &wrong), "6");
}
