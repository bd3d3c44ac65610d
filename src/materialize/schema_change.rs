//! `on_schema_change` for incremental writes: the table schema an output with other columns
//! is written against, committed in the same snapshot as the data.
//!
//! - `fail`: any added or missing column is an error (`--full-refresh` rebuilds).
//! - `append_new_columns`: every existing column is kept; new output columns are appended as
//!   nullable fields with fresh ids; existing columns the output lacks are written as null.
//! - `sync_all_columns`: the table's columns become the output's (new ones added with fresh
//!   ids, missing ones dropped); columns present in both keep their id and type.
//!
//! Rows already in the table read as null for columns added here (Iceberg field ids), and rows
//! rewritten by merge or range replacement are padded with nulls the same way.

use anyhow::{Result, bail};
use arrow::datatypes::Schema as ArrowSchema;
use iceberg::spec::{NestedFieldRef, Schema};
use iceberg::table::Table;

use super::SchemaChangePolicy;
use crate::lakehouse::commit::MetadataChanges;
use crate::lakehouse::schema::{column_changes, evolve_schema};

/// The metadata changes an incremental write of `output` to `table` brings under `policy`.
pub fn incremental_changes(
    table: &Table,
    output: &ArrowSchema,
    policy: SchemaChangePolicy,
) -> Result<MetadataChanges> {
    let metadata = table.metadata();
    let current = metadata.current_schema();
    let (added, removed) = column_changes(current, output);
    if added.is_empty() && removed.is_empty() {
        return Ok(MetadataChanges::default());
    }
    let ident = table.identifier();
    match policy {
        SchemaChangePolicy::Fail => {
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("adds column(s) {}", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("lacks column(s) {}", removed.join(", ")));
            }
            bail!(
                "the output {} compared with table {} (on_schema_change = fail); run with --full-refresh to rebuild it",
                parts.join(" and "),
                ident
            );
        }
        SchemaChangePolicy::AppendNewColumns => {
            if added.is_empty() {
                // Only missing columns: they are written as null, the schema stays.
                return Ok(MetadataChanges::default());
            }
            let fresh = fresh_fields(table, output)?;
            let mut fields: Vec<NestedFieldRef> = current.as_struct().fields().to_vec();
            fields.extend(fresh.into_iter().filter(|f| added.contains(&f.name)));
            let schema = Schema::builder()
                .with_fields(fields)
                .with_identifier_field_ids(current.identifier_field_ids())
                .build()?;
            Ok(MetadataChanges {
                schema: Some(schema),
                partition_spec: None,
            })
        }
        SchemaChangePolicy::SyncAllColumns => {
            // A dropped column must not be a partition source of the current spec.
            let spec = metadata.default_partition_spec();
            for name in &removed {
                if let Some(field) = current.field_by_name(name)
                    && spec.fields().iter().any(|p| p.source_id == field.id)
                {
                    bail!(
                        "the output lacks column {name}, which partitions table {ident}; sync_all_columns cannot drop it, run with --full-refresh to rebuild the table"
                    );
                }
            }
            let fresh = fresh_fields(table, output)?;
            let fields: Vec<NestedFieldRef> = fresh
                .into_iter()
                .map(|f| match current.as_struct().field_by_name(&f.name) {
                    Some(existing) => existing.clone(),
                    None => f,
                })
                .collect();
            let kept: Vec<i32> = fields.iter().map(|f| f.id).collect();
            let identifiers: Vec<i32> = current
                .identifier_field_ids()
                .filter(|id| kept.contains(id))
                .collect();
            let schema = Schema::builder()
                .with_fields(fields)
                .with_identifier_field_ids(identifiers)
                .build()?;
            Ok(MetadataChanges {
                schema: Some(schema),
                partition_spec: None,
            })
        }
    }
}

/// The output's columns as Iceberg fields, with fresh ids (above the table's last id) for new
/// or retyped columns.
fn fresh_fields(table: &Table, output: &ArrowSchema) -> Result<Vec<NestedFieldRef>> {
    let metadata = table.metadata();
    let evolved = evolve_schema(
        output,
        Some((metadata.current_schema(), metadata.last_column_id())),
    )?;
    Ok(evolved.as_struct().fields().to_vec())
}
