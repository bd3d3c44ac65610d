//! The rebase guard of planned commits (`merge` in either mode, `replace_range`): their rows were
//! planned against the files of one table state. When another writer commits first, the
//! producer would rebuild the commit on the new state; that is right for a compaction (same
//! rows), but rows appended meanwhile were never seen by the plan: a merge would leave a key
//! twice, a range replacement would keep stale rows inside its range. So when data was added
//! since the planning base, the commit fails as stale and [`super::copy_on_write`] plans again
//! on the new state; another run of the same model committing meanwhile is a conflict, as for
//! every model commit.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::table::Table;

use crate::lakehouse::commit::{Error, RebaseFn};
use crate::lakehouse::summary;

/// The guard for a commit planned on `planned` by `producer` (the model name, if any).
pub(super) fn planned_on(planned: &Table, producer: Option<String>) -> RebaseFn {
    let since = planned.metadata().current_snapshot_id();
    Arc::new(move |base: &Table| {
        for snapshot in summary::ancestry(base).into_iter().take_while(|s| Some(s.snapshot_id()) != since) {
            let props = &snapshot.summary().additional_properties;
            if producer.is_some() && props.get(summary::MODEL) == producer.as_ref() {
                return Err(Error::ProducerConflict(format!(
                    "commit to {} conflicted: another run of {} committed snapshot {} meanwhile; nothing was committed, run again",
                    base.identifier(),
                    producer.as_deref().unwrap_or_default(),
                    snapshot.snapshot_id()
                )));
            }
            let count = |key: &str| -> u64 { props.get(key).and_then(|v| v.parse().ok()).unwrap_or(0) };
            // New data the plan never saw, or new deletes (a merge-on-read plan would delete a
            // row twice; a rewrite would bring a deleted row back).
            if count("added-data-files") > 0 || count("added-delete-files") > 0 {
                return Err(Error::Stale(format!(
                    "snapshot {} added data or deletes to {} after this change was planned",
                    snapshot.snapshot_id(),
                    base.identifier()
                )));
            }
        }
        Ok(HashMap::new())
    })
}
