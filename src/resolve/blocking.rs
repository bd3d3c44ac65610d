//! Candidate pairs: which records are compared at all.
//!
//! Every rule's blocking key is computed once per record (in parallel); records sharing a key
//! form a block, and each pair in a block is a candidate. The rules are unioned: a pair that
//! shares keys under several rules is a candidate once, found by its first rule, and carries
//! the set of every rule whose (compared) block it is in. A block larger than
//! `max_block_size` is skipped and reported, and does not count as shared.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;

use super::config::ResolveConfig;
use super::matching::{HasNorm, SkippedBlock, block_key, hashed_key};

/// A candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// Positions of the records (`a < b`).
    pub a: u32,
    pub b: u32,
    /// The first rule whose block holds both.
    pub rule: u16,
    /// Bit `r` set when the pair shares a compared block under rule `r` (rules 0 to 31).
    pub rules: u32,
}

/// The candidate pairs of a set of records, with what blocking did.
#[derive(Debug, Default)]
pub struct Candidates {
    pub pairs: Vec<Pair>,
    /// Blocks with at least two records.
    pub blocks: u64,
    pub skipped: Vec<SkippedBlock>,
    /// Pairs each rule found first, by rule name.
    pub pairs_per_rule: BTreeMap<String, u64>,
}

const NO_KEY: u64 = 0;

/// The blocks to compare, and which rules' blocks each record is in.
pub struct Plan {
    /// keys[i * width + r]: record i's key under rule r, hashed (NO_KEY when it has none).
    keys: Vec<u64>,
    width: usize,
    compare_from: usize,
    /// Keys of the blocks skipped as too large, per rule.
    oversized: Vec<HashSet<u64>>,
    /// The blocks to compare: the rule and the members (ascending), ordered by rule, then by
    /// first member.
    pub work: Vec<(u16, Vec<u32>)>,
    /// Blocks with at least two records.
    pub blocks: u64,
    pub skipped: Vec<SkippedBlock>,
}

impl Plan {
    /// The blocks of `records` that hold a record at `compare_from` or later.
    pub fn new<T: HasNorm + Sync>(records: &[T], compare_from: usize, config: &ResolveConfig) -> Self {
        let rules = &config.rules;
        let width = rules.len();
        let keys: Vec<u64> = records
            .par_iter()
            .flat_map_iter(|rec| {
                rules.iter().map(move |rule| hashed_key(rec.norm(), &rule.block_on).map_or(NO_KEY, |k| k.max(1)))
            })
            .collect();
        let mut plan =
            Plan { keys, width, compare_from, oversized: vec![HashSet::new(); width], work: Vec::new(), blocks: 0, skipped: Vec::new() };
        let per_rule: Vec<Vec<(u64, Vec<u32>)>> =
            (0..width).map(|r| blocks_of(&plan.keys, width, r, records.len(), compare_from)).collect();
        for ((r, rule), kept) in rules.iter().enumerate().zip(per_rule) {
            for (key, members) in kept {
                plan.blocks += 1;
                if members.len() > config.max_block_size {
                    plan.oversized[r].insert(key);
                    plan.skipped.push(SkippedBlock {
                        rule: rule.name.clone(),
                        key: block_key(records[members[0] as usize].norm(), &rule.block_on).unwrap_or_default(),
                        size: members.len(),
                    });
                } else {
                    plan.work.push((r as u16, members));
                }
            }
        }
        plan.skipped.sort_by(|x, y| y.size.cmp(&x.size).then_with(|| x.key.cmp(&y.key)));
        plan
    }

    /// Whether records `a` and `b` have the same hashed key under rule `r` (equal hashes of
    /// unequal keys are possible, if unlikely: confirm on the values).
    pub fn same_key(&self, a: u32, b: u32, r: usize) -> bool {
        let key = self.keys[a as usize * self.width + r];
        key != NO_KEY && key == self.keys[b as usize * self.width + r]
    }

    /// Rule `k` holds the pair when both have the same key and the block was compared.
    fn shared(&self, a: u32, b: u32, k: usize) -> bool {
        self.same_key(a, b, k) && !self.oversized[k].contains(&self.keys[a as usize * self.width + k])
    }

    /// The candidate pairs of one block of [`Plan::work`]: its pairs with a record at
    /// `compare_from` or later that no earlier rule's compared block holds.
    pub fn pairs_in<'a>(&'a self, block: &'a (u16, Vec<u32>)) -> impl Iterator<Item = Pair> + 'a {
        let (rule, members) = (block.0, &block.1);
        let r = rule as usize;
        members.iter().enumerate().filter(|(_, b)| **b as usize >= self.compare_from).flat_map(move |(j, &b)| {
            members[..j].iter().filter_map(move |&a| {
                if (0..r).any(|k| self.shared(a, b, k)) {
                    return None;
                }
                let mut mask = 0u32;
                for k in r..self.width.min(32) {
                    if k == r || self.shared(a, b, k) {
                        mask |= 1 << k;
                    }
                }
                Some(Pair { a, b, rule, rules: mask })
            })
        })
    }
}

/// The candidate pairs among `records`, except pairs of two records both below
/// `compare_from` (compared with each other in an earlier run), ordered by record.
pub fn candidates<T: HasNorm + Sync>(records: &[T], compare_from: usize, config: &ResolveConfig) -> Candidates {
    let plan = Plan::new(records, compare_from, config);
    let mut pairs: Vec<Pair> = plan.work.par_iter().flat_map_iter(|block| plan.pairs_in(block)).collect();
    pairs.par_sort_unstable_by_key(|p| (p.a, p.b));
    let mut out = Candidates { blocks: plan.blocks, skipped: plan.skipped, ..Candidates::default() };
    out.pairs_per_rule = per_rule(pairs.iter().map(|p| p.rule), config);
    out.pairs = pairs;
    out
}

/// How many of `rules` (indexes into the config's rules) name each rule, by rule name
/// (rules that name none left out).
fn per_rule(rules: impl Iterator<Item = u16>, config: &ResolveConfig) -> BTreeMap<String, u64> {
    let mut counts = vec![0u64; config.rules.len()];
    for r in rules {
        counts[r as usize] += 1;
    }
    by_name(&counts, config)
}

/// Counts per rule (by index into the config's rules) by rule name, zeros left out.
pub fn by_name(counts: &[u64], config: &ResolveConfig) -> BTreeMap<String, u64> {
    config.rules.iter().zip(counts).filter(|(_, n)| **n > 0).map(|(r, n)| (r.name.clone(), *n)).collect()
}

/// The blocks of rule `r` that hold two records or more, one of them at `compare_from` or
/// later: each block's key and members (ascending), ordered by first member. Found by sorting
/// (key, record) on every core.
fn blocks_of(keys: &[u64], width: usize, r: usize, n: usize, compare_from: usize) -> Vec<(u64, Vec<u32>)> {
    let mut keyed: Vec<(u64, u32)> =
        (0..n).filter_map(|i| Some((keys[i * width + r], i as u32)).filter(|(k, _)| *k != NO_KEY)).collect();
    keyed.par_sort_unstable();
    let mut kept: Vec<(u64, Vec<u32>)> = keyed
        .chunk_by(|x, y| x.0 == y.0)
        .filter(|block| block.len() >= 2 && block[block.len() - 1].1 as usize >= compare_from)
        .map(|block| (block[0].0, block.iter().map(|(_, i)| *i).collect()))
        .collect();
    kept.par_sort_unstable_by_key(|(_, m)| m[0]);
    kept
}
