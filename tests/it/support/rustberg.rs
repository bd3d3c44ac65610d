//! An Iceberg REST catalog server on loopback: rustberg (a REST catalog on iceberg-rust),
//! installed by `.ci/run` into `$HOME/.cache/lake-tools` (`LAKE_RUSTBERG` names another binary).
//!
//! rustberg writes table metadata itself, so it needs the warehouse's storage settings: a
//! local folder ([`Rustberg::start`]) needs none; an S3 warehouse ([`Rustberg::start_s3`])
//! gets its endpoint, keys, region and path-style access from the `[storage.properties]` of a
//! config file (rustberg's only place for them: no command-line flag or environment variable
//! sets them). rustberg hands none of them to clients (`/v1/config` and `loadTable` return no
//! `s3.*` keys without credential vending), so clients configure their own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::free_port;

/// A rustberg server on loopback with an in-memory catalog, stopped on drop.
pub struct Rustberg {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

pub fn rustberg_bin() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("LAKE_RUSTBERG") {
        return p.into();
    }
    let home = std::env::var("HOME").expect("HOME");
    let bin = std::path::Path::new(&home).join(".cache/lake-tools/bin/rustberg");
    assert!(bin.exists(), "rustberg not found at {} (bash .ci/run installs it)", bin.display());
    bin
}

/// S3 settings for a warehouse on an S3-compatible server.
pub struct S3Warehouse<'a> {
    /// `s3://bucket/prefix`
    pub location: &'a str,
    /// `http://127.0.0.1:PORT`
    pub endpoint: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

impl Rustberg {
    /// The warehouse in a temporary folder.
    pub fn start() -> Rustberg {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = format!("file://{}", dir.path().join("warehouse").display());
        Self::spawn(dir, &warehouse, None)
    }

    /// The warehouse on an S3 API (path-style, region us-east-1), e.g. moto's.
    pub fn start_s3(s3: &S3Warehouse) -> Rustberg {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("rustberg.toml");
        // The secret goes through rustberg's `env:NAME` indirection, not into the file.
        let text = format!(
            "[storage]\ncatalog_url = \"memory://\"\nwarehouse_location = \"{}\"\n\n\
             [storage.properties]\n\"s3.endpoint\" = \"{}\"\n\"s3.region\" = \"us-east-1\"\n\
             \"s3.path-style-access\" = \"true\"\n\"s3.access-key-id\" = \"{}\"\n\
             \"s3.secret-access-key\" = \"env:RUSTBERG_S3_SECRET\"\n\n\
             # As without a config file: no rate limit for an unauthenticated dev server.\n\
             [rate_limit]\nenabled = false\n",
            s3.location, s3.endpoint, s3.access_key_id
        );
        std::fs::write(&config, text).unwrap();
        Self::spawn(dir, s3.location, Some((config, s3.secret_access_key)))
    }

    fn spawn(dir: tempfile::TempDir, warehouse: &str, config: Option<(std::path::PathBuf, &str)>) -> Rustberg {
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("rustberg.log")).unwrap();
        let mut cmd = Command::new(rustberg_bin());
        if let Some((path, secret)) = config {
            cmd.arg("--config").arg(path).env("RUSTBERG_S3_SECRET", secret);
        }
        let child = cmd
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--warehouse", warehouse])
            .args(["--catalog-url", "memory://", "--no-auth", "--dev", "--insecure-http"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rustberg");
        let mut server = Rustberg { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("rustberg exited ({status}): {}", server.log());
            }
            assert!(Instant::now() < deadline, "rustberg did not start: {}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("rustberg.log")).unwrap_or_default()
    }

    /// The catalog's base URI.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Rustberg {
    /// A server with authentication on (no `--no-auth`) that accepts one API key, `key`, with
    /// the admin role. Clients send it as `Authorization: Bearer <key>` (lake's `[catalog]
    /// token`) or `X-API-Key: <key>`; anything else gets 401.
    pub fn start_with_api_key(key: &str) -> Rustberg {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("rustberg.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nhost = \"127.0.0.1\"\nport = {port}\n\n[[server.auth.api_keys]]\n\
                 name = \"lake\"\ntenant = \"default\"\nroles = [\"admin\"]\nkey_env = \"LAKE_TEST_RUSTBERG_KEY\"\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("rustberg.log")).unwrap();
        let child = Command::new(rustberg_bin())
            .arg("--config")
            .arg(&config)
            .arg("--warehouse")
            .arg(format!("file://{}", dir.path().join("warehouse").display()))
            .args(["--catalog-url", "memory://", "--dev", "--insecure-http"])
            .env("LAKE_TEST_RUSTBERG_KEY", key)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rustberg");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rustberg did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Rustberg { child, port, _dir: dir }
    }
}

impl Drop for Rustberg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
