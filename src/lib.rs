//! `lake`: keep an Apache Iceberg lakehouse fresh with templated SQL and Rust models.
//!
//! Data flows one way through these modules:
//! command line ([`cli`]) → project ([`project`]: config, models, templates) → graph ([`graph`]:
//! DAG, selection) → engine ([`engine`]: DataFusion plans over pinned snapshots, Rust models) →
//! lakehouse ([`lakehouse`]: catalogs, writers, commits, watermarks), with [`run`] scheduling
//! the work and writing artifacts.

pub mod engine;
pub mod project;

