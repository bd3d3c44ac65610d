//! The write-ahead log on a real full file system (a 1 MiB tmpfs mounted for the test; it runs
//! as root) and after a crash: an event is acknowledged only once its line is on disk, a failed
//! write leaves the log as it was and is answered 503 with `Retry-After`, and a log with an
//! interrupted last line (or an older version's corruption) is repaired, not fatal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{SECRETS, free_port, hooks_toml, generic_at, generic_full, replay_log, start, wait_listening};
use crate::support::TestProject;

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output().unwrap();
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {} (this test needs root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if !Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Writes to `path` until the file system is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![b'f'; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

/// Every log file of `dir` ends with a newline and each of its lines is a JSON object.
#[track_caller]
fn assert_logs_whole(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("wal-") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{} ends in a partial line: {text:?}", path.display());
        for line in text.lines() {
            assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "{}: corrupt line {line:?}", path.display());
        }
    }
}

fn config(port: u16, generic: &str) -> String {
    hooks_toml(port, 600, &format!("[ingest.hooks.webhooks.generic]\nsecret_env = [\"T_GENERIC\"]\n{generic}\n"))
}

#[test]
fn a_full_disk_gets_503_and_retries_are_stored_once() {
    let port = free_port();
    let p = TestProject::new();
    p.write("lake.toml", &config(port, ""));
    let dir = p.path().join(".lake/ingest/hooks");
    let _tmpfs = Tmpfs::mount(&dir, "1m");
    let mut server = start(&p, &["hooks"]);
    wait_listening(port);
    assert_eq!(generic_full(port, "generic-secret", "a", r#"{"n": 1}"#).0, 200);

    // Full: an event whose line needs more room than is left is written in part, then fails.
    fill(&dir.join("filler"));
    let big = format!(r#"{{"n": 2, "blob": "{}"}}"#, "x".repeat(6000));
    let (status, response) = generic_full(port, "generic-secret", "b", &big);
    assert_eq!(status, 503, "{response}");
    assert!(response.to_ascii_lowercase().contains("\r\nretry-after: "), "no Retry-After:\n{response}");
    assert_logs_whole(&dir);
    // The provider's retry while the disk is still full: not "already stored".
    let (status, response) = generic_full(port, "generic-secret", "b", &big);
    assert_eq!(status, 503, "a retry of an event that was never stored: {response}");
    assert_logs_whole(&dir);

    // Room again: the retry is stored, a second one is a duplicate, later events append cleanly.
    std::fs::remove_file(dir.join("filler")).unwrap();
    assert!(generic_full(port, "generic-secret", "b", &big).1.ends_with("stored\n"));
    assert!(generic_full(port, "generic-secret", "b", &big).1.ends_with("duplicate, already stored\n"));
    assert_eq!(generic_full(port, "generic-secret", "c", r#"{"n": 3}"#).0, 200);
    assert_logs_whole(&dir);
    server.kill().unwrap();
    server.wait().unwrap();

    // The restarted source reads every acknowledged event, once.
    replay_log(&p, "hooks");
    let ids = p.sql_rows("select _webhook_id, n from raw.webhooks order by 1");
    assert_eq!(ids, vec![vec!["a".to_string(), "1".into()], vec!["b".into(), "2".into()], vec!["c".into(), "3".into()]]);
    // And a served restart neither repeats them nor refuses to start.
    let mut server = start(&p, &["hooks"]);
    wait_listening(port);
    assert!(generic_full(port, "generic-secret", "b", &big).1.ends_with("duplicate, already stored\n"));
    server.kill().unwrap();
    server.wait().unwrap();
}

/// A log line as an older version wrote it (no digest).
fn entry(id: &str, body: &str) -> String {
    serde_json::json!({"id": id, "provider": "generic", "event_type": null, "received_at": 1_700_000_000_000_000i64, "body": body})
        .to_string()
}

#[test]
fn a_log_cut_by_a_crash_is_repaired_on_restart() {
    let port = free_port();
    let p = TestProject::new();
    p.write("lake.toml", &config(port, "require_timestamp = true"));
    // Event a; then what the full-disk defect left (a partial line with event c glued to it);
    // then a last line a crash interrupted.
    let a = entry("a", r#"{"n": 1}"#);
    let c = entry("c", r#"{"n": 3}"#);
    let b = entry("b", r#"{"n": 2}"#);
    let d = entry("d", r#"{"n": 4}"#);
    let log = format!("{a}\n{}{c}\n{}", &b[..30], &d[..40]);
    p.write(".lake/ingest/hooks/wal-20250101T000000.000000.ndjson", &log);

    let out = p.lake_env(&["ingest", "hooks", "--once"], &SECRETS);
    out.assert_ok();
    assert!(out.stderr.contains("cut an incomplete last line"), "no warning about the cut:\n{}", out.all());
    assert!(out.stderr.contains("removed 30 bytes of an interrupted write"), "no warning about the repair:\n{}", out.all());
    assert_eq!(p.sql_rows("select _webhook_id, n from raw.webhooks order by 1"), vec![
        vec!["a".to_string(), "1".into()],
        vec!["c".into(), "3".into()],
    ]);
    assert_logs_whole(&p.path().join(".lake/ingest/hooks"));

    // Served again: the repaired log's events are known, new ones land after them.
    let mut server = start(&p, &["hooks"]);
    wait_listening(port);
    let now = chrono::Utc::now().timestamp();
    // This provider requires a signed timestamp.
    assert_eq!(generic_full(port, "generic-secret", "e", r#"{"n": 5}"#).0, 401);
    assert!(generic_at(port, "generic-secret", "c", now, now, r#"{"n": 3}"#).1.ends_with("duplicate, already stored\n"));
    assert_eq!(generic_at(port, "generic-secret", "e", now, now, r#"{"n": 5}"#).0, 200);
    server.kill().unwrap();
    server.wait().unwrap();
    replay_log(&p, "hooks");
    assert_eq!(p.sql_count("select count(*) from raw.webhooks"), 3);
}
