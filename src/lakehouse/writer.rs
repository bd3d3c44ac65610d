//! Writing Arrow batches as Iceberg Parquet data files (ZSTD by default), partitioned by the
//! table's spec. Writing does not commit: the files become visible only through [`super::commit`].


use anyhow::{Result, anyhow};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::io::FileIO;
use iceberg::spec::{DataFile, DataFileFormat, PartitionSpecRef, SchemaRef};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::unpartitioned_writer::UnpartitionedWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::schema::{conform_batch, writer_arrow_schema};

/// Parquet compression for data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    #[default]
    Zstd,
    Snappy,
    Uncompressed,
}

impl Codec {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "zstd" => Some(Codec::Zstd),
            "snappy" => Some(Codec::Snappy),
            "none" | "uncompressed" => Some(Codec::Uncompressed),
            _ => None,
        }
    }
}

impl Codec {
    /// Parquet writer properties with this compression (data and delete files alike).
    pub fn writer_properties(self) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(match self {
                Codec::Zstd => Compression::ZSTD(ZstdLevel::default()),
                Codec::Snappy => Compression::SNAPPY,
                Codec::Uncompressed => Compression::UNCOMPRESSED,
            })
            .build()
    }
}

/// How a `merge` replaces rows (`merge_mode`; Iceberg's `write.merge.mode` table property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeMode {
    /// Rewrite the data files that hold replaced rows without them.
    #[default]
    CopyOnWrite,
    /// Keep the data files; write position delete files for the replaced rows.
    MergeOnRead,
}

impl MergeMode {
    /// The Iceberg table property that sets a table's default (Spark's name).
    pub const TABLE_PROPERTY: &'static str = "write.merge.mode";

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "copy-on-write" => Some(MergeMode::CopyOnWrite),
            "merge-on-read" => Some(MergeMode::MergeOnRead),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MergeMode::CopyOnWrite => "copy-on-write",
            MergeMode::MergeOnRead => "merge-on-read",
        }
    }
}

/// Rows handed to the file writer at a time; it may roll to a new file between them.
const ROLL_CHECK_ROWS: usize = 8192;

/// How data files are written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Roll to a new file once this many bytes are written (files overshoot by up to 8,192 rows).
    pub target_file_size: usize,
    pub codec: Codec,
    /// The project's default `merge_mode` (`[write] merge_mode`): a model's own `merge_mode`
    /// and the table's `write.merge.mode` property come first.
    pub merge_mode: Option<MergeMode>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            target_file_size: 128 * 1024 * 1024,
            codec: Codec::Zstd,
            merge_mode: None,
        }
    }
}

type Builder = DataFileWriterBuilder<
    ParquetWriterBuilder,
    DefaultLocationGenerator,
    DefaultFileNameGenerator,
>;
type Rolling = RollingFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

enum Inner {
    Unpartitioned(UnpartitionedWriter<Builder>),
    Partitioned {
        splitter: RecordBatchPartitionSplitter,
        writer: FanoutWriter<Builder>,
    },
}

/// A batch of at least twice this many rows, into an unpartitioned table, is written by
/// several writers at once (one per core, up to [`MAX_LANES`]), each a contiguous slice of at
/// least this many rows into files of its own: the files keep the rows' order (a sorted output
/// stays in files of disjoint key ranges) and none is small. Streams of small batches (SQL
/// models) go through one writer.
const MIN_LANE_ROWS: usize = 262_144;
const MAX_LANES: usize = 4;

/// Writes batches to new data files under `<table location>/data`.
pub struct DataWriter {
    inner: Inner,
    /// What makes a new `inner` (file names stay unique: the clones share one counter).
    builder: Rolling,
    schema: SchemaRef,
    spec: PartitionSpecRef,
    /// Files finished before the current `inner` (by [`Self::write`]'s parallel slices).
    done: Vec<DataFile>,
    arrow_schema: ArrowSchemaRef,
    rows: u64,
}

impl DataWriter {
    /// A writer for the current schema and default partition spec of `metadata` (the
    /// metadata the commit will record), through `file_io`.
    pub fn for_metadata(file_io: FileIO, metadata: &iceberg::spec::TableMetadata, options: &WriteOptions) -> Result<Self> {
        Self::new(
            file_io,
            metadata.location(),
            metadata.current_schema().clone(),
            metadata.default_partition_spec().clone(),
            options,
        )
    }

    /// A writer for `schema` and `spec` (which must be the ones the commit will record).
    pub fn new(
        file_io: FileIO,
        table_location: &str,
        schema: SchemaRef,
        spec: PartitionSpecRef,
        options: &WriteOptions,
    ) -> Result<Self> {
        let props = options.codec.writer_properties();
        // A unique prefix per writer: file names never collide across writers or restarts.
        let names = DefaultFileNameGenerator::new(
            uuid::Uuid::now_v7().to_string(),
            None,
            DataFileFormat::Parquet,
        );
        let locations = DefaultLocationGenerator::with_data_location(format!(
            "{}/data",
            table_location.trim_end_matches('/')
        ));
        let rolling = RollingFileWriterBuilder::new(
            ParquetWriterBuilder::new(props, schema.clone()),
            options.target_file_size,
            file_io,
            locations,
            names,
        );
        let inner = new_inner(&rolling, &schema, &spec)?;
        Ok(DataWriter {
            inner,
            builder: rolling,
            arrow_schema: writer_arrow_schema(&schema)?,
            schema,
            spec,
            done: Vec::new(),
            rows: 0,
        })
    }

    /// The Arrow schema batches are cast to before writing.
    pub fn arrow_schema(&self) -> &ArrowSchemaRef {
        &self.arrow_schema
    }

    /// Cast `batch` to the table schema and write it.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform_batch(batch, &self.arrow_schema)?;
        self.rows += batch.num_rows() as u64;
        // The common case (a stream of small batches) asks nothing of the system.
        if batch.num_rows() < 2 * MIN_LANE_ROWS || !self.spec.is_unpartitioned() {
            return self.inner.write(&batch).await;
        }
        let lanes = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_LANES)
            .min(batch.num_rows() / MIN_LANE_ROWS);
        if lanes < 2 {
            return self.inner.write(&batch).await;
        }
        // The open files end here (their rows come before the batch's); each slice goes into
        // files of its own, on its own task, and the files are listed in row order.
        let fresh = new_inner(&self.builder, &self.schema, &self.spec)?;
        self.done.extend(std::mem::replace(&mut self.inner, fresh).close().await?);
        let per_lane = batch.num_rows().div_ceil(lanes);
        let mut tasks = Vec::with_capacity(lanes);
        for lane in 0..lanes {
            let start = lane * per_lane;
            let slice = batch.slice(start, per_lane.min(batch.num_rows() - start));
            let mut inner = new_inner(&self.builder, &self.schema, &self.spec)?;
            tasks.push(tokio::spawn(async move {
                let written = inner.write(&slice).await;
                // Closed either way: on failure the files go back to be discarded.
                let files = inner.close().await;
                (written, files)
            }));
        }
        let mut failure = None;
        for task in futures::future::join_all(tasks).await {
            let (written, files) = task.map_err(|e| anyhow!("a data file writer panicked: {e}"))?;
            match files {
                Ok(files) => self.done.extend(files),
                Err(e) => failure = failure.or(Some(e)),
            }
            if let Err(e) = written {
                failure = failure.or(Some(e));
            }
        }
        failure.map_or(Ok(()), Err)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Finish every open file and return them, ready to commit.
    pub async fn close(self) -> Result<Vec<DataFile>> {
        let mut files = self.done;
        files.extend(self.inner.close().await?);
        Ok(files)
    }
}

fn new_inner(rolling: &Rolling, schema: &SchemaRef, spec: &PartitionSpecRef) -> Result<Inner> {
    let builder: Builder = DataFileWriterBuilder::new(rolling.clone());
    Ok(if spec.is_unpartitioned() {
        Inner::Unpartitioned(UnpartitionedWriter::new(builder))
    } else {
        Inner::Partitioned {
            splitter: RecordBatchPartitionSplitter::try_new_with_computed_values(schema.clone(), spec.clone())
                .map_err(|e| anyhow!("cannot partition by the table's spec: {e}"))?,
            writer: FanoutWriter::new(builder),
        }
    })
}

impl Inner {
    /// Files roll between writes: a large batch goes in slices (zero-copy), so a file ends
    /// near the target size instead of holding the whole batch.
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = ROLL_CHECK_ROWS.min(batch.num_rows() - offset);
            let slice = batch.slice(offset, len);
            offset += len;
            match self {
                Inner::Unpartitioned(w) => w.write(slice).await?,
                Inner::Partitioned { splitter, writer } => {
                    for (key, part) in splitter.split(&slice)? {
                        writer.write(key, part).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn close(self) -> Result<Vec<DataFile>> {
        Ok(match self {
            Inner::Unpartitioned(w) => w.close().await?,
            Inner::Partitioned { writer, .. } => writer.close().await?,
        })
    }
}

