//! An Iceberg REST catalog (rustberg, installed by `.ci/run` into `$HOME/.cache/lake-tools`)
//! as the catalog: every commit goes through its commit endpoint, and the tables end up as on
//! the embedded SQLite catalog.

use std::process::{Command, Stdio};

use crate::support::TestProject;
use crate::support::rest_proxy::{ProxyOptions, RestProxy};
use crate::support::rustberg::Rustberg;

/// A `lake.toml` for a REST catalog at `uri`, with `extra` lines in `[catalog]`.
fn rest_toml(uri: &str, extra: &str) -> String {
    format!("name = \"test\"\n[catalog]\ntype = \"rest\"\nuri = \"{uri}\"\n{extra}")
}

/// Seeds, a table model, an incremental merge model and an aggregate.
fn write_models(p: &TestProject) {
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: orders\n    config:\n      column_types: {id: bigint, customer: varchar, amount: double}\n",
    );
    p.write("seeds/orders.csv", "id,customer,amount\n1,a,10\n2,b,20\n3,a,5\n");
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: orders\n");
    p.write(
        "models/staging/stg_orders.sql",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id') }}\n\
         select id, customer, amount * 2 as amount2 from {{ source('raw', 'orders') }}\n",
    );
    p.write(
        "models/marts/by_customer.sql",
        "select customer, count(*) as n, sum(amount2) as total from {{ ref('stg_orders') }} group by customer\n",
    );
}

fn fingerprint(p: &TestProject) -> Vec<Vec<String>> {
    [
        "select count(*), sum(id), sum(amount) from raw.orders",
        "select count(*), sum(id), sum(amount2) from staging.stg_orders",
        "select customer, n, total from marts.by_customer order by customer",
    ]
    .iter()
    .flat_map(|q| p.sql_rows(q))
    .collect()
}

/// Build, add rows (a merge), rebuild in full, maintain and roll back.
fn exercise(p: &TestProject) -> Vec<Vec<Vec<String>>> {
    let mut states = Vec::new();
    p.lake(&["build"]).assert_ok();
    states.push(fingerprint(p));
    p.write("seeds/orders_2.csv", "id,customer,amount\n4,c,7\n");
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    states.push(fingerprint(p));
    p.lake(&["run", "--full-refresh", "--select", "by_customer"]).assert_ok();
    p.lake(&["maintain"]).assert_ok();
    states.push(fingerprint(p));
    let first = p.show("marts.by_customer")["snapshots"][0]["snapshot_id"].as_i64().unwrap();
    p.lake(&["rollback", "marts.by_customer", "--to", &first.to_string()]).assert_ok();
    states.push(fingerprint(p));
    states
}

#[test]
fn a_rest_catalog_takes_every_commit_kind_and_ends_like_sqlite() {
    let server = Rustberg::start();
    let rest = TestProject::new();
    write_models(&rest);
    rest.write(
        "lake.toml",
        &rest_toml(&server.uri(), ""),
    );
    let sqlite = TestProject::new();
    write_models(&sqlite);
    assert_eq!(exercise(&rest), exercise(&sqlite));
    // Every table's history is the REST server's: one snapshot per commit.
    let snapshots = rest.show("staging.stg_orders")["snapshots"].as_array().unwrap().len();
    assert!(snapshots >= 2, "{snapshots}");
}

#[test]
fn two_writers_appending_through_rest_at_once_lose_nothing_and_repeat_nothing() {
    // Many small flushes from two processes into one table: their commits race, the server
    // refuses the stale ones (409) and each is redone on the new state.
    let server = Rustberg::start();
    let p = TestProject::new();
    p.write(
        "lake.toml",
        &rest_toml(&server.uri(), ""),
    );
    for (file, start) in [("a.ndjson", 0), ("b.ndjson", 100_000)] {
        let lines: String = (start..start + 1500).map(|i| format!("{{\"id\": {i}}}\n")).collect();
        p.write(file, &lines);
    }
    // The table exists before the race (creating it is not what is tested).
    p.write("first.ndjson", "{\"id\": -1}\n");
    p.lake(&["ingest", "--from", "first.ndjson", "--table", "raw.events", "--once"]).assert_ok();
    let spawn = |file: &str| {
        Command::new(crate::support::lake_bin())
            .args(["ingest", "--from", file, "--table", "raw.events", "--once", "--batch-rows", "50"])
            .current_dir(p.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a.ndjson"), spawn("b.ndjson"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(p.sql_count("select count(*) from raw.events"), 3001);
    assert_eq!(p.sql_count("select count(distinct id) from raw.events"), 3001);
}

/// Every snapshot count of the project's tables, by table.
fn snapshot_counts(p: &TestProject) -> Vec<(String, usize)> {
    ["raw.orders", "staging.stg_orders", "marts.by_customer"]
        .iter()
        .map(|t| (t.to_string(), p.show(t)["snapshots"].as_array().unwrap().len()))
        .collect()
}

#[test]
fn a_commit_whose_answer_is_lost_is_found_on_reload_and_not_applied_twice() {
    // The proxy forwards every second commit to the server, which applies it, and then drops
    // the connection without an answer: lake cannot know whether it landed until it reloads.
    let server = Rustberg::start();
    let proxy = RestProxy::start(
        server.port,
        ProxyOptions {
            lose_every: 2,
            ..Default::default()
        },
    );
    let rest = TestProject::new();
    write_models(&rest);
    rest.write("lake.toml", &rest_toml(&proxy.uri(), ""));
    let sqlite = TestProject::new();
    write_models(&sqlite);
    assert_eq!(exercise(&rest), exercise(&sqlite));
    // Each commit landed once: the same snapshots as on SQLite, where nothing was lost.
    assert_eq!(snapshot_counts(&rest), snapshot_counts(&sqlite));
    let lost = proxy.events("lost");
    assert!(lost.len() >= 3, "only {} answers were lost", lost.len());
    assert!(lost.iter().all(|e| e["status"] == 200), "{lost:?}");

    // Ingest flushes too: every record once.
    let lines: String = (0..40).map(|i| format!("{{\"id\": {i}}}\n")).collect();
    rest.write("events.ndjson", &lines);
    rest.lake(&["ingest", "--from", "events.ndjson", "--table", "raw.events", "--once", "--batch-rows", "5"])
        .assert_ok();
    assert_eq!(rest.sql_count("select count(*) from raw.events"), 40);
    assert_eq!(rest.sql_count("select count(distinct id) from raw.events"), 40);
    assert_eq!(rest.show("raw.events")["snapshots"].as_array().unwrap().len(), 8);
}

#[test]
fn oauth2_tokens_are_refreshed_before_they_expire() {
    // Tokens live 2 s; one ingest commits for 6 s: lake must fetch new tokens in time (the
    // proxy would answer an expired one 401, and it logs every refusal).
    let server = Rustberg::start();
    let proxy = RestProxy::start(
        server.port,
        ProxyOptions {
            token_lifetime: 2,
            client_secret: "s3cr3t-oauth-value".into(),
            ..Default::default()
        },
    );
    let p = TestProject::new();
    p.write("lake.toml", &rest_toml(&proxy.uri(), "credential = \"lake:${REST_SECRET}\"\n"));
    let mut child = Command::new(crate::support::lake_bin())
        .args(["ingest", "--from", "-", "--table", "raw.ticks", "--once", "--batch-rows", "1"])
        .env("REST_SECRET", "s3cr3t-oauth-value")
        .current_dir(p.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..12 {
            writeln!(stdin, "{{\"i\": {i}}}").unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    let out = child.wait_with_output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("s3cr3t-oauth-value"), "{all}");
    let tokens = proxy.events("token");
    assert!(tokens.len() >= 3, "tokens were not refreshed: {tokens:?}");
    assert_eq!(proxy.events("rejected"), Vec::<serde_json::Value>::new());
    let out = p.lake_env(&["sql", "select count(*) from raw.ticks"], &[("REST_SECRET", "s3cr3t-oauth-value")]);
    assert!(out.assert_ok().stdout.contains("12"), "{}", out.stdout);
}

#[test]
fn a_refused_token_or_credential_fails_with_exit_3_naming_the_setting_and_no_secret() {
    let server = Rustberg::start();
    let proxy = RestProxy::start(
        server.port,
        ProxyOptions {
            token_lifetime: 60,
            client_secret: "right-secret".into(),
            ..Default::default()
        },
    );
    let p = TestProject::new();
    for (extra, setting) in [
        ("token = \"${REST_SECRET}\"\n", "catalog.token"),
        ("credential = \"lake:${REST_SECRET}\"\n", "catalog.credential"),
        ("", "catalog.token or catalog.credential"),
    ] {
        p.write("lake.toml", &rest_toml(&proxy.uri(), extra));
        let out = p.lake_env(&["sql", "select 1"], &[("REST_SECRET", "expired-Zq81-secret")]);
        assert_eq!(out.code, 3, "{extra}: {}", out.all());
        assert!(out.stderr.contains(setting), "{extra}: {}", out.stderr);
        assert!(out.stderr.contains("refused"), "{extra}: {}", out.stderr);
        assert!(!out.all().contains("expired-Zq81-secret"), "{}", out.all());
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    }
    // The right credential works.
    p.write("lake.toml", &rest_toml(&proxy.uri(), "credential = \"lake:${REST_SECRET}\"\n"));
    p.lake_env(&["sql", "select 1"], &[("REST_SECRET", "right-secret")]).assert_ok();
}

#[test]
fn an_expired_token_fails_with_exit_3_naming_catalog_token() {
    // A real token from the token endpoint, used as a fixed `token` after it expired.
    let server = Rustberg::start();
    let proxy = RestProxy::start(
        server.port,
        ProxyOptions {
            token_lifetime: 1,
            client_secret: "right-secret".into(),
            ..Default::default()
        },
    );
    let fetch = format!(
        "import json, urllib.request, urllib.parse\n\
         data = urllib.parse.urlencode({{'grant_type': 'client_credentials', 'client_id': 'lake', 'client_secret': 'right-secret'}}).encode()\n\
         print(json.load(urllib.request.urlopen('{}/v1/oauth/tokens', data))['access_token'])",
        proxy.uri()
    );
    let out = Command::new("python3").args(["-c", &fetch]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let p = TestProject::new();
    p.write("lake.toml", &rest_toml(&proxy.uri(), "token = \"${REST_TOKEN}\"\n"));
    // Still valid: it works.
    p.lake_env(&["sql", "select 1"], &[("REST_TOKEN", &token)]).assert_ok();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = p.lake_env(&["sql", "select 1"], &[("REST_TOKEN", &token)]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("catalog.token") && out.stderr.contains("expired"), "{}", out.stderr);
    assert!(!out.all().contains(&token), "{}", out.all());
    let rejected = proxy.events("rejected");
    assert!(rejected.iter().any(|e| e["reason"] == "expired"), "{rejected:?}");
}

#[test]
fn a_wrong_warehouse_or_a_failing_server_is_one_line_with_exit_3() {
    let moto = crate::support::s3::Moto::start(0);
    // rustberg's warehouse bucket does not exist: its storage fails, it answers 500.
    let server = crate::support::rustberg::Rustberg::start_s3(&crate::support::rustberg::S3Warehouse {
        location: "s3://missing-bucket/wh",
        endpoint: &moto.endpoint(),
        access_key_id: "k",
        secret_access_key: "s",
    });
    let p = TestProject::with_orders_seed();
    // A warehouse the server does not serve: the server's own explanation, and the setting.
    p.write("lake.toml", &rest_toml(&server.uri(), "warehouse = \"s3://elsewhere/wh\"\n"));
    let out = p.lake(&["seed"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("catalog.warehouse") && out.stderr.contains("s3://elsewhere/wh"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    // The server fails to create the table: exit 3, the server's message, no HTTP headers.
    p.write("lake.toml", &rest_toml(&server.uri(), ""));
    let out = p.lake(&["seed"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stdout.contains("500 Internal Server Error") && out.stdout.contains("server's log"), "{}", out.stdout);
    assert!(!out.all().to_ascii_lowercase().contains("content-type"), "{}", out.all());
}

#[test]
fn a_merge_whose_commit_waits_behind_an_append_of_the_same_key_plans_again() {
    // The merge's commit is held by the proxy while another producer appends a row with a key
    // the merge also writes. Released, the commit meets a moved table (409): rebuilding it on
    // the new state would keep both rows of that key; the merge must plan again instead.
    let server = Rustberg::start();
    let proxy = RestProxy::start(
        server.port,
        ProxyOptions {
            hold: Some("latest".into()),
            ..Default::default()
        },
    );
    let p = TestProject::new();
    p.write("lake.toml", &rest_toml(&server.uri(), ""));
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: events\n    config:\n      files: \"events_*.csv\"\n      column_types: {id: bigint, v: bigint}\n",
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: events\n");
    p.write(
        "models/staging/latest.sql",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', dedupe_by='v', on_schema_change='append_new_columns') }}\n\
         select id, v from {{ source('raw', 'events') }}\n",
    );
    p.write("seeds/events_1.csv", "id,v\n1,1\n2,1\n3,1\n");
    p.lake(&["build"]).assert_ok();
    // The ingest columns exist before the race (an append of a key of its own).
    p.write("first.ndjson", "{\"id\": 100, \"v\": 0}\n");
    p.lake(&["ingest", "--from", "first.ndjson", "--table", "staging.latest", "--once"]).assert_ok();
    p.write("seeds/events_2.csv", "id,v\n3,2\n");
    p.lake(&["seed"]).assert_ok();

    let merge = Command::new(crate::support::lake_bin())
        .args(["run", "--select", "latest"])
        .env("LAKE_CATALOG_URI", proxy.uri())
        .current_dir(p.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while proxy.events("held").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the merge never committed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    p.write("extra.ndjson", "{\"id\": 3, \"v\": 7}\n");
    p.lake(&["ingest", "--from", "extra.ndjson", "--table", "staging.latest", "--once"]).assert_ok();
    proxy.release();
    let out = merge.wait_with_output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(p.sql_count("select count(*) from staging.latest"), p.sql_count("select count(distinct id) from staging.latest"));
    // The merge committed last: its version of key 3 stands.
    assert_eq!(p.sql_count("select v from staging.latest where id = 3"), 2);
    assert_eq!(p.sql_count("select count(*) from staging.latest"), 4);
}
