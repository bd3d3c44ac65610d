//! `merge` with `merge_mode` merge-on-read: data files stay, replaced rows are marked by Iceberg
//! v2 position delete files committed in the merge's one snapshot. Every reader (lake, PyIceberg,
//! DuckDB) sees the same rows; compaction and `--full-refresh` leave no delete file behind.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::TestProject;

const HEADER: &str = "id,name,amount,batch\n";

fn project(merge_mode: Option<&str>) -> TestProject {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: items\n    config:\n      files: \"items_*.csv\"\n      column_types: {id: bigint, name: varchar, amount: bigint, batch: int}\n",
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: items\n");
    let mode = merge_mode.map(|m| format!(", merge_mode='{m}'")).unwrap_or_default();
    p.write(
        "models/staging/items.sql",
        &format!(
            "{{{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', dedupe_by='batch', watermark='batch'{mode}) }}}}\nselect id, name, amount, batch from {{{{ source('raw', 'items') }}}}\n{{% if is_incremental() %}}where batch > {{{{ watermark }}}}{{% endif %}}\n"
        ),
    );
    p
}

/// Seed batch `n` (rows as `(id, amount)`; name is `n<id>-<batch>`), run, and record the rows
/// in `expected` (the latest row per id).
fn merge_batch(p: &TestProject, n: u32, rows: &[(i64, i64)], expected: &mut BTreeMap<i64, Vec<String>>) {
    let mut csv = String::from(HEADER);
    for (id, amount) in rows {
        csv.push_str(&format!("{id},n{id}-{n},{amount},{n}\n"));
        expected.insert(*id, vec![id.to_string(), format!("n{id}-{n}"), amount.to_string(), n.to_string()]);
    }
    p.write(&format!("seeds/items_{n:03}.csv"), &csv);
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
}

fn summary_num(snapshot: &serde_json::Value, key: &str) -> u64 {
    snapshot["summary"][key].as_str().map(|v| v.parse().unwrap()).unwrap_or(0)
}

fn lake_rows(p: &TestProject) -> Vec<Vec<String>> {
    p.sql_rows("select id, name, amount, batch from staging.items order by id")
}

/// The table's rows as PyIceberg and DuckDB read them, sorted by id, and the field ids of every
/// live position delete file's columns.
fn reader_rows(p: &TestProject) -> serde_json::Value {
    let code = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import reader_stats as rs
import pyarrow.parquet as pq
table = rs.open_catalog(sys.argv[2], {}).load_table(("staging", "items"))
cols = ["id", "name", "amount", "batch"]
py = sorted([[str(r[c]) for c in cols] for r in table.scan().to_arrow().to_pylist()], key=lambda r: int(r[0]))
con = rs.duckdb_connection({})
location = table.metadata_location.removeprefix("file://")
duck = [[str(v) for v in r] for r in con.execute(f"select id, name, amount, batch from iceberg_scan('{location}') order by id").fetchall()]
ids, targets = [], []
for f in table.inspect.files().to_pylist():
    if f["content"] == 1:
        path = f["file_path"].removeprefix("file://")
        schema = pq.read_schema(path)
        ids.append([(fl.name, fl.metadata[b"PARQUET:field_id"].decode()) for fl in schema])
        targets.append(len(set(pq.read_table(path).column("file_path").to_pylist())))
json.dump({"pyiceberg": py, "duckdb": duck, "delete_field_ids": ids, "data_files_per_delete_file": targets}, sys.stdout)
"#;
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");
    let out = Command::new("python3").arg("-c").arg(code).arg(scripts).arg(p.path()).output().expect("python3");
    assert!(out.status.success(), "PyIceberg/DuckDB could not read the table:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("reader rows json")
}

/// lake, PyIceberg and DuckDB return exactly `expected`, row for row.
fn assert_all_read(p: &TestProject, expected: &BTreeMap<i64, Vec<String>>, context: &str) -> serde_json::Value {
    let want: Vec<Vec<String>> = expected.values().cloned().collect();
    assert_eq!(lake_rows(p), want, "{context}: lake sql");
    // A count reads no column: the files with deletes are read, the others counted.
    assert_eq!(p.sql_count("select count(*) from staging.items"), want.len() as i64, "{context}: count(*)");
    let readers = reader_rows(p);
    for reader in ["pyiceberg", "duckdb"] {
        let got: Vec<Vec<String>> = serde_json::from_value(readers[reader].clone()).unwrap();
        assert_eq!(got, want, "{context}: {reader}");
    }
    readers
}

#[test]
fn merge_on_read_writes_position_deletes_that_every_reader_applies() {
    let p = project(Some("merge-on-read"));
    let mut expected = BTreeMap::new();
    merge_batch(&p, 1, &[(1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)], &mut expected);
    let first = p.current_snapshot("staging.items");
    assert_eq!(first["operation"], "append");

    // Replaces 2 and 3 in the first file; 7 is new.
    merge_batch(&p, 2, &[(2, 21), (3, 31), (7, 70)], &mut expected);
    let s = p.current_snapshot("staging.items");
    assert_eq!(s["operation"], "overwrite");
    assert_eq!(summary_num(&s, "added-delete-files"), 1);
    assert_eq!(summary_num(&s, "added-position-deletes"), 2);
    assert_eq!(summary_num(&s, "deleted-data-files"), 0, "no data file is rewritten");
    assert_eq!(summary_num(&s, "total-delete-files"), 1);
    assert_eq!(summary_num(&s, "total-position-deletes"), 2);
    let result = p.run_results()["results"][0].clone();
    assert_eq!(result["files_removed"], 0);
    assert_eq!(result["files_rewritten"], 0);
    assert_eq!(result["bytes_rewritten"], 0);
    assert_eq!(result["delete_files_added"], 1);
    assert_all_read(&p, &expected, "after merge 2");

    // 2 again: its live row is now in batch 2's file, and the deleted one in the first file
    // must not be deleted (or counted) again; 4 still in the first file.
    // The two rows are in two data files: one delete file for each, naming it.
    merge_batch(&p, 3, &[(2, 22), (4, 41)], &mut expected);
    let s = p.current_snapshot("staging.items");
    assert_eq!(summary_num(&s, "added-position-deletes"), 2);
    assert_eq!(summary_num(&s, "added-delete-files"), 2);
    assert_eq!(summary_num(&s, "total-delete-files"), 3);
    assert_eq!(summary_num(&s, "total-position-deletes"), 4);
    merge_batch(&p, 4, &[(3, 32), (2, 23), (8, 80)], &mut expected);
    let s = p.current_snapshot("staging.items");
    assert_eq!(summary_num(&s, "added-position-deletes"), 2);
    assert_eq!(summary_num(&s, "total-position-deletes"), 6);
    assert_eq!(summary_num(&s, "total-data-files"), 4);
    let readers = assert_all_read(&p, &expected, "after merge 4");
    let ids = readers["delete_field_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 5, "five live position delete files: one per data file per merge");
    assert_eq!(readers["data_files_per_delete_file"], serde_json::json!([1, 1, 1, 1, 1]), "each names one data file");
    for file in ids {
        assert_eq!(file, &serde_json::json!([["file_path", "2147483546"], ["pos", "2147483545"]]));
    }

    // Compaction folds the deletes into the rewritten files: same rows, no delete file left.
    p.lake(&["maintain"]).assert_ok();
    let s = p.current_snapshot("staging.items");
    assert_eq!(s["operation"], "replace");
    assert_eq!(summary_num(&s, "removed-delete-files"), 5);
    assert_eq!(summary_num(&s, "total-delete-files"), 0);
    assert_eq!(summary_num(&s, "total-position-deletes"), 0);
    assert_eq!(summary_num(&s, "total-records"), expected.len() as u64);
    let readers = assert_all_read(&p, &expected, "after compaction");
    assert_eq!(readers["delete_field_ids"], serde_json::json!([]));

    // Merging goes on after compaction, then a full refresh drops the deletes too.
    merge_batch(&p, 5, &[(1, 11), (8, 81)], &mut expected);
    assert_eq!(summary_num(&p.current_snapshot("staging.items"), "total-delete-files"), 1);
    assert_all_read(&p, &expected, "after merge 5");
    p.lake(&["run", "--full-refresh"]).assert_ok();
    let s = p.current_snapshot("staging.items");
    assert_eq!(summary_num(&s, "total-delete-files"), 0);
    assert_eq!(summary_num(&s, "total-position-deletes"), 0);
    let readers = assert_all_read(&p, &expected, "after --full-refresh");
    assert_eq!(readers["delete_field_ids"], serde_json::json!([]));
}

/// The mode comes from the model, else the table's `write.merge.mode`, else `[write]
/// merge_mode`, else copy-on-write.
#[test]
fn merge_mode_comes_from_the_model_the_table_property_or_the_project() {
    let deletes_after_merge = |p: &TestProject, n: u32| {
        let mut expected = BTreeMap::new();
        merge_batch(p, n, &[(1, n as i64)], &mut expected);
        let s = p.current_snapshot("staging.items");
        (summary_num(&s, "added-delete-files"), summary_num(&s, "deleted-data-files"))
    };
    // Default: copy-on-write.
    let p = project(None);
    let mut expected = BTreeMap::new();
    merge_batch(&p, 1, &[(1, 1), (2, 2)], &mut expected);
    assert_eq!(deletes_after_merge(&p, 2), (0, 1));
    // The table property, as Spark sets it.
    let code = r#"
import sys
sys.path.insert(0, sys.argv[1])
import reader_stats as rs
table = rs.open_catalog(sys.argv[2], {}).load_table(("staging", "items"))
with table.transaction() as tx:
    tx.set_properties({"write.merge.mode": sys.argv[3]})
"#;
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");
    let set_property = |value: &str| {
        let out = Command::new("python3").arg("-c").arg(code).arg(scripts).arg(p.path()).arg(value).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    set_property("merge-on-read");
    assert_eq!(deletes_after_merge(&p, 3), (1, 0));
    // The model's own setting wins over the table's.
    p.write(
        "models/staging/items.sql",
        &std::fs::read_to_string(p.path().join("models/staging/items.sql"))
            .unwrap()
            .replace("watermark='batch'", "watermark='batch', merge_mode='copy-on-write'"),
    );
    assert_eq!(deletes_after_merge(&p, 4), (0, 1));
    // A bad table property names itself.
    set_property("sometimes");
    p.write(
        "models/staging/items.sql",
        &std::fs::read_to_string(p.path().join("models/staging/items.sql"))
            .unwrap()
            .replace(", merge_mode='copy-on-write'", ""),
    );
    p.write("seeds/items_005.csv", &format!("{HEADER}1,x,5,5\n"));
    p.lake(&["seed"]).assert_ok();
    let out = p.lake(&["run"]);
    assert_ne!(out.code, 0);
    assert!(out.all().contains("write.merge.mode") && out.all().contains("sometimes"), "{}", out.all());

    // The project default, under the table property and the model.
    let q = project(None);
    q.write("lake.toml", "name = \"test\"\n[write]\nmerge_mode = \"merge-on-read\"\n");
    let mut expected = BTreeMap::new();
    merge_batch(&q, 1, &[(1, 1), (2, 2)], &mut expected);
    assert_eq!(deletes_after_merge(&q, 2), (1, 0));
    q.write("lake.toml", "name = \"test\"\n[write]\nmerge_mode = \"often\"\n");
    let out = q.lake(&["run"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.all().contains("write.merge_mode"), "{}", out.all());
}

/// On a partitioned table each delete file carries the partition of the data files it points
/// into (readers attach deletes by partition); updated rows move to new partitions.
#[test]
fn merge_on_read_on_a_partitioned_table_deletes_in_the_right_partitions() {
    let p = project(Some("merge-on-read"));
    p.write(
        "models/staging/items.sql",
        &std::fs::read_to_string(p.path().join("models/staging/items.sql"))
            .unwrap()
            .replace("watermark='batch'", "watermark='batch', partition_by=['bucket(3, id)', 'batch']"),
    );
    let mut expected = BTreeMap::new();
    merge_batch(&p, 1, &[(1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)], &mut expected);
    merge_batch(&p, 2, &[(1, 11), (2, 21), (3, 31), (9, 90)], &mut expected);
    let s = p.current_snapshot("staging.items");
    assert_eq!(summary_num(&s, "added-position-deletes"), 3);
    assert!(summary_num(&s, "added-delete-files") >= 2, "one delete file per partition: {s}");
    merge_batch(&p, 3, &[(1, 12), (4, 41), (9, 91)], &mut expected);
    assert_all_read(&p, &expected, "partitioned, after merge 3");
    p.lake(&["maintain"]).assert_ok();
    assert_eq!(summary_num(&p.current_snapshot("staging.items"), "total-delete-files"), 0);
    assert_all_read(&p, &expected, "partitioned, after compaction");
}
