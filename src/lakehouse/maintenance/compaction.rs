//! Compaction: plan which small files to rewrite per partition, rewrite them into files near
//! the target size and commit one `replace` snapshot with merged manifests (same rows).
//!
//! Deletes are folded in: every data file that a delete file applies to is rewritten (whatever
//! its size) without its deleted rows, and every delete file leaves the snapshot.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Result, bail};
use futures::TryStreamExt;
use iceberg::spec::{DataFile, ManifestContentType, Struct};
use iceberg::table::Table;
use serde::Serialize;

use super::keys::carried_keys;
use super::{MAINTENANCE, MaintenancePolicy};
use crate::lakehouse::catalog::Lakehouse;
use crate::lakehouse::commit::{self, MANIFEST_ENTRIES};
use crate::lakehouse::manifests;
use crate::lakehouse::reader::{self, read_files};
use crate::lakehouse::summary;
use crate::lakehouse::writer::{DataWriter, WriteOptions};

/// Small files of one partition that compaction rewrites together.
#[derive(Debug, Clone, Serialize)]
pub struct CompactionGroup {
    pub spec_id: i32,
    /// The partition values, for display.
    pub partition: String,
    pub files: Vec<String>,
    pub bytes: u64,
    pub records: u64,
    /// Files of the group that delete files apply to (their deleted rows are dropped).
    pub with_deletes: usize,
}

/// What [`compact`] would do.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CompactionPlan {
    /// The snapshot the plan was made on.
    pub snapshot_id: Option<i64>,
    /// Live data files now.
    pub data_files: usize,
    /// Data manifests in the current manifest list.
    pub data_manifests: usize,
    pub groups: Vec<CompactionGroup>,
    /// Live delete files, folded into the rewritten files and removed.
    pub delete_files: Vec<String>,
    /// Merge the manifests (always when files are rewritten).
    pub merge_manifests: bool,
    /// Why the table is not compacted at all, if so.
    pub skipped: Option<String>,
}

impl CompactionPlan {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && !self.merge_manifests && self.delete_files.is_empty()
    }

    pub fn files_to_rewrite(&self) -> usize {
        self.groups.iter().map(|g| g.files.len()).sum()
    }
}

/// What [`compact`] did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CompactOutcome {
    pub files_before: usize,
    pub files_after: usize,
    /// Small files replaced.
    pub rewritten: usize,
    /// New files written.
    pub written: usize,
    /// Delete files folded into the rewritten files and removed.
    pub deletes_removed: usize,
    pub manifests_before: usize,
    pub manifests_after: usize,
    /// The `replace` snapshot, or `None` when there was nothing to do (or a dry run).
    pub snapshot_id: Option<i64>,
    /// Why nothing was done, if so.
    pub skipped: Option<String>,
}

/// Decide which small files to rewrite: per partition (spec id and partition values), the
/// files under `small_file_mb` when there are at least `min_input_files` of them.
pub async fn plan_compaction(table: &Table, policy: &MaintenancePolicy) -> Result<CompactionPlan> {
    let metadata = table.metadata();
    let Some(current) = metadata.current_snapshot() else {
        return Ok(CompactionPlan {
            skipped: Some("table has no snapshot".into()),
            ..Default::default()
        });
    };
    let manifests = manifests::manifest_files(table, current).await?;
    let mut plan = CompactionPlan {
        snapshot_id: Some(current.snapshot_id()),
        data_manifests: manifests.iter().filter(|m| m.content == ManifestContentType::Data).count(),
        ..Default::default()
    };
    let small = policy.small_bytes();
    let live = manifests::live_files(table, &manifests).await?;
    plan.delete_files = live.iter().filter(|l| !l.is_data()).map(|l| l.file.file_path().to_string()).collect();
    let with_deletes = if plan.delete_files.is_empty() { HashSet::new() } else { files_with_deletes(table, current.snapshot_id()).await? };
    // (spec id, partition text) -> (partition, [(path, bytes, records, has deletes)])
    type Groups = BTreeMap<(i32, String), (Struct, Vec<(String, u64, u64, bool)>)>;
    let mut groups: Groups = BTreeMap::new();
    let mut per_spec: BTreeMap<i32, usize> = BTreeMap::new();
    for live in live.into_iter().filter(|l| l.is_data()) {
        plan.data_files += 1;
        *per_spec.entry(live.spec_id).or_default() += 1;
        let file = live.file;
        let deleted = with_deletes.contains(file.file_path());
        if file.file_size_in_bytes() < small || deleted {
            groups
                .entry((live.spec_id, format!("{:?}", file.partition())))
                .or_insert_with(|| (file.partition().clone(), Vec::new()))
                .1
                .push((file.file_path().to_string(), file.file_size_in_bytes(), file.record_count(), deleted));
        }
    }
    for ((spec_id, _), (partition, mut files)) in groups {
        let deleted = files.iter().filter(|f| f.3).count();
        if files.len() < policy.min_input_files && deleted == 0 {
            continue;
        }
        files.sort();
        plan.groups.push(CompactionGroup {
            spec_id,
            partition: partition_text(&partition),
            bytes: files.iter().map(|f| f.1).sum(),
            records: files.iter().map(|f| f.2).sum(),
            with_deletes: deleted,
            files: files.into_iter().map(|f| f.0).collect(),
        });
    }
    // Merged manifests hold at most MANIFEST_ENTRIES files each: merging a table that already
    // has no more manifests than that would only write the same manifests again.
    let merged: usize = per_spec.values().map(|n| n.div_ceil(MANIFEST_ENTRIES)).sum();
    plan.merge_manifests = !plan.groups.is_empty() || plan.data_manifests > policy.max_manifests.max(merged);
    Ok(plan)
}

/// The data files of `snapshot_id` that at least one delete file applies to.
async fn files_with_deletes(table: &Table, snapshot_id: i64) -> Result<HashSet<String>> {
    let tasks = reader::scan_tasks(table, snapshot_id, None, Some(&[][..])).await?;
    Ok(tasks.into_iter().filter(|t| !t.deletes.is_empty()).map(|t| t.data_file_path).collect())
}

fn partition_text(partition: &Struct) -> String {
    let values: Vec<String> = partition
        .iter()
        .map(|v| match v {
            Some(l) => format!("{l:?}"),
            None => "null".into(),
        })
        .collect();
    if values.is_empty() {
        "(unpartitioned)".into()
    } else {
        format!("({})", values.join(", "))
    }
}

/// Rewrite small data files into files near the target size (per partition) and merge the
/// manifests, as one `replace` snapshot with the same rows. No snapshot when there is nothing
/// to do.
pub async fn compact(
    lakehouse: &Lakehouse,
    table: &Table,
    policy: &MaintenancePolicy,
    write: &WriteOptions,
) -> Result<CompactOutcome> {
    let plan = plan_compaction(table, policy).await?;
    compact_with_plan(lakehouse, table, policy, write, &plan).await
}

pub(super) async fn compact_with_plan(
    lakehouse: &Lakehouse,
    table: &Table,
    policy: &MaintenancePolicy,
    write: &WriteOptions,
    plan: &CompactionPlan,
) -> Result<CompactOutcome> {
    let mut outcome = CompactOutcome {
        files_before: plan.data_files,
        files_after: plan.data_files,
        manifests_before: plan.data_manifests,
        manifests_after: plan.data_manifests,
        skipped: plan.skipped.clone(),
        ..Default::default()
    };
    let (Some(snapshot_id), false) = (plan.snapshot_id, plan.is_empty()) else {
        return Ok(outcome);
    };
    let metadata = table.metadata();
    let options = WriteOptions {
        target_file_size: policy.target_bytes().min(usize::MAX as u64) as usize,
        codec: write.codec,
        merge_mode: None,
    };
    let mut added: Vec<DataFile> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    let result: Result<()> = async {
        for group in &plan.groups {
            let mut writer = DataWriter::for_metadata(table.file_io().clone(), metadata, &options)?;
            let paths: HashSet<String> = group.files.iter().cloned().collect();
            let mut batches = read_files(table, snapshot_id, paths).await?;
            while let Some(batch) = batches.try_next().await? {
                writer.write(&batch).await?;
            }
            let rows = writer.rows();
            let files = writer.close().await?;
            let written: u64 = files.iter().map(|f| f.record_count()).sum();
            added.extend(files);
            // Rows a delete file removed are not read back: a group with deletes reads fewer.
            let expected_ok = if group.with_deletes > 0 { rows <= group.records } else { rows == group.records };
            if !expected_ok || written != rows {
                bail!(
                    "compacting partition {} of {} read {rows} rows and wrote {written}, but its files hold {} (before deletes); nothing was committed",
                    group.partition,
                    table.identifier(),
                    group.records
                );
            }
            removed.extend(group.files.iter().cloned());
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        commit::discard_files(table, &added).await;
        return Err(e);
    }
    let written = added.len();
    let mut properties = summary::stamp(None, None);
    properties.extend(carried_keys(table.metadata_ref(), snapshot_id));
    properties.insert(MAINTENANCE.into(), "compact".into());
    let committed =
        commit::commit_compaction(lakehouse, table.clone(), removed, added, plan.delete_files.clone(), properties).await?;
    outcome.rewritten = committed.files_removed;
    outcome.written = written;
    outcome.deletes_removed = plan.delete_files.len();
    outcome.files_after = plan.data_files - committed.files_removed + written;
    outcome.snapshot_id = Some(committed.snapshot_id);
    let fresh = lakehouse.table(table.identifier()).await?;
    outcome.manifests_after = manifests::current_manifest_files(&fresh)
        .await?
        .iter()
        .filter(|m| m.content == ManifestContentType::Data)
        .count();
    Ok(outcome)
}
