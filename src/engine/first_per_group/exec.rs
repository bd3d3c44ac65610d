//! [`FirstPerGroupExec`]: the first row per group of any input, in one pass that holds the
//! batches still holding a group's first row and gathers those rows at the end.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::Rows;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, PlanProperties};
use futures::{StreamExt, TryStreamExt};

use super::{Firsts, Offered, Ranker};
/// Keeps, of each group of rows with equal `partition_by` values, the row that sorts first by
/// `order_by`, with a last column of 1s (the `row_number` it replaces). Needs its input hashed
/// by the group key, as the window did.
#[derive(Debug)]
pub struct FirstPerGroupExec {
    input: Arc<dyn ExecutionPlan>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<PhysicalSortExpr>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl FirstPerGroupExec {
    /// `schema`: the input's columns, then the `row_number` column (UInt64).
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        order_by: Vec<PhysicalSortExpr>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let width = input.schema().fields().len();
        if schema.fields().len() != width + 1 || schema.field(width).data_type() != &DataType::UInt64 {
            return Err(DataFusionError::Internal(format!(
                "FirstPerGroupExec: the output must be the input's {width} columns and a UInt64 row number, not {schema:?}"
            )));
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.properties().output_partitioning().clone(),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Self {
            input,
            partition_by,
            order_by,
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for FirstPerGroupExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.partition_by.iter().map(|e| e.to_string()).collect();
        let order: Vec<String> = self.order_by.iter().map(|e| e.to_string()).collect();
        write!(f, "FirstPerGroupExec: partition_by=[{}], order_by=[{}]", keys.join(", "), order.join(", "))
    }
}

impl ExecutionPlan for FirstPerGroupExec {
    fn name(&self) -> &str {
        "FirstPerGroupExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::HashPartitioned(self.partition_by.clone())]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("FirstPerGroupExec has one input".into()))?;
        Ok(Arc::new(Self::try_new(
            input,
            self.partition_by.clone(),
            self.order_by.clone(),
            Arc::clone(&self.schema),
        )?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, Arc::clone(&context))?;
        let reservation =
            MemoryConsumer::new(format!("FirstPerGroupExec[{partition}]")).register(context.memory_pool());
        let compactions = MetricBuilder::new(&self.metrics).counter("compactions", partition);
        let mut groups = Groups::try_new(self, reservation, compactions)?;
        let batch_size = context.session_config().batch_size();
        let schema = Arc::clone(&self.schema);
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let gathered = futures::stream::once(async move {
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let _timer = metrics.elapsed_compute().timer();
                groups.push(batch)?;
            }
            Ok::<_, DataFusionError>(groups.gather(schema, batch_size, metrics))
        })
        .map_ok(futures::stream::iter)
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), gathered)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// One partition's state: the input batches that still hold a group's first row, and the
/// winners by encoded group key.
struct Groups {
    ranker: Ranker,
    /// Where each group's first row is: (batch number, row).
    winners: Firsts<(u32, u32)>,
    /// By batch number; `None` once no winner is in it.
    batches: Vec<Option<RecordBatch>>,
    /// Winners per batch.
    live: Vec<usize>,
    /// Rows in the batches held.
    held_rows: usize,
    reservation: MemoryReservation,
    compactions: Count,
}

impl Groups {
    fn try_new(exec: &FirstPerGroupExec, reservation: MemoryReservation, compactions: Count) -> Result<Self> {
        Ok(Self {
            ranker: Ranker::try_new(&exec.input.schema(), &exec.partition_by, &exec.order_by)?,
            winners: Firsts::new(),
            batches: Vec::new(),
            live: Vec::new(),
            held_rows: 0,
            reservation,
            compactions,
        })
    }

    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let (keys, orders): (Rows, Option<Rows>) = self.ranker.encode(&batch)?;
        let this = u32::try_from(self.batches.len())
            .map_err(|_| DataFusionError::Execution("FirstPerGroupExec: more than 2^32 input batches".into()))?;
        self.reservation.try_grow(batch.get_array_memory_size())?;
        self.held_rows += n;
        self.batches.push(Some(batch));
        self.live.push(0);
        let mut released = Vec::new();
        for row in 0..n {
            let order: &[u8] = orders.as_ref().map_or(&[], |o| o.row(row).data());
            match self.winners.offer(keys.row(row).data(), order, (this, row as u32)) {
                Offered::Beat((batch, _)) => {
                    self.live[batch as usize] -= 1;
                    released.push(batch);
                    self.live[this as usize] += 1;
                }
                Offered::First => self.live[this as usize] += 1,
                Offered::Lost => {}
            }
        }
        released.push(this);
        for b in released {
            if self.live[b as usize] == 0
                && let Some(gone) = self.batches[b as usize].take()
            {
                self.held_rows -= gone.num_rows();
                self.reservation.shrink(gone.get_array_memory_size());
            }
        }
        if self.held_rows > 2 * self.winners.len() + COMPACT_SLACK {
            self.compact()?;
        }
        Ok(())
    }

    /// Copies the winning rows into new batches and lets the old ones go: the batches held
    /// then hold at most twice the rows kept (plus [`COMPACT_SLACK`]), whatever the input size.
    fn compact(&mut self) -> Result<()> {
        let mut winners: Vec<&mut (u32, u32)> = self.winners.places_mut().collect();
        winners.sort_unstable();
        let (position, refs) = held(&self.batches);
        let (mut batches, mut live) = (Vec::new(), Vec::new());
        for chunk in winners.chunks_mut(COMPACT_BATCH) {
            let indices: Vec<(usize, usize)> =
                chunk.iter().map(|&&mut (batch, row)| (position[batch as usize], row as usize)).collect();
            let this = batches.len() as u32;
            for (row, at) in chunk.iter_mut().enumerate() {
                **at = (this, row as u32);
            }
            batches.push(Some(interleave_record_batch(&refs, &indices)?));
            live.push(chunk.len());
        }
        let size = |bs: &[Option<RecordBatch>]| bs.iter().flatten().map(|b| b.get_array_memory_size()).sum::<usize>();
        self.reservation.try_grow(size(&batches))?;
        self.reservation.shrink(size(&self.batches));
        self.held_rows = self.winners.len();
        (self.batches, self.live) = (batches, live);
        self.compactions.add(1);
        Ok(())
    }

    /// The winning rows in input order, `batch_size` rows a batch, each with the row number 1.
    fn gather(
        self,
        schema: SchemaRef,
        batch_size: usize,
        metrics: BaselineMetrics,
    ) -> impl Iterator<Item = Result<RecordBatch>> + Send {
        let mut picks: Vec<(u32, u32)> = self.winners.into_places().collect();
        picks.sort_unstable();
        let (position, refs) = held(&self.batches);
        let held: Vec<RecordBatch> = refs.into_iter().cloned().collect();
        let reservation = self.reservation;
        let chunks: Vec<Vec<(usize, usize)>> = picks
            .chunks(batch_size.max(1))
            .map(|c| c.iter().map(|&(b, r)| (position[b as usize], r as usize)).collect())
            .collect();
        chunks.into_iter().map(move |indices| {
            let _held = &reservation;
            let _timer = metrics.elapsed_compute().timer();
            let refs: Vec<&RecordBatch> = held.iter().collect();
            let rows = interleave_record_batch(&refs, &indices)?;
            let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
            columns.push(Arc::new(UInt64Array::from_value(1, indices.len())));
            let out = RecordBatch::try_new(Arc::clone(&schema), columns)?;
            metrics.record_output(out.num_rows());
            Ok(out)
        })
    }
}

/// Rows held beyond twice the rows kept before the batches are compacted.
const COMPACT_SLACK: usize = 1 << 17;
/// Rows per batch of compacted winners.
const COMPACT_BATCH: usize = 1 << 16;

/// The batches still held, and each batch number's position among them.
fn held(batches: &[Option<RecordBatch>]) -> (Vec<usize>, Vec<&RecordBatch>) {
    let mut position = vec![usize::MAX; batches.len()];
    let mut held = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        if let Some(batch) = batch {
            position[b] = held.len();
            held.push(batch);
        }
    }
    (position, held)
}
