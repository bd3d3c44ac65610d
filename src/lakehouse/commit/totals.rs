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
    let (add_pos_files, add_pos, add_pos_bytes) = count(added, DataContentType::PositionDeletes);
    let (add_eq_files, add_eq, add_eq_bytes) = count(added, DataContentType::EqualityDeletes);
    let (del_pos_files, del_pos, del_pos_bytes) = count(removed, DataContentType::PositionDeletes);
    let (del_eq_files, del_eq, del_eq_bytes) = count(removed, DataContentType::EqualityDeletes);
    let add_delete_files = add_pos_files + add_eq_files;
    let del_delete_files = del_pos_files + del_eq_files;
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
    // Sizes count data and delete files alike, as Iceberg's Java summaries do.
    let add_size = add_bytes + add_pos_bytes + add_eq_bytes;
    let del_size = del_bytes + del_pos_bytes + del_eq_bytes;
    set("added-data-files", add_files, false);
    set("added-records", add_rows, false);
    set("added-files-size", add_size, false);
    set("added-delete-files", add_delete_files, false);
    set("added-position-delete-files", add_pos_files, false);
    set("added-position-deletes", add_pos, false);
    set("added-equality-delete-files", add_eq_files, false);
    set("added-equality-deletes", add_eq, false);
    set("deleted-data-files", del_files, false);
    set("deleted-records", del_rows, false);
    set("removed-files-size", del_size, false);
    set("removed-delete-files", del_delete_files, false);
    set("removed-position-delete-files", del_pos_files, false);
    set("removed-position-deletes", del_pos, false);
    set("removed-equality-delete-files", del_eq_files, false);
    set("removed-equality-deletes", del_eq, false);
    let total = |key: &str, add: u64, del: u64| (prev(key) + add).saturating_sub(del);
    set("total-data-files", total("total-data-files", add_files, del_files), true);
    set("total-records", total("total-records", add_rows, del_rows), true);
    set("total-files-size", total("total-files-size", add_size, del_size), true);
    let remaining_deletes = total("total-delete-files", add_delete_files, del_delete_files);
    set("total-delete-files", remaining_deletes, true);
    // No delete file left: no deletes left, whatever an earlier writer's summary said.
    let position = if remaining_deletes == 0 { 0 } else { total("total-position-deletes", add_pos, del_pos) };
    let equality = if remaining_deletes == 0 { 0 } else { total("total-equality-deletes", add_eq, del_eq) };
    set("total-position-deletes", position, true);
    set("total-equality-deletes", equality, true);
    Summary {
        operation,
        additional_properties: props,
    }
}
