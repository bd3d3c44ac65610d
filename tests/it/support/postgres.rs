//! A throwaway PostgreSQL server for catalog tests, started from the server binaries that
//! `.ci/run` installs (Debian's `postgresql` package), and stopped when dropped.

use std::path::PathBuf;
use std::process::Command;

pub struct PgServer {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
    /// The `postgres` user's password when the server requires one ([`PgServer::start_with_password`]).
    password: Option<String>,
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|b| b.join("initdb").exists())
        .expect("PostgreSQL server binaries not found under /usr/lib/postgresql: install the `postgresql` package (.ci/run does)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PgServer {
    /// A server that trusts every local connection (no password).
    pub fn start() -> PgServer {
        Self::init(None)
    }

    /// A server that requires the `postgres` user's `password` (SCRAM-SHA-256 for every
    /// connection, as a production server does).
    pub fn start_with_password(password: &str) -> PgServer {
        Self::init(Some(password))
    }

    fn init(password: Option<&str>) -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        // The server refuses to run as root: run it as the `postgres` user then.
        let as_postgres = unsafe_is_root();
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success());
            let status = Command::new("chmod").args(["755"]).arg(dir.path()).status().unwrap();
            assert!(status.success());
        }
        let port = free_port();
        let pwfile = dir.path().join("pwfile");
        let server = PgServer { _dir: dir, data, bin, port, as_postgres, password: password.map(str::to_string) };
        let data = server.data.to_string_lossy().to_string();
        match password {
            None => server.run("initdb", &["-A", "trust", "-U", "postgres", "-D", &data]),
            Some(pw) => {
                std::fs::write(&pwfile, format!("{pw}\n")).unwrap();
                if as_postgres {
                    let status = Command::new("chown").arg("postgres").arg(&pwfile).status().unwrap();
                    assert!(status.success());
                }
                let pwfile = format!("--pwfile={}", pwfile.display());
                server.run("initdb", &["-A", "scram-sha-256", "-U", "postgres", &pwfile, "-D", &data]);
            }
        }
        server.start_again();
        server
    }

    /// Start the (stopped) server again on the same port and data.
    pub fn start_again(&self) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.data.parent().unwrap().display());
        self.run("pg_ctl", &["-D", &self.data.to_string_lossy(), "-o", &opts, "-w", "-l", &self.data.parent().unwrap().join("log").to_string_lossy(), "start"]);
    }

    /// Stop the server at once (as a crash or an operator would), dropping every connection.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data.to_string_lossy(), "-m", "immediate", "-w", "stop"]);
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new empty database; returns its URL.
    pub fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Run `sql` in database `db` as the `postgres` user.
    pub fn psql(&self, db: &str, sql: &str) {
        let mut cmd = Command::new("psql");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql]);
        if let Some(pw) = &self.password {
            cmd.env("PGPASSWORD", pw);
        }
        let out = cmd.output().expect("psql (install postgresql-client)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data.to_string_lossy().to_string();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            Command::new(&exe).args(args).output()
        };
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}
