//! Skipping models that are up to date (`table` models, and incremental ones with `watermark:
//! snapshot`, which would read nothing new): a model whose table's last build read the
//! same input snapshots with the same compiled model (its fingerprint: the SQL or Rust function
//! and params, the model config and the `lake` version) would commit the same rows again, so it
//! is skipped (`--full-refresh` and `--force` rebuild anyway). Both facts are in the summary of
//! the snapshot the build committed; compaction snapshots after it (same rows) do not count,
//! any other commit to the table does.

use std::collections::BTreeMap;

use iceberg::spec::Operation;
use iceberg::table::Table;
use sha2::{Digest, Sha256};

use crate::lakehouse::summary;
use crate::project::model::{Materialized, Model, WatermarkSpec};

/// The fingerprint of `model` running `body` (its compiled SQL, or its Rust function and params).
pub(super) fn fingerprint(model: &Model, body: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION"));
    hash.update([0]);
    hash.update(format!("{:?}", model.config));
    hash.update([0]);
    hash.update(body);
    hex::encode(hash.finalize())
}

/// Whether the model may be skipped at all this run: a `table` model, or an incremental one
/// with `watermark: snapshot` (whose next run would read nothing new).
pub(super) fn may_skip(model: &Model, full_refresh: bool, force: bool) -> bool {
    let kind_may = match model.config.materialized {
        Materialized::Table => true,
        Materialized::Incremental => model.config.watermark == Some(WatermarkSpec::Snapshot),
        Materialized::Ephemeral => false,
    };
    kind_may && !full_refresh && !force
}

/// Whether `table`'s last build by `model` had this fingerprint and read these snapshots,
/// with no change to the table since other than compactions.
pub(super) fn is_up_to_date(table: &Table, model: &Model, fingerprint: &str, reads: &BTreeMap<String, Option<i64>>) -> bool {
    let Some(last) = summary::ancestry(table)
        .into_iter()
        .find(|s| s.summary().operation != Operation::Replace)
    else {
        return false;
    };
    let props = &last.summary().additional_properties;
    let recorded: Option<BTreeMap<String, Option<i64>>> =
        props.get(summary::INPUT_SNAPSHOTS).and_then(|j| serde_json::from_str(j).ok());
    // An incremental model reads its own table too: the snapshot before its last commit then,
    // that commit now (`last` is it). The other inputs must be where they were.
    let own = model.table_name();
    let others = |m: &BTreeMap<String, Option<i64>>| -> BTreeMap<String, Option<i64>> {
        m.iter().filter(|(k, _)| **k != own).map(|(k, v)| (k.clone(), *v)).collect()
    };
    props.get(summary::MODEL) == Some(&model.name)
        && props.get(summary::MODEL_FINGERPRINT).map(String::as_str) == Some(fingerprint)
        && recorded.as_ref().map(others) == Some(others(reads))
}
