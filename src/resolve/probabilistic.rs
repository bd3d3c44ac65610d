//! The probabilistic scoring (`scoring = { method = "probabilistic" }`): a Fellegi-Sunter model over every role the records have, with
//! the graded levels of [`compare`], trained on the records it resolves.
//!
//! - **u** (how often two different people agree at a level): for exact agreement, from the
//!   value frequencies (the chance that two random records share a value); for the other
//!   levels, from a seeded sample of random record pairs.
//! - **m** (how often two records of one person agree at a level): by expectation-maximisation
//!   with u fixed, once per blocking rule over the pairs in that rule's blocks, leaving out
//!   the roles the rule blocks on (they agree by construction); each role's m is the mean over
//!   the rules that estimated it, weighted by their expected matches (as Splink trains).
//! - **prior**: the chance that two random records match, as the fixed point of "expected
//!   matches among the candidate pairs / all record pairs".
//! - **term frequencies**: an exact agreement on a value gains log2(u_exact / share of the
//!   value): a shared rare surname says more than a shared `smith`.
//! - **households**: people living together share a last name, a phone, an address and a
//!   postcode, so exact agreement on several of those is not independent evidence. From the
//!   random pairs, the model measures how much more often they agree together than
//!   independence predicts, and takes that (log2, never a gain) off such pairs' weight.
//! - **threshold**: unless configured, the one that maximises the model's expected F0.5 over
//!   the candidate pairs (at least 0.5); the expected precision and recall at several
//!   thresholds are reported with the model.
//!
//! Small inputs lean on built-in starting values (pseudo-counts), so a handful of records
//! still resolves sensibly. Training sees every record given. A model kept from an earlier
//! run ([`crate::resolve::Resolver::with_model`], stored as [`Model::params_json`] and
//! [`Model::term_frequencies`]) is used as it is, so that every pair scores as it did then.
//! Pairs are scored in a canonical orientation ([`oriented`]): the order of the records never
//! changes a score.

mod stored;
mod train;

use std::fmt;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::blocking::Pair;
use super::compare::{self, Kind, NULL, Pattern, Values};
use super::config::ResolveConfig;
use super::matching::{HasNorm, Match, Matches};
use super::packed::Packed;
use super::{Norm, blocking};

pub use train::Frequencies;

/// m and u of one comparison level, and its match weight log2(m/u).
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub label: &'static str,
    pub m: f64,
    pub u: f64,
    pub weight: f64,
}

/// One role's comparison in the trained model.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub role: &'static str,
    pub levels: Vec<Level>,
    #[serde(skip)]
    pub kind: Kind,
    #[serde(skip)]
    pub tf: Option<Frequencies>,
}

/// Expected precision and recall at a threshold, by the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    pub threshold: f64,
    pub expected_precision: f64,
    pub expected_recall: f64,
}

/// A trained model.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub comparisons: Vec<Comparison>,
    /// Probability that two random records are the same person.
    pub prior: f64,
    pub threshold: f64,
    /// Whether the threshold was chosen from the model (not configured).
    pub threshold_chosen: bool,
    pub u_sample_pairs: u64,
    /// Records it was trained on.
    pub records: u64,
    pub curve: Vec<CurvePoint>,
    /// Positions (in `comparisons`) of the household roles: last name, phone, address,
    /// postcode.
    #[serde(skip)]
    pub household_kinds: Vec<usize>,
    /// Correction (≤ 0) by which set of household roles agree exactly (bit i: the role at
    /// `household_kinds[i]`): log2 of how much more often random pairs agree on all of them
    /// together than independence predicts.
    pub household: Vec<f64>,
}

/// One comparison's part in a pair's score.
#[derive(Debug, Clone, Serialize)]
pub struct Term {
    pub role: &'static str,
    pub left: Option<String>,
    pub right: Option<String>,
    /// `null` when a value is missing (the comparison adds nothing).
    pub level: &'static str,
    pub weight: f64,
    /// Term-frequency adjustment of an exact agreement.
    pub tf_adjustment: f64,
}

/// Why a pair scores what it scores (Splink's waterfall, as text).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub prior_weight: f64,
    /// Correction for exact agreement on several household roles (last name, phone, address,
    /// postcode) at once, which people living together share.
    pub household_correction: f64,
    pub names_swapped: bool,
    pub terms: Vec<Term>,
    pub total_weight: f64,
    pub probability: f64,
    pub threshold: f64,
    pub is_match: bool,
}

impl Model {
    pub(crate) fn kinds(&self) -> Vec<Kind> {
        self.comparisons.iter().map(|c| c.kind).collect()
    }

    /// The term-frequency adjustment an exact agreement on each comparison gains, for a pair
    /// whose left record is `a` (0 where the comparison has none or `a` no value).
    fn exact_tf(&self, a: &Norm) -> [f64; 7] {
        let mut out = [0.0; 7];
        for (k, c) in self.comparisons.iter().enumerate() {
            if let Some(tf) = &c.tf {
                out[k] = compare::value(a, c.kind, false).map_or(0.0, |v| tf.adjustment(v, c.levels[0].u));
            }
        }
        out
    }

    /// The match weight of comparison `k` at `level`, and its term-frequency adjustment (from
    /// [`Model::exact_tf`] of the pair's left record).
    fn term(&self, k: usize, level: u8, exact_tf: &[f64; 7]) -> (f64, f64) {
        let weight = self.comparisons[k].levels[level as usize].weight;
        (weight, if level == 0 { exact_tf[k] } else { 0.0 })
    }

    /// Summed match weight (with the prior) of a pair with these levels, and the part of it
    /// that is the household correction.
    fn weigh(&self, a: &Norm, pattern: &Pattern) -> (f64, f64) {
        let (evidence, correction) = self.evidence(&self.exact_tf(a), pattern);
        (evidence + logit2(self.prior), correction)
    }

    /// Summed match weight of a pair with these levels without the prior (added last, so
    /// that a weight from kept evidence equals [`Model::weight`] bit for bit), and the part of
    /// it that is the household correction.
    fn evidence(&self, exact_tf: &[f64; 7], pattern: &Pattern) -> (f64, f64) {
        let mut w = 0.0;
        let mut agree = 0usize;
        for (k, &level) in pattern.iter().enumerate().take(self.comparisons.len()) {
            if level != NULL {
                let (x, tf) = self.term(k, level, exact_tf);
                w += x + tf;
            }
            if level == 0
                && let Some(bit) = self.household_kinds.iter().position(|&h| h == k)
            {
                agree |= 1 << bit;
            }
        }
        let correction = self.household.get(agree).copied().unwrap_or(0.0);
        (w + correction, correction)
    }

    /// Each pair's evidence ([`Model::evidence`]), given its levels and its left record. With
    /// many pairs, each record's adjustments are looked up once, not once per pair it is the
    /// left of (the same values, so the same sums).
    fn evidences<T: HasNorm + Sync>(&self, records: &[T], lefts: &[u32], patterns: &[Pattern]) -> Vec<f64> {
        let pairs = lefts.par_iter().zip(patterns);
        if !per_record_pays(lefts.len(), records.len()) {
            return pairs.map(|(&l, p)| self.evidence(&self.exact_tf(records[l as usize].norm()), p).0).collect();
        }
        let exact: Vec<[f64; 7]> = records.par_iter().map(|r| self.exact_tf(r.norm())).collect();
        pairs.map(|(&l, p)| self.evidence(&exact[l as usize], p).0).collect()
    }

    /// Match weight (with the prior) of a pair with these levels.
    fn weight(&self, a: &Norm, pattern: &Pattern) -> f64 {
        self.weigh(a, pattern).0
    }

    /// Match probability of two records.
    pub fn probability(&self, a: &Norm, b: &Norm) -> f64 {
        let (a, b) = oriented(a, b);
        probability(self.weight(a, &compare::pattern(a, b, &self.kinds())))
    }

    /// Each comparison's level and weight for a pair.
    pub fn explain(&self, a: &Norm, b: &Norm) -> Explanation {
        let (a, b) = oriented(a, b);
        let swapped = compare::swapped(a, b);
        let pattern = compare::pattern(a, b, &self.kinds());
        let exact_tf = self.exact_tf(a);
        let mut terms = Vec::new();
        for (k, c) in self.comparisons.iter().enumerate() {
            let (weight, tf_adjustment, level) = match pattern[k] {
                NULL if c.kind == Kind::Email
                    && compare::value(a, c.kind, false).is_some()
                    && compare::value(b, c.kind, false).is_some() =>
                {
                    (0.0, 0.0, "local_part_from_names")
                }
                NULL => (0.0, 0.0, "null"),
                level => {
                    let (w, tf) = self.term(k, level, &exact_tf);
                    (w, tf, c.levels[level as usize].label)
                }
            };
            terms.push(Term {
                role: c.role,
                left: compare::value(a, c.kind, false).map(str::to_string),
                right: compare::value(b, c.kind, swapped).map(str::to_string),
                level,
                weight,
                tf_adjustment,
            });
        }
        let (total_weight, household_correction) = self.weigh(a, &pattern);
        let p = probability(total_weight);
        Explanation {
            prior_weight: logit2(self.prior),
            household_correction,
            names_swapped: swapped,
            terms,
            total_weight,
            probability: p,
            threshold: self.threshold,
            is_match: p >= self.threshold,
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<12} {:<28} {:>9} {:>8}  values", "comparison", "level", "weight", "tf adj")?;
        writeln!(f, "{:<12} {:<28} {:>9.2} {:>8}", "prior", "", self.prior_weight, "")?;
        for t in &self.terms {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "∅".into());
            writeln!(
                f,
                "{:<12} {:<28} {:>9.2} {:>8.2}  {} | {}",
                t.role,
                t.level,
                t.weight,
                t.tf_adjustment,
                show(&t.left),
                show(&t.right)
            )?;
        }
        if self.household_correction != 0.0 {
            writeln!(f, "{:<12} {:<28} {:>9.2}", "household", "shared together", self.household_correction)?;
        }
        if self.names_swapped {
            writeln!(f, "(first and last name compared swapped)")?;
        }
        writeln!(f, "{:<12} {:<28} {:>9.2}", "total", "", self.total_weight)?;
        write!(
            f,
            "match probability {:.6} (threshold {:.4}): {}",
            self.probability,
            self.threshold,
            if self.is_match { "MATCH" } else { "no match" }
        )
    }
}

/// The two records of a pair in a canonical order (by their values), so that a pair scores the
/// same whichever record comes first in the input or the run: with names swapped, the record
/// on the left decides which name counts as the first name, and so its term frequencies.
pub(crate) fn oriented<'r>(a: &'r Norm, b: &'r Norm) -> (&'r Norm, &'r Norm) {
    if compare::order(b, a).is_lt() { (b, a) } else { (a, b) }
}

fn logit2(p: f64) -> f64 {
    (p / (1.0 - p)).log2()
}

fn probability(weight: f64) -> f64 {
    1.0 / (1.0 + (-weight).exp2())
}

/// The kinds of comparison the records have values for.
fn kinds_in<T: HasNorm + Sync>(records: &[T]) -> Vec<Kind> {
    Kind::ALL
        .into_iter()
        .filter(|k| records.par_iter().any(|r| r.norm()[k.role().index()].is_some()))
        .collect()
}

/// A compared pair below this match probability is evidence of two people (a shared name,
/// but another phone and birth date): clustering never joins the clusters of its records,
/// however other pairs chain them (two namesakes linked through a third record each
/// resembles).
pub const APART: f64 = 0.001;

/// Each pair's levels, and which of its records is on the left (as [`oriented`] orders them;
/// kept, so weighing the pair does not compare the two records' values again).
fn compare_pairs<V: Values + Send>(pairs: &[Pair], kinds: &[Kind], record: impl Fn(u32) -> V + Sync) -> (Vec<Pattern>, Vec<u32>) {
    pairs
        .par_iter()
        .map(|p| {
            let (x, y) = (record(p.a), record(p.b));
            match compare::order(&y, &x).is_lt() {
                true => (compare::pattern(&y, &x, kinds), p.b),
                false => (compare::pattern(&x, &y, kinds), p.a),
            }
        })
        .unzip()
}

/// Whether work done once per record (packing its values, looking up its term frequencies)
/// pays back over `pairs` pairs among `records` records: not when the pairs are fewer.
fn per_record_pays(pairs: usize, records: usize) -> bool {
    pairs >= records
}

/// Trains the model on all `records` (unless `trained` is given: a model kept from an earlier
/// run, which is then used as it is) and returns the pairs with at least one record from
/// `compare_from` on that reach the threshold.
pub fn find_matches<T: HasNorm + Sync>(
    records: &[T],
    compare_from: usize,
    config: &ResolveConfig,
    threshold: Option<f64>,
    trained: Option<&Model>,
) -> Matches {
    let started = std::time::Instant::now();
    // Training needs every candidate pair; a kept model only those a new record is in.
    let found = blocking::candidates(records, if trained.is_some() { compare_from } else { 0 }, config);
    tracing::debug!("blocking: {} candidate pairs in {:.2?}", found.pairs.len(), started.elapsed());
    let started = std::time::Instant::now();
    let kinds = trained.map_or_else(|| kinds_in(records), Model::kinds);
    // Many pairs are compared on packed records; a few (a kept model's incremental run) on the
    // records as they are, not worth packing the whole index for.
    let (patterns, lefts) = match per_record_pays(found.pairs.len(), records.len()) {
        true => {
            let packed = Packed::new(records);
            compare_pairs(&found.pairs, &kinds, |i| packed.get(i))
        }
        false => compare_pairs(&found.pairs, &kinds, |i| records[i as usize].norm()),
    };
    tracing::debug!("comparing: {} patterns in {:.2?}", patterns.len(), started.elapsed());
    let (mut model, evidence) = match trained {
        Some(model) => (model.clone(), None),
        None => {
            let (model, evidence) = train::train(records, &kinds, &found.pairs, &patterns, &lefts, config);
            (model, Some(evidence))
        }
    };
    let started = std::time::Instant::now();
    // Training weighed every pair already (for the prior); a kept model weighs them here.
    // Each pair's evidence becomes its score in place (19M of them at a million records).
    let mut scores = evidence.unwrap_or_else(|| model.evidences(records, &lefts, &patterns));
    let prior = logit2(model.prior);
    scores.par_iter_mut().for_each(|w| *w = probability(*w + prior));
    if trained.is_none() {
        let (chosen, curve) = train::threshold_curve(&scores);
        model.curve = curve;
        model.threshold_chosen = threshold.is_none();
        model.threshold = threshold.unwrap_or(chosen);
    }
    tracing::debug!("scoring (and the threshold) in {:.2?}", started.elapsed());
    let mut out = Matches { blocks: found.blocks, skipped: found.skipped, ..Matches::default() };
    let mut per_rule = vec![0u64; config.rules.len()];
    for (p, &score) in found.pairs.iter().zip(&scores) {
        if (p.b as usize) < compare_from {
            continue;
        }
        per_rule[p.rule as usize] += 1;
        if score >= model.threshold {
            out.matches.push(Match { a: p.a, b: p.b, rule: p.rule, score });
        } else if score < APART {
            out.apart.push((p.a, p.b));
        }
    }
    out.comparisons = per_rule.iter().sum();
    out.pairs_per_rule = blocking::by_name(&per_rule, config);
    out.model = Some(model);
    out
}
