//! Test helpers: throwaway projects and running the real `lake` binary against them, and the
//! real servers and readers the tests use: PostgreSQL ([`postgres`]), moto's S3 API ([`s3`]), the rustberg REST catalog ([`rustberg`]),
//! PyIceberg and DuckDB ([`readers`]).

pub mod postgres;
pub mod readers;
pub mod readme;
pub mod rest_proxy;
pub mod rustberg;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A project in a temporary folder.
pub struct TestProject {
    dir: tempfile::TempDir,
}

/// What one `lake` invocation did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together, for message assertions.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "lake failed:\n{}", self.all());
        self
    }
}

impl TestProject {
    /// An empty folder with a minimal `lake.toml`.
    pub fn new() -> Self {
        let p = Self::empty();
        p.write("lake.toml", "name = \"test\"\n");
        p
    }

    /// A project whose seed `raw.orders` (id bigint, amount double) has two rows, declared as a
    /// source; not loaded yet.
    pub fn with_orders_seed() -> Self {
        let p = Self::new();
        p.write(
            "seeds/seeds.yml",
            "seeds:\n  - name: orders\n    config:\n      column_types: {id: bigint, amount: double}\n",
        );
        p.write("seeds/orders.csv", "id,amount\n1,10.5\n2,3\n");
        p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: orders\n");
        p
    }

    /// An empty folder.
    pub fn empty() -> Self {
        TestProject {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A copy of the repository's demo project (lake.toml, models, macros, scripts and the
    /// singular SQL tests), without state or events.
    pub fn demo() -> Self {
        Self::copy_of(Path::new(env!("CARGO_MANIFEST_DIR")), &["lake.toml", "models", "macros", "scripts"])
    }

    /// A copy of the project under `examples/<name>` (lake.toml, models, seeds, scripts, tests).
    pub fn example(name: &str) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
        Self::copy_of(&root, &["lake.toml", "models", "macros", "seeds", "scripts"])
    }

    fn copy_of(root: &Path, entries: &[&str]) -> Self {
        let p = Self::empty();
        for entry in entries {
            if root.join(entry).exists() {
                copy_tree(&root.join(entry), &p.path().join(entry));
            }
        }
        // Singular SQL tests only (not the Rust integration tests).
        for f in std::fs::read_dir(root.join("tests")).expect("tests dir") {
            let f = f.expect("entry").path();
            if f.extension().and_then(|e| e.to_str()) == Some("sql") {
                copy_tree(&f, &p.path().join("tests").join(f.file_name().expect("name")));
            }
        }
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, content: &str) {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    /// `lake ingest ARGS` in this project, in the background with `env` added, once `port` on
    /// loopback accepts connections (a webhook source serving).
    pub fn serve_ingest(&self, args: &[&str], env: &[(&str, &str)], port: u16) -> std::process::Child {
        let mut cmd = Command::new(lake_bin());
        cmd.arg("ingest").args(args).current_dir(self.path()).env_remove("LAKE_TARGET").env_remove("LAKE_LOG_FORMAT");
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start lake ingest");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("lake ingest {args:?} exited {status} before listening on {port}");
            }
            assert!(std::time::Instant::now() < deadline, "lake ingest {args:?} did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        child
    }

    /// Run `lake` with `args` in this project.
    pub fn lake(&self, args: &[&str]) -> Output {
        self.lake_env(args, &[])
    }

    pub fn lake_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(lake_bin());
        cmd.args(args).current_dir(self.path()).env_remove("LAKE_TARGET").env_remove("LAKE_LOG_FORMAT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run lake");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    /// `lake sql QUERY --format csv`, as rows of fields (header dropped).
    pub fn sql_rows(&self, query: &str) -> Vec<Vec<String>> {
        let out = self.lake(&["sql", query, "--format", "csv"]);
        out.assert_ok();
        out.stdout
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    }

    /// A single integer from `lake sql`.
    pub fn sql_count(&self, query: &str) -> i64 {
        let rows = self.sql_rows(query);
        rows[0][0].parse().unwrap_or_else(|_| panic!("not a number: {rows:?}"))
    }

    /// `lake show TABLE --log-format json`.
    pub fn show(&self, table: &str) -> serde_json::Value {
        let out = self.lake(&["show", table, "--log-format", "json"]);
        out.assert_ok();
        serde_json::from_str(out.stdout.trim()).expect("show json")
    }

    /// Number of snapshots the table has.
    pub fn snapshot_count(&self, table: &str) -> usize {
        self.show(table)["snapshots"].as_array().expect("snapshots").len()
    }

    /// The table's current snapshot as `lake show` prints it (`operation`, `summary`, ...).
    pub fn current_snapshot(&self, table: &str) -> serde_json::Value {
        let doc = self.show(table);
        let current = doc["current_snapshot_id"].clone();
        doc["snapshots"]
            .as_array()
            .expect("snapshots")
            .iter()
            .find(|s| s["snapshot_id"] == current)
            .cloned()
            .expect("current snapshot")
    }

    /// `target/run_results.json`.
    pub fn run_results(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path().join("target/run_results.json")).expect("run_results.json");
        serde_json::from_str(&text).expect("json")
    }
}

pub fn lake_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lake"))
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else if from.is_file() {
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, to).expect("copy");
    }
}
