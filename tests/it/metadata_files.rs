//! Metadata files of frequently committed tables: `lake` keeps the last
//! `write.metadata.previous-versions-max` and deletes older ones when the table says
//! `write.metadata.delete-after-commit.enabled` (set on the tables it creates).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::TestProject;

/// `n` records as one NDJSON file, ingested with a flush (one commit) per record.
fn ingest_one_commit_per_record(p: &TestProject, first: usize, n: usize) {
    let text: String = (first..first + n).map(|i| format!("{{\"n\": {i}}}\n")).collect();
    p.write(&format!("landing/batch_{first}.ndjson"), &text);
    let file = p.path().join(format!("landing/batch_{first}.ndjson"));
    p.lake(&["ingest", "--from", file.to_str().unwrap(), "--table", "raw.ticks", "--batch-rows", "1", "--once"])
        .assert_ok();
}

fn metadata_dir(p: &TestProject) -> PathBuf {
    let location = p.show("raw.ticks")["location"].as_str().unwrap().to_string();
    PathBuf::from(location.trim_start_matches("file://")).join("metadata")
}

fn metadata_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".metadata.json"))
        .collect();
    out.sort();
    out
}

/// The metadata log of the current metadata file, as file names.
fn logged(p: &TestProject) -> Vec<String> {
    let current = p.show("raw.ticks")["metadata_location"].as_str().unwrap().trim_start_matches("file://").to_string();
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(current).unwrap()).unwrap();
    doc["metadata-log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["metadata-file"].as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect()
}

#[test]
fn a_table_committed_hundreds_of_times_keeps_only_the_logged_metadata_files() {
    let p = TestProject::new();
    ingest_one_commit_per_record(&p, 0, 130);
    assert_eq!(p.sql_count("select count(*) from raw.ticks"), 130);
    assert!(p.snapshot_count("raw.ticks") >= 130);
    let show = p.show("raw.ticks");
    let properties = serde_json::to_string(&show).unwrap();
    assert!(properties.contains("write.metadata.delete-after-commit.enabled"), "{properties}");
    let dir = metadata_dir(&p);
    let files = metadata_files(&dir);
    let log = logged(&p);
    assert_eq!(log.len(), 100, "the log keeps write.metadata.previous-versions-max entries");
    // Exactly the current file and the logged ones are left.
    assert_eq!(files.len(), 101, "{files:?}");
    for name in &log {
        assert!(files.contains(name), "logged metadata file {name} was deleted");
    }
    // Every reader still sees every row.
    let readers = crate::support::readers::assert_readers_match_lake(&p);
    assert!(!readers.is_empty());
}

#[test]
fn a_table_that_keeps_its_metadata_files_keeps_them() {
    let p = TestProject::new();
    ingest_one_commit_per_record(&p, 0, 3);
    // As another engine's table would say (Iceberg's default).
    let code = r#"
import sys
sys.path.insert(0, sys.argv[1])
import reader_stats as rs
table = rs.open_catalog(sys.argv[2], {}).load_table(("raw", "ticks"))
with table.transaction() as tx:
    tx.set_properties({"write.metadata.delete-after-commit.enabled": "false", "write.metadata.previous-versions-max": "5"})
"#;
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");
    let out = Command::new("python3").arg("-c").arg(code).arg(scripts).arg(p.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = metadata_files(&metadata_dir(&p)).len();
    ingest_one_commit_per_record(&p, 3, 10);
    assert_eq!(p.sql_count("select count(*) from raw.ticks"), 13);
    assert_eq!(logged(&p).len(), 5);
    assert!(metadata_files(&metadata_dir(&p)).len() >= before + 10);
}
