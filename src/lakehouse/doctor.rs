//! The checks behind `lake doctor`: can this catalog and warehouse be used, and if not, what
//! is wrong and which setting fixes it.
//!
//! Each check runs on its own, so one failure does not hide the others: the catalog (reached
//! and authenticated), its SQL schema version (JdbcCatalog V0 or V1, see
//! [`super::catalog_schema`]), a warehouse round trip (write, read, list and delete a small
//! object under `<warehouse>/.lake-doctor/<uuid>`, removed again), the clock against the object
//! store's, and every table's current metadata (loaded, its metadata file and manifest list
//! read). A failure's message is the same one line a failing command prints
//! ([`super::fault::Fault::line`]), naming the setting to fix. Messages may still hold
//! secrets from the configuration: the caller scrubs them before printing.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use opendal::Operator;
use serde::Serialize;

use super::catalog::{CatalogSpec, Lakehouse, redact_uri};
use super::fault::{Place, bounded, classify};
use super::storage::{s3_operator, split_s3_url};

/// A clock further than this from the object store's is reported (`warn`): signed S3
/// requests are refused at 15 minutes, and snapshot times and retention ages drift with it.
pub const CLOCK_SKEW_WARN: Duration = Duration::from_secs(60);

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but something needs attention (a skewed clock).
    Warn,
    Fail,
    /// Not run, because what it needs failed (named in the message).
    Skipped,
}

/// One check's outcome: `check` names it (`catalog`, `catalog_schema`, `warehouse`, `clock`,
/// `table <ns.name>`), `message` says what was found or what is wrong and how to fix it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub message: String,
}

impl Check {
    fn new(check: impl Into<String>, status: Status, message: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status,
            message: message.into(),
        }
    }
}

/// Run every check against `spec`, in order.
pub async fn run(spec: &CatalogSpec) -> Vec<Check> {
    let mut checks = Vec::new();
    let kind = match spec {
        CatalogSpec::Sql { .. } => "SQL",
        CatalogSpec::Rest { .. } => "REST",
    };
    let uri = redact_uri(spec.uri());
    let mut tables_need = "needs the catalog";
    let lakehouse = match Lakehouse::connect_catalog(spec).await {
        Ok(lakehouse) => {
            checks.push(Check::new("catalog", Status::Ok, format!("the {kind} catalog at {uri} answered")));
            let schema = match spec {
                CatalogSpec::Sql { .. } => Check::new("catalog_schema", Status::Ok, "JdbcCatalog schema V1 (iceberg_tables has iceberg_type)"),
                CatalogSpec::Rest { .. } => Check::new("catalog_schema", Status::Skipped, "a REST catalog keeps its own schema"),
            };
            checks.push(schema);
            Some(lakehouse)
        }
        Err(e) => {
            let v0 = e.chain().any(|c| c.is::<super::catalog_schema::CatalogSchemaV0>());
            if v0 {
                // Reached and authenticated: only the layout is wrong.
                checks.push(Check::new("catalog", Status::Ok, format!("the {kind} catalog at {uri} answered")));
                checks.push(Check::new("catalog_schema", Status::Fail, describe(&e, spec)));
                tables_need = "needs a V1 catalog schema";
            } else {
                checks.push(Check::new("catalog", Status::Fail, describe(&e, spec)));
                checks.push(Check::new("catalog_schema", Status::Skipped, "needs the catalog"));
            }
            None
        }
    };
    checks.extend(warehouse_checks(spec).await);
    match &lakehouse {
        Some(lakehouse) => checks.extend(table_checks(lakehouse).await),
        None => checks.push(Check::new("tables", Status::Skipped, tables_need)),
    }
    checks
}

/// The one line for a failure: the fault's line naming the setting, else the error's causes.
fn describe(error: &anyhow::Error, spec: &CatalogSpec) -> String {
    match classify(error) {
        Some(fault) => fault.line(spec),
        None => compact(error),
    }
}

/// An error on one line, bounded: its outermost message and, when the object store or file
/// system failed, that error's own first part (what, where) rather than every layer between.
fn compact(error: &anyhow::Error) -> String {
    let storage = error.chain().find_map(|c| c.downcast_ref::<opendal::Error>());
    let text = match storage {
        Some(e) => {
            let inner = e.to_string();
            format!("{error}: {}", inner.split(", source:").next().unwrap_or_default())
        }
        None => format!("{error:#}"),
    };
    let text = redact_uri(&text.replace('\n', " "));
    if text.chars().count() > 400 { format!("{}...", text.chars().take(400).collect::<String>()) } else { text }
}

/// The warehouse round trip, then the clock against the object store's.
async fn warehouse_checks(spec: &CatalogSpec) -> Vec<Check> {
    let Some(warehouse) = spec.warehouse() else {
        return vec![
            Check::new("warehouse", Status::Skipped, "no catalog.warehouse set: the REST catalog chooses where tables live"),
            Check::new("clock", Status::Skipped, "needs a warehouse"),
        ];
    };
    match round_trip(spec, warehouse).await {
        Ok((location, skew)) => {
            let done = Check::new("warehouse", Status::Ok, format!("wrote, read, listed and deleted {location}"));
            let clock = match skew {
                None => Check::new("clock", Status::Ok, "a local warehouse shares this machine's clock"),
                Some(skew) if skew.unsigned_abs() > CLOCK_SKEW_WARN.as_secs() => Check::new(
                    "clock",
                    Status::Warn,
                    format!(
                        "this machine's clock is {} s {} the object store's (more than {} s): synchronize it (NTP); \
                         snapshot times, retention ages and request signatures depend on it",
                        skew.unsigned_abs(),
                        if skew > 0 { "behind" } else { "ahead of" },
                        CLOCK_SKEW_WARN.as_secs()
                    ),
                ),
                Some(skew) => Check::new("clock", Status::Ok, format!("within {} s of the object store's", skew.unsigned_abs())),
            };
            vec![done, clock]
        }
        Err(e) => vec![
            Check::new("warehouse", Status::Fail, describe(&e, spec)),
            Check::new("clock", Status::Skipped, "needs the warehouse"),
        ],
    }
}

/// Where the round trip writes.
enum Store {
    Local(PathBuf),
    S3 { op: Operator, root: String, warehouse: String },
}

/// Write, read back, list and delete one object; returns its location and, for an object
/// store, how many seconds its clock is ahead of ours (negative: behind).
async fn round_trip(spec: &CatalogSpec, warehouse: &str) -> Result<(String, Option<i64>)> {
    let name = uuid::Uuid::new_v4().to_string();
    let body = format!("lake doctor {name}\n").into_bytes();
    let store = if warehouse.starts_with("s3://") || warehouse.starts_with("s3a://") {
        let (bucket, prefix) = split_s3_url(warehouse)?;
        let root = match prefix.trim_matches('/') {
            "" => ".lake-doctor/".to_string(),
            p => format!("{p}/.lake-doctor/"),
        };
        Store::S3 {
            op: s3_operator(bucket, spec.props(), spec.timeouts())?,
            root,
            warehouse: warehouse.trim_end_matches('/').to_string(),
        }
    } else if let Some(dir) = warehouse.strip_prefix("file://") {
        Store::Local(PathBuf::from(dir).join(".lake-doctor"))
    } else if !warehouse.contains("://") {
        Store::Local(PathBuf::from(warehouse).join(".lake-doctor"))
    } else {
        bail!("lake doctor cannot check a warehouse at {warehouse} (only local folders and s3:// are supported)");
    };
    match store {
        Store::Local(dir) => local_round_trip(&dir, &name, &body).await.map(|l| (l, None)),
        Store::S3 { op, root, warehouse } => {
            let limit = spec.timeouts().connect + spec.timeouts().request;
            let what = format!("the object store ({warehouse})");
            bounded(Place::Storage, what, limit * 4, s3_round_trip(&op, &root, &warehouse, &name, &body))
                .await
                .map(|(l, skew)| (l, Some(skew)))
        }
    }
}

async fn local_round_trip(dir: &std::path::Path, name: &str, body: &[u8]) -> Result<String> {
    let path = dir.join(name);
    let location = path.display().to_string();
    tokio::fs::create_dir_all(dir).await.with_context(|| format!("cannot create {}", dir.display()))?;
    tokio::fs::write(&path, body).await.with_context(|| format!("cannot write {location}"))?;
    let checked = async {
        let read = tokio::fs::read(&path).await.with_context(|| format!("cannot read back {location}"))?;
        if read != body {
            bail!("{location} read back different bytes than were written");
        }
        let mut listed = false;
        let mut entries = tokio::fs::read_dir(dir).await.with_context(|| format!("cannot list {}", dir.display()))?;
        while let Some(entry) = entries.next_entry().await? {
            listed |= entry.file_name().to_string_lossy() == name;
        }
        if !listed {
            bail!("{location} was written but listing {} does not show it", dir.display());
        }
        Ok(())
    }
    .await;
    let removed = tokio::fs::remove_file(&path).await.with_context(|| format!("cannot delete {location}"));
    checked?;
    removed?;
    // Other doctors may be using the folder: removing it is best effort.
    let _ = tokio::fs::remove_dir(dir).await;
    Ok(location)
}

async fn s3_round_trip(op: &Operator, root: &str, warehouse: &str, name: &str, body: &[u8]) -> Result<(String, i64)> {
    let key = format!("{root}{name}");
    let location = format!("{warehouse}/.lake-doctor/{name}");
    let before = SystemTime::now();
    op.write(&key, body.to_vec()).await.with_context(|| format!("cannot write {location}"))?;
    let after = SystemTime::now();
    let checked = async {
        let read = op.read(&key).await.with_context(|| format!("cannot read back {location}"))?;
        if read.to_vec() != body {
            bail!("{location} read back different bytes than were written");
        }
        let listed = op.list(root).await.with_context(|| format!("cannot list {warehouse}/.lake-doctor/"))?;
        if !listed.iter().any(|e| e.path() == key) {
            bail!("{location} was written but listing {warehouse}/.lake-doctor/ does not show it");
        }
        let stat = op.stat(&key).await.with_context(|| format!("cannot stat {location}"))?;
        let modified = stat
            .last_modified()
            .map(SystemTime::from)
            .ok_or_else(|| anyhow!("the object store gave {location} no last-modified time"))?;
        Ok(skew_seconds(modified, before, after))
    }
    .await;
    let removed = op.delete(&key).await.with_context(|| format!("cannot delete {location}"));
    let skew = checked?;
    removed?;
    Ok((location, skew))
}

/// How far `remote` (whole seconds, as object stores report) lies outside the local window
/// `[before, after]` in which the object was written: positive when the remote clock is ahead.
fn skew_seconds(remote: SystemTime, before: SystemTime, after: SystemTime) -> i64 {
    let secs = |t: SystemTime| match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    let (remote, before, after) = (secs(remote), secs(before), secs(after));
    // The store truncates to the second: allow one second below the window.
    if remote < before - 1.0 {
        (remote - before).round() as i64
    } else if remote > after {
        (remote - after).round() as i64
    } else {
        0
    }
}

/// Every table loads, and its current metadata file and manifest list can be read.
async fn table_checks(lakehouse: &Lakehouse) -> Vec<Check> {
    let spec = lakehouse.spec();
    let listed = bounded(Place::Catalog, "the catalog (listing tables)", spec.timeouts().request, lakehouse.list_tables()).await;
    let idents = match listed {
        Ok(idents) => idents,
        Err(e) => return vec![Check::new("tables", Status::Fail, describe(&e, spec))],
    };
    if idents.is_empty() {
        return vec![Check::new("tables", Status::Ok, "the catalog holds no tables yet")];
    }
    let mut checks = Vec::new();
    for ident in idents {
        let name = format!("table {ident}");
        let check = match table_metadata(lakehouse, &ident).await {
            Ok(message) => Check::new(name, Status::Ok, message),
            Err(e) => {
                let message = match classify(&e) {
                    Some(fault) => fault.line(spec),
                    None => format!(
                        "the current metadata of {ident} cannot be read ({}); restore the file, or point the catalog \
                         at an earlier metadata file of the table (its metadata/ folder)",
                        compact(&e)
                    ),
                };
                Check::new(name, Status::Fail, message)
            }
        };
        checks.push(check);
    }
    checks
}

async fn table_metadata(lakehouse: &Lakehouse, ident: &iceberg::TableIdent) -> Result<String> {
    let table = lakehouse.table(ident).await?;
    let location = table
        .metadata_location()
        .ok_or_else(|| anyhow!("the catalog records no metadata file for {ident}"))?
        .to_string();
    let io = table.file_io();
    let request = lakehouse.spec().timeouts().request;
    bounded(Place::Storage, format!("the storage (reading {location})"), request, async {
        io.new_input(&location)?.read().await.with_context(|| format!("cannot read {location}"))?;
        if let Some(snapshot) = table.metadata().current_snapshot() {
            let list = snapshot.manifest_list();
            if !io.exists(list).await.with_context(|| format!("cannot check {list}"))? {
                bail!("its manifest list {list} is missing");
            }
        }
        Ok(())
    })
    .await?;
    let snapshot = table.metadata().current_snapshot_id().map(|s| format!("snapshot {s}")).unwrap_or_else(|| "no snapshot yet".into());
    Ok(format!("{location} ({snapshot})"))
}
