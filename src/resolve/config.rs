//! What a resolution is configured with: the roles fields play, how each is normalized, the
//! matching rules (a blocking key plus comparisons), the scoring, and the limits.
//!
//! The same structure is read from a `rules.toml` (`lake resolve --config`) and from a
//! model's `config: params: rules:` in YAML. Left empty, [`ResolveConfig::rules`] gets
//! [`default_rules`] for the roles the input has.
//!
//! ```toml
//! default_region = "US"
//! max_block_size = 200
//!
//! [normalize]
//! email = "email_basic"     # no Gmail folding for this source
//!
//! [[rules]]
//! name = "email"
//! block_on = ["email"]
//!
//! [[rules]]
//! name = "phone_name"
//! block_on = ["phone"]
//! compare = [{ field = "name", method = "jaro_winkler", min = 0.88 }]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail, ensure};
use serde::{Deserialize, Deserializer};

use super::normalize::Normalizer;

/// The part a field plays in identifying a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Email,
    Phone,
    FirstName,
    LastName,
    Dob,
    Postcode,
    Address,
}

impl Role {
    /// Every role, in column order.
    pub const ALL: [Role; 7] = [
        Role::Email,
        Role::Phone,
        Role::FirstName,
        Role::LastName,
        Role::Dob,
        Role::Postcode,
        Role::Address,
    ];

    /// The role's name, as configuration and output columns spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Email => "email",
            Role::Phone => "phone",
            Role::FirstName => "first_name",
            Role::LastName => "last_name",
            Role::Dob => "dob",
            Role::Postcode => "postcode",
            Role::Address => "address",
        }
    }

    /// Position in [`Role::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The normalization a role gets unless configured otherwise.
    pub fn default_normalizer(self) -> Normalizer {
        match self {
            Role::Email => Normalizer::Email,
            Role::Phone => Normalizer::Phone,
            Role::FirstName | Role::LastName => Normalizer::Name,
            Role::Dob => Normalizer::Date,
            Role::Postcode => Normalizer::Postcode,
            Role::Address => Normalizer::Address,
        }
    }
}

impl FromStr for Role {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match Role::ALL.iter().find(|r| r.name() == s) {
            Some(r) => Ok(*r),
            None => bail!(
                "unknown role `{s}`; roles are {}",
                Role::ALL.map(Role::name).join(", ")
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a comparison or a blocking key looks at: one role, the person's name as a whole
/// (first and last name, matched in either order so that swapped names still agree), or a
/// key derived from a role for blocking that survives typos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Role(Role),
    /// First and last name; in a comparison, both must reach the threshold, in the given or
    /// the swapped order; as a blocking key, the two names sorted.
    Name,
    /// `email_local`: the email's local part without a `+tag` and without dots, on any
    /// provider (`Ann.Lee+shop@x.com` → `annlee`).
    EmailLocal,
    /// `last_name:2`: the first n characters of a role's normalized value.
    Prefix(Role, u8),
    /// `soundex(last_name)`: the Soundex code of a role's value (names that sound alike).
    Soundex(Role),
    /// `name_prefix`: the first three letters of first and last name, sorted (survives
    /// swapped names and typos after the third letter).
    NamePrefix,
}

impl Field {
    /// The roles the field reads.
    pub fn roles(self) -> Vec<Role> {
        match self {
            Field::Role(r) | Field::Prefix(r, _) | Field::Soundex(r) => vec![r],
            Field::Name | Field::NamePrefix => vec![Role::FirstName, Role::LastName],
            Field::EmailLocal => vec![Role::Email],
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Role(r) => f.write_str(r.name()),
            Field::Name => f.write_str("name"),
            Field::EmailLocal => f.write_str("email_local"),
            Field::Prefix(r, n) => write!(f, "{}:{n}", r.name()),
            Field::Soundex(r) => write!(f, "soundex({})", r.name()),
            Field::NamePrefix => f.write_str("name_prefix"),
        }
    }
}

impl FromStr for Field {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "name" => return Ok(Field::Name),
            "email_local" => return Ok(Field::EmailLocal),
            "name_prefix" => return Ok(Field::NamePrefix),
            _ => {}
        }
        if let Some(inner) = s.strip_prefix("soundex(").and_then(|r| r.strip_suffix(')')) {
            return Ok(Field::Soundex(inner.parse()?));
        }
        if let Some((role, n)) = s.split_once(':') {
            let n: u8 = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| anyhow::anyhow!("`{s}`: the prefix length after `:` must be a number from 1 to 255"))?;
            return Ok(Field::Prefix(role.parse()?, n));
        }
        s.parse::<Role>().map(Field::Role).map_err(|e| {
            anyhow::anyhow!("{e}, or `name`, `email_local`, `name_prefix`, `ROLE:N` (prefix), `soundex(ROLE)`")
        })
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How two values of a field are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Equal normalized values (similarity 1 or 0).
    Exact,
    /// Jaro-Winkler similarity.
    JaroWinkler,
    /// Jaro similarity.
    Jaro,
    /// Levenshtein distance scaled to a similarity: 1 − distance / longer length.
    Levenshtein,
}

/// One comparison of a rule: the field's similarity must be at least `min`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub field: Field,
    pub method: Method,
    /// The least similarity that passes (ignored for `exact`).
    #[serde(default = "one")]
    pub min: f64,
}

fn one() -> f64 {
    1.0
}

/// A matching rule: records that share the blocking key are candidates; a candidate pair
/// matches under the rule when every comparison passes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// Fields whose normalized values, all present and equal, put two records in one block.
    pub block_on: Vec<Field>,
    /// Comparisons beyond the blocking key (none: sharing the key is a match).
    #[serde(default)]
    pub compare: Vec<Comparison>,
}

/// How candidate pairs are scored.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Scoring {
    /// A pair matches when one rule whose block it shares passes all its comparisons; the
    /// first such rule (in configuration order) names the match, and its confidence is the
    /// mean similarity of the rule's comparisons.
    Rules,
    /// `method = "probabilistic"`: Fellegi-Sunter over every mapped role with built-in graded
    /// comparison levels and term-frequency adjustment; u from value frequencies and random
    /// record pairs, m and the prior by EM over the candidate pairs of the (blocking) rules,
    /// and the threshold that maximises the model's expected F0.5 unless `threshold` is given.
    /// Without `rules`, blocks on [`default_blocking`].
    Probabilistic {
        /// Least match probability that counts as a match (default: chosen from the model).
        #[serde(default)]
        threshold: Option<f64>,
    },
    /// Fellegi-Sunter: each comparison falls into a level with match weight log2(m/u); the
    /// summed weight with the prior gives a match probability, and `threshold` decides.
    FellegiSunter {
        /// Prior probability that two candidate records match.
        #[serde(default = "default_prior")]
        prior: f64,
        /// Least match probability that counts as a match.
        threshold: f64,
        comparisons: Vec<WeightedComparison>,
        /// Estimate the prior and every m and u from the candidate pairs with
        /// expectation-maximisation (the configured values are the starting point).
        #[serde(default)]
        estimate: bool,
    },
}

fn default_prior() -> f64 {
    0.001
}

/// A Fellegi-Sunter comparison: the first level the pair reaches gives its weight; when a
/// value is missing the comparison adds nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedComparison {
    pub field: Field,
    pub levels: Vec<Level>,
    /// m and u when no level is reached.
    #[serde(rename = "else")]
    pub otherwise: Probabilities,
}

/// One comparison level: similarity by `method` at least `min`, with its m and u.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub method: Method,
    #[serde(default = "one")]
    pub min: f64,
    pub m: f64,
    pub u: f64,
}

/// m: how often matching records fall into a level; u: how often non-matching ones do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probabilities {
    pub m: f64,
    pub u: f64,
}

/// Everything a resolution is configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveConfig {
    /// Region for phone numbers written without a country code (ISO 3166, e.g. `US`).
    #[serde(default = "default_region")]
    pub default_region: String,
    /// A block with more records than this is skipped (and reported), never compared
    /// pairwise.
    #[serde(default = "default_max_block_size")]
    pub max_block_size: usize,
    /// Normalization per role, by rule name; unlisted roles get their default.
    #[serde(default)]
    pub normalize: BTreeMap<Role, String>,
    /// Matching rules in priority order; empty means [`default_rules`].
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// How pairs are scored (unset: [`Scoring::Probabilistic`] without `rules`,
    /// [`Scoring::Rules`] with them).
    #[serde(default)]
    pub scoring: Option<Scoring>,
}

fn default_region() -> String {
    "US".to_string()
}

/// Blocks of names grow with the input wherever few names are shared by many records, and
/// their pairs with its square: on the demo's generator (564 last names) at 1.3M records a cap
/// of 1000 let the probabilistic name keys through with 262M candidate pairs (170 s, 17 GiB),
/// where 200 compares 7M and gives the same clusters record for record; on
/// scripts/gen_customers.py at 1M records 200 drops 17,000 of 19.4M pairs and the clusters
/// are the same too. A block of 200 is 19,900 pairs; a record in one is still compared
/// through its other keys.
fn default_max_block_size() -> usize {
    200
}

impl Default for ResolveConfig {
    fn default() -> Self {
        Self {
            default_region: default_region(),
            max_block_size: default_max_block_size(),
            normalize: BTreeMap::new(),
            rules: Vec::new(),
            scoring: None,
        }
    }
}

impl ResolveConfig {
    /// Reads a `rules.toml`.
    pub fn from_toml(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// The normalization of each role (indexed by [`Role::index`]).
    pub fn normalizers(&self) -> Result<[Normalizer; 7]> {
        let mut out = Role::ALL.map(Role::default_normalizer);
        for (role, name) in &self.normalize {
            out[role.index()] = Normalizer::from_name(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "normalize.{role} = `{name}` is not a normalization rule; rules are {}",
                    Normalizer::ALL.map(|(n, _)| n).join(", ")
                )
            })?;
        }
        Ok(out)
    }

    /// The scoring, as [`ResolveConfig::complete`] settled it.
    pub fn scoring(&self) -> &Scoring {
        static PROBABILISTIC: Scoring = Scoring::Probabilistic { threshold: None };
        static RULES: Scoring = Scoring::Rules;
        self.scoring.as_ref().unwrap_or(if self.rules.is_empty() { &PROBABILISTIC } else { &RULES })
    }

    /// Fills in the scoring and default rules for the `present` roles when none are
    /// configured (see [`Scoring`] and [`default_blocking`]), and checks
    /// that every rule only uses roles that are present.
    pub fn complete(mut self, present: &[Role]) -> Result<Self> {
        // Without rules or a scoring, the probabilistic scoring; rules alone are scored as rules.
        let scoring = self.scoring.take().unwrap_or(match self.rules.is_empty() {
            true => Scoring::Probabilistic { threshold: None },
            false => Scoring::Rules,
        });
        if self.rules.is_empty() {
            self.rules = match scoring {
                Scoring::Probabilistic { .. } => default_blocking(present),
                _ => default_rules(present),
            };
        }
        if let Scoring::Probabilistic { threshold: Some(t) } = scoring {
            ensure!(t > 0.0 && t < 1.0, "scoring.threshold must be between 0 and 1, not {t}");
        }
        self.scoring = Some(scoring);
        ensure!(
            !self.rules.is_empty(),
            "no matching rule applies to the roles given ({}); map email, phone, or first_name \
             and last_name with postcode, dob or address",
            present.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
        );
        ensure!(self.max_block_size >= 2, "max_block_size must be at least 2");
        let check = |field: &Field, what: &str| -> Result<()> {
            for role in field.roles() {
                ensure!(
                    present.contains(&role),
                    "{what} uses `{field}`, but no column is mapped to the role `{role}`"
                );
            }
            Ok(())
        };
        for rule in &self.rules {
            ensure!(!rule.block_on.is_empty(), "rule `{}` has an empty block_on", rule.name);
            for field in &rule.block_on {
                check(field, &format!("rule `{}`", rule.name))?;
            }
            for c in &rule.compare {
                check(&c.field, &format!("rule `{}`", rule.name))?;
                ensure!(
                    (0.0..=1.0).contains(&c.min),
                    "rule `{}`: min must be between 0 and 1, not {}",
                    rule.name,
                    c.min
                );
            }
        }
        if let Some(Scoring::FellegiSunter { prior, threshold, comparisons, .. }) = &self.scoring {
            ensure!(*prior > 0.0 && *prior < 1.0, "scoring.prior must be between 0 and 1");
            ensure!(*threshold > 0.0 && *threshold < 1.0, "scoring.threshold must be between 0 and 1");
            for c in comparisons {
                check(&c.field, "a Fellegi-Sunter comparison")?;
                for p in c.levels.iter().map(|l| (l.m, l.u)).chain([(c.otherwise.m, c.otherwise.u)]) {
                    ensure!(
                        p.0 > 0.0 && p.1 > 0.0,
                        "Fellegi-Sunter comparison on `{}`: m and u must be above 0",
                        c.field
                    );
                }
            }
        }
        self.normalizers()?;
        Ok(self)
    }
}

/// The rules used when none are configured, for the roles present:
///
/// - `email`: same normalized email;
/// - `phone_name`: same E.164 phone and first and last names with Jaro-Winkler ≥ 0.88 (in
///   either order), so that a family sharing a phone stays apart;
/// - `postcode_name`, `dob_name`, `address_name`: same postcode / birth date / address and
///   names with Jaro-Winkler ≥ 0.92.
pub fn default_rules(present: &[Role]) -> Vec<Rule> {
    let has = |r: Role| present.contains(&r);
    let names = has(Role::FirstName) && has(Role::LastName);
    let name_at = |min: f64| Comparison { field: Field::Name, method: Method::JaroWinkler, min };
    let mut rules = Vec::new();
    if has(Role::Email) {
        rules.push(Rule { name: "email".into(), block_on: vec![Field::Role(Role::Email)], compare: vec![] });
    }
    if names {
        let mut with_name = |name: &str, role: Role, min: f64| {
            if has(role) {
                rules.push(Rule {
                    name: name.into(),
                    block_on: vec![Field::Role(role)],
                    compare: vec![name_at(min)],
                });
            }
        };
        with_name("phone_name", Role::Phone, 0.88);
        with_name("postcode_name", Role::Postcode, 0.92);
        with_name("dob_name", Role::Dob, 0.92);
        with_name("address_name", Role::Address, 0.92);
    }
    rules
}

/// The blocking rules of the probabilistic scoring when no rules are given, for the roles
/// present. Each is a way two records of one person can still share a key when other fields
/// have typos, nicknames or swapped names; a pair found by several is compared once.
///
/// A key made of a whole common value (a last name, or its Soundex code) gives blocks that
/// grow with the input, and pairs with its square: with one letter of the first name beside
/// it, a million customers gave 47 million candidate pairs, most of them from those two
/// rules; with two letters, 19 million, with the same clusters on FEBRL and the same F1 on
/// the generated million (bench/er_eval.py, bench/resolve.py). Keys of a value and a date or
/// a postcode stay small at any size.
pub fn default_blocking(present: &[Role]) -> Vec<Rule> {
    use Role::*;
    let has = |fields: &[Field]| fields.iter().all(|f| f.roles().iter().all(|r| present.contains(r)));
    let candidates: [(&str, Vec<Field>); 12] = [
        ("email", vec![Field::Role(Email)]),
        ("email_local", vec![Field::EmailLocal]),
        ("phone", vec![Field::Role(Phone)]),
        ("name", vec![Field::Name]),
        ("last_first_prefix", vec![Field::Role(LastName), Field::Prefix(FirstName, 2)]),
        ("soundex_first_prefix", vec![Field::Soundex(LastName), Field::Prefix(FirstName, 2)]),
        ("name_prefix", vec![Field::NamePrefix]),
        ("dob_first_initial", vec![Field::Role(Dob), Field::Prefix(FirstName, 1)]),
        ("dob_last_initial", vec![Field::Role(Dob), Field::Prefix(LastName, 1)]),
        ("postcode_last_prefix", vec![Field::Role(Postcode), Field::Prefix(LastName, 2)]),
        ("address", vec![Field::Role(Address)]),
        ("dob_postcode", vec![Field::Role(Dob), Field::Role(Postcode)]),
    ];
    candidates
        .into_iter()
        .filter(|(_, fields)| has(fields))
        .map(|(name, block_on)| Rule { name: name.to_string(), block_on, compare: vec![] })
        .collect()
}
