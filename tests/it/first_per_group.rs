//! The first-row-per-group rewrite (`row_number() ... = 1` without a sort): every query runs in
//! a `lake` session and in a plain DataFusion session, which sorts and numbers as written; the
//! rows must be the same, and the plan must show the rewrite exactly where it applies: over
//! batches in memory in one pass, over an Iceberg table's files in two reads.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::array_value_to_string;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

/// `n` rows in batches of 8,192 over 3 partitions: `id` unique; `k` (1 in 10 null) and `k2`
/// (2 values, 1 in 7 null) with `keys` distinct `k`s; `ts` with repeats and 1 in 9 null; `s` a
/// mixed-case name; `payload` a longer text, 1 in 11 null.
fn table(n: usize, keys: u64) -> MemTable {
    let (schema, partitions) = rows(n, keys);
    MemTable::try_new(schema, partitions).unwrap()
}

/// The batches of [`table`], by partition.
fn rows(n: usize, keys: u64) -> (Arc<Schema>, Vec<Vec<RecordBatch>>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k", DataType::Int64, true),
        Field::new("k2", DataType::Utf8, true),
        Field::new("ts", DataType::Int64, true),
        Field::new("s", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, true),
    ]));
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut partitions = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut start = 0;
    while start < n {
        let len = 8192.min(n - start);
        let rows: Vec<[u64; 5]> = (0..len).map(|_| [next(), next(), next(), next(), next()]).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values((start..start + len).map(|i| i as i64))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| (r[0] % 10 != 0).then_some((r[1] % keys) as i64)))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| (r[2] % 7 != 0).then(|| ["a", "B"][(r[2] % 2) as usize])))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| (r[3] % 9 != 0).then_some((r[3] % 50) as i64)))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| ["Ann", "ann", "BOB", "bob", "Cy"][(r[4] % 5) as usize]))),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| (r[4] % 11 != 0).then(|| format!("{{\"event\": {}, \"body\": \"{}\"}}", r[4], "x".repeat((r[4] % 64) as usize)))),
            )),
        ];
        partitions[(start / 8192) % 3].push(RecordBatch::try_new(Arc::clone(&schema), columns).unwrap());
        start += len;
    }
    (schema, partitions)
}

/// The rows of `sql` as sorted lines, and the physical plan, in `ctx` over `t`.
async fn run(ctx: &SessionContext, sql: &str) -> (Vec<String>, String) {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut rows: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |i| {
                let cells: Vec<String> = b.columns().iter().map(|c| array_value_to_string(c, i).unwrap()).collect();
                cells.join("|")
            })
        })
        .collect();
    rows.sort();
    let explain = ctx.sql(&format!("explain {sql}")).await.unwrap().collect().await.unwrap();
    let plan = arrow::util::pretty::pretty_format_batches(&explain).unwrap().to_string();
    (rows, plan)
}

fn check(n: usize, keys: u64, queries: &[(&str, bool)]) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let lake = lake::engine::session::new_session();
        let plain = SessionContext::new();
        for ctx in [&lake, &plain] {
            ctx.register_table("t", Arc::new(table(n, keys))).unwrap();
        }
        for (sql, rewritten) in queries {
            let (got, plan) = run(&lake, sql).await;
            let (want, _) = run(&plain, sql).await;
            assert_eq!(plan.contains("FirstPerGroupExec"), *rewritten, "{sql}\n{plan}");
            if *rewritten {
                assert!(!plan.contains("SortExec") && !plan.contains("WindowAggExec"), "{sql}\n{plan}");
            }
            assert!(!want.is_empty(), "{sql}");
            assert_eq!(got.len(), want.len(), "{sql}");
            assert!(got == want, "{sql}: rows differ, e.g. {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
        }
    });
}

#[test]
fn the_first_row_per_key_is_the_windows_row_one() {
    check(
        100_000,
        7_000,
        &[
            // The staging shape: every column, latest by a nullable time, ties broken by id.
            ("select * from (select *, row_number() over (partition by k order by ts desc, id desc) as rn from t) where rn = 1", true),
            // Two keys (nulls group together), nulls last, a conjunction, `<= 1`.
            (
                "select id, k, k2, payload from (select *, row_number() over (partition by k, k2 order by ts asc nulls last, id) as rn from t) \
                 where rn <= 1 and payload is not null",
                true,
            ),
            // An expression as the key, `1 = rn`, and no tie-breaker: only columns equal among ties.
            ("select lower(s), ts from (select s, ts, row_number() over (partition by lower(s) order by ts) as rn from t) where 1 = rn", true),
            // Through a CTE's projection with a rename and a computed column; no order at all,
            // so only the key is compared.
            (
                "with r as (select k, id, upper(payload) as p, row_number() over (partition by k) as event_rank from t) \
                 select k from r where event_rank < 2",
                true,
            ),
            // Not the first row, not row_number, two window functions: left to DataFusion.
            ("select id from (select id, row_number() over (partition by k order by id) as rn from t) where rn = 2", false),
            ("select id from (select id, rank() over (partition by k order by id) as r from t) where r = 1", false),
            (
                "select id, c from (select id, row_number() over (partition by k order by id) as rn, count(*) over (partition by k order by id) as c from t) where rn = 1",
                false,
            ),
        ],
    );
}

/// The latest row of 100,000 keys in 1.3M rows: the batches read hold more rows than twice the
/// keys plus the slack (131,072 rows) before the end, so they are compacted while reading
/// (EXPLAIN ANALYZE counts it), and the rows still match.
#[test]
fn the_first_row_per_key_survives_compaction() {
    let sql = "select id, k, ts from (select *, row_number() over (partition by k order by id desc) as rn from t) where rn = 1";
    check(1_300_000, 100_000, &[(sql, true)]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let analyzed = rt.block_on(async {
        let ctx = lake::engine::session::new_session();
        ctx.register_table("t", Arc::new(table(1_300_000, 100_000))).unwrap();
        let batches = ctx.sql(&format!("explain analyze {sql}")).await.unwrap().collect().await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
    });
    let line = analyzed.lines().find(|l| l.contains("FirstPerGroupExec")).expect("the rewrite");
    let compactions: u64 = line.split("compactions=").nth(1).expect(line)[..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    assert!(compactions >= 1, "{line}");
}

/// The same rows as an Iceberg table of several data files (three commits, files of about
/// 1 MB), read by a `lake` session: where a window over the table's scan keeps row 1, both
/// reads of the two-pass plan see the same rows, and the rows kept are the window's.
#[test]
fn the_first_row_per_key_of_a_table_is_found_in_two_reads() {
    let p = crate::support::TestProject::new();
    p.write(
        "models/staging/t.sql",
        "select cast(0 as bigint) as id, cast(0 as bigint) as k, 'a' as k2, cast(0 as bigint) as ts, 'a' as s, \
         'a' as payload where false\n",
    );
    p.lake(&["run"]).assert_ok();
    let config = lake::project::config::ProjectConfig::load(p.path(), &Default::default()).unwrap();
    let (schema, partitions) = rows(300_000, 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        use lake::lakehouse::catalog::{Lakehouse, table_ident};
        use lake::lakehouse::commit::{self, Change, MetadataChanges};
        use lake::lakehouse::writer::{DataWriter, WriteOptions};
        let lh = Lakehouse::connect(&config.catalog).await.unwrap();
        let ident = table_ident("staging.t").unwrap();
        let options = WriteOptions { target_file_size: 1 << 20, ..Default::default() };
        for batches in &partitions {
            let table = lh.table(&ident).await.unwrap();
            let mut writer = DataWriter::for_metadata(table.file_io().clone(), table.metadata(), &options).unwrap();
            let conformed = Arc::clone(writer.arrow_schema());
            for b in batches {
                let columns = b.columns().iter().zip(conformed.fields()).map(|(c, f)| arrow::compute::cast(c, f.data_type()).unwrap());
                writer.write(&RecordBatch::try_new(Arc::clone(&conformed), columns.collect()).unwrap()).await.unwrap();
            }
            let files = writer.close().await.unwrap();
            commit::commit(&lh, table, &MetadataChanges::default(), Change::Append(files), Default::default(), None)
                .await
                .unwrap();
        }
        let table = lh.table(&ident).await.unwrap();
        let snapshot_id = table.metadata().current_snapshot_id();
        let lake = lake::engine::session::new_session();
        let pinned = lake::engine::session::PinnedTable { table, snapshot_id };
        lake::engine::session::register(&lake, "staging.t", &pinned).await.unwrap();
        let plain = SessionContext::new();
        plain.register_table("t", Arc::new(MemTable::try_new(schema, partitions.clone()).unwrap())).unwrap();
        let queries = [
            // The staging shape: every column, latest by a nullable time, ties broken by id.
            ("select * from (select *, row_number() over (partition by k order by ts desc, id desc) as rn from {t}) where rn = 1", true),
            // Two keys, nulls last, a conjunction, `<= 1`, some columns only.
            (
                "select id, k, k2, payload from (select *, row_number() over (partition by k, k2 order by ts asc nulls last, id) as rn from {t}) \
                 where rn <= 1 and payload is not null",
                true,
            ),
            // An expression as the key, `1 = rn`.
            (
                "select lower(s), ts, id, payload from (select *, row_number() over (partition by lower(s) order by ts, id) as rn from {t}) \
                 where 1 = rn",
                true,
            ),
            // The key and order are every column read: one pass over the scan; only columns equal
            // among ties.
            ("select k, ts from (select k, ts, row_number() over (partition by k order by ts) as rn from {t}) where rn = 1", false),
        ];
        for (sql, two_reads) in queries {
            let (got, plan) = run(&lake, &sql.replace("{t}", "staging.t")).await;
            let (want, _) = run(&plain, &sql.replace("{t}", "t")).await;
            assert_eq!(plan.contains("FirstPerGroupScanExec"), two_reads, "{sql}\n{plan}");
            assert!(plan.contains("FirstPerGroup"), "{sql}\n{plan}");
            if two_reads {
                assert!(plan.contains("files=") && !plan.contains("RepartitionExec: partitioning=Hash"), "{sql}\n{plan}");
            }
            assert!(!want.is_empty(), "{sql}");
            assert_eq!(got.len(), want.len(), "{sql}");
            assert!(got == want, "{sql}: rows differ, e.g. {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
        }
    });
}
