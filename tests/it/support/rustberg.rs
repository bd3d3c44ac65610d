//! An Iceberg REST catalog server on loopback: rustberg (a REST catalog on iceberg-rust),
//! installed by `.ci/run` into `$HOME/.cache/lake-tools` (`LAKE_RUSTBERG` names another binary).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::free_port;

/// A rustberg server on loopback with its warehouse in a temporary folder, stopped on drop.
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

impl Rustberg {
    pub fn start() -> Rustberg {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("rustberg.log")).unwrap();
        let child = Command::new(rustberg_bin())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--warehouse")
            .arg(format!("file://{}", dir.path().join("warehouse").display()))
            .args(["--catalog-url", "memory://", "--no-auth", "--dev", "--insecure-http"])
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

impl Rustberg {
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

