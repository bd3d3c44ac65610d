//! `lake ingest` serving signed webhooks over real HTTP: each provider's signature scheme,
//! rejections with the right status and nothing stored, deduplication, and no loss when the
//! process is SIGKILLed right after answering 2xx. Submodules: replays with a new id
//! ([`replay`]), the write-ahead log on a full disk and after a crash ([`wal`]), and abusive
//! clients under a low descriptor limit ([`abuse`]).

mod abuse;
mod replay;
mod routes;
mod wal;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::{TestProject, lake_bin};

pub(super) const SECRETS: [(&str, &str); 5] = [
    ("T_SHOPIFY_NEW", "shp-new-secret"),
    ("T_SHOPIFY_OLD", "shp-old-secret"),
    ("T_STRIPE", "whsec_stripe"),
    ("T_HUBSPOT", "hubspot-app-secret"),
    ("T_GENERIC", "generic-secret"),
];

/// `lake.toml` with one webhook source `hooks` on `port` into `raw.webhooks` (evolving),
/// flushing every `batch_seconds`; `rest` adds source keys and `[ingest.hooks.webhooks...]`.
fn hooks_toml(port: u16, batch_seconds: u32, rest: &str) -> String {
    format!(
        "name = \"hooks\"\n[ingest.hooks]\nfrom = \"http://127.0.0.1:{port}\"\ntable = \"raw.webhooks\"\nevolve = true\n\
         [ingest.hooks.batch]\nseconds = {batch_seconds}\n{rest}"
    )
}

fn hmac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// POSTs over a plain TCP connection; returns the status code.
fn post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
    post_full(port, path, headers, body).0
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// POSTs over a plain TCP connection (waiting at most a minute); returns the status code and
/// the whole response (status line, headers, body).
fn post_full(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(60)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    (response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), response)
}

fn start(p: &TestProject, args: &[&str]) -> Child {
    let mut cmd = Command::new(lake_bin());
    cmd.arg("ingest").args(args).current_dir(p.path()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in SECRETS {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "lake ingest did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn shopify(port: u16, secret: &str, id: &str, body: &str) -> u16 {
    shopify_full(port, secret, id, body).0
}

/// A Shopify webhook: status and whole response.
fn shopify_full(port: u16, secret: &str, id: &str, body: &str) -> (u16, String) {
    let sig = b64(&hmac(secret, &[body.as_bytes()]));
    let headers = [
        ("X-Shopify-Hmac-Sha256", sig),
        ("X-Shopify-Webhook-Id", id.to_string()),
        ("X-Shopify-Topic", "orders/create".to_string()),
    ];
    post_full(port, "/webhooks/shopify", &headers, body.as_bytes())
}

fn stripe(port: u16, secret: &str, t: i64, body: &str, sent: &str) -> u16 {
    let sig = hex::encode(hmac(secret, &[t.to_string().as_bytes(), b".", body.as_bytes()]));
    post(port, "/webhooks/stripe", &[("Stripe-Signature", format!("t={t},v1={sig}"))], sent.as_bytes())
}

fn hubspot(port: u16, secret: &str, ms: i64, body: &str) -> u16 {
    let uri = format!("http://127.0.0.1:{port}/webhooks/hubspot");
    let ts = ms.to_string();
    let sig = b64(&hmac(secret, &[b"POST", uri.as_bytes(), body.as_bytes(), ts.as_bytes()]));
    post(port, "/webhooks/hubspot", &[("X-HubSpot-Signature-v3", sig), ("X-HubSpot-Request-Timestamp", ts)], body.as_bytes())
}

fn generic(port: u16, secret: &str, id: &str, body: &str) -> u16 {
    generic_full(port, secret, id, body).0
}

/// A generic webhook signed over its body alone: status and whole response.
fn generic_full(port: u16, secret: &str, id: &str, body: &str) -> (u16, String) {
    let sig = format!("sha256={}", hex::encode(hmac(secret, &[body.as_bytes()])));
    post_full(port, "/webhooks/generic", &[("X-Signature", sig), ("X-Webhook-Id", id.to_string())], body.as_bytes())
}

/// A generic webhook with a signed `X-Webhook-Timestamp` (`signed` is the timestamp signed,
/// `sent` the one sent): status and whole response.
fn generic_at(port: u16, secret: &str, id: &str, signed: i64, sent: i64, body: &str) -> (u16, String) {
    let sig = hex::encode(hmac(secret, &[signed.to_string().as_bytes(), b".", body.as_bytes()]));
    let headers = [("X-Signature", sig), ("X-Webhook-Id", id.to_string()), ("X-Webhook-Timestamp", sent.to_string())];
    post_full(port, "/webhooks/generic", &headers, body.as_bytes())
}

/// Runs `lake ingest ARGS --once` in the project and asserts it succeeded.
fn replay_log(p: &TestProject, source: &str) {
    let out = p.lake_env(&["ingest", source, "--once"], &SECRETS);
    out.assert_ok();
}

fn count(p: &TestProject) -> i64 {
    let out = p.lake(&["sql", "select count(*) from raw.webhooks", "--format", "csv"]);
    if out.code != 0 {
        return 0;
    }
    out.stdout.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or(0)
}

#[test]
fn signed_webhooks_land_and_bad_ones_are_refused() {
    let port = free_port();
    let p = TestProject::new();
    p.write(
        "lake.toml",
        &format!(
            r#"name = "hooks"
[ingest.hooks]
from = "http://127.0.0.1:{port}"
table = "raw.webhooks"
evolve = true
max_body_kb = 4
wal_retention_hours = 0
[ingest.hooks.batch]
seconds = 60
[ingest.hooks.webhooks.shopify]
secret_env = ["T_SHOPIFY_NEW", "T_SHOPIFY_OLD"]
[ingest.hooks.webhooks.stripe]
secret_env = ["T_STRIPE"]
[ingest.hooks.webhooks.hubspot]
secret_env = ["T_HUBSPOT"]
[ingest.hooks.webhooks.generic]
secret_env = ["T_GENERIC"]
"#
        ),
    );
    let mut server = start(&p, &["hooks"]);
    wait_listening(port);
    let now = chrono::Utc::now();

    // Valid, for every provider (Shopify with the new and, during rotation, the old secret).
    assert_eq!(shopify(port, "shp-new-secret", "w-1", r#"{"id": 1, "email": "a@x.com"}"#), 200);
    assert_eq!(shopify(port, "shp-old-secret", "w-2", r#"{"id": 2, "email": "b@x.com"}"#), 200);
    let body = r#"{"id": "evt_1", "type": "charge.succeeded"}"#;
    assert_eq!(stripe(port, "whsec_stripe", now.timestamp(), body, body), 200);
    let hs = r#"[{"eventId": 7, "subscriptionType": "contact.creation", "objectId": 42}]"#;
    assert_eq!(hubspot(port, "hubspot-app-secret", now.timestamp_millis(), hs), 200);
    assert_eq!(generic(port, "generic-secret", "g-1", r#"{"id": 9}"#), 200);
    // A redelivery is acknowledged and not stored again.
    assert_eq!(shopify(port, "shp-new-secret", "w-1", r#"{"id": 1, "email": "a@x.com"}"#), 200);

    // Refused: tampered body, wrong secret, stale timestamps, oversize body, no signature.
    let sig = b64(&hmac("shp-new-secret", &[br#"{"id": 3}"#]));
    assert_eq!(post(port, "/webhooks/shopify", &[("X-Shopify-Hmac-Sha256", sig)], br#"{"id": 4}"#), 401);
    assert_eq!(shopify(port, "wrong-secret", "w-3", r#"{"id": 3}"#), 401);
    assert_eq!(stripe(port, "whsec_stripe", now.timestamp(), body, r#"{"id": "evt_1", "type": "charge.refunded"}"#), 401);
    assert_eq!(stripe(port, "whsec_stripe", now.timestamp() - 301, body, body), 401);
    assert_eq!(hubspot(port, "hubspot-app-secret", now.timestamp_millis() - 6 * 60 * 1000, hs), 401);
    assert_eq!(hubspot(port, "wrong", now.timestamp_millis(), hs), 401);
    let big = format!(r#"{{"blob": "{}"}}"#, "x".repeat(5 * 1024));
    assert_eq!(generic(port, "generic-secret", "g-big", &big), 413);
    assert_eq!(post(port, "/webhooks/generic", &[], br#"{"id": 10}"#), 401);

    // SIGKILL right after the 2xx answers (the 60 s batch has not flushed): nothing is lost.
    for i in 0..20 {
        assert_eq!(generic(port, "generic-secret", &format!("g-{}", i + 100), &format!(r#"{{"id": {}}}"#, i + 100)), 200);
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(count(&p), 0, "nothing was committed before the kill");
    let mut replay = start(&p, &["hooks", "--once"]);
    assert!(replay.wait().unwrap().success());
    assert_eq!(count(&p), 25, "every acknowledged webhook, once");
    // Committed write-ahead logs past their retention (0 here) are deleted.
    let logs = std::fs::read_dir(p.path().join(".lake/ingest/hooks")).unwrap().count();
    assert_eq!(logs, 0, "committed logs are pruned");
    let per = p.sql_rows("select _provider, count(*) from raw.webhooks group by _provider order by 1");
    assert_eq!(per, vec![
        vec!["generic".to_string(), "21".into()],
        vec!["hubspot".into(), "1".into()],
        vec!["shopify".into(), "2".into()],
        vec!["stripe".into(), "1".into()],
    ]);
    let types = p.sql_rows("select _event_type from raw.webhooks where _provider in ('stripe', 'shopify', 'hubspot') order by 1");
    assert_eq!(types.concat(), ["charge.succeeded", "contact.creation", "orders/create", "orders/create"]);
    // Replaying again adds nothing.
    let mut again = start(&p, &["hooks", "--once"]);
    assert!(again.wait().unwrap().success());
    assert_eq!(count(&p), 25);
}

#[test]
fn sigterm_while_events_arrive_commits_every_event_acknowledged_before_it() {
    // A stop that came while a batch was being flushed used to return after that flush: the
    // events acknowledged since waited in the log for the next run. A webhook source reads its
    // log to the end before its last commit.
    let port = free_port();
    let p = TestProject::new();
    // Flushes of 20 rows: the reader, committing all the time, stays behind the senders.
    p.write("lake.toml", &hooks_toml(port, 1, "rows = 20\n[ingest.hooks.webhooks.generic]\nsecret_env = [\"T_GENERIC\"]\n"));
    let mut server = start(&p, &["hooks"]);
    wait_listening(port);
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let poster = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            for i in 0.. {
                let status = std::panic::catch_unwind(|| generic(port, "generic-secret", &format!("e-{i}"), &format!(r#"{{"id": {i}}}"#)));
                match status {
                    Ok(200) => acked.store(i + 1, std::sync::atomic::Ordering::SeqCst),
                    _ => return i,
                }
            }
            unreachable!()
        })
    };
    std::thread::sleep(Duration::from_millis(2500));
    let before = acked.load(std::sync::atomic::Ordering::SeqCst);
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
    let sent = poster.join().unwrap();
    let at_exit = count(&p) as usize;
    assert!(before > 100, "only {before} events were posted");
    assert!(at_exit >= before, "{at_exit} committed at exit, {before} acknowledged before SIGTERM");
    // Anything acknowledged after the stop is in the log: the next run stores it, once.
    // (The request in flight at the exit may be stored without its answer reaching the sender,
    // who would retry it and be told it is a duplicate.)
    replay_log(&p, "hooks");
    let stored = count(&p) as usize;
    assert!(stored == sent || stored == sent + 1, "{stored} stored, {sent} acknowledged: every acknowledged event, once");
}
