//! The `lake.*` summary keys a maintenance snapshot carries forward (watermark, seed files),
//! and the seed-file union expiry keeps history for.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::{Operation, SnapshotRef, TableMetadataRef};
use iceberg::util::snapshot::ancestors_of;

use crate::lakehouse::summary;

/// The `lake.*` keys in force at `snapshot_id`, for a snapshot that keeps (or restores) that
/// state: the watermark (from the nearest ancestor that set one) and the seed files loaded into
/// the contents (union back to the last overwrite).
pub(super) fn carried_keys(metadata: TableMetadataRef, snapshot_id: i64) -> HashMap<String, String> {
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
pub(super) fn seed_union(chain: &[SnapshotRef], n: usize) -> BTreeMap<String, String> {
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
