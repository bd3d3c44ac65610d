//! Rollback to an earlier snapshot, and the snapshot listing behind `lake snapshots`.

use std::collections::{HashMap, HashSet};

use anyhow::{Result, bail};
use iceberg::spec::SnapshotRef;
use iceberg::table::Table;
use serde::Serialize;

use super::keys::carried_keys;
use super::{MAINTENANCE, ROLLBACK_OF, ROLLED_BACK};
use crate::lakehouse::catalog::Lakehouse;
use crate::lakehouse::commit::{self, CommitOutcome};
use crate::lakehouse::summary;

/// Make the table read as it did at `to_snapshot`: a new `overwrite` snapshot (child of
/// `to_snapshot`) whose manifest list holds exactly that snapshot's manifests, with its totals
/// and `lake.*` keys, the watermark and seed files in force then, and [`ROLLBACK_OF`].
/// Snapshots committed after `to_snapshot` leave the current history (they stay for time
/// travel until they expire).
pub async fn rollback(
    lakehouse: &Lakehouse,
    table: &Table,
    to_snapshot: i64,
) -> Result<CommitOutcome> {
    let metadata = table.metadata();
    let Some(target) = metadata.snapshot_by_id(to_snapshot) else {
        let mut known: Vec<&SnapshotRef> = metadata.snapshots().collect();
        known.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
        let ids: Vec<String> = known.iter().map(|s| s.snapshot_id().to_string()).collect();
        bail!(
            "snapshot {to_snapshot} is not a snapshot of {} (known snapshots, oldest first: {})",
            table.identifier(),
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        );
    };
    let current = metadata.current_snapshot_id();
    if current == Some(to_snapshot) {
        bail!(
            "snapshot {to_snapshot} is already the current snapshot of {}; nothing to roll back",
            table.identifier()
        );
    }
    let mut properties: HashMap<String, String> = target
        .summary()
        .additional_properties
        .iter()
        .filter(|(k, _)| k.starts_with("lake."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    properties.extend(carried_keys(table.metadata_ref(), to_snapshot));
    properties.insert(MAINTENANCE.into(), "rollback".into());
    properties.insert(ROLLBACK_OF.into(), to_snapshot.to_string());
    match current {
        Some(c) => properties.insert(ROLLED_BACK.into(), c.to_string()),
        None => properties.remove(ROLLED_BACK),
    };
    properties.extend(summary::stamp(None, None));
    Ok(commit::commit_rollback(lakehouse, table.clone(), to_snapshot, properties).await?)
}

/// One snapshot, for `lake snapshots`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub snapshot_id: i64,
    pub parent_id: Option<i64>,
    pub sequence_number: i64,
    /// RFC 3339.
    pub timestamp: String,
    pub timestamp_ms: i64,
    pub operation: String,
    pub current: bool,
    /// In the current snapshot's history (false for rolled-back snapshots).
    pub in_history: bool,
    pub added_records: Option<u64>,
    pub deleted_records: Option<u64>,
    pub total_records: Option<u64>,
    pub total_data_files: Option<u64>,
    pub model: Option<String>,
    pub run_id: Option<String>,
    pub watermark: Option<String>,
    pub maintenance: Option<String>,
    pub rollback_of: Option<i64>,
}

/// Every snapshot of the table, oldest first.
pub fn snapshots(table: &Table) -> Vec<SnapshotInfo> {
    let metadata = table.metadata();
    let history: HashSet<i64> = summary::ancestry(table)
        .iter()
        .map(|s| s.snapshot_id())
        .collect();
    let mut all: Vec<&SnapshotRef> = metadata.snapshots().collect();
    all.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    all.into_iter()
        .map(|s| {
            let props = &s.summary().additional_properties;
            let num = |k: &str| props.get(k).and_then(|v| v.parse::<u64>().ok());
            let text = |k: &str| props.get(k).cloned();
            SnapshotInfo {
                snapshot_id: s.snapshot_id(),
                parent_id: s.parent_snapshot_id(),
                sequence_number: s.sequence_number(),
                timestamp: s.timestamp().map(|t| t.to_rfc3339()).unwrap_or_default(),
                timestamp_ms: s.timestamp_ms(),
                operation: s.summary().operation.as_str().to_string(),
                current: metadata.current_snapshot_id() == Some(s.snapshot_id()),
                in_history: history.contains(&s.snapshot_id()),
                added_records: num("added-records"),
                deleted_records: num("deleted-records"),
                total_records: num("total-records"),
                total_data_files: num("total-data-files"),
                model: text(summary::MODEL),
                run_id: text(summary::RUN_ID),
                watermark: text(summary::WATERMARK),
                maintenance: text(MAINTENANCE),
                rollback_of: props.get(ROLLBACK_OF).and_then(|v| v.parse().ok()),
            }
        })
        .collect()
}
