//! OpenLineage events: a demo ingest and build received by a real HTTP endpoint (a loopback
//! server in this test) and validated against the official OpenLineage JSON schemas (in
//! Python, with openlineage-python and jsonschema, see `openlineage_spec/validate.py`); the
//! file transport; an unreachable or failing endpoint only warns; `[openlineage]` validation.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::support::TestProject;

/// One request the collector received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: Option<String>,
    body: Value,
}

/// A tiny HTTP server on loopback that keeps every POST body and answers `status`.
struct Collector {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    fn start(status: u16) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut headers = BTreeMap::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
                store.lock().unwrap().push(Received {
                    path,
                    authorization: headers.get("authorization").cloned(),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                let reason = if status == 200 { "OK" } else { "Service Unavailable" };
                let _ = stream.write_all(format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
            }
        });
        Collector { port, received }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn events(&self) -> Vec<Value> {
        self.received.lock().unwrap().iter().map(|r| r.body.clone()).collect()
    }
}

/// Validates `events` against the OpenLineage schemas; panics with the problems.
fn assert_valid(events: &[Value]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/openlineage_spec/validate.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let input: String = events.iter().map(|e| format!("{e}\n")).collect();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "events do not validate against the OpenLineage schemas:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's `[openlineage]` snippet.
fn readme_config() -> String {
    let block = crate::support::readme::toml_block("OpenLineage");
    assert!(block.starts_with("[openlineage]"), "{block}");
    block
}

fn events_of<'a>(events: &'a [Value], job: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["job"]["name"] == job).collect()
}

fn types(events: &[&Value]) -> Vec<String> {
    events.iter().map(|e| e["eventType"].as_str().unwrap().to_string()).collect()
}

/// The run id `run_results.json` records for a node.
fn recorded_run_id(results: &Value, unique_id: &str) -> String {
    let r = results["results"].as_array().unwrap().iter().find(|r| r["unique_id"] == unique_id).unwrap_or_else(|| panic!("{unique_id} in run_results"));
    r["run_id"].as_str().unwrap().to_string()
}

#[test]
fn demo_events_reach_an_http_endpoint_and_follow_the_spec() {
    let collector = Collector::start(200);
    let p = TestProject::demo();
    let config = readme_config().replace("http://localhost:5000", &collector.url());
    let toml = std::fs::read_to_string(p.path().join("lake.toml")).unwrap();
    p.write("lake.toml", &format!("{toml}\n{config}"));
    // A seed, and a model that fails.
    p.write("seeds/seeds.yml", "seeds:\n  - name: regions\n    config:\n      column_types: {code: varchar, name: varchar}\n");
    p.write("seeds/regions.csv", "code,name\neu,Europe\nus,United States\n");
    p.write("models/marts/broken.sql", "select no_such_column from {{ ref('order_summary') }}\n");
    let env = [("OPENLINEAGE_API_KEY", "ol-test-key-5bd1")];
    p.lake(&["demo", "generate", "--customers", "30", "--days", "1", "--until", "2026-11-04", "--out", "events"]).assert_ok();
    let ingest = p.lake_env(&["ingest", "--all", "--once"], &env);
    ingest.assert_ok();
    let build = p.lake_env(&["build"], &env);
    assert_eq!(build.code, 1, "the broken model fails the build:\n{}", build.all());
    assert!(!build.all().contains("ol-test-key-5bd1") && !build.all().contains("OpenLineage"), "{}", build.all());

    let received = collector.received.lock().unwrap().clone();
    assert!(received.iter().all(|r| r.path == "/api/v1/lineage"), "{:?}", received.iter().map(|r| &r.path).collect::<Vec<_>>());
    assert!(received.iter().all(|r| r.authorization.as_deref() == Some("Bearer ol-test-key-5bd1")));
    let events = collector.events();
    assert_valid(&events);
    let namespace = "shop_lakehouse";
    assert!(events.iter().all(|e| e["job"]["namespace"] == namespace));

    // Ingest: one START and COMPLETE per flush, run id = the flush id of the snapshot it committed.
    let flushes = events_of(&events, "ingest.shopify_orders");
    assert_eq!(types(&flushes), ["START", "COMPLETE"], "{flushes:?}");
    assert_eq!(flushes[0]["run"]["runId"], flushes[1]["run"]["runId"]);
    let summary = p.current_snapshot("raw.shopify_orders")["summary"].clone();
    let flush_id = summary["lake.ingest.flush-id"].as_str().unwrap().trim_end_matches(":rows").to_string();
    assert_eq!(flushes[1]["run"]["runId"], flush_id.as_str());
    assert_eq!(flushes[1]["inputs"][0]["namespace"], "file");
    assert!(flushes[1]["inputs"][0]["name"].as_str().unwrap().ends_with("events/shopify_orders*.ndjson"), "{}", flushes[1]["inputs"]);
    let out = &flushes[1]["outputs"][0];
    assert_eq!(out["namespace"], "file");
    assert!(out["name"].as_str().unwrap().ends_with(".lake/warehouse/raw/shopify_orders"), "{out}");
    assert!(out["outputFacets"]["outputStatistics"]["rowCount"].as_u64().unwrap() > 0, "{out}");

    // Build: the parent run is the invocation of run_results.json; every node has START then
    // COMPLETE (or FAIL) under the run id run_results.json records for it.
    let results = p.run_results();
    let invocation = results["metadata"]["invocation_id"].as_str().unwrap();
    assert_eq!(types(&events_of(&events, "lake.build")), ["START", "FAIL"]);
    // Tests of a node's own table, run after it completed: an OTHER event of its run.
    let tested = events_of(&events, "stg_shopify_orders");
    assert_eq!(types(&tested), ["START", "COMPLETE", "OTHER"]);
    assert_eq!(tested[2]["run"]["runId"], tested[1]["run"]["runId"]);
    let own = tested[2]["outputs"][0]["facets"]["dataQualityAssertions"]["assertions"].as_array().unwrap();
    assert!(own.iter().any(|a| a["name"] == "not_null_stg_shopify_orders_order_id" && a["success"] == true), "{own:?}");
    let models = ["stg_shopify_orders", "stg_shopify_customers", "order_summary", "customer_metrics", "entity_index", "customer_360"];
    for model in models.iter().copied().chain(["seed.regions"]) {
        let runs = events_of(&events, model);
        assert_eq!(types(&runs)[..2], ["START", "COMPLETE"], "{model}");
        let unique_id = if model.starts_with("seed.") { model.to_string() } else { format!("model.{model}") };
        let run_id = recorded_run_id(&results, &unique_id);
        assert!(runs.iter().all(|e| e["run"]["runId"] == run_id.as_str()), "{model}: {runs:?}");
        assert_eq!(runs[1]["run"]["facets"]["parent"]["run"]["runId"], invocation);
    }
    let seed = &events_of(&events, "seed.regions")[1];
    assert!(seed["inputs"][0]["name"].as_str().unwrap().ends_with("seeds/regions.csv"), "{seed}");
    assert_eq!(seed["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"], 2);

    // The failing model: START, then FAIL with the error.
    let broken = events_of(&events, "broken");
    assert_eq!(types(&broken), ["START", "FAIL"]);
    let message = broken[1]["run"]["facets"]["errorMessage"]["message"].as_str().unwrap();
    assert!(message.contains("no_such_column"), "{message}");

    // customer_360's COMPLETE: schema, statistics, snapshot and column lineage.
    let c360 = events_of(&events, "customer_360")[1];
    let output = &c360["outputs"][0];
    let facets = &output["facets"];
    let node = results["results"].as_array().unwrap().iter().find(|r| r["unique_id"] == "model.customer_360").unwrap();
    assert_eq!(facets["lake_iceberg"]["snapshotId"], node["snapshot_id"]);
    assert_eq!(output["outputFacets"]["outputStatistics"]["rowCount"], node["rows_written"]);
    assert!(output["outputFacets"]["outputStatistics"]["size"].as_u64().unwrap() > 0);
    let fields: Vec<&str> = facets["schema"]["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(fields.contains(&"lifetime_value"), "{fields:?}");
    let ltv = &facets["columnLineage"]["fields"]["lifetime_value"]["inputFields"];
    let from_metrics = ltv
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "net_revenue")
        .unwrap_or_else(|| panic!("lifetime_value ← net_revenue: {ltv}"));
    assert_eq!(from_metrics["namespace"], "file");
    assert!(from_metrics["name"].as_str().unwrap().ends_with("/analytics/customer_metrics"), "{from_metrics}");
    assert_eq!(from_metrics["transformations"][0]["type"], "DIRECT");
    // customer_360 joins on the entity index: an indirect JOIN input.
    let all_inputs = facets["columnLineage"]["fields"].to_string();
    assert!(all_inputs.contains("\"subtype\":\"JOIN\""), "{all_inputs}");

    // Data tests that ran on a model's input are assertions on that input.
    let asserted: Vec<&Value> = events
        .iter()
        .filter(|e| e["eventType"] == "COMPLETE")
        .flat_map(|e| e["inputs"].as_array().unwrap())
        .filter_map(|i| i["inputFacets"]["dataQualityAssertions"]["assertions"].as_array())
        .flatten()
        .collect();
    assert!(asserted.iter().any(|a| a["assertion"] == "not_null" && a["success"] == true && a["column"].is_string()), "{asserted:?}");
}

/// A project with a seed and one model reading it, with `openlineage` appended to lake.toml.
fn small_project(openlineage: &str) -> TestProject {
    let p = TestProject::with_orders_seed();
    p.write("lake.toml", &format!("name = \"test\"\n\n{openlineage}"));
    p.write("models/staging/doubled.sql", "select id, amount * 2 as doubled from {{ source('raw', 'orders') }}\n");
    p
}

#[test]
fn an_unreachable_endpoint_only_warns() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let p = small_project(&format!(
        "[openlineage]\ntransport = \"http\"\nurl = \"http://127.0.0.1:{port}\"\napi_key = \"ol-secret-key-77a1\"\ntimeout_seconds = 2\n"
    ));
    let started = std::time::Instant::now();
    let out = p.lake(&["build"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let all = out.all();
    let warnings: Vec<&str> = all.lines().filter(|l| l.contains("OpenLineage")).collect();
    assert_eq!(warnings.len(), 1, "{}", out.all());
    assert!(warnings[0].contains("WARN") && warnings[0].contains(&format!("127.0.0.1:{port}")), "{}", warnings[0]);
    assert!(!out.all().contains("ol-secret-key-77a1"), "{}", out.all());
    assert_eq!(p.sql_count("select count(*) from staging.doubled"), 2);
}

#[test]
fn an_endpoint_answering_an_error_only_warns() {
    let collector = Collector::start(503);
    let p = small_project(&format!("[openlineage]\ntransport = \"http\"\nurl = \"{}/custom/lineage\"\n", collector.url()));
    let out = p.lake(&["build"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let all = out.all();
    let warnings: Vec<&str> = all.lines().filter(|l| l.contains("OpenLineage")).collect();
    assert_eq!(warnings.len(), 1, "{}", out.all());
    assert!(warnings[0].contains("503"), "{}", warnings[0]);
    // The url has a path: events go there, and sending stopped after the first answer.
    let received = collector.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/custom/lineage");
}

#[test]
fn the_file_transport_appends_one_event_per_line() {
    let p = small_project("[openlineage]\ntransport = \"file\"\npath = \"target/openlineage.ndjson\"\nnamespace = \"analytics_team\"\n");
    p.lake(&["build"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    let text = std::fs::read_to_string(p.path().join("target/openlineage.ndjson")).unwrap();
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect();
    assert_valid(&events);
    assert!(events.iter().all(|e| e["job"]["namespace"] == "analytics_team"));
    assert_eq!(types(&events_of(&events, "seed.orders")), ["START", "COMPLETE"]);
    // Two runs of the model, two run ids (one per invocation).
    let doubled = events_of(&events, "doubled");
    assert_eq!(types(&doubled), ["START", "COMPLETE", "START", "COMPLETE"]);
    assert_ne!(doubled[0]["run"]["runId"], doubled[2]["run"]["runId"]);
    let lineage = &doubled[1]["outputs"][0]["facets"]["columnLineage"]["fields"]["doubled"]["inputFields"][0];
    assert_eq!(lineage["field"], "amount");
    assert_eq!(lineage["transformations"][0]["subtype"], "TRANSFORMATION");
    assert!(lineage["name"].as_str().unwrap().ends_with("/raw/orders"), "{lineage}");
}

#[test]
fn the_console_transport_prints_events_to_stderr() {
    let p = small_project("[openlineage]\ntransport = \"console\"\n");
    let out = p.lake(&["build"]);
    out.assert_ok();
    let events: Vec<Value> = out.stderr.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_valid(&events);
    assert_eq!(types(&events_of(&events, "doubled")), ["START", "COMPLETE"]);
    assert!(!out.stdout.contains("eventType"), "stdout stays the run's: {}", out.stdout);
}

#[test]
fn openlineage_settings_are_validated() {
    for (section, key) in [
        ("[openlineage]\ntransport = \"kafka\"\n", "openlineage.transport"),
        ("[openlineage]\ntransport = \"http\"\nurl = \"http://x\"\ncolour = \"red\"\n", "colour"),
        ("[openlineage]\ntransport = \"http\"\n", "openlineage.url"),
        ("[openlineage]\ntransport = \"file\"\n", "openlineage.path"),
        ("[openlineage]\ntransport = \"console\"\ntimeout_seconds = 0\n", "openlineage.timeout_seconds"),
    ] {
        let p = small_project(section);
        let out = p.lake(&["ls"]);
        assert_eq!(out.code, 2, "{section}: {}", out.all());
        assert!(out.stderr.contains(key) && out.stderr.contains("openlineage"), "{section}: {}", out.stderr);
    }
}
