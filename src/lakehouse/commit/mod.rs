//! Our own Iceberg snapshot commits: one atomic snapshot per change, with `lake.*` properties.
//!
//! iceberg-rust 0.10 commits only fast appends, so `lake` builds snapshots itself from the
//! library's public manifest, manifest-list and metadata pieces. There is ONE snapshot producer
//! (`producer`): every commit kind is a small action (`actions`) that says what an attempt
//! on a base adds, removes and checks, and the producer writes the manifest list, builds the
//! snapshot and its summary and turns the result into base + requirements + `TableUpdate`s for
//! the catalog's [`PointerStore`](super::pointer::PointerStore) (SQL: compare-and-swap of the
//! metadata pointer; REST plugs in there). The kinds:
//!
//! - [`commit`] with [`Change::Append`]: one `append` snapshot that keeps every existing manifest.
//! - [`Change::ReplaceAll`]: one `overwrite` snapshot that marks every live file deleted and adds
//!   the new ones, so readers see the old rows or the new, never an empty table.
//! - [`Change::Rewrite`]: remove named files and add others in one snapshot (copy-on-write
//!   merge, range replacement); only manifests holding a removed file are rewritten.
//! - [`Change::RowDelta`]: add data files and position delete files in one snapshot
//!   (merge-on-read merge); no manifest is rewritten.
//! - [`commit_compaction`]: a `replace` snapshot with merged data manifests; the delete files it
//!   folded into rewritten data files leave the snapshot.
//! - [`commit_rollback`]: a snapshot that reads as an earlier one did.
//! - [`commit_snapshot_removal`]: metadata-only expiry of snapshots.
//!
//! Every manifest `lake` writes lists at most [`MANIFEST_ENTRIES`] files.
//!
//! Schema and partition-spec changes ride in the same metadata update as the snapshot.
//! On a lost race the producer reloads the table, lets the action re-check that its change
//! still applies ([`Error::Stale`], [`Error::ProducerConflict`] if not), rebuilds on the new
//! base and retries under [`RETRY`]. Files of a commit that failed for certain are deleted; when
//! the catalog update's outcome is unknown ([`Error::UnknownOutcome`]) they are kept.

mod actions;
mod error;
mod producer;
mod totals;

use std::collections::HashMap;

use iceberg::TableUpdate;
use iceberg::spec::{
    DataContentType, DataFile, ManifestFile, ManifestWriterBuilder, Operation, Schema, TableMetadata, TableMetadataBuilder, UnboundPartitionSpec,
};
use iceberg::table::Table;

pub use actions::ExpiryPlanner;
pub use error::{BoxError, Error};
pub use producer::{MANIFEST_ENTRIES, RETRY, RetryPolicy};

use super::catalog::Lakehouse;

/// What a snapshot does to the table's files.
#[derive(Debug)]
pub enum Change {
    /// Add files; keep everything that is there.
    Append(Vec<DataFile>),
    /// Replace every live file with these (may be empty: the table becomes empty).
    ReplaceAll(Vec<DataFile>),
    /// Remove these live files (by path) and add those, as one snapshot: copy-on-write merge
    /// and range replacement (`overwrite`), deletes (`delete`).
    /// Fails with [`Error::Stale`], without retrying, when another writer already removed a
    /// file it names.
    Rewrite {
        removed: Vec<String>,
        added: Vec<DataFile>,
        operation: Operation,
    },
    /// Add data files and position delete files (merge-on-read merge), keeping every existing
    /// file, as one `overwrite` snapshot. Fails with [`Error::Stale`], without retrying, when a
    /// data file in `referenced` (those the deletes point into) is no longer live.
    RowDelta {
        added: Vec<DataFile>,
        /// `(partition spec id, delete file)`: the spec of the data files it points into.
        deletes: Vec<(i32, DataFile)>,
        referenced: Vec<String>,
    },
}

/// Schema or partition-spec changes committed together with the snapshot.
#[derive(Debug, Clone, Default)]
pub struct MetadataChanges {
    pub schema: Option<Schema>,
    pub partition_spec: Option<UnboundPartitionSpec>,
}

impl MetadataChanges {
    pub fn is_empty(&self) -> bool {
        self.schema.is_none() && self.partition_spec.is_none()
    }

    /// The changes as table updates (`AddSchema` + `SetCurrentSchema`, `AddSpec` + `SetDefaultSpec`).
    pub fn updates(&self) -> Vec<TableUpdate> {
        let mut out = Vec::new();
        if let Some(schema) = &self.schema {
            out.push(TableUpdate::AddSchema { schema: schema.clone() });
            out.push(TableUpdate::SetCurrentSchema {
                schema_id: TableMetadataBuilder::LAST_ADDED,
            });
        }
        if let Some(spec) = &self.partition_spec {
            out.push(TableUpdate::AddSpec { spec: spec.clone() });
            out.push(TableUpdate::SetDefaultSpec {
                spec_id: TableMetadataBuilder::LAST_ADDED,
            });
        }
        out
    }

    /// The table metadata the data files must be written against (current schema and spec).
    pub fn target_metadata(&self, base: &Table) -> Result<TableMetadata, Error> {
        if self.is_empty() {
            return Ok(base.metadata().clone());
        }
        let mut builder = base.metadata().clone().into_builder(None);
        for update in self.updates() {
            builder = update.apply(builder)?;
        }
        Ok(builder.build()?.metadata)
    }
}

/// What a successful commit did.
#[derive(Debug, Clone)]
pub struct CommitOutcome {
    pub snapshot_id: i64,
    pub operation: String,
    pub files_added: usize,
    pub files_removed: usize,
    pub rows_added: u64,
    pub rows_removed: u64,
    /// Position delete files added (merge-on-read), and the rows they delete.
    pub delete_files_added: usize,
    pub position_deletes_added: u64,
    /// Bytes of the data and delete files added.
    pub bytes_added: u64,
    pub metadata_location: String,
    /// Number of compare-and-swap attempts that lost a race before this one won.
    pub retries: u32,
}

impl CommitOutcome {
    fn new(snapshot_id: i64, operation: &Operation, added: &[DataFile], removed: &[DataFile]) -> Self {
        let data = |files: &[DataFile]| -> Vec<DataFile> {
            files.iter().filter(|f| f.content_type() == DataContentType::Data).cloned().collect()
        };
        let (data_added, data_removed) = (data(added), data(removed));
        let deletes: Vec<&DataFile> = added.iter().filter(|f| f.content_type() != DataContentType::Data).collect();
        CommitOutcome {
            snapshot_id,
            operation: operation.as_str().to_string(),
            files_added: data_added.len(),
            files_removed: data_removed.len(),
            rows_added: data_added.iter().map(|f| f.record_count()).sum(),
            rows_removed: data_removed.iter().map(|f| f.record_count()).sum(),
            delete_files_added: deletes.len(),
            position_deletes_added: deletes.iter().map(|f| f.record_count()).sum(),
            bytes_added: added.iter().map(|f| f.file_size_in_bytes()).sum(),
            metadata_location: String::new(),
            retries: 0,
        }
    }
}

/// Summary properties computed from the table each attempt is based on: a writer that keeps
/// its own state in the summary (ingest read positions) merges it with the base's here, and
/// refuses the commit (with an error, e.g. [`Error::ProducerConflict`]) when the base shows
/// that its change no longer applies. With a rebase hook, the same-producer check is the hook's job.
pub type RebaseFn = std::sync::Arc<dyn Fn(&Table) -> Result<HashMap<String, String>, Error> + Send + Sync>;

/// Commit `change` to `base`'s table as one snapshot carrying `properties` in its summary.
///
/// `base` is the table as loaded before the data files were written; `changes` are the schema
/// and spec changes those files were written against.
pub async fn commit(
    lakehouse: &Lakehouse,
    base: Table,
    changes: &MetadataChanges,
    change: Change,
    properties: HashMap<String, String>,
    rebase: Option<&RebaseFn>,
) -> Result<CommitOutcome, Error> {
    let commit_id = uuid::Uuid::now_v7();
    let target = changes.target_metadata(&base)?;
    let added = change.added();
    // The manifests of added files do not depend on the base snapshot: written once, reused on
    // retry, each of at most [`producer::MANIFEST_ENTRIES`] files.
    let mut written: Vec<String> = Vec::new();
    let mut added_manifests = Vec::new();
    let location = base.metadata().location().trim_end_matches('/');
    for (i, chunk) in added.chunks(producer::MANIFEST_ENTRIES).enumerate() {
        let path = format!("{location}/metadata/{commit_id}-m{i}.avro");
        let result = async {
            let mut writer = ManifestWriterBuilder::new(
                base.file_io().new_output(&path)?,
                None,
                target.current_schema().clone(),
                target.default_partition_spec().as_ref().clone(),
            )
            .build_v2_data();
            for file in chunk {
                // -1: the sequence number is inherited from the manifest list at commit.
                writer.add_file(file.clone(), -1)?;
            }
            writer.write_manifest_file().await
        }
        .await;
        written.push(path);
        match result {
            Ok(manifest) => added_manifests.push(manifest),
            Err(e) => {
                let mut paths = written;
                paths.extend(added.iter().map(|f| f.file_path().to_string()));
                producer::delete_files(base.file_io(), &paths).await;
                return Err(e.into());
            }
        }
    }
    let delete_manifests = match &change {
        Change::RowDelta { deletes, .. } if !deletes.is_empty() => {
            match delete_manifests(&base, commit_id, deletes, &mut written).await {
                Ok(m) => m,
                Err(e) => {
                    let mut paths = written;
                    paths.extend(added.iter().chain(deletes.iter().map(|(_, f)| f)).map(|f| f.file_path().to_string()));
                    producer::delete_files(base.file_io(), &paths).await;
                    return Err(e);
                }
            }
        }
        _ => Vec::new(),
    };
    let action = actions::FileChange {
        delete_manifests,
        change,
        changes,
        properties,
        rebase,
        added_manifests,
        target,
    };
    let produced = producer::produce(lakehouse, base, &action, commit_id, written).await?;
    Ok(produced.outcome.expect("a file change commits a snapshot"))
}

impl Change {
    /// The data files this change adds.
    fn added(&self) -> &[DataFile] {
        match self {
            Change::Append(files) | Change::ReplaceAll(files) => files,
            Change::Rewrite { added, .. } | Change::RowDelta { added, .. } => added,
        }
    }
}

/// One delete manifest per partition spec for `deletes` (written once, reused on retry).
async fn delete_manifests(
    base: &Table,
    commit_id: uuid::Uuid,
    deletes: &[(i32, DataFile)],
    written: &mut Vec<String>,
) -> Result<Vec<ManifestFile>, Error> {
    let metadata = base.metadata();
    let mut by_spec: std::collections::BTreeMap<i32, Vec<&DataFile>> = Default::default();
    for (spec_id, file) in deletes {
        by_spec.entry(*spec_id).or_default().push(file);
    }
    let location = metadata.location().trim_end_matches('/');
    let mut out = Vec::new();
    for (spec_id, files) in by_spec {
        let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
            Error::Invalid(format!("table {} has no partition spec {spec_id}", base.identifier()))
        })?;
        let path = format!("{location}/metadata/{commit_id}-d{spec_id}.avro");
        written.push(path.clone());
        let mut writer = ManifestWriterBuilder::new(
            base.file_io().new_output(&path)?,
            None,
            metadata.current_schema().clone(),
            spec.as_ref().clone(),
        )
        .build_v2_deletes();
        for file in files {
            writer.add_file(file.clone(), -1)?;
        }
        out.push(writer.write_manifest_file().await?);
    }
    Ok(out)
}

/// Commit a compaction: the live data files at `removed` are replaced by `added` (the same
/// rows) in one `replace` snapshot, and the data manifests are merged (few manifests in the
/// new manifest list). With nothing removed or added this only merges manifests.
/// `folded_deletes` are the live delete files whose rows the rewrite already dropped (every
/// data file they apply to is in `removed`): they leave the snapshot.
///
/// Fails with [`Error::Stale`] when another writer removed one of the files meanwhile, or added
/// a delete file (it could point into a file being rewritten); the
/// added files are deleted on any certain failure.
pub async fn commit_compaction(
    lakehouse: &Lakehouse,
    base: Table,
    removed: Vec<String>,
    added: Vec<DataFile>,
    folded_deletes: Vec<String>,
    properties: HashMap<String, String>,
) -> Result<CommitOutcome, Error> {
    let action = actions::Compaction {
        removed,
        added,
        folded_deletes,
        properties,
    };
    let produced = producer::produce(lakehouse, base, &action, uuid::Uuid::now_v7(), Vec::new()).await?;
    Ok(produced.outcome.expect("a compaction commits a snapshot"))
}

/// Commit a rollback: a new `overwrite` snapshot, child of `to_snapshot`, whose manifest list
/// holds exactly that snapshot's manifests, so readers see the table as it was then. Its summary
/// totals are `to_snapshot`'s; `properties` go into the summary as given.
pub async fn commit_rollback(
    lakehouse: &Lakehouse,
    base: Table,
    to_snapshot: i64,
    properties: HashMap<String, String>,
) -> Result<CommitOutcome, Error> {
    let action = actions::Rollback {
        to: to_snapshot,
        properties,
    };
    let produced = producer::produce(lakehouse, base, &action, uuid::Uuid::now_v7(), Vec::new()).await?;
    Ok(produced.outcome.expect("a rollback commits a snapshot"))
}

/// What [`commit_snapshot_removal`] did.
#[derive(Debug, Clone)]
pub struct SnapshotRemoval {
    /// The table the removal was planned on (and, when committed, applied to).
    pub base: Table,
    /// The snapshots removed (none: nothing to remove on `base`).
    pub removed: Vec<i64>,
    /// The new metadata file, when committed.
    pub metadata_location: Option<String>,
}

/// Remove the snapshots `planner` picks on the base (never the current one) from the table
/// metadata, with their statistics, as one metadata-only commit. After a lost race the planner
/// runs again on the reloaded table. Deletes no data or manifest files.
pub async fn commit_snapshot_removal(
    lakehouse: &Lakehouse,
    base: Table,
    planner: ExpiryPlanner,
) -> Result<SnapshotRemoval, Error> {
    let action = actions::Expiry {
        planner: planner.clone(),
    };
    let produced = producer::produce(lakehouse, base, &action, uuid::Uuid::now_v7(), Vec::new()).await?;
    let removed = match produced.metadata_location {
        Some(_) => planner(&produced.base),
        None => Vec::new(),
    };
    Ok(SnapshotRemoval {
        base: produced.base,
        removed,
        metadata_location: produced.metadata_location,
    })
}

/// Remove data files that were written but will never be committed.
pub async fn discard_files(table: &Table, files: &[DataFile]) {
    let paths: Vec<String> = files.iter().map(|f| f.file_path().to_string()).collect();
    producer::delete_files(table.file_io(), &paths).await;
}
