//! The one snapshot producer: every commit kind is an [`Action`] that says what one attempt on
//! a base commits ([`Plan`]); the producer writes the manifest list, builds the snapshot and its
//! summary, turns it into `TableUpdate`s and hands them to the catalog's
//! [`PointerStore`](crate::lakehouse::pointer::PointerStore), retrying lost races under
//! [`RETRY`] and removing the commit's files on a certain failure.

use std::collections::btree_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use iceberg::spec::{
    DataFile, FormatVersion, MAIN_BRANCH, ManifestContentType, ManifestEntry, ManifestFile,
    ManifestListWriter, ManifestWriter, ManifestWriterBuilder, Operation, Snapshot,
    SnapshotReference, SnapshotRetention, Summary, TableMetadata,
};
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};

use super::{CommitOutcome, Error, totals};
use crate::lakehouse::catalog::Lakehouse;
use crate::lakehouse::manifests;
use crate::lakehouse::pointer::CommitResult;

/// How often and how patiently a commit retries after losing the compare-and-swap.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (the first included).
    pub attempts: u32,
    /// Wait before retry `n` (1-based): `base_delay * 2^n`.
    pub base_delay: Duration,
}

impl RetryPolicy {
    fn delay(&self, retry: u32) -> Duration {
        self.base_delay * 2u32.pow(retry)
    }
}

/// The retry policy of every commit `lake` makes.
pub const RETRY: RetryPolicy = RetryPolicy {
    attempts: 5,
    base_delay: Duration::from_millis(50),
};

/// What one attempt of an action commits on its base.
pub(super) enum Plan {
    /// Nothing to commit on this base.
    Nothing,
    /// A new snapshot on `main`.
    Snapshot(SnapshotPlan),
    /// Metadata updates only (snapshot removal).
    Metadata(Vec<TableUpdate>),
}

/// The contents of a new snapshot.
pub(super) struct SnapshotPlan {
    pub operation: Operation,
    pub parent_id: Option<i64>,
    pub manifests: Vec<ManifestFile>,
    pub added: Vec<DataFile>,
    pub removed: Vec<DataFile>,
    pub properties: HashMap<String, String>,
    /// Take the `total-*` summary keys from this summary (a rollback reads as it did then).
    pub totals_from: Option<Summary>,
    /// Schema and spec updates committed with the snapshot, and the schema id it is written in.
    pub metadata_updates: Vec<TableUpdate>,
    pub schema_id: i32,
}

/// One kind of commit: what it adds, removes and checks; the producer does the rest.
#[async_trait::async_trait]
pub(super) trait Action: Send + Sync {
    /// What certain failures are reported as ("commit to t", "expiring snapshots of t").
    fn what(&self, base: &Table) -> String {
        format!("commit to {}", base.identifier())
    }
    /// Paths of the data and delete files written before the first attempt: deleted on a
    /// certain failure.
    fn added_paths(&self) -> Vec<String> {
        Vec::new()
    }
    /// Build this attempt's change on `attempt.base`.
    async fn plan(&self, attempt: &mut Attempt<'_>) -> Result<Plan, Error>;
    /// After a lost race: refuse to go on with the reloaded table `new` (the last attempt was
    /// built on `old`) when the change no longer applies.
    fn recheck(&self, _old: &Table, _new: &Table) -> Result<(), Error> {
        Ok(())
    }
}

/// One attempt: its base, the next snapshot's id and sequence number, and the files written.
pub(super) struct Attempt<'a> {
    pub base: &'a Table,
    pub n: u32,
    pub commit_id: uuid::Uuid,
    /// The table location, without a trailing slash.
    pub location: String,
    pub snapshot_id: i64,
    pub sequence_number: i64,
    pub written: &'a mut Vec<String>,
}

/// What a successful production committed.
pub(super) struct Produced {
    /// The snapshot, for a snapshot commit.
    pub outcome: Option<CommitOutcome>,
    pub metadata_location: Option<String>,
    /// The base the winning attempt was built on.
    pub base: Table,
}

/// How one attempt ended.
enum Attempted {
    /// Committed, or nothing to commit.
    Done(Produced),
    /// Another writer won the race: nothing changed.
    Lost,
    /// The catalog update may or may not have landed (see [`Pending`]).
    Unknown(Pending, Error),
}

/// An attempt whose outcome is unknown, and how to recognize it on a reloaded table.
struct Pending {
    /// What the attempt would have produced, built on its base.
    produced: Produced,
    /// The snapshot it added, or the snapshots it removed (metadata-only commits).
    marker: Marker,
}

enum Marker {
    Snapshot(i64),
    Removed(Vec<i64>),
}

impl Pending {
    /// Did the attempt land on `table`? A snapshot commit did when its snapshot (a random id
    /// no one else uses) is in the table; a removal did when none of its snapshots is left.
    fn landed(&self, table: &Table) -> bool {
        let metadata = table.metadata();
        match &self.marker {
            Marker::Snapshot(id) => metadata.snapshot_by_id(*id).is_some(),
            Marker::Removed(ids) => !ids.is_empty() && ids.iter().all(|id| metadata.snapshot_by_id(*id).is_none()),
        }
    }
}

/// Run `action` on `base` until an attempt wins (see the module docs). `written` holds files
/// already written for the commit (deleted on a certain failure, like the attempts' own).
///
/// An attempt whose catalog update has an unknown outcome (a 5xx, a timeout, a dropped
/// connection, an unreadable pointer) is resolved on the reloaded table before anything else:
/// found there, it is the commit; not found, its `main` requirement keeps it from ever landing
/// once the table moves on, so the next attempt is safe, and every later reload is checked for
/// it again. The change is never applied twice.
pub(super) async fn produce(
    lakehouse: &Lakehouse,
    base: Table,
    action: &dyn Action,
    commit_id: uuid::Uuid,
    mut written: Vec<String>,
) -> Result<Produced, Error> {
    let ident = base.identifier().clone();
    let file_io = base.file_io().clone();
    let what = action.what(&base);
    let cleanup = |written: Vec<String>| {
        let file_io = file_io.clone();
        let paths: Vec<String> = written
            .into_iter()
            .chain(action.added_paths())
            .collect();
        async move { delete_files(&file_io, &paths).await }
    };
    let mut base = base;
    let mut pending: Vec<Pending> = Vec::new();
    let mut unknown: Option<Error> = None;
    let mut n = 0u32;
    loop {
        match attempt(lakehouse, &base, action, commit_id, n, &mut written).await {
            Ok(Attempted::Done(mut produced)) => {
                if let Some(o) = produced.outcome.as_mut() {
                    o.retries = n;
                }
                return Ok(produced);
            }
            Ok(Attempted::Unknown(p, e)) => {
                tracing::warn!(table = %ident, error = %e, "commit outcome unknown; reloading to look for it");
                pending.push(p);
                unknown = Some(e);
            }
            Ok(Attempted::Lost) => {}
            // Nothing was committed by this attempt.
            Err(e) => {
                if let Some(u) = unknown {
                    return Err(with_cause(u, e));
                }
                cleanup(written).await;
                return Err(Error::Failed {
                    what,
                    source: Box::new(e),
                });
            }
        }
        if n + 1 >= RETRY.attempts {
            // An earlier attempt may still be live: its files must stay.
            if let Some(u) = unknown {
                return Err(u);
            }
            cleanup(written).await;
            return Err(Error::TooManyConflicts {
                what,
                attempts: RETRY.attempts,
            });
        }
        n += 1;
        tokio::time::sleep(RETRY.delay(n)).await;
        let reloaded = match lakehouse.table(&ident).await {
            Ok(t) => t,
            Err(e) => {
                if let Some(u) = unknown {
                    return Err(u);
                }
                cleanup(written).await;
                return Err(Error::catalog(format!("cannot reload table {ident}"), e));
            }
        };
        if let Some(found) = pending.iter().position(|p| p.landed(&reloaded)) {
            let mut produced = pending.swap_remove(found).produced;
            let location = reloaded.metadata_location().unwrap_or_default().to_string();
            if let Some(o) = produced.outcome.as_mut() {
                o.retries = n - 1;
                o.metadata_location = location.clone();
            }
            produced.metadata_location = Some(location);
            tracing::info!(table = %ident, "the commit whose outcome was unknown had landed");
            return Ok(produced);
        }
        if let Err(e) = action.recheck(&base, &reloaded) {
            if let Some(u) = unknown {
                return Err(with_cause(u, e));
            }
            cleanup(written).await;
            return Err(e);
        }
        base = reloaded;
    }
}

/// An unknown outcome that a later attempt could not settle: still unknown (files kept).
fn with_cause(unknown: Error, later: Error) -> Error {
    Error::UnknownOutcome(format!("{unknown}; retrying it failed: {later}"))
}

/// One attempt on `base`.
async fn attempt(
    lakehouse: &Lakehouse,
    base: &Table,
    action: &dyn Action,
    commit_id: uuid::Uuid,
    n: u32,
    written: &mut Vec<String>,
) -> Result<Attempted, Error> {
    let metadata = base.metadata();
    let mut attempt = Attempt {
        base,
        n,
        commit_id,
        location: metadata.location().trim_end_matches('/').to_string(),
        snapshot_id: new_snapshot_id(metadata),
        sequence_number: metadata.next_sequence_number(),
        written,
    };
    let mut requirements = vec![TableRequirement::RefSnapshotIdMatch {
        r#ref: MAIN_BRANCH.to_string(),
        snapshot_id: metadata.snapshot_for_ref(MAIN_BRANCH).map(|s| s.snapshot_id()),
    }];
    let (updates, outcome) = match action.plan(&mut attempt).await? {
        Plan::Nothing => {
            return Ok(Attempted::Done(Produced {
                outcome: None,
                metadata_location: None,
                base: base.clone(),
            }));
        }
        Plan::Metadata(updates) => (updates, None),
        Plan::Snapshot(plan) => {
            if metadata.format_version() != FormatVersion::V2 {
                return Err(Error::Invalid(format!(
                    "table {} has Iceberg format {:?}; lake commits to format v2 tables",
                    base.identifier(),
                    metadata.format_version()
                )));
            }
            requirements.extend(schema_requirements(metadata, &plan.metadata_updates));
            let (updates, outcome) = attempt.snapshot_updates(plan).await?;
            (updates, Some(outcome))
        }
    };
    let marker = match &outcome {
        Some(o) => Marker::Snapshot(o.snapshot_id),
        None => Marker::Removed(
            updates
                .iter()
                .flat_map(|u| match u {
                    TableUpdate::RemoveSnapshots { snapshot_ids } => snapshot_ids.clone(),
                    _ => Vec::new(),
                })
                .collect(),
        ),
    };
    let produced = |metadata_location: String| Produced {
        outcome: outcome.clone().map(|o| CommitOutcome {
            metadata_location: metadata_location.clone(),
            ..o
        }),
        metadata_location: Some(metadata_location),
        base: base.clone(),
    };
    match lakehouse.pointers.commit(base, &requirements, updates).await {
        Ok(CommitResult::Conflict) => Ok(Attempted::Lost),
        Ok(CommitResult::Committed { metadata_location }) => Ok(Attempted::Done(produced(metadata_location))),
        Err(e) if e.is_unknown_outcome() => Ok(Attempted::Unknown(
            Pending {
                produced: produced(String::new()),
                marker,
            },
            e,
        )),
        Err(e) => Err(e),
    }
}

/// Requirements that keep a schema or spec change from landing on a changed schema or spec.
fn schema_requirements(metadata: &TableMetadata, updates: &[TableUpdate]) -> Vec<TableRequirement> {
    let mut out = Vec::new();
    if updates.iter().any(|u| matches!(u, TableUpdate::AddSchema { .. })) {
        out.push(TableRequirement::CurrentSchemaIdMatch {
            current_schema_id: metadata.current_schema_id(),
        });
    }
    if updates.iter().any(|u| matches!(u, TableUpdate::AddSpec { .. })) {
        out.push(TableRequirement::DefaultSpecIdMatch {
            default_spec_id: metadata.default_partition_spec_id(),
        });
    }
    out
}

impl Attempt<'_> {
    /// Write the manifest list and describe the snapshot as table updates.
    async fn snapshot_updates(&mut self, plan: SnapshotPlan) -> Result<(Vec<TableUpdate>, CommitOutcome), Error> {
        let file_io = self.base.file_io();
        let (snapshot_id, commit_id, n) = (self.snapshot_id, self.commit_id, self.n);
        let list_path = format!("{}/metadata/snap-{snapshot_id}-{n}-{commit_id}.avro", self.location);
        let mut list_writer = ManifestListWriter::v2(
            file_io.new_output(&list_path)?.writer().await?,
            snapshot_id,
            plan.parent_id,
            self.sequence_number,
        );
        self.written.push(list_path.clone());
        list_writer.add_manifests(plan.manifests.into_iter())?;
        list_writer.close().await?;

        let previous = self.base.metadata().current_snapshot().map(|s| s.summary().clone());
        let mut summary = totals::summarize(
            plan.operation.clone(),
            &plan.added,
            &plan.removed,
            previous.as_ref(),
            &plan.properties,
        );
        if let Some(then) = &plan.totals_from {
            for (k, v) in &then.additional_properties {
                if k.starts_with("total-") {
                    summary.additional_properties.insert(k.clone(), v.clone());
                }
            }
        }
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(plan.parent_id)
            .with_sequence_number(self.sequence_number)
            .with_manifest_list(list_path)
            .with_summary(summary)
            .with_schema_id(plan.schema_id)
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
            .build();
        let mut updates = plan.metadata_updates;
        updates.push(TableUpdate::AddSnapshot { snapshot });
        updates.push(TableUpdate::SetSnapshotRef {
            ref_name: MAIN_BRANCH.to_string(),
            reference: SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
        });
        let outcome = CommitOutcome::new(snapshot_id, &plan.operation, &plan.added, &plan.removed);
        Ok((updates, outcome))
    }

    /// A new manifest writer for this attempt (`tag` names it among the attempt's manifests).
    pub fn manifest_writer(
        &mut self,
        tag: &str,
        spec_id: i32,
        content: ManifestContentType,
    ) -> Result<ManifestWriter, Error> {
        let metadata = self.base.metadata();
        let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
            Error::Invalid(format!("table {} has no partition spec {spec_id}", self.base.identifier()))
        })?;
        let path = format!("{}/metadata/{}-a{}-{tag}.avro", self.location, self.commit_id, self.n);
        let builder = ManifestWriterBuilder::new(
            self.base.file_io().new_output(&path)?,
            Some(self.snapshot_id),
            metadata.current_schema().clone(),
            spec.as_ref().clone(),
        );
        self.written.push(path);
        Ok(match content {
            ManifestContentType::Data => builder.build_v2_data(),
            ManifestContentType::Deletes => builder.build_v2_deletes(),
        })
    }

    /// Per-manifest rewrite: manifests without a live target are kept as they are; the others
    /// are rewritten with the targets DELETED and every other live entry EXISTING (kept even
    /// when every entry is DELETED: it records what this snapshot removed).
    pub async fn rewrite_touched(&mut self, listed: Vec<ManifestFile>, targets: &Targets<'_>) -> Result<Rewritten, Error> {
        let mut out = Rewritten::default();
        let loaded = manifests::load_all(self.base, &listed).await?;
        for (i, (manifest_file, manifest)) in listed.into_iter().zip(loaded).enumerate() {
            let touched = manifest.entries().iter().any(|e| e.is_alive() && targets.hit(e.file_path()));
            if !touched {
                out.manifests.push(manifest_file);
                continue;
            }
            let mut writer = self.manifest_writer(&format!("r{i}"), manifest_file.partition_spec_id, manifest_file.content)?;
            for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                out.carry(&mut writer, &manifest_file, entry, targets)?;
            }
            out.manifests.push(writer.write_manifest_file().await?);
        }
        Ok(out)
    }

    /// Merging rewrite: every data manifest's live entries go into one manifest per partition
    /// spec (split past [`MANIFEST_ENTRIES`]), the targets DELETED, the rest EXISTING,
    /// `added` ADDED in the default spec's; delete manifests are kept as they are.
    pub async fn rewrite_merged(
        &mut self,
        listed: Vec<ManifestFile>,
        targets: &Targets<'_>,
        added: &[DataFile],
    ) -> Result<Rewritten, Error> {
        let mut out = Rewritten::default();
        let mut kept = Vec::new();
        let mut open: std::collections::BTreeMap<i32, (ManifestWriter, usize)> = Default::default();
        let mut count = 0usize;
        for manifest_file in listed {
            if manifest_file.content != ManifestContentType::Data {
                kept.push(manifest_file);
                continue;
            }
            let manifest = manifests::load(self.base, &manifest_file).await?;
            let spec_id = manifest_file.partition_spec_id;
            for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                let (writer, entries) = match open.entry(spec_id) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        count += 1;
                        v.insert((self.manifest_writer(&format!("c{count}"), spec_id, ManifestContentType::Data)?, 0))
                    }
                };
                out.carry(writer, &manifest_file, entry, targets)?;
                *entries += 1;
                if *entries >= MANIFEST_ENTRIES {
                    let (writer, _) = open.remove(&spec_id).expect("open writer");
                    out.manifests.push(writer.write_manifest_file().await?);
                }
            }
        }
        let default_spec = self.base.metadata().default_partition_spec_id();
        for file in added {
            let (writer, entries) = match open.entry(default_spec) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    count += 1;
                    v.insert((self.manifest_writer(&format!("c{count}"), default_spec, ManifestContentType::Data)?, 0))
                }
            };
            writer.add_file(file.clone(), -1)?;
            *entries += 1;
            if *entries >= MANIFEST_ENTRIES {
                let (writer, _) = open.remove(&default_spec).expect("open writer");
                out.manifests.push(writer.write_manifest_file().await?);
            }
        }
        for (_, (writer, _)) in open {
            out.manifests.push(writer.write_manifest_file().await?);
        }
        out.manifests.extend(kept);
        Ok(out)
    }
}

/// At most this many entries in a manifest that `lake` writes (the added files of a commit, a
/// compaction's merged manifests). A manifest is decoded on one core (tens of microseconds an
/// entry), so a table's manifests of bounded size are planned on every core side by side: a
/// merge into a table of thousands of files waits for the slowest manifest, not for all.
pub const MANIFEST_ENTRIES: usize = 250;

/// Which live files a rewrite removes.
pub(super) enum Targets<'a> {
    /// Every live file.
    All,
    /// The live files at these paths.
    Paths(HashSet<&'a str>),
}

impl Targets<'_> {
    fn hit(&self, path: &str) -> bool {
        match self {
            Targets::All => true,
            Targets::Paths(p) => p.contains(path),
        }
    }
}

/// Manifests after a rewrite, and the files it removed.
#[derive(Default)]
pub(super) struct Rewritten {
    pub manifests: Vec<ManifestFile>,
    pub removed: Vec<DataFile>,
}

impl Rewritten {
    /// Copy one live entry into `writer`: DELETED when it is a target, EXISTING otherwise.
    fn carry(
        &mut self,
        writer: &mut ManifestWriter,
        manifest_file: &ManifestFile,
        entry: &ManifestEntry,
        targets: &Targets<'_>,
    ) -> Result<(), Error> {
        let seq = entry.sequence_number().unwrap_or(0);
        let file_seq = entry.file_sequence_number.or(Some(seq));
        let file = entry.data_file().clone();
        if targets.hit(entry.file_path()) {
            self.removed.push(file.clone());
            writer.add_delete_file(file, seq, file_seq)?;
        } else {
            let added_by = entry.snapshot_id().unwrap_or(manifest_file.added_snapshot_id);
            writer.add_existing_file(file, added_by, seq, file_seq)?;
        }
        Ok(())
    }

    /// Fail with [`Error::Stale`] when a target path was not among the live files.
    pub fn check_found(&self, targets: &Targets<'_>, what: &str, base: &Table) -> Result<(), Error> {
        let Targets::Paths(paths) = targets else {
            return Ok(());
        };
        let found: HashSet<&str> = self.removed.iter().map(|f| f.file_path()).collect();
        let missing: Vec<&&str> = paths.iter().filter(|p| !found.contains(**p)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::Stale(format!(
            "{} file(s) this {what} replaces are no longer in table {} (another writer changed them), e.g. {}",
            missing.len(),
            base.identifier(),
            missing[0]
        )))
    }
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

/// Delete files of a commit that will never be committed.
pub(super) async fn delete_files(file_io: &iceberg::io::FileIO, paths: &[String]) {
    for path in paths {
        if let Err(e) = file_io.delete(path).await {
            tracing::warn!(path, error = %e, "could not remove a file of a failed commit");
        }
    }
}
