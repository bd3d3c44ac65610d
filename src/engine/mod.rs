//! Executes models: DataFusion sessions over pinned Iceberg snapshots (read-only queries) and
//! Rust (Polars) models.

pub mod json;
pub mod polars_bridge;
pub mod rust_model;
pub mod session;
