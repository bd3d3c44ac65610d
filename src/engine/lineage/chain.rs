//! Lineage across tables: every table's [`TableLineage`], walked upstream (where a column's
//! values come from, to the sources) or downstream (every column fed by it), as trees.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Edge, Kind, TableLineage};

/// Which way to walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Upstream,
    Downstream,
}

/// The lineage of every table of a project, and why a table has none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lineage {
    /// By `namespace.table`.
    pub tables: BTreeMap<String, TableLineage>,
    /// Tables whose lineage could not be computed, with the reason.
    pub errors: BTreeMap<String, String>,
}

/// One column in a lineage tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageNode {
    /// `namespace.table`.
    pub table: String,
    /// The column; `*` for every column of the table.
    pub column: String,
    /// How this column relates to its parent in the tree (upstream: how the parent uses it;
    /// downstream: how it uses the parent); null at the root.
    pub kind: Option<Kind>,
    /// Ephemeral models the value passed through between the parent and this column.
    pub via: Vec<String>,
    /// Upstream only: the columns that decide which rows this column has (filter, join and
    /// group keys), not walked further.
    pub indirect: Vec<Edge>,
    /// Why the walk stops here, when it is not a source table (e.g. a model that does not plan).
    pub note: Option<String>,
    pub children: Vec<LineageNode>,
}

impl Lineage {
    /// The column names of `table`, when its lineage is known.
    pub fn columns(&self, table: &str) -> Option<Vec<&str>> {
        self.tables.get(table).map(|t| t.columns.iter().map(|c| c.column.as_str()).collect())
    }

    /// The tree of where `table.column`'s values come from.
    pub fn upstream(&self, table: &str, column: &str) -> LineageNode {
        self.up(table, column, None, Vec::new())
    }

    fn up(&self, table: &str, column: &str, kind: Option<Kind>, via: Vec<String>) -> LineageNode {
        let mut node = leaf(table, column, kind, via);
        let Some(t) = self.tables.get(table) else {
            node.note = self.errors.get(table).cloned();
            return node;
        };
        if let Some(c) = t.columns.iter().find(|c| c.column == column) {
            node.indirect = c.indirect.clone();
            node.children = c.sources.iter().map(|e| self.up(&e.table, &e.column, Some(e.kind), e.via.clone())).collect();
        }
        node
    }

    /// The tree of every column `table.column` feeds. A column whose rows it only decides
    /// (filter, join or group key) appears once per table as `table.*`, not walked further.
    pub fn downstream(&self, table: &str, column: &str) -> LineageNode {
        self.down(table, column, None, Vec::new())
    }

    fn down(&self, table: &str, column: &str, kind: Option<Kind>, via: Vec<String>) -> LineageNode {
        let mut node = leaf(table, column, kind, via);
        let fed = |e: &Edge| e.table == table && (e.column == column || e.column == "*");
        for (name, t) in &self.tables {
            let mut indirect: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
            for c in &t.columns {
                for e in c.sources.iter().filter(|e| fed(e)) {
                    node.children.push(self.down(name, &c.column, Some(e.kind), e.via.clone()));
                }
                for e in c.indirect.iter().filter(|e| fed(e)) {
                    let via = indirect.entry(e.kind).or_default();
                    via.extend(e.via.iter().cloned());
                }
            }
            for (kind, mut via) in indirect {
                via.sort();
                via.dedup();
                node.children.push(leaf(name, "*", Some(kind), via));
            }
        }
        node
    }
}

fn leaf(table: &str, column: &str, kind: Option<Kind>, via: Vec<String>) -> LineageNode {
    LineageNode {
        table: table.to_string(),
        column: column.to_string(),
        kind,
        via,
        indirect: Vec::new(),
        note: None,
        children: Vec::new(),
    }
}

/// A lineage tree as indented text, one column a line:
///
/// ```text
/// marts.customer_360.lifetime_value
/// │   rows: join analytics.customer_metrics.entity_id
/// └── direct analytics.customer_metrics.net_revenue
///     └── aggregate staging.stg_shopify_orders.total_amount
/// ```
pub fn render_text(root: &LineageNode) -> String {
    let mut out = format!("{}.{}{}\n", root.table, root.column, note(root));
    render_children(root, "", &mut out);
    out
}

fn render_children(node: &LineageNode, prefix: &str, out: &mut String) {
    if !node.indirect.is_empty() {
        let bar = if node.children.is_empty() { " " } else { "│" };
        let uses: Vec<String> = node
            .indirect
            .iter()
            .map(|e| format!("{} {}.{}{}", e.kind.as_str(), e.table, e.column, via(&e.via)))
            .collect();
        out.push_str(&format!("{prefix}{bar}   rows: {}\n", uses.join(", ")));
    }
    for (i, child) in node.children.iter().enumerate() {
        let last = i + 1 == node.children.len();
        let kind = child.kind.map(Kind::as_str).unwrap_or("");
        out.push_str(&format!(
            "{prefix}{} {kind} {}.{}{}{}\n",
            if last { "└──" } else { "├──" },
            child.table,
            child.column,
            via(&child.via),
            note(child)
        ));
        render_children(child, &format!("{prefix}{}", if last { "    " } else { "│   " }), out);
    }
}

fn via(models: &[String]) -> String {
    if models.is_empty() { String::new() } else { format!(" (via {})", models.join(", ")) }
}

fn note(node: &LineageNode) -> String {
    node.note.as_ref().map(|n| format!("  [lineage unknown: {n}]")).unwrap_or_default()
}
