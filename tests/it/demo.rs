//! The repository's demo project, end to end: `lake build`, the expected mart counts, and
//! PyIceberg reading every table `lake` wrote.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::TestProject;

fn expected_counts() -> BTreeMap<String, i64> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/expected_counts.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("expected_counts.json")).expect("json")
}

#[test]
fn demo_builds_and_pyiceberg_reads_the_same_rows() {
    let p = TestProject::demo();
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

    // Every table, as PyIceberg reads it through the same SQLite catalog.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pyiceberg_stats.py");
    let py = Command::new("python3").arg(script).arg(p.path()).output().expect("python3");
    assert!(
        py.status.success(),
        "PyIceberg could not read the tables (install it with .ci/run):\n{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&py.stdout).expect("stats json");
    let tables = stats.as_object().expect("tables");
    let lake_tables: Vec<String> = p
        .sql_rows("select table_schema || '.' || table_name from information_schema.tables where table_catalog = 'lake' and table_schema <> 'information_schema' order by 1")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let py_tables: Vec<String> = tables.keys().cloned().collect();
    assert_eq!(py_tables, lake_tables, "PyIceberg sees the tables lake wrote");
    assert!(lake_tables.len() >= 10, "{lake_tables:?}");

    for (table, t) in tables {
        let rows = t["rows"].as_i64().unwrap();
        assert_eq!(p.sql_count(&format!("select count(*) from {table}")), rows, "{table}");
        for (column, s) in t["columns"].as_object().unwrap() {
            let q = format!(
                "select count(\"{column}\"), count(distinct \"{column}\") from {table}"
            );
            let r = &p.sql_rows(&q)[0];
            assert_eq!(r[0].parse::<i64>().unwrap(), s["non_null"].as_i64().unwrap(), "{table}.{column} non-null");
            assert_eq!(r[1].parse::<i64>().unwrap(), s["distinct"].as_i64().unwrap(), "{table}.{column} distinct");
            if let Some(sum) = s.get("sum").and_then(|v| v.as_f64()) {
                let r = &p.sql_rows(&format!("select cast(sum(\"{column}\") as double) from {table}"))[0];
                let ours: f64 = r[0].parse().unwrap();
                assert!((ours - sum).abs() < 1e-3 * sum.abs().max(1.0), "{table}.{column} sum {ours} vs {sum}");
            }
        }
    }
}

#[test]
fn ls_lists_selection_in_run_order() {
    let p = TestProject::demo();
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

#[test]
fn init_scaffolds_a_project_that_builds() {
    let p = TestProject::empty();
    p.lake(&["init", "shop"]).assert_ok();
    let out = std::process::Command::new(crate::support::lake_bin())
        .args(["build"])
        .current_dir(p.path().join("shop"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(crate::support::lake_bin())
        .args(["sql", "select sum(purchases) from marts.user_revenue", "--format", "csv"])
        .current_dir(p.path().join("shop"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().nth(1), Some("3"));
}
