//! `ref(..., whole=true)` in a `watermark: snapshot` model: the plain reference reads only the
//! rows added since the last run (which keys changed), the whole one every row (to recompute
//! those keys), so an aggregate can be merged incrementally and equal a full rebuild.

use crate::support::TestProject;

fn project() -> TestProject {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: orders\n    config:\n      files: \"orders*.csv\"\n      column_types: {order_id: bigint, customer: varchar, amount: \"decimal(10,2)\"}\n",
    );
    p.write("seeds/orders_1.csv", "order_id,customer,amount\n1,ann,10.00\n2,bob,5.00\n3,ann,2.50\n");
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: orders\n");
    p.write(
        "models/marts/customer_totals.sql",
        r#"{{ config(materialized='incremental', incremental_strategy='merge', unique_key='customer', watermark='snapshot') }}
-- The customers with new orders since the last run, recomputed over all their orders.
with changed as (
    select distinct customer from {{ source('raw', 'orders') }}
)
select o.customer, count(*) as orders, sum(o.amount) as total
from {{ source('raw', 'orders', whole=true) }} as o
where o.customer in (select customer from changed)
group by o.customer
"#,
    );
    p
}

fn totals(p: &TestProject) -> Vec<Vec<String>> {
    p.sql_rows("select customer, orders, total from marts.customer_totals order by customer")
}

#[test]
fn a_whole_reference_recomputes_the_changed_keys_over_every_row() {
    let p = project();
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    assert_eq!(totals(&p), [["ann", "2", "12.50"], ["bob", "1", "5.00"]]);
    // Nothing new since the first (full) build: up to date, though its SQL had the full form.
    let snapshots = p.snapshot_count("marts.customer_totals");
    p.lake(&["run"]).assert_ok();
    assert_eq!(p.run_results()["results"][0]["status"], "skipped");
    assert_eq!(p.snapshot_count("marts.customer_totals"), snapshots);

    p.write("seeds/orders_2.csv", "order_id,customer,amount\n4,ann,1.00\n5,cy,7.00\n");
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
    let result = &p.run_results()["results"][0];
    assert_eq!(result["input_files_read"]["raw.orders"], 1, "read only the new rows' file: {result}");
    assert_eq!(result["rows_written"], 2, "merged only ann and cy: {result}");
    let incremental = totals(&p);
    assert_eq!(incremental, [["ann", "3", "13.50"], ["bob", "1", "5.00"], ["cy", "1", "7.00"]]);

    p.lake(&["run", "--full-refresh"]).assert_ok();
    assert_eq!(totals(&p), incremental, "the incremental merge equals a full rebuild");
}

#[test]
fn whole_on_a_full_run_is_the_plain_table_and_unknown_keywords_are_errors() {
    let p = project();
    p.lake(&["seed"]).assert_ok();
    let compiled = p.lake(&["compile", "--select", "customer_totals"]);
    compiled.assert_ok();
    let sql = std::fs::read_to_string(p.path().join("target/compiled/marts/customer_totals.sql"))
        .or_else(|_| Ok::<_, std::io::Error>(compiled.stdout.clone()))
        .unwrap();
    assert!(!sql.contains("\"whole\""), "a full run reads the plain table: {sql}");
    p.write(
        "models/marts/customer_totals.sql",
        "select * from {{ source('raw', 'orders', entire=true) }}\n",
    );
    let out = p.lake(&["run"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.all().contains("entire"), "{}", out.all());
}
