//! Integration tests, one binary for the whole crate (each extra binary relinks DataFusion).

mod airflow;
mod atomicity;
mod backends;
mod cli_errors;
mod concurrency;
mod crash;
mod demo;
mod doctor;
mod faults;
mod graph;
mod hardening;
mod incremental;
mod ingest;
mod kafka;
mod layering;
mod maintenance;
mod merge;
mod polars_bridge;
mod project;
mod property;
mod resolve;
mod rest;
mod runs;
mod s3_warehouse;
mod support;
mod webhooks;
