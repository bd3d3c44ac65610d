//! Table maintenance: compaction of small data files (and manifests), snapshot expiry, orphan
//! file removal, rollback, and the snapshot listing behind `lake snapshots`.
//!
//! Each function makes at most one commit. The `lake.*` summary keys stay readable: compaction
//! and rollback snapshots carry the watermark and seed-file keys in force, and expiry keeps the
//! whole ancestry back to the oldest snapshot that [`super::summary::watermark`] or
//! [`super::summary::loaded_seed_files`] still reads (ancestry walks stop at a missing parent).
//!
//! The policy comes from, in order of precedence, the model's `config: maintenance: {...}`,
//! the table properties `lake.maintenance.<key>`, and the defaults of [`MaintenancePolicy`].

mod compaction;
mod expiry;
mod keys;
mod orphans;
mod policy;
mod snapshots;

use std::collections::HashSet;

use anyhow::Result;
use chrono::{DateTime, Utc};
use iceberg::TableIdent;
use serde::Serialize;

pub use compaction::{CompactOutcome, CompactionGroup, CompactionPlan, compact, plan_compaction};
pub use expiry::{ExpireOutcome, ExpiryPlan, expire_snapshots, expire_snapshots_protecting, plan_expiry};
pub use orphans::{find_orphans, remove_orphans};
pub use policy::{MaintenancePolicy, RawPolicy, format_duration, parse_duration};
pub use snapshots::{SnapshotInfo, rollback, snapshots};

use super::catalog::Lakehouse;
use super::writer::WriteOptions;
use compaction::compact_with_plan;
use expiry::files_only_in;

/// Summary key on snapshots made by maintenance: `compact` or `rollback`.
pub const MAINTENANCE: &str = "lake.maintenance";
/// Summary key of a rollback snapshot: the snapshot whose state it restores.
pub const ROLLBACK_OF: &str = "lake.rollback-of";
/// Summary key of a rollback snapshot: the snapshot that was current before it.
pub const ROLLED_BACK: &str = "lake.rolled-back";
/// Prefix of the table properties that set the maintenance policy.
pub const PROPERTY_PREFIX: &str = "lake.maintenance.";

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
    out.orphans = if options.dry_run {
        find_orphans(lakehouse, &table, policy.orphan_older_than, options.now).await?
    } else {
        remove_orphans(lakehouse, &table, policy.orphan_older_than, options.now).await?
    };
    Ok(out)
}
