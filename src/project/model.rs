//! Nodes of a project: SQL and Rust models, sources, seeds and data tests, as parsed from files.
//!
//! These are plain data. `graph` builds the DAG from them; `run` executes them. Nothing here
//! knows about Iceberg or DataFusion.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// How a model is materialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Materialized {
    /// Rebuilt in full on every run, committed as one `overwrite` snapshot.
    #[default]
    Table,
    /// Only new rows are computed and committed (see [`IncrementalStrategy`]).
    Incremental,
    /// Never written: inlined as a CTE into the models that reference it.
    Ephemeral,
}

impl Materialized {
    pub fn as_str(&self) -> &'static str {
        match self {
            Materialized::Table => "table",
            Materialized::Incremental => "incremental",
            Materialized::Ephemeral => "ephemeral",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "table" => Some(Materialized::Table),
            "incremental" => Some(Materialized::Incremental),
            "ephemeral" => Some(Materialized::Ephemeral),
            _ => None,
        }
    }
}

/// How an incremental model commits its new rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IncrementalStrategy {
    /// Append the new rows in one `append` snapshot.
    #[default]
    Append,
    /// Upsert on `unique_key`: copy-on-write of the files holding incoming keys, one snapshot.
    Merge,
    /// Replace every row whose range column falls in the range the batch covers, one snapshot
    /// (dbt's `delete+insert` / `insert_overwrite`).
    ReplaceRange,
}

impl IncrementalStrategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            IncrementalStrategy::Append => "append",
            IncrementalStrategy::Merge => "merge",
            IncrementalStrategy::ReplaceRange => "replace_range",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "append" => Some(IncrementalStrategy::Append),
            "merge" => Some(IncrementalStrategy::Merge),
            "replace_range" | "delete+insert" | "insert_overwrite" => {
                Some(IncrementalStrategy::ReplaceRange)
            }
            _ => None,
        }
    }
}

/// What an incremental run does when the query's columns differ from the table's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnSchemaChange {
    /// Error; `--full-refresh` rebuilds.
    #[default]
    Fail,
    /// Add new columns (nullable) in the same commit; columns the query lacks are written as null.
    AppendNewColumns,
    /// Make the table's columns the query's: add new ones, drop missing ones, same commit.
    SyncAllColumns,
}

impl OnSchemaChange {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fail" => Some(OnSchemaChange::Fail),
            "append_new_columns" => Some(OnSchemaChange::AppendNewColumns),
            "sync_all_columns" => Some(OnSchemaChange::SyncAllColumns),
            _ => None,
        }
    }
}

/// What an incremental model's watermark tracks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "column", rename_all = "snake_case")]
pub enum WatermarkSpec {
    /// The max of this output column among the rows written.
    Column(String),
    /// The source snapshots read (`watermark = "snapshot"`): the next run reads exactly the
    /// data files appended to its sources since.
    Snapshot,
}

impl WatermarkSpec {
    /// The column, or `snapshot`.
    pub fn as_str(&self) -> &str {
        match self {
            WatermarkSpec::Column(c) => c,
            WatermarkSpec::Snapshot => "snapshot",
        }
    }

    pub fn column(&self) -> Option<&str> {
        match self {
            WatermarkSpec::Column(c) => Some(c),
            WatermarkSpec::Snapshot => None,
        }
    }
}

pub use crate::lakehouse::schema::PartitionField;

/// A model's configuration, merged from `lake.toml` defaults, YAML `config:` and the SQL's `config(...)`.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ModelConfig {
    pub materialized: Materialized,
    pub incremental_strategy: IncrementalStrategy,
    pub unique_key: Vec<String>,
    /// For `merge`: when incoming rows share a key, keep the one with the greatest value of
    /// this column (otherwise duplicate keys are an error).
    pub dedupe_by: Option<String>,
    /// For `merge`: a boolean column of the output; a row where it is true deletes its key
    /// instead of upserting it. The column is not stored.
    pub delete_when: Option<String>,
    /// For `merge`: copy-on-write or merge-on-read (position deletes); `None` takes the table's
    /// `write.merge.mode`, else `[write] merge_mode`, else copy-on-write.
    pub merge_mode: Option<crate::lakehouse::writer::MergeMode>,
    /// For `replace_range`: the column whose range the batch covers (default: the watermark
    /// column, else the first partition column).
    pub range_by: Option<String>,
    pub on_schema_change: OnSchemaChange,
    /// What the watermark tracks.
    pub watermark: Option<WatermarkSpec>,
    /// For column watermarks: re-read this window before the watermark, e.g. `"2 hours"` for
    /// timestamps or `"100"` for numbers (`{{ watermark }}` renders `<value> - <lookback>`).
    pub lookback: Option<String>,
    /// Maintenance policy overrides (see `lake maintain`), as given.
    pub maintenance: Option<serde_json::Value>,
    pub partition_by: Vec<PartitionField>,
    pub tags: Vec<String>,
    pub enabled: bool,
    /// Allow this model to read from a later layer than its own.
    pub allow_back_edges: bool,
    /// Any other keys given, kept for `manifest.json` and selection (`config.<key>:<value>`).
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A reference from a model to another model (`ref`) or to a source table (`source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Dependency {
    Model { name: String, line: usize },
    Source { source: String, table: String, line: usize },
}

/// What a model runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "language", rename_all = "snake_case")]
pub enum ModelBody {
    /// Jinja-templated SQL, as read from the file.
    Sql { raw_sql: String },
    /// A Rust function registered in the binary's [`crate::engine::rust_model::Registry`].
    Rust { function: String },
}

/// A data test declared in YAML on a model, source or column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataTest {
    /// Unique name, e.g. `not_null_stg_orders_order_id`.
    pub name: String,
    pub kind: DataTestKind,
    pub column: Option<String>,
    pub severity: Severity,
    /// Optional SQL predicate applied to the tested table first (`config: {where: ...}`).
    pub where_clause: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "test", rename_all = "snake_case")]
pub enum DataTestKind {
    Unique,
    NotNull,
    AcceptedValues { values: Vec<serde_json::Value> },
    /// `to` is a model name or `source.table`; `field` the column there.
    Relationships { to: Dependency, field: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Error,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDoc {
    pub name: String,
    pub description: Option<String>,
    pub data_type: Option<String>,
}

/// A model: one Iceberg table `<layer>.<name>` (unless ephemeral).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    pub name: String,
    /// First folder under `models/`; also the Iceberg namespace.
    pub layer: String,
    /// File that defines the model, relative to the project root (`.sql`, or the `.yml` for Rust models).
    pub path: PathBuf,
    pub body: ModelBody,
    pub config: ModelConfig,
    pub depends_on: Vec<Dependency>,
    pub description: Option<String>,
    pub columns: Vec<ColumnDoc>,
    pub tests: Vec<DataTest>,
}

impl Model {
    /// `<layer>.<name>`, the Iceberg table identifier.
    pub fn table_name(&self) -> String {
        format!("{}.{}", self.layer, self.name)
    }
}

/// A table declared under `sources:`: read, never written, by models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceTable {
    /// The source name, which is also the Iceberg namespace.
    pub source: String,
    pub table: String,
    pub description: Option<String>,
    pub path: PathBuf,
    pub tests: Vec<DataTest>,
    /// What `lake source freshness` checks (none: the table is not checked).
    pub freshness: Option<Freshness>,
}

/// When a source table counts as stale.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freshness {
    pub warn_after: Option<std::time::Duration>,
    pub error_after: Option<std::time::Duration>,
    /// The column holding when a row was loaded; `None`: the table's last commit time.
    pub loaded_at_field: Option<String>,
    /// A SQL condition on the rows whose `loaded_at_field` counts.
    pub filter: Option<String>,
}

impl SourceTable {
    pub fn table_name(&self) -> String {
        format!("{}.{}", self.source, self.table)
    }
}

/// File format of a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedFormat {
    Csv,
    Ndjson,
}

/// A seed: CSV/NDJSON files under `seeds/` loaded into one raw table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seed {
    pub name: String,
    /// Target Iceberg namespace and table.
    pub namespace: String,
    pub table: String,
    pub format: SeedFormat,
    pub mode: SeedMode,
    /// Files matched by the seed's glob, relative to the project root, sorted.
    pub files: Vec<PathBuf>,
    /// Column name -> SQL type (`bigint`, `varchar`, `timestamp`, ...), in declared order.
    pub column_types: Vec<(String, String)>,
    pub path: PathBuf,
}

/// How a seed treats its files on later loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedMode {
    /// Each file is loaded once; new files are appended; a changed file is an error.
    Append,
    /// When a file is new, changed or gone, the table is reloaded from every file in one
    /// overwrite snapshot (as dbt reloads seeds).
    Replace,
}

/// A singular data test: a `.sql` file under the test path returning failing rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SingularTest {
    pub name: String,
    pub path: PathBuf,
    pub raw_sql: String,
    pub depends_on: Vec<Dependency>,
    pub severity: Severity,
}
