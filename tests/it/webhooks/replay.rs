//! A signed body resent with a new id header (the id is not signed) is recognized by the
//! digest of its signed content, also after a restart; the generic provider's signed
//! timestamp bounds replays in time.

use super::{free_port, hooks_toml, generic_at, generic_full, replay_log, shopify_full, start, wait_listening};
use crate::support::TestProject;

fn config(port: u16) -> String {
    hooks_toml(
        port,
        600,
        "[ingest.hooks.webhooks.shopify]\nsecret_env = [\"T_SHOPIFY_NEW\"]\n\
         [ingest.hooks.webhooks.generic]\nsecret_env = [\"T_GENERIC\"]\ntolerance_seconds = 120\n",
    )
}

#[track_caller]
fn assert_stored(answer: (u16, String), stored: bool) {
    assert_eq!(answer.0, 200, "{}", answer.1);
    let said = if stored { "stored" } else { "duplicate, already stored" };
    assert!(answer.1.ends_with(&format!("\r\n\r\n{said}\n")), "expected `{said}`, got:\n{}", answer.1);
}

#[test]
fn a_signed_body_replayed_with_a_new_id_is_not_stored_again() {
    let port = free_port();
    let p = TestProject::new();
    p.write("lake.toml", &config(port));
    let mut server = start(&p, &["hooks"]);
    wait_listening(port);
    let order = r#"{"id": 1, "total": 10}"#;
    let now = chrono::Utc::now().timestamp();

    // Shopify and generic without a timestamp: the body is what is signed.
    assert_stored(shopify_full(port, "shp-new-secret", "w-1", order), true);
    assert_stored(shopify_full(port, "shp-new-secret", "w-2", order), false);
    assert_stored(generic_full(port, "generic-secret", "g-1", order), true);
    assert_stored(generic_full(port, "generic-secret", "g-2", order), false);

    // Generic with a signed timestamp: the same signed request under a new id is a replay...
    let ping = r#"{"ping": true}"#;
    assert_stored(generic_at(port, "generic-secret", "t-1", now, now, ping), true);
    assert_stored(generic_at(port, "generic-secret", "t-2", now, now, ping), false);
    // ... the sender's redelivery with a fresh timestamp is recognized by its id ...
    assert_stored(generic_at(port, "generic-secret", "t-1", now + 1, now + 1, ping), false);
    // ... and a new message (new timestamp, new id) with the same body is stored.
    assert_stored(generic_at(port, "generic-secret", "t-3", now + 2, now + 2, ping), true);
    // Outside the tolerance, or a timestamp other than the signed one: refused.
    assert_eq!(generic_at(port, "generic-secret", "t-4", now - 121, now - 121, ping).0, 401);
    assert_eq!(generic_at(port, "generic-secret", "t-5", now, now + 5, ping).0, 401);

    // After a restart the digests come back from the write-ahead log.
    server.kill().unwrap();
    server.wait().unwrap();
    let mut server = start(&p, &["hooks"]);
    wait_listening(port);
    assert_stored(shopify_full(port, "shp-new-secret", "w-3", order), false);
    assert_stored(generic_full(port, "generic-secret", "g-3", order), false);
    assert_stored(generic_at(port, "generic-secret", "t-6", now, now, ping), false);
    server.kill().unwrap();
    server.wait().unwrap();

    replay_log(&p, "hooks");
    let ids = p.sql_rows("select _provider, _webhook_id from raw.webhooks order by 1, 2");
    let expected = [["generic", "g-1"], ["generic", "t-1"], ["generic", "t-3"], ["shopify", "w-1"]];
    assert_eq!(ids, expected.map(|r| r.map(String::from).to_vec()).to_vec());
}
