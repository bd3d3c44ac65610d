//! Executes models: DataFusion sessions over pinned Iceberg snapshots (read-only queries) and
//! Rust (Polars) models; column lineage read from the query plans ([`lineage`]).

mod first_per_group;
pub mod json;
pub mod lineage;
pub mod polars_bridge;
pub mod rust_model;
mod scan;
pub mod session;
