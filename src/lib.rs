//! `lake`: keep an Apache Iceberg lakehouse fresh with templated SQL and Rust models.
//!
//! Data flows one way through these modules:
//! command line ([`cli`]) → project ([`project`]: config, models, templates) → graph ([`graph`]:
//! DAG, selection) → engine ([`engine`]: DataFusion over pinned snapshots, Rust models) →
//! materialize ([`materialize`]: model output to one commit) → lakehouse ([`lakehouse`]:
//! catalogs, writers, commits, watermarks). [`run`] schedules the work and writes artifacts.

pub mod cli;
pub mod engine;
pub mod graph;
pub mod lakehouse;
pub mod materialize;
pub mod project;
pub mod run;
