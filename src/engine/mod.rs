//! Executes models: DataFusion sessions over pinned Iceberg snapshots, and Rust (Polars) models.

pub mod polars_bridge;
pub mod rust_model;
