//! Integration tests, one binary for the whole crate (each extra binary relinks DataFusion).

mod cli_errors;
mod demo;
mod graph;
mod incremental;
mod merge;
mod polars_bridge;
mod runs;
mod support;
