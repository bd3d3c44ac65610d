//! The SQL JSON functions (`json_get_str`, `json_get_int`, `json_get_bool`, `json_length`)
//! over JSON text, registered in a DataFusion session as `lake` registers them.

use arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;

/// The one row `sql` returns, each value as text ("NULL" for a null).
fn one_row(sql: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        for f in lake::engine::json::functions() {
            ctx.register_udf(f);
        }
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1, "{sql}");
        let batch = batches.iter().find(|b| b.num_rows() == 1).unwrap();
        batch
            .columns()
            .iter()
            .map(|c| if c.is_null(0) { "NULL".into() } else { array_value_to_string(c, 0).unwrap() })
            .collect()
    })
}

#[test]
fn paths_reach_nested_keys_and_indices_and_miss_quietly() {
    let doc = r#"'{"a": {"b": [10, {"c": "x\"y"}], "n": null}, "s": "12.50", "t": true}'"#;
    let row = one_row(&format!(
        "select json_get_str({doc}, 'a', 'b', 1, 'c'), json_get_int({doc}, 'a', 'b', 0), \
         json_get_str({doc}, 'a', 'n'), json_get_str({doc}, 'a', 'zz'), json_get_str({doc}, 's', 'x'), \
         json_get_bool({doc}, 't'), json_get_str('{{broken', 'a'), json_length({doc}, 'a', 'b'), \
         json_get_str({doc}, 's')"
    ));
    assert_eq!(row, ["x\"y", "10", "NULL", "NULL", "NULL", "true", "NULL", "2", "12.50"]);
}

#[test]
fn json_length_counts_arrays_and_objects_at_the_path_and_nothing_else() {
    let doc = r#"'{"items": [{"a": [1, 2]}, "x", null, [3]], "o": {"k": 1, "l": {"m": 2}}, "s": "abc", "e": []}'"#;
    let row = one_row(&format!(
        "select json_length({doc}, 'items'), json_length({doc}, 'o'), json_length({doc}, 's'), \
         json_length({doc}, 'e'), json_length({doc}, 'items', 0, 'a'), json_length({doc}), \
         json_length({doc}, 'zz'), json_length('[1, 2', 0), json_length('[1, [2, 3]] trailing')"
    ));
    assert_eq!(row, ["4", "2", "NULL", "0", "2", "4", "NULL", "NULL", "NULL"]);
}

/// Many calls on one column in a `lake` session (merged into one walk per row by the
/// optimizer) give what each call gives alone in a plain session: nested keys, indices, counts,
/// one path read as text and as a number, a prefix of another path (merged apart), a call in a
/// CASE branch (left alone), duplicate
/// keys (the first wins), and texts that are not JSON or have text after the value.
#[test]
fn merged_calls_on_one_column_give_what_each_call_gives_alone() {
    let docs = [
        r#"{"a": {"b": [10, {"c": "x"}], "n": null}, "s": "12.50", "t": true, "l": [1, 2, 3]}"#,
        r#"{"a": {"b": [11]}, "s": 7, "t": false, "l": {"k": 1, "k": 2}, "a": {"b": [99]}}"#,
        r#"{"s": "3", "l": []}"#,
        r#"[1, {"a": 2}]"#,
        r#"{"a": {"b": [1, {"c": "y"}]}} trailing"#,
        r#"{broken"#,
        r#"{"a": "text", "s": null, "l": "str"}"#,
    ];
    let values: Vec<String> = docs.iter().enumerate().map(|(i, d)| format!("({i}, '{d}')")).collect();
    let sql = format!(
        "select id, json_get_str(doc, 'a', 'b', 1, 'c') as c, json_get_int(doc, 'a', 'b', 0) as b0, \
         json_get_str(doc, 's') as s_text, json_get_float(doc, 's') as s_float, json_get_int(doc, 's') + 1 as s_next, \
         json_get_bool(doc, 't') as t, json_length(doc, 'l') as l_len, json_get_str(doc, 'l') as l_text, \
         json_get_str(doc, 'a') as a_text, coalesce(json_get_str(doc, 'a', 'n'), 'none') as n, \
         case when id > 1 then json_get_str(doc, 'a', 'zz') end as maybe \
         from (values {}) as v(id, doc) order by id",
        values.join(", ")
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (merged, alone, plan) = rt.block_on(async {
        let lake = lake::engine::session::new_session();
        let plain = SessionContext::new();
        for f in lake::engine::json::functions() {
            plain.register_udf(f);
        }
        let show = |b: Vec<arrow::array::RecordBatch>| arrow::util::pretty::pretty_format_batches(&b).unwrap().to_string();
        let merged = show(lake.sql(&sql).await.unwrap().collect().await.unwrap());
        let alone = show(plain.sql(&sql).await.unwrap().collect().await.unwrap());
        let plan = show(lake.sql(&format!("explain {sql}")).await.unwrap().collect().await.unwrap());
        (merged, alone, plan)
    });
    assert_eq!(merged, alone);
    assert!(merged.contains("| 0  | x | 10 | 12.50  | 12.5    |        | true  | 3     | [1,2,3]"), "{merged}");
    assert!(merged.contains("| 1  |   | 11 | 7      | 7.0     | 8      | false | 2     |"), "{merged}");
    // Each merged call computed once: one for the paths that share a walk, one for those left
    // out of it (`a`, a prefix of the paths under it; `l`, counted and read as text).
    let physical = plan.split("physical_plan").nth(1).expect(&plan);
    assert_eq!(physical.matches("json_get_many_").count(), 2, "{plan}");
    // The call only a CASE branch evaluates stays a call of its own.
    assert_eq!(physical.matches("json_get_str(").count(), 1, "{plan}");
    assert!(!physical.contains("json_length("), "{plan}");
}
