//! Blocking and comparison: which pairs of records are compared, and which of them match.
//!
//! Each rule's blocking key groups records; only records in one block are compared, so the
//! work grows with block sizes, not with the square of the record count. A block larger than
//! `max_block_size` is skipped and reported. A pair that shares blocks under several rules is
//! compared once, in the block of its first rule, and there checked against every rule whose
//! block it shares.

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use rayon::prelude::*;

use super::blocking::{self, Pair};
use super::probabilistic::{self, Model};
use super::{Norm, jaro, normalize};
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
    /// Candidate pairs each blocking rule found first.
    pub pairs_per_rule: BTreeMap<String, u64>,
    /// The trained model of the probabilistic scoring.
    pub model: Option<Model>,
    /// Compared pairs the probabilistic scoring finds clearly apart (match probability below
    /// [`crate::resolve::probabilistic::APART`]): clustering never joins their clusters.
    pub apart: Vec<(u32, u32)>,
}

/// A record's normalized values by role: a [`Norm`], or a row of a stored index read in place.
pub trait Roles {
    fn role(&self, role: Role) -> Option<&str>;
}

impl Roles for Norm {
    fn role(&self, role: Role) -> Option<&str> {
        self[role.index()].as_deref()
    }
}

/// The value of `field` that records are blocked on: the normalized value, for
/// [`Field::Name`] the two names sorted, or the derived key ([`Field::EmailLocal`],
/// [`Field::Prefix`], [`Field::Soundex`], [`Field::NamePrefix`]).
pub fn block_value<R: Roles + ?Sized>(norm: &R, field: Field) -> Option<Cow<'_, str>> {
    let role = |r: Role| norm.role(r);
    match field {
        Field::Role(r) => role(r).map(Cow::Borrowed),
        Field::Name => sorted_names(norm).map(|(x, y)| Cow::Owned(format!("{x} {y}"))),
        Field::EmailLocal => normalize::email_local_key(role(Role::Email)?).map(Cow::Owned),
        Field::Prefix(r, n) => {
            let v = role(r)?;
            let end = v.char_indices().nth(n as usize).map_or(v.len(), |(i, _)| i);
            Some(Cow::Borrowed(&v[..end]))
        }
        Field::Soundex(r) => normalize::soundex(role(r)?).map(Cow::Owned),
        Field::NamePrefix => {
            let prefix = |v: &str| v.chars().filter(|c| *c != ' ').take(3).collect::<String>();
            let (x, y) = (prefix(role(Role::FirstName)?), prefix(role(Role::LastName)?));
            Some(Cow::Owned(if x <= y { format!("{x} {y}") } else { format!("{y} {x}") }))
        }
    }
}

/// First and last name in alphabetical order, so that swapped names block together.
fn sorted_names<R: Roles + ?Sized>(norm: &R) -> Option<(&str, &str)> {
    let first = norm.role(Role::FirstName)?;
    let last = norm.role(Role::LastName)?;
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

/// The blocking key of a record under `fields`, hashed.
pub(super) fn hashed_key<R: Roles + ?Sized>(norm: &R, fields: &[Field]) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    for field in fields {
        block_value(norm, *field)?.hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// Whether two records agree on every blocking field (present and equal).
pub(super) fn same_block(a: &Norm, b: &Norm, fields: &[Field]) -> bool {
    fields.iter().all(|f| match f {
        Field::Role(role) => matches!((&a[role.index()], &b[role.index()]), (Some(x), Some(y)) if x == y),
        _ => matches!((block_value(a, *f), block_value(b, *f)), (Some(x), Some(y)) if x == y),
    })
}

fn similarity(method: Method, a: &str, b: &str) -> f64 {
    match method {
        Method::Exact => f64::from(u8::from(a == b)),
        Method::JaroWinkler => jaro::jaro_winkler(a, b),
        Method::Jaro => jaro::jaro(a, b),
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
        derived => Some(similarity(method, &block_value(a, derived)?, &block_value(b, derived)?)),
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

/// The comparison levels of every candidate pair.
fn candidate_patterns<T: HasNorm + Sync>(records: &[T], pairs: &[Pair], comparisons: &[WeightedComparison]) -> Vec<Vec<u8>> {
    pairs
        .par_iter()
        .map(|p| {
            let (na, nb) = (records[p.a as usize].norm(), records[p.b as usize].norm());
            comparisons.iter().map(|c| level_of(na, nb, c)).collect()
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

impl<T: HasNorm> HasNorm for &T {
    fn norm(&self) -> &Norm {
        (*self).norm()
    }
}

/// Compares the records: every candidate pair ([`blocking::candidates`]), except pairs of
/// two records both below `compare_from` (records already compared with each other in an
/// earlier run).
pub fn find_matches<T: HasNorm + Sync>(
    records: &[T],
    compare_from: usize,
    config: &ResolveConfig,
    trained: Option<&Model>,
) -> Matches {
    let (prior, threshold, comparisons, estimate) = match config.scoring() {
        Scoring::Probabilistic { threshold } => {
            return probabilistic::find_matches(records, compare_from, config, *threshold, trained);
        }
        Scoring::Rules => return rule_matches(records, compare_from, config),
        Scoring::FellegiSunter { prior, threshold, comparisons, estimate } => (*prior, *threshold, comparisons, *estimate),
    };
    let found = blocking::candidates(records, compare_from, config);
    let mut out = Matches {
        blocks: found.blocks,
        skipped: found.skipped,
        pairs_per_rule: found.pairs_per_rule,
        ..Matches::default()
    };
    // Fellegi-Sunter parameters, estimated from the candidate pairs when asked.
    let (prior, comparisons) = match estimate {
        true => {
            let patterns = candidate_patterns(records, &found.pairs, comparisons);
            let (prior, comparisons) = estimate_parameters(&patterns, prior, comparisons);
            out.estimated = Some(Scoring::FellegiSunter { prior, threshold, comparisons: comparisons.clone(), estimate: true });
            (prior, Cow::Owned(comparisons))
        }
        false => (prior, Cow::Borrowed(comparisons)),
    };
    out.matches = found
        .pairs
        .par_iter()
        .filter_map(|p| {
            let (na, nb) = (records[p.a as usize].norm(), records[p.b as usize].norm());
            let score = match_probability(na, nb, prior, &comparisons);
            (score >= threshold).then_some(Match { a: p.a, b: p.b, rule: p.rule, score })
        })
        .collect();
    out.comparisons = found.pairs.len() as u64;
    out
}

/// [`find_matches`] with rule scoring: a pair matches by the first rule whose block holds it
/// and whose comparisons it passes. Each block's pairs are compared as they are found, so its
/// records stay in cache and the pairs are never stored.
fn rule_matches<T: HasNorm + Sync>(records: &[T], compare_from: usize, config: &ResolveConfig) -> Matches {
    let rules = &config.rules;
    let started = std::time::Instant::now();
    let plan = blocking::Plan::new(records, compare_from, config);
    tracing::debug!("blocking: {} blocks to compare in {:.2?}", plan.work.len(), started.elapsed());
    let started = std::time::Instant::now();
    let compare = |found: &mut Vec<Match>, counts: &mut Vec<u64>, block| {
        for p in plan.pairs_in(block) {
            counts[p.rule as usize] += 1;
            let (na, nb) = (records[p.a as usize].norm(), records[p.b as usize].norm());
            let hit = rules.iter().enumerate().find_map(|(r, rule)| {
                // The hashed keys rule most pairs out before their values are read.
                if r != p.rule as usize && !(plan.same_key(p.a, p.b, r) && same_block(na, nb, &rule.block_on)) {
                    return None;
                }
                rule_score(na, nb, &rule.compare).map(|s| (r as u16, s))
            });
            if let Some((rule, score)) = hit {
                found.push(Match { a: p.a, b: p.b, rule, score });
            }
        }
    };
    let none = || (Vec::new(), vec![0u64; rules.len()]);
    let (mut matches, counts) = plan
        .work
        .par_iter()
        .fold(none, |(mut found, mut counts), block| {
            compare(&mut found, &mut counts, block);
            (found, counts)
        })
        .reduce(none, |(mut found, mut counts), (more, more_counts)| {
            found.extend(more);
            counts.iter_mut().zip(more_counts).for_each(|(c, m)| *c += m);
            (found, counts)
        });
    matches.par_sort_unstable_by_key(|m| (m.a, m.b));
    tracing::debug!("comparing: {} matches in {:.2?}", matches.len(), started.elapsed());
    let pairs_per_rule = blocking::by_name(&counts, config);
    Matches {
        matches,
        comparisons: counts.iter().sum(),
        blocks: plan.blocks,
        skipped: plan.skipped,
        pairs_per_rule,
        ..Matches::default()
    }
}
