//! `lake ingest` from files and stdin: typed rows and dead letters, each record exactly once
//! across reruns, SIGKILL and SIGTERM, schema inference and `_extra`, and other readers.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestProject, lake_bin};

mod continuous;
mod decode;

fn project(extra: &str) -> TestProject {
    let p = TestProject::new();
    p.write(
        "lake.toml",
        &format!(
            r#"name = "ingest_test"

[ingest.events]
from = "landing/*.ndjson"
table = "raw.events"
columns = {{ id = "bigint", kind = "varchar", amount = "double", at = "timestamptz" }}
required = ["id"]
map = {{ kind = "meta.kind" }}
event_type = "meta.kind"
{extra}
"#
        ),
    );
    p
}

fn line(id: u64) -> String {
    format!(r#"{{"id": {id}, "meta": {{"kind": "k{}"}}, "amount": {}.5, "at": "2026-01-01T10:00:00+02:00"}}"#, id % 3, id)
}

#[test]
fn files_land_typed_rows_and_dead_letters_exactly_once() {
    let p = project("");
    let mut first = (1..=5).map(line).collect::<Vec<_>>();
    first.push("{not json".into());
    first.push(r#"{"id": "seven", "amount": 1}"#.into());
    first.push(r#"{"amount": 2}"#.into());
    first.push(String::new());
    p.write("landing/a.ndjson", &(first.join("\n") + "\n"));

    let out = p.lake(&["ingest", "events", "--once"]);
    out.assert_ok();
    assert!(out.stdout.contains("5 rows to raw.events, 3 dead letters"), "{}", out.all());
    assert_eq!(p.sql_count("select count(*) from raw.events"), 5);
    // Timestamps with zones are stored in UTC; mapped and metadata columns are filled.
    let rows = p.sql_rows(
        "select id, kind, _event_type, cast(at as varchar), _source, _path like '%landing/a.ndjson', _line from raw.events order by id limit 1",
    );
    assert_eq!(rows[0][0..3], ["1", "k1", "k1"]);
    assert!(rows[0][3].starts_with("2026-01-01T08:00:00"), "{rows:?}");
    assert_eq!(rows[0][4..], ["events", "true", "1"]);
    let errors = p.sql_rows("select error_type, _line, error_message from raw.events__errors order by _line");
    assert_eq!(errors.len(), 3);
    assert_eq!((errors[0][0].as_str(), errors[0][1].as_str()), ("parse", "6"));
    assert_eq!((errors[1][0].as_str(), errors[1][1].as_str()), ("type", "7"));
    assert!(errors[1][2].contains("field `id`: expected bigint"), "{errors:?}");
    assert_eq!((errors[2][0].as_str(), errors[2][1].as_str()), ("validation", "8"));
    let snapshot = p.current_snapshot("raw.events");
    assert_eq!(snapshot["summary"]["lake.model"], "ingest:events");
    assert!(snapshot["summary"]["lake.ingest.positions.events"].as_str().unwrap().contains("\"consumed\":9"));

    // A rerun reads nothing new and commits nothing.
    let before = p.snapshot_count("raw.events");
    p.lake(&["ingest", "events", "--once"]).assert_ok();
    assert_eq!(p.snapshot_count("raw.events"), before);
    assert_eq!(p.sql_count("select count(*) from raw.events__errors"), 3);

    // Lines appended to a read file and a new file: only they are loaded.
    let mut more = first.join("\n") + "\n";
    more.push_str(&(line(6) + "\n"));
    p.write("landing/a.ndjson", &more);
    p.write("landing/b.ndjson", &format!("{}\n{}\n", line(7), line(8)));
    p.lake(&["ingest", "events", "--once"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.events"), 8);
    assert_eq!(p.sql_count("select count(distinct id) from raw.events"), 8);
    assert_eq!(p.sql_count("select count(*) from raw.events__errors"), 3);

    // A loaded file replaced by another is refused, not loaded twice.
    p.write("landing/b.ndjson", &format!("{}\n", line(99)));
    let out = p.lake(&["ingest", "events", "--once"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("b.ndjson changed since lake ingest read it"), "{}", out.stderr);
    assert_eq!(p.sql_count("select count(*) from raw.events"), 8);

    let status = p.lake(&["ingest", "--status"]);
    status.assert_ok();
    assert!(status.stdout.contains("events: landing/*.ndjson → raw.events: 8 rows, 3 dead letters, 2 streams"), "{}", status.stdout);

    // PyIceberg and DuckDB read the raw and the dead-letter table as lake does.
    crate::support::readers::assert_readers_match_lake(&p);
}

#[test]
fn error_rate_above_the_threshold_exits_non_zero_after_committing() {
    let p = project("max_error_rate = 0.2");
    p.write("landing/a.ndjson", &format!("{}\n{{bad\n{{bad\n{}\n", line(1), line(2)));
    let out = p.lake(&["ingest", "events", "--once"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("50.0% of its records to raw.events were dead letters, above max_error_rate 20.0%"), "{}", out.stderr);
    assert_eq!(p.sql_count("select count(*) from raw.events"), 2);
    assert_eq!(p.sql_count("select count(*) from raw.events__errors"), 2);
}

#[test]
fn inferred_schema_keeps_new_fields_in_extra_or_evolves() {
    let p = TestProject::new();
    p.write("a.ndjson", "{\"id\": 1, \"name\": \"x\", \"at\": \"2026-02-03T04:05:06Z\", \"tags\": [1,2]}\n");
    p.lake(&["ingest", "--from", "a.ndjson", "--table", "raw.adhoc", "--once"]).assert_ok();
    let schema = p.show("raw.adhoc");
    let text = schema.to_string();
    assert!(text.contains("\"id\"") && text.contains("long"), "{text}");
    assert!(text.contains("timestamptz"), "{text}");
    // A later file with a new field: kept in _extra, schema fixed.
    p.write("b.ndjson", "{\"id\": 2, \"name\": \"y\", \"color\": \"red\"}\n");
    p.lake(&["ingest", "--from", "file://b.ndjson", "--table", "raw.adhoc", "--once"]).assert_ok();
    let rows = p.sql_rows("select id, name from raw.adhoc order by id");
    assert_eq!(rows, vec![vec!["1".to_string(), "x".into()], vec!["2".into(), "y".into()]]);

    // With evolve, a new field becomes a nullable column in the same commit.
    p.write(
        "lake.toml",
        "name = \"t\"\n[ingest.ev]\nfrom = \"c*.ndjson\"\ntable = \"raw.evolving\"\nevolve = true\n",
    );
    p.write("c1.ndjson", "{\"id\": 1}\n");
    p.lake(&["ingest", "ev", "--once"]).assert_ok();
    p.write("c2.ndjson", "{\"id\": 2, \"color\": \"red\"}\n");
    p.lake(&["ingest", "ev", "--once"]).assert_ok();
    let rows = p.sql_rows("select id, color from raw.evolving order by id");
    assert_eq!(rows, vec![vec!["1".to_string(), String::new()], vec!["2".into(), "red".into()]]);
}

#[test]
fn stdin_lands_in_a_raw_table() {
    let p = TestProject::new();
    let mut child = Command::new(lake_bin())
        .args(["ingest", "--from", "-", "--table", "raw.piped", "--once"])
        .current_dir(p.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..100 {
        writeln!(stdin, "{{\"n\": {i}}}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(p.sql_count("select count(*) from raw.piped"), 100);
    assert_eq!(p.sql_count("select sum(n) from raw.piped"), 4950);
}

#[test]
fn sigterm_flushes_and_exits_zero() {
    let p = project("[ingest.events.batch]\nseconds = 0.3\n");
    p.write("landing/a.ndjson", &format!("{}\n", line(1)));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(lake_bin())
        .args(["ingest", "events", "--metrics-addr", &metrics_addr])
        .current_dir(p.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It keeps running and picks up a file that arrives later.
    std::thread::sleep(Duration::from_millis(1500));
    p.write("landing/b.ndjson", &format!("{}\n{}\n", line(2), line(3)));
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.lake(&["sql", "select count(*) from raw.events", "--format", "csv"]).stdout.lines().nth(1) != Some("3") {
        assert!(Instant::now() < deadline, "the running ingest did not pick up the new file");
        assert!(child.try_wait().unwrap().is_none(), "lake ingest exited early");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Prometheus metrics of the running process.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {metrics_addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut metrics = String::new();
    std::io::Read::read_to_string(&mut stream, &mut metrics).unwrap();
    assert!(metrics.contains("lake_ingest_records_total{source=\"events\"} 3"), "{metrics}");
    assert!(metrics.contains("# TYPE lake_ingest_commits_total counter"), "{metrics}");
    assert!(!metrics.contains("lake_ingest_commits_total{source=\"events\"} 0"), "{metrics}");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(p.sql_count("select count(*) from raw.events"), 3);
}

/// A small deterministic generator (xorshift) so the crash points vary by seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_at_random_moments_loses_and_repeats_nothing() {
    let p = project("");
    let files = 4;
    let per_file = 5_000u64;
    let mut expected_bad = 0;
    for f in 0..files {
        let mut text = String::new();
        for i in 0..per_file {
            let id = f * per_file + i;
            if id % 97 == 0 {
                text.push_str("{\"id\": \"broken\"}\n");
                expected_bad += 1;
            } else {
                text.push_str(&line(id));
                text.push('\n');
            }
        }
        p.write(&format!("landing/part{f}.ndjson"), &text);
    }
    let total = files * per_file;
    let seed = std::env::var("LAKE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_u64);
    let mut rng = Rng(seed);
    let mut kills = 0;
    for _ in 0..6 {
        let mut child = Command::new(lake_bin())
            .args(["ingest", "events", "--once", "--batch-rows", "700"])
            .current_dir(p.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200 + rng.next() % 1500));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let _ = child.wait();
    }
    let out = p.lake(&["ingest", "events", "--once", "--batch-rows", "700"]);
    out.assert_ok();
    println!("ingest crash test: {kills} SIGKILLs (seed {seed})");

    let rows = p.sql_count("select count(*) from raw.events") as u64;
    let dead = p.sql_count("select count(*) from raw.events__errors") as u64;
    assert_eq!(rows + dead, total, "rows {rows} + dead letters {dead}");
    assert_eq!(dead, expected_bad);
    let distinct = |table: &str| p.sql_count(&format!("select count(*) from (select distinct _path, _line from {table})")) as u64;
    assert_eq!(distinct("raw.events"), rows, "no record twice");
    assert_eq!(distinct("raw.events__errors"), dead, "no dead letter twice");
    // No gaps: every line of every file is in one of the two tables.
    let lines: HashSet<String> = p
        .sql_rows("select _path || ':' || _line from raw.events union all select _path || ':' || _line from raw.events__errors")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(lines.len() as u64, total);
}

#[test]
fn csv_and_parquet_files_land_with_declared_types() {
    let p = TestProject::new();
    p.write(
        "lake.toml",
        r#"name = "t"
[ingest.csvs]
from = "in/*.csv"
table = "raw.from_csv"
columns = { id = "bigint", name = "varchar", amount = "double", at = "timestamptz" }
required = ["id"]

[ingest.parquets]
from = "in/*.parquet"
table = "raw.from_parquet"
"#,
    );
    p.write(
        "in/a.csv",
        "id, name, amount, at\n1, \"Lee, Ann\", 2.5, 2026-01-01T00:00:00Z\n2, Bob, , 2026-01-02T00:00:00+01:00\n, nobody, 1, 2026-01-03T00:00:00Z\nx, bad, 1, 2026-01-03T00:00:00Z\n",
    );
    let out = p.lake(&["ingest", "csvs", "--once"]);
    out.assert_ok();
    assert_eq!(p.sql_rows("select id, replace(name, ',', ';'), amount from raw.from_csv order by id"), vec![
        vec!["1".to_string(), "Lee; Ann".into(), "2.5".into()],
        vec!["2".into(), "Bob".into(), String::new()],
    ]);
    let errors = p.sql_rows("select _line, error_type from raw.from_csv__errors order by _line");
    assert_eq!(errors, vec![vec!["3".to_string(), "validation".into()], vec!["4".into(), "type".into()]]);

    let script = format!(
        "import pyarrow as pa, pyarrow.parquet as pq\npq.write_table(pa.table({{'id': [1, 2, 3], 'kind': ['a', 'b', None]}}), '{}')",
        p.path().join("in/b.parquet").display()
    );
    assert!(Command::new("python3").args(["-c", &script]).status().unwrap().success());
    p.lake(&["ingest", "parquets", "--once"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.from_parquet"), 3);
    assert_eq!(p.sql_count("select sum(id) from raw.from_parquet where kind is not null"), 3);
    // A rerun loads nothing again.
    p.lake(&["ingest", "--all", "--once"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.from_parquet"), 3);
    assert_eq!(p.sql_count("select count(*) from raw.from_csv"), 2);
}

#[test]
fn objects_under_an_s3_prefix_land_once() {
    // A real S3 API on loopback: moto's server (pip moto[server], installed by .ci/run).
    let moto = crate::support::s3::Moto::start(0);
    let port = moto.port;
    moto.create_bucket("landing");
    let upload = |key: &str, body: &str| moto.boto(&format!("s3.put_object(Bucket='landing', Key='{key}', Body={body:?}.encode())"));
    upload("events/2026-11-01.ndjson", "{\"id\": 1}\n{\"id\": 2}\n{bad\n");
    upload("events/2026-11-02.ndjson", "{\"id\": 3}\n");
    upload("other/skip.ndjson", "{\"id\": 99}\n");
    let p = TestProject::new();
    p.write(
        "lake.toml",
        &format!(
            "name = \"t\"\n[storage]\n\"s3.endpoint\" = \"http://127.0.0.1:{port}\"\n\"s3.region\" = \"us-east-1\"\n\
             \"s3.access-key-id\" = \"k\"\n\"s3.secret-access-key\" = \"s\"\n\n[ingest.landing]\nfrom = \"s3://landing/events\"\n\
             table = \"raw.landing\"\ncolumns = {{ id = \"bigint\" }}\n"
        ),
    );
    p.lake(&["ingest", "landing", "--once"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.landing"), 3);
    assert_eq!(p.sql_count("select count(*) from raw.landing__errors"), 1);
    assert_eq!(p.sql_rows("select _path from raw.landing where id = 3")[0][0], "s3://landing/events/2026-11-02.ndjson");
    // Only a new object is read on the next run.
    upload("events/2026-11-03.ndjson", "{\"id\": 4}\n{\"id\": 5}\n");
    p.lake(&["ingest", "landing", "--once"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.landing"), 5);
    assert_eq!(p.sql_count("select count(distinct id) from raw.landing"), 5);
}

/// Runs `lake ingest <args>` in the background until it is sent SIGTERM.
struct Running(std::process::Child);

impl Running {
    fn start(p: &TestProject, args: &[&str]) -> Running {
        let child = Command::new(lake_bin())
            .args(args)
            .current_dir(p.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Running(child)
    }

    /// Waits until `query` (a count) returns `n`.
    fn wait_for(&mut self, p: &TestProject, query: &str, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = p.lake(&["sql", query, "--format", "csv"]);
            if out.stdout.lines().nth(1) == Some(n.to_string().as_str()) {
                return;
            }
            assert!(Instant::now() < deadline, "`{query}` did not reach {n}: {}", out.all());
            assert!(self.0.try_wait().unwrap().is_none(), "lake ingest exited early");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then the exit code and stderr.
    fn stop(self) -> (Option<i32>, String) {
        let out = self.stop_output();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// SIGTERM, then everything the process printed.
    fn stop_output(self) -> std::process::Output {
        assert!(Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status().unwrap().success());
        self.0.wait_with_output().unwrap()
    }
}

fn append(p: &TestProject, relative: &str, text: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(p.path().join(relative)).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.flush().unwrap();
}

#[test]
fn a_line_still_being_written_lands_once_when_complete() {
    let p = project("[ingest.events.batch]\nseconds = 0.2\n");
    p.write("landing/a.ndjson", &format!("{}\n", line(1)));
    let mut running = Running::start(&p, &["ingest", "events"]);
    running.wait_for(&p, "select count(*) from raw.events", 1);
    // A writer appends half a line, pauses (the ingest polls meanwhile), then completes it.
    let second = line(2);
    let (head, tail) = second.split_at(second.len() / 2);
    append(&p, "landing/a.ndjson", head);
    std::thread::sleep(Duration::from_millis(1000));
    append(&p, "landing/a.ndjson", &format!("{tail}\n{}\n", line(3)));
    running.wait_for(&p, "select count(*) from raw.events", 3);
    let (code, stderr) = running.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(p.sql_rows("select id, _line from raw.events order by id"), vec![
        vec!["1".to_string(), "1".into()],
        vec!["2".into(), "2".into()],
        vec!["3".into(), "3".into()],
    ]);
    let status = p.lake(&["ingest", "--status"]);
    assert!(status.stdout.contains("3 rows, 0 dead letters"), "{}", status.all());

    // A file that ends without a newline: once it is stable, its last line is read (once).
    p.write("landing/b.ndjson", &line(4));
    p.lake(&["ingest", "events", "--once"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.events where id = 4"), 1);
    append(&p, "landing/b.ndjson", &format!("\n{}\n", line(5)));
    p.lake(&["ingest", "events", "--once"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.events"), 5);
    assert_eq!(p.sql_count("select count(distinct id) from raw.events"), 5);
}

#[test]
fn a_csv_row_still_being_written_is_not_stored_truncated() {
    let p = TestProject::new();
    p.write(
        "lake.toml",
        "name = \"t\"\n[ingest.prices]\nfrom = \"in/*.csv\"\ntable = \"raw.prices\"\n\
         columns = { id = \"bigint\", amount = \"double\" }\n[ingest.prices.batch]\nseconds = 0.2\n",
    );
    p.write("in/p.csv", "id,amount\n1,10.5\n");
    let mut running = Running::start(&p, &["ingest", "prices"]);
    running.wait_for(&p, "select count(*) from raw.prices", 1);
    append(&p, "in/p.csv", "2,25");
    std::thread::sleep(Duration::from_millis(1000));
    append(&p, "in/p.csv", ".75\n3,1\n");
    running.wait_for(&p, "select count(*) from raw.prices", 3);
    let (code, stderr) = running.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(p.sql_rows("select id, amount from raw.prices order by id"), vec![
        vec!["1".to_string(), "10.5".into()],
        vec!["2".into(), "25.75".into()],
        vec!["3".into(), "1.0".into()],
    ]);
    let status = p.lake(&["ingest", "--status"]);
    assert!(status.stdout.contains("3 rows, 0 dead letters"), "{}", status.all());
}

#[test]
fn new_fields_of_an_inferred_schema_go_to_extra_or_new_columns() {
    let p = TestProject::new();
    p.write(
        "lake.toml",
        "name = \"t\"\n[ingest.kept]\nfrom = \"kept/*.ndjson\"\ntable = \"raw.kept\"\n\n\
         [ingest.grown]\nfrom = \"grown/*.ndjson\"\ntable = \"raw.grown\"\nevolve = true\n",
    );
    let first = "{\"id\": 1, \"name\": \"x\"}\n{\"id\": 2, \"name\": \"y\", \"color\": \"red\"}\n";
    p.write("kept/a.ndjson", first);
    p.write("grown/a.ndjson", first);
    // One record per flush: the new field arrives in the second flush of the run.
    p.lake(&["ingest", "kept", "grown", "--once", "--batch-rows", "1"]).assert_ok();
    // After a restart: another new field, and one named like a metadata column.
    let later = "{\"id\": 3, \"size\": 4, \"_offset\": 7}\n";
    p.write("kept/b.ndjson", later);
    p.write("grown/b.ndjson", later);
    p.lake(&["ingest", "kept", "grown", "--once"]).assert_ok();

    // `_extra` without quotes and commas, for the CSV output.
    let extra = "replace(replace(_extra, '\"', ''), ',', ';')";
    assert_eq!(p.sql_rows(&format!("select id, name, {extra} from raw.kept order by id")), vec![
        vec!["1".to_string(), "x".into(), String::new()],
        vec!["2".into(), "y".into(), "{color:red}".into()],
        vec!["3".into(), String::new(), "{size:4;_offset:7}".into()],
    ]);
    assert_eq!(p.sql_rows(&format!("select id, name, color, size, {extra} from raw.grown order by id")), vec![
        vec!["1".to_string(), "x".into(), String::new(), String::new(), String::new()],
        vec!["2".into(), "y".into(), "red".into(), String::new(), String::new()],
        vec!["3".into(), String::new(), String::new(), "4".into(), "{_offset:7}".into()],
    ]);
}

#[test]
fn a_line_of_invalid_utf8_is_a_dead_letter_and_the_rest_lands() {
    let p = project("");
    let mut bytes = format!("{}\n", line(1)).into_bytes();
    bytes.extend_from_slice(b"{\"id\": 2, \"kind\": \"caf\xe9\"}\n");
    bytes.extend_from_slice(format!("{}\n", line(3)).as_bytes());
    std::fs::create_dir_all(p.path().join("landing")).unwrap();
    std::fs::write(p.path().join("landing/a.ndjson"), &bytes).unwrap();
    let out = p.lake(&["ingest", "events", "--once"]);
    out.assert_ok();
    assert_eq!(p.sql_rows("select id from raw.events order by id"), vec![vec!["1".to_string()], vec!["3".into()]]);
    let errors = p.sql_rows("select error_type, _path like '%landing/a.ndjson', _line, error_message from raw.events__errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0][..3], ["parse", "true", "2"]);
    assert!(errors[0][3].contains("UTF-8"), "{errors:?}");
    // A rerun stores nothing twice; a later line lands.
    p.lake(&["ingest", "events", "--once"]).assert_ok();
    append(&p, "landing/a.ndjson", &format!("{}\n", line(4)));
    p.lake(&["ingest", "events", "--once"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.events"), 3);
    assert_eq!(p.sql_count("select count(*) from raw.events__errors"), 1);
}

#[test]
fn stdin_without_once_ends_with_its_input() {
    let p = TestProject::new();
    let mut child = Command::new(lake_bin())
        .args(["ingest", "--from", "-", "--table", "raw.piped"])
        .current_dir(p.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..50 {
        writeln!(stdin, "{{\"n\": {i}}}").unwrap();
    }
    // The last line has no newline: the end of the input completes it.
    write!(stdin, "{{\"n\": 50}}").unwrap();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("lake ingest --from - did not exit when its input ended");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
    assert_eq!(p.sql_count("select count(*) from raw.piped"), 51);
    assert_eq!(p.sql_count("select sum(n) from raw.piped"), 1275);
}

#[test]
fn a_json_file_is_read_once_it_is_completely_written() {
    let p = TestProject::new();
    p.write(
        "lake.toml",
        "name = \"t\"\n[ingest.docs]\nfrom = \"in/*.json\"\ntable = \"raw.docs\"\ncolumns = { id = \"bigint\" }\n\
         settle_seconds = 1\n[ingest.docs.batch]\nseconds = 0.2\n",
    );
    p.write("in/a.json", "[{\"id\": 1}]");
    let mut running = Running::start(&p, &["ingest", "docs"]);
    running.wait_for(&p, "select count(*) from raw.docs", 1);
    // Half an array: not an error, not read until the file has settled.
    p.write("in/b.json", "[{\"id\": 2}, {\"i");
    std::thread::sleep(Duration::from_millis(500));
    append(&p, "in/b.json", "d\": 3}]");
    running.wait_for(&p, "select count(*) from raw.docs", 3);
    let (code, stderr) = running.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(p.sql_count("select sum(id) from raw.docs"), 6);
}

#[test]
fn fields_beside_a_mapped_nested_field_are_kept_in_extra() {
    // `map = { email = "customer.email" }` once dropped the rest of `customer` silently.
    let p = TestProject::new();
    p.write(
        "lake.toml",
        "name = \"t\"\n[ingest.orders]\nfrom = \"in/*.ndjson\"\ntable = \"raw.orders\"\n\
         columns = { id = \"bigint\", email = \"varchar\" }\nmap = { email = \"customer.email\" }\n\n\
         [ingest.grown]\nfrom = \"in/*.ndjson\"\ntable = \"raw.grown\"\nevolve = true\n\
         columns = { id = \"bigint\", email = \"varchar\" }\nmap = { email = \"customer.email\" }\n",
    );
    p.write(
        "in/a.ndjson",
        "{\"id\": 1, \"customer\": {\"email\": \"a@x.io\", \"name\": \"Ann\", \"address\": {\"city\": \"Oslo\"}}, \"total\": \"9.50\"}\n\
         {\"id\": 2, \"customer\": {\"email\": \"b@x.io\"}}\n",
    );
    p.lake(&["ingest", "orders", "grown", "--once"]).assert_ok();
    let extra = |table: &str| {
        p.sql_rows(&format!("select id, email, replace(replace(_extra, '\"', ''), ',', ';') from {table} order by id"))
    };
    assert_eq!(extra("raw.orders"), vec![
        vec!["1".to_string(), "a@x.io".into(), "{customer:{name:Ann;address:{city:Oslo}};total:9.50}".into()],
        vec!["2".into(), "b@x.io".into(), String::new()],
    ]);
    // With evolve, `total` gets a column of its own; the rest of `customer` still lands in `_extra`.
    assert_eq!(p.sql_count("select count(*) from raw.grown where total = '9.50'"), 1);
    assert_eq!(extra("raw.grown")[0][2], "{customer:{name:Ann;address:{city:Oslo}}}");
}

#[test]
fn batch_bytes_mb_flushes_an_ad_hoc_ingest_by_size() {
    let p = TestProject::new();
    let pad = "x".repeat(1000);
    let lines: String = (0..3000).map(|i| format!("{{\"id\": {i}, \"pad\": \"{pad}\"}}\n")).collect();
    p.write("big.ndjson", &lines);
    p.lake(&["ingest", "--from", "big.ndjson", "--table", "raw.big", "--once", "--batch-bytes-mb", "1"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.big"), 3000);
    assert!(p.snapshot_count("raw.big") >= 3, "3 MB in 1 MiB batches: {}", p.snapshot_count("raw.big"));
}

#[test]
fn batch_limits_that_cannot_be_met_are_usage_errors() {
    // `--batch-bytes-mb 0` was taken as 1 MiB without a word.
    let p = project("");
    p.write("f.ndjson", "{\"id\": 1}\n");
    let ad_hoc = ["ingest", "--from", "f.ndjson", "--table", "raw.t", "--once"];
    for (flag, bad) in [("--batch-bytes-mb", "0"), ("--batch-bytes-mb", "2000000"), ("--batch-bytes-mb", "-1"), ("--batch-bytes-mb", "x"),
        ("--batch-rows", "0"), ("--batch-seconds", "0"), ("--batch-seconds", "NaN")]
    {
        let out = p.lake(&[&ad_hoc[..], &[&format!("{flag}={bad}")]].concat());
        assert_eq!(out.code, 2, "{flag} {bad}: {}", out.all());
        assert!(out.stderr.contains(flag), "{flag} {bad}: {}", out.all());
    }
    append(&p, "lake.toml", "[ingest.events.batch]\nbytes_mb = 0\n");
    p.write("landing/a.ndjson", &format!("{}\n", line(1)));
    let out = p.lake(&["ingest", "events", "--once"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("[ingest.events.batch] bytes_mb = 0"), "{}", out.all());
    assert_ne!(p.lake(&["sql", "select count(*) from raw.t"]).code, 0, "nothing was ingested");
    // The flag overrides the key.
    p.lake(&["ingest", "events", "--once", "--batch-bytes-mb", "1"]).assert_ok();
    p.lake(&[&ad_hoc[..], &["--batch-bytes-mb", "1"]].concat()).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.t"), 1);
}

#[test]
fn batches_of_dead_letters_only_move_the_read_position_on() {
    // Two flushes in a row with nothing but dead letters: their positions must still be
    // stored, or `--once` reads the same lines again forever and never reaches the last row.
    let p = TestProject::new();
    p.write("f.ndjson", "{\"id\": 1}\n{bad\n{bad\n{\"id\": 2}\n");
    let mut child = Command::new(lake_bin())
        .args(["ingest", "--from", "f.ndjson", "--table", "raw.t", "--once", "--batch-rows", "1"])
        .current_dir(p.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("lake ingest --once did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    assert_eq!(p.sql_count("select count(*) from raw.t"), 2);
    assert_eq!(p.sql_count("select count(*) from raw.t__errors"), 2);
    // A second run finds nothing new.
    p.lake(&["ingest", "--from", "f.ndjson", "--table", "raw.t", "--once", "--batch-rows", "1"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.t"), 2);
    assert_eq!(p.sql_count("select count(*) from raw.t__errors"), 2);
}
