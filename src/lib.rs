//! `lake`: keep an Apache Iceberg lakehouse fresh with templated SQL and Rust models.
//!
//! Data flows one way through these modules:
//! command line ([`cli`]) → project ([`project`]: config, models, templates) → graph ([`graph`]:
//! DAG, selection) → engine ([`engine`]: DataFusion over pinned snapshots, Rust models) →
//! materialize ([`materialize`]: model output to one commit) → lakehouse ([`lakehouse`]:
//! catalogs, writers, commits, watermarks). [`run`] schedules the work and writes artifacts.
//! [`ingest`] (the streaming raw layer: sources to raw tables, exactly once) writes through
//! materialize and lakehouse like models do.
//! [`resolve`] (entity resolution: normalize, block, compare, cluster, stable ids) stands on
//! its own; the engine exposes it as the built-in Rust model `resolve_entities`.

pub mod cli;
pub mod csv;
pub mod engine;
pub mod graph;
pub mod ingest;
pub mod lakehouse;
pub mod materialize;
pub mod project;
pub mod resolve;
pub mod run;
