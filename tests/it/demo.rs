//! The repository's demo project, the reference pipeline: `scripts/demo.sh` (generated webhook
//! events → `lake ingest` → every model and test), entity resolution scored against the
//! generator's truth, other readers reading every table, and every README set-up command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::readers::assert_readers_match_lake;
use crate::support::TestProject;

/// `bash scripts/demo.sh` in `p`, with the debug binary standing in for the release build.
pub fn run_demo_script(p: &TestProject) -> std::process::Output {
    std::process::Command::new("bash")
        .arg("scripts/demo.sh")
        .current_dir(p.path())
        .env("LAKE", crate::support::lake_bin())
        .env_remove("LAKE_TARGET")
        .env_remove("LAKE_LOG_FORMAT")
        .output()
        .expect("run scripts/demo.sh")
}

/// Pairwise precision and recall of `entity_index` against the generator's `truth.csv`, over
/// the records both hold.
pub fn score_entities(p: &TestProject, truth_csv: &Path) -> (f64, f64, usize) {
    let truth: BTreeMap<(String, String), String> = std::fs::read_to_string(truth_csv)
        .expect("truth.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            ((f[0].to_string(), f[1].to_string()), f[2].to_string())
        })
        .collect();
    let rows = p.sql_rows("select source, source_id, entity_id from semantic.entity_index");
    let index: BTreeMap<(String, String), String> =
        rows.into_iter().map(|r| ((r[0].clone(), r[1].clone()), r[2].clone())).collect();
    let keys: Vec<&(String, String)> = index.keys().filter(|k| truth.contains_key(*k)).collect();
    assert!(keys.len() * 10 >= index.len() * 9, "most indexed records are in the truth: {} of {}", keys.len(), index.len());
    let pairs = |group: &dyn Fn(&(String, String)) -> String| -> BTreeSet<(usize, usize)> {
        let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            by.entry(group(k)).or_default().push(i);
        }
        by.values().flat_map(|v| v.iter().enumerate().flat_map(move |(n, a)| v[n + 1..].iter().map(move |b| (*a, *b)))).collect()
    };
    let found = pairs(&|k| index[k].clone());
    let real = pairs(&|k| truth[k].clone());
    let both = found.intersection(&real).count() as f64;
    (both / found.len().max(1) as f64, both / real.len().max(1) as f64, keys.len())
}

#[test]
fn the_demo_pipeline_runs_from_events_to_marts_and_links_people_across_sources() {
    let p = TestProject::demo();
    let out = run_demo_script(&p);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");

    // Events went through lake ingest into every raw table, broken deliveries into dead letters.
    for t in ["shopify_orders", "shopify_customers", "stripe_charges", "stripe_customers", "hubspot_contacts"] {
        assert!(p.sql_count(&format!("select count(*) from raw.{t}")) > 100, "raw.{t}");
    }
    let dead: i64 = ["shopify_orders", "shopify_customers", "stripe_charges", "stripe_customers", "hubspot_contacts"]
        .iter()
        .map(|t| p.lake(&["sql", &format!("select count(*) from raw.{t}__errors"), "--format", "csv"]))
        .filter(|o| o.code == 0)
        .map(|o| o.stdout.lines().nth(1).unwrap_or("0").parse::<i64>().unwrap_or(0))
        .sum();
    assert!(dead > 0, "the generator sends a few broken bodies; they are dead letters");
    // Every model built, every test passed (the script's build exits non-zero otherwise).
    assert!(stdout.contains("0 error") && stdout.contains("0 failed"), "{stdout}");
    // The printed people are linked across all three sources.
    let printed: Vec<&str> = stdout.lines().filter(|l| l.contains("cus_") && l.contains("| 61")).collect();
    assert!(printed.len() >= 3, "customer_360 rows with Shopify, Stripe and HubSpot ids:\n{stdout}");
    assert!(p.sql_count("select count(*) from marts.customer_360 where sources = 3") >= 20);

    // Staging is one row per source id, latest event wins.
    assert_eq!(
        p.sql_count("select count(*) from staging.stg_shopify_orders"),
        p.sql_count("select count(distinct id) from raw.shopify_orders")
    );
    assert_eq!(
        p.sql_count("select count(*) from staging.stg_shopify_orders s join (select id, max(updated_at) as u from raw.shopify_orders group by id) r on r.id = s.order_id and r.u = s.updated_at"),
        p.sql_count("select count(*) from staging.stg_shopify_orders")
    );

    // Entity resolution against the generator's truth.
    let (precision, recall, records) = score_entities(&p, &p.path().join("events/truth.csv"));
    assert!(records > 400, "{records} records scored");
    eprintln!("entity_index: precision {precision:.3}, recall {recall:.3} over {records} records");
    assert!(precision >= 0.98 && recall >= 0.95, "entity_index: precision {precision:.3}, recall {recall:.3} over {records} records");

    // Every table, as PyIceberg and DuckDB read it.
    let tables = assert_readers_match_lake(&p);
    assert!(tables.len() >= 16, "{tables:?}");
}

#[test]
fn ls_lists_the_pipeline_in_run_order() {
    let p = TestProject::demo();
    let out = p.lake(&["ls", "--select", "staging+", "--exclude", "sales_dashboard_daily"]);
    out.assert_ok();
    let names: Vec<&str> = out.stdout.lines().collect();
    assert!(names.first().unwrap().starts_with("staging."), "{names:?}");
    assert!(names.contains(&"marts.customer_360"), "{names:?}");
    assert!(!names.contains(&"marts.sales_dashboard_daily"), "{names:?}");
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("staging.stg_hubspot_contacts") < pos("semantic.entity_index"));
    assert!(pos("semantic.entity_index") < pos("analytics.customer_metrics"));
    assert!(pos("analytics.customer_metrics") < pos("marts.customer_360"));
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
pub fn shell_words(line: &str) -> Vec<String> {
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
    assert_eq!(lines.first().map(String::as_str), Some("bash scripts/demo.sh"), "the README's first command");
    let p = TestProject::demo();
    let mut ran = 0;
    for line in &lines {
        let words = shell_words(line);
        match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["cargo", "test", ..] => {}
            ["bash", "scripts/demo.sh"] => {
                let out = run_demo_script(&p);
                assert!(out.status.success(), "`{line}` failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                ran += 1;
            }
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
    assert!(run_demo_script(&p).status.success());
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
