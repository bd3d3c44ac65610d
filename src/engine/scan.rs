//! The DataFusion table every query reads: one snapshot of an Iceberg table, planned from
//! lake's own manifest reads ([`scan_tasks`]: the one rule of which delete files apply) and read
//! in as many partitions as the session has (`target_partitions`, one per core), the data
//! files spread over them by size, so a scan decodes on every core.
//!
//! Filters leave out the files whose partition values and column bounds cannot match, and go
//! down to the Parquet reader (row groups and pages pruned, rows filtered) as
//! Iceberg predicates, and DataFusion applies them again (`Inexact`). The row count is exact
//! statistics when no delete file applies and no filter is pushed, so `count(*)` reads nothing;
//! a scan that needs no column reads a file only when deletes or a filter apply to it.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Statistics};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DFResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use iceberg::Runtime;
use iceberg::arrow::{ArrowReaderBuilder, schema_to_arrow_schema};
use iceberg::expr::{Bind, Predicate};
use iceberg::io::FileIO;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;

use crate::lakehouse::reader::scan_tasks;

/// Files a partition reads at once (one decodes while the next is fetched).
const FILES_IN_FLIGHT: usize = 2;

fn df_error(e: impl fmt::Display) -> DataFusionError {
    DataFusionError::External(e.to_string().into())
}

/// One snapshot of a table (`None`: the current one, or nothing when it has none).
#[derive(Debug, Clone)]
pub struct SnapshotTable {
    table: Table,
    snapshot_id: Option<i64>,
    schema: SchemaRef,
}

impl SnapshotTable {
    /// The table at `snapshot_id` in that snapshot's schema, or at its current snapshot in its
    /// current schema.
    pub fn new(table: Table, snapshot_id: Option<i64>) -> anyhow::Result<Self> {
        let metadata = table.metadata();
        let schema = match snapshot_id {
            Some(id) => {
                let snapshot = metadata
                    .snapshot_by_id(id)
                    .ok_or_else(|| anyhow::anyhow!("table {} has no snapshot {id}", table.identifier()))?;
                snapshot.schema(metadata)?
            }
            None => metadata.current_schema().clone(),
        };
        let schema = Arc::new(schema_to_arrow_schema(&schema)?);
        let snapshot_id = snapshot_id.or_else(|| metadata.current_snapshot_id());
        Ok(SnapshotTable { table, snapshot_id, schema })
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut tasks = match self.snapshot_id {
            Some(id) => scan_tasks(&self.table, id, None, Some(&names)).await.map_err(|e| df_error(format!("{e:#}")))?,
            None => Vec::new(),
        };
        let predicate = convert_filters_to_predicate(filters);
        if let (Some(predicate), Some(first), Some(id)) = (&predicate, tasks.first(), self.snapshot_id) {
            // A filter the snapshot's schema cannot bind is left to DataFusion alone.
            if let Ok(bound) = predicate.bind(first.schema.clone(), true) {
                for t in &mut tasks {
                    t.predicate = Some(bound.clone());
                }
                if let Some(kept) = files_matching(&self.table, id, predicate).await {
                    tasks.retain(|t| kept.contains(&t.data_file_path));
                }
            }
        }
        Ok(Arc::new(ScanExec::new(
            &self.table,
            schema,
            tasks,
            predicate,
            limit,
            state.config().target_partitions().max(1),
        )))
    }
}

/// The data files of snapshot `id` that may hold rows matching `predicate`, by their partition
/// values and column bounds (iceberg's evaluators, which are not public: its planning is
/// asked for the paths alone; which deletes apply stays [`scan_tasks`]' rule). `None` when
/// it cannot tell: then no file is left out.
async fn files_matching(table: &Table, id: i64, predicate: &Predicate) -> Option<HashSet<String>> {
    let scan = table.scan().snapshot_id(id).select_empty().with_filter(predicate.clone()).build().ok()?;
    let files = scan.plan_files().await.ok()?;
    files.map_ok(|t| t.data_file_path).try_collect().await.ok()
}

/// Reads scan tasks in partitions of about equal bytes.
#[derive(Debug, Clone)]
pub(super) struct ScanExec {
    table: String,
    file_io: FileIO,
    schema: SchemaRef,
    partitions: Vec<Vec<FileScanTask>>,
    predicate: Option<Predicate>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl ScanExec {
    fn new(
        table: &Table,
        schema: SchemaRef,
        mut tasks: Vec<FileScanTask>,
        predicate: Option<Predicate>,
        limit: Option<usize>,
        target_partitions: usize,
    ) -> Self {
        // Largest first, each to the lightest partition.
        tasks.sort_by_key(|t| std::cmp::Reverse(t.file_size_in_bytes));
        let count = target_partitions.min(tasks.len()).max(1);
        let mut partitions: Vec<(u64, Vec<FileScanTask>)> = (0..count).map(|_| (0, Vec::new())).collect();
        for task in tasks {
            let lightest = partitions.iter_mut().min_by_key(|(bytes, _)| *bytes).expect("at least one partition");
            lightest.0 += task.file_size_in_bytes;
            lightest.1.push(task);
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(count),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        ScanExec {
            table: table.identifier().to_string(),
            file_io: table.file_io().clone(),
            schema,
            partitions: partitions.into_iter().map(|(_, t)| t).collect(),
            predicate,
            limit,
            properties,
        }
    }

    /// The files each partition reads.
    pub(super) fn partitions(&self) -> &[Vec<FileScanTask>] {
        &self.partitions
    }

    /// Whether every file is read whole: no delete file applies and no filter went down.
    pub(super) fn reads_whole_files(&self) -> bool {
        self.limit.is_none() && self.partitions.iter().flatten().all(|t| t.deletes.is_empty() && t.predicate.is_none())
    }

    /// The columns `columns` (positions in the scan's schema) of `tasks`, one file after
    /// another and each file's rows in order: two reads of the same tasks give the same rows
    /// in the same order, whichever columns each asks for.
    pub(super) fn read_in_order(
        &self,
        tasks: &[FileScanTask],
        columns: &[usize],
        batch_size: usize,
    ) -> DFResult<SendableRecordBatchStream> {
        let schema = Arc::new(self.schema.project(columns)?);
        let tasks: Vec<FileScanTask> = tasks
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t.project_field_ids = columns.iter().map(|&c| t.project_field_ids[c]).collect();
                t
            })
            .collect();
        let stream = self.read(tasks, batch_size, 1)?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    /// The rows of `tasks`, `in_flight` files at a time.
    fn read(
        &self,
        tasks: Vec<FileScanTask>,
        batch_size: usize,
        in_flight: usize,
    ) -> DFResult<futures::stream::BoxStream<'static, DFResult<RecordBatch>>> {
        let reader = ArrowReaderBuilder::new(self.file_io.clone(), Runtime::try_current().map_err(df_error)?)
            .with_batch_size(batch_size)
            .with_data_file_concurrency_limit(in_flight)
            .build();
        let table = self.table.clone();
        Ok(reader
            .read(futures::stream::iter(tasks.into_iter().map(Ok)).boxed())
            .map_err(df_error)?
            .stream()
            .map_err(move |e| df_error(format!("cannot read data files of {table}: {e}")))
            .boxed())
    }

    /// Rows of `tasks` (files) when they are exactly the file's record count.
    fn exact_rows<'a>(&self, tasks: impl IntoIterator<Item = &'a FileScanTask>) -> Option<usize> {
        tasks
            .into_iter()
            .map(|t| match (t.deletes.is_empty() && t.predicate.is_none(), t.record_count) {
                (true, Some(n)) => Some(n as usize),
                _ => None,
            })
            .sum()
    }
}

impl DisplayAs for ScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let files: usize = self.partitions.iter().map(Vec::len).sum();
        let columns: Vec<&str> = self.schema.fields().iter().map(|f| f.name().as_str()).collect();
        write!(f, "LakeScan: {} files={files} partitions={} projection=[{}]", self.table, self.partitions.len(), columns.join(","))?;
        if let Some(p) = &self.predicate {
            write!(f, " predicate=[{p}]")?;
        }
        if let Some(limit) = self.limit {
            write!(f, " limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ScanExec {
    fn name(&self) -> &str {
        "LakeScan"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn partition_statistics(&self, partition: Option<usize>) -> DFResult<Statistics> {
        let tasks: Vec<&FileScanTask> = match partition {
            Some(p) => self.partitions.get(p).into_iter().flatten().collect(),
            None => self.partitions.iter().flatten().collect(),
        };
        let mut stats = Statistics::new_unknown(&self.schema);
        let upper: usize = tasks.iter().filter_map(|t| t.record_count).map(|n| n as usize).sum();
        stats.num_rows = match (self.exact_rows(tasks.iter().copied()), self.limit) {
            (Some(n), None) => Precision::Exact(n),
            _ => Precision::Inexact(upper),
        };
        Ok(stats)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        let tasks = self.partitions.get(partition).cloned().unwrap_or_default();
        let schema = self.schema.clone();
        let no_columns = schema.fields().is_empty();
        // With no column wanted, a file whose rows all count is not read: its record count is
        // the answer. The others read their first column (deletes and filters still apply).
        let (counted, mut read): (Vec<_>, Vec<_>) = match no_columns {
            true => tasks.into_iter().partition(|t| self.exact_rows([t]).is_some()),
            false => (Vec::new(), tasks),
        };
        for t in read.iter_mut().filter(|t| t.project_field_ids.is_empty()) {
            if let Some(first) = t.schema.as_struct().fields().first() {
                t.project_field_ids = vec![first.id];
            }
        }
        let batch_size = context.session_config().batch_size().max(1);
        let mut counts = Vec::new();
        for t in &counted {
            let mut left = t.record_count.unwrap_or(0) as usize;
            while left > 0 {
                let n = left.min(batch_size);
                counts.push(rows_only(&schema, n));
                left -= n;
            }
        }
        let read = self.read(read, batch_size, FILES_IN_FLIGHT)?.map(move |batch| match (batch, no_columns) {
                (Ok(b), true) => rows_only(&schema, b.num_rows()),
                (other, _) => other,
            });
        let stream = futures::stream::iter(counts).chain(read);
        let stream = match self.limit {
            None => stream.boxed(),
            Some(limit) => {
                let mut remaining = limit;
                stream
                    .try_filter_map(move |batch| {
                        let out = match remaining {
                            0 => None,
                            r if batch.num_rows() <= r => {
                                remaining -= batch.num_rows();
                                Some(batch)
                            }
                            r => {
                                remaining = 0;
                                Some(batch.slice(0, r))
                            }
                        };
                        futures::future::ready(Ok(out))
                    })
                    .boxed()
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream)))
    }
}

/// A batch of `rows` rows and no column (what a scan that needs no column returns).
fn rows_only(schema: &SchemaRef, rows: usize) -> DFResult<RecordBatch> {
    RecordBatch::try_new_with_options(schema.clone(), Vec::new(), &RecordBatchOptions::new().with_row_count(Some(rows)))
        .map_err(DataFusionError::from)
}
