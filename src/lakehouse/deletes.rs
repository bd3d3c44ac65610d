//! Iceberg v2 position delete files: writing them (iceberg-rust 0.10 has no position-delete
//! writer) and reading the positions they delete.
//!
//! A position delete file is Parquet with two required columns, `file_path` (string, field id
//! 2147483546) and `pos` (long, field id 2147483545), sorted by position; `lake` writes one per
//! data file it deletes from, listed in a delete manifest with content `position deletes`, the
//! partition (and spec) of that file and its path as `referenced_data_file`, so readers attach it
//! to exactly that file. Every reader lake
//! supports applies them: iceberg-rust's scans (lake's own reads, `lake sql`), PyIceberg, DuckDB
//! and Spark.
//!
//! ```ignore
//! let file = deletes::write_position_deletes(&table, &live_file, &[3, 17], Codec::Zstd).await?;
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::metadata_columns::{RESERVED_FIELD_ID_DELETE_FILE_PATH, RESERVED_FIELD_ID_DELETE_FILE_POS};
use iceberg::scan::FileScanTaskDeleteFile;
use iceberg::spec::{DataContentType, DataFile, NestedField, PrimitiveType, Schema, Type};
use iceberg::table::Table;
use iceberg::writer::file_writer::{FileWriter, FileWriterBuilder, ParquetWriterBuilder};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::manifests::LiveFile;
use super::writer::Codec;

/// The schema of a position delete file.
fn schema() -> Result<Schema> {
    Ok(Schema::builder()
        .with_fields(vec![
            Arc::new(NestedField::required(
                RESERVED_FIELD_ID_DELETE_FILE_PATH,
                "file_path",
                Type::Primitive(PrimitiveType::String),
            )),
            Arc::new(NestedField::required(
                RESERVED_FIELD_ID_DELETE_FILE_POS,
                "pos",
                Type::Primitive(PrimitiveType::Long),
            )),
        ])
        .build()?)
}

/// Write the position delete file for `positions` of the one live data file `data` under
/// `<table>/data/`, in that file's partition and spec and naming it as its
/// `referenced_data_file` (Iceberg's file granularity: a reader of another data file never loads
/// it); returns it ready for a delete manifest.
pub async fn write_position_deletes(
    table: &Table,
    data: &LiveFile,
    positions: &[i64],
    codec: Codec,
) -> Result<DataFile> {
    let schema = Arc::new(schema()?);
    let arrow_schema = Arc::new(schema_to_arrow_schema(&schema)?);
    let path = data.file.file_path();
    let mut pos = positions.to_vec();
    pos.sort_unstable();
    pos.dedup();
    let paths = vec![path; pos.len()];
    let rows = pos.len();
    let batch = RecordBatch::try_new(
        arrow_schema,
        vec![Arc::new(StringArray::from(paths)), Arc::new(Int64Array::from(pos))],
    )?;
    let location = format!(
        "{}/data/{}-deletes.parquet",
        table.metadata().location().trim_end_matches('/'),
        uuid::Uuid::now_v7()
    );
    let output = table.file_io().new_output(&location)?;
    let mut writer = ParquetWriterBuilder::new(codec.writer_properties(), schema).build(output).await?;
    writer.write(&batch).await?;
    let mut built = writer.close().await?;
    let mut builder = built.pop().ok_or_else(|| anyhow!("the position delete writer produced no file"))?;
    builder
        .content(DataContentType::PositionDeletes)
        .partition(data.file.partition().clone())
        .partition_spec_id(data.spec_id)
        .referenced_data_file(Some(path.to_string()));
    let file = builder.build().map_err(|e| anyhow!("cannot describe position delete file {location}: {e}"))?;
    if file.record_count() != rows as u64 {
        return Err(anyhow!("position delete file {location} holds {} rows, expected {rows}", file.record_count()));
    }
    Ok(file)
}

/// The positions deleted from data files by position delete files, each file read once.
#[derive(Default)]
pub struct DeletedPositions {
    loaded: HashSet<String>,
    by_data_file: HashMap<String, HashSet<i64>>,
}

impl DeletedPositions {
    /// Positions of `data_path` deleted by `deletes` (the delete files a scan attached to it).
    /// Equality deletes are refused: lake never writes them and cannot locate their rows.
    pub async fn of(&mut self, table: &Table, data_path: &str, deletes: &[FileScanTaskDeleteFile]) -> Result<&HashSet<i64>> {
        for delete in deletes {
            match delete.file_type {
                DataContentType::PositionDeletes => {}
                _ => {
                    return Err(anyhow!(
                        "table {} has equality delete file {}; a merge-on-read merge needs position deletes only (compact the table with `lake maintain` first)",
                        table.identifier(),
                        delete.file_path
                    ));
                }
            }
            if self.loaded.insert(delete.file_path.clone()) {
                self.load(table, &delete.file_path).await?;
            }
        }
        Ok(self.by_data_file.entry(data_path.to_string()).or_default())
    }

    async fn load(&mut self, table: &Table, path: &str) -> Result<()> {
        let bytes = table
            .file_io()
            .new_input(path)?
            .read()
            .await
            .with_context(|| format!("cannot read position delete file {path}"))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .with_context(|| format!("cannot read position delete file {path}"))?;
        for batch in reader {
            let batch = batch.with_context(|| format!("cannot read position delete file {path}"))?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| anyhow!("position delete file {path} has no column {name}"))
            };
            let files = column("file_path")?;
            let files = files
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| anyhow!("position delete file {path}: file_path is not a string"))?;
            let positions = column("pos")?;
            let positions = positions
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| anyhow!("position delete file {path}: pos is not a long"))?;
            for i in 0..batch.num_rows() {
                if files.is_valid(i) && positions.is_valid(i) {
                    self.by_data_file.entry(files.value(i).to_string()).or_default().insert(positions.value(i));
                }
            }
        }
        Ok(())
    }
}
