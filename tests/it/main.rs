//! Integration tests, one binary for the whole crate.

mod graph;
