//! Blocking and comparison: which pairs of records are compared, and which of them match.
//!
//! Each rule's blocking key groups records; only records in one block are compared, so the
//! work grows with block sizes, not with the square of the record count. A block larger than
//! `max_block_size` is skipped and reported. A pair that shares blocks under several rules is
//! compared once, in the block of its first rule, and there checked against every rule whose
//! block it shares.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use rayon::prelude::*;

use super::Norm;
use super::config::{Comparison, Field, Method, ResolveConfig, Role, Scoring, WeightedComparison};

/// Two records found to be the same person.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Positions of the two records (`a < b`).
    pub a: u32,
    pub b: u32,
    /// Index of the rule that matched (or, for Fellegi-Sunter, whose block found the pair).
    pub rule: u16,
    /// Confidence: mean similarity (rules) or match probability (Fellegi-Sunter).
    pub score: f64,
}

/// A block too large to compare pairwise.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedBlock {
    pub rule: String,
    pub key: String,
    pub size: usize,
}

/// What comparing a set of records found.
#[derive(Debug, Default)]
pub struct Matches {
    pub matches: Vec<Match>,
    /// Pairs compared.
    pub comparisons: u64,
    /// Blocks with at least two records.
    pub blocks: u64,
    pub skipped: Vec<SkippedBlock>,
    /// Fellegi-Sunter parameters estimated by EM (with `estimate = true`).
    pub estimated: Option<Scoring>,
}

/// The value of `field` that records are blocked on: the normalized value, or for
/// [`Field::Name`] the two names sorted.
pub fn block_value(norm: &Norm, field: Field) -> Option<String> {
    match field {
        Field::Role(role) => norm[role.index()].as_deref().map(str::to_string),
        Field::Name => sorted_names(norm).map(|(x, y)| format!("{x} {y}")),
    }
}

/// First and last name in alphabetical order, so that swapped names block together.
fn sorted_names(norm: &Norm) -> Option<(&str, &str)> {
    let first = norm[Role::FirstName.index()].as_deref()?;
    let last = norm[Role::LastName.index()].as_deref()?;
    Some(if first <= last { (first, last) } else { (last, first) })
}

/// The blocking key of a record under a rule's `block_on` fields, written out (`None` when a
/// field is missing).
pub fn block_key(norm: &Norm, fields: &[Field]) -> Option<String> {
    let mut parts = Vec::with_capacity(fields.len());
    for field in fields {
        parts.push(block_value(norm, *field)?);
    }
    Some(parts.join("|"))
}

fn hashed_key(norm: &Norm, fields: &[Field]) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    for field in fields {
        match field {
            Field::Role(role) => norm[role.index()].as_deref()?.hash(&mut hasher),
            Field::Name => sorted_names(norm)?.hash(&mut hasher),
        }
    }
    Some(hasher.finish())
}

/// Whether two records agree on every blocking field (present and equal).
fn same_block(a: &Norm, b: &Norm, fields: &[Field]) -> bool {
    fields.iter().all(|f| match f {
        Field::Role(role) => matches!((&a[role.index()], &b[role.index()]), (Some(x), Some(y)) if x == y),
        Field::Name => matches!((sorted_names(a), sorted_names(b)), (Some(x), Some(y)) if x == y),
    })
}

fn similarity(method: Method, a: &str, b: &str) -> f64 {
    match method {
        Method::Exact => f64::from(u8::from(a == b)),
        Method::JaroWinkler => strsim::jaro_winkler(a, b),
        Method::Jaro => strsim::jaro(a, b),
        Method::Levenshtein => strsim::normalized_levenshtein(a, b),
    }
}

/// Similarity of two records on a field, `None` when either lacks it. For [`Field::Name`]:
/// the lower of the first-name and last-name similarities, in the given or swapped order,
/// whichever is higher.
pub fn field_similarity(a: &Norm, b: &Norm, field: Field, method: Method) -> Option<f64> {
    match field {
        Field::Role(role) => {
            Some(similarity(method, a[role.index()].as_deref()?, b[role.index()].as_deref()?))
        }
        Field::Name => {
            let (fa, la) = (a[Role::FirstName.index()].as_deref()?, a[Role::LastName.index()].as_deref()?);
            let (fb, lb) = (b[Role::FirstName.index()].as_deref()?, b[Role::LastName.index()].as_deref()?);
            let straight = similarity(method, fa, fb).min(similarity(method, la, lb));
            if straight >= 1.0 {
                return Some(straight);
            }
            let swapped = similarity(method, fa, lb).min(similarity(method, la, fb));
            Some(straight.max(swapped))
        }
    }
}

/// Mean similarity when every comparison passes.
fn rule_score(a: &Norm, b: &Norm, compare: &[Comparison]) -> Option<f64> {
    if compare.is_empty() {
        return Some(1.0);
    }
    let mut total = 0.0;
    for c in compare {
        let s = field_similarity(a, b, c.field, c.method)?;
        if s < c.min {
            return None;
        }
        total += s;
    }
    Some(total / compare.len() as f64)
}

/// The level a pair falls into on a comparison: 0 when a value is missing, 1 + the index of
/// the first level reached, or `levels + 1` for the `else` level.
fn level_of(a: &Norm, b: &Norm, c: &WeightedComparison) -> u8 {
    if field_similarity(a, b, c.field, Method::Exact).is_none() {
        return 0;
    }
    for (i, l) in c.levels.iter().enumerate() {
        if field_similarity(a, b, c.field, l.method).is_some_and(|s| s >= l.min) {
            return i as u8 + 1;
        }
    }
    c.levels.len() as u8 + 1
}

/// The comparison levels of every candidate pair (each pair once, as in [`find_matches`]).
fn candidate_patterns<T: HasNorm + Sync>(
    records: &[T],
    compare_from: usize,
    work: &[(u16, &[u32])],
    seen_earlier: &(dyn Fn(&Norm, &Norm, usize) -> bool + Sync),
    comparisons: &[WeightedComparison],
) -> Vec<Vec<u8>> {
    work.par_iter()
        .flat_map_iter(|(rule, members)| {
            let rule = *rule as usize;
            let mut out = Vec::new();
            for (j, &b) in members.iter().enumerate() {
                if (b as usize) < compare_from {
                    continue;
                }
                for &a in &members[..j] {
                    let (na, nb) = (records[a as usize].norm(), records[b as usize].norm());
                    if rule > 0 && seen_earlier(na, nb, rule) {
                        continue;
                    }
                    out.push(comparisons.iter().map(|c| level_of(na, nb, c)).collect());
                }
            }
            out
        })
        .collect()
}

/// Expectation-maximisation of the prior and the m and u of every level from the candidate
/// pairs' level patterns (Fellegi-Sunter with conditionally independent comparisons).
fn estimate_parameters(patterns: &[Vec<u8>], prior: f64, comparisons: &[WeightedComparison]) -> (f64, Vec<WeightedComparison>) {
    const ITERATIONS: usize = 30;
    const FLOOR: f64 = 1e-6;
    let levels = |c: &WeightedComparison| c.levels.len() + 1;
    // m[k][j], u[k][j] for j in 0..levels (the last one is `else`).
    let mut m: Vec<Vec<f64>> = comparisons
        .iter()
        .map(|c| c.levels.iter().map(|l| l.m).chain([c.otherwise.m]).collect())
        .collect();
    let mut u: Vec<Vec<f64>> = comparisons
        .iter()
        .map(|c| c.levels.iter().map(|l| l.u).chain([c.otherwise.u]).collect())
        .collect();
    let mut lambda = prior;
    if patterns.is_empty() {
        return (prior, comparisons.to_vec());
    }
    for _ in 0..ITERATIONS {
        let mut m_sum: Vec<Vec<f64>> = comparisons.iter().map(|c| vec![0.0; levels(c)]).collect();
        let mut u_sum = m_sum.clone();
        let mut p_total = 0.0;
        for pattern in patterns {
            let mut log_odds = (lambda / (1.0 - lambda)).ln();
            for (k, &level) in pattern.iter().enumerate() {
                if level > 0 {
                    let j = level as usize - 1;
                    log_odds += (m[k][j] / u[k][j]).ln();
                }
            }
            let p = 1.0 / (1.0 + (-log_odds).exp());
            p_total += p;
            for (k, &level) in pattern.iter().enumerate() {
                if level > 0 {
                    let j = level as usize - 1;
                    m_sum[k][j] += p;
                    u_sum[k][j] += 1.0 - p;
                }
            }
        }
        lambda = (p_total / patterns.len() as f64).clamp(FLOOR, 1.0 - FLOOR);
        for k in 0..m.len() {
            let (mt, ut): (f64, f64) = (m_sum[k].iter().sum(), u_sum[k].iter().sum());
            for j in 0..m[k].len() {
                if mt > 0.0 {
                    m[k][j] = (m_sum[k][j] / mt).max(FLOOR);
                }
                if ut > 0.0 {
                    u[k][j] = (u_sum[k][j] / ut).max(FLOOR);
                }
            }
        }
    }
    let estimated = comparisons
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let mut c = c.clone();
            for (j, l) in c.levels.iter_mut().enumerate() {
                l.m = m[k][j];
                l.u = u[k][j];
            }
            let last = c.levels.len();
            c.otherwise.m = m[k][last];
            c.otherwise.u = u[k][last];
            c
        })
        .collect();
    (lambda, estimated)
}

/// Fellegi-Sunter match probability.
fn match_probability(a: &Norm, b: &Norm, prior: f64, comparisons: &[WeightedComparison]) -> f64 {
    let mut weight = (prior / (1.0 - prior)).log2();
    for c in comparisons {
        let Some(level) = c.levels.iter().find_map(|l| {
            let s = field_similarity(a, b, c.field, l.method)?;
            (s >= l.min).then_some((l.m, l.u))
        }) else {
            if field_similarity(a, b, c.field, Method::Exact).is_some() {
                weight += (c.otherwise.m / c.otherwise.u).log2();
            }
            continue;
        };
        weight += (level.0 / level.1).log2();
    }
    1.0 / (1.0 + 2f64.powf(-weight))
}

/// Anything that carries a record's normalized values.
pub trait HasNorm {
    fn norm(&self) -> &Norm;
}

impl HasNorm for Norm {
    fn norm(&self) -> &Norm {
        self
    }
}

/// Compares the records: every pair sharing a block, except pairs of two records both below
/// `compare_from` (records already compared with each other in an earlier run).
pub fn find_matches<T: HasNorm + Sync>(records: &[T], compare_from: usize, config: &ResolveConfig) -> Matches {
    let rules = &config.rules;
    // Blocks per rule: key hash -> members (ascending positions).
    let mut blocks: Vec<HashMap<u64, Vec<u32>>> = vec![HashMap::new(); rules.len()];
    for (i, record) in records.iter().enumerate() {
        let norm = record.norm();
        for (r, rule) in rules.iter().enumerate() {
            if let Some(key) = hashed_key(norm, &rule.block_on) {
                blocks[r].entry(key).or_default().push(i as u32);
            }
        }
    }
    let mut out = Matches::default();
    let mut oversized: Vec<HashSet<u64>> = vec![HashSet::new(); rules.len()];
    let mut work: Vec<(u16, &[u32])> = Vec::new();
    for (r, rule_blocks) in blocks.iter().enumerate() {
        for (key, members) in rule_blocks {
            if members.len() < 2 || (*members.last().unwrap() as usize) < compare_from {
                continue;
            }
            out.blocks += 1;
            if members.len() > config.max_block_size {
                oversized[r].insert(*key);
                out.skipped.push(SkippedBlock {
                    rule: rules[r].name.clone(),
                    key: block_key(records[members[0] as usize].norm(), &rules[r].block_on).unwrap_or_default(),
                    size: members.len(),
                });
                continue;
            }
            work.push((r as u16, members.as_slice()));
        }
    }
    out.skipped.sort_by(|x, y| y.size.cmp(&x.size).then_with(|| x.key.cmp(&y.key)));

    // Whether the pair was already compared in the block of an earlier rule.
    let seen_earlier = |a: &Norm, b: &Norm, rule: usize| {
        (0..rule).any(|earlier| {
            same_block(a, b, &rules[earlier].block_on)
                && !hashed_key(a, &rules[earlier].block_on)
                    .is_some_and(|k| oversized[earlier].contains(&k))
        })
    };
    // Fellegi-Sunter parameters, estimated from the candidate pairs when asked.
    let estimated = match &config.scoring {
        Scoring::FellegiSunter { prior, threshold, comparisons, estimate: true } => {
            let patterns = candidate_patterns(records, compare_from, &work, &seen_earlier, comparisons);
            let (prior, comparisons) = estimate_parameters(&patterns, *prior, comparisons);
            out.estimated = Some(Scoring::FellegiSunter { prior, threshold: *threshold, comparisons, estimate: true });
            out.estimated.clone()
        }
        _ => None,
    };
    let scoring = estimated.as_ref().unwrap_or(&config.scoring);
    let compare = |a: &Norm, b: &Norm, found_by: usize| -> Option<(u16, f64)> {
        match scoring {
            Scoring::Rules => rules.iter().enumerate().find_map(|(r, rule)| {
                if r != found_by && !same_block(a, b, &rule.block_on) {
                    return None;
                }
                rule_score(a, b, &rule.compare).map(|s| (r as u16, s))
            }),
            Scoring::FellegiSunter { prior, threshold, comparisons, .. } => {
                let p = match_probability(a, b, *prior, comparisons);
                (p >= *threshold).then_some((found_by as u16, p))
            }
        }
    };

    let (matches, comparisons) = work
        .par_iter()
        .fold(
            || (Vec::new(), 0u64),
            |(mut found, mut count), (rule, members)| {
                let rule = *rule as usize;
                for (j, &b) in members.iter().enumerate() {
                    for &a in &members[..j] {
                        if (b as usize) < compare_from {
                            continue;
                        }
                        let (na, nb) = (records[a as usize].norm(), records[b as usize].norm());
                        if rule > 0 && seen_earlier(na, nb, rule) {
                            continue;
                        }
                        count += 1;
                        if let Some((r, score)) = compare(na, nb, rule) {
                            found.push(Match { a, b, rule: r, score });
                        }
                    }
                }
                (found, count)
            },
        )
        .reduce(
            || (Vec::new(), 0),
            |(mut x, cx), (y, cy)| {
                x.extend(y);
                (x, cx + cy)
            },
        );
    let mut matches = matches;
    matches.sort_by_key(|m| (m.a, m.b));
    out.matches = matches;
    out.comparisons = comparisons;
    out
}
