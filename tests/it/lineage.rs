//! `lake lineage`: column lineage read from the models' query plans, on a project whose models
//! join, aggregate, window, CASE, CTE, `select *`, union, subqueries and an ephemeral model
//! (exact sources and kinds per column), downstream, JSON and text output, name errors; and on
//! the repository's demo, with the README's lineage commands.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::demo::shell_words;
use crate::support::TestProject;

/// Seeds raw.orders, raw.customers and raw.refunds, and one model for each shape.
fn project() -> TestProject {
    let p = TestProject::new();
    p.write("lake.toml", "name = \"lineage\"\nlayers = [\"raw\", \"staging\", \"analytics\"]\n");
    p.write(
        "seeds/seeds.yml",
        "seeds:
  - name: orders
    config:
      column_types: {id: bigint, customer_id: bigint, amount: double, status: varchar, created_at: timestamp}
  - name: customers
    config:
      column_types: {id: bigint, name: varchar, country: varchar}
  - name: refunds
    config:
      column_types: {order_id: bigint, amount: double}
",
    );
    p.write("seeds/orders.csv", "id,customer_id,amount,status,created_at\n1,1,10.5,paid,2026-01-01T00:00:00\n");
    p.write("seeds/customers.csv", "id,name,country\n1,ann,NL\n");
    p.write("seeds/refunds.csv", "order_id,amount\n1,2\n");
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    tables:\n      - name: orders\n      - name: customers\n      - name: refunds\n",
    );
    p.write(
        "models/staging/paid_orders.sql",
        "{{ config(materialized='ephemeral') }}
select id as order_id, customer_id, cast(amount as double) as amount, created_at
from {{ source('raw', 'orders') }}
where status = 'paid'
",
    );
    p.write("models/staging/stg_customers.sql", "select * from {{ source('raw', 'customers') }}\n");
    p.write(
        "models/analytics/customer_orders.sql",
        "with paid as (
    select * from {{ ref('paid_orders') }}
)
select
    c.id                                                      as customer_id,
    upper(c.name)                                             as customer_name,
    count(*)                                                  as orders,
    sum(p.amount)                                             as revenue,
    case when c.country = 'NL' then 'home' else 'abroad' end  as market
from {{ ref('stg_customers') }} as c
join paid as p on p.customer_id = c.id
group by c.id, c.name, c.country
",
    );
    p.write(
        "models/analytics/order_ranks.sql",
        "select
    order_id,
    row_number() over (partition by customer_id order by created_at) as order_rank,
    sum(amount) over (partition by customer_id)                      as customer_total
from {{ ref('paid_orders') }}
",
    );
    p.write(
        "models/analytics/money_moves.sql",
        "select id as ref_id, amount from {{ source('raw', 'orders') }}
union all
select order_id as ref_id, -amount from {{ source('raw', 'refunds') }}
",
    );
    p.write(
        "models/analytics/big_customers.sql",
        "select id, name, (select max(amount) from {{ source('raw', 'refunds') }}) as top_refund
from {{ ref('stg_customers') }}
where id in (select customer_id from {{ source('raw', 'orders') }} where amount > 5)
",
    );
    // Rust models: one opaque, one declaring its lineage.
    p.write(
        "models/analytics/rust_models.yml",
        "models:
  - name: latest_orders
    config:
      function: dedupe_latest
      inputs: [raw.orders]
      params: {key: customer_id, order_by: created_at}
  - name: latest_customers
    config:
      function: dedupe_latest
      inputs: [stg_customers]
      params: {key: id, order_by: id}
      lineage:
        id: {direct: [stg_customers.id]}
        name: {direct: [stg_customers.name], group_by: [stg_customers.id]}
",
    );
    p.lake(&["seed"]).assert_ok();
    p
}

/// `lake lineage ARGS --output json`, parsed.
fn lineage_json(p: &TestProject, args: &[&str]) -> Value {
    let mut all = vec!["lineage"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let out = p.lake(&all);
    out.assert_ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// `kind table.column [via a,b]` of a node or edge.
fn line(v: &Value) -> String {
    let via: Vec<&str> = v["via"].as_array().expect("via").iter().map(|m| m.as_str().unwrap()).collect();
    let via = if via.is_empty() { String::new() } else { format!(" via {}", via.join(",")) };
    format!("{} {}.{}{via}", v["kind"].as_str().unwrap_or("root"), v["table"].as_str().unwrap(), v["column"].as_str().unwrap())
}

fn lines(values: &Value) -> BTreeSet<String> {
    values.as_array().expect("array").iter().map(line).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The root column `name` of an upstream answer: (its sources, its indirect uses).
fn column<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["columns"].as_array().unwrap().iter().find(|c| c["column"] == name).unwrap_or_else(|| panic!("no column {name} in {doc}"))
}

#[test]
fn every_column_traces_to_its_source_columns_through_ctes_star_ephemerals_joins_and_aggregates() {
    let p = project();
    let doc = lineage_json(&p, &["customer_orders"]);
    assert_eq!(doc["table"], "analytics.customer_orders");
    assert_eq!(doc["direction"], "upstream");
    let names: Vec<&str> = doc["columns"].as_array().unwrap().iter().map(|c| c["column"].as_str().unwrap()).collect();
    assert_eq!(names, ["customer_id", "customer_name", "orders", "revenue", "market"]);

    // Rows of every column: the ephemeral model's filter, the join keys and the group keys.
    let rows = [
        "filter raw.orders.status via paid_orders",
        "join raw.orders.customer_id via paid_orders",
        "join staging.stg_customers.id",
        "group_by staging.stg_customers.id",
        "group_by staging.stg_customers.name",
        "group_by staging.stg_customers.country",
    ];
    let without = |col: &str| -> BTreeSet<String> { rows.iter().filter(|r| !r.ends_with(col)).map(|r| r.to_string()).collect() };
    let expected: [(&str, &[&str], BTreeSet<String>); 5] = [
        ("customer_id", &["direct staging.stg_customers.id"], without("stg_customers.id")),
        ("customer_name", &["expression staging.stg_customers.name"], without("stg_customers.name")),
        ("orders", &[], set(&rows)),
        ("revenue", &["aggregate raw.orders.amount via paid_orders"], set(&rows)),
        ("market", &["expression staging.stg_customers.country"], without("stg_customers.country")),
    ];
    for (name, sources, indirect) in expected {
        let c = column(&doc, name);
        assert_eq!(lines(&c["children"]), set(sources), "sources of {name}");
        assert_eq!(lines(&c["indirect"]), indirect, "indirect of {name}");
    }
    // Upstream goes on across models: stg_customers (select *) copies raw.customers.
    let id = column(&doc, "customer_id");
    assert_eq!(lines(&id["children"][0]["children"]), set(&["direct raw.customers.id"]));
    let name = column(&doc, "customer_name");
    assert_eq!(lines(&name["children"][0]["children"]), set(&["direct raw.customers.name"]));
}

#[test]
fn window_union_and_subquery_columns_have_their_own_kinds() {
    let p = project();
    let ranks = lineage_json(&p, &["order_ranks"]);
    let filter = set(&["filter raw.orders.status via paid_orders"]);
    for (name, sources) in [
        ("order_id", &["direct raw.orders.id via paid_orders"][..]),
        ("order_rank", &["window raw.orders.customer_id via paid_orders", "window raw.orders.created_at via paid_orders"]),
        ("customer_total", &["window raw.orders.customer_id via paid_orders", "window raw.orders.amount via paid_orders"]),
    ] {
        assert_eq!(lines(&column(&ranks, name)["children"]), set(sources), "order_ranks.{name}");
        assert_eq!(lines(&column(&ranks, name)["indirect"]), filter, "order_ranks.{name}");
    }

    let moves = lineage_json(&p, &["money_moves"]);
    assert_eq!(lines(&column(&moves, "ref_id")["children"]), set(&["direct raw.orders.id", "direct raw.refunds.order_id"]));
    assert_eq!(lines(&column(&moves, "amount")["children"]), set(&["direct raw.orders.amount", "expression raw.refunds.amount"]));
    assert_eq!(lines(&column(&moves, "amount")["indirect"]), set(&[]));

    // IN (subquery) decides rows; a scalar subquery's value flows into its column.
    let big = lineage_json(&p, &["big_customers"]);
    let subquery_filter = ["filter raw.orders.customer_id", "filter raw.orders.amount"];
    assert_eq!(lines(&column(&big, "id")["children"]), set(&["direct staging.stg_customers.id"]));
    assert_eq!(lines(&column(&big, "id")["indirect"]), set(&subquery_filter));
    assert_eq!(lines(&column(&big, "name")["indirect"]), set(&[subquery_filter[0], subquery_filter[1], "filter staging.stg_customers.id"]));
    assert_eq!(lines(&column(&big, "top_refund")["children"]), set(&["aggregate raw.refunds.amount"]));
}

#[test]
fn downstream_lists_every_column_a_source_column_feeds() {
    let p = project();
    let doc = lineage_json(&p, &["raw.orders.amount", "--downstream"]);
    assert_eq!(doc["direction"], "downstream");
    let root = &doc["columns"][0];
    assert_eq!(line(root), "root raw.orders.amount");
    assert_eq!(
        lines(&root["children"]),
        set(&[
            "aggregate analytics.customer_orders.revenue via paid_orders",
            "window analytics.order_ranks.customer_total via paid_orders",
            "direct analytics.money_moves.amount",
            // Used only in the IN subquery's WHERE: it decides which rows big_customers has.
            "filter analytics.big_customers.*",
            // A Rust model reading raw.orders: every column it has (unknown until built).
            "opaque analytics.latest_orders.*",
        ])
    );
    // A column used only to filter: the tables whose rows it decides.
    let status = lineage_json(&p, &["raw.orders.status", "--downstream"]);
    assert_eq!(
        lines(&status["columns"][0]["children"]),
        set(&[
            "filter analytics.customer_orders.* via paid_orders",
            "filter analytics.order_ranks.* via paid_orders",
            "opaque analytics.latest_orders.*"
        ])
    );
    // Downstream goes on across models: raw.customers.name → stg_customers.name → two models.
    let name = lineage_json(&p, &["raw.customers.name", "--downstream"]);
    let stg = &name["columns"][0]["children"][0];
    assert_eq!(line(stg), "direct staging.stg_customers.name");
    assert_eq!(
        lines(&stg["children"]),
        set(&[
            "direct analytics.big_customers.name",
            "direct analytics.latest_customers.name",
            // Its undeclared columns (unknown until built) are opaque.
            "opaque analytics.latest_customers.*",
            "expression analytics.customer_orders.customer_name",
            "group_by analytics.customer_orders.*"
        ])
    );
}

#[test]
fn rust_models_are_opaque_unless_they_declare_lineage() {
    let p = project();
    // Not built: its columns are unknown, every input column feeds them.
    let doc = lineage_json(&p, &["latest_orders"]);
    assert_eq!(doc["columns"].as_array().unwrap().len(), 1);
    assert_eq!(line(&doc["columns"][0]), "root analytics.latest_orders.*");
    assert_eq!(lines(&doc["columns"][0]["children"]), set(&["opaque raw.orders.*"]));
    // Built: its own columns, each fed by every input column.
    p.lake(&["run", "--select", "latest_orders"]).assert_ok();
    let doc = lineage_json(&p, &["latest_orders"]);
    let names: Vec<&str> = doc["columns"].as_array().unwrap().iter().map(|c| c["column"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "customer_id", "amount", "status", "created_at"]);
    assert_eq!(lines(&column(&doc, "amount")["children"]), set(&["opaque raw.orders.*"]));

    // Declared: exactly what the config says, walked on upstream.
    let doc = lineage_json(&p, &["latest_customers"]);
    let names: Vec<&str> = doc["columns"].as_array().unwrap().iter().map(|c| c["column"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "name", "*"], "declared columns, and the others until it is built");
    assert_eq!(lines(&column(&doc, "*")["children"]), set(&["opaque staging.stg_customers.*"]));
    let name = column(&doc, "name");
    assert_eq!(lines(&name["children"]), set(&["direct staging.stg_customers.name"]));
    assert_eq!(lines(&name["indirect"]), set(&["group_by staging.stg_customers.id"]));
    assert_eq!(lines(&name["children"][0]["children"]), set(&["direct raw.customers.name"]));
    let down = lineage_json(&p, &["stg_customers.name", "--downstream"]);
    assert!(lines(&down["columns"][0]["children"]).contains("direct analytics.latest_customers.name"), "{down}");

    // A declaration naming no input is an error naming the file and the fix.
    let yml = std::fs::read_to_string(p.path().join("models/analytics/rust_models.yml")).unwrap();
    p.write("models/analytics/rust_models.yml", &yml.replace("id: {direct: [stg_customers.id]}", "id: {direct: [stg_customer.id]}"));
    let out = p.lake(&["lineage", "latest_customers"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("rust_models.yml: config lineage.id: 'stg_customer' is not an input of latest_customers; did you mean 'stg_customers'?"),
        "{}",
        out.stderr
    );
}

#[test]
fn text_output_is_a_tree() {
    let p = project();
    let out = p.lake(&["lineage", "money_moves.amount"]);
    out.assert_ok();
    assert_eq!(out.stdout, "analytics.money_moves.amount\n├── direct raw.orders.amount\n└── expression raw.refunds.amount\n");
    let out = p.lake(&["lineage", "order_ranks.order_id", "--upstream"]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        "analytics.order_ranks.order_id\n│   rows: filter raw.orders.status (via paid_orders)\n└── direct raw.orders.id (via paid_orders)\n"
    );
}

#[test]
fn unknown_names_are_usage_errors_with_a_suggestion() {
    let p = project();
    let out = p.lake(&["lineage", "customer_orders.revenu"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("analytics.customer_orders has no column 'revenu'; did you mean 'revenue'?"), "{}", out.stderr);
    let out = p.lake(&["lineage", "custmer_orders"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("no model or table 'custmer_orders'; did you mean 'customer_orders'?"), "{}", out.stderr);
    let out = p.lake(&["lineage", "paid_orders.amount"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("paid_orders is ephemeral"), "{}", out.stderr);
    let out = p.lake(&["lineage", "money_moves", "--upstream", "--downstream"]);
    assert_eq!(out.code, 2, "{}", out.all());
}

#[test]
fn a_model_reading_an_unloaded_source_says_what_to_load() {
    let p = project();
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: orders\n      - name: customers\n      - name: refunds\n      - name: later\n");
    p.write("models/staging/stg_later.sql", "select * from {{ source('raw', 'later') }}\n");
    let out = p.lake(&["lineage", "stg_later"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("raw.later has no table yet (load it with `lake ingest` or `lake seed`, or run the model that writes it)"), "{}", out.stderr);
    // The other models still have their lineage.
    p.lake(&["lineage", "money_moves"]).assert_ok();
}

/// The README's "Column lineage" commands, run on a small build of the demo.
fn readme_lineage_commands() -> Vec<Vec<String>> {
    crate::support::readme::sh_lines("Column lineage").iter().map(|l| shell_words(l)).collect()
}

#[test]
fn the_demo_lifetime_value_traces_to_shopify_order_totals() {
    // A small window of the demo's events, landed, and the Rust model built (its columns are
    // known once built); the SQL models are planned, not run.
    let p = TestProject::demo();
    p.lake(&["demo", "generate", "--customers", "30", "--days", "1", "--until", "2026-11-04", "--out", "events"]).assert_ok();
    p.lake(&["ingest", "--all", "--once"]).assert_ok();
    let out = p.lake(&["lineage", "customer_360.lifetime_value"]);
    assert_eq!(out.code, 2, "{}", out.all());
    // customer_metrics reads entity_index's side table semantic.entity_changes (a source).
    assert!(out.stderr.contains("semantic.entity_changes has no table yet"), "{}", out.stderr);
    p.lake(&["run", "--select", "+entity_index"]).assert_ok();
    let doc = lineage_json(&p, &["customer_360.lifetime_value"]);
    let root = &doc["columns"][0];
    // marts.customer_360.lifetime_value = customer_metrics.net_revenue, a sum of order totals.
    let metrics = &root["children"];
    assert_eq!(lines(metrics), set(&["direct analytics.customer_metrics.net_revenue"]));
    let staged = &metrics[0]["children"];
    assert!(lines(staged).contains("aggregate staging.stg_shopify_orders.total_amount"), "{staged}");
    let total = staged.as_array().unwrap().iter().find(|c| c["column"] == "total_amount").unwrap();
    assert_eq!(lines(&total["children"]), set(&["direct raw.shopify_orders.total_price"]));
    // customer_360 joins on the Rust model's entity ids; that model is opaque.
    assert!(lines(&root["indirect"]).contains("join semantic.entity_index.entity_id"), "{root}");
    let email = lineage_json(&p, &["entity_index.email"]);
    assert_eq!(
        lines(&email["columns"][0]["children"]),
        set(&["opaque staging.stg_shopify_customers.*", "opaque staging.stg_stripe_customers.*", "opaque staging.stg_hubspot_contacts.*"])
    );

    let commands = readme_lineage_commands();
    assert!(commands.len() >= 2, "{commands:?}");
    for words in commands {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let ["cargo", "run", "--release", "--", args @ ..] = words.as_slice() else {
            panic!("a README lineage command this test does not know how to run: {words:?}");
        };
        let out = p.lake(args);
        assert_eq!(out.code, 0, "README command {words:?} failed:\n{}", out.all());
        // Text names `raw.shopify_orders.total_price`, JSON its table and column apart.
        assert!(out.stdout.contains("raw.shopify_orders") && out.stdout.contains("total_price"), "{words:?} printed:\n{}", out.stdout);
    }
}
