//! Incremental entity resolution equals a full build: records that arrive late, change (and
//! so may leave their cluster or split it), or arrive again unchanged, resolved run by run
//! through a merged staging table, leave the same index as one `--full-refresh` of the same data.

use std::process::Command;

use crate::resolve::synthetic;
use crate::support::TestProject;

/// Splits the generator's customers into three files with a `version` column; the third also
/// holds new versions of 120 records of the first (emails and phones replaced, some names
/// swapped) and 60 unchanged copies of records of the second. A fourth file holds one record of
/// the second with a new email.
const SPLIT: &str = r#"
import csv, random, sys
rows = list(csv.DictReader(open(sys.argv[1])))
out = sys.argv[2]
n = len(rows) // 3
chunks = [rows[:n], rows[n:2 * n], rows[2 * n:]]
rng = random.Random(17)
changed = []
for r in rng.sample(chunks[0], 120):
    c = dict(r)
    c["email"] = f"moved.{rng.randrange(10**6)}@example.org" if rng.random() < 0.7 else ""
    c["phone"] = "" if rng.random() < 0.5 else c["phone"]
    if rng.random() < 0.2:
        c["first_name"], c["last_name"] = c["last_name"], c["first_name"]
    changed.append(c)
again = [dict(r) for r in rng.sample(chunks[1], 60)]
for k, chunk in enumerate(chunks):
    rows_out = [dict(r, version=1) for r in chunk]
    if k == 2:
        rows_out += [dict(r, version=2) for r in changed + again]
    with open(f"{out}/customers_{k}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) + ["version"])
        w.writeheader()
        w.writerows(rows_out)
with open(f"{out}/customers_3.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) + ["version"])
    w.writeheader()
    w.writerow(dict(chunks[1][0], version=3, email="one.change@example.org"))
"#;

/// A project whose `customers_*.csv` seeds (columns `types`, with a `version`) are staged as
/// the latest version of each record, merged by id, and resolved by an incremental
/// `semantic.entity_index`.
fn staged_entity_index(p: &TestProject, types: &str) {
    p.write(
        "seeds/seeds.yml",
        &format!("seeds:\n  - name: customers\n    config:\n      files: \"customers_*.csv\"\n      column_types: {{{types}}}\n"),
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: customers\n");
    p.write(
        "models/staging/stg_customers.sql",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='record_id', watermark='snapshot') }}\n\
         select * exclude (rn) from (select *, row_number() over (partition by record_id order by version desc) as rn \
         from {{ source('raw', 'customers') }}) where rn = 1\n",
    );
    p.write("models/semantic/entity_index.yml", &crate::resolve::incremental_entity_index("stg_customers"));
}

fn index(p: &TestProject) -> Vec<Vec<String>> {
    p.sql_rows("select * exclude (updated_at) from semantic.entity_index order by source, source_id")
}

#[test]
fn incremental_runs_with_changed_records_leave_the_index_a_full_build_leaves() {
    let p = TestProject::new();
    let input = synthetic(p.path(), 2_000, 29);
    std::fs::create_dir_all(p.path().join("incoming")).unwrap();
    let out = Command::new("python3").arg("-c").arg(SPLIT).arg(&input).arg(p.path().join("incoming")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let types = "record_id: varchar, source: varchar, true_id: varchar, first_name: varchar, last_name: varchar, \
                 email: varchar, phone: varchar, dob: varchar, postcode: varchar, address: varchar, version: int";
    staged_entity_index(&p, types);
    for k in 0..4 {
        std::fs::copy(
            p.path().join(format!("incoming/customers_{k}.csv")),
            p.path().join(format!("seeds/customers_{k}.csv")),
        )
        .unwrap();
        p.lake(&["seed"]).assert_ok();
        p.lake(&["run"]).assert_ok();
    }
    let results = p.run_results();
    let entity_index = results["results"].as_array().unwrap().iter().find(|r| r["name"] == "entity_index").unwrap();
    assert!(entity_index["input_files_read"].is_object(), "the last run read its input incrementally: {entity_index}");
    let stats = p.sql_rows("select mode, records_compared, records_in from semantic.entity_resolution_stats order by run_at");
    assert_eq!(stats.iter().map(|s| s[0].as_str()).collect::<Vec<_>>(), ["full", "incremental", "incremental", "incremental"]);
    let (compared, total): (usize, usize) = (stats[2][1].parse().unwrap(), stats[2][2].parse().unwrap());
    assert!(compared < total, "the third run re-resolved only part of the index: {stats:?}");
    // One changed record: the run reads into records only its cluster, the records sharing a
    // block with it and their clusters, not the whole index.
    let indexed = p.sql_count("select count(*) from semantic.entity_index") as usize;
    let read: usize = stats[3][2].parse().unwrap();
    assert!(read > 1 && read * 10 < indexed, "one change read {read} of {indexed} records: {stats:?}");
    let incremental = index(&p);
    let moved = p.sql_count("select count(*) from semantic.entity_index where email like 'moved.%'");
    assert!(moved > 50, "the changed records are in the index: {moved}");

    p.lake(&["run", "--full-refresh"]).assert_ok();
    let full = index(&p);
    assert_eq!(incremental.len(), full.len());
    let differ: Vec<_> = incremental.iter().zip(&full).filter(|(a, b)| a != b).take(5).collect();
    assert!(differ.is_empty(), "the incremental index differs from a full build: {differ:#?}");
}

/// A record that leaves the cluster still holding the id made from it, and later needs a new
/// id, must not take that id while the cluster keeps it, even when the incremental run reads
/// none of the cluster's records (they share no blocking key with the change).
#[test]
fn a_new_entity_never_takes_the_id_of_a_cluster_the_run_did_not_read() {
    let p = TestProject::new();
    let header = "record_id,first_name,last_name,email,phone,dob,postcode,address,version";
    let runs = [
        vec!["d1,,,b@x.org,,,,,1", "d2,,,b@x.org,,,,,1"],
        vec!["x1,,,a@x.org,,,,,1", "y1,,,a@x.org,,,,,1"],
        // x1 joins d1/d2 (their id is older); y1 keeps the id made from x1.
        vec!["x1,,,b@x.org,,,,,2"],
        // x1 leaves again and needs a new id: not y1's.
        vec!["x1,,,c@x.org,,,,,3"],
    ];
    let types = "record_id: varchar, first_name: varchar, last_name: varchar, email: varchar, phone: varchar, \
                 dob: varchar, postcode: varchar, address: varchar, version: int";
    staged_entity_index(&p, types);
    let entity = |p: &TestProject, id: &str| {
        p.sql_rows(&format!("select entity_id from semantic.entity_index where source_id = '{id}'"))[0][0].clone()
    };
    for (k, rows) in runs.iter().enumerate() {
        p.write(&format!("seeds/customers_{k}.csv"), &format!("{header}\n{}\n", rows.join("\n")));
        p.lake(&["seed"]).assert_ok();
        p.lake(&["run"]).assert_ok();
        if k == 2 {
            assert_eq!(entity(&p, "x1"), entity(&p, "d1"), "x1 joined d1");
            assert_ne!(entity(&p, "x1"), entity(&p, "y1"));
        }
    }
    let stats = p.sql_rows("select records_in from semantic.entity_resolution_stats order by run_at");
    assert_eq!(stats.len(), 4);
    assert!(stats[3][0].parse::<usize>().unwrap() < 5, "the last run read only x1's cluster: {stats:?}");
    assert_eq!(entity(&p, "d1"), entity(&p, "d2"));
    assert_ne!(entity(&p, "x1"), entity(&p, "d1"), "x1 left d1's entity");
    assert_ne!(entity(&p, "x1"), entity(&p, "y1"), "x1 took the id of y1's entity");
    let incremental = index(&p);
    p.lake(&["run", "--full-refresh"]).assert_ok();
    assert_eq!(incremental, index(&p), "the incremental index differs from a full build");
}
