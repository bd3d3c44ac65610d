//! `rest_proxy.py` in front of a REST catalog: OAuth2 tokens that expire, and commit answers
//! lost after the server applied them (see the script's docs). Stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::free_port;

pub struct RestProxy {
    child: Child,
    pub port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// What the proxy does besides forwarding.
#[derive(Default)]
pub struct ProxyOptions {
    /// Require tokens from its token endpoint that expire after this many seconds (0: no auth).
    pub token_lifetime: u32,
    /// The client secret its token endpoint accepts (client id `lake`).
    pub client_secret: String,
    /// Lose the answer to every Nth commit (0: none).
    pub lose_every: u32,
    /// Hold the first commit to this table (its name) until [`RestProxy::release`].
    pub hold: Option<String>,
}

impl RestProxy {
    pub fn start(upstream_port: u16, options: ProxyOptions) -> RestProxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("proxy.jsonl");
        std::fs::write(&log, "").unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/rest_proxy.py");
        let child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--upstream-port", &upstream_port.to_string()])
            .arg("--log")
            .arg(&log)
            .args(["--token-lifetime", &options.token_lifetime.to_string()])
            .args(["--client-secret", &options.client_secret])
            .args(["--lose-every", &options.lose_every.to_string()])
            .args(["--hold", options.hold.as_deref().unwrap_or("")])
            .arg("--release")
            .arg(dir.path().join("release"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 rest_proxy.py");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the REST proxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        RestProxy { child, port, log, _dir: dir }
    }

    /// Let a held commit through.
    pub fn release(&self) {
        std::fs::write(self.log.with_file_name("release"), "").unwrap();
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The events logged so far with this name (`token`, `rejected`, `commit`, `lost`, ...).
    pub fn events(&self, name: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["event"] == name)
            .collect()
    }
}

impl Drop for RestProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
