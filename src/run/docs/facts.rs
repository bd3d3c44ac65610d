//! What the docs know about runs and tables: `target/run_results.json` (the last command's
//! results, by node) and the catalog (a table's snapshots, files, size and last commit).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::nodes::{DocColumn, DocNode, LastRun, TableFacts};
use crate::lakehouse::catalog::{Lakehouse, table_ident};
use crate::lakehouse::maintenance::snapshots;
use crate::lakehouse::summary;

/// `target/run_results.json`, by `unique_id` (`model.x`, `test.y`, `seed.z`); empty when
/// there is no such file.
#[derive(Debug, Default)]
pub(super) struct RunResults {
    metadata: Option<Value>,
    by_id: BTreeMap<String, Value>,
}

impl RunResults {
    /// A file that is not JSON is an error naming it; a missing one is no results.
    pub(super) fn read(artifact_dir: &Path) -> Result<Self> {
        let path = artifact_dir.join("run_results.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON; delete it or run `lake build` again", path.display()))?;
        let by_id = doc["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["unique_id"].as_str()?.to_string(), r.clone())))
            .collect();
        Ok(RunResults { metadata: Some(doc["metadata"].clone()), by_id })
    }

    /// The command and run id the results are from.
    pub(super) fn invocation(&self) -> Option<Value> {
        self.metadata.clone()
    }

    pub(super) fn get(&self, unique_id: &str) -> Option<&Value> {
        self.by_id.get(unique_id)
    }

    /// A model's or seed's last run, as the results record it.
    pub(super) fn last_run(&self, unique_id: &str) -> Option<LastRun> {
        let r = self.get(unique_id)?;
        let text = |k: &str| r[k].as_str().map(str::to_string);
        Some(LastRun {
            from: "run_results".into(),
            status: text("status"),
            message: text("message"),
            rows: r["rows_written"].as_u64(),
            snapshot_id: r["snapshot_id"].as_i64(),
            duration_seconds: r["duration_seconds"].as_f64(),
            watermark: text("watermark_after"),
            operation: text("operation"),
            at: None,
            run_id: self.metadata.as_ref().and_then(|m| m["invocation_id"].as_str().map(str::to_string)),
        })
    }
}

/// The facts of `table` from the catalog, when it exists; and its last commit as the last run
/// when the run results hold none for the node. A catalog that cannot be read is an error.
pub(super) async fn add_catalog_facts(lakehouse: &Lakehouse, table: &str, node: &mut DocNode) -> Result<()> {
    let Some(loaded) = lakehouse.load_table(&table_ident(table)?).await? else {
        return Ok(());
    };
    let metadata = loaded.metadata();
    let all = snapshots(&loaded);
    let current = all.iter().find(|s| s.current);
    let props = metadata
        .current_snapshot()
        .map(|s| s.summary().additional_properties.clone())
        .unwrap_or_default();
    let num = |k: &str| props.get(k).and_then(|v| v.parse::<u64>().ok());
    node.facts = Some(TableFacts {
        location: metadata.location().to_string(),
        format_version: format!("{:?}", metadata.format_version()),
        current_snapshot_id: metadata.current_snapshot_id(),
        snapshots: all.len(),
        data_files: num("total-data-files"),
        delete_files: num("total-delete-files"),
        records: num("total-records"),
        size_bytes: num("total-files-size"),
        last_updated: current.map(|s| s.timestamp.clone()),
    });
    // The table's columns, in its order and with its types; documented columns it does not
    // have after them.
    let mut rest = std::mem::take(&mut node.columns);
    for field in metadata.current_schema().as_struct().fields() {
        let mut column = match rest.iter().position(|c| c.name == field.name) {
            Some(i) => rest.remove(i),
            None => DocColumn::named(&field.name, None),
        };
        column.data_type = Some(field.field_type.to_string());
        node.columns.push(column);
    }
    node.columns.extend(rest);
    if node.last_run.is_none()
        && let Some(s) = current
    {
        node.last_run = Some(LastRun {
            from: "catalog".into(),
            status: None,
            message: None,
            rows: s.added_records,
            snapshot_id: Some(s.snapshot_id),
            duration_seconds: None,
            watermark: summary::watermark(&loaded).map(|w| w.value),
            operation: Some(s.operation.clone()),
            at: Some(s.timestamp.clone()),
            run_id: s.run_id.clone(),
        });
    }
    Ok(())
}
