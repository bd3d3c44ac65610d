//! Column lineage: for every output column of a query, the source columns it derives from and
//! how, read from DataFusion's (unoptimized) logical plan; and lineage chained across tables.
//!
//! The invariant: lineage names only real tables (`namespace.table`) and their columns. A CTE,
//! subquery, union branch or ephemeral model is traced through to the tables under it (an
//! ephemeral model it passed through is kept in the edge's `via`).
//!
//! - [`analyze`]: a [`LogicalPlan`] → one [`ColumnLineage`] per output column. `sources` are
//!   the columns whose values flow into the column ([`Kind::Direct`] copy, rename or cast;
//!   [`Kind::Expression`]; [`Kind::Aggregate`]; [`Kind::Window`]); `indirect` are columns that
//!   decide which rows there are ([`Kind::Filter`], [`Kind::Join`], [`Kind::GroupBy`]), minus
//!   those already among `sources`.
//! - [`opaque`]: a table whose code cannot be read (a Rust model): every input → every output.
//! - [`Lineage`]: the [`TableLineage`] of every table of a project, walked [`Lineage::upstream`]
//!   or [`Lineage::downstream`] into [`LineageNode`] trees (serializable for `--output json`,
//!   docs and OpenLineage facets; [`render_text`] for people).
//!
//! ```no_run
//! # async fn f(ctx: datafusion::prelude::SessionContext) -> anyhow::Result<()> {
//! let plan = ctx.state().create_logical_plan("select id, sum(amount) as total from raw.orders group by id").await?;
//! let columns = lake::engine::lineage::analyze(&plan, &|_| None);
//! assert_eq!(columns[1].sources[0].kind, lake::engine::lineage::Kind::Aggregate);
//! # Ok(()) }
//! ```

mod chain;
mod plan;

use serde::{Deserialize, Serialize};

pub use chain::{Direction, Lineage, LineageNode, render_text};
pub use datafusion::logical_expr::LogicalPlan;
pub use plan::analyze;

/// How a column relates to a source column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A copy, rename or cast of the source column.
    Direct,
    /// Computed from it (functions, arithmetic, CASE, COALESCE, ...).
    Expression,
    /// A window function's argument, partition or order column.
    Window,
    /// An aggregate function's argument.
    Aggregate,
    /// Opaque code (a Rust model) reads it.
    Opaque,
    /// Indirect: a filter (WHERE, HAVING, a subquery in one) reads it.
    Filter,
    /// Indirect: a join key or join condition reads it.
    Join,
    /// Indirect: a GROUP BY key.
    GroupBy,
}

impl Kind {
    /// Whether the column only decides which rows there are (not their values).
    pub fn is_indirect(self) -> bool {
        matches!(self, Kind::Filter | Kind::Join | Kind::GroupBy)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Expression => "expression",
            Kind::Window => "window",
            Kind::Aggregate => "aggregate",
            Kind::Opaque => "opaque",
            Kind::Filter => "filter",
            Kind::Join => "join",
            Kind::GroupBy => "group_by",
        }
    }

    /// The kind of `outer` applied to a value of kind `inner`: the stronger transformation
    /// (direct < expression < window < aggregate; opaque wins).
    pub(crate) fn compose(outer: Kind, inner: Kind) -> Kind {
        outer.max(inner)
    }
}

/// One source column of a column, and how it is used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Edge {
    /// `namespace.table`.
    pub table: String,
    /// The column, or `*` for every column (an opaque model's inputs).
    pub column: String,
    pub kind: Kind,
    /// Ephemeral models the value passed through on the way, sorted.
    #[serde(default)]
    pub via: Vec<String>,
}

/// The lineage of one output column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnLineage {
    pub column: String,
    /// Columns whose values flow into this one.
    pub sources: Vec<Edge>,
    /// Columns that decide which rows there are (filter, join and group keys).
    pub indirect: Vec<Edge>,
}

/// A table's columns and their lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableLineage {
    /// `namespace.table`.
    pub table: String,
    /// `sql` (a SQL model, read from its plan), `rust` (a Rust model: opaque, or as its
    /// `lineage:` config declares) or `source`.
    pub kind: String,
    pub columns: Vec<ColumnLineage>,
}

/// An opaque model's lineage: each of `outputs` (or `*` when they are unknown) derives from
/// every column of every one of `inputs`.
pub fn opaque(table: &str, inputs: &[String], outputs: &[String]) -> TableLineage {
    let sources: Vec<Edge> = inputs
        .iter()
        .map(|t| Edge { table: t.clone(), column: "*".into(), kind: Kind::Opaque, via: Vec::new() })
        .collect();
    let outputs = if outputs.is_empty() { vec!["*".to_string()] } else { outputs.to_vec() };
    TableLineage {
        table: table.to_string(),
        kind: "rust".into(),
        columns: outputs
            .into_iter()
            .map(|column| ColumnLineage { column, sources: sources.clone(), indirect: Vec::new() })
            .collect(),
    }
}
