//! Executes models: DataFusion sessions over pinned Iceberg snapshots, Rust (Polars) models,
//! and watermark tracking over what a model writes.

pub mod polars_bridge;
pub mod rust_model;
pub mod session;
pub mod watermark;
