//! The dependency graph of models: edges point from a parent (the model read) to its child.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::{did_you_mean, hint};
use crate::project::model::{Dependency, Model, SourceTable};

/// Why a set of models does not form a valid graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// Models depend on each other in a loop; `path` lists table names in edge order,
    /// the first repeated at the end.
    Cycle { path: Vec<String> },
    /// A `ref()` names no model.
    UnknownRef {
        path: PathBuf,
        line: usize,
        name: String,
        suggestion: Option<String>,
    },
    /// A `source()` names no declared source table.
    UnknownSource {
        path: PathBuf,
        line: usize,
        source: String,
        table: String,
        suggestion: Option<String>,
    },
    /// A model reads from a later layer without `allow_back_edges`.
    BackEdge {
        path: PathBuf,
        line: usize,
        model: String,
        parent: String,
        parent_layer: String,
    },
    /// Layers read each other (models with `allow_back_edges`), so they cannot run one
    /// layer at a time; `layers` are those on or behind the cycle, by name.
    LayerCycle { layers: Vec<String> },
    /// Two models share a name, so `ref()` would be ambiguous.
    DuplicateModel {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::Cycle { path } => write!(f, "dependency cycle: {}", path.join(" -> ")),
            GraphError::UnknownRef {
                path,
                line,
                name,
                suggestion,
            } => write!(
                f,
                "{}:{line}: ref('{name}') names no model{}",
                path.display(),
                hint(suggestion)
            ),
            GraphError::UnknownSource {
                path,
                line,
                source,
                table,
                suggestion,
            } => write!(
                f,
                "{}:{line}: source('{source}','{table}') names no declared source table{}",
                path.display(),
                hint(suggestion)
            ),
            GraphError::BackEdge {
                path,
                line,
                model,
                parent,
                parent_layer,
            } => write!(
                f,
                "{}:{line}: {model} reads {parent} from a later layer ({parent_layer}); models may \
                 read only from their own or earlier layers (set allow_back_edges = true in the \
                 model's config to permit it)",
                path.display()
            ),
            GraphError::LayerCycle { layers } => write!(
                f,
                "layers {} read each other (through models with allow_back_edges), so they cannot \
                 run one layer at a time; run per model instead",
                layers.join(", ")
            ),
            GraphError::DuplicateModel {
                name,
                first,
                second,
            } => write!(
                f,
                "two models are named '{name}': {} and {}; model names must be unique",
                first.display(),
                second.display()
            ),
        }
    }
}

impl std::error::Error for GraphError {}

/// The DAG of enabled models. Node `i` is `models()[i]`; an edge runs from a parent to each
/// model that reads it.
#[derive(Debug, Clone)]
pub struct Graph {
    models: Vec<Model>,
    dag: DiGraph<(), ()>,
    by_name: HashMap<String, usize>,
    layers: Vec<String>,
}

impl Graph {
    /// Build the graph, resolving every `ref()` and `source()`.
    ///
    /// `models`: all enabled models. `sources`: declared source tables. `layers`: layer names
    /// in order (earlier layers first); a model may read only from its own or earlier layers
    /// unless `model.config.allow_back_edges`. Layers not listed are not checked for order
    /// and run after listed ones on ties.
    pub fn build(
        models: Vec<Model>,
        sources: &[SourceTable],
        layers: &[String],
    ) -> Result<Graph, GraphError> {
        let mut by_name: HashMap<String, usize> = HashMap::with_capacity(models.len());
        for (idx, model) in models.iter().enumerate() {
            if let Some(&first) = by_name.get(&model.name) {
                return Err(GraphError::DuplicateModel {
                    name: model.name.clone(),
                    first: models[first].path.clone(),
                    second: model.path.clone(),
                });
            }
            by_name.insert(model.name.clone(), idx);
        }

        let declared: HashSet<(&str, &str)> = sources
            .iter()
            .map(|s| (s.source.as_str(), s.table.as_str()))
            .collect();
        let rank = |layer: &str| layers.iter().position(|l| l == layer);

        let mut dag = DiGraph::with_capacity(models.len(), models.len());
        for _ in &models {
            dag.add_node(());
        }
        for (child, model) in models.iter().enumerate() {
            for dep in &model.depends_on {
                match dep {
                    Dependency::Model { name, line } => {
                        let Some(&parent) = by_name.get(name) else {
                            return Err(GraphError::UnknownRef {
                                path: model.path.clone(),
                                line: *line,
                                name: name.clone(),
                                suggestion: did_you_mean(
                                    name,
                                    models.iter().map(|m| m.name.as_str()),
                                ),
                            });
                        };
                        let parent_model = &models[parent];
                        if let (Some(own), Some(theirs)) =
                            (rank(&model.layer), rank(&parent_model.layer))
                            && theirs > own
                            && !model.config.allow_back_edges
                        {
                            return Err(GraphError::BackEdge {
                                path: model.path.clone(),
                                line: *line,
                                model: model.table_name(),
                                parent: parent_model.table_name(),
                                parent_layer: parent_model.layer.clone(),
                            });
                        }
                        dag.update_edge(NodeIndex::new(parent), NodeIndex::new(child), ());
                    }
                    Dependency::Source {
                        source,
                        table,
                        line,
                    } => {
                        if !declared.contains(&(source.as_str(), table.as_str())) {
                            let names: Vec<String> =
                                sources.iter().map(SourceTable::table_name).collect();
                            let wanted = format!("{source}.{table}");
                            return Err(GraphError::UnknownSource {
                                path: model.path.clone(),
                                line: *line,
                                source: source.clone(),
                                table: table.clone(),
                                suggestion: did_you_mean(&wanted, names.iter().map(String::as_str)),
                            });
                        }
                    }
                }
            }
        }

        let graph = Graph {
            models,
            dag,
            by_name,
            layers: layers.to_vec(),
        };
        if let Some(path) = graph.find_cycle() {
            return Err(GraphError::Cycle { path });
        }
        Ok(graph)
    }

    /// All models; a model's index in this slice is its node index.
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// The model at `idx`. Panics if `idx` is not a node index of this graph.
    pub fn model(&self, idx: usize) -> &Model {
        &self.models[idx]
    }

    /// The node index of the model named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Models `idx` reads directly, by ascending index.
    pub fn parents(&self, idx: usize) -> Vec<usize> {
        self.neighbors(idx, Direction::Incoming)
    }

    /// Models that read `idx` directly, by ascending index.
    pub fn children(&self, idx: usize) -> Vec<usize> {
        self.neighbors(idx, Direction::Outgoing)
    }

    /// Every model downstream of `idx`, not including `idx`.
    pub fn descendants(&self, idx: usize) -> BTreeSet<usize> {
        self.reachable(idx, Direction::Outgoing)
    }

    /// Every model upstream of `idx`, not including `idx`.
    pub fn ancestors(&self, idx: usize) -> BTreeSet<usize> {
        self.reachable(idx, Direction::Incoming)
    }

    /// The position of `layer` in the configured layer order.
    pub fn layer_rank(&self, layer: &str) -> Option<usize> {
        self.layers.iter().position(|l| l == layer)
    }

    /// Deterministic topological order of `subset`: a model comes after every model of the
    /// subset it depends on, directly or through models outside the subset. Ties are broken
    /// by layer rank, then name. Panics if `subset` holds an index that is not a node.
    pub fn run_order(&self, subset: &BTreeSet<usize>) -> Vec<usize> {
        let parents = self.subset_parents(subset);
        let mut successors: HashMap<usize, Vec<usize>> = HashMap::with_capacity(subset.len());
        let mut pending: HashMap<usize, usize> = HashMap::with_capacity(subset.len());
        for (&child, of) in &parents {
            pending.insert(child, of.len());
            for &parent in of {
                successors.entry(parent).or_default().push(child);
            }
        }

        let key = |idx: usize| {
            let model = &self.models[idx];
            Reverse((
                self.layer_rank(&model.layer).unwrap_or(usize::MAX),
                model.name.as_str(),
                idx,
            ))
        };
        let mut ready: BinaryHeap<_> = pending
            .iter()
            .filter(|&(_, &n)| n == 0)
            .map(|(&idx, _)| key(idx))
            .collect();
        let mut order = Vec::with_capacity(subset.len());
        while let Some(Reverse((_, _, idx))) = ready.pop() {
            order.push(idx);
            for &next in successors.get(&idx).into_iter().flatten() {
                if let Some(n) = pending.get_mut(&next) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(key(next));
                    }
                }
            }
        }
        order
    }

    /// The dependencies among `subset`: for each member, the members it reads directly or
    /// through models outside the subset (e.g. ephemeral ones). Every member is a key.
    /// Panics if `subset` holds an index that is not a node.
    pub fn subset_parents(&self, subset: &BTreeSet<usize>) -> BTreeMap<usize, BTreeSet<usize>> {
        let mut parents: BTreeMap<usize, BTreeSet<usize>> =
            subset.iter().map(|&i| (i, BTreeSet::new())).collect();
        for &from in subset {
            let mut seen = HashSet::new();
            let mut stack = self.children(from);
            while let Some(node) = stack.pop() {
                if !seen.insert(node) {
                    continue;
                }
                if subset.contains(&node) {
                    parents.entry(node).or_default().insert(from);
                } else {
                    stack.extend(self.children(node));
                }
            }
        }
        parents
    }

    /// The layers of `subset`'s models in order (layer rank, then name), each with the other
    /// layers it reads from: layer `a` reads `b` when a member of `a` depends on a member of
    /// `b` (as [`Graph::subset_parents`] sees it). An error when layers read each other
    /// (possible with `allow_back_edges`), since layer-at-a-time runs could not be ordered.
    pub fn layer_parents(
        &self,
        subset: &BTreeSet<usize>,
    ) -> Result<Vec<(String, BTreeSet<String>)>, GraphError> {
        let layer = |i: usize| self.models[i].layer.clone();
        let mut reads: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (child, parents) in self.subset_parents(subset) {
            let own = reads.entry(layer(child)).or_default();
            own.extend(parents.into_iter().map(layer));
        }
        for (name, of) in reads.iter_mut() {
            of.remove(name);
        }
        // Kahn's algorithm over layers: whatever is left unordered lies on a cycle.
        let mut order: Vec<(String, BTreeSet<String>)> = Vec::with_capacity(reads.len());
        let mut done: BTreeSet<String> = BTreeSet::new();
        let rank = |l: &str| (self.layer_rank(l).unwrap_or(usize::MAX), l.to_string());
        while order.len() < reads.len() {
            let next = reads
                .iter()
                .filter(|(l, of)| !done.contains(*l) && of.is_subset(&done))
                .map(|(l, _)| l)
                .min_by_key(|l| rank(l));
            let Some(next) = next.cloned() else {
                let layers = reads.keys().filter(|l| !done.contains(*l)).cloned().collect();
                return Err(GraphError::LayerCycle { layers });
            };
            done.insert(next.clone());
            let of = reads[&next].clone();
            order.push((next, of));
        }
        Ok(order)
    }

    fn neighbors(&self, idx: usize, dir: Direction) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .dag
            .neighbors_directed(NodeIndex::new(idx), dir)
            .map(|n| n.index())
            .collect();
        out.sort_unstable();
        out
    }

    fn reachable(&self, idx: usize, dir: Direction) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([idx]);
        while let Some(node) = queue.pop_front() {
            for next in self.dag.neighbors_directed(NodeIndex::new(node), dir) {
                if seen.insert(next.index()) {
                    queue.push_back(next.index());
                }
            }
        }
        seen.remove(&idx);
        seen
    }

    /// A shortest cycle through the alphabetically first table of the alphabetically first
    /// cyclic component, as table names in edge order with the first repeated at the end.
    fn find_cycle(&self) -> Option<Vec<String>> {
        let table = |idx: usize| self.models[idx].table_name();
        let (component, start) = tarjan_scc(&self.dag)
            .into_iter()
            .filter(|c| c.len() > 1 || c.iter().any(|&n| self.dag.contains_edge(n, n)))
            .filter_map(|c| {
                let start = c.iter().map(|n| n.index()).min_by_key(|&i| table(i))?;
                Some((c, start))
            })
            .min_by_key(|&(_, start)| table(start))?;
        let members: HashSet<usize> = component.iter().map(|n| n.index()).collect();

        // Breadth-first search from `start` back to itself, within the component.
        let mut came_from: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            let mut next: Vec<usize> = self
                .children(node)
                .into_iter()
                .filter(|c| members.contains(c))
                .collect();
            next.sort_by_key(|&i| table(i));
            for child in next {
                if child == start {
                    let mut between = Vec::new();
                    let mut at = node;
                    while at != start {
                        between.push(at);
                        at = came_from[&at];
                    }
                    let mut path = vec![table(start)];
                    path.extend(between.into_iter().rev().map(table));
                    path.push(table(start));
                    return Some(path);
                }
                if let Entry::Vacant(e) = came_from.entry(child) {
                    e.insert(node);
                    queue.push_back(child);
                }
            }
        }
        None
    }
}
