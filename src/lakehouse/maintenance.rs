//! Table maintenance: compaction of small data files (and manifests), snapshot expiry, orphan
//! file removal, rollback, and the snapshot listing behind `lake snapshots`.
//!
//! Each function makes at most one commit. The `lake.*` summary keys stay readable: compaction
//! and rollback snapshots carry the watermark and seed-file keys in force, and expiry keeps the
//! whole ancestry back to the oldest snapshot that [`summary::watermark`] or
//! [`summary::loaded_seed_files`] still reads (ancestry walks stop at a missing parent).
//!
//! The policy comes from, in order of precedence, the model's `config: maintenance: {...}`,
//! the table properties `lake.maintenance.<key>`, and the defaults of [`MaintenancePolicy`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use iceberg::TableIdent;
use iceberg::spec::{
    DataContentType, DataFile, ManifestContentType, ManifestFile, Operation, SnapshotRef, Struct,
    TableMetadataRef,
};
use iceberg::table::Table;
use iceberg::util::snapshot::ancestors_of;
use serde::{Deserialize, Serialize};

use super::catalog::Lakehouse;
use super::commit::{self, CommitOutcome};
use super::reader::read_files;
use super::summary;
use super::writer::{DataWriter, WriteOptions};

/// Summary key on snapshots made by maintenance: `compact` or `rollback`.
pub const MAINTENANCE: &str = "lake.maintenance";
/// Summary key of a rollback snapshot: the snapshot whose state it restores.
pub const ROLLBACK_OF: &str = "lake.rollback-of";
/// Summary key of a rollback snapshot: the snapshot that was current before it.
pub const ROLLED_BACK: &str = "lake.rolled-back";
/// Prefix of the table properties that set the maintenance policy.
pub const PROPERTY_PREFIX: &str = "lake.maintenance.";

const MB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------------

/// How a table is maintained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawPolicy")]
pub struct MaintenancePolicy {
    /// `lake maintain` skips the table when false.
    pub enabled: bool,
    /// Compaction writes files of about this size.
    pub target_file_size_mb: u64,
    /// Compact a partition only when it has at least this many small files (>= 2).
    pub min_input_files: usize,
    /// Files smaller than this are small (default: 75% of the target).
    pub small_file_mb: f64,
    /// Merge the manifests even without small files when the current snapshot has more data
    /// manifests than this.
    pub max_manifests: usize,
    /// Snapshots older than this may expire ...
    #[serde(serialize_with = "ser_duration")]
    pub expire_older_than: Duration,
    /// ... but the newest this many snapshots of the current history always stay (>= 1).
    pub retain_last: usize,
    /// Unreferenced files are removed only when older than this (protects running writers).
    #[serde(serialize_with = "ser_duration")]
    pub orphan_older_than: Duration,
}

impl Default for MaintenancePolicy {
    fn default() -> Self {
        MaintenancePolicy {
            enabled: true,
            target_file_size_mb: 128,
            min_input_files: 2,
            small_file_mb: 128.0 * 0.75,
            max_manifests: 10,
            expire_older_than: Duration::from_secs(7 * 86_400),
            retain_last: 5,
            orphan_older_than: Duration::from_secs(3 * 86_400),
        }
    }
}

/// A policy as written: every key optional, so layers can be merged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    enabled: Option<bool>,
    target_file_size_mb: Option<u64>,
    min_input_files: Option<usize>,
    small_file_mb: Option<f64>,
    max_manifests: Option<usize>,
    expire_older_than: Option<DurationText>,
    retain_last: Option<usize>,
    orphan_older_than: Option<DurationText>,
}

/// A duration as `30s`, `15m`, `12h`, `7d` or a number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

impl DurationText {
    fn parse(&self, key: &str) -> Result<Duration> {
        match self {
            DurationText::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationText::Text(t) => {
                parse_duration(t).with_context(|| format!("maintenance {key}"))
            }
        }
    }
}

/// Parse `30s`, `15m`, `12h`, `7d` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow!("'{text}' is not a duration (use e.g. 30s, 15m, 12h, 7d)"))?;
    let unit_secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("'{text}' is not a duration (use e.g. 30s, 15m, 12h, 7d)"),
    };
    Ok(Duration::from_secs(n.saturating_mul(unit_secs)))
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// `7d`, `12h`, `90s`: the largest unit that divides the duration.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s > 0 && s.is_multiple_of(secs) {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
}

impl RawPolicy {
    /// Parse a `config: maintenance: {...}` mapping.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        serde_json::from_value(value.clone()).map_err(|e| anyhow!("maintenance config: {e}"))
    }

    /// Read the `lake.maintenance.<key>` table properties.
    pub fn from_properties(properties: &HashMap<String, String>) -> Result<Self> {
        let mut map = serde_json::Map::new();
        for (k, v) in properties {
            if let Some(key) = k.strip_prefix(PROPERTY_PREFIX) {
                let value = match serde_json::from_str::<serde_json::Value>(v) {
                    Ok(j @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => j,
                    _ => serde_json::Value::String(v.clone()),
                };
                map.insert(key.to_string(), value);
            }
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| anyhow!("table properties {PROPERTY_PREFIX}*: {e}"))
    }

    /// Keys set here win over `other`'s.
    pub fn or(self, other: RawPolicy) -> RawPolicy {
        RawPolicy {
            enabled: self.enabled.or(other.enabled),
            target_file_size_mb: self.target_file_size_mb.or(other.target_file_size_mb),
            min_input_files: self.min_input_files.or(other.min_input_files),
            small_file_mb: self.small_file_mb.or(other.small_file_mb),
            max_manifests: self.max_manifests.or(other.max_manifests),
            expire_older_than: self.expire_older_than.or(other.expire_older_than),
            retain_last: self.retain_last.or(other.retain_last),
            orphan_older_than: self.orphan_older_than.or(other.orphan_older_than),
        }
    }
}

impl TryFrom<RawPolicy> for MaintenancePolicy {
    type Error = anyhow::Error;

    fn try_from(raw: RawPolicy) -> Result<Self> {
        let d = MaintenancePolicy::default();
        let target = raw.target_file_size_mb.unwrap_or(d.target_file_size_mb);
        if target == 0 {
            bail!("maintenance target_file_size_mb must be at least 1");
        }
        let small = raw.small_file_mb.unwrap_or(target as f64 * 0.75);
        if small.is_nan() || small <= 0.0 {
            bail!("maintenance small_file_mb must be positive");
        }
        let min_input_files = raw.min_input_files.unwrap_or(d.min_input_files);
        if min_input_files < 2 {
            bail!(
                "maintenance min_input_files must be at least 2 (one file alone is never compacted)"
            );
        }
        let retain_last = raw.retain_last.unwrap_or(d.retain_last);
        if retain_last == 0 {
            bail!("maintenance retain_last must be at least 1 (the current snapshot always stays)");
        }
        let max_manifests = raw.max_manifests.unwrap_or(d.max_manifests);
        if max_manifests == 0 {
            bail!("maintenance max_manifests must be at least 1");
        }
        Ok(MaintenancePolicy {
            enabled: raw.enabled.unwrap_or(d.enabled),
            target_file_size_mb: target,
            min_input_files,
            small_file_mb: small,
            max_manifests,
            expire_older_than: match &raw.expire_older_than {
                Some(t) => t.parse("expire_older_than")?,
                None => d.expire_older_than,
            },
            retain_last,
            orphan_older_than: match &raw.orphan_older_than {
                Some(t) => t.parse("orphan_older_than")?,
                None => d.orphan_older_than,
            },
        })
    }
}

impl MaintenancePolicy {
    /// The policy of a table: the model's `maintenance` config over the table's
    /// `lake.maintenance.*` properties over the defaults.
    pub fn resolve(
        model_config: Option<&serde_json::Value>,
        table: Option<&Table>,
    ) -> Result<Self> {
        let from_model = match model_config {
            Some(v) => RawPolicy::from_json(v)?,
            None => RawPolicy::default(),
        };
        let from_table = match table {
            Some(t) => RawPolicy::from_properties(t.metadata().properties())?,
            None => RawPolicy::default(),
        };
        MaintenancePolicy::try_from(from_model.or(from_table))
    }

    fn target_bytes(&self) -> u64 {
        self.target_file_size_mb.saturating_mul(1024 * 1024)
    }

    fn small_bytes(&self) -> u64 {
        (self.small_file_mb * MB) as u64
    }
}

// ---------------------------------------------------------------------------------------------
// Compaction
// ---------------------------------------------------------------------------------------------

/// Small files of one partition that compaction rewrites together.
#[derive(Debug, Clone, Serialize)]
pub struct CompactionGroup {
    pub spec_id: i32,
    /// The partition values, for display.
    pub partition: String,
    pub files: Vec<String>,
    pub bytes: u64,
    pub records: u64,
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
    /// Merge the manifests (always when files are rewritten).
    pub merge_manifests: bool,
    /// Why the table is not compacted at all, if so.
    pub skipped: Option<String>,
}

impl CompactionPlan {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && !self.merge_manifests
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
    let list = table.manifest_list_reader(current).load().await?;
    let mut plan = CompactionPlan {
        snapshot_id: Some(current.snapshot_id()),
        ..Default::default()
    };
    let small = policy.small_bytes();
    // (spec id, partition text) -> (partition, [(path, bytes, records)])
    type Groups = BTreeMap<(i32, String), (Struct, Vec<(String, u64, u64)>)>;
    let mut groups: Groups = BTreeMap::new();
    let mut live_deletes = 0usize;
    for manifest_file in list.entries() {
        let manifest = manifest_file.load_manifest(table.file_io()).await?;
        let alive: Vec<_> = manifest.entries().iter().filter(|e| e.is_alive()).collect();
        if manifest_file.content != ManifestContentType::Data {
            live_deletes += alive.len();
            continue;
        }
        plan.data_manifests += 1;
        for entry in alive {
            let file = entry.data_file();
            if file.content_type() != DataContentType::Data {
                live_deletes += 1;
                continue;
            }
            plan.data_files += 1;
            if file.file_size_in_bytes() < small {
                let key = (
                    manifest_file.partition_spec_id,
                    format!("{:?}", file.partition()),
                );
                groups
                    .entry(key)
                    .or_insert_with(|| (file.partition().clone(), Vec::new()))
                    .1
                    .push((
                        file.file_path().to_string(),
                        file.file_size_in_bytes(),
                        file.record_count(),
                    ));
            }
        }
    }
    if live_deletes > 0 {
        plan.skipped = Some(format!(
            "table has {live_deletes} delete file(s); compaction does not rewrite tables with deletes yet"
        ));
        return Ok(plan);
    }
    for ((spec_id, _), (partition, mut files)) in groups {
        if files.len() < policy.min_input_files {
            continue;
        }
        files.sort();
        plan.groups.push(CompactionGroup {
            spec_id,
            partition: partition_text(&partition),
            bytes: files.iter().map(|f| f.1).sum(),
            records: files.iter().map(|f| f.2).sum(),
            files: files.into_iter().map(|f| f.0).collect(),
        });
    }
    plan.merge_manifests = !plan.groups.is_empty() || plan.data_manifests > policy.max_manifests;
    Ok(plan)
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

async fn compact_with_plan(
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
    };
    let mut added: Vec<DataFile> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    let result: Result<()> = async {
        for group in &plan.groups {
            let mut writer = DataWriter::new(
                table.file_io().clone(),
                metadata.location(),
                metadata.current_schema().clone(),
                metadata.default_partition_spec().clone(),
                &options,
            )?;
            let paths: HashSet<String> = group.files.iter().cloned().collect();
            let mut batches = read_files(table, snapshot_id, paths).await?;
            while let Some(batch) = batches.try_next().await? {
                writer.write(&batch).await?;
            }
            let rows = writer.rows();
            let files = writer.close().await?;
            let written: u64 = files.iter().map(|f| f.record_count()).sum();
            added.extend(files);
            if rows != group.records || written != group.records {
                bail!(
                    "compacting partition {} of {} read {rows} rows and wrote {written}, but its files hold {}; nothing was committed",
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
    let mut properties = carried_keys(table.metadata_ref(), snapshot_id);
    properties.insert(MAINTENANCE.into(), "compact".into());
    properties.insert(summary::VERSION.into(), env!("CARGO_PKG_VERSION").into());
    let committed =
        commit::commit_compaction(lakehouse, table.clone(), removed, added, properties).await?;
    outcome.rewritten = committed.files_removed;
    outcome.written = written;
    outcome.files_after = plan.data_files - committed.files_removed + written;
    outcome.snapshot_id = Some(committed.snapshot_id);
    let fresh = lakehouse.table(table.identifier()).await?;
    outcome.manifests_after = match fresh.metadata().current_snapshot() {
        Some(s) => fresh
            .manifest_list_reader(s)
            .load()
            .await?
            .entries()
            .iter()
            .filter(|m| m.content == ManifestContentType::Data)
            .count(),
        None => 0,
    };
    Ok(outcome)
}

/// The `lake.*` keys in force at `snapshot_id`, for a snapshot that keeps (or restores) that
/// state: the watermark (from the nearest ancestor that set one) and the seed files loaded into
/// the contents (union back to the last overwrite).
fn carried_keys(metadata: TableMetadataRef, snapshot_id: i64) -> HashMap<String, String> {
    let chain: Vec<SnapshotRef> = ancestors_of(&metadata, snapshot_id).collect();
    let mut out = HashMap::new();
    if let Some(s) = chain.iter().find(|s| {
        s.summary()
            .additional_properties
            .contains_key(summary::WATERMARK)
    }) {
        for key in [
            summary::WATERMARK,
            summary::WATERMARK_COLUMN,
            summary::WATERMARK_TYPE,
        ] {
            if let Some(v) = s.summary().additional_properties.get(key) {
                out.insert(key.to_string(), v.clone());
            }
        }
    }
    let seeds = seed_union(&chain, chain.len());
    if !seeds.is_empty()
        && let Ok(json) = serde_json::to_string(&seeds)
    {
        out.insert(summary::SEED_FILES.to_string(), json);
    }
    out
}

/// The union of `lake.seed.files` over the first `n` snapshots of `chain` (newest first),
/// stopping after an overwrite: what [`summary::loaded_seed_files`] computes.
fn seed_union(chain: &[SnapshotRef], n: usize) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for snapshot in chain.iter().take(n) {
        let s = snapshot.summary();
        if let Some(json) = s.additional_properties.get(summary::SEED_FILES)
            && let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(json)
        {
            for (k, v) in map {
                files.entry(k).or_insert(v);
            }
        }
        if s.operation == Operation::Overwrite {
            break;
        }
    }
    files
}

// ---------------------------------------------------------------------------------------------
// Snapshot expiry
// ---------------------------------------------------------------------------------------------

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
    let mut base = table.clone();
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt))).await;
            base = lakehouse.table(table.identifier()).await?;
        }
        let plan = plan_expiry(&base, policy, now, protected);
        if plan.expire.is_empty() {
            return Ok(ExpireOutcome {
                kept: plan.keep,
                ..Default::default()
            });
        }
        // Which files only the expired snapshots use, from the metadata they are expired from.
        let expired: HashSet<i64> = plan.expire.iter().copied().collect();
        let garbage = files_only_in(&base, &expired).await;
        let Some(location) =
            commit::commit_snapshot_removal(lakehouse, &base, &plan.expire).await?
        else {
            continue;
        };
        let garbage = garbage.with_context(|| {
            format!(
                "expired {} snapshot(s) of {} but could not tell which files they alone used; `lake maintain` removes them later as orphans",
                plan.expire.len(),
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
        return Ok(ExpireOutcome {
            expired: plan.expire,
            kept: plan.keep,
            deleted_files: deleted,
            metadata_location: Some(location),
        });
    }
    bail!(
        "expiring snapshots of {} lost 5 races with concurrent writers; nothing was expired",
        table.identifier()
    )
}

/// Manifest lists, manifests, data/delete files and statistics files that the snapshots in
/// `expired` use and no other snapshot of `table` does.
async fn files_only_in(table: &Table, expired: &HashSet<i64>) -> Result<Vec<String>> {
    let metadata = table.metadata();
    let file_io = table.file_io();
    let mut kept_manifests: HashSet<String> = HashSet::new();
    let mut kept_files: HashSet<String> = HashSet::new();
    let mut loaded: HashSet<String> = HashSet::new();
    let mut expired_lists: Vec<(String, Vec<ManifestFile>)> = Vec::new();
    for s in metadata.snapshots() {
        let manifests: Vec<ManifestFile> = table
            .manifest_list_reader(s)
            .load()
            .await
            .with_context(|| {
                format!(
                    "cannot read the manifest list of snapshot {}",
                    s.snapshot_id()
                )
            })?
            .consume_entries()
            .into_iter()
            .collect();
        if expired.contains(&s.snapshot_id()) {
            expired_lists.push((s.manifest_list().to_string(), manifests));
            continue;
        }
        for m in manifests {
            if !loaded.insert(m.manifest_path.clone()) {
                continue;
            }
            let manifest = m.load_manifest(file_io).await?;
            kept_files.extend(
                manifest
                    .entries()
                    .iter()
                    .filter(|e| e.is_alive())
                    .map(|e| e.file_path().to_string()),
            );
            kept_manifests.insert(m.manifest_path);
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (list, manifests) in expired_lists {
        out.push(list);
        for m in manifests {
            if kept_manifests.contains(&m.manifest_path) || !seen.insert(m.manifest_path.clone()) {
                continue;
            }
            let manifest = m.load_manifest(file_io).await?;
            for e in manifest.entries() {
                let path = e.file_path();
                if !kept_files.contains(path) && seen.insert(path.to_string()) {
                    out.push(path.to_string());
                }
            }
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

// ---------------------------------------------------------------------------------------------
// Orphan files
// ---------------------------------------------------------------------------------------------

/// Files under the table's `data/` and `metadata/` folders that nothing references (no
/// snapshot's data files, manifests or manifest list; not the current metadata file nor one in
/// its metadata log; no statistics file) and that were last modified before `now - older_than`.
/// Local (`file://`) warehouses only.
pub async fn find_orphans(
    table: &Table,
    older_than: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let location = table
        .metadata()
        .location()
        .trim_end_matches('/')
        .to_string();
    let Some(root) = local_path(&location) else {
        bail!(
            "orphan removal supports local warehouses only for now (table {} is at {location})",
            table.identifier()
        );
    };
    let referenced: HashSet<PathBuf> = referenced_files(table)
        .await?
        .iter()
        .filter_map(|p| local_path(p))
        .collect();
    let cutoff: SystemTime = SystemTime::from(now)
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut files = Vec::new();
    for dir in ["data", "metadata"] {
        list_files(&root.join(dir), &mut files)?;
    }
    let mut out = Vec::new();
    for (path, modified) in files {
        if modified >= cutoff || referenced.contains(&path) {
            continue;
        }
        out.push(format!("file://{}", path.display()));
    }
    out.sort();
    Ok(out)
}

/// Delete the files [`find_orphans`] finds; returns them.
pub async fn remove_orphans(
    table: &Table,
    older_than: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let orphans = find_orphans(table, older_than, now).await?;
    let mut deleted = Vec::new();
    for uri in orphans {
        let path = local_path(&uri).expect("a local path");
        match std::fs::remove_file(&path) {
            Ok(()) => deleted.push(uri),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot delete orphan file {}", path.display()));
            }
        }
    }
    Ok(deleted)
}

/// Every file the table's metadata references: metadata files (current and logged), manifest
/// lists, manifests, data and delete files (any entry status), statistics files.
async fn referenced_files(table: &Table) -> Result<HashSet<String>> {
    let metadata = table.metadata();
    let mut out: HashSet<String> = HashSet::new();
    if let Some(l) = table.metadata_location() {
        out.insert(l.to_string());
    }
    out.extend(
        metadata
            .metadata_log()
            .iter()
            .map(|l| l.metadata_file.clone()),
    );
    out.extend(
        metadata
            .statistics_iter()
            .map(|s| s.statistics_path.clone()),
    );
    out.extend(
        metadata
            .partition_statistics_iter()
            .map(|s| s.statistics_path.clone()),
    );
    let mut loaded: HashSet<String> = HashSet::new();
    for s in metadata.snapshots() {
        out.insert(s.manifest_list().to_string());
        let list = table
            .manifest_list_reader(s)
            .load()
            .await
            .with_context(|| {
                format!(
                    "cannot read the manifest list of snapshot {}",
                    s.snapshot_id()
                )
            })?;
        for m in list.entries() {
            if !loaded.insert(m.manifest_path.clone()) {
                continue;
            }
            out.insert(m.manifest_path.clone());
            let manifest = m.load_manifest(table.file_io()).await?;
            out.extend(manifest.entries().iter().map(|e| e.file_path().to_string()));
        }
    }
    Ok(out)
}

/// `file:///a/b` (or `file:/a/b`, or a plain absolute path) as a local path.
fn local_path(uri: &str) -> Option<PathBuf> {
    let path = if let Some(rest) = uri.strip_prefix("file://") {
        rest
    } else if let Some(rest) = uri.strip_prefix("file:") {
        rest
    } else if uri.starts_with('/') {
        uri
    } else {
        return None;
    };
    Some(normalize(Path::new(path)))
}

/// Remove `.` and `..` components and duplicate slashes without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn list_files(dir: &Path, out: &mut Vec<(PathBuf, SystemTime)>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let kind = entry.file_type()?;
        let path = normalize(&entry.path());
        if kind.is_dir() {
            list_files(&path, out)?;
        } else if kind.is_file() {
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .with_context(|| {
                    format!("cannot read the modification time of {}", path.display())
                })?;
            out.push((path, modified));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rollback
// ---------------------------------------------------------------------------------------------

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
    properties.insert(summary::VERSION.into(), env!("CARGO_PKG_VERSION").into());
    commit::commit_rollback(lakehouse, table.clone(), to_snapshot, properties).await
}

// ---------------------------------------------------------------------------------------------
// Snapshot listing
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// All steps
// ---------------------------------------------------------------------------------------------

/// How [`maintain_table_with`] runs.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Plan only: report what would be compacted, expired and removed.
    pub dry_run: bool,
    /// The clock for expiry and orphan margins.
    pub now: DateTime<Utc>,
    /// Snapshot ids whose history expiry keeps (see [`plan_expiry`]).
    pub protected: HashSet<i64>,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        MaintainOptions {
            dry_run: false,
            now: Utc::now(),
            protected: HashSet::new(),
        }
    }
}

/// What [`maintain_table`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize, Default)]
pub struct MaintainOutcome {
    pub table: String,
    pub dry_run: bool,
    pub compaction: CompactOutcome,
    pub expiry: ExpireOutcome,
    /// Orphan files removed (or that would be).
    pub orphans: Vec<String>,
    /// Steps skipped and why.
    pub notes: Vec<String>,
}

/// Compact, expire snapshots, remove orphan files: the table's whole maintenance.
pub async fn maintain_table(
    lakehouse: &Lakehouse,
    table: &TableIdent,
    policy: &MaintenancePolicy,
    write: &WriteOptions,
) -> Result<MaintainOutcome> {
    maintain_table_with(lakehouse, table, policy, write, &MaintainOptions::default()).await
}

/// [`maintain_table`] with options (dry run, clock, protected snapshots).
pub async fn maintain_table_with(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    policy: &MaintenancePolicy,
    write: &WriteOptions,
    options: &MaintainOptions,
) -> Result<MaintainOutcome> {
    let mut out = MaintainOutcome {
        table: ident.to_string(),
        dry_run: options.dry_run,
        ..Default::default()
    };
    let table = lakehouse.table(ident).await?;
    let plan = plan_compaction(&table, policy).await?;
    if let Some(why) = &plan.skipped {
        out.notes.push(format!("compaction skipped: {why}"));
    }
    if options.dry_run {
        out.compaction = CompactOutcome {
            files_before: plan.data_files,
            files_after: plan.data_files,
            rewritten: plan.files_to_rewrite(),
            manifests_before: plan.data_manifests,
            manifests_after: plan.data_manifests,
            skipped: plan.skipped.clone(),
            ..Default::default()
        };
        let expiry = plan_expiry(&table, policy, options.now, &options.protected);
        let expired: HashSet<i64> = expiry.expire.iter().copied().collect();
        out.expiry = ExpireOutcome {
            deleted_files: if expired.is_empty() {
                Vec::new()
            } else {
                files_only_in(&table, &expired).await?
            },
            expired: expiry.expire,
            kept: expiry.keep,
            metadata_location: None,
        };
    } else {
        out.compaction = compact_with_plan(lakehouse, &table, policy, write, &plan).await?;
        let table = lakehouse.table(ident).await?;
        out.expiry =
            expire_snapshots_protecting(lakehouse, &table, policy, options.now, &options.protected)
                .await?;
    }
    let table = lakehouse.table(ident).await?;
    if local_path(table.metadata().location()).is_none() {
        out.notes
            .push("orphan removal skipped: it supports local warehouses only for now".into());
    } else if options.dry_run {
        out.orphans = find_orphans(&table, policy.orphan_older_than, options.now).await?;
    } else {
        out.orphans = remove_orphans(&table, policy.orphan_older_than, options.now).await?;
    }
    Ok(out)
}
