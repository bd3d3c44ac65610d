//! `lake.*` keys in snapshot summaries: run metadata and watermarks that commit with the data.
//!
//! Iceberg does not carry summary keys forward, so readers walk the snapshot ancestry from the
//! current snapshot to the most recent one that set the key.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::{Operation, SnapshotRef};
use iceberg::table::Table;
use iceberg::util::snapshot::ancestors_of;

/// Id of the `lake run` / `lake seed` that made the snapshot.
pub const RUN_ID: &str = "lake.run-id";
/// Model (or seed) that produced the snapshot.
pub const MODEL: &str = "lake.model";
/// `lake` version that wrote the snapshot.
pub const VERSION: &str = "lake.version";
/// Watermark after this snapshot (a rendered value; see [`WATERMARK_TYPE`]).
pub const WATERMARK: &str = "lake.watermark";
/// Column the watermark tracks.
pub const WATERMARK_COLUMN: &str = "lake.watermark.column";
/// Arrow data type of the watermark value, e.g. `Timestamp(µs, "+00:00")`.
pub const WATERMARK_TYPE: &str = "lake.watermark.type";
/// JSON object `{file: sha256}` of seed files loaded by this snapshot.
pub const SEED_FILES: &str = "lake.seed.files";
/// JSON object `{"ns.table": snapshot_id}` of the input snapshots a model read.
pub const INPUT_SNAPSHOTS: &str = "lake.input-snapshots";
/// The unique key (comma-separated columns) of a `merge` (upsert) snapshot: every row live
/// before it is still live after it or replaced by a row with the same key. Consumers merging
/// by key may read through such snapshots (see [`crate::lakehouse::reader::changes_since`]).
pub const UPSERT_KEY: &str = "lake.upsert-key";
/// SHA-256 of what a model runs (compiled SQL or Rust function and params, config, version):
/// with the same inputs, the same fingerprint means the same output.
pub const MODEL_FINGERPRINT: &str = "lake.model-fingerprint";

/// The `lake.*` keys every snapshot `lake` writes starts from: [`VERSION`], and [`RUN_ID`] and
/// [`MODEL`] (the model, seed or ingest source that produced it) when given. The one place these
/// keys are stamped; callers add their own keys to the map.
pub fn stamp(run_id: Option<&str>, producer: Option<&str>) -> HashMap<String, String> {
    let mut properties = HashMap::new();
    if let Some(run_id) = run_id {
        properties.insert(RUN_ID.to_string(), run_id.to_string());
    }
    if let Some(producer) = producer {
        properties.insert(MODEL.to_string(), producer.to_string());
    }
    properties.insert(VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string());
    properties
}

/// The current snapshot and its ancestors, newest first.
pub fn ancestry(table: &Table) -> Vec<SnapshotRef> {
    let metadata = table.metadata_ref();
    match metadata.current_snapshot_id() {
        Some(id) => ancestors_of(&metadata, id).collect(),
        None => Vec::new(),
    }
}

/// The most recent value of `key` in the current snapshot's ancestry, with its snapshot id.
pub fn last_value(table: &Table, key: &str) -> Option<(i64, String)> {
    ancestry(table).into_iter().find_map(|s| {
        s.summary()
            .additional_properties
            .get(key)
            .map(|v| (s.snapshot_id(), v.clone()))
    })
}

/// A watermark as stored in a snapshot summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredWatermark {
    pub snapshot_id: i64,
    pub column: String,
    pub value: String,
    pub data_type: String,
}

/// The watermark in force for the table: from the most recent snapshot that recorded one.
pub fn watermark(table: &Table) -> Option<StoredWatermark> {
    ancestry(table).into_iter().find_map(|s| {
        let props = &s.summary().additional_properties;
        Some(StoredWatermark {
            snapshot_id: s.snapshot_id(),
            value: props.get(WATERMARK)?.clone(),
            column: props.get(WATERMARK_COLUMN).cloned().unwrap_or_default(),
            data_type: props.get(WATERMARK_TYPE).cloned().unwrap_or_default(),
        })
    })
}

/// Seed files loaded into the table's current contents: the union of [`SEED_FILES`] over the
/// ancestry, stopping at the last snapshot that replaced the table's files.
pub fn loaded_seed_files(table: &Table) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for snapshot in ancestry(table) {
        let summary = snapshot.summary();
        if let Some(json) = summary.additional_properties.get(SEED_FILES) {
            if let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(json) {
                for (k, v) in map {
                    files.entry(k).or_insert(v);
                }
            }
        }
        if summary.operation == Operation::Overwrite {
            break;
        }
    }
    files
}
