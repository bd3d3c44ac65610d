//! Snapshot expiry: choose the snapshots to expire (keeping what watermark and seed lookups
//! and protected readers need), remove them in one metadata-only commit, delete the files only
//! they used.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use iceberg::spec::{ManifestFile, SnapshotRef};
use iceberg::table::Table;
use iceberg::util::snapshot::ancestors_of;
use serde::Serialize;

use super::MaintenancePolicy;
use super::keys::seed_union;
use crate::lakehouse::catalog::Lakehouse;
use crate::lakehouse::commit;
use crate::lakehouse::manifests;
use crate::lakehouse::summary;

/// What [`expire_snapshots`] would do.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ExpiryPlan {
    pub expire: Vec<i64>,
    pub keep: Vec<i64>,
}

/// What [`expire_snapshots`] did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ExpireOutcome {
    pub expired: Vec<i64>,
    pub kept: Vec<i64>,
    /// Data, manifest, manifest-list and statistics files that only expired snapshots used,
    /// deleted (or, in a dry run, that would be).
    pub deleted_files: Vec<String>,
    /// The new metadata file, when snapshots were expired.
    pub metadata_location: Option<String>,
}

/// Choose the snapshots to expire at `now`.
///
/// Kept: the current snapshot and the newest `retain_last` of its history; snapshots newer than
/// `expire_older_than`; every ancestor back to the snapshot holding the watermark in force, back
/// to the oldest snapshot whose `lake.seed.files` still count, and back to any id in
/// `protected` (e.g. a snapshot a downstream model's exact incremental read starts from); the
/// snapshots of other refs (branches, tags) and their ancestors. The kept part of the current
/// history is always unbroken.
pub fn plan_expiry(
    table: &Table,
    policy: &MaintenancePolicy,
    now: DateTime<Utc>,
    protected: &HashSet<i64>,
) -> ExpiryPlan {
    let metadata = table.metadata_ref();
    let cutoff =
        now.timestamp_millis() - policy.expire_older_than.as_millis().min(i64::MAX as u128) as i64;
    let chain = summary::ancestry(table);
    let mut keep: HashSet<i64> = HashSet::new();
    if !chain.is_empty() {
        let mut needed = policy.retain_last.max(1).min(chain.len());
        for (i, s) in chain.iter().enumerate() {
            if s.timestamp_ms() >= cutoff || protected.contains(&s.snapshot_id()) {
                needed = needed.max(i + 1);
            }
        }
        if let Some(i) = chain.iter().position(|s| {
            s.summary()
                .additional_properties
                .contains_key(summary::WATERMARK)
        }) {
            needed = needed.max(i + 1);
        }
        let all_seeds = seed_union(&chain, chain.len());
        if !all_seeds.is_empty() {
            let i = (1..=chain.len())
                .find(|&n| seed_union(&chain, n) == all_seeds)
                .unwrap_or(chain.len());
            needed = needed.max(i);
        }
        keep.extend(chain.iter().take(needed).map(|s| s.snapshot_id()));
    }
    // Other refs and their history stay.
    for id in other_ref_heads(table) {
        keep.extend(ancestors_of(&metadata, id).map(|s| s.snapshot_id()));
    }
    let mut plan = ExpiryPlan::default();
    let mut all: Vec<&SnapshotRef> = metadata.snapshots().collect();
    all.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    for s in all {
        let id = s.snapshot_id();
        if keep.contains(&id)
            || s.timestamp_ms() >= cutoff
            || Some(id) == metadata.current_snapshot_id()
        {
            plan.keep.push(id);
        } else {
            plan.expire.push(id);
        }
    }
    plan
}

/// Snapshots named by refs other than `main` (read from the metadata's JSON form: the refs map
/// is not public in iceberg-rust 0.10).
fn other_ref_heads(table: &Table) -> Vec<i64> {
    let Ok(json) = serde_json::to_value(table.metadata()) else {
        return Vec::new();
    };
    json.get("refs")
        .and_then(|r| r.as_object())
        .map(|refs| {
            refs.iter()
                .filter(|(name, _)| name.as_str() != iceberg::spec::MAIN_BRANCH)
                .filter_map(|(_, r)| r.get("snapshot-id").and_then(|v| v.as_i64()))
                .collect()
        })
        .unwrap_or_default()
}

/// Expire old snapshots (see [`plan_expiry`]) in one metadata-only commit, then delete the
/// files only they used. Time travel to an expired snapshot no longer works.
pub async fn expire_snapshots(
    lakehouse: &Lakehouse,
    table: &Table,
    policy: &MaintenancePolicy,
    now: DateTime<Utc>,
) -> Result<ExpireOutcome> {
    expire_snapshots_protecting(lakehouse, table, policy, now, &HashSet::new()).await
}

/// [`expire_snapshots`], also keeping the history back to each snapshot in `protected`.
pub async fn expire_snapshots_protecting(
    lakehouse: &Lakehouse,
    table: &Table,
    policy: &MaintenancePolicy,
    now: DateTime<Utc>,
    protected: &HashSet<i64>,
) -> Result<ExpireOutcome> {
    let planner: commit::ExpiryPlanner = {
        let (policy, protected) = (policy.clone(), protected.clone());
        Arc::new(move |base: &Table| plan_expiry(base, &policy, now, &protected).expire)
    };
    let removal = commit::commit_snapshot_removal(lakehouse, table.clone(), planner).await?;
    let base = removal.base;
    let plan = plan_expiry(&base, policy, now, protected);
    let Some(location) = removal.metadata_location else {
        return Ok(ExpireOutcome {
            kept: plan.keep,
            ..Default::default()
        });
    };
    // Which files only the expired snapshots use, from the metadata they were expired from.
    let expired: HashSet<i64> = removal.removed.iter().copied().collect();
    let garbage = files_only_in(&base, &expired).await.with_context(|| {
        format!(
            "expired {} snapshot(s) of {} but could not tell which files they alone used; `lake maintain` removes them later as orphans",
            removal.removed.len(),
            table.identifier()
        )
    })?;
    let mut deleted = Vec::new();
    for path in garbage {
        match base.file_io().delete(&path).await {
            Ok(()) => deleted.push(path),
            Err(e) => {
                tracing::warn!(path, error = %e, "could not delete a file of an expired snapshot")
            }
        }
    }
    Ok(ExpireOutcome {
        expired: removal.removed,
        kept: plan.keep,
        deleted_files: deleted,
        metadata_location: Some(location),
    })
}

/// Manifest lists, manifests, data/delete files and statistics files that the snapshots in
/// `expired` use and no other snapshot of `table` does.
pub(super) async fn files_only_in(table: &Table, expired: &HashSet<i64>) -> Result<Vec<String>> {
    let metadata = table.metadata();
    let mut kept_files: HashSet<String> = HashSet::new();
    let mut kept_manifests: HashSet<String> = HashSet::new();
    let mut expired_lists: Vec<(String, Vec<ManifestFile>)> = Vec::new();
    for (id, list, snapshot_manifests) in manifests::all_snapshot_manifests(table).await? {
        if expired.contains(&id) {
            expired_lists.push((list, snapshot_manifests));
            continue;
        }
        let fresh = manifests::unseen(snapshot_manifests, &mut kept_manifests);
        manifests::for_each_entry(table, &fresh, |_, e| {
            if e.is_alive() {
                kept_files.insert(e.file_path().to_string());
            }
        })
        .await?;
    }
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = kept_manifests;
    for (list, snapshot_manifests) in expired_lists {
        out.push(list);
        for m in manifests::unseen(snapshot_manifests, &mut seen) {
            manifests::for_each_entry(table, std::slice::from_ref(&m), |_, e| {
                if !kept_files.contains(e.file_path()) && seen.insert(e.file_path().to_string()) {
                    out.push(e.file_path().to_string());
                }
            })
            .await?;
            out.push(m.manifest_path);
        }
    }
    let kept_stats: HashSet<&str> = metadata
        .statistics_iter()
        .filter(|s| !expired.contains(&s.snapshot_id))
        .map(|s| s.statistics_path.as_str())
        .chain(
            metadata
                .partition_statistics_iter()
                .filter(|s| !expired.contains(&s.snapshot_id))
                .map(|s| s.statistics_path.as_str()),
        )
        .collect();
    for path in metadata
        .statistics_iter()
        .filter(|s| expired.contains(&s.snapshot_id))
        .map(|s| s.statistics_path.as_str())
        .chain(
            metadata
                .partition_statistics_iter()
                .filter(|s| expired.contains(&s.snapshot_id))
                .map(|s| s.statistics_path.as_str()),
        )
    {
        if !kept_stats.contains(path) && seen.insert(path.to_string()) {
            out.push(path.to_string());
        }
    }
    Ok(out)
}
