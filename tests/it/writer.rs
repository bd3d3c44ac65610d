//! The data file writer, in process against a real catalog: a large batch is written by one
//! writer per core into files of its own, and the files keep the rows' order; a query reads
//! them on every core.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use iceberg::spec::PrimitiveLiteral;
use lake::lakehouse::catalog::{Lakehouse, table_ident};
use lake::lakehouse::commit::{self, Change, MetadataChanges};
use lake::lakehouse::writer::{DataWriter, WriteOptions};

use crate::support::TestProject;

fn batch(schema: &arrow::datatypes::SchemaRef, ids: std::ops::Range<i64>) -> RecordBatch {
    let id: ArrayRef = Arc::new(Int64Array::from_iter_values(ids.clone()));
    let name: ArrayRef = Arc::new(StringArray::from_iter_values(ids.map(|i| format!("n{i:07}"))));
    let columns = [id, name]
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()).unwrap())
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

fn long(d: Option<&iceberg::spec::Datum>) -> i64 {
    match d.map(|d| d.literal()) {
        Some(PrimitiveLiteral::Long(v)) => *v,
        other => panic!("expected a long bound, got {other:?}"),
    }
}

#[test]
fn a_large_batch_is_written_by_one_writer_per_core_in_row_order() {
    let p = TestProject::new();
    p.write("models/staging/items.sql", "select cast(0 as bigint) as id, 'n0000000' as name where false\n");
    p.lake(&["run"]).assert_ok();
    let config = lake::project::config::ProjectConfig::load(p.path(), &Default::default()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let big: i64 = 600_000;
    let files = rt.block_on(async {
        let lh = Lakehouse::connect(&config.catalog).await.unwrap();
        let ident = table_ident("staging.items").unwrap();
        let table = lh.table(&ident).await.unwrap();
        let mut writer = DataWriter::for_metadata(table.file_io().clone(), table.metadata(), &WriteOptions::default()).unwrap();
        let schema = writer.arrow_schema().clone();
        // Small batches, one large one, small ones again: ids ascending throughout.
        writer.write(&batch(&schema, 0..10)).await.unwrap();
        writer.write(&batch(&schema, 10..10 + big)).await.unwrap();
        writer.write(&batch(&schema, 10 + big..20 + big)).await.unwrap();
        assert_eq!(writer.rows(), big as u64 + 20);
        let files = writer.close().await.unwrap();
        commit::commit(&lh, table, &MetadataChanges::default(), Change::Append(files.clone()), HashMap::new(), None)
            .await
            .unwrap();
        files
    });
    // The rows before the large batch, its slices (one per core, at least 262,144 rows each:
    // two here at most), the rows after it: each in files of their own.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let lanes = if cores >= 2 { 2 } else { 1 };
    let expected = if lanes == 1 { 1 } else { 2 + lanes };
    assert_eq!(files.len(), expected, "{cores} cores: {:?}", files.iter().map(|f| f.record_count()).collect::<Vec<_>>());
    // In the order returned, every file's ids come after the previous file's.
    let id_field = 1;
    let mut last = -1;
    for f in &files {
        let (lo, hi) = (long(f.lower_bounds().get(&id_field)), long(f.upper_bounds().get(&id_field)));
        assert!(lo > last, "a file's ids [{lo}, {hi}] start before the previous file's end {last}");
        assert_eq!(hi - lo + 1, f.record_count() as i64, "a file holds a contiguous run of ids");
        last = hi;
    }
    assert_eq!(last, big + 19);
    // A query reads the files in one partition per core, about equal in bytes.
    let plan = p.sql_rows("explain select id from staging.items").concat().join("\n");
    assert!(plan.contains(&format!("files={expected} partitions={}", cores.min(expected))), "{plan}");
    assert_eq!(
        p.sql_rows("select count(*), count(distinct id), sum(id), min(name), max(name) from staging.items"),
        vec![vec![
            (big + 20).to_string(),
            (big + 20).to_string(),
            ((big + 20) * (big + 19) / 2).to_string(),
            "n0000000".to_string(),
            format!("n{:07}", big + 19),
        ]]
    );
}
