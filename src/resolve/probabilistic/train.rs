//! Training the probabilistic model: term frequencies, u from value frequencies and random
//! pairs, m by EM per blocking rule, the prior as a fixed point, and the threshold.

use std::collections::BTreeMap;

// foldhash, as in `resolve`: the term frequencies are looked up once per exact agreement of
// every candidate pair.
use foldhash::{HashMap, HashMapExt};

use rayon::prelude::*;

use super::super::blocking::Pair;
use super::super::compare::{self, Kind, NULL, Pattern};
use super::super::config::ResolveConfig;
use super::super::matching::HasNorm;
use super::{Comparison, CurvePoint, Level, Model, logit2, oriented, probability};

/// Pseudo-pairs behind the built-in u values (matter only for small inputs).
const U_PSEUDO: f64 = 1000.0;
/// Pseudo-matches behind the built-in m values in EM.
const M_PSEUDO: f64 = 10.0;
/// Pseudo-records behind a value's share in the term-frequency adjustment.
const TF_PSEUDO: f64 = 100.0;
/// Pseudo-pairs behind the built-in prior (matter only for small inputs).
const PRIOR_PSEUDO: f64 = 1000.0;
/// Random record pairs sampled for u.
const U_SAMPLE: u64 = 300_000;
const EM_ITERATIONS: usize = 40;

/// Built-in starting values (m, u) per level: what training moves away from.
fn defaults(kind: Kind) -> (&'static [f64], &'static [f64]) {
    match kind {
        Kind::FirstName => (&[0.80, 0.05, 0.06, 0.03, 0.02, 0.04], &[0.01, 0.002, 0.005, 0.01, 0.05, 0.923]),
        Kind::LastName => (&[0.85, 0.06, 0.03, 0.02, 0.04], &[0.005, 0.003, 0.005, 0.04, 0.947]),
        Kind::Email => (&[0.80, 0.05, 0.03, 0.02, 0.10], &[0.0001, 0.0001, 0.0005, 0.005, 0.9943]),
        Kind::Phone => (&[0.80, 0.05, 0.15], &[0.0005, 0.002, 0.9975]),
        Kind::Dob => (&[0.85, 0.03, 0.05, 0.02, 0.05], &[0.0001, 0.0001, 0.001, 0.005, 0.9938]),
        Kind::Postcode => (&[0.85, 0.05, 0.10], &[0.01, 0.03, 0.96]),
        Kind::Address => (&[0.75, 0.10, 0.05, 0.10], &[0.0005, 0.002, 0.02, 0.9775]),
    }
}

/// How often each value of a role occurs.
#[derive(Debug, Clone, Default)]
pub struct Frequencies {
    counts: HashMap<Box<str>, u32>,
    total: u64,
}

impl Frequencies {
    fn of<T: HasNorm + Sync>(records: &[T], kind: Kind) -> Self {
        let role = kind.role().index();
        let counts = records
            .par_iter()
            .fold(HashMap::<&str, u32>::new, |mut m, r| {
                if let Some(v) = r.norm()[role].as_deref() {
                    *m.entry(v).or_default() += 1;
                }
                m
            })
            .reduce(HashMap::new, |mut x, y| {
                for (k, v) in y {
                    *x.entry(k).or_default() += v;
                }
                x
            });
        let total = counts.values().map(|&c| c as u64).sum();
        let counts = counts.into_iter().filter(|(_, c)| *c > 1).map(|(k, c)| (Box::from(k), c)).collect();
        Self { counts, total }
    }

    /// Frequencies as stored: the values held more than once, and the records with a value.
    pub(super) fn from_counts(counts: HashMap<Box<str>, u32>, total: u64) -> Self {
        Self { counts, total }
    }

    /// The values held more than once, with their counts.
    pub(super) fn counts(&self) -> impl Iterator<Item = (&str, u32)> {
        self.counts.iter().map(|(v, &n)| (&**v, n))
    }

    /// Records with a value.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// Record pairs sharing a value, and all record pairs with a value.
    fn sharing_pairs(&self) -> (f64, f64) {
        let shared = self.counts.values().map(|&c| c as f64 * (c as f64 - 1.0) / 2.0).sum();
        let t = self.total as f64;
        (shared, t * (t - 1.0) / 2.0)
    }

    /// log2(u_exact / share of `value`): the term-frequency adjustment of agreeing on it.
    pub fn adjustment(&self, value: &str, u_exact: f64) -> f64 {
        let count = self.counts.get(value).copied().unwrap_or(1) as f64;
        let share = (count + TF_PSEUDO * u_exact) / (self.total as f64 + TF_PSEUDO);
        (u_exact / share).log2()
    }
}

/// A seeded generator (SplitMix64) for the random pairs.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// u per kind and level: exact from frequencies, the rest from random pairs.
#[allow(clippy::type_complexity)]
fn estimate_u<T: HasNorm + Sync>(records: &[T], kinds: &[Kind], tf: &[Frequencies]) -> (Vec<Vec<f64>>, Vec<f64>, u64) {
    let n = records.len() as u64;
    let all = n * n.saturating_sub(1) / 2;
    let pairs: Vec<(u32, u32)> = if all <= U_SAMPLE {
        (0..n as u32).flat_map(|b| (0..b).map(move |a| (a, b))).collect()
    } else {
        let mut state = 0x1a4e_u64;
        (0..U_SAMPLE)
            .map(|_| loop {
                let a = (splitmix(&mut state) % n) as u32;
                let b = (splitmix(&mut state) % n) as u32;
                if a != b {
                    break (a.min(b), a.max(b));
                }
            })
            .collect()
    };
    let zero = || vec![[0u64; 8]; kinds.len()];
    let counts = pairs
        .par_iter()
        .fold(zero, |mut acc, &(a, b)| {
            let (a, b) = oriented(records[a as usize].norm(), records[b as usize].norm());
            let pattern = compare::pattern(a, b, kinds);
            for (k, &level) in pattern.iter().enumerate().take(kinds.len()) {
                if level != NULL {
                    acc[k][level as usize] += 1;
                }
            }
            acc
        })
        .reduce(zero, |mut x, y| {
            for (a, b) in x.iter_mut().zip(y) {
                for (p, q) in a.iter_mut().zip(b) {
                    *p += q;
                }
            }
            x
        });
    let house = household_kinds(kinds);
    let (together, having) = household_counts(records, kinds, &house);
    let household = household_correction(&together, &having, house.len());
    let u = kinds
        .iter()
        .enumerate()
        .map(|(k, kind)| {
            let (_, u0) = defaults(*kind);
            let (shared, total) = tf[k].sharing_pairs();
            let exact = (shared + U_PSEUDO * u0[0]) / (total + U_PSEUDO);
            let inexact: f64 = counts[k][1..u0.len()].iter().sum::<u64>() as f64;
            let rest: f64 = 1.0 - u0[0];
            let mut levels = vec![exact];
            for (l, base) in u0.iter().enumerate().skip(1) {
                let share = (counts[k][l] as f64 + U_PSEUDO * base) / (inexact + U_PSEUDO * rest);
                levels.push(share * (1.0 - exact));
            }
            levels
        })
        .collect();
    (u, household, pairs.len() as u64)
}

/// Positions of the household kinds (last name, phone, address, postcode) among `kinds`.
pub(super) fn household_kinds(kinds: &[Kind]) -> Vec<usize> {
    kinds.iter().enumerate().filter(|(_, k)| k.household()).map(|(i, _)| i).collect()
}

/// For each set of household kinds (bit i: `house[i]`), counted over all records rather than
/// sampled: the record pairs agreeing exactly on every kind of the set, and the record pairs
/// having them all. Random pairs would not do: two random records share a household with a
/// chance that falls with the number of records, and at a million records a sample of
/// 300,000 pairs holds almost none, which made the correction vanish.
fn household_counts<T: HasNorm + Sync>(records: &[T], kinds: &[Kind], house: &[usize]) -> ([u64; 16], [u64; 16]) {
    use std::hash::{BuildHasher, Hash, Hasher};
    let roles: Vec<usize> = house.iter().map(|&k| kinds[k].role().index()).collect();
    // Each record's values of the household kinds, hashed once (a fixed-key hasher: the same
    // records give the same groups in every run); 0 where it has none.
    let hasher = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let hashes: Vec<[u64; 4]> = records
        .par_iter()
        .map(|r| {
            let mut out = [0u64; 4];
            for (slot, &role) in out.iter_mut().zip(&roles) {
                if let Some(v) = r.norm()[role].as_deref() {
                    let mut h = hasher.build_hasher();
                    v.hash(&mut h);
                    *slot = h.finish() | 1;
                }
            }
            out
        })
        .collect();
    let sets: Vec<usize> = (1..1usize << roles.len()).collect();
    let per_set: Vec<(usize, u64, u64)> = sets
        .par_iter()
        .map(|&set| {
            // The records having every kind of the set, by one hash of their values for it;
            // sorted, so that equal values are neighbours.
            let mut keys: Vec<u64> = hashes
                .iter()
                .filter_map(|h| {
                    let mut key = 0u64;
                    for (bit, &value) in h.iter().enumerate().take(roles.len()) {
                        if set & (1 << bit) != 0 {
                            if value == 0 {
                                return None;
                            }
                            key = (key.rotate_left(17) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        }
                    }
                    Some(key)
                })
                .collect();
            keys.sort_unstable();
            let pairs = |n: u64| n * n.saturating_sub(1) / 2;
            let together = keys.chunk_by(|x, y| x == y).map(|g| pairs(g.len() as u64)).sum();
            (set, together, pairs(keys.len() as u64))
        })
        .collect();
    let (mut together, mut having) = ([0u64; 16], [0u64; 16]);
    for (set, t, h) in per_set {
        (together[set], having[set]) = (t, h);
    }
    (together, having)
}

/// For each set of two or more household kinds: min(0, log2(P(agree on all) / Π P(agree on
/// each))) over all record pairs, with a few pseudo-pairs at independence.
fn household_correction(together: &[u64; 16], having: &[u64; 16], kinds: usize) -> Vec<f64> {
    const PSEUDO: f64 = 5.0;
    let share = |set: usize| together[set] as f64 / (having[set] as f64).max(1.0);
    (0..1usize << kinds)
        .map(|set| {
            if set.count_ones() < 2 || having[set] == 0 {
                return 0.0;
            }
            let independent: f64 = (0..kinds).filter(|b| set & (1 << b) != 0).map(|b| share(1 << b)).product();
            let n = having[set] as f64;
            let joint = (together[set] as f64 + PSEUDO * independent) / (n + PSEUDO);
            if independent <= 0.0 { 0.0 } else { (joint / independent).log2().max(0.0) * -1.0 }
        })
        .collect()
}

/// m per kind and level by EM with u fixed, per blocking rule over the pairs in its blocks,
/// leaving out the kinds the rule blocks on.
fn estimate_m(kinds: &[Kind], pairs: &[Pair], patterns: &[Pattern], u: &[Vec<f64>], config: &ResolveConfig) -> Vec<Vec<f64>> {
    let m0: Vec<Vec<f64>> = kinds.iter().map(|k| defaults(*k).0.to_vec()).collect();
    let mut acc: Vec<Vec<f64>> = m0.iter().map(|l| vec![0.0; l.len()]).collect();
    let mut acc_weight = vec![0.0; kinds.len()];
    let per_rule = pattern_counts(pairs, patterns, config.rules.len().min(32));
    for (rule, counts) in config.rules.iter().zip(per_rule) {
        if counts.is_empty() {
            continue;
        }
        let blocked: Vec<bool> = kinds
            .iter()
            .map(|k| rule.block_on.iter().any(|f| f.roles().contains(&k.role())))
            .collect();
        // Blocks on a role households share hold families, whose members agree on
        // everything but first name and birth date: m from them counts a tenth.
        let household_rule = kinds.iter().zip(&blocked).any(|(k, b)| *b && k.household());
        let scale = if household_rule { 0.1 } else { 1.0 };
        let (m, matches) = em(&counts, &blocked, &m0, u);
        let matches = matches * scale;
        for k in (0..kinds.len()).filter(|&k| !blocked[k]) {
            for (a, x) in acc[k].iter_mut().zip(&m[k]) {
                *a += matches * x;
            }
            acc_weight[k] += matches;
        }
    }
    (0..kinds.len())
        .map(|k| {
            if acc_weight[k] > 0.0 {
                acc[k].iter().map(|a| a / acc_weight[k]).collect()
            } else {
                m0[k].clone()
            }
        })
        .collect()
}

/// For each of the first `rules` rules, how many of the pairs in its blocks have each
/// pattern: one pass over the pairs on every core, counted exactly (so in any order).
fn pattern_counts(pairs: &[Pair], patterns: &[Pattern], rules: usize) -> Vec<BTreeMap<Pattern, f64>> {
    let zero = || vec![HashMap::<Pattern, u64>::new(); rules];
    pairs
        .par_iter()
        .zip(patterns)
        .fold(zero, |mut acc, (p, pattern)| {
            let mut bits = p.rules;
            while bits != 0 {
                let r = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if r < rules {
                    *acc[r].entry(*pattern).or_default() += 1;
                }
            }
            acc
        })
        .reduce(zero, |mut x, y| {
            for (a, b) in x.iter_mut().zip(y) {
                for (pattern, n) in b {
                    *a.entry(pattern).or_default() += n;
                }
            }
            x
        })
        .into_iter()
        .map(|counts| counts.into_iter().map(|(pattern, n)| (pattern, n as f64)).collect())
        .collect()
}

/// One EM run over unique patterns with their counts; returns m and the expected matches.
///
/// Within a rule's blocks the non-matching pairs are not random pairs (people sharing an
/// address share a surname and a phone far more often), so u is re-estimated here too,
/// starting from the random-pair u; only m leaves this function.
fn em(counts: &BTreeMap<Pattern, f64>, blocked: &[bool], m0: &[Vec<f64>], u0: &[Vec<f64>]) -> (Vec<Vec<f64>>, f64) {
    let mut m = m0.to_vec();
    let mut u = u0.to_vec();
    let mut lambda: f64 = 0.3;
    let total: f64 = counts.values().sum();
    let mut matches = 0.0;
    for _ in 0..EM_ITERATIONS {
        let mut sums: Vec<Vec<f64>> = m.iter().map(|l| vec![0.0; l.len()]).collect();
        let mut u_sums = sums.clone();
        matches = 0.0;
        for (pattern, &c) in counts {
            let mut log_odds = (lambda / (1.0 - lambda)).ln();
            for (k, &level) in pattern.iter().enumerate().take(m.len()) {
                if level != NULL && !blocked[k] {
                    log_odds += (m[k][level as usize] / u[k][level as usize]).ln();
                }
            }
            let p = 1.0 / (1.0 + (-log_odds).exp());
            matches += c * p;
            for (k, &level) in pattern.iter().enumerate().take(m.len()) {
                if level != NULL && !blocked[k] {
                    sums[k][level as usize] += c * p;
                    u_sums[k][level as usize] += c * (1.0 - p);
                }
            }
        }
        lambda = (matches / total).clamp(1e-6, 1.0 - 1e-6);
        for k in 0..m.len() {
            let seen: f64 = sums[k].iter().sum();
            let unseen: f64 = u_sums[k].iter().sum();
            for l in 0..m[k].len() {
                m[k][l] = (sums[k][l] + M_PSEUDO * m0[k][l]) / (seen + M_PSEUDO);
                u[k][l] = (u_sums[k][l] + M_PSEUDO * u0[k][l]) / (unseen + M_PSEUDO);
            }
        }
    }
    (m, matches)
}

/// Trains the model on `records` and their candidate pairs, with each pair's levels and its
/// left record (threshold set by the caller). Returns it with each pair's evidence: its match
/// weight without the prior.
pub(super) fn train<T: HasNorm + Sync>(
    records: &[T],
    kinds: &[Kind],
    pairs: &[Pair],
    patterns: &[Pattern],
    lefts: &[u32],
    config: &ResolveConfig,
) -> (Model, Vec<f64>) {
    let started = std::time::Instant::now();
    let tf: Vec<Frequencies> = kinds.iter().map(|k| Frequencies::of(records, *k)).collect();
    let (u, household, u_sample_pairs) = estimate_u(records, kinds, &tf);
    tracing::debug!("training: frequencies, u and households in {:.2?}", started.elapsed());
    let started = std::time::Instant::now();
    let m = estimate_m(kinds, pairs, patterns, &u, config);
    tracing::debug!("training: m by EM in {:.2?}", started.elapsed());
    let comparisons = kinds
        .iter()
        .enumerate()
        .zip(tf)
        .map(|((k, kind), tf)| Comparison {
            role: kind.role().name(),
            levels: kind
                .labels()
                .iter()
                .enumerate()
                .map(|(l, label)| Level { label, m: m[k][l], u: u[k][l], weight: (m[k][l] / u[k][l]).log2() })
                .collect(),
            kind: *kind,
            tf: kind.term_frequency().then_some(tf),
        })
        .collect();
    let mut model = Model {
        comparisons,
        prior: 1e-6,
        threshold: 0.5,
        threshold_chosen: true,
        u_sample_pairs,
        records: records.len() as u64,
        curve: vec![],
        household_kinds: household_kinds(kinds),
        household,
    };
    let started = std::time::Instant::now();
    let evidence = model.evidences(records, lefts, patterns);
    model.prior = estimate_prior(records.len(), &evidence);
    tracing::debug!("training: the prior in {:.2?}", started.elapsed());
    (model, evidence)
}

/// Passes of the prior's fixed point at most; it stops earlier once a pass moves it by less
/// than [`PRIOR_TOLERANCE`] of itself.
const PRIOR_PASSES: usize = 30;
const PRIOR_TOLERANCE: f64 = 1e-9;

/// The prior as the fixed point of expected matches among the candidate pairs over all pairs
/// of `n` records, from each candidate pair's evidence (match weight without the prior).
fn estimate_prior(n: usize, evidence: &[f64]) -> f64 {
    let n = n as f64;
    let all = (n * (n - 1.0) / 2.0).max(1.0);
    // Each record has about one match among the others: the starting point, and the value a
    // few pseudo-pairs hold the fixed point to where there are too few pairs to tell (among a
    // handful of records nearly every pair is a candidate, and it would run up to its cap).
    let base = (1.0 / n.max(2.0)).min(0.5);
    let mut prior = base;
    for _ in 0..PRIOR_PASSES {
        // Summed in fixed chunks, in order: the same records give the same prior on any
        // number of threads.
        let expected: f64 = evidence
            .par_chunks(1 << 16)
            .map(|c| c.iter().map(|w| probability(w + logit2(prior))).sum::<f64>())
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        let next = ((expected + PRIOR_PSEUDO * base) / (all + PRIOR_PSEUDO)).clamp(1e-12, 0.5);
        let moved = (next - prior).abs() / prior;
        prior = next;
        if moved < PRIOR_TOLERANCE {
            break;
        }
    }
    prior
}

/// The threshold (≥ 0.5) that maximises the expected F0.5 over the candidate pairs' match
/// probabilities, and the expected precision and recall at several thresholds.
pub(super) fn threshold_curve(scores: &[f64]) -> (f64, Vec<CurvePoint>) {
    // Every pair counts towards the expected matches; only those of 0.5 or more can set the
    // threshold (and are sorted).
    let actual: f64 = scores.iter().sum();
    let mut sorted: Vec<f64> = scores.par_iter().copied().filter(|p| *p >= 0.5).collect();
    sorted.par_sort_unstable_by(|x, y| y.total_cmp(x));
    let (mut best, mut best_f1, mut tp) = (0.5, -1.0, 0.0);
    for (i, &p) in sorted.iter().enumerate() {
        tp += p;
        // F-beta with beta = 1/2: clustering closes matches transitively, so one false pair
        // can join two whole clusters; precision weighs more than recall.
        let (fp, fn_) = (i as f64 + 1.0 - tp, actual - tp);
        let f = 1.25 * tp / (1.25 * tp + 0.25 * fn_ + fp);
        if f > best_f1 {
            (best, best_f1) = (p, f);
        }
    }
    let at = |t: f64| {
        let above: Vec<f64> = sorted.iter().copied().take_while(|p| *p >= t).collect();
        let tp: f64 = above.iter().sum();
        CurvePoint {
            threshold: t,
            expected_precision: if above.is_empty() { 1.0 } else { tp / above.len() as f64 },
            expected_recall: if actual > 0.0 { tp / actual } else { 1.0 },
        }
    };
    let mut grid = vec![0.5, 0.8, 0.9, 0.95, 0.99, 0.999, best];
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    (best, grid.into_iter().map(at).collect())
}
