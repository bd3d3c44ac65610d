//! `lake demo generate`: the same seed gives the same events; the files land through
//! `lake ingest` with exactly the broken lines as dead letters; the same people appear across
//! sources; posted events are signed as each provider signs, accepted by the real webhook
//! server and stored once (the duplicates the generator sends are recognized).

use std::collections::{BTreeMap, BTreeSet};

use crate::support::s3::free_port;
use crate::support::TestProject;

const TABLES: [&str; 5] = ["shopify_orders", "shopify_customers", "stripe_charges", "stripe_customers", "hubspot_contacts"];

/// Distinct lines of a generated file that parse as JSON, and those that do not.
fn distinct_lines(path: &std::path::Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let (mut ok, mut broken) = (BTreeSet::new(), BTreeSet::new());
    for line in text.lines() {
        if serde_json::from_str::<serde_json::Value>(line).is_ok() {
            ok.insert(line.to_string());
        } else {
            broken.insert(line.to_string());
        }
    }
    (ok, broken)
}

#[test]
fn generated_files_are_deterministic_and_land_through_file_ingest() {
    let p = TestProject::new();
    for (dir, seed) in [("ev", "5"), ("ev_again", "5"), ("ev_other", "6")] {
        p.lake(&["demo", "generate", "--customers", "150", "--days", "2", "--seed", seed, "--out", dir]).assert_ok();
    }
    let read = |dir: &str, t: &str| std::fs::read(p.path().join(dir).join(format!("{t}.ndjson"))).unwrap();
    for t in TABLES {
        assert_eq!(read("ev", t), read("ev_again", t), "{t}: same seed, same bytes");
        assert_ne!(read("ev", t), read("ev_other", t), "{t}: another seed, other events");
    }
    let mut broken_total = 0;
    for t in TABLES {
        let file = format!("ev/{t}.ndjson");
        p.lake(&["ingest", "--from", &file, "--table", &format!("raw.{t}"), "--once"]).assert_ok();
        let lines = std::fs::read_to_string(p.path().join(&file)).unwrap();
        let broken = lines.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err()).count();
        broken_total += broken;
        let rows = p.sql_count(&format!("select count(*) from raw.{t}"));
        assert_eq!(rows as usize + broken, lines.lines().count(), "{t}");
        if broken > 0 {
            assert_eq!(p.sql_count(&format!("select count(*) from raw.{t}__errors")) as usize, broken, "{t}");
        }
    }
    assert!(broken_total > 0, "the generator writes a few broken bodies");
    // Provider shapes: Stripe events carry their type and the charge in data.object; Shopify
    // money is a string; HubSpot posts arrays of events.
    assert_eq!(
        p.sql_count("select count(*) from raw.stripe_charges where type not like 'charge.%'"),
        0
    );
    let orders = std::fs::read_to_string(p.path().join("ev/shopify_orders.ndjson")).unwrap();
    let first: serde_json::Value = serde_json::from_str(orders.lines().next().unwrap()).unwrap();
    assert!(first["total_price"].is_string() && first["line_items"].is_array() && first["customer"]["email"].is_string(), "{first}");
    // The same people across sources: many appear in two or three.
    let truth = std::fs::read_to_string(p.path().join("ev/truth.csv")).unwrap();
    let mut sources: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in truth.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        sources.entry(f[2].to_string()).or_default().insert(f[0].to_string());
    }
    let linked = sources.values().filter(|s| s.len() >= 2).count();
    assert!(linked * 3 >= sources.len(), "{linked} of {} people in two sources or more", sources.len());
}

#[test]
fn posted_events_are_signed_like_the_providers_and_stored_once() {
    let p = TestProject::new();
    let port = free_port();
    p.write(
        "lake.toml",
        &format!(
            "name = \"demo\"\n[ingest.hooks]\nfrom = \"http://127.0.0.1:{port}\"\ntable = \"raw.webhooks\"\nevolve = true\n\
             [ingest.hooks.batch]\nseconds = 1\n\
             [ingest.hooks.webhooks.shopify]\nsecret_env = [\"D_SHOPIFY\"]\n\
             [ingest.hooks.webhooks.stripe]\nsecret_env = [\"D_STRIPE\"]\n\
             [ingest.hooks.webhooks.hubspot]\nsecret_env = [\"D_HUBSPOT\"]\n"
        ),
    );
    let env = [("D_SHOPIFY", "shpss_demo"), ("D_STRIPE", "whsec_demo"), ("D_HUBSPOT", "hs-demo-secret")];
    let mut server = p.serve_ingest(&["hooks"], &env, port);
    let args = ["demo", "generate", "--customers", "60", "--days", "1", "--seed", "11"];
    let out = p.lake_env(&[&args[..], &["--post", &format!("http://127.0.0.1:{port}")]].concat(), &env);
    out.assert_ok();
    assert!(out.stdout.contains("hubspot:") && out.stdout.contains("stripe:") && out.stdout.contains("shopify:"), "{}", out.stdout);
    // Stop the server: it flushes what it acknowledged.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
    // The same events as files: every distinct body once, broken ones as dead letters.
    p.lake(&[&args[..], &["--out", "ev"]].concat()).assert_ok();
    let (mut ok, mut broken) = (0, 0);
    for t in TABLES {
        let (o, b) = distinct_lines(&p.path().join(format!("ev/{t}.ndjson")));
        ok += o.len();
        broken += b.len();
    }
    let rows = p.sql_count("select count(*) from raw.webhooks");
    let dead = p.sql_count("select count(*) from raw.webhooks__errors");
    assert_eq!((rows as usize, dead as usize), (ok, broken));
}
