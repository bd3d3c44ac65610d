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
