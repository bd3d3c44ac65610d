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

/// Bytes the process `pid` has read so far (`rchar`), and its CPU time in clock ticks.
fn read_and_cpu(pid: u32) -> (u64, u64) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let rchar = io.lines().find_map(|l| l.strip_prefix("rchar: ")).unwrap().trim().parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (rchar, ticks)
}

fn clock_ticks_per_second() -> u64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn big_line(id: u64, pad: &str) -> String {
    format!("{{\"id\": {id}, \"pad\": \"{pad}\"}}\n")
}

#[test]
fn a_restarted_continuous_ingest_tails_its_file_instead_of_reading_it_again() {
    // Positions held lines only, so a new process counted its way through every line already
    // loaded (a 570 MB file read again) before it reached the new ones.
    let p = crate::support::TestProject::new();
    p.write(
        "lake.toml",
        "name = \"t\"\n[ingest.big]\nfrom = \"landing/*.ndjson\"\ntable = \"raw.big\"\ncolumns = { id = \"bigint\", pad = \"varchar\" }\n\
         [ingest.big.batch]\nrows = 100000\nseconds = 0.2\n",
    );
    let pad = "x".repeat(2000);
    let n = 12_000;
    let text: String = (1..=n).map(|id| big_line(id, &pad)).collect();
    let size = text.len() as u64;
    p.write("landing/big.ndjson", &text);
    p.lake(&["ingest", "big", "--once"]).assert_ok();

    let mut running = Running::start(&p, &["ingest", "big"]);
    let pid = running.0.id();
    std::thread::sleep(Duration::from_millis(3000));
    // Idle: no new bytes, (almost) no CPU.
    let (_, before) = read_and_cpu(pid);
    std::thread::sleep(Duration::from_millis(3000));
    let (_, after) = read_and_cpu(pid);
    let tick = clock_ticks_per_second();
    assert!(after - before < tick, "an idle ingest used {} ticks of CPU in 3 s (at {tick}/s)", after - before);
    // Appended lines are picked up, each once.
    for id in n + 1..=n + 5 {
        append(&p, "landing/big.ndjson", &big_line(id, "y"));
        std::thread::sleep(Duration::from_millis(300));
    }
    running.wait_for(&p, "select count(*) from raw.big", n as i64 + 5);
    let (read, _) = read_and_cpu(pid);
    assert!(read < size / 4, "the restarted ingest read {read} bytes for a {size}-byte file it had loaded");
    let (code, stderr) = running.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(p.sql_count("select count(distinct id) from raw.big"), n as i64 + 5);
    assert_eq!(p.sql_count("select count(*) from raw.big where pad = 'y'"), 5);
}

#[test]
fn a_file_truncated_or_replaced_after_it_was_read_is_an_error_not_a_skip() {
    let p = project("");
    p.write("landing/a.ndjson", &format!("{}\n", line(1)));
    p.write("landing/b.ndjson", "");
    p.lake(&["ingest", "events", "--once"]).assert_ok();
    // b was first seen empty; it grows, is loaded, then is replaced by another file.
    let lines = |ids: std::ops::RangeInclusive<u64>| ids.map(|id| line(id) + "\n").collect::<String>();
    p.write("landing/b.ndjson", &lines(2..=4));
    p.lake(&["ingest", "events", "--once"]).assert_ok();
    p.write("landing/b.ndjson", &lines(100..=105));
    let out = p.lake(&["ingest", "events", "--once"]);
    assert_ne!(out.code, 0, "a replaced file must not have its first lines skipped: {}", out.all());
    assert!(out.stderr.contains("b.ndjson changed since lake ingest read it"), "{}", out.all());
    std::fs::remove_file(p.path().join("landing/b.ndjson")).unwrap();

    // A file beyond the fingerprinted first KiB: loaded, then cut short.
    p.write("landing/c.ndjson", &lines(200..=229));
    p.lake(&["ingest", "events", "--once"]).assert_ok();
    p.write("landing/c.ndjson", &lines(200..=219));
    let out = p.lake(&["ingest", "events", "--once"]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("c.ndjson is") && out.stderr.contains("truncated or replaced"), "{}", out.all());
    // Replaced by a longer file with the same first lines but others after them: the lines
    // already loaded no longer end where they did.
    let replaced = lines(200..=219) + &lines(1_000_220..=1_000_240);
    p.write("landing/c.ndjson", &replaced);
    let out = p.lake(&["ingest", "events", "--once"]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("c.ndjson changed since lake ingest read it"), "{}", out.all());
    assert_eq!(p.sql_count("select count(*) from raw.events"), 1 + 3 + 30, "nothing of the replaced files was loaded");
}
