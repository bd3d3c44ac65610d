//! Fault injection: the warehouse on a full or read-only file system, a read-only catalog, an
//! object store that refuses connections, one that never answers, a missing bucket, and
//! Postgres stopped in the middle of a run. For each: exit code 3, one line naming the setting
//! to fix, no secret, and a rerun once the fault is cleared converges to the tables of a clean
//! run. The file systems are real (tmpfs mounts; the tests run as root, as CI does).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::postgres::PgServer;
use crate::support::s3::{Moto, free_port};
use crate::support::{Output, TestProject};

const EXIT_ENVIRONMENT: i32 = 3;

/// A tmpfs mounted for the test's life.
pub(crate) struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    pub(crate) fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(status.success(), "cannot mount a tmpfs at {} (the fault tests run as root)", dir.display());
        Tmpfs { dir: dir.to_path_buf() }
    }

    pub(crate) fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "remount {mode}");
    }

    /// Fill the file system but for `leave` bytes.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.dir.join("filler");
        let out = Command::new("df").args(["-B1", "--output=avail"]).arg(&self.dir).output().unwrap();
        let avail: u64 = String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap();
        let size = avail.saturating_sub(leave);
        std::fs::write(&filler, vec![7u8; size as usize]).unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The fixture every fault test builds: a seed of `rows` orders, a table model over it and
/// an aggregate over that.
fn write_project(p: &TestProject, rows: usize) {
    let mut csv = String::from("id,customer,amount\n");
    for i in 0..rows {
        csv.push_str(&format!("{i},c{},{}.{:02}\n", (i * 7919) % 997, i % 500, (i * 31) % 100));
    }
    p.write("seeds/orders.csv", &csv);
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: orders\n    config:\n      column_types: {id: bigint, customer: varchar, amount: double}\n",
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: orders\n");
    p.write(
        "models/staging/stg_orders.sql",
        "select id, customer, amount * 2 as amount2, md5(customer || cast(id as varchar)) as tag from {{ source('raw', 'orders') }}\n",
    );
    p.write(
        "models/marts/by_customer.sql",
        "select customer, count(*) as n, sum(amount2) as total from {{ ref('stg_orders') }} group by customer\n",
    );
}

/// What the tables hold, for comparing a recovered project with a clean one; `env` is passed
/// to `lake` (credentials).
fn fingerprint_with(p: &TestProject, env: &[(&str, &str)]) -> Vec<Vec<String>> {
    [
        "select count(*), sum(id), round(sum(amount), 2) from raw.orders",
        "select count(*), sum(id), round(sum(amount2), 2), count(distinct tag) from staging.stg_orders",
        "select count(*), sum(n), round(sum(total), 2) from marts.by_customer",
    ]
    .iter()
    .flat_map(|q| {
        let out = p.lake_env(&["sql", q, "--format", "csv"], env);
        out.assert_ok();
        out.stdout
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    })
    .collect()
}

fn fingerprint(p: &TestProject) -> Vec<Vec<String>> {
    fingerprint_with(p, &[])
}

/// The tables of the fixture built without any fault.
fn clean_fingerprint(rows: usize) -> Vec<Vec<String>> {
    let clean = TestProject::new();
    write_project(&clean, rows);
    clean.lake(&["build"]).assert_ok();
    fingerprint(&clean)
}

/// Exit code 3, and stderr is one `error:` line (or the run's per-node lines, each naming the
/// fault) that contains `needle`; no backtrace, no retry chatter.
#[track_caller]
fn assert_environment_failure(out: &Output, needle: &str) {
    assert_eq!(out.code, EXIT_ENVIRONMENT, "expected exit 3:\n{}", out.all());
    assert!(out.all().contains(needle), "expected '{needle}' in:\n{}", out.all());
    assert!(!out.all().contains("Backtrace"), "{}", out.all());
    assert!(!out.all().contains("will retry"), "{}", out.all());
    let noise: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(noise.len() <= 1, "stderr should be one line, got:\n{}", out.stderr);
}

#[test]
fn a_full_warehouse_fails_with_exit_3_and_a_rerun_converges() {
    let rows = 20_000;
    let p = TestProject::new();
    write_project(&p, rows);
    let fs = Tmpfs::mount(&p.path().join(".lake/warehouse"), "8m");
    let filler = fs.fill(48 * 1024);
    let out = p.lake(&["build"]);
    assert_environment_failure(&out, "is full");
    assert!(out.all().contains("catalog.warehouse"), "{}", out.all());

    std::fs::remove_file(filler).unwrap();
    p.lake(&["build"]).assert_ok();
    assert_eq!(fingerprint(&p), clean_fingerprint(rows));
}

#[test]
fn a_read_only_warehouse_fails_with_exit_3_and_a_rerun_converges() {
    let rows = 500;
    let p = TestProject::new();
    write_project(&p, rows);
    let fs = Tmpfs::mount(&p.path().join(".lake/warehouse"), "64m");
    p.lake(&["build"]).assert_ok();
    let before = fingerprint(&p);
    fs.remount("ro");
    let out = p.lake(&["run", "--full-refresh"]);
    assert_environment_failure(&out, "read-only");
    assert!(out.all().contains("catalog.warehouse"), "{}", out.all());
    // Nothing committed was lost: the tables still read as before.
    assert_eq!(fingerprint(&p), before);

    fs.remount("rw");
    p.lake(&["run", "--full-refresh"]).assert_ok();
    assert_eq!(fingerprint(&p), clean_fingerprint(rows));
}

#[test]
fn a_read_only_catalog_fails_with_exit_3_and_a_rerun_converges() {
    let rows = 500;
    let p = TestProject::new();
    write_project(&p, rows);
    p.write("lake.toml", "name = \"test\"\n[catalog]\nuri = \"sqlite:catalog/lake.db\"\n");
    let fs = Tmpfs::mount(&p.path().join("catalog"), "16m");
    p.lake(&["build"]).assert_ok();
    let before = fingerprint(&p);
    fs.remount("ro");
    let out = p.lake(&["run", "--full-refresh"]);
    assert_environment_failure(&out, "catalog.uri");
    fs.remount("rw");
    assert_eq!(fingerprint(&p), before);
    p.lake(&["run", "--full-refresh"]).assert_ok();
    assert_eq!(fingerprint(&p), clean_fingerprint(rows));
}

/// `lake.toml` with the warehouse in an S3 bucket at `endpoint`; the secret key comes from
/// the environment (`S3_SECRET`), so no output may contain it.
fn s3_project(endpoint: &str, bucket: &str, rows: usize) -> TestProject {
    let p = TestProject::new();
    write_project(&p, rows);
    p.write(
        "lake.toml",
        &format!(
            "name = \"test\"\n[catalog]\nwarehouse = \"s3://{bucket}/wh\"\nconnect_timeout_seconds = 5\n\
             [storage]\n\"s3.endpoint\" = \"{endpoint}\"\n\"s3.region\" = \"us-east-1\"\n\"s3.path-style-access\" = \"true\"\n\
             \"s3.access-key-id\" = \"lakekey\"\n\"s3.secret-access-key\" = \"${{S3_SECRET}}\"\n"
        ),
    );
    p
}

const S3_SECRET: &str = "moto-secret-never-printed";

fn lake_s3(p: &TestProject, args: &[&str]) -> Output {
    let out = p.lake_env(args, &[("S3_SECRET", S3_SECRET)]);
    assert!(!out.all().contains(S3_SECRET), "the secret was printed:\n{}", out.all());
    out
}

#[test]
fn an_object_store_that_refuses_connections_fails_fast_with_exit_3_and_a_rerun_converges() {
    let rows = 300;
    let port = free_port();
    let p = s3_project(&format!("http://127.0.0.1:{port}"), "lake", rows);
    let started = Instant::now();
    let out = lake_s3(&p, &["build"]);
    assert_environment_failure(&out, "s3.endpoint");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());

    let moto = Moto::start(port);
    moto.create_bucket("lake");
    lake_s3(&p, &["build"]).assert_ok();
    assert_eq!(fingerprint_s3(&p), clean_fingerprint(rows));
}

#[test]
fn a_silent_object_store_fails_within_the_timeout_with_exit_3() {
    // Accepts connections and never answers: the default timeouts bound the wait.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(90);
        while Instant::now() < until {
            match listener.accept() {
                Ok((s, _)) => open.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        open.len()
    });
    let p = s3_project(&format!("http://127.0.0.1:{port}"), "lake", 10);
    // Only the defaults: no timeout set in lake.toml.
    let toml = std::fs::read_to_string(p.path().join("lake.toml")).unwrap();
    p.write("lake.toml", &toml.replace("connect_timeout_seconds = 5\n", ""));
    let started = Instant::now();
    let out = lake_s3(&p, &["build"]);
    let took = started.elapsed();
    assert_environment_failure(&out, "did not answer");
    assert!(out.all().contains("s3.endpoint"), "{}", out.all());
    assert!(took < Duration::from_secs(45), "a silent endpoint took {took:?} to fail");
    drop(held);
}

#[test]
fn a_missing_bucket_fails_with_exit_3_naming_it_and_a_rerun_converges() {
    let rows = 300;
    let port = free_port();
    let moto = Moto::start(port);
    let p = s3_project(&moto.endpoint(), "no-such-bucket", rows);
    let out = lake_s3(&p, &["build"]);
    assert_environment_failure(&out, "no such bucket");
    assert!(out.all().contains("catalog.warehouse"), "{}", out.all());
    moto.create_bucket("no-such-bucket");
    lake_s3(&p, &["build"]).assert_ok();
    assert_eq!(fingerprint_s3(&p), clean_fingerprint(rows));
}

fn fingerprint_s3(p: &TestProject) -> Vec<Vec<String>> {
    fingerprint_with(p, &[("S3_SECRET", S3_SECRET)])
}

#[test]
fn postgres_stopping_mid_run_fails_with_exit_3_and_a_rerun_converges() {
    let rows = 500;
    let pg = PgServer::start();
    let url = pg.database("faults");
    let p = TestProject::new();
    write_project(&p, rows);
    p.write("lake.toml", &format!("name = \"test\"\n[catalog]\nuri = \"{url}\"\n"));
    p.lake(&["seed"]).assert_ok();
    // A model slow enough to stop the server while it runs.
    p.write(
        "models/staging/slow.sql",
        "select count(distinct md5(cast(a.value * 7919 + b.value as varchar))) as n from generate_series(1, 3000) a, generate_series(1, 2000) b\n",
    );
    let child = Command::new(crate::support::lake_bin())
        .args(["run"])
        .current_dir(p.path())
        .env_remove("LAKE_TARGET")
        .env_remove("LAKE_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    pg.stop();
    let output = child.wait_with_output().unwrap();
    let out = Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    };
    assert_eq!(out.code, EXIT_ENVIRONMENT, "{}", out.all());
    assert!(out.all().contains("catalog.uri"), "{}", out.all());
    assert!(!out.all().contains("Backtrace"), "{}", out.all());

    pg.start_again();
    std::fs::remove_file(p.path().join("models/staging/slow.sql")).unwrap();
    p.lake(&["run"]).assert_ok();
    assert_eq!(fingerprint(&p), clean_fingerprint(rows));
}

#[test]
fn show_snapshots_and_maintain_exit_3_when_the_storage_is_gone() {
    // They once mapped a catalog or storage outage after connecting to exit code 2 (usage).
    let moto = Moto::start(0);
    moto.create_bucket("lake");
    let p = s3_project(&moto.endpoint(), "lake", 50);
    lake_s3(&p, &["build"]).assert_ok();
    drop(moto);
    for args in [
        &["show", "raw.orders"][..],
        &["snapshots", "raw.orders"][..],
        &["maintain"][..],
        &["rollback", "raw.orders", "--to", "1"][..],
    ] {
        let out = lake_s3(&p, args);
        assert_environment_failure(&out, "s3.endpoint");
    }
}

/// `lake ingest` reads and converts the next batch while the last one commits: a warehouse that
/// fills up after a few commits fails the run with exit 3, keeps every batch committed before
/// (rows and read positions agree), and a rerun once there is room stores every line exactly
/// once, as a row or a dead letter.
#[test]
fn ingest_into_a_warehouse_that_fills_up_mid_stream_fails_with_exit_3_and_a_rerun_loads_each_line_once() {
    let lines = 30_000;
    let p = TestProject::new();
    let mut input = String::new();
    for i in 0..lines {
        if i % 97 == 5 {
            input.push_str(&format!("{{\"id\": {i}, \"note\": \"cut\n"));
        } else {
            // Text that compresses poorly, so that each batch needs real space.
            let noise: String = (0..6).map(|k| format!("{:016x}", (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15 >> k))).collect();
            input.push_str(&format!("{{\"id\": {i}, \"note\": \"{noise}\"}}\n"));
        }
    }
    p.write("landing/events.ndjson", &input);
    let fs = Tmpfs::mount(&p.path().join(".lake/warehouse"), "16m");
    // Room for a few batches of 2,000 records, not for all fifteen.
    let filler = fs.fill(1024 * 1024);
    let args = ["ingest", "--from", "landing/events.ndjson", "--table", "raw.events", "--once", "--batch-rows", "2000"];
    let out = p.lake(&args);
    assert_eq!(out.code, EXIT_ENVIRONMENT, "expected exit 3:\n{}", out.all());
    // One error line naming the source and the setting, after the lines of the commits that landed.
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(errors[0].contains("ingest source `events`: the warehouse") && errors[0].contains("is full"), "{}", out.stderr);
    assert!(errors[0].contains("catalog.warehouse") && !errors[0].contains("os error 28): "), "{}", out.stderr);
    // What was committed is whole: rows of distinct lines, from the start of the file.
    let rows = p.sql_count("select count(*) from raw.events");
    assert!(rows > 0 && rows < lines as i64, "expected some batches committed before the disk filled, got {rows} rows");
    assert_eq!(p.sql_count("select count(distinct _line) from raw.events"), rows);

    std::fs::remove_file(filler).unwrap();
    p.lake(&args).assert_ok();
    let dead = p.sql_count("select count(*) from raw.events__errors");
    assert_eq!(dead, (0..lines).filter(|i| i % 97 == 5).count() as i64);
    assert_eq!(p.sql_count("select count(*) from raw.events") + dead, lines as i64);
    assert_eq!(p.sql_count("select count(distinct _line) from raw.events") + dead, lines as i64);
    assert_eq!(p.sql_count("select count(*) from raw.events__errors where _line in (select _line from raw.events)"), 0);
}
