//! Our own Iceberg snapshot commits: one atomic snapshot per change, with `lake.*` properties.
//!
//! iceberg-rust 0.10 commits only fast appends, so this module builds snapshots from the
//! library's public manifest, manifest-list and metadata builders and swaps the catalog's
//! metadata pointer with compare-and-swap:
//!
//! - [`Change::Append`]: one `append` snapshot that keeps every existing manifest.
//! - [`Change::ReplaceAll`]: one `overwrite` snapshot that marks every live file deleted and adds
//!   the new ones, so readers see the old rows or the new, never an empty table.
//! - [`Change::Rewrite`]: remove named files and add others in one snapshot (copy-on-write
//!   merge, range replacement, compaction); only manifests holding a removed file are rewritten.
//!
//! Schema and partition-spec changes ride in the same metadata update as the snapshot.
//! On a lost race the commit reloads the table, re-checks that the files it removes are still
//! there ([`StaleChange`] if not), rebuilds its manifest list on the new base and retries.
//! Files of a commit that failed for certain are deleted; when the catalog update's outcome is
//! unknown ([`UnknownOutcome`]) they are kept.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::FutureExt;
use futures::future::BoxFuture;
use iceberg::spec::{
    DataContentType, DataFile, FormatVersion, MAIN_BRANCH, ManifestContentType, ManifestFile, ManifestListWriter,
    ManifestWriterBuilder, Operation, Schema, Snapshot, SnapshotReference, SnapshotRetention,
    Summary, TableMetadata, TableMetadataBuilder, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent};
use sqlx::Row;

use super::catalog::{Lakehouse, PointerStore};

/// What a snapshot does to the table's files.
#[derive(Debug)]
pub enum Change {
    /// Add files; keep everything that is there.
    Append(Vec<DataFile>),
    /// Replace every live file with these (may be empty: the table becomes empty).
    ReplaceAll(Vec<DataFile>),
    /// Remove these live files (by path) and add those, as one snapshot: copy-on-write merge
    /// and range replacement (`overwrite`), compaction (`replace`), deletes (`delete`).
    /// Fails, without retrying, when another writer already removed a file it names.
    Rewrite {
        removed: Vec<String>,
        added: Vec<DataFile>,
        operation: Operation,
    },
}

/// Declares an error type carrying its message, so callers can tell commit failures apart
/// with `downcast_ref`.
macro_rules! commit_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(pub String);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::error::Error for $name {}
    };
}

commit_error!(
    /// The change no longer applies to the table (a file it replaces is gone): not retryable.
    StaleChange
);
commit_error!(
    /// The same producer (another run of the model, seed or ingest source) committed to the
    /// table since this change's base: the change was computed from a state that is gone and
    /// is never re-applied.
    ProducerConflict
);
commit_error!(
    /// The catalog update failed in a way that leaves its outcome unknown.
    UnknownOutcome
);

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

    fn apply(&self, mut builder: TableMetadataBuilder) -> Result<TableMetadataBuilder> {
        if let Some(schema) = &self.schema {
            builder = builder.add_current_schema(schema.clone())?;
        }
        if let Some(spec) = &self.partition_spec {
            builder = builder.add_default_partition_spec(spec.clone())?;
        }
        Ok(builder)
    }

    /// The table metadata the data files must be written against (current schema and spec).
    pub fn target_metadata(&self, base: &Table) -> Result<TableMetadata> {
        if self.is_empty() {
            return Ok(base.metadata().clone());
        }
        let builder = self.apply(base.metadata().clone().into_builder(None))?;
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
    pub metadata_location: String,
    /// Number of compare-and-swap attempts that lost a race before this one won.
    pub retries: u32,
}

impl CommitOutcome {
    fn new(
        snapshot_id: i64,
        operation: &Operation,
        added: &[DataFile],
        removed: &[DataFile],
        metadata_location: String,
    ) -> Self {
        CommitOutcome {
            snapshot_id,
            operation: operation.as_str().to_string(),
            files_added: added.len(),
            files_removed: removed.len(),
            rows_added: added.iter().map(|f| f.record_count()).sum(),
            rows_removed: removed.iter().map(|f| f.record_count()).sum(),
            metadata_location,
            retries: 0,
        }
    }
}

const MAX_ATTEMPTS: u32 = 5;

/// Summary properties computed from the table each attempt is based on: a writer that keeps
/// its own state in the summary (ingest read positions) merges it with the base's here, and
/// refuses the commit (with an error, e.g. [`ProducerConflict`]) when the base shows that its
/// change no longer applies. With a rebase hook, the same-producer check is the hook's job.
pub type RebaseFn = std::sync::Arc<dyn Fn(&Table) -> Result<HashMap<String, String>> + Send + Sync>;

/// Commit `change` to `ident` as one snapshot carrying `properties` in its summary.
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
) -> Result<CommitOutcome> {
    let ident = base.identifier().clone();
    let file_io = base.file_io().clone();
    let commit_id = uuid::Uuid::now_v7();
    let (operation, added) = match &change {
        Change::Append(files) => (Operation::Append, files.clone()),
        Change::ReplaceAll(files) => (Operation::Overwrite, files.clone()),
        Change::Rewrite { added, operation, .. } => (operation.clone(), added.clone()),
    };
    let target = changes.target_metadata(&base)?;
    let location = base.metadata().location().trim_end_matches('/').to_string();

    // The manifest of added files does not depend on the base snapshot: written once, reused on retry.
    let mut written: Vec<String> = Vec::new();
    let added_manifest = if added.is_empty() {
        None
    } else {
        let path = format!("{location}/metadata/{commit_id}-m0.avro");
        let out = file_io.new_output(&path)?;
        let mut writer = ManifestWriterBuilder::new(
            out,
            None,
            target.current_schema().clone(),
            target.default_partition_spec().as_ref().clone(),
        )
        .build_v2_data();
        for file in &added {
            // -1: the sequence number is inherited from the manifest list at commit.
            writer.add_file(file.clone(), -1)?;
        }
        written.push(path);
        let mut manifest = writer.write_manifest_file().await?;
        manifest.added_snapshot_id = 0; // set per attempt below
        Some(manifest)
    };

    let attempt = |base: Table, n: u32, mut written: Vec<String>| {
        let (change, operation, added, added_manifest) = (&change, operation.clone(), &added, added_manifest.clone());
        let properties = match rebase {
            Some(f) => f(&base).map(|extra| {
                let mut all = properties.clone();
                all.extend(extra);
                all
            }),
            None => Ok(properties.clone()),
        };
        async move {
            let properties = match properties {
                Ok(p) => p,
                Err(e) => return (Err(e), written),
            };
            let result = attempt_commit(
                lakehouse, &base, changes, change, operation, added, added_manifest, &properties,
                commit_id, n, &mut written,
            )
            .await;
            (result, written)
        }
        .boxed()
    };
    let recheck = |old: &Table, new: &Table| -> Result<()> {
        // The same producer committed meanwhile (another run of the same model or seed):
        // our rows were computed from a state that is gone, so never re-apply them.
        if let Some(producer) = properties.get(super::summary::MODEL).filter(|_| rebase.is_none()) {
            if let Some(other) = committed_since(new, old.metadata().current_snapshot_id(), producer) {
                return Err(ProducerConflict(format!(
                    "commit to {ident} conflicted: another run of {producer} committed snapshot {other} meanwhile; nothing was committed, run again"
                ))
                .into());
            }
        }
        if !changes.is_empty()
            && changes.target_metadata(new)?.current_schema_id() != target.current_schema_id()
        {
            bail!(
                "commit to {ident} conflicted with a concurrent schema change; nothing was committed, run again"
            );
        }
        Ok(())
    };
    with_retries(lakehouse, base, &added, written, attempt, recheck).await
}

/// Run commit attempts on `base` until one wins the compare-and-swap. After a lost race the
/// table is reloaded, `recheck(old, new)` may refuse to go on, and the next attempt follows
/// with backoff (at most [`MAX_ATTEMPTS`]). On a certain failure the files written for the
/// commit (`written`, grown by the attempts) and `added` are deleted; on [`UnknownOutcome`]
/// they are kept.
async fn with_retries<'a>(
    lakehouse: &Lakehouse,
    base: Table,
    added: &[DataFile],
    written: Vec<String>,
    mut attempt: impl FnMut(Table, u32, Vec<String>) -> BoxFuture<'a, (Result<Attempt>, Vec<String>)>,
    recheck: impl Fn(&Table, &Table) -> Result<()>,
) -> Result<CommitOutcome> {
    let ident = base.identifier().clone();
    let file_io = base.file_io().clone();
    let mut base = base;
    let mut written = written;
    let mut n = 0u32;
    loop {
        let (result, files) = attempt(base.clone(), n, written).await;
        written = files;
        match result {
            Ok(Attempt::Committed(mut outcome)) => {
                outcome.retries = n;
                return Ok(outcome);
            }
            Ok(Attempt::Conflict) if n + 1 < MAX_ATTEMPTS => {
                n += 1;
                tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(n))).await;
                let reloaded = match lakehouse.table(&ident).await {
                    Ok(t) => t,
                    Err(e) => {
                        cleanup(&file_io, &written, added).await;
                        return Err(e);
                    }
                };
                if let Err(e) = recheck(&base, &reloaded) {
                    cleanup(&file_io, &written, added).await;
                    return Err(e);
                }
                base = reloaded;
            }
            Ok(Attempt::Conflict) => {
                cleanup(&file_io, &written, added).await;
                bail!(
                    "commit to {ident} lost {MAX_ATTEMPTS} races with concurrent writers; nothing was committed"
                );
            }
            // The new metadata may be live: its files must stay.
            Err(e) if e.downcast_ref::<UnknownOutcome>().is_some() => return Err(e),
            Err(e) => {
                // Nothing was committed: the files written for it are garbage.
                cleanup(&file_io, &written, added).await;
                return Err(e.context(format!("commit to {ident} failed; nothing was committed")));
            }
        }
    }
}

/// A snapshot made by `producer` after `since` in the current ancestry of `table`.
fn committed_since(table: &Table, since: Option<i64>, producer: &str) -> Option<i64> {
    super::summary::ancestry(table)
        .into_iter()
        .take_while(|s| Some(s.snapshot_id()) != since)
        .find(|s| {
            s.summary().additional_properties.get(super::summary::MODEL).map(String::as_str)
                == Some(producer)
        })
        .map(|s| s.snapshot_id())
}

enum Attempt {
    Committed(CommitOutcome),
    Conflict,
}

#[allow(clippy::too_many_arguments)]
async fn attempt_commit(
    lakehouse: &Lakehouse,
    base: &Table,
    changes: &MetadataChanges,
    change: &Change,
    operation: Operation,
    added: &[DataFile],
    added_manifest: Option<ManifestFile>,
    properties: &HashMap<String, String>,
    commit_id: uuid::Uuid,
    attempt: u32,
    written: &mut Vec<String>,
) -> Result<Attempt> {
    let file_io = base.file_io();
    let metadata = base.metadata();
    let NextSnapshot { location, snapshot_id, sequence_number } = next_snapshot(base)?;
    let base_location = base
        .metadata_location()
        .ok_or_else(|| anyhow!("table {} has no metadata location", base.identifier()))?
        .to_string();
    let parent_id = metadata.current_snapshot_id();

    // Manifests carried into the new snapshot, and the files this snapshot removes.
    let mut manifests: Vec<ManifestFile> = Vec::new();
    let mut removed: Vec<DataFile> = Vec::new();
    if let Some(current) = metadata.current_snapshot() {
        let list = base.manifest_list_reader(current).load().await?;
        let removes: Option<HashSet<&str>> = match change {
            Change::Append(_) => None,
            Change::ReplaceAll(_) => Some(HashSet::new()), // empty set = every file
            Change::Rewrite { removed, .. } => Some(removed.iter().map(String::as_str).collect()),
        };
        match removes {
            None => manifests.extend(list.consume_entries()),
            Some(targets) => {
                let everything = matches!(change, Change::ReplaceAll(_));
                let mut found: HashSet<String> = HashSet::new();
                for (n, manifest_file) in list.entries().iter().enumerate() {
                    let manifest = manifest_file.load_manifest(file_io).await?;
                    let hit = |path: &str| everything || targets.contains(path);
                    let touched = manifest
                        .entries()
                        .iter()
                        .any(|e| e.is_alive() && hit(e.file_path()));
                    if !touched {
                        manifests.push(manifest_file.clone());
                        continue;
                    }
                    // Rewrite this manifest: removed entries become DELETED, the rest EXISTING.
                    let spec = metadata
                        .partition_spec_by_id(manifest_file.partition_spec_id)
                        .ok_or_else(|| {
                            anyhow!(
                                "table {} has no partition spec {}",
                                base.identifier(),
                                manifest_file.partition_spec_id
                            )
                        })?;
                    let path = format!("{location}/metadata/{commit_id}-a{attempt}-r{n}.avro");
                    let builder = ManifestWriterBuilder::new(
                        file_io.new_output(&path)?,
                        Some(snapshot_id),
                        metadata.current_schema().clone(),
                        spec.as_ref().clone(),
                    );
                    let mut writer = if manifest_file.content == ManifestContentType::Data {
                        builder.build_v2_data()
                    } else {
                        builder.build_v2_deletes()
                    };
                    for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                        let seq = entry.sequence_number().unwrap_or(0);
                        let file_seq = entry.file_sequence_number.or(Some(seq));
                        let file = entry.data_file().clone();
                        if hit(entry.file_path()) {
                            found.insert(entry.file_path().to_string());
                            removed.push(file.clone());
                            writer.add_delete_file(file, seq, file_seq)?;
                        } else {
                            let added_by = entry.snapshot_id().unwrap_or(manifest_file.added_snapshot_id);
                            writer.add_existing_file(file, added_by, seq, file_seq)?;
                        }
                    }
                    written.push(path);
                    // Kept even when every entry is DELETED: it records what this snapshot removed.
                    manifests.push(writer.write_manifest_file().await?);
                }
                if !everything {
                    let missing: Vec<&&str> = targets.iter().filter(|p| !found.contains(**p)).collect();
                    if !missing.is_empty() {
                        return Err(anyhow!(StaleChange(format!(
                            "{} file(s) this commit replaces are no longer in table {} (another writer changed them), e.g. {}",
                            missing.len(),
                            base.identifier(),
                            missing[0]
                        ))));
                    }
                }
            }
        }
    } else if let Change::Rewrite { removed: r, .. } = change {
        if !r.is_empty() {
            return Err(anyhow!(StaleChange(format!(
                "table {} has no snapshot, so it has none of the files this commit replaces",
                base.identifier()
            ))));
        }
    }
    if let Some(mut m) = added_manifest {
        m.added_snapshot_id = snapshot_id;
        m.sequence_number = sequence_number;
        m.min_sequence_number = sequence_number;
        manifests.insert(0, m);
    }

    let list_path = format!("{location}/metadata/snap-{snapshot_id}-{attempt}-{commit_id}.avro");
    let mut list_writer = ManifestListWriter::v2(
        file_io.new_output(&list_path)?.writer().await?,
        snapshot_id,
        parent_id,
        sequence_number,
    );
    written.push(list_path.clone());
    list_writer.add_manifests(manifests.into_iter())?;
    list_writer.close().await?;

    let previous = metadata.current_snapshot().map(|s| s.summary().clone());
    let summary = summarize(operation.clone(), added, &removed, previous.as_ref(), properties);
    let target_schema_id = changes.target_metadata(base)?.current_schema_id();
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent_id)
        .with_sequence_number(sequence_number)
        .with_manifest_list(list_path)
        .with_summary(summary)
        .with_schema_id(target_schema_id)
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .build();

    let builder = changes.apply(metadata.clone().into_builder(Some(base_location.clone())))?;
    let new_metadata = builder
        .add_snapshot(snapshot)?
        .set_ref(
            MAIN_BRANCH,
            SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
        )?
        .build()?
        .metadata;
    let Some(new_location) = publish_metadata(lakehouse, base, &new_metadata, written).await? else {
        return Ok(Attempt::Conflict);
    };
    Ok(Attempt::Committed(CommitOutcome::new(
        snapshot_id,
        &operation,
        added,
        &removed,
        new_location,
    )))
}

/// Compare-and-swap the table's metadata pointer. `Ok(false)` means another writer won.
async fn swap_pointer(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    expected: &str,
    new: &str,
) -> Result<bool> {
    match &lakehouse.pointers {
        PointerStore::Sql {
            pool,
            catalog_name,
            postgres,
        } => {
            let sql = if *postgres {
                "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2 \
                 WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5 \
                 AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = $6"
            } else {
                "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
                 WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
                 AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = ?"
            };
            let result = sqlx::query(sql)
                .bind(new)
                .bind(expected)
                .bind(catalog_name.as_str())
                .bind(ident.namespace().join("."))
                .bind(ident.name())
                .bind(expected)
                .execute(pool)
                .await
                .with_context(|| format!("cannot update the catalog pointer of {ident}"))?;
            Ok(result.rows_affected() == 1)
        }
        PointerStore::Rest => bail!(
            "replacing files in a table of a REST catalog is not supported yet (table {ident}); use a SQL catalog"
        ),
    }
}

/// The metadata location the catalog currently records for `ident` (SQL catalogs only).
pub async fn catalog_pointer(lakehouse: &Lakehouse, ident: &TableIdent) -> Result<Option<String>> {
    match &lakehouse.pointers {
        PointerStore::Sql {
            pool,
            catalog_name,
            postgres,
        } => {
            let sql = if *postgres {
                "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3"
            } else {
                "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?"
            };
            let row = sqlx::query(sql)
                .bind(catalog_name.as_str())
                .bind(ident.namespace().join("."))
                .bind(ident.name())
                .fetch_optional(pool)
                .await?;
            Ok(row.and_then(|r| r.try_get::<String, _>(0).ok()))
        }
        PointerStore::Rest => Ok(None),
    }
}

async fn cleanup(file_io: &iceberg::io::FileIO, written: &[String], added: &[DataFile]) {
    for path in written
        .iter()
        .map(String::as_str)
        .chain(added.iter().map(|f| f.file_path()))
    {
        if let Err(e) = file_io.delete(path).await {
            tracing::warn!(path, error = %e, "could not remove a file of a failed commit");
        }
    }
}

/// Remove data files that were written but will never be committed.
pub async fn discard_files(table: &Table, files: &[DataFile]) {
    cleanup(table.file_io(), &[], files).await;
}

/// Where and as what the next snapshot of a table is written.
struct NextSnapshot {
    /// The table location, without a trailing slash.
    location: String,
    snapshot_id: i64,
    sequence_number: i64,
}

/// Check the table is one `lake` can commit to (format v2) and pick the next snapshot's id.
fn next_snapshot(base: &Table) -> Result<NextSnapshot> {
    let metadata = base.metadata();
    if metadata.format_version() != FormatVersion::V2 {
        bail!(
            "table {} has Iceberg format {:?}; lake commits to format v2 tables",
            base.identifier(),
            metadata.format_version()
        );
    }
    Ok(NextSnapshot {
        location: metadata.location().trim_end_matches('/').to_string(),
        snapshot_id: new_snapshot_id(metadata),
        sequence_number: metadata.next_sequence_number(),
    })
}

fn new_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) & (i64::MAX as u64)) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// The snapshot summary: user properties, this commit's counts, and running totals.
fn summarize(
    operation: Operation,
    added: &[DataFile],
    removed: &[DataFile],
    previous: Option<&Summary>,
    properties: &HashMap<String, String>,
) -> Summary {
    let mut props: HashMap<String, String> = properties.clone();
    let count = |files: &[DataFile], content: DataContentType| -> (u64, u64, u64) {
        files
            .iter()
            .filter(|f| f.content_type() == content)
            .fold((0, 0, 0), |(n, rows, bytes), f| {
                (n + 1, rows + f.record_count(), bytes + f.file_size_in_bytes())
            })
    };
    let (add_files, add_rows, add_bytes) = count(added, DataContentType::Data);
    let (del_files, del_rows, del_bytes) = count(removed, DataContentType::Data);
    let del_delete_files = removed.len() as u64 - del_files;
    let prev = |key: &str| -> u64 {
        previous
            .and_then(|s| s.additional_properties.get(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut set = |key: &str, value: u64, always: bool| {
        if always || value > 0 {
            props.insert(key.to_string(), value.to_string());
        }
    };
    set("added-data-files", add_files, false);
    set("added-records", add_rows, false);
    set("added-files-size", add_bytes, false);
    set("deleted-data-files", del_files, false);
    set("deleted-records", del_rows, false);
    set("removed-files-size", del_bytes, false);
    set("removed-delete-files", del_delete_files, false);
    set(
        "total-data-files",
        (prev("total-data-files") + add_files).saturating_sub(del_files),
        true,
    );
    set(
        "total-records",
        (prev("total-records") + add_rows).saturating_sub(del_rows),
        true,
    );
    set(
        "total-files-size",
        (prev("total-files-size") + add_bytes).saturating_sub(del_bytes),
        true,
    );
    let remaining_deletes = prev("total-delete-files").saturating_sub(del_delete_files);
    set("total-delete-files", remaining_deletes, true);
    let deletes_gone = matches!(operation, Operation::Overwrite) && remaining_deletes == 0;
    let position = if deletes_gone { 0 } else { prev("total-position-deletes") };
    let equality = if deletes_gone { 0 } else { prev("total-equality-deletes") };
    set("total-position-deletes", position, true);
    set("total-equality-deletes", equality, true);
    Summary {
        operation,
        additional_properties: props,
    }
}


// ---------------------------------------------------------------------------------------------
// Maintenance commits: compaction with merged manifests, rollback to an earlier snapshot, and
// metadata-only snapshot removal. Same compare-and-swap, retry and cleanup rules as `commit`.
// ---------------------------------------------------------------------------------------------

/// At most this many entries per merged manifest written by a compaction.
const MERGED_MANIFEST_ENTRIES: usize = 100_000;

/// A snapshot built by maintenance rather than by a model run.
#[derive(Debug)]
enum MaintenanceChange<'a> {
    /// Remove `removed` (paths of live data files) and add `added`, as one `replace` snapshot
    /// whose data manifests are merged: one manifest per partition spec (split past
    /// [`MERGED_MANIFEST_ENTRIES`]) holding every live entry as EXISTING, the removed ones as
    /// DELETED and the added ones as ADDED.
    Compaction {
        removed: &'a [String],
        added: &'a [DataFile],
    },
    /// A new `overwrite` snapshot, child of `to`, whose manifest list holds exactly `to`'s
    /// manifests: the table reads as it did at `to`.
    Rollback { to: i64 },
}

/// Commit a compaction: the live data files at `removed` are replaced by `added` (the same
/// rows) in one `replace` snapshot, and the data manifests are merged (few manifests in the
/// new manifest list). With nothing removed or added this only merges manifests.
///
/// Fails with [`StaleChange`] when another writer removed one of the files meanwhile; the
/// added files are deleted on any certain failure.
pub async fn commit_compaction(
    lakehouse: &Lakehouse,
    base: Table,
    removed: Vec<String>,
    added: Vec<DataFile>,
    properties: HashMap<String, String>,
) -> Result<CommitOutcome> {
    let change = MaintenanceChange::Compaction {
        removed: &removed,
        added: &added,
    };
    maintenance_commit(lakehouse, base, change, &added, &properties).await
}

/// Commit a rollback: a new `overwrite` snapshot, child of `to_snapshot`, whose manifest list
/// holds exactly that snapshot's manifests, so readers see the table as it was then. Its summary
/// totals are `to_snapshot`'s; `properties` go into the summary as given.
pub async fn commit_rollback(
    lakehouse: &Lakehouse,
    base: Table,
    to_snapshot: i64,
    properties: HashMap<String, String>,
) -> Result<CommitOutcome> {
    let change = MaintenanceChange::Rollback { to: to_snapshot };
    maintenance_commit(lakehouse, base, change, &[], &properties).await
}

/// Remove `snapshot_ids` (never the current one) from the table metadata, with their
/// statistics, as one metadata-only commit with the same compare-and-swap as [`commit`].
/// Deletes no data or manifest files.
///
/// `Ok(Some(new metadata location))` when committed, `Ok(None)` when another writer committed
/// first (reload the table and plan again).
pub async fn commit_snapshot_removal(
    lakehouse: &Lakehouse,
    base: &Table,
    snapshot_ids: &[i64],
) -> Result<Option<String>> {
    let metadata = base.metadata();
    if let Some(current) = metadata.current_snapshot_id()
        && snapshot_ids.contains(&current)
    {
        bail!(
            "snapshot {current} is the current snapshot of {} and cannot be expired",
            base.identifier()
        );
    }
    let base_location = base
        .metadata_location()
        .ok_or_else(|| anyhow!("table {} has no metadata location", base.identifier()))?
        .to_string();
    let mut builder = metadata
        .clone()
        .into_builder(Some(base_location))
        .remove_snapshots(snapshot_ids);
    for id in snapshot_ids {
        builder = builder.remove_statistics(*id).remove_partition_statistics(*id);
    }
    let new_metadata = builder.build()?.metadata;
    let mut written = Vec::new();
    match publish_metadata(lakehouse, base, &new_metadata, &mut written).await {
        Ok(Some(location)) => Ok(Some(location)),
        Ok(None) => {
            cleanup(base.file_io(), &written, &[]).await;
            Ok(None)
        }
        Err(e) if e.downcast_ref::<UnknownOutcome>().is_some() => Err(e),
        Err(e) => {
            cleanup(base.file_io(), &written, &[]).await;
            Err(e.context(format!(
                "expiring snapshots of {} failed; nothing was committed",
                base.identifier()
            )))
        }
    }
}

async fn maintenance_commit(
    lakehouse: &Lakehouse,
    base: Table,
    change: MaintenanceChange<'_>,
    added: &[DataFile],
    properties: &HashMap<String, String>,
) -> Result<CommitOutcome> {
    let commit_id = uuid::Uuid::now_v7();
    let attempt = |base: Table, n: u32, mut written: Vec<String>| {
        let change = &change;
        async move {
            let result =
                attempt_maintenance(lakehouse, &base, change, properties, commit_id, n, &mut written).await;
            (result, written)
        }
        .boxed()
    };
    with_retries(lakehouse, base, added, Vec::new(), attempt, |_, _| Ok(())).await
}

/// Live entries of a manifest list, by file path.
async fn live_files(table: &Table, manifests: &[ManifestFile]) -> Result<HashMap<String, DataFile>> {
    let mut out = HashMap::new();
    for manifest_file in manifests {
        let manifest = manifest_file.load_manifest(table.file_io()).await?;
        for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
            out.insert(entry.file_path().to_string(), entry.data_file().clone());
        }
    }
    Ok(out)
}

async fn attempt_maintenance(
    lakehouse: &Lakehouse,
    base: &Table,
    change: &MaintenanceChange<'_>,
    properties: &HashMap<String, String>,
    commit_id: uuid::Uuid,
    attempt: u32,
    written: &mut Vec<String>,
) -> Result<Attempt> {
    let file_io = base.file_io();
    let metadata = base.metadata();
    let NextSnapshot { location, snapshot_id, sequence_number } = next_snapshot(base)?;
    let current = metadata.current_snapshot();
    let current_manifests: Vec<ManifestFile> = match current {
        Some(s) => base.manifest_list_reader(s).load().await?.consume_entries().into_iter().collect(),
        None => Vec::new(),
    };

    let (operation, parent_id, manifests, added, removed, totals_from) = match change {
        MaintenanceChange::Compaction { removed: targets, added } => {
            if current.is_none() {
                if targets.is_empty() && added.is_empty() {
                    bail!("table {} has no snapshot: nothing to compact", base.identifier());
                }
                return Err(anyhow!(StaleChange(format!(
                    "table {} has no snapshot, so it has none of the files this compaction replaces",
                    base.identifier()
                ))));
            }
            let targets: HashSet<&str> = targets.iter().map(String::as_str).collect();
            let mut found: HashSet<String> = HashSet::new();
            let mut removed: Vec<DataFile> = Vec::new();
            let mut kept: Vec<ManifestFile> = Vec::new();
            let default_spec = metadata.default_partition_spec_id();
            // Merged data manifests per partition spec: (writer, entries, path).
            let mut open: std::collections::BTreeMap<i32, (iceberg::spec::ManifestWriter, usize)> =
                std::collections::BTreeMap::new();
            let mut merged: Vec<ManifestFile> = Vec::new();
            let mut n = 0usize;
            let mut writer_for = |spec_id: i32,
                                  open: &mut std::collections::BTreeMap<i32, (iceberg::spec::ManifestWriter, usize)>,
                                  written: &mut Vec<String>|
             -> Result<()> {
                if open.contains_key(&spec_id) {
                    return Ok(());
                }
                let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
                    anyhow!("table {} has no partition spec {spec_id}", base.identifier())
                })?;
                let path = format!("{location}/metadata/{commit_id}-a{attempt}-c{n}.avro");
                n += 1;
                let writer = ManifestWriterBuilder::new(
                    file_io.new_output(&path)?,
                    Some(snapshot_id),
                    metadata.current_schema().clone(),
                    spec.as_ref().clone(),
                )
                .build_v2_data();
                written.push(path);
                open.insert(spec_id, (writer, 0));
                Ok(())
            };
            for manifest_file in &current_manifests {
                if manifest_file.content != ManifestContentType::Data {
                    kept.push(manifest_file.clone());
                    continue;
                }
                let manifest = manifest_file.load_manifest(file_io).await?;
                let spec_id = manifest_file.partition_spec_id;
                for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                    writer_for(spec_id, &mut open, written)?;
                    let (writer, count) = open.get_mut(&spec_id).expect("writer just opened");
                    let seq = entry.sequence_number().unwrap_or(0);
                    let file_seq = entry.file_sequence_number.or(Some(seq));
                    let file = entry.data_file().clone();
                    if targets.contains(entry.file_path()) {
                        found.insert(entry.file_path().to_string());
                        removed.push(file.clone());
                        writer.add_delete_file(file, seq, file_seq)?;
                    } else {
                        let added_by = entry.snapshot_id().unwrap_or(manifest_file.added_snapshot_id);
                        writer.add_existing_file(file, added_by, seq, file_seq)?;
                    }
                    *count += 1;
                    if *count >= MERGED_MANIFEST_ENTRIES {
                        let (writer, _) = open.remove(&spec_id).expect("open writer");
                        merged.push(writer.write_manifest_file().await?);
                    }
                }
            }
            if !added.is_empty() {
                writer_for(default_spec, &mut open, written)?;
                let (writer, _) = open.get_mut(&default_spec).expect("writer just opened");
                for file in added.iter() {
                    writer.add_file(file.clone(), -1)?;
                }
            }
            for (_, (writer, _)) in open {
                merged.push(writer.write_manifest_file().await?);
            }
            let missing: Vec<&&str> = targets.iter().filter(|p| !found.contains(**p)).collect();
            if !missing.is_empty() {
                return Err(anyhow!(StaleChange(format!(
                    "{} file(s) this compaction replaces are no longer in table {} (another writer changed them), e.g. {}",
                    missing.len(),
                    base.identifier(),
                    missing[0]
                ))));
            }
            merged.extend(kept);
            (
                Operation::Replace,
                metadata.current_snapshot_id(),
                merged,
                added.to_vec(),
                removed,
                None,
            )
        }
        MaintenanceChange::Rollback { to } => {
            let target = metadata.snapshot_by_id(*to).ok_or_else(|| {
                anyhow!("snapshot {to} is not a snapshot of table {}", base.identifier())
            })?;
            let target_manifests: Vec<ManifestFile> = base
                .manifest_list_reader(target)
                .load()
                .await?
                .consume_entries()
                .into_iter()
                .collect();
            // What the rollback adds and removes relative to the current snapshot.
            let now_live = live_files(base, &current_manifests).await?;
            let then_live = live_files(base, &target_manifests).await?;
            let added: Vec<DataFile> = then_live
                .iter()
                .filter(|(p, _)| !now_live.contains_key(*p))
                .map(|(_, f)| f.clone())
                .collect();
            let removed: Vec<DataFile> = now_live
                .iter()
                .filter(|(p, _)| !then_live.contains_key(*p))
                .map(|(_, f)| f.clone())
                .collect();
            (
                Operation::Overwrite,
                Some(*to),
                target_manifests,
                added,
                removed,
                Some(target.summary().clone()),
            )
        }
    };

    let list_path = format!("{location}/metadata/snap-{snapshot_id}-{attempt}-{commit_id}.avro");
    let mut list_writer = ManifestListWriter::v2(
        file_io.new_output(&list_path)?.writer().await?,
        snapshot_id,
        parent_id,
        sequence_number,
    );
    written.push(list_path.clone());
    list_writer.add_manifests(manifests.into_iter())?;
    list_writer.close().await?;

    let previous = current.map(|s| s.summary().clone());
    let mut summary = summarize(operation.clone(), &added, &removed, previous.as_ref(), properties);
    if let Some(then) = totals_from {
        // The table reads as it did then: its totals are that snapshot's.
        for (k, v) in &then.additional_properties {
            if k.starts_with("total-") {
                summary.additional_properties.insert(k.clone(), v.clone());
            }
        }
    }
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent_id)
        .with_sequence_number(sequence_number)
        .with_manifest_list(list_path)
        .with_summary(summary)
        .with_schema_id(metadata.current_schema_id())
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .build();
    let base_location = base
        .metadata_location()
        .ok_or_else(|| anyhow!("table {} has no metadata location", base.identifier()))?
        .to_string();
    let new_metadata = metadata
        .clone()
        .into_builder(Some(base_location))
        .add_snapshot(snapshot)?
        .set_ref(
            MAIN_BRANCH,
            SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
        )?
        .build()?
        .metadata;
    let Some(new_location) = publish_metadata(lakehouse, base, &new_metadata, written).await? else {
        return Ok(Attempt::Conflict);
    };
    Ok(Attempt::Committed(CommitOutcome::new(
        snapshot_id,
        &operation,
        &added,
        &removed,
        new_location,
    )))
}

/// Write `new_metadata` as the table's next metadata file and compare-and-swap the catalog
/// pointer from `base`'s. `Ok(Some(location))` when swapped, `Ok(None)` when another writer
/// won; [`UnknownOutcome`] when the update failed and the catalog cannot tell.
async fn publish_metadata(
    lakehouse: &Lakehouse,
    base: &Table,
    new_metadata: &TableMetadata,
    written: &mut Vec<String>,
) -> Result<Option<String>> {
    let base_location = base
        .metadata_location()
        .ok_or_else(|| anyhow!("table {} has no metadata location", base.identifier()))?
        .to_string();
    let new_location = MetadataLocation::from_str(&base_location)?
        .with_next_version()
        .with_new_metadata(new_metadata);
    new_metadata.write_to(base.file_io(), &new_location).await?;
    let new_location = new_location.to_string();
    written.push(new_location.clone());
    let swapped = match swap_pointer(lakehouse, base.identifier(), &base_location, &new_location).await {
        Ok(swapped) => swapped,
        Err(e) => match catalog_pointer(lakehouse, base.identifier()).await {
            Ok(Some(p)) if p == new_location => true,
            Ok(Some(p)) if p == base_location => return Err(e),
            _ => {
                return Err(anyhow!(UnknownOutcome(format!(
                    "the catalog update of {} failed and its outcome is unknown ({e:#}); check `lake show {}` before running again",
                    base.identifier(),
                    base.identifier()
                ))));
            }
        },
    };
    Ok(swapped.then_some(new_location))
}
