//! Vectorized NDJSON decoding pinned against the per-record conversion: a batch mixing
//! regular lines, unknown fields, wrong types, malformed JSON, nested objects and edge cases
//! lands the same rows, `_extra` values and dead letters (with file and line) in every mode.

use crate::support::TestProject;

/// One line per case; the comment says what the per-record conversion does with it.
const LINES: &[&str] = &[
    // 1: regular, every type, a nested object in a varchar column (stored as compact JSON)
    r#"{"id": 1, "n": 2, "amount": 3.25, "ok": true, "name": "a\u00e9\"q", "doc": {"z": 1, "a": [1, 2.50, {"k": null}], "s": "x/y\n"}, "at": "2026-01-01T10:00:00+02:00", "day": "2026-02-03", "kind": "order"}"#,
    // 2: unknown fields: `_extra` (or new columns with evolve)
    r#"{"id": 2, "color": "red", "nested": {"b": 1, "c": [true]}}"#,
    // 3: wrong type: dead letter
    r#"{"id": "x3"}"#,
    // 4: int overflow: dead letter
    r#"{"id": 4, "n": 3000000000}"#,
    // 5: malformed JSON: dead letter
    r#"{"id": 5,"#,
    // 6: a nested value written non-canonically: re-serialized
    r#"{"id": 6, "doc": { "b" : 1e2, "c": -0, "d": 1.0, "e": "\u0041\/" }}"#,
    // 7: numbers and booleans as strings: converted
    r#"{"id": "7", "n": " 8 ", "amount": "8.5", "ok": "TRUE"}"#,
    // 8: not an object: dead letter
    r#"[1, 2]"#,
    // 9: required field missing: dead letter
    r#"{"n": 1}"#,
    // 10: scalars in varchar columns: their JSON text
    r#"{"id": 10, "name": 12.50, "doc": true, "kind": 7}"#,
    // 11: nulls
    r#"{"id": 11, "name": null, "amount": null, "doc": null, "kind": null}"#,
    // 12: a duplicate key: the last value wins
    r#"{"id": 12, "name": "first", "name": "second"}"#,
    // 13: a duplicate key inside a nested value
    r#"{"id": 13, "doc": {"a": 1, "b": 2, "a": 3}}"#,
    // 14: a timestamp without a zone (UTC), and a date that is not ISO: dead letter
    r#"{"id": 14, "at": "2026-01-01 10:00:00", "day": "03.02.2026"}"#,
    // 15: an integer written as a float: dead letter
    r#"{"id": 15.0}"#,
    // 16: an integer in a double column, floats at the edges
    r#"{"id": 16, "amount": 7, "doc": [1.7976931348623157e308, 5e-324, 123456789012345678901234567890, 0.30000000000000004]}"#,
    // 17: a field named like a metadata column: `_extra` in both modes
    r#"{"id": 17, "_line": 99}"#,
    // 18: beyond i64: dead letter
    r#"{"id": 18446744073709551615}"#,
    // 19: an escaped key
    r#"{"id": 19, "na\u006de": "esc"}"#,
    // 20: blanks around the object
    "  {\"id\": 20}\t ",
    // 21: trailing characters: dead letter
    r#"{"id": 21} x"#,
    // 22: two objects on one line: dead letter
    r#"{"id": 22}{"id": 23}"#,
    // 23: a lone surrogate: dead letter
    r#"{"id": 24, "name": "\ud800"}"#,
    // 24: a timestamp that does not parse: dead letter
    r#"{"id": 25, "at": "yesterday"}"#,
    // 25: a nested array with objects and unicode text
    r#"{"id": 26, "doc": [{"sku": "ü-1", "qty": 2, "price": "9.90"}, {"sku": "b", "qty": -1, "tags": []}], "ok": false}"#,
    // 26: an empty object key and nested empties
    r#"{"id": 27, "doc": {"": {}, "x": []}}"#,
];

fn write_input(p: &TestProject) {
    write_lines(p, 1);
}

/// [`LINES`] `times` over into `in/a.ndjson`.
fn write_lines(p: &TestProject, times: usize) {
    let mut bytes = Vec::new();
    for _ in 0..times {
        bytes.extend_from_slice(&input_bytes());
    }
    std::fs::create_dir_all(p.path().join("in")).unwrap();
    std::fs::write(p.path().join("in/a.ndjson"), &bytes).unwrap();
}

fn input_bytes() -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, line) in LINES.iter().enumerate() {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        if i == 10 {
            // Invalid UTF-8: a dead letter naming its line; an empty line is skipped.
            bytes.extend_from_slice(b"{\"id\": 100, \"name\": \"caf\xe9\"}\n\n");
        }
    }
    bytes
}

const CONFIG: &str = r#"name = "t"

[ingest.typed]
from = "in/*.ndjson"
table = "raw.typed"
columns = { id = "bigint", n = "int", amount = "double", ok = "boolean", name = "varchar", doc = "varchar", at = "timestamptz", day = "date", kind = "varchar" }
required = ["id"]
event_type = "kind"

[ingest.grown]
from = "in/*.ndjson"
table = "raw.grown"
columns = { id = "bigint", n = "int", amount = "double", ok = "boolean", name = "varchar", doc = "varchar", at = "timestamptz", day = "date", kind = "varchar" }
evolve = true

[ingest.mapped]
from = "in/*.ndjson"
table = "raw.mapped"
columns = { id = "bigint", z = "bigint", name = "varchar" }
map = { z = "doc.z" }
"#;

/// Every stored column but the times of arrival and load, in line order.
fn dump(p: &TestProject, table: &str) -> serde_json::Value {
    let query = format!(
        "select * exclude (_received_at, _loaded_at, _path, _record_id), _path like '%in/a.ndjson' as path_ok from {table} order by _line"
    );
    // Every row's _record_id is its file and line.
    let ids = format!("select count(*) from {table} where _record_id is distinct from _path || ':' || cast(_line as varchar)");
    assert_eq!(p.sql_count(&ids), 0, "{table}: _record_id is not <path>:<line>");
    let out = p.lake(&["sql", &query, "--format", "json"]);
    out.assert_ok();
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// The rows and dead letters the per-record conversion stored for [`LINES`] (captured from it
/// before the vectorized decoder existed, and checked by hand against the comments above).
fn expected() -> serde_json::Value {
    serde_json::from_str(include_str!("mixed_batch_expected.json")).unwrap()
}

fn assert_tables_match(p: &TestProject, batch_rows: &str) {
    let expected = expected();
    for table in ["raw.typed", "raw.grown", "raw.mapped"] {
        for t in [table.to_string(), format!("{table}__errors")] {
            let got = dump(p, &t);
            let want = &expected[t.as_str()];
            let (got_rows, want_rows) = (got.as_array().unwrap(), want.as_array().unwrap());
            assert_eq!(got_rows.len(), want_rows.len(), "{t} (batches of {batch_rows}): {got:#}");
            for (g, w) in got_rows.iter().zip(want_rows) {
                assert_eq!(g, w, "{t} (batches of {batch_rows})");
            }
        }
    }
}

#[test]
fn a_mixed_batch_lands_the_same_rows_and_dead_letters_in_every_mode() {
    // In one batch, and in batches of 5 (the layout grows between batches with evolve).
    for batch_rows in ["10000", "5"] {
        let p = TestProject::new();
        p.write("lake.toml", CONFIG);
        write_input(&p);
        let out = p.lake(&["ingest", "typed", "grown", "mapped", "--once", "--batch-rows", batch_rows]);
        out.assert_ok();
        assert!(out.stdout.contains("typed: 27 records read, 14 rows to raw.typed, 13 dead letters"), "{}", out.all());
        assert_tables_match(&p, batch_rows);
    }
}

#[test]
fn regular_nested_payloads_are_decoded_vectorized() {
    // Webhook-like orders with nested objects and arrays, one of them malformed.
    let p = TestProject::new();
    let mut lines: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"id": {i}, "email": "c{i}@example.com", "total_price": "{i}.90", "paid": true, "created_at": "2026-11-0{}T10:00:00-05:00", "customer": {{"id": {}, "name": "Zo\u00eb", "address": {{"city": "Oslo", "zip": null}}}}, "line_items": [{{"sku": "A-{i}", "qty": 2, "price": 1.50}}]}}"#,
                i % 9 + 1,
                1000 + i
            )
        })
        .collect();
    lines[7] = lines[7][..60].to_string();
    p.write("orders.ndjson", &(lines.join("\n") + "\n"));
    let out = p.lake_env(&["ingest", "--from", "orders.ndjson", "--table", "raw.orders", "--once"], &[(
        "LAKE_LOG",
        "lake::ingest::records=debug",
    )]);
    out.assert_ok();
    assert!(out.stderr.contains("39 of 40 records decoded vectorized"), "{}", out.stderr);
    assert_eq!(p.sql_count("select count(*) from raw.orders"), 39);
    assert_eq!(p.sql_count("select count(*) from raw.orders__errors where _line = 8"), 1);
    let out = p.lake(&["sql", "select customer, line_items, created_at, paid from raw.orders where id = 3", "--format", "json"]);
    out.assert_ok();
    let row: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    // Nested values are stored as compact JSON text, keys in their order (as serde_json writes them).
    assert_eq!(row[0]["customer"], r#"{"id":1003,"name":"Zoë","address":{"city":"Oslo","zip":null}}"#);
    assert_eq!(row[0]["line_items"], r#"[{"sku":"A-3","qty":2,"price":1.5}]"#);
    assert_eq!(row[0]["created_at"], "2026-11-04T15:00:00Z");
    assert_eq!(row[0]["paid"], true);
}

#[test]
fn a_batch_converted_on_two_threads_lands_what_one_thread_lands() {
    // The 27 records a hundred times over. In batches of 10,000, the layouts without `evolve`
    // (typed, mapped) convert each batch in two halves at once; in batches of 1,000, in one
    // piece. `grown` (evolve) converts in one piece either way.
    let mut dumps = Vec::new();
    for (batch_rows, threads) in [("10000", true), ("1000", false)] {
        let p = TestProject::new();
        p.write("lake.toml", CONFIG);
        write_lines(&p, 100);
        let out = p.lake_env(&["ingest", "typed", "grown", "mapped", "--once", "--batch-rows", batch_rows], &[(
            "LAKE_LOG",
            "lake::ingest::lane=debug",
        )]);
        out.assert_ok();
        assert!(out.stdout.contains("typed: 2700 records read, 1400 rows to raw.typed, 1300 dead letters"), "{}", out.all());
        assert!(out.stdout.contains("grown: 2700 records read"), "{}", out.all());
        assert_eq!(out.stderr.contains("records converted on 2 threads"), threads, "{}", out.stderr);
        let tables = ["raw.typed", "raw.grown", "raw.mapped"].iter().flat_map(|t| [t.to_string(), format!("{t}__errors")]);
        dumps.push(tables.map(|t| (dump(&p, &t), t)).collect::<Vec<_>>());
    }
    for ((two, table), (one, _)) in dumps[0].iter().zip(&dumps[1]) {
        assert_eq!(two.as_array().map(Vec::len), one.as_array().map(Vec::len), "{table}");
        assert_eq!(two, one, "{table}");
    }
    // Each of the 27 cases lands in the 100 copies as it lands alone.
    let expected = expected();
    for (got, table) in &dumps[0] {
        assert_eq!(got.as_array().unwrap().len(), expected[table.as_str()].as_array().unwrap().len() * 100, "{table}");
    }
}
