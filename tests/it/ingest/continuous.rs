//! A continuous (not `--once`) file ingest over many flushes: what it reports, and what it
//! costs while there is nothing new to read.

use std::time::Duration;

use super::{Running, append, line, project};

/// The `ingest_finished` report and the `ingest_flush` rows of a `--log-format json` run.
fn json_events(stdout: &[u8]) -> (serde_json::Value, u64) {
    let text = String::from_utf8_lossy(stdout);
    let events: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let finished = events.iter().find(|e| e["event"] == "ingest_finished").unwrap_or_else(|| panic!("no ingest_finished: {text}"));
    let flushed = events.iter().filter(|e| e["event"] == "ingest_flush").map(|e| e["rows"].as_u64().unwrap()).sum();
    (finished["report"].clone(), flushed)
}

#[test]
fn records_read_equal_the_lines_of_a_continuous_run() {
    // A file seen empty (or with only a partial line) got an in-memory position that was never
    // committed; its first flush then looked like another process had consumed it and was
    // redone, and its records were counted twice (11,000 read for 10,000 lines).
    let p = project("[ingest.events.batch]\nrows = 1000\nseconds = 0.2\n");
    p.write("landing/a.ndjson", &format!("{}\n", line(0)));
    let mut running = Running::start(&p, &["ingest", "events", "--log-format", "json"]);
    running.wait_for(&p, "select count(*) from raw.events", 1);
    p.write("landing/b.ndjson", "");
    // Polled every 100 ms: the empty file is opened (and found empty) meanwhile.
    std::thread::sleep(Duration::from_millis(2000));
    let lines: String = (1..=10_000).map(|id| line(id) + "\n").collect();
    append(&p, "landing/b.ndjson", &lines);
    running.wait_for(&p, "select count(*) from raw.events", 10_001);
    let out = running.stop_output();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (report, flushed) = json_events(&out.stdout);
    assert_eq!(report["records"], 10_001, "{report}");
    assert_eq!(report["rows"], 10_001, "{report}");
    assert_eq!(report["redone"], 0, "no flush is redone when no other process reads the files: {report}");
    assert!(report["flushes"].as_u64().unwrap() >= 11, "{report}");
    assert_eq!(flushed, 10_001);
    assert_eq!(p.sql_count("select count(distinct id) from raw.events"), 10_001);
}
