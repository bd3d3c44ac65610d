//! [`FirstPerGroupScanExec`]: the first row per group of a table scan, in two reads of its
//! files instead of one read that holds every row.
//!
//! The one-pass [`FirstPerGroupExec`](super::FirstPerGroupExec) needs its input hashed by key
//! (every column of every row copied once more) and holds every batch that still holds a
//! winner, which for a staging model's raw table is nearly all of them: 2.3 GB of JSON payloads
//! at 1M Shopify orders. When the window reads a table scan directly, the key and order
//! columns are read first, alone (`first_pass`: each scan partition on its own core, then
//! merged), which gives, per scan partition, the positions of the winning rows; then each
//! partition reads its files again, every column, one batch at a time, and keeps the rows at
//! those positions. Nothing but the winners' positions is held, and nothing is copied but the
//! rows kept.
//!
//! A position is a row's ordinal in its partition's read: the scan reads a partition's files
//! one after another, each in row order ([`ScanExec::read_in_order`]), so both reads see the
//! same rows in the same order. That holds because every file is read whole (no delete file,
//! no filter pushed down; otherwise this plan is not used). Ties in the order go to the row
//! read first: the lower partition, then the earlier position.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch, UInt64Array};
use arrow::buffer::BooleanBuffer;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use super::{Firsts, Ranker};
use crate::engine::scan::ScanExec;

/// Positions of the winning rows, ascending, by scan partition.
type Positions = Arc<Vec<Vec<u64>>>;

/// Keeps, of each group of a table scan's rows with equal `partition_by` values, the row that
/// sorts first by `order_by`, with a last column of 1s (the `row_number` it replaces). Reads
/// the table itself: it has no input plan.
#[derive(Debug)]
pub struct FirstPerGroupScanExec {
    scan: Arc<ScanExec>,
    /// The scan's columns the keys and orders read, ascending.
    ranked: Vec<usize>,
    /// Over the `ranked` columns alone.
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<PhysicalSortExpr>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    winners: Arc<OnceCell<Positions>>,
}

impl FirstPerGroupScanExec {
    /// The two-read plan for a window over `input`, when `input` is a scan that reads its files
    /// whole and the keys and orders need fewer columns than it reads. `schema`: the scan's
    /// columns, then the `row_number` column.
    pub fn over(
        input: &Arc<dyn ExecutionPlan>,
        partition_by: &[Arc<dyn PhysicalExpr>],
        order_by: &[PhysicalSortExpr],
        schema: SchemaRef,
    ) -> Result<Option<Self>> {
        let Some(scan) = input.as_any().downcast_ref::<ScanExec>() else {
            return Ok(None);
        };
        let mut ranked: Vec<usize> = partition_by
            .iter()
            .chain(order_by.iter().map(|s| &s.expr))
            .flat_map(collect_columns)
            .map(|c| c.index())
            .collect();
        ranked.sort_unstable();
        ranked.dedup();
        let width = input.schema().fields().len();
        if !scan.reads_whole_files() || scan.partitions().is_empty() || ranked.len() >= width {
            return Ok(None);
        }
        // The keys and orders over the columns read first, alone.
        let narrow = scan.schema().project(&ranked)?;
        let remap = |e: &Arc<dyn PhysicalExpr>| reassign_expr_columns(Arc::clone(e), &narrow);
        let partition_by = partition_by.iter().map(remap).collect::<Result<Vec<_>>>()?;
        let order_by = order_by
            .iter()
            .map(|s| Ok(PhysicalSortExpr { expr: remap(&s.expr)?, options: s.options }))
            .collect::<Result<Vec<_>>>()?;
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(scan.partitions().len()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Some(Self {
            scan: Arc::new(scan.clone()),
            ranked,
            partition_by,
            order_by,
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
            winners: Arc::new(OnceCell::new()),
        }))
    }
}

impl DisplayAs for FirstPerGroupScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.partition_by.iter().map(|e| e.to_string()).collect();
        let order: Vec<String> = self.order_by.iter().map(|e| e.to_string()).collect();
        write!(f, "FirstPerGroupScanExec: partition_by=[{}], order_by=[{}], reads ", keys.join(", "), order.join(", "))?;
        self.scan.fmt_as(t, f)
    }
}

impl ExecutionPlan for FirstPerGroupScanExec {
    fn name(&self) -> &str {
        "FirstPerGroupScanExec"
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

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let batch_size = context.session_config().batch_size().max(1);
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let (scan, winners, schema) = (Arc::clone(&self.scan), Arc::clone(&self.winners), Arc::clone(&self.schema));
        let (ranked, partition_by, order_by) = (self.ranked.clone(), self.partition_by.clone(), self.order_by.clone());
        let kept = futures::stream::once(async move {
            let positions = winners
                .get_or_try_init(|| first_pass(Arc::clone(&scan), ranked, partition_by, order_by, batch_size))
                .await?;
            let mine = positions.get(partition).cloned().unwrap_or_default();
            let every: Vec<usize> = (0..scan.schema().fields().len()).collect();
            let tasks = scan.partitions().get(partition).cloned().unwrap_or_default();
            let rows = scan.read_in_order(&tasks, &every, batch_size)?;
            Ok::<_, DataFusionError>(second_pass(rows, mine, schema, metrics))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), kept)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The first read: each scan partition's key and order columns on its own task, the winners
/// of each, merged; the winners' positions by partition.
async fn first_pass(
    scan: Arc<ScanExec>,
    ranked: Vec<usize>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<PhysicalSortExpr>,
    batch_size: usize,
) -> Result<Positions> {
    let narrow = scan.schema().project(&ranked)?;
    let mut tasks = Vec::new();
    for (partition, files) in scan.partitions().iter().enumerate() {
        let rows = scan.read_in_order(files, &ranked, batch_size)?;
        let ranker = Ranker::try_new(&narrow, &partition_by, &order_by)?;
        tasks.push(SpawnedTask::spawn(firsts(rows, ranker, partition as u32)));
    }
    // Each partition's first rows, merged: a tie goes to the row read first.
    let mut merged: Firsts<(u32, u64)> = Firsts::new();
    for task in tasks {
        let firsts = task.join_unwind().await.map_err(|e| DataFusionError::External(Box::new(e)))??;
        if merged.len() == 0 {
            merged = firsts;
        } else {
            merged.absorb(firsts);
        }
    }
    let mut positions = vec![Vec::new(); scan.partitions().len()];
    for (partition, position) in merged.into_places() {
        positions[partition as usize].push(position);
    }
    positions.iter_mut().for_each(|p| p.sort_unstable());
    Ok(Arc::new(positions))
}

/// The first row of each group in one partition's read of the key and order columns.
async fn firsts(mut rows: SendableRecordBatchStream, ranker: Ranker, partition: u32) -> Result<Firsts<(u32, u64)>> {
    let mut firsts = Firsts::new();
    let mut offset = 0u64;
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        let (keys, orders) = ranker.encode(&batch)?;
        for row in 0..batch.num_rows() {
            let order: &[u8] = orders.as_ref().map_or(&[], |o| o.row(row).data());
            firsts.offer(keys.row(row).data(), order, (partition, offset + row as u64));
        }
        offset += batch.num_rows() as u64;
    }
    Ok(firsts)
}

/// The second read: the rows of `rows` at `positions` (ascending), each with the row number 1.
fn second_pass(
    rows: SendableRecordBatchStream,
    positions: Vec<u64>,
    schema: SchemaRef,
    metrics: BaselineMetrics,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    let mut offset = 0u64;
    let mut next = 0usize;
    rows.try_filter_map(move |batch| {
        let _timer = metrics.elapsed_compute().timer();
        let n = batch.num_rows() as u64;
        let from = next;
        while next < positions.len() && positions[next] < offset + n {
            next += 1;
        }
        let picked = &positions[from..next];
        let start = offset;
        offset += n;
        let out = match picked.len() {
            0 => None,
            k if k as u64 == n => Some(Ok(batch)),
            _ => {
                let mut mask = vec![false; n as usize];
                for &p in picked {
                    mask[(p - start) as usize] = true;
                }
                Some(filter_record_batch(&batch, &BooleanArray::new(BooleanBuffer::from(mask), None)))
            }
        };
        let out = out
            .map(|b| {
                let b = b?;
                let mut columns = b.columns().to_vec();
                columns.push(Arc::new(UInt64Array::from_value(1, b.num_rows())));
                let out = RecordBatch::try_new(Arc::clone(&schema), columns)?;
                metrics.record_output(out.num_rows());
                Ok::<_, DataFusionError>(out)
            })
            .transpose();
        futures::future::ready(out)
    })
}
