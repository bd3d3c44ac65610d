//! The demo pipeline in its streaming form: after the first three days (files, `scripts/demo.sh`),
//! `lake ingest hooks` serves the project's webhook source while `lake demo generate --post`
//! sends the fourth day, signed as each provider signs; routes land each event in its raw
//! table. `lake run --select staging+` then reads only the newly ingested data files, rewrites
//! few files, and leaves every table equal to a full refresh of the same data.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::s3::free_port;
use crate::support::{TestProject, lake_bin};

const SECRETS: [(&str, &str); 3] =
    [("SHOPIFY_WEBHOOK_SECRET", "shpss_stream"), ("STRIPE_WEBHOOK_SECRET", "whsec_stream"), ("HUBSPOT_CLIENT_SECRET", "hs-stream")];

/// Every model table's rows, sorted, without the columns that record when a run wrote them
/// (`_staged_at`; entity_index's `updated_at`).
fn dump(p: &TestProject) -> BTreeMap<String, Vec<String>> {
    let out = p.lake(&["ls", "--select", "staging+", "--output", "json"]);
    out.assert_ok();
    let mut tables = BTreeMap::new();
    for line in out.stdout.lines() {
        let node: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = node["relation"].as_str().unwrap().to_string();
        let written_at = if name == "semantic.entity_index" { "updated_at" } else { "_staged_at" };
        let out = p.lake(&["sql", &format!("select * exclude ({written_at}) from {name}"), "--format", "json"]);
        let out = if out.code == 0 { out } else { p.lake(&["sql", &format!("select * from {name}"), "--format", "json"]) };
        out.assert_ok();
        let rows: Vec<serde_json::Value> = serde_json::from_str(out.stdout.trim()).unwrap();
        let mut rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
        rows.sort();
        tables.insert(name, rows);
    }
    tables
}

fn data_files_added_since(p: &TestProject, table: &str, since: i64) -> u64 {
    let out = p.lake(&["show", table, "--log-format", "json"]);
    out.assert_ok();
    let shown: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let snapshots = shown["snapshots"].as_array().expect("snapshots");
    let at = snapshots.iter().position(|s| s["snapshot_id"].as_i64() == Some(since)).expect("the watermark's snapshot");
    snapshots[at + 1..]
        .iter()
        .map(|s| s["summary"]["added-data-files"].as_str().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0))
        .sum()
}

#[test]
fn one_more_day_of_signed_webhooks_is_read_incrementally_and_equals_a_full_refresh() {
    let p = TestProject::demo();
    let out = Command::new("bash").arg("scripts/demo.sh").current_dir(p.path()).env("LAKE", lake_bin()).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let orders_before = p.sql_count("select count(*) from raw.shopify_orders");

    // Serve the project's webhook source on a free port.
    let port = free_port();
    let toml = std::fs::read_to_string(p.path().join("lake.toml")).unwrap();
    assert!(toml.contains("127.0.0.1:8090"), "lake.toml's webhook address changed");
    p.write("lake.toml", &toml.replace("127.0.0.1:8090", &format!("127.0.0.1:{port}")));
    let mut server = p.serve_ingest(&["hooks", "--batch-seconds", "1"], &SECRETS, port);
    // The fourth day of the same seeded run, posted and signed.
    let args = ["demo", "generate", "--customers", "300", "--days", "4", "--since", "2026-11-04"];
    let posted = p.lake_env(&[&args[..], &["--post", &format!("http://127.0.0.1:{port}")]].concat(), &SECRETS);
    posted.assert_ok();
    for provider in ["shopify", "stripe", "hubspot"] {
        assert!(posted.stdout.contains(&format!("{provider}:")), "{}", posted.stdout);
    }
    // SIGTERM: the server commits everything it acknowledged, then exits 0.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let status = server.wait().unwrap();
    assert!(status.success(), "lake ingest hooks exited {status:?}");

    // Each event landed in its provider's raw table (through its route), none in the fallback.
    assert!(p.sql_count("select count(*) from raw.shopify_orders") > orders_before);
    for t in ["shopify_orders", "shopify_customers", "stripe_charges", "stripe_customers", "hubspot_contacts"] {
        let n = p.sql_count(&format!("select count(*) from raw.{t} where _source = 'hooks'"));
        assert!(n > 0, "no webhook rows in raw.{t}");
        let ids = p.sql_count(&format!("select count(*) from raw.{t} where _source = 'hooks' and _record_id not like '%:%'"));
        assert_eq!(ids, 0, "raw.{t}: webhook rows have <provider>:<id> record ids");
    }
    // (A body too broken to tell its type lands as a dead letter of the fallback table.)
    let fallback = p.lake(&["sql", "select count(*) from raw.webhook_events", "--format", "csv"]);
    assert!(fallback.code != 0 || fallback.stdout.lines().nth(1) == Some("0"), "an event took no route: {}", fallback.stdout);
    // HubSpot's batched bodies are one row per event.
    assert_eq!(p.sql_count("select count(*) from raw.hubspot_contacts where \"objectId\" is null"), 0);

    // The incremental run reads only the new data files and rewrites few.
    let run = p.lake(&["run", "--select", "staging+"]);
    run.assert_ok();
    let results = p.run_results()["results"].as_array().unwrap().clone();
    for r in results.iter().filter(|r| r["name"].as_str().unwrap().starts_with("stg_")) {
        let name = r["name"].as_str().unwrap();
        assert_eq!(r["status"], "success", "{r}");
        let read = r["input_files_read"].as_object().unwrap_or_else(|| panic!("{name} read its inputs whole: {r}"));
        let before: serde_json::Value = serde_json::from_str(r["watermark_before"].as_str().unwrap()).unwrap();
        for (table, files) in read {
            let since = before[table].as_i64().unwrap();
            assert_eq!(files.as_u64().unwrap(), data_files_added_since(&p, table, since), "{name} read more than {table}'s new files");
        }
        assert!(r["files_rewritten"].as_u64().unwrap_or(0) <= 2, "{name} rewrote many files: {r}");
        assert!(r["rows_written"].as_u64().unwrap() > 0, "{name} merged nothing: {r}");
    }
    // Past staging too, each model read only the new rows (merged through merge-on-read).
    for r in results.iter().filter(|r| r["kind"] == "model" && !r["name"].as_str().unwrap().starts_with("stg_")) {
        assert!(r["input_files_read"].is_object(), "{} read its inputs whole: {r}", r["name"]);
        assert_eq!(r["files_rewritten"].as_u64().unwrap_or(0), 0, "{r}");
    }
    let incremental = dump(&p);
    assert!(incremental["marts.customer_360"].len() > 200);

    // Nothing new: every model is up to date and nothing is committed.
    let snapshots = p.snapshot_count("marts.customer_360");
    let noop = p.lake(&["run", "--select", "staging+"]);
    noop.assert_ok();
    let statuses: Vec<(String, String)> = p.run_results()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string()))
        .collect();
    assert!(statuses.iter().all(|(_, s)| s == "skipped"), "a run with nothing new ran models: {statuses:?}");
    assert_eq!(p.snapshot_count("marts.customer_360"), snapshots);

    // The same data, built again from scratch: every table the same.
    p.lake(&["run", "--select", "staging+", "--full-refresh"]).assert_ok();
    let full = dump(&p);
    assert_eq!(incremental.keys().collect::<Vec<_>>(), full.keys().collect::<Vec<_>>());
    for (table, rows) in &incremental {
        assert_eq!(rows.len(), full[table].len(), "{table}: row count differs from a full refresh");
        let differ: Vec<_> = rows.iter().zip(&full[table]).filter(|(a, b)| a != b).take(3).collect();
        assert!(differ.is_empty(), "{table} differs from a full refresh: {differ:#?}");
    }
}
