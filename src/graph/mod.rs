//! The model DAG and dbt's node-selection grammar.
//!
//! This module owns two things:
//! - [`Graph`]: the dependency graph built from parsed [`Model`]s and declared
//!   [`SourceTable`]s. Building it resolves every `ref()`/`source()`, enforces layer order
//!   and rejects cycles, with errors that name the file and line to fix.
//! - [`select`]: dbt's `--select`/`--exclude` grammar (`+m`, `m+2`, `@m`, `tag:x`,
//!   `path:...`, `layer:...`, `config.<key>:<value>`, `source:...`, unions and
//!   intersections), returning nodes in [`Graph::run_order`].
//!
//! It takes parsed nodes only and knows nothing of Iceberg, DataFusion or files on disk.
//!
//! [`Model`]: crate::project::model::Model
//! [`SourceTable`]: crate::project::model::SourceTable

mod dag;
mod selector;

pub use dag::{Graph, GraphError};
pub use selector::{SelectionError, select};

/// The candidate closest to `target`, if any is close enough to be a plausible typo.
pub fn did_you_mean<'a>(target: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    const THRESHOLD: f64 = 0.8;
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        if candidate == target {
            continue;
        }
        let score = strsim::jaro_winkler(target, candidate);
        let better = match best {
            None => true,
            // Ties go to the alphabetically first candidate, so the hint is deterministic.
            Some((s, c)) => score > s || (score == s && candidate < c),
        };
        if score >= THRESHOLD && better {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// `; did you mean 'x'?` or nothing.
pub fn hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean '{s}'?"),
        None => String::new(),
    }
}
