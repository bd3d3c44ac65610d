//! The repository's demo project, end to end: `lake build`, the expected mart counts, and
//! PyIceberg and DuckDB reading every table `lake` wrote.

use std::collections::BTreeMap;

use crate::support::readers::assert_readers_match_lake;
use crate::support::TestProject;

fn expected_counts() -> BTreeMap<String, i64> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/expected_counts.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("expected_counts.json")).expect("json")
}

#[test]
fn demo_builds_and_other_readers_read_the_same_rows() {
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

    // Entity resolution across Shopify, Stripe and HubSpot against the generator's truth.
    let truth: BTreeMap<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/expected_entities.json"))
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

/// Split a shell command line into words (double and single quotes, no escapes).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            (_, c) => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

#[test]
fn every_command_of_the_readme_set_up_runs_on_a_fresh_copy_of_the_demo() {
    // The README's shell blocks, in order, with the debug binary standing in for
    // `cargo run --release --`; `cargo test` is what CI runs.
    // (Other sections' shell blocks are run by the tests of what they describe, e.g. Airflow's.)
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let setup = readme.split("\n## Set up\n").nth(1).expect("a Set up section");
    let setup = setup.split("\n## ").next().unwrap();
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in setup.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() => lines.push(l.to_string()),
            _ => {}
        }
    }
    assert!(lines.iter().any(|l| l == "cargo run --release -- build"), "{lines:?}");
    let p = TestProject::demo();
    let mut ran = 0;
    for line in &lines {
        let words = shell_words(line);
        match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["cargo", "test", ..] => {}
            ["cargo", "run", "--release", "--", args @ ..] => {
                let out = p.lake(args);
                assert_eq!(out.code, 0, "README command `{line}` failed:\n{}", out.all());
                ran += 1;
            }
            ["cp", files @ .., dest] => {
                for f in files {
                    let from = p.path().join(f);
                    let name = from.file_name().unwrap().to_owned();
                    std::fs::copy(&from, p.path().join(dest).join(name)).unwrap_or_else(|e| panic!("`{line}`: {e}"));
                }
            }
            other => panic!("a README set-up command this test does not know how to run: {other:?}"),
        }
    }
    assert!(ran >= 6, "ran {ran} lake commands of {lines:?}");
}

#[test]
fn the_readme_python_examples_read_the_demo_tables() {
    // Every ```python block of the README that opens the demo project runs as written, with
    // the project's real path and `lake` on the PATH.
    let p = TestProject::demo();
    p.lake(&["build"]).assert_ok();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```python\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .filter(|b| b.contains("/path/to/project"))
        .collect();
    assert!(blocks.len() >= 2, "expected the PyIceberg and DuckDB examples");
    let bin_dir = crate::support::lake_bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    for block in blocks {
        let code = block.replace("/path/to/project", &p.path().display().to_string());
        let out = std::process::Command::new("python3").args(["-c", &code]).env("PATH", &path).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{code}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.lines().count() >= 3, "{code}\nprinted: {stdout}");
    }
}
