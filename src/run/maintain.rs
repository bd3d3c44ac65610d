//! Table maintenance as part of a run (`lake run --maintain`) and the rule both it and
//! `lake maintain` follow: expiry keeps the snapshots that downstream exact incremental reads
//! (`watermark: snapshot`) start from, so those reads stay incremental.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Result;

use crate::graph::Graph;
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::lakehouse::maintenance::{MaintainOptions, MaintenancePolicy, maintain_table_with};
use crate::lakehouse::summary;
use crate::project::model::{Materialized, Model, WatermarkSpec};

use super::RunContext;

/// Per table (`namespace.table`), the snapshot ids that models reading it with
/// `watermark: snapshot` recorded as their last read.
pub async fn protected_snapshots(lakehouse: &Lakehouse, graph: &Graph) -> Result<HashMap<String, HashSet<i64>>> {
    let mut out: HashMap<String, HashSet<i64>> = HashMap::new();
    for m in graph.models() {
        if m.config.watermark != Some(WatermarkSpec::Snapshot) || m.config.materialized == Materialized::Ephemeral {
            continue;
        }
        let Ok(ident) = table_ident(&m.table_name()) else {
            continue;
        };
        let Some(table) = lakehouse.load_table(&ident).await? else {
            continue;
        };
        let Some(w) = summary::watermark(&table).filter(|w| w.data_type == "snapshot") else {
            continue;
        };
        if let Ok(reads) = serde_json::from_str::<BTreeMap<String, Option<i64>>>(&w.value) {
            for (name, id) in reads {
                if let Some(id) = id {
                    out.entry(name).or_default().insert(id);
                }
            }
        }
    }
    Ok(out)
}

/// Maintain `model`'s table right after it was built, protecting what downstream exact reads
/// need, and re-pin it so later models read the maintained snapshot.
pub(super) async fn maintain_model_table(ctx: &RunContext, model: &Model) -> Result<()> {
    let name = model.table_name();
    let ident = table_ident(&name)?;
    let table = ctx.lakehouse.table(&ident).await?;
    let policy = MaintenancePolicy::resolve(model.config.maintenance.as_ref(), Some(&table))?;
    if policy.enabled {
        let protected = protected_snapshots(&ctx.lakehouse, &ctx.graph).await?;
        let options = MaintainOptions {
            protected: protected.get(&name).cloned().unwrap_or_default(),
            ..MaintainOptions::default()
        };
        maintain_table_with(&ctx.lakehouse, &ident, &policy, &ctx.project.config.write, &options).await?;
        let table = ctx.lakehouse.table(&ident).await?;
        ctx.pins.pin(&name, table);
    }
    Ok(())
}
