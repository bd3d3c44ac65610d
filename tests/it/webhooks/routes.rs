//! Routes: each webhook event lands in the table its provider and event type route it to,
//! through that table's own log; a HubSpot batch is split into one row per event, each routed
//! on its own; a kill after the 2xx loses nothing in any table; a bad route is a usage error.

use super::*;

fn routed_toml(port: u16, routes: &str) -> String {
    hooks_toml(
        port,
        60,
        &format!(
            "[ingest.hooks.routes]\n{routes}\n\
             [ingest.hooks.webhooks.shopify]\nsecret_env = [\"T_SHOPIFY_NEW\"]\n\
             [ingest.hooks.webhooks.stripe]\nsecret_env = [\"T_STRIPE\"]\n\
             [ingest.hooks.webhooks.hubspot]\nsecret_env = [\"T_HUBSPOT\"]\n"
        ),
    )
}

fn rows(p: &TestProject, table: &str) -> Vec<Vec<String>> {
    let out = p.lake(&["sql", &format!("select _record_id, _event_type from {table} order by 1"), "--format", "csv"]);
    if out.code != 0 {
        return Vec::new();
    }
    out.stdout.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

#[test]
fn each_event_lands_in_its_routed_table_once_even_after_a_kill() {
    let port = free_port();
    let p = TestProject::new();
    p.write(
        "lake.toml",
        &routed_toml(port, "\"shopify:orders/*\" = \"raw.orders\"\n\"hubspot:contact.creation\" = \"raw.contacts\"\n"),
    );
    let mut server = start(&p, &["hooks"]);
    wait_listening(port);
    let now = chrono::Utc::now();
    assert_eq!(shopify(port, "shp-new-secret", "w-1", r#"{"id": 1}"#), 200);
    // One HubSpot batch: two creations go to raw.contacts, the property change to the fallback.
    let batch = r#"[{"eventId": 7, "subscriptionType": "contact.creation", "objectId": 42},
                    {"eventId": 8, "subscriptionType": "contact.propertyChange", "objectId": 42},
                    {"eventId": 9, "subscriptionType": "contact.creation", "objectId": 43}]"#;
    assert_eq!(hubspot(port, "hubspot-app-secret", now.timestamp_millis(), batch), 200);
    // HubSpot redelivers the same batch with a new timestamp: nothing is stored twice.
    assert_eq!(hubspot(port, "hubspot-app-secret", now.timestamp_millis() + 1000, batch), 200);
    let body = r#"{"id": "evt_1", "type": "charge.succeeded"}"#;
    assert_eq!(stripe(port, "whsec_stripe", now.timestamp(), body, body), 200);

    // Killed before its 60 s batch flushed: the logs hold every acknowledged event.
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(rows(&p, "raw.orders").is_empty(), "nothing was committed before the kill");
    replay_log(&p, "hooks");
    assert_eq!(rows(&p, "raw.orders"), vec![vec!["shopify:w-1".to_string(), "orders/create".into()]]);
    assert_eq!(
        rows(&p, "raw.contacts"),
        vec![vec!["hubspot:7".to_string(), "contact.creation".into()], vec!["hubspot:9".into(), "contact.creation".into()]]
    );
    assert_eq!(
        rows(&p, "raw.webhooks"),
        vec![vec!["hubspot:8".to_string(), "contact.propertyChange".into()], vec!["stripe:evt_1".into(), "charge.succeeded".into()]]
    );
    assert_eq!(p.sql_count("select count(*) from raw.contacts where \"objectId\" = 42"), 1);
    // Each table keeps its own positions: replaying again adds nothing anywhere.
    replay_log(&p, "hooks");
    assert_eq!(rows(&p, "raw.contacts").len() + rows(&p, "raw.orders").len() + rows(&p, "raw.webhooks").len(), 5);
    let status = p.lake(&["ingest", "--status", "hooks"]);
    status.assert_ok();
    for table in ["raw.webhooks", "raw.orders", "raw.contacts"] {
        assert!(status.stdout.contains(&format!("→ {table}:")), "{}", status.stdout);
    }
}

#[test]
fn a_bad_route_is_a_usage_error_naming_it() {
    let p = TestProject::new();
    for (routes, says) in [
        ("\"orders\" = \"raw.orders\"", "`orders` is not \"<provider>:<event type pattern>\""),
        ("\"square:payment.*\" = \"raw.payments\"", "provider `square`"),
        ("\"stripe:charge.*\" = \"charges\"", "is not a namespace.table"),
    ] {
        p.write("lake.toml", &routed_toml(free_port(), routes));
        let out = p.lake_env(&["ingest", "hooks", "--once"], &SECRETS);
        assert_eq!(out.code, 2, "{routes}: {}", out.all());
        assert!(out.stderr.contains("[ingest.hooks]") && out.stderr.contains(says), "{routes}: {}", out.stderr);
    }
    p.write("lake.toml", "name = \"x\"\n[ingest.files]\nfrom = \"in/*.ndjson\"\ntable = \"raw.x\"\n[ingest.files.routes]\n\"a:b\" = \"raw.y\"\n");
    let out = p.lake(&["ingest", "files", "--once"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("only webhook sources"), "{}", out.stderr);
}

#[test]
fn the_most_specific_glob_picks_the_table() {
    use lake::ingest::webhook::Routes;
    let routes: std::collections::BTreeMap<String, String> = [
        ("shopify:orders/*", "raw.shopify_orders"),
        ("shopify:*", "raw.shopify_other"),
        ("stripe:charge.*", "raw.stripe_charges"),
        ("stripe:charge.dispute.*", "raw.disputes"),
        ("stripe:a*b*c", "raw.abc"),
        ("stripe:ab", "raw.ab"),
        ("*:ping", "raw.pings"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = Routes::parse("raw.webhooks", &routes, &|p| p == "shopify" || p == "stripe").unwrap();
    let table = |p: &str, t: Option<&str>| r.tables()[r.lane(p, t)].clone();
    assert_eq!(table("shopify", Some("orders/create")), "raw.shopify_orders");
    assert_eq!(table("shopify", Some("customers/update")), "raw.shopify_other");
    assert_eq!(table("shopify", Some("")), "raw.shopify_other");
    assert_eq!(table("stripe", Some("charge.dispute.created")), "raw.disputes");
    assert_eq!(table("stripe", Some("charge.refunded")), "raw.stripe_charges");
    assert_eq!(table("stripe", Some("customer.created")), "raw.webhooks");
    assert_eq!(table("stripe", None), "raw.webhooks");
    assert_eq!(table("stripe", Some("ping")), "raw.pings");
    assert_eq!(table("stripe", Some("axxbyyc")), "raw.abc");
    assert_eq!(table("stripe", Some("axxc")), "raw.webhooks");
    assert_eq!(table("stripe", Some("ab")), "raw.ab");
    assert_eq!(table("stripe", Some("abc")), "raw.abc");
    // A route for a provider the server does not serve, or without a colon, is refused.
    assert!(Routes::parse("raw.w", &[("hubspot:*".to_string(), "raw.h".to_string())].into(), &|_| false).is_err());
    assert!(Routes::parse("raw.w", &[("nocolon".to_string(), "raw.h".to_string())].into(), &|_| true).is_err());
}
