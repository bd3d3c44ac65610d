//! Walking a logical plan bottom-up: each node's output columns as sets of source columns,
//! plus the columns that decide its rows (filters, join keys, group keys).

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::utils::grouping_set_to_exprlist;
use datafusion::logical_expr::{Distinct, Expr, JoinType, LogicalPlan, Subquery};

use super::{ColumnLineage, Edge, Kind};

/// `(table, column)`.
type Key = (String, String);

/// How a value reached a column: its kind and the ephemeral models it passed through.
#[derive(Debug, Clone, Default)]
struct Hop {
    kind: Option<Kind>,
    via: BTreeSet<String>,
}

/// One output column: its sources.
type Col = BTreeMap<Key, Hop>;

/// A plan node's output columns and the columns that decide its rows.
#[derive(Debug, Clone, Default)]
struct Node {
    cols: Vec<Col>,
    indirect: BTreeMap<(Key, Kind), BTreeSet<String>>,
}

impl Node {
    fn absorb_indirect(&mut self, other: &Node) {
        for (k, via) in &other.indirect {
            self.indirect.entry(k.clone()).or_default().extend(via.iter().cloned());
        }
    }

    /// Every source of `edges` as an indirect use of kind `kind`.
    fn add_indirect(&mut self, edges: &Col, kind: Kind) {
        for (key, hop) in edges {
            self.indirect.entry((key.clone(), kind)).or_default().extend(hop.via.iter().cloned());
        }
    }
}

/// Merge `hop` (of kind `kind`) into `col` at `key`: the stronger kind wins, vias add up.
fn merge(col: &mut Col, key: Key, kind: Kind, via: &BTreeSet<String>) {
    let entry = col.entry(key).or_default();
    entry.kind = Some(entry.kind.map_or(kind, |k| k.max(kind)));
    entry.via.extend(via.iter().cloned());
}

/// The lineage of each output column of `plan`, in output order. `ephemeral` maps a CTE or
/// subquery alias to the ephemeral model it inlines (if it is one).
pub fn analyze(plan: &LogicalPlan, ephemeral: &dyn Fn(&str) -> Option<String>) -> Vec<ColumnLineage> {
    let node = walk(plan, ephemeral);
    plan.schema()
        .fields()
        .iter()
        .zip(node.cols)
        .map(|(field, col)| {
            let sources: Vec<Edge> = col.iter().map(|(k, h)| edge(k, h.kind.unwrap_or(Kind::Direct), &h.via)).collect();
            let indirect: Vec<Edge> = node
                .indirect
                .iter()
                .filter(|((k, _), _)| !col.contains_key(k))
                .map(|((k, kind), via)| edge(k, *kind, via))
                .collect();
            ColumnLineage { column: field.name().clone(), sources, indirect }
        })
        .collect()
}

fn edge(key: &Key, kind: Kind, via: &BTreeSet<String>) -> Edge {
    Edge { table: key.0.clone(), column: key.1.clone(), kind, via: via.iter().cloned().collect() }
}

/// One input of a node: its schema and lineage.
struct Input<'a> {
    schema: &'a DFSchema,
    node: &'a Node,
}

fn walk(plan: &LogicalPlan, eph: &dyn Fn(&str) -> Option<String>) -> Node {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let table = match scan.table_name.schema() {
                Some(ns) => format!("{ns}.{}", scan.table_name.table()),
                None => scan.table_name.table().to_string(),
            };
            let cols = scan
                .projected_schema
                .fields()
                .iter()
                .map(|f| {
                    let mut col = Col::new();
                    merge(&mut col, (table.clone(), f.name().clone()), Kind::Direct, &BTreeSet::new());
                    col
                })
                .collect();
            let mut node = Node { cols, indirect: BTreeMap::new() };
            let input = Node { cols: node.cols.clone(), indirect: BTreeMap::new() };
            for f in &scan.filters {
                let (edges, sub) = expr_edges(f, &[Input { schema: &scan.projected_schema, node: &input }], eph);
                node.add_indirect(&edges, Kind::Filter);
                node.absorb_indirect(&sub);
            }
            node
        }
        LogicalPlan::Projection(p) => project(&p.expr, &p.input, eph),
        LogicalPlan::Filter(f) => {
            let mut node = walk(&f.input, eph);
            let (edges, sub) = expr_edges(&f.predicate, &[Input { schema: f.input.schema(), node: &node }], eph);
            node.add_indirect(&edges, Kind::Filter);
            node.absorb_indirect(&sub);
            node
        }
        LogicalPlan::Aggregate(a) => aggregate(a, eph),
        LogicalPlan::Window(w) => {
            let input = walk(&w.input, eph);
            let mut node = input.clone();
            for e in &w.window_expr {
                let (edges, sub) = expr_edges(e, &[Input { schema: w.input.schema(), node: &input }], eph);
                node.cols.push(edges);
                node.absorb_indirect(&sub);
            }
            node
        }
        LogicalPlan::Join(j) => join(j, eph),
        LogicalPlan::Union(u) => {
            let mut node = Node::default();
            for input in &u.inputs {
                let branch = walk(input, eph);
                if node.cols.is_empty() {
                    node.cols = vec![Col::new(); branch.cols.len()];
                }
                for (out, col) in node.cols.iter_mut().zip(&branch.cols) {
                    for (k, h) in col {
                        merge(out, k.clone(), h.kind.unwrap_or(Kind::Direct), &h.via);
                    }
                }
                node.absorb_indirect(&branch);
            }
            node
        }
        LogicalPlan::SubqueryAlias(s) => {
            let mut node = walk(&s.input, eph);
            if let Some(model) = eph(s.alias.table()) {
                node.add_via(&model);
            }
            node
        }
        LogicalPlan::Distinct(Distinct::On(d)) => project(&d.select_expr, &d.input, eph),
        LogicalPlan::Values(v) => Node { cols: vec![Col::new(); v.schema.fields().len()], indirect: BTreeMap::new() },
        LogicalPlan::EmptyRelation(e) => Node { cols: vec![Col::new(); e.schema.fields().len()], indirect: BTreeMap::new() },
        other => fallback(other, eph),
    }
}

impl Node {
    /// Mark every source as having passed through the ephemeral model `model`.
    fn add_via(&mut self, model: &str) {
        for col in &mut self.cols {
            for hop in col.values_mut() {
                hop.via.insert(model.to_string());
            }
        }
        for via in self.indirect.values_mut() {
            via.insert(model.to_string());
        }
    }
}

/// Sort, Limit, Distinct, Repartition and the rest: a node with the same columns as its one
/// input passes them through; anything else (Unnest, RecursiveQuery, extensions) is read
/// conservatively, every input column feeding every output column as an expression.
fn fallback(plan: &LogicalPlan, eph: &dyn Fn(&str) -> Option<String>) -> Node {
    let inputs: Vec<Node> = plan.inputs().into_iter().map(|p| walk(p, eph)).collect();
    let width = plan.schema().fields().len();
    if let [only] = inputs.as_slice()
        && only.cols.len() == width
        && plan.inputs()[0].schema().fields().iter().map(|f| f.name()).eq(plan.schema().fields().iter().map(|f| f.name()))
    {
        return only.clone();
    }
    let mut all = Col::new();
    let mut node = Node::default();
    for input in &inputs {
        for col in &input.cols {
            for (k, h) in col {
                merge(&mut all, k.clone(), Kind::compose(Kind::Expression, h.kind.unwrap_or(Kind::Direct)), &h.via);
            }
        }
        node.absorb_indirect(input);
    }
    node.cols = vec![all; width];
    node
}

fn project(exprs: &[Expr], input_plan: &LogicalPlan, eph: &dyn Fn(&str) -> Option<String>) -> Node {
    let input = walk(input_plan, eph);
    let mut node = Node { cols: Vec::new(), indirect: input.indirect.clone() };
    for e in exprs {
        let (edges, sub) = expr_edges(e, &[Input { schema: input_plan.schema(), node: &input }], eph);
        node.cols.push(edges);
        node.absorb_indirect(&sub);
    }
    node
}

fn aggregate(a: &datafusion::logical_expr::Aggregate, eph: &dyn Fn(&str) -> Option<String>) -> Node {
    let input = walk(&a.input, eph);
    let inputs = [Input { schema: a.input.schema(), node: &input }];
    let mut node = Node { cols: Vec::new(), indirect: input.indirect.clone() };
    let groups = grouping_set_to_exprlist(&a.group_expr).unwrap_or_default();
    for g in &groups {
        let (edges, sub) = expr_edges(g, &inputs, eph);
        node.add_indirect(&edges, Kind::GroupBy);
        node.absorb_indirect(&sub);
        node.cols.push(edges);
    }
    // A grouping set adds the internal grouping id, which reads no column.
    let width = a.schema.fields().len();
    while node.cols.len() + a.aggr_expr.len() < width {
        node.cols.push(Col::new());
    }
    for e in &a.aggr_expr {
        let (edges, sub) = expr_edges(e, &inputs, eph);
        node.absorb_indirect(&sub);
        node.cols.push(edges);
    }
    node
}

fn join(j: &datafusion::logical_expr::Join, eph: &dyn Fn(&str) -> Option<String>) -> Node {
    let left = walk(&j.left, eph);
    let right = walk(&j.right, eph);
    let mut node = Node::default();
    node.absorb_indirect(&left);
    node.absorb_indirect(&right);
    let l = Input { schema: j.left.schema(), node: &left };
    let r = Input { schema: j.right.schema(), node: &right };
    for (le, re) in &j.on {
        let (edges, sub) = expr_edges(le, std::slice::from_ref(&l), eph);
        node.add_indirect(&edges, Kind::Join);
        node.absorb_indirect(&sub);
        let (edges, sub) = expr_edges(re, std::slice::from_ref(&r), eph);
        node.add_indirect(&edges, Kind::Join);
        node.absorb_indirect(&sub);
    }
    if let Some(f) = &j.filter {
        let (edges, sub) = expr_edges(f, &[l, r], eph);
        node.add_indirect(&edges, Kind::Join);
        node.absorb_indirect(&sub);
    }
    node.cols = match j.join_type {
        JoinType::LeftSemi | JoinType::LeftAnti => left.cols.clone(),
        JoinType::RightSemi | JoinType::RightAnti => right.cols.clone(),
        _ => left.cols.iter().chain(&right.cols).cloned().collect(),
    };
    // Mark joins add a boolean column: whether the row found a match.
    while node.cols.len() < j.schema.fields().len() {
        node.cols.push(Col::new());
    }
    node
}

/// The sources of `expr` over `inputs` (each with the kind the expression applies), and a node
/// holding what its subqueries read (their columns and their own indirect uses).
fn expr_edges(expr: &Expr, inputs: &[Input], eph: &dyn Fn(&str) -> Option<String>) -> (Col, Node) {
    let kind = classify(expr);
    let mut col = Col::new();
    for c in expr.column_refs() {
        if let Some(source) = resolve(c, inputs) {
            for (k, h) in source {
                merge(&mut col, k.clone(), Kind::compose(kind, h.kind.unwrap_or(Kind::Direct)), &h.via);
            }
        }
    }
    let mut sub = Node::default();
    let _ = expr.apply(|e| {
        let subquery: Option<(&Subquery, bool)> = match e {
            Expr::ScalarSubquery(s) => Some((s, true)),
            Expr::InSubquery(s) => Some((&s.subquery, true)),
            Expr::SetComparison(s) => Some((&s.subquery, true)),
            Expr::Exists(s) => Some((&s.subquery, false)),
            _ => None,
        };
        if let Some((s, values)) = subquery {
            let inner = walk(&s.subquery, eph);
            sub.absorb_indirect(&inner);
            if values {
                // A scalar subquery's value flows into the expression.
                for c in &inner.cols {
                    for (k, h) in c {
                        merge(&mut col, k.clone(), Kind::compose(kind.max(Kind::Expression), h.kind.unwrap_or(Kind::Direct)), &h.via);
                    }
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (col, sub)
}

/// Direct for a bare column (aliased or cast), else the strongest function it holds.
fn classify(expr: &Expr) -> Kind {
    let mut bare = expr;
    loop {
        bare = match bare {
            Expr::Alias(a) => &a.expr,
            Expr::Cast(c) => &c.expr,
            Expr::TryCast(c) => &c.expr,
            _ => break,
        };
    }
    if matches!(bare, Expr::Column(_)) {
        return Kind::Direct;
    }
    let mut kind = Kind::Expression;
    let _ = bare.apply(|e| {
        match e {
            Expr::AggregateFunction(_) => kind = kind.max(Kind::Aggregate),
            Expr::WindowFunction(_) => kind = kind.max(Kind::Window),
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    kind
}

fn resolve<'a>(c: &Column, inputs: &'a [Input]) -> Option<&'a Col> {
    inputs.iter().find_map(|i| i.schema.maybe_index_of_column(c).and_then(|idx| i.node.cols.get(idx)))
}
