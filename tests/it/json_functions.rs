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

/// JSON texts nobody here wrote by hand: 4,000 generated documents (nested objects and arrays,
/// escapes, non-ASCII text, numbers of every form, whitespace), half of them then broken by a
/// deleted, inserted or cut character. What the functions find is what serde_json finds: a
/// text is JSON when serde_json reads it whole (as `IgnoredAny`), and the value at a path is
/// the one a reader that keeps each key's first occurrence reaches.
#[test]
fn paths_find_in_generated_and_broken_texts_what_serde_json_finds() {
    use std::sync::Arc;

    use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;

    /// A JSON value whose objects keep each key's first occurrence.
    struct FirstWins(Value);
    impl<'de> Deserialize<'de> for FirstWins {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = FirstWins;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("JSON")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<FirstWins, A::Error> {
                    let mut map = serde_json::Map::new();
                    while let Some((k, v)) = m.next_entry::<String, FirstWins>()? {
                        map.entry(k).or_insert(v.0);
                    }
                    Ok(FirstWins(Value::Object(map)))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<FirstWins, A::Error> {
                    let mut items = Vec::new();
                    while let Some(v) = s.next_element::<FirstWins>()? {
                        items.push(v.0);
                    }
                    Ok(FirstWins(Value::Array(items)))
                }
                fn visit_bool<E>(self, v: bool) -> Result<FirstWins, E> {
                    Ok(FirstWins(Value::Bool(v)))
                }
                fn visit_i64<E>(self, v: i64) -> Result<FirstWins, E> {
                    Ok(FirstWins(Value::from(v)))
                }
                fn visit_u64<E>(self, v: u64) -> Result<FirstWins, E> {
                    Ok(FirstWins(Value::from(v)))
                }
                fn visit_f64<E>(self, v: f64) -> Result<FirstWins, E> {
                    Ok(FirstWins(Value::from(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<FirstWins, E> {
                    Ok(FirstWins(Value::from(v)))
                }
                fn visit_unit<E>(self) -> Result<FirstWins, E> {
                    Ok(FirstWins(Value::Null))
                }
            }
            d.deserialize_any(V)
        }
    }

    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    fn value(next: &mut dyn FnMut(u64) -> u64, depth: usize, out: &mut String) {
        let space = |next: &mut dyn FnMut(u64) -> u64| [" ", "", "", "\n ", "\t"][next(5) as usize];
        match next(if depth > 4 { 6 } else { 9 }) {
            0 => out.push_str(["\"x\"", "\"caf\u{e9} \u{1f600}\"", "\"q\\\"uote\\\\ \\n\\u00e9\\/\"", "\"\"", "\"0123456789abcdefghij\""][next(5) as usize]),
            1 => out.push_str(
                ["0", "-7", "12.50", "1e5", "-0.25E-3", "18446744073709551616", "3", "-0", "999999999999999999", "-9223372036854775808"]
                    [next(10) as usize],
            ),
            2 => out.push_str(["true", "false", "null"][next(3) as usize]),
            3..=5 => out.push_str(&format!("\"{}\"", "s".repeat(next(40) as usize))),
            6 | 7 => {
                // Keys distinct within an object ("a" spelled with an escape or without).
                out.push('{');
                let mut keys = vec![["\"a\"", "\"\\u0061\""][next(2) as usize], "\"b\"", "\"c\"", "\"d\"", "\"k\u{e9}\""];
                for i in 0..next(5) {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(space(next));
                    out.push_str(keys.remove(next(keys.len() as u64) as usize));
                    out.push_str(space(next));
                    out.push(':');
                    out.push_str(space(next));
                    value(next, depth + 1, out);
                }
                out.push_str(space(next));
                out.push('}');
            }
            _ => {
                out.push('[');
                for i in 0..next(4) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    value(next, depth + 1, out);
                }
                out.push(']');
            }
        }
    }
    let mut docs = Vec::new();
    for i in 0..4000 {
        let mut doc = String::new();
        value(&mut next, if i % 3 == 0 { 4 } else { 0 }, &mut doc);
        if i % 2 == 1 {
            let mut chars: Vec<char> = doc.chars().collect();
            let at = next(chars.len() as u64 + 1) as usize;
            match next(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 => chars.insert(at, ['{', '}', '[', ']', ',', ':', '"', '\\', ' ', '-', '\u{1}', 'x'][next(12) as usize]),
                _ => chars.truncate(at),
            }
            doc = chars.into_iter().collect();
        }
        docs.push(doc);
    }
    // And texts at the edges of the grammar, in a skipped part and on a path.
    for edge in [
        r#"{"x": [1, 2,], "a": 1}"#, r#"{"x": {"k": 1,}, "a": 1}"#, r#"{"a": [1,]}"#, r#"{"x": [,1], "a": 1}"#,
        r#"{"x": 01, "a": 1}"#, r#"{"x": 1., "a": 1}"#, r#"{"x": .5, "a": 1}"#, r#"{"x": -, "a": 1}"#, r#"{"x": 1e, "a": 1}"#,
        r#"{"x": 1e+, "a": 1}"#, r#"{"x": -0.0e-0, "a": 1}"#, r#"{"x": tru, "a": 1}"#, r#"{"x": nul, "a": 1}"#,
        r#"{"x": "bad \x escape", "a": 1}"#, r#"{"x": "\u12G4", "a": 1}"#, r#"{"x": "\u12", "a": 1}"#,
        "{\"x\": \"tab\there\", \"a\": 1}", "{\"x\": [\"ctl\u{1}\"], \"a\": 1}", r#"{x: 1, "a": 1}"#,
        r#"{"x" 1, "a": 1}"#, r#"{"x": , "a": 1}"#, r#"{"x": [1 2], "a": 1}"#, r#"{"x": {"k" : [ ] , "l":{ }}, "a": 1}"#,
        r#"{"": 1, "a": {"b": "\"\\\/\b\f\n\r\t\u0041"}}"#, r#"{"a": 1} {"a": 2}"#, r#"{"a": 1}   "#, r#"  {"a": 1}"#,
        r#"{"a": "x"}x"#, r#"{"a": [1, [2, [3, {"c": [4]}]]], "d": "sssssssss\"sssssss"}"#, r#""a""#, "", " ",
        r#"{"a": {"b": 1}, "a": {"b": 2}}"#, r#"{"c": [0, {"a": "deep"}, 2], "b": [{"x": 1}]}"#,
    ] {
        docs.push(edge.to_string());
    }
    let paths: [&[Value]; 5] = [
        &[Value::from("a")],
        &[Value::from("a"), Value::from("b")],
        &[Value::from("b"), Value::from(0)],
        &[Value::from("c"), Value::from(1), Value::from("a")],
        &[Value::from("d")],
    ];
    let at = |doc: &Value, path: &[Value]| -> Option<Value> {
        let mut v = doc;
        for step in path {
            v = match step {
                Value::String(k) => v.as_object()?.get(k)?,
                _ => v.as_array()?.get(step.as_u64()? as usize)?,
            };
        }
        Some(v.clone())
    };
    let (mut valid, mut expected) = (0, Vec::new());
    for doc in &docs {
        let tree = serde_json::from_str::<IgnoredAny>(doc).ok().map(|_| serde_json::from_str::<FirstWins>(doc).unwrap().0);
        valid += tree.is_some() as usize;
        let mut row = Vec::new();
        for path in &paths {
            let found = tree.as_ref().and_then(|t| at(t, path));
            row.push(match &found {
                None | Some(Value::Null) => "NULL".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            });
            row.push(match &found {
                Some(Value::Object(m)) => m.len().to_string(),
                Some(Value::Array(a)) => a.len().to_string(),
                _ => "NULL".to_string(),
            });
            let text = |v: Option<String>| v.unwrap_or_else(|| "NULL".to_string());
            row.push(text(match &found {
                Some(Value::Number(n)) => n.as_i64().map(|i| i.to_string()),
                Some(Value::String(s)) => s.trim().parse::<i64>().ok().map(|i| i.to_string()),
                _ => None,
            }));
            row.push(text(match &found {
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .map(|f| arrow::util::display::array_value_to_string(&arrow::array::Float64Array::from(vec![f]), 0).unwrap())));
            row.push(text(found.as_ref().and_then(Value::as_bool).map(|b| b.to_string())));
        }
        expected.push(row);
    }
    assert!(valid > 2300 && valid < 3800, "{valid} of 4,000 texts are JSON");
    let sql_path = |p: &[Value]| {
        p.iter().map(|s| match s {
            Value::String(k) => format!("'{k}'"),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
    };
    let calls: Vec<String> = paths
        .iter()
        .flat_map(|p| {
            ["json_get_str", "json_length", "json_get_int", "json_get_float", "json_get_bool"].map(|f| format!("{f}(doc, {})", sql_path(p)))
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let got: Vec<Vec<String>> = rt.block_on(async {
        use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
        let ctx = lake::engine::session::new_session();
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..docs.len() as i64));
        let texts: ArrayRef = Arc::new(StringArray::from_iter_values(&docs));
        let batch = RecordBatch::try_from_iter([("id", ids), ("doc", texts)]).unwrap();
        ctx.register_batch("docs", batch).unwrap();
        let sql = format!("select {} from docs order by id", calls.join(", "));
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(move |i| {
                    b.columns()
                        .iter()
                        .map(|c| if c.is_null(i) { "NULL".into() } else { array_value_to_string(c, i).unwrap() })
                        .collect()
                })
            })
            .collect()
    });
    assert_eq!(got.len(), docs.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "text {i}: {}", docs[i]);
    }
}
