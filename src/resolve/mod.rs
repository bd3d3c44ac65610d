//! Entity resolution: which records from different sources (Shopify customers, Stripe
//! customers, HubSpot contacts) are the same person, under ids that stay stable across runs.
//!
//! The pipeline is [`normalize`] (named rules per field) → [`matching`] (blocking keys,
//! comparisons, rule-based or Fellegi-Sunter scores) → [`cluster`] (union-find closure, stable
//! ids). [`Resolver::resolve`] runs it over [`Entry`]s, either from scratch ([`Mode::Full`],
//! earlier ids inherited) or incrementally ([`Mode::Incremental`], new records compared
//! against the existing index only). [`io`] reads inputs and writes `pairs.csv` /
//! `clusters.csv` for `lake resolve`; [`model`] is the built-in Rust model
//! `resolve_entities`, which keeps the index as Iceberg tables.
//!
//! ```
//! use lake::resolve::{Entry, Mode, Resolver, config::{ResolveConfig, Role}};
//! let resolver = Resolver::new(ResolveConfig::default(), &[Role::Email]).unwrap();
//! let entry = |source: &str, id: &str, email: &str| {
//!     Entry::new(source, id, resolver.normalize(&[(Role::Email, email)]))
//! };
//! let entries = vec![entry("shopify", "1", "Ann@x.com"), entry("stripe", "cus_1", " ann@X.com ")];
//! let resolution = resolver.resolve(entries, Mode::Full, 0);
//! assert_eq!(resolution.assigned[0].entity_id, resolution.assigned[1].entity_id);
//! ```

pub mod blocking;
pub mod cluster;
pub mod compare;
pub mod config;
pub mod io;
pub mod jaro;
pub mod matching;
pub mod model;
pub mod nicknames;
pub mod normalize;
pub mod packed;
pub mod probabilistic;

use std::borrow::Cow;
use std::collections::BTreeMap;

// foldhash, not SipHash: these maps hold a key per record (ids, values), from data the user
// controls; foldhash is several times faster on short strings and is seeded per process.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use cluster::{Apart, new_entity_id};
use config::{ResolveConfig, Role};
use matching::{Match, SkippedBlock, find_matches};
use normalize::Normalizer;

/// Normalized values of one record, indexed by [`Role::index`]. Shared, not copied: records
/// repeat values (a household's phone, a provider's re-sent email), and normalizing caches them.
pub type Norm = [Option<Arc<str>>; 7];

/// Raw values of one record, indexed by [`Role::index`].
pub type Raw = [Option<String>; 7];

/// What an earlier run said about a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Prior {
    pub entity_id: String,
    /// When the record was first resolved (microseconds since the epoch).
    pub first_seen: i64,
    pub match_rule: Option<String>,
    pub confidence: Option<f64>,
}

/// One record to resolve.
#[derive(Debug, Clone)]
pub struct Entry {
    pub source: String,
    pub source_id: String,
    pub norm: Norm,
    /// Its entity from an earlier run, if it had one.
    pub prior: Option<Prior>,
}

impl Entry {
    pub fn new(source: &str, source_id: &str, norm: Norm) -> Self {
        Self { source: source.to_string(), source_id: source_id.to_string(), norm, prior: None }
    }
}

/// How [`Resolver::resolve`] treats its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every record is given and compared; clusters are rebuilt from the pairs, and ids come
    /// from the records' priors where they have them.
    Full,
    /// Entries before `compare_from` are the existing index (compared among themselves
    /// before, and kept together by their prior ids); the rest are new or changed records,
    /// compared against everything that shares a block with them.
    Incremental { compare_from: usize },
}

/// The entity of one entry after resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    pub entity_id: String,
    pub first_seen: i64,
    /// The strongest match that joined this record to its cluster (none for a record alone).
    pub match_rule: Option<String>,
    pub confidence: Option<f64>,
    /// Whether the row differs from its prior (a new record, or a new id).
    pub changed: bool,
}

/// Two entity ids that became one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Merge {
    pub merged_id: String,
    pub into_id: String,
}

/// Counts for one run, as `entity_resolution_stats` stores them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub records_in: u64,
    pub records_compared: u64,
    pub blocks: u64,
    pub candidate_pairs: u64,
    pub matches: u64,
    pub matches_per_rule: BTreeMap<String, u64>,
    pub clusters: u64,
    pub largest_cluster: u64,
    pub merges: u64,
    pub skipped_blocks: u64,
    pub duration_ms: u64,
    /// Candidate pairs each blocking rule found first.
    pub pairs_per_rule: BTreeMap<String, u64>,
}

/// The outcome of [`Resolver::resolve`], aligned with its entries.
#[derive(Debug)]
pub struct Resolution {
    pub entries: Vec<Entry>,
    pub assigned: Vec<Assigned>,
    pub matches: Vec<Match>,
    pub merges: Vec<Merge>,
    pub skipped_blocks: Vec<SkippedBlock>,
    pub stats: Stats,
    /// Fellegi-Sunter parameters estimated by EM, when the scoring asks for it.
    pub estimated: Option<config::Scoring>,
    /// The trained model of the probabilistic scoring.
    pub model: Option<probabilistic::Model>,
}

/// With the probabilistic scoring, clusters form strongest pair first and never across a pair
/// found apart, so the order of the pairs matters: a kept cluster formed by weaker pairs than a
/// new record's could end otherwise in a full build. So an incremental run re-forms from scratch
/// every kept cluster that a new record matches: its records are compared among themselves
/// again (with the same model) and their pairs join this run's. Returns which entries before
/// `compare_from` were reopened (their prior clusters are not kept as they were).
fn reopen(entries: &[Entry], compare_from: usize, config: &ResolveConfig, found: &mut matching::Matches) -> Vec<bool> {
    let old = |i: u32| (i as usize) < compare_from;
    let mut touched: HashSet<&str> = HashSet::new();
    let mut reopened = vec![false; compare_from];
    for i in found.matches.iter().flat_map(|m| [m.a, m.b]).filter(|&i| old(i)) {
        reopened[i as usize] = true;
        if let Some(p) = &entries[i as usize].prior {
            touched.insert(p.entity_id.as_str());
        }
    }
    for (i, e) in entries.iter().enumerate().take(compare_from) {
        if e.prior.as_ref().is_some_and(|p| touched.contains(p.entity_id.as_str())) {
            reopened[i] = true;
        }
    }
    let members: Vec<u32> = (0..compare_from as u32).filter(|&i| reopened[i as usize]).collect();
    if members.len() < 2 {
        return reopened;
    }
    let records: Vec<&Norm> = members.iter().map(|&i| &entries[i as usize].norm).collect();
    let model = found.model.as_ref().expect("only the probabilistic scoring is reopened");
    let within = probabilistic::find_matches(&records, 0, config, None, Some(model));
    let at = |i: u32| members[i as usize];
    found.comparisons += within.comparisons;
    found.matches.extend(within.matches.into_iter().map(|m| Match { a: at(m.a), b: at(m.b), ..m }));
    found.apart.extend(within.apart.into_iter().map(|(a, b)| (at(a), at(b))));
    reopened
}

/// A configured resolution: normalizes records and resolves them.
#[derive(Debug, Clone)]
pub struct Resolver {
    config: ResolveConfig,
    normalizers: [Normalizer; 7],
    present: Vec<Role>,
    /// A probabilistic model kept from an earlier run, used instead of training one.
    trained: Option<Arc<probabilistic::Model>>,
}

impl Resolver {
    /// Checks `config` against the roles the input has and fills in default rules.
    pub fn new(config: ResolveConfig, present: &[Role]) -> Result<Self> {
        let config = config.complete(present)?;
        let normalizers = config.normalizers()?;
        let mut present = present.to_vec();
        present.sort();
        present.dedup();
        Ok(Self { config, normalizers, present, trained: None })
    }

    /// This resolver scoring with `model` (kept from an earlier run with the same
    /// [`Resolver::fingerprint`]) instead of training one: pairs score as they did then.
    pub fn with_model(mut self, model: probabilistic::Model) -> Self {
        self.trained = Some(Arc::new(model));
        self
    }

    /// A digest of everything a trained model depends on besides the records: the settings
    /// (normalization, blocking, scoring) and the roles present. A model kept under another
    /// fingerprint is not reused.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{} {:?} {:?}", env!("CARGO_PKG_VERSION"), self.present, self.config));
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    pub fn config(&self) -> &ResolveConfig {
        &self.config
    }

    /// Normalizes one record's raw values.
    pub fn normalize(&self, raw: &[(Role, &str)]) -> Norm {
        let mut norm: Norm = Default::default();
        for (role, value) in raw {
            norm[role.index()] = self.normalize_value(*role, value).map(Arc::from);
        }
        norm
    }

    /// Normalizes many records on every core: each distinct raw value of a role once per
    /// chunk of records (emails and phones repeat).
    pub fn normalize_all(&self, raws: &[Raw]) -> Vec<Norm> {
        raws.par_iter()
            .with_min_len(4096)
            .map_init(
                || CachedNormalizer { resolver: self, seen: Default::default() },
                |cache, raw| cache.normalize(raw),
            )
            .collect()
    }

    /// Normalizes one value for `role`.
    pub fn normalize_value(&self, role: Role, value: &str) -> Option<String> {
        self.normalizers[role.index()].apply(value, &self.config.default_region)
    }

    /// The blocking key of a record under each rule, in rule order (`None`: it has none).
    pub fn block_key_per_rule<'a>(&'a self, norm: &'a Norm) -> impl Iterator<Item = (&'a str, Option<String>)> + 'a {
        self.config.rules.iter().map(move |r| (r.name.as_str(), matching::block_key(norm, &r.block_on)))
    }

    /// Resolves `entries`; `now` (microseconds since the epoch) is the `first_seen` of
    /// records seen for the first time.
    pub fn resolve(&self, entries: Vec<Entry>, mode: Mode, now: i64) -> Resolution {
        self.resolve_beside(entries, mode, now, &HashSet::new())
    }

    /// [`Resolver::resolve`] of part of an index: `other_ids` are the entity ids of the
    /// records not given, which a new entity must not take.
    pub fn resolve_beside(&self, entries: Vec<Entry>, mode: Mode, now: i64, other_ids: &HashSet<&str>) -> Resolution {
        let started = Instant::now();
        let compare_from = match mode {
            Mode::Full => 0,
            Mode::Incremental { compare_from } => compare_from.min(entries.len()),
        };
        let mut found = find_matches(&entries, compare_from, &self.config, self.trained.as_deref());
        let reopened = match found.model.is_some() && compare_from > 0 {
            true => reopen(&entries, compare_from, &self.config, &mut found),
            false => Vec::new(),
        };

        // The index before `compare_from` keeps its clusters: records sharing a prior id stay
        // together. Records after it are clustered by this run's pairs alone.
        let mut forced = Vec::new();
        if let Mode::Incremental { .. } = mode {
            let mut first_with: HashMap<&str, u32> = HashMap::new();
            for (i, e) in entries.iter().enumerate().take(compare_from) {
                if reopened.get(i).copied().unwrap_or(false) {
                    continue;
                }
                if let Some(p) = &e.prior {
                    let first = *first_with.entry(p.entity_id.as_str()).or_insert(i as u32);
                    forced.push((first, i as u32));
                }
            }
        }
        let links = forced.iter().copied().chain(found.matches.iter().map(|m| (m.a, m.b)));
        let mut sets = Apart::new(entries.len(), &found.apart, links);
        for &(first, i) in &forced {
            sets.force(first, i);
        }
        // Strongest pair first, so that of two chains that would join namesakes the likelier
        // one forms (only the probabilistic scoring finds pairs apart; rules join every match).
        let mut order: Vec<&Match> = found.matches.iter().collect();
        if !found.apart.is_empty() {
            order.sort_by(|x, y| y.score.total_cmp(&x.score).then((x.a, x.b).cmp(&(y.a, y.b))));
        }
        for m in order {
            sets.join(m.a, m.b);
        }
        let groups = sets.groups();
        let assigning = Instant::now();
        let (assigned, merges) = self.assign_ids(&entries, &groups, &found.matches, compare_from, now, other_ids);
        tracing::debug!("{} clusters, ids assigned in {:.2?}", groups.len(), assigning.elapsed());

        let mut stats = Stats {
            records_in: entries.len() as u64,
            records_compared: (entries.len() - compare_from) as u64,
            blocks: found.blocks,
            candidate_pairs: found.comparisons,
            matches: found.matches.len() as u64,
            clusters: groups.len() as u64,
            largest_cluster: groups.iter().map(Vec::len).max().unwrap_or(0) as u64,
            merges: merges.len() as u64,
            skipped_blocks: found.skipped.len() as u64,
            pairs_per_rule: found.pairs_per_rule,
            ..Stats::default()
        };
        for m in &found.matches {
            *stats.matches_per_rule.entry(self.config.rules[m.rule as usize].name.clone()).or_default() += 1;
        }
        stats.duration_ms = started.elapsed().as_millis() as u64;
        Resolution {
            entries,
            assigned,
            matches: found.matches,
            merges,
            skipped_blocks: found.skipped,
            stats,
            estimated: found.estimated,
            model: found.model,
        }
    }

    /// The name of rule `index`.
    pub fn rule_name(&self, index: u16) -> &str {
        &self.config.rules[index as usize].name
    }

    fn assign_ids(
        &self,
        entries: &[Entry],
        groups: &[Vec<u32>],
        matches: &[Match],
        kept_from: usize,
        now: i64,
        other_ids: &HashSet<&str>,
    ) -> (Vec<Assigned>, Vec<Merge>) {
        let first_seen = |i: u32| entries[i as usize].prior.as_ref().map_or(now, |p| p.first_seen);
        // Age of each prior id: the earliest first_seen of a record carrying it.
        let mut age: HashMap<&str, i64> = HashMap::new();
        for e in entries {
            if let Some(p) = &e.prior {
                let a = age.entry(p.entity_id.as_str()).or_insert(p.first_seen);
                *a = (*a).min(p.first_seen);
            }
        }
        // The oldest record of each group, which orders the groups' claims on ids.
        let anchor = |g: &Vec<u32>| {
            *g.iter()
                .min_by(|&&x, &&y| {
                    let (ex, ey) = (&entries[x as usize], &entries[y as usize]);
                    first_seen(x)
                        .cmp(&first_seen(y))
                        .then_with(|| ex.source.cmp(&ey.source))
                        .then_with(|| ex.source_id.cmp(&ey.source_id))
                })
                .expect("groups are not empty")
        };
        let mut order: Vec<(usize, u32)> = groups.par_iter().enumerate().map(|(i, g)| (i, anchor(g))).collect();
        order.par_sort_by(|(_, x), (_, y)| {
            let (ex, ey) = (&entries[*x as usize], &entries[*y as usize]);
            first_seen(*x)
                .cmp(&first_seen(*y))
                .then_with(|| ex.source.cmp(&ey.source))
                .then_with(|| ex.source_id.cmp(&ey.source_id))
        });

        // Prior ids kept by a group, and ids minted for groups without one (never a prior id).
        let mut taken: HashSet<&str> = HashSet::with_capacity(groups.len());
        let mut minted: HashSet<String> = HashSet::new();
        let mut group_id: Vec<Cow<'_, str>> = vec![Cow::Borrowed(""); groups.len()];
        let mut candidates: Vec<&str> = Vec::new();
        for (g, anchor) in &order {
            candidates.clear();
            candidates.extend(groups[*g].iter().filter_map(|&i| entries[i as usize].prior.as_ref().map(|p| p.entity_id.as_str())));
            candidates.sort_by(|x, y| age[x].cmp(&age[y]).then_with(|| x.cmp(y)));
            candidates.dedup();
            group_id[*g] = match candidates.iter().find(|c| !taken.contains(*c)) {
                Some(id) => {
                    taken.insert(id);
                    Cow::Borrowed(*id)
                }
                None => {
                    let e = &entries[*anchor as usize];
                    let mut salt = 0;
                    let id = loop {
                        let id = new_entity_id(&e.source, &e.source_id, salt);
                        if !minted.contains(&id) && !age.contains_key(id.as_str()) && !other_ids.contains(id.as_str()) {
                            break id;
                        }
                        salt += 1;
                    };
                    minted.insert(id.clone());
                    Cow::Owned(id)
                }
            };
        }

        let merges = recorded_merges(entries, groups, &taken, &group_id);

        let best = self.strongest(entries, matches, kept_from);
        let mut group_of = vec![0u32; entries.len()];
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                group_of[i as usize] = g as u32;
            }
        }
        let assigned: Vec<Assigned> = (0..entries.len())
            .into_par_iter()
            .map(|i| {
                let (e, g) = (&entries[i], group_of[i] as usize);
                let (match_rule, confidence) = match &best[i] {
                    Some((r, s)) => (Some(self.rule_name(*r).to_string()), Some(*s)),
                    // A kept record whose prior rule is no longer configured.
                    None if i < kept_from && groups[g].len() > 1 => match &e.prior {
                        Some(p) => (p.match_rule.clone(), p.confidence),
                        None => (None, None),
                    },
                    None => (None, None),
                };
                let changed = match &e.prior {
                    None => true,
                    Some(p) => {
                        p.entity_id != group_id[g] || p.match_rule != match_rule || p.confidence != confidence
                    }
                };
                Assigned { entity_id: group_id[g].to_string(), first_seen: first_seen(i as u32), match_rule, confidence, changed }
            })
            .collect();
        (assigned, merges)
    }

    /// The strongest match (rule, score) of each record. A record of a kept cluster (before
    /// `kept_from`, incremental runs only) keeps the matches it had: its strongest is the
    /// stronger of its prior one and this run's.
    fn strongest(&self, entries: &[Entry], matches: &[Match], kept_from: usize) -> Vec<Option<(u16, f64)>> {
        let rule_index = |name: &str| self.config.rules.iter().position(|r| r.name == name).map(|r| r as u16);
        let prior_best = |i: usize| -> Option<(u16, f64)> {
            let p = entries[i].prior.as_ref()?;
            Some((rule_index(p.match_rule.as_deref()?)?, p.confidence?))
        };
        let mut best = strongest_matches(matches, entries.len());
        for (i, slot) in best.iter_mut().enumerate().take(kept_from) {
            if let Some(prior) = prior_best(i)
                && slot.is_none_or(|now| stronger(prior, now))
            {
                *slot = Some(prior);
            }
        }
        best
    }
}

/// [`Resolver::normalize`] that normalizes each distinct raw value of a role once.
struct CachedNormalizer<'a> {
    resolver: &'a Resolver,
    seen: [HashMap<Box<str>, Option<Arc<str>>>; 7],
}

impl CachedNormalizer<'_> {
    /// Normalizes one record's raw values.
    fn normalize(&mut self, raw: &Raw) -> Norm {
        let mut norm: Norm = Default::default();
        for role in Role::ALL {
            let Some(value) = raw[role.index()].as_deref() else { continue };
            let seen = &mut self.seen[role.index()];
            norm[role.index()] = match seen.get(value) {
                Some(v) => v.clone(),
                None => {
                    let v = self.resolver.normalize_value(role, value).map(Arc::from);
                    seen.insert(Box::from(value), v.clone());
                    v
                }
            };
        }
        norm
    }
}

/// Ids no group kept were merged into the id of a group holding their records.
fn recorded_merges(entries: &[Entry], groups: &[Vec<u32>], taken: &HashSet<&str>, group_id: &[Cow<'_, str>]) -> Vec<Merge> {
    let mut merges = Vec::new();
    let mut recorded: HashSet<&str> = HashSet::new();
    for (g, members) in groups.iter().enumerate() {
        for &i in members {
            if let Some(p) = &entries[i as usize].prior
                && !taken.contains(p.entity_id.as_str())
                && recorded.insert(p.entity_id.as_str())
            {
                merges.push(Merge { merged_id: p.entity_id.clone(), into_id: group_id[g].to_string() });
            }
        }
    }
    merges.sort_by(|x, y| x.merged_id.cmp(&y.merged_id));
    merges
}

/// Whether match `a` (rule, score) is stronger than `b`: a higher score, then an earlier rule.
fn stronger(a: (u16, f64), b: (u16, f64)) -> bool {
    a.1 > b.1 || (a.1 == b.1 && a.0 < b.0)
}

/// The strongest match (rule, score) of each of `n` records in this run.
fn strongest_matches(matches: &[Match], n: usize) -> Vec<Option<(u16, f64)>> {
    let mut best: Vec<Option<(u16, f64)>> = vec![None; n];
    for m in matches {
        for x in [m.a, m.b] {
            let slot = &mut best[x as usize];
            if slot.is_none_or(|now| stronger((m.rule, m.score), now)) {
                *slot = Some((m.rule, m.score));
            }
        }
    }
    best
}

impl Resolution {
    /// The entries with their new entities as priors: the index to resolve the next
    /// arrivals against ([`Mode::Incremental`]) or to keep ids through a full rebuild.
    pub fn into_index(self) -> Vec<Entry> {
        self.entries
            .into_iter()
            .zip(self.assigned)
            .map(|(mut e, a)| {
                e.prior = Some(Prior {
                    entity_id: a.entity_id,
                    first_seen: a.first_seen,
                    match_rule: a.match_rule,
                    confidence: a.confidence,
                });
                e
            })
            .collect()
    }
}

impl matching::HasNorm for Entry {
    fn norm(&self) -> &Norm {
        &self.norm
    }
}
