//! An Iceberg REST catalog (rustberg, installed by `.ci/run` into `$HOME/.cache/lake-tools`)
//! as the catalog: every commit goes through its commit endpoint, and the tables end up as on
//! the embedded SQLite catalog.

use std::process::{Command, Stdio};

use crate::support::TestProject;
use crate::support::rustberg::Rustberg;

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
        &format!("name = \"test\"\n[catalog]\ntype = \"rest\"\nuri = \"http://127.0.0.1:{}\"\n", server.port),
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
        &format!("name = \"test\"\n[catalog]\ntype = \"rest\"\nuri = \"http://127.0.0.1:{}\"\n", server.port),
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
