//! The repository's first demo, kept as `examples/shop_seeds`: seeds instead of `lake ingest`.
//! `lake build`, the expected mart counts, entity resolution against its truth, PyIceberg and
//! DuckDB reading every table `lake` wrote, and the selection grammar on its models.

use std::collections::BTreeMap;

use crate::support::readers::assert_readers_match_lake;
use crate::support::TestProject;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop_seeds");

fn expected_counts() -> BTreeMap<String, i64> {
    let path = format!("{ROOT}/scripts/expected_counts.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("expected_counts.json")).expect("json")
}

#[test]
fn demo_builds_and_other_readers_read_the_same_rows() {
    let p = TestProject::example("shop_seeds");
    let out = p.lake(&["build"]);
    out.assert_ok();
    assert!(out.stdout.contains("Done in"), "{}", out.stdout);

    for (table, count) in expected_counts() {
        assert_eq!(
            p.sql_count(&format!("select count(*) from {table}")),
            count,
            "row count of {table}"
        );
    }

    // Entity resolution across Shopify, Stripe and HubSpot against the generator's truth.
    let truth: BTreeMap<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/scripts/expected_entities.json"))
            .expect("expected_entities.json"),
    )
    .expect("json");
    let rows = p.sql_rows("select source || ':' || source_id, entity_id from semantic.entity_index");
    assert_eq!(rows.len(), truth.len());
    let mut same_entity = 0u64;
    let mut same_truth = 0u64;
    let mut both = 0u64;
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            let (e, t) = (a[1] == b[1], truth[&a[0]] == truth[&b[0]]);
            same_entity += u64::from(e);
            same_truth += u64::from(t);
            both += u64::from(e && t);
        }
    }
    let (precision, recall) = (both as f64 / same_entity as f64, both as f64 / same_truth as f64);
    assert!(precision >= 0.98 && recall >= 0.9, "demo entities: precision {precision:.3}, recall {recall:.3}");

    // Every table, as PyIceberg and DuckDB read it.
    let tables = assert_readers_match_lake(&p);
    assert!(tables.len() >= 10, "{tables:?}");
}

#[test]
fn ls_lists_selection_in_run_order() {
    let p = TestProject::example("shop_seeds");
    let out = p.lake(&["ls", "--select", "staging+", "--exclude", "int_paid_orders"]);
    out.assert_ok();
    let names: Vec<&str> = out.stdout.lines().collect();
    assert!(names.first().unwrap().starts_with("staging."), "{names:?}");
    assert!(names.contains(&"marts.mart_customer_ltv"), "{names:?}");
    assert!(!names.contains(&"staging.int_paid_orders"), "{names:?}");
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("staging.stg_orders") < pos("analytics.customer_orders"));
    assert!(pos("analytics.daily_revenue") < pos("marts.mart_monthly_sales"));

    let out = p.lake(&["ls", "--select", "tag:finance", "--output", "json"]);
    out.assert_ok();
    for line in out.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["tags"].as_array().unwrap().iter().any(|t| t == "finance"), "{line}");
    }
}

