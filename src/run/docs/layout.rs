//! The DAG drawing's layout, computed once when the site is built: layers left to right in the
//! project's order (raw → marts), a node one column right of its parents in its own layer, and
//! the nodes of a column ordered by where their parents sit (two barycenter sweeps). Linear in
//! nodes and edges but for sorting each column, so a project of thousands of models lays out
//! in milliseconds and the page only draws.

use super::nodes::DocNode;

/// Node box and spacing, in drawing units (the page draws boxes this size).
pub const NODE_WIDTH: f64 = 190.0;
const COLUMN_GAP: f64 = 70.0;
const ROW_HEIGHT: f64 = 34.0;
const MARGIN: f64 = 40.0;
/// Room above the first row for the layer names.
const HEADER: f64 = 30.0;

pub(super) struct Drawing {
    pub width: f64,
    pub height: f64,
    /// `(layer, x from, x to)` for each layer that has nodes.
    pub bands: Vec<(String, f64, f64)>,
}

/// Place every node (sets `x` and `y`). `nodes` lists every node after its parents.
pub(super) fn layout(nodes: &mut [DocNode], layers: &[String]) -> Drawing {
    let rank = |layer: &str| layers.iter().position(|l| l == layer).unwrap_or(layers.len());
    // Depth inside the node's layer: one more than its deepest parent in the same layer.
    let mut depth = vec![0usize; nodes.len()];
    for i in 0..nodes.len() {
        let r = rank(&nodes[i].layer);
        depth[i] = nodes[i].parents.iter().filter(|&&p| rank(&nodes[p].layer) == r).map(|&p| depth[p] + 1).max().unwrap_or(0);
    }
    // Columns per layer, then each layer's first column.
    let mut width_of = vec![0usize; layers.len() + 1];
    for (i, n) in nodes.iter().enumerate() {
        let r = rank(&n.layer);
        width_of[r] = width_of[r].max(depth[i] + 1);
    }
    let mut first = vec![0usize; layers.len() + 1];
    let mut bands = Vec::new();
    let mut next = 0;
    for r in 0..=layers.len() {
        first[r] = next;
        if width_of[r] > 0 {
            let name = layers.get(r).cloned().unwrap_or_else(|| "other".into());
            let x = |c: usize| MARGIN + c as f64 * (NODE_WIDTH + COLUMN_GAP);
            bands.push((name, x(next) - COLUMN_GAP / 2.0 + 8.0, x(next + width_of[r]) - COLUMN_GAP / 2.0 - 8.0));
        }
        next += width_of[r];
    }
    let column: Vec<usize> = (0..nodes.len()).map(|i| first[rank(&nodes[i].layer)] + depth[i]).collect();
    let rows = order_rows(nodes, &column, next);
    let mut tallest = 0;
    for (i, n) in nodes.iter_mut().enumerate() {
        n.x = MARGIN + column[i] as f64 * (NODE_WIDTH + COLUMN_GAP);
        n.y = HEADER + MARGIN + rows[i] as f64 * ROW_HEIGHT;
        tallest = tallest.max(rows[i] + 1);
    }
    Drawing {
        width: 2.0 * MARGIN + next.max(1) as f64 * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP,
        height: HEADER + 2.0 * MARGIN + tallest.max(1) as f64 * ROW_HEIGHT,
        bands,
    }
}

/// The row of each node in its column: first in node order, then ordered by the mean row of
/// its parents (children's for a node without parents), left to right, twice.
fn order_rows(nodes: &[DocNode], column: &[usize], columns: usize) -> Vec<usize> {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); columns];
    for (i, &c) in column.iter().enumerate() {
        members[c].push(i);
    }
    let mut row = vec![0usize; nodes.len()];
    let place = |members: &[usize], row: &mut Vec<usize>| {
        for (r, &i) in members.iter().enumerate() {
            row[i] = r;
        }
    };
    for m in &members {
        place(m, &mut row);
    }
    for _ in 0..2 {
        for m in members.iter_mut() {
            let key = |i: usize| -> f64 {
                let near: &[usize] = if nodes[i].parents.is_empty() { &nodes[i].children } else { &nodes[i].parents };
                if near.is_empty() {
                    row[i] as f64
                } else {
                    near.iter().map(|&p| row[p] as f64).sum::<f64>() / near.len() as f64
                }
            };
            let mut keyed: Vec<(f64, usize)> = m.iter().map(|&i| (key(i), i)).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            *m = keyed.into_iter().map(|(_, i)| i).collect();
            place(m, &mut row);
        }
    }
    row
}
