//! The commit kinds, as [`Action`]s of the one producer: each says what an attempt adds,
//! removes and checks against its base; none writes a manifest list or metadata itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::spec::{DataFile, ManifestFile, Operation, TableMetadata};
use iceberg::table::Table;
use iceberg::TableUpdate;

use super::producer::{Action, Attempt, Plan, SnapshotPlan, Targets};
use super::{Change, Error, MetadataChanges, RebaseFn};
use crate::lakehouse::manifests;
use crate::lakehouse::summary;

/// A model, seed or ingest commit: append, replace everything, or remove some files and add
/// others, with schema and spec changes riding along.
pub(super) struct FileChange<'a> {
    pub change: Change,
    pub changes: &'a MetadataChanges,
    pub properties: HashMap<String, String>,
    pub rebase: Option<&'a RebaseFn>,
    /// The manifests of the added files, written once before the first attempt.
    pub added_manifests: Vec<ManifestFile>,
    /// The manifests of the added delete files (one per partition spec), likewise.
    pub delete_manifests: Vec<ManifestFile>,
    /// The schema the files were written against (as of the first base).
    pub target: TableMetadata,
}

impl FileChange<'_> {
    fn added_files(&self) -> &[DataFile] {
        self.change.added()
    }

    /// The position delete files this change adds.
    fn delete_files(&self) -> Vec<DataFile> {
        match &self.change {
            Change::RowDelta { deletes, .. } => deletes.iter().map(|(_, f)| f.clone()).collect(),
            _ => Vec::new(),
        }
    }

    fn operation(&self) -> Operation {
        match &self.change {
            Change::Append(_) => Operation::Append,
            Change::ReplaceAll(_) | Change::RowDelta { .. } => Operation::Overwrite,
            Change::Rewrite { operation, .. } => operation.clone(),
        }
    }

    /// The properties on this base: the caller's, plus its rebase hook's.
    fn properties(&self, base: &Table) -> Result<HashMap<String, String>, Error> {
        let mut all = self.properties.clone();
        if let Some(f) = self.rebase {
            all.extend(f(base)?);
        }
        Ok(all)
    }
}

#[async_trait]
impl Action for FileChange<'_> {
    fn added_paths(&self) -> Vec<String> {
        self.added_files().iter().cloned().chain(self.delete_files()).map(|f| f.file_path().to_string()).collect()
    }

    async fn plan(&self, attempt: &mut Attempt<'_>) -> Result<Plan, Error> {
        let base = attempt.base;
        let properties = self.properties(base)?;
        let metadata = base.metadata();
        let mut manifests: Vec<ManifestFile> = Vec::new();
        let mut removed: Vec<DataFile> = Vec::new();
        if let Some(current) = metadata.current_snapshot() {
            let listed = manifests::manifest_files(base, current).await?;
            if let Change::RowDelta { referenced, .. } = &self.change {
                check_live(base, &listed, referenced).await?;
            }
            let targets = match &self.change {
                Change::Append(_) | Change::RowDelta { .. } => None,
                Change::ReplaceAll(_) => Some(Targets::All),
                Change::Rewrite { removed, .. } => Some(Targets::Paths(removed.iter().map(String::as_str).collect())),
            };
            match targets {
                None => manifests = listed,
                Some(targets) => {
                    let rewritten = attempt.rewrite_touched(listed, &targets).await?;
                    rewritten.check_found(&targets, "commit", base)?;
                    (manifests, removed) = (rewritten.manifests, rewritten.removed);
                }
            }
        } else if let Change::Rewrite { removed: r, .. } | Change::RowDelta { referenced: r, .. } = &self.change
            && !r.is_empty()
        {
            return Err(Error::Stale(format!(
                "table {} has no snapshot, so it has none of the files this commit replaces",
                base.identifier()
            )));
        }
        let ours = self.added_manifests.iter().chain(&self.delete_manifests).cloned();
        for (i, mut m) in ours.enumerate() {
            m.added_snapshot_id = attempt.snapshot_id;
            m.sequence_number = attempt.sequence_number;
            m.min_sequence_number = attempt.sequence_number;
            manifests.insert(i, m);
        }
        Ok(Plan::Snapshot(SnapshotPlan {
            operation: self.operation(),
            parent_id: metadata.current_snapshot_id(),
            manifests,
            added: self.added_files().iter().cloned().chain(self.delete_files()).collect(),
            removed,
            properties,
            totals_from: None,
            metadata_updates: self.changes.updates(),
            schema_id: self.changes.target_metadata(base)?.current_schema_id(),
        }))
    }

    fn recheck(&self, old: &Table, new: &Table) -> Result<(), Error> {
        // The same producer committed meanwhile (another run of the same model or seed):
        // our rows were computed from a state that is gone, so never re-apply them.
        if let Some(producer) = self.properties.get(summary::MODEL).filter(|_| self.rebase.is_none())
            && let Some(other) = committed_since(new, old.metadata().current_snapshot_id(), producer)
        {
            return Err(Error::ProducerConflict(format!(
                "commit to {} conflicted: another run of {producer} committed snapshot {other} meanwhile; nothing was committed, run again",
                new.identifier()
            )));
        }
        if !self.changes.is_empty()
            && self.changes.target_metadata(new)?.current_schema_id() != self.target.current_schema_id()
        {
            return Err(Error::SchemaConflict(new.identifier().clone()));
        }
        Ok(())
    }
}

/// Fail with [`Error::Stale`] unless every data file at `paths` is live in `listed`: position
/// deletes pointing into a file another writer removed (or rewrote) would delete nothing.
async fn check_live(base: &Table, listed: &[ManifestFile], paths: &[String]) -> Result<(), Error> {
    let live: HashSet<String> = manifests::live_files(base, listed)
        .await?
        .into_iter()
        .filter(manifests::LiveFile::is_data)
        .map(|l| l.file.file_path().to_string())
        .collect();
    match paths.iter().find(|p| !live.contains(*p)) {
        None => Ok(()),
        Some(missing) => Err(Error::Stale(format!(
            "data file {missing} that this merge deletes rows from is no longer in table {} (another writer changed it)",
            base.identifier()
        ))),
    }
}

/// A snapshot made by `producer` after `since` in the current ancestry of `table`.
fn committed_since(table: &Table, since: Option<i64>, producer: &str) -> Option<i64> {
    summary::ancestry(table)
        .into_iter()
        .take_while(|s| Some(s.snapshot_id()) != since)
        .find(|s| s.summary().additional_properties.get(summary::MODEL).map(String::as_str) == Some(producer))
        .map(|s| s.snapshot_id())
}

/// Compaction: the live data files at `removed` are replaced by `added` (the same rows) in one
/// `replace` snapshot whose data manifests are merged.
pub(super) struct Compaction {
    pub removed: Vec<String>,
    pub added: Vec<DataFile>,
    /// Live delete files whose rows the rewrite dropped: removed from the snapshot.
    pub folded_deletes: Vec<String>,
    pub properties: HashMap<String, String>,
}

#[async_trait]
impl Action for Compaction {
    fn added_paths(&self) -> Vec<String> {
        self.added.iter().map(|f| f.file_path().to_string()).collect()
    }

    async fn plan(&self, attempt: &mut Attempt<'_>) -> Result<Plan, Error> {
        let base = attempt.base;
        let metadata = base.metadata();
        let Some(current) = metadata.current_snapshot() else {
            if self.removed.is_empty() && self.added.is_empty() {
                return Err(Error::Invalid(format!("table {} has no snapshot: nothing to compact", base.identifier())));
            }
            return Err(Error::Stale(format!(
                "table {} has no snapshot, so it has none of the files this compaction replaces",
                base.identifier()
            )));
        };
        let listed = manifests::manifest_files(base, current).await?;
        let folded: HashSet<&str> = self.folded_deletes.iter().map(String::as_str).collect();
        if let Some(new) = manifests::live_files(base, &listed)
            .await?
            .iter()
            .find(|l| !l.is_data() && !folded.contains(l.file.file_path()))
        {
            return Err(Error::Stale(format!(
                "delete file {} was added to {} after this compaction was planned; run it again",
                new.file.file_path(),
                base.identifier()
            )));
        }
        let targets = Targets::Paths(self.removed.iter().map(String::as_str).collect());
        let mut rewritten = attempt.rewrite_merged(listed, &targets, &self.added).await?;
        rewritten.check_found(&targets, "compaction", base)?;
        if !folded.is_empty() {
            let deletes = Targets::Paths(folded);
            let manifests = std::mem::take(&mut rewritten.manifests);
            let dropped = attempt.rewrite_touched(manifests, &deletes).await?;
            dropped.check_found(&deletes, "compaction", base)?;
            rewritten.manifests = dropped.manifests;
            rewritten.removed.extend(dropped.removed);
        }
        Ok(Plan::Snapshot(SnapshotPlan {
            operation: Operation::Replace,
            parent_id: metadata.current_snapshot_id(),
            manifests: rewritten.manifests,
            added: self.added.clone(),
            removed: rewritten.removed,
            properties: self.properties.clone(),
            totals_from: None,
            metadata_updates: Vec::new(),
            schema_id: metadata.current_schema_id(),
        }))
    }
}

/// Rollback: a new `overwrite` snapshot, child of `to`, whose manifest list holds exactly
/// `to`'s manifests, with `to`'s totals.
pub(super) struct Rollback {
    pub to: i64,
    pub properties: HashMap<String, String>,
}

#[async_trait]
impl Action for Rollback {
    async fn plan(&self, attempt: &mut Attempt<'_>) -> Result<Plan, Error> {
        let base = attempt.base;
        let metadata = base.metadata();
        let to = self.to;
        let target = metadata
            .snapshot_by_id(to)
            .ok_or_else(|| Error::Invalid(format!("snapshot {to} is not a snapshot of table {}", base.identifier())))?;
        let target_manifests = manifests::manifest_files(base, target).await?;
        let current_manifests = manifests::current_manifest_files(base).await?;
        // What the rollback adds and removes relative to the current snapshot.
        let by_path = |files: Vec<manifests::LiveFile>| -> HashMap<String, DataFile> {
            files.into_iter().map(|l| (l.file.file_path().to_string(), l.file)).collect()
        };
        let now_live = by_path(manifests::live_files(base, &current_manifests).await?);
        let then_live = by_path(manifests::live_files(base, &target_manifests).await?);
        let only_in = |a: &HashMap<String, DataFile>, b: &HashMap<String, DataFile>| -> Vec<DataFile> {
            a.iter().filter(|(p, _)| !b.contains_key(*p)).map(|(_, f)| f.clone()).collect()
        };
        Ok(Plan::Snapshot(SnapshotPlan {
            operation: Operation::Overwrite,
            parent_id: Some(to),
            manifests: target_manifests,
            added: only_in(&then_live, &now_live),
            removed: only_in(&now_live, &then_live),
            properties: self.properties.clone(),
            totals_from: Some(target.summary().clone()),
            metadata_updates: Vec::new(),
            schema_id: metadata.current_schema_id(),
        }))
    }
}

/// Which snapshots to remove from a base (recomputed on every attempt's base).
pub type ExpiryPlanner = Arc<dyn Fn(&Table) -> Vec<i64> + Send + Sync>;

/// Snapshot removal: a metadata-only commit dropping snapshots and their statistics.
pub(super) struct Expiry {
    pub planner: ExpiryPlanner,
}

#[async_trait]
impl Action for Expiry {
    fn what(&self, base: &Table) -> String {
        format!("expiring snapshots of {}", base.identifier())
    }

    async fn plan(&self, attempt: &mut Attempt<'_>) -> Result<Plan, Error> {
        let base = attempt.base;
        let ids = (self.planner)(base);
        if ids.is_empty() {
            return Ok(Plan::Nothing);
        }
        if let Some(current) = base.metadata().current_snapshot_id()
            && ids.contains(&current)
        {
            return Err(Error::Invalid(format!(
                "snapshot {current} is the current snapshot of {} and cannot be expired",
                base.identifier()
            )));
        }
        let mut updates = vec![TableUpdate::RemoveSnapshots { snapshot_ids: ids.clone() }];
        for id in ids {
            updates.push(TableUpdate::RemoveStatistics { snapshot_id: id });
            updates.push(TableUpdate::RemovePartitionStatistics { snapshot_id: id });
        }
        Ok(Plan::Metadata(updates))
    }
}
