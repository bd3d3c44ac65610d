//! Snapshot summary metrics: this commit's counts and the table's running totals.

use std::collections::HashMap;

use iceberg::spec::{DataContentType, DataFile, Operation, Summary};

/// The snapshot summary: user properties, this commit's counts, and running totals.
pub(super) fn summarize(
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
