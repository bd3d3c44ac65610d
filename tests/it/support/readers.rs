//! Other engines reading what `lake` wrote: PyIceberg (SqlCatalog on the same SQLite file or
//! Postgres database, or RestCatalog on the same server) and DuckDB's iceberg extension (through
//! httpfs for S3 warehouses) must return the same rows as `lake sql` for every table.

use std::process::Command;

use crate::support::TestProject;

/// Compare, for every table in the catalog, row counts and per-column non-null counts,
/// distinct counts and sums between `lake sql`, PyIceberg and DuckDB, on the project's embedded
/// SQLite catalog. Returns the table names.
pub fn assert_readers_match_lake(p: &TestProject) -> Vec<String> {
    assert_readers_match(p.path(), None, &|q: &str| p.sql_rows(q))
}

/// The same for the catalog `catalog` describes (PyIceberg catalog properties: `type` `sql` or
/// `rest`, `uri`, `warehouse`, `s3.*`; see scripts/reader_stats.py), with `sql` answering a
/// query as `lake sql --format csv` rows.
pub fn assert_readers_match(
    project: &std::path::Path,
    catalog: Option<&serde_json::Value>,
    sql: &dyn Fn(&str) -> Vec<Vec<String>>,
) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/reader_stats.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(project);
    if let Some(catalog) = catalog {
        cmd.arg(catalog.to_string());
    }
    let out = cmd.output().expect("python3");
    assert!(
        out.status.success(),
        "PyIceberg/DuckDB could not read the tables (install the readers with .ci/run):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reader stats json");
    let lake_tables: Vec<String> = sql(
        "select table_schema || '.' || table_name from information_schema.tables \
         where table_catalog = 'lake' and table_schema <> 'information_schema' order by 1",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    // lake's own numbers, one query per table.
    let mut ours = std::collections::BTreeMap::new();
    let reference = stats["pyiceberg"].as_object().expect("tables");
    for (table, t) in reference {
        let columns: Vec<&String> = t["columns"].as_object().unwrap().keys().collect();
        let mut exprs = vec!["count(*)".to_string()];
        for (i, c) in columns.iter().enumerate() {
            exprs.push(format!("count(\"{c}\")"));
            exprs.push(format!("count(distinct \"{c}\")"));
            exprs.push(match t["columns"][c.as_str()].get("sum") {
                Some(_) => format!("cast(sum(\"{c}\") as double)"),
                None => format!("{i} as unused_{i}"),
            });
        }
        let row = sql(&format!("select {} from {table}", exprs.join(", "))).remove(0);
        ours.insert(table.clone(), (columns.iter().map(|c| c.to_string()).collect::<Vec<_>>(), row));
    }
    for reader in ["pyiceberg", "duckdb"] {
        let tables = stats[reader].as_object().expect("tables");
        let names: Vec<String> = tables.keys().cloned().collect();
        assert_eq!(names, lake_tables, "{reader} sees the tables lake wrote");
        for (table, t) in tables {
            let (columns, row) = &ours[table];
            assert_eq!(row[0].parse::<i64>().unwrap(), t["rows"].as_i64().unwrap(), "{reader}: {table} rows");
            for (i, column) in columns.iter().enumerate() {
                let s = &t["columns"][column.as_str()];
                let (non_null, distinct, sum) = (&row[1 + 3 * i], &row[2 + 3 * i], &row[3 + 3 * i]);
                assert_eq!(non_null.parse::<i64>().unwrap(), s["non_null"].as_i64().unwrap(), "{reader}: {table}.{column} non-null");
                assert_eq!(distinct.parse::<i64>().unwrap(), s["distinct"].as_i64().unwrap(), "{reader}: {table}.{column} distinct");
                if let Some(expected) = s.get("sum").and_then(|v| v.as_f64()) {
                    let got: f64 = sum.parse().unwrap();
                    assert!((got - expected).abs() < 1e-3 * expected.abs().max(1.0), "{reader}: {table}.{column} sum {got} vs {expected}");
                }
            }
        }
    }
    lake_tables
}
