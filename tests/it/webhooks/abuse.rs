//! Abusive clients cannot take the webhook server down: the real `lake ingest` process runs
//! with a descriptor limit of 256 while 2,000 idle connections and a client sending its
//! headers a byte a second come in; every signed post sent meanwhile is answered 200 and lands
//! exactly once, and the process keeps committing. And each timeout on its own: a stalled body
//! gets 408, an idle kept-alive connection is closed after the idle timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{SECRETS, free_port, hooks_toml, generic_full, wait_listening};
use crate::support::{TestProject, lake_bin};

const IDLE_CONNECTIONS: usize = 2000;

/// Raises this process's soft descriptor limit to hold the idle connections.
fn raise_descriptor_limit(wanted: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write only the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if (limit.rlim_cur as u64) < wanted {
            assert!(limit.rlim_max as u64 >= wanted, "the test needs {wanted} descriptors; the hard limit is {}", limit.rlim_max);
            limit.rlim_cur = wanted as libc::rlim_t;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

/// Opens `n` connections that never send anything (retrying refused or slow connects until
/// `deadline`); returns how many were opened. They stay open until the thread ends.
fn idle_flood(addr: SocketAddr, n: usize, deadline: Instant) -> usize {
    let mut open = Vec::with_capacity(n);
    while open.len() < n && Instant::now() < deadline {
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            open.push(stream);
        }
    }
    // Hold them a little so that they overlap with the posts.
    std::thread::sleep(Duration::from_secs(2));
    open.len()
}

/// Sends request headers a byte a second; returns after how long the server closed the
/// connection (None: still open after 60 s).
fn slow_headers(addr: SocketAddr) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let head = b"POST /webhooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for byte in head.iter().cycle() {
        if started.elapsed() > Duration::from_secs(60) {
            return None;
        }
        if stream.write_all(&[*byte]).is_err() {
            return Some(started.elapsed());
        }
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(_) => return Some(started.elapsed()), // closed (0) or answered: either way, done with it
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn idle_and_slow_clients_under_a_low_descriptor_limit_lose_no_webhook() {
    raise_descriptor_limit(IDLE_CONNECTIONS as u64 + 1024);
    let port = free_port();
    let p = TestProject::new();
    p.write(
        "lake.toml",
        &hooks_toml(
            port,
            1,
            "[ingest.hooks.webhooks]\nheader_timeout_seconds = 2\nbody_timeout_seconds = 5\nidle_timeout_seconds = 5\n\
             [ingest.hooks.webhooks.generic]\nsecret_env = [\"T_GENERIC\"]\n",
        ),
    );
    let log = std::fs::File::create(p.path().join("server.log")).unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n 256 && exec \"$0\" ingest hooks"]).arg(lake_bin()).current_dir(p.path());
    cmd.stdout(Stdio::null()).stderr(log).envs(SECRETS);
    let mut server = cmd.spawn().unwrap();
    wait_listening(port);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let slow = std::thread::spawn(move || slow_headers(addr));
    std::thread::sleep(Duration::from_millis(200));
    let deadline = Instant::now() + Duration::from_secs(90);
    let floods: Vec<_> =
        (0..8).map(|_| std::thread::spawn(move || idle_flood(addr, IDLE_CONNECTIONS / 8, deadline))).collect();

    // Signed posts throughout, each answered 200.
    let mut sent = Vec::new();
    let started = Instant::now();
    while !floods.iter().all(|f| f.is_finished()) || sent.len() < 10 {
        let id = format!("p-{}", sent.len());
        let (status, response) = generic_full(port, "generic-secret", &id, &format!(r#"{{"n": {}}}"#, sent.len()));
        let log = std::fs::read_to_string(p.path().join("server.log")).unwrap_or_default();
        assert_eq!(status, 200, "post {id} after {:?}:\n{response}\nserver log:\n{log}", started.elapsed());
        sent.push(id);
        assert!(started.elapsed() < Duration::from_secs(180), "the test runs too long");
        std::thread::sleep(Duration::from_millis(100));
    }
    let opened: usize = floods.into_iter().map(|f| f.join().unwrap()).sum();
    assert_eq!(opened, IDLE_CONNECTIONS, "the idle connections were not all opened");
    let closed = slow.join().unwrap();
    assert!(closed.is_some_and(|d| d < Duration::from_secs(30)), "the slow-header connection was kept: {closed:?}");
    let log = std::fs::read_to_string(p.path().join("server.log")).unwrap();
    assert!(server.try_wait().unwrap().is_none(), "lake ingest exited:\n{log}");
    assert!(log.contains("serving at most"), "the connection cap did not follow the descriptor limit:\n{log}");

    // The running server commits every post, once.
    let until = Instant::now() + Duration::from_secs(60);
    let mut stored = 0;
    while Instant::now() < until {
        let out = p.lake(&["sql", "select count(*) from raw.webhooks", "--format", "csv"]);
        stored = out.stdout.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or(0);
        if stored >= sent.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(stored, sent.len(), "server log:\n{}", std::fs::read_to_string(p.path().join("server.log")).unwrap());
    let ids = p.sql_rows("select _webhook_id from raw.webhooks order by cast(substr(_webhook_id, 3) as int)");
    assert_eq!(ids.concat(), sent);
    assert!(server.try_wait().unwrap().is_none(), "lake ingest exited");
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Reads one response (headers, then `Content-Length` bytes) from a kept-alive connection.
fn read_response(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>().unwrap()))
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut buf).expect("a response");
        assert!(n > 0, "the connection closed before a whole response: {text}");
        data.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn slow_bodies_get_408_and_idle_connections_are_closed() {
    let port = free_port();
    let p = TestProject::new();
    p.write(
        "lake.toml",
        &format!(
            r#"name = "hooks"
[ingest.hooks]
from = "http://127.0.0.1:{port}"
table = "raw.webhooks"
[ingest.hooks.webhooks]
header_timeout_seconds = 1
body_timeout_seconds = 1
idle_timeout_seconds = 3
[ingest.hooks.webhooks.generic]
secret_env = ["T_GENERIC"]
"#
        ),
    );
    let mut server = super::start(&p, &["hooks"]);
    wait_listening(port);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // A body that stops half way: 408 after the body timeout.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    stream.write_all(b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"n\":").unwrap();
    let response = read_response(&mut stream);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(5), "408 after {:?}", started.elapsed());

    // A kept-alive connection outlives the header timeout while idle, not the idle timeout.
    let body = r#"{"n": 1}"#;
    let sig = hex::encode(super::hmac("generic-secret", &[body.as_bytes()]));
    let request = format!("POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nX-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(read_response(&mut stream).starts_with("HTTP/1.1 200"));
    let idle_since = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(2000))).unwrap();
    let mut buf = [0u8; 16];
    let early = stream.read(&mut buf);
    assert!(early.is_err(), "closed {:?} into the idle time: {early:?}", idle_since.elapsed());
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(stream.read(&mut buf).unwrap_or(0), 0);
    let closed = idle_since.elapsed();
    assert!(closed >= Duration::from_millis(2900) && closed < Duration::from_secs(6), "closed after {closed:?} idle");
    server.kill().unwrap();
    server.wait().unwrap();
}
