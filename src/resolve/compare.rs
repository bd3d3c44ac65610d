//! The graded comparisons of the probabilistic scoring: for each role, the levels two
//! normalized values can agree at, best first, ending in `else`.
//!
//! | role | levels |
//! |---|---|
//! | first_name | exact, nickname, Jaro-Winkler ≥ 0.92, ≥ 0.85, ≥ 0.70, else |
//! | last_name | exact, Jaro-Winkler ≥ 0.92, ≥ 0.85, ≥ 0.70, else |
//! | email | exact, same mailbox but a `+tag`, same local part without tags and dots on another mailbox, local part one edit apart, else |
//! | phone | exact, one edit, else |
//! | dob | exact, day and month swapped, one edit, within 30 days, else |
//! | postcode | exact, one edit, else |
//! | address | exact, Jaro-Winkler ≥ 0.90, ≥ 0.75, else |
//!
//! First and last name are compared in the orientation that fits better, so that a record
//! with the two swapped still agrees name by name. The exact level of every role but `dob`
//! is adjusted for the value's frequency (a shared `smith` says less than a rare name).

use chrono::NaiveDate;

use super::config::Role;
use super::normalize::{email_local, email_local_key};
use super::{Norm, jaro, nicknames};

/// A record's normalized values by role: a [`Norm`], or one record of a
/// [`super::packed::Packed`].
pub trait Values {
    fn get(&self, role: Role) -> Option<&str>;
}

impl Values for Norm {
    fn get(&self, role: Role) -> Option<&str> {
        self[role.index()].as_deref()
    }
}

impl<V: Values> Values for &V {
    fn get(&self, role: Role) -> Option<&str> {
        (**self).get(role)
    }
}

/// The canonical order of two records: by their values, role by role in [`Role::ALL`]'s
/// order, a missing value first (the order of the [`Norm`] arrays themselves).
pub fn order<V: Values>(a: &V, b: &V) -> std::cmp::Ordering {
    Role::ALL.iter().map(|&r| a.get(r).cmp(&b.get(r))).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
}

/// A comparison of the probabilistic scoring: which role, and its levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    FirstName,
    LastName,
    Email,
    Phone,
    Dob,
    Postcode,
    Address,
}

/// Level of a comparison when either value is missing.
pub const NULL: u8 = u8::MAX;

/// Levels of one pair, by position in [`Kind::ALL`].
pub type Pattern = [u8; 7];

impl Kind {
    pub const ALL: [Kind; 7] =
        [Kind::FirstName, Kind::LastName, Kind::Email, Kind::Phone, Kind::Dob, Kind::Postcode, Kind::Address];

    pub fn role(self) -> Role {
        match self {
            Kind::FirstName => Role::FirstName,
            Kind::LastName => Role::LastName,
            Kind::Email => Role::Email,
            Kind::Phone => Role::Phone,
            Kind::Dob => Role::Dob,
            Kind::Postcode => Role::Postcode,
            Kind::Address => Role::Address,
        }
    }

    /// Names of the levels, best first; the last is `else`.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Kind::FirstName => &["exact", "nickname", "jaro_winkler>=0.92", "jaro_winkler>=0.85", "jaro_winkler>=0.70", "else"],
            Kind::LastName => &["exact", "jaro_winkler>=0.92", "jaro_winkler>=0.85", "jaro_winkler>=0.70", "else"],
            Kind::Email => &["exact", "same_without_tag", "same_local_part", "local_one_edit", "else"],
            Kind::Phone | Kind::Postcode => &["exact", "one_edit", "else"],
            Kind::Dob => &["exact", "day_month_swapped", "one_edit", "within_30_days", "else"],
            Kind::Address => &["exact", "jaro_winkler>=0.90", "jaro_winkler>=0.75", "else"],
        }
    }

    /// Whether people living together tend to share the value (last name, phone, address,
    /// postcode):
    /// such agreements are not independent of one another.
    pub fn household(self) -> bool {
        matches!(self, Kind::LastName | Kind::Phone | Kind::Address | Kind::Postcode)
    }

    /// Whether the exact level is adjusted for the value's frequency.
    pub fn term_frequency(self) -> bool {
        self != Kind::Dob
    }

    /// The level two present values reach.
    pub fn level(self, a: &str, b: &str) -> u8 {
        self.level_with(a, b, None)
    }

    /// [`Kind::level`], with the values' Jaro-Winkler similarity when it is known already.
    fn level_with(self, a: &str, b: &str, known: Option<f64>) -> u8 {
        if a == b {
            return 0;
        }
        let jaro_winkler = |a: &str, b: &str| known.unwrap_or_else(|| jaro::jaro_winkler(a, b));
        let bands = |s: f64, mins: &[f64], first: u8| {
            mins.iter().position(|m| s >= *m).map_or(first + mins.len() as u8, |i| first + i as u8)
        };
        match self {
            Kind::FirstName => {
                if nicknames::equivalent(a, b) {
                    return 1;
                }
                bands(jaro_winkler(a, b), &[0.92, 0.85, 0.70], 2)
            }
            Kind::LastName => bands(jaro_winkler(a, b), &[0.92, 0.85, 0.70], 1),
            Kind::Email => email_level(a, b),
            Kind::Phone | Kind::Postcode => 1 + u8::from(!within_one_edit(a, b)),
            Kind::Dob => dob_level(a, b),
            Kind::Address => bands(jaro_winkler(a, b), &[0.90, 0.75], 1),
        }
    }
}

/// Email levels. A `+tag` names the same mailbox on nearly every provider, so two addresses
/// that differ only in a tag agree at level 1. Dots are ignored only where the provider
/// ignores them (Gmail, already in the normalized value): elsewhere `ann.lee@x.com` and
/// `annlee@x.com` are two mailboxes, which two people with one name can hold; they agree,
/// as the same letters on another domain do, only at level 2 (`same_local_part`).
fn email_level(a: &str, b: &str) -> u8 {
    fn domain(e: &str) -> Option<&str> {
        e.rsplit_once('@').map(|(_, d)| d)
    }
    if domain(a).is_some() && domain(a) == domain(b) && email_local(a).is_some() && email_local(a) == email_local(b) {
        return 1;
    }
    // The local keys (no tag, no dots), compared without building them for the pairs (most)
    // that cannot be one edit apart: lengths two apart, or (three characters or more)
    // differing at both ends.
    let (Some(ka), Some(kb)) = (local_key_chars(a), local_key_chars(b)) else {
        return 4;
    };
    let (la, lb) = (ka.clone().count(), kb.clone().count());
    if la == 0 || lb == 0 || la.abs_diff(lb) > 1 {
        return 4;
    }
    if ka.clone().eq(kb.clone()) {
        return 2;
    }
    let bytes = ka.clone().map(char::len_utf8).sum::<usize>();
    if bytes < 5 || (la >= 3 && ka.clone().next() != kb.clone().next() && ka.clone().last() != kb.clone().last()) {
        return 4;
    }
    match (email_local_key(a), email_local_key(b)) {
        // Numbers tell accounts apart (`mia.reyes18` and `mia.reyes19`, `jlee84` and `jlee48`):
        // a local part one edit from another counts only when their digits agree.
        (Some(x), Some(y)) if within_one_edit(&x, &y) && digits(&x).eq(digits(&y)) => 3,
        _ => 4,
    }
}

/// The digits of a text, in order.
fn digits(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars().filter(char::is_ascii_digit)
}

/// The characters of [`email_local_key`], without building it.
fn local_key_chars(email: &str) -> Option<impl Iterator<Item = char> + Clone + '_> {
    email_local(email).map(|l| l.chars().filter(|c| *c != '.'))
}

/// Whether the optimal-string-alignment distance of `a` and `b` is at most 1 (equal, or one
/// substitution, insertion, deletion or swap of neighbours apart), as
/// `strsim::osa_distance(a, b) <= 1`, without its allocations for ASCII strings.
pub fn within_one_edit(a: &str, b: &str) -> bool {
    if !a.is_ascii() || !b.is_ascii() {
        return strsim::osa_distance(a, b) <= 1;
    }
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (short, long) = if x.len() <= y.len() { (x, y) } else { (y, x) };
    if long.len() - short.len() > 1 {
        return false;
    }
    // The common prefix, then what is left must be one edit.
    let i = short.iter().zip(long).take_while(|(p, q)| p == q).count();
    if i == short.len() {
        return true; // equal, or one byte appended
    }
    if short.len() < long.len() {
        return short[i..] == long[i + 1..];
    }
    short[i + 1..] == long[i + 1..]
        || (i + 1 < short.len() && short[i] == long[i + 1] && short[i + 1] == long[i] && short[i + 2..] == long[i + 2..])
}

fn dob_level(a: &str, b: &str) -> u8 {
    let (Some(x), Some(y)) = (date(a), date(b)) else {
        return 2 + u8::from(!within_one_edit(a, b)) * 2;
    };
    use chrono::Datelike;
    if x.year() == y.year() && x.month() == y.day() && x.day() == y.month() {
        return 1;
    }
    if within_one_edit(a, b) {
        return 2;
    }
    if (x - y).num_days().abs() <= 30 { 3 } else { 4 }
}

/// A `YYYY-MM-DD` date (what the `date` normalizer writes) read from its digits; anything
/// else through chrono's parser, as before.
fn date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')));
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        if let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) {
            return NaiveDate::from_ymd_opt(y as i32, m, d);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Whether `b`'s first and last name fit `a`'s better the other way round.
pub fn swapped<V: Values>(a: &V, b: &V) -> bool {
    names(a, b).swapped
}

/// How `b`'s names are read against `a`'s: swapped or not, and (when deciding that needed
/// them) the Jaro-Winkler similarities of the first names and of the last names so read.
struct Names {
    swapped: bool,
    first: Option<f64>,
    last: Option<f64>,
}

fn names<V: Values>(a: &V, b: &V) -> Names {
    let unknown = Names { swapped: false, first: None, last: None };
    let (Some(fa), Some(la), Some(fb), Some(lb)) =
        (a.get(Role::FirstName), a.get(Role::LastName), b.get(Role::FirstName), b.get(Role::LastName))
    else {
        return unknown;
    };
    if fa == fb || la == lb {
        return unknown;
    }
    let jw = jaro::jaro_winkler;
    let (straight, crossed) = ((jw(fa, fb), jw(la, lb)), (jw(fa, lb), jw(la, fb)));
    if crossed.0 + crossed.1 > straight.0 + straight.1 + 0.1 {
        Names { swapped: true, first: Some(crossed.0), last: Some(crossed.1) }
    } else {
        Names { swapped: false, first: Some(straight.0), last: Some(straight.1) }
    }
}

/// The value of `kind` in `b`, read in the orientation `swapped` gives.
pub fn value<V: Values>(norm: &V, kind: Kind, swapped: bool) -> Option<&str> {
    let role = match (kind, swapped) {
        (Kind::FirstName, true) => Role::LastName,
        (Kind::LastName, true) => Role::FirstName,
        _ => kind.role(),
    };
    norm.get(role)
}

/// The levels of a pair on the `kinds` in use ([`NULL`] elsewhere).
///
/// Two local parts that agree only loosely (`same_local_part`, `local_one_edit`) count for
/// nothing when either is spelled from its record's names: people with one name, or one
/// surname in one household, hold `ann.lee@x.com` and `annlee@y.com` as often as one person
/// does, so that agreement is the names' agreement again, not evidence of its own (scored
/// as a missing value; `--explain` shows `local_part_from_names`).
pub fn pattern<V: Values>(a: &V, b: &V, kinds: &[Kind]) -> Pattern {
    let names = names(a, b);
    let mut out = [NULL; 7];
    for (k, kind) in kinds.iter().enumerate() {
        if let (Some(x), Some(y)) = (value(a, *kind, false), value(b, *kind, names.swapped)) {
            let known = match kind {
                Kind::FirstName => names.first,
                Kind::LastName => names.last,
                _ => None,
            };
            out[k] = kind.level_with(x, y, known);
            if *kind == Kind::Email && LOOSE_EMAIL.contains(&out[k]) && (local_from_names(a) || local_from_names(b)) {
                out[k] = NULL;
            }
        }
    }
    out
}

/// The email levels that agree on the local part's letters without naming one mailbox.
const LOOSE_EMAIL: [u8; 2] = [2, 3];

/// Whether a record's email local part (without its `+tag` and separators, and without a
/// digit) is its first and last name, or an initial and the other name, in either order
/// (`ann.lee`, `annlee`, `alee`, `lee_ann`, `leea`), or one of the names alone.
fn local_from_names<V: Values>(n: &V) -> bool {
    let letters = |s: &str| s.chars().filter(char::is_ascii_alphabetic).collect::<String>();
    let (Some(email), Some(first), Some(last)) = (
        n.get(Role::Email),
        n.get(Role::FirstName).map(letters),
        n.get(Role::LastName).map(letters),
    ) else {
        return false;
    };
    // Digits make an address one person's (`ann.lee84`): only letters and separators are
    // the name alone.
    let Some(local) = email_local(email).filter(|l| !l.chars().any(|c| c.is_ascii_digit())).map(letters) else {
        return false;
    };
    if local.is_empty() || first.is_empty() || last.is_empty() {
        return false;
    }
    let (f, l) = (&first[..1], &last[..1]);
    [
        format!("{first}{last}"),
        format!("{last}{first}"),
        format!("{f}{last}"),
        format!("{last}{f}"),
        format!("{first}{l}"),
        format!("{l}{first}"),
        first.clone(),
        last.clone(),
    ]
    .contains(&local)
}
