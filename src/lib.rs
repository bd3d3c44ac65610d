//! `lake`: keep an Apache Iceberg lakehouse fresh with templated SQL and Rust models.
//!
//! Data flows one way, and no module uses one above it (`tests/it/layering.rs` checks this):
//!
//! ```text
//! cli                         the command line: one module per command group, exit codes
//!  └─ run                     scheduling, data tests, seeds, artifacts, progress
//!      ├─ graph ── project    the DAG and selection │ lake.toml, models, templates
//!      ├─ engine              DataFusion over pinned snapshots (read-only), Rust models
//!      └─ materialize         model output → one commit; watermarks
//!          └─ lakehouse       catalogs, storage, writers, snapshot commits, maintenance, faults
//! ingest   beside run: sources → raw tables through materialize and lakehouse
//! resolve  beside run: entity resolution; its model adapter uses engine's Rust-model context
//! builtins the Rust models shipped in the binary (engine's registry + resolve)
//! csv      the tolerant CSV reader ingest and resolve share
//! demo     the demo's webhook event generator (signs through ingest's webhook schemes)
//! ```
//!
//! [`lakehouse`] knows nothing of models; [`graph`] knows nothing of Iceberg.

pub mod builtins;
pub mod cli;
pub mod csv;
pub mod demo;
pub mod engine;
pub mod graph;
pub mod ingest;
pub mod lakehouse;
pub mod materialize;
pub mod project;
pub mod resolve;
pub mod run;
