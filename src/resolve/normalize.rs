//! Normalization rules: named functions that turn a raw field (an email, a phone number, a
//! name, a date, a postcode, an address) into the form records are blocked and compared on.
//!
//! Every rule returns `None` for a value that carries no identity (empty, unparsable, an
//! obviously fake phone number), so that it never makes two records look alike.
//!
//! ```
//! use lake::resolve::normalize::{Normalizer, email, name};
//! assert_eq!(email(" John.Smith+shop@GoogleMail.com ").as_deref(), Some("johnsmith@gmail.com"));
//! assert_eq!(name("Dr. José O'Brien").as_deref(), Some("jose obrien"));
//! let phone = Normalizer::from_name("phone").unwrap();
//! assert_eq!(phone.apply("(212) 736-0100", "US").as_deref(), Some("+12127360100"));
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use unicode_normalization::UnicodeNormalization;

mod metadata;
mod nanp;
pub use metadata::rebuild as rebuild_phone_metadata;
use unicode_normalization::char::is_combining_mark;

/// A named normalization function, chosen per column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Normalizer {
    /// [`email`]: provider-aware (plus tags, Gmail dots, `googlemail.com`).
    Email,
    /// [`email_basic`]: trim and lower-case only.
    EmailBasic,
    /// [`phone`]: E.164 with a default region; fake numbers become null.
    Phone,
    /// [`name`]: Unicode-folded, lower-case, no punctuation, no titles.
    Name,
    /// [`text`]: Unicode-folded, lower-case, single spaces.
    Text,
    /// [`date`]: ISO `YYYY-MM-DD` from common date spellings.
    Date,
    /// [`postcode`]: upper-case without spaces; ZIP+4 cut to five digits.
    Postcode,
    /// [`address`]: folded text with the common street abbreviations unified.
    Address,
    /// Trimmed, otherwise as given.
    Raw,
}

impl Normalizer {
    /// All rules with their names, as the configuration spells them.
    pub const ALL: [(&'static str, Normalizer); 9] = [
        ("email", Normalizer::Email),
        ("email_basic", Normalizer::EmailBasic),
        ("phone", Normalizer::Phone),
        ("name", Normalizer::Name),
        ("text", Normalizer::Text),
        ("date", Normalizer::Date),
        ("postcode", Normalizer::Postcode),
        ("address", Normalizer::Address),
        ("raw", Normalizer::Raw),
    ];

    /// The rule called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }

    /// The rule's name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, r)| *r == self).map(|(n, _)| *n).unwrap_or("raw")
    }

    /// Applies the rule; `region` is the ISO 3166 region for phone numbers written without a
    /// country code.
    pub fn apply(self, value: &str, region: &str) -> Option<String> {
        match self {
            Normalizer::Email => email(value),
            Normalizer::EmailBasic => email_basic(value),
            Normalizer::Phone => phone(value, region),
            Normalizer::Name => name(value),
            Normalizer::Text => text(value),
            Normalizer::Date => date(value),
            Normalizer::Postcode => postcode(value),
            Normalizer::Address => address(value),
            Normalizer::Raw => non_empty(value.trim().to_string()),
        }
    }
}

impl fmt::Display for Normalizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

/// Providers that deliver `local+tag@domain` to `local@domain`.
const PLUS_TAG_DOMAINS: [&str; 10] = [
    "gmail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "icloud.com",
    "me.com",
    "protonmail.com",
    "proton.me",
    "fastmail.com",
    "yandex.ru",
];

/// Trims and lower-cases an email address; `None` unless it has a local part and a domain.
pub fn email_basic(value: &str) -> Option<String> {
    let lower = value.trim().to_lowercase();
    let (local, domain) = lower.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    if local.is_empty() || domain.is_empty() || !domain.contains('.') || local.contains(char::is_whitespace) {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// Addresses people type when they do not want to give one.
const PLACEHOLDER_LOCALS: [&str; 12] = [
    "none", "noemail", "no-email", "noreply", "no-reply", "donotreply", "do-not-reply", "test",
    "unknown", "na", "null", "email",
];
const PLACEHOLDER_DOMAINS: [&str; 3] = ["none.com", "noemail.com", "test.com"];

/// [`email_basic`], then: `googlemail.com` becomes `gmail.com`, dots in Gmail local parts
/// are removed, and `+tag` suffixes are stripped for providers that ignore them. Placeholder
/// addresses (`none@…`, `noemail@…`, anything at `none.com` or `test.com`) are `None`.
pub fn email(value: &str) -> Option<String> {
    let basic = email_basic(value)?;
    let (local, domain) = basic.rsplit_once('@')?;
    if PLACEHOLDER_LOCALS.contains(&local) || PLACEHOLDER_DOMAINS.contains(&domain) {
        return None;
    }
    let domain = if domain == "googlemail.com" { "gmail.com" } else { domain };
    let mut local = local.to_string();
    if PLUS_TAG_DOMAINS.contains(&domain)
        && let Some((head, _tag)) = local.split_once('+')
    {
        local = head.to_string();
    }
    if domain == "gmail.com" {
        local.retain(|c| c != '.');
    }
    if local.is_empty() {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// A phone number in E.164 (`+14155550123`), read with `region` as the default country.
/// Numbers that do not parse, are not valid for their country, or are obviously fake (one
/// digit repeated, starting with a run like 123456) are `None`. North American numbers take
/// a fast path that gives the same answers (`nanp`).
pub fn phone(value: &str, region: &str) -> Option<String> {
    let value = value.trim();
    let Some(national) = nanp::national_digits(value, region) else {
        return phone_parsed(value, region);
    };
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    let valid = |e164: &str| {
        metadata::with_database(|db| phonenumber::parse_with(db, None, e164).is_ok_and(|n| n.is_valid_with(db)))
    };
    if is_fake_number(&digits) || !nanp::is_valid(&national, valid) {
        return None;
    }
    let e164 = nanp::e164(&national);
    if is_fake_number(&e164[2..]) {
        return None;
    }
    Some(e164)
}

/// [`phone`] with every number parsed by `phonenumber` (no fast path): what the fast path
/// is checked against. Each thread parses with its own copy of the metadata (`metadata`).
pub fn phone_parsed(value: &str, region: &str) -> Option<String> {
    let value = value.trim();
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 6 || is_fake_number(&digits) {
        return None;
    }
    let country = phonenumber::country::Id::from_str(&region.to_ascii_uppercase()).ok();
    // Numbers dialled with the international prefix 00 are read as +.
    let value = match value.strip_prefix("00") {
        Some(rest) if !value.starts_with("000") => format!("+{rest}"),
        _ => value.to_string(),
    };
    // A number with its country code is parsed without the default region: phonenumber
    // 0.3.10 would otherwise apply that region's national prefix to it (with region US,
    // `+49 151…` loses the `1` of `151`).
    let country = if value.starts_with('+') { None } else { country };
    metadata::with_database(|db| {
        let number = phonenumber::parse_with(db, country, &value).ok()?;
        if !number.is_valid_with(db) {
            return None;
        }
        let national = number.national().value().to_string();
        if is_fake_number(&national) {
            return None;
        }
        Some(number.format_with(db).mode(phonenumber::Mode::E164).to_string())
    })
}

/// One digit repeated, or a number that starts with a run like 123456 or 987654.
fn is_fake_number(digits: &str) -> bool {
    let bytes = digits.as_bytes();
    if bytes.iter().all(|b| *b == bytes[0]) {
        return true;
    }
    ["123456", "0123456", "987654"].iter().any(|run| digits.starts_with(run))
}

/// Unicode-folds (`é` → `e`, `ß` → `ss`), lower-cases and collapses whitespace.
pub fn text(value: &str) -> Option<String> {
    non_empty(fold_words(value, |c| c.is_alphanumeric()).join(" "))
}

/// Words of `value` after folding: characters `keep` accepts stay, apostrophes vanish
/// (`O'Brien` → `obrien`), anything else separates words.
fn fold_words(value: &str, keep: impl Fn(char) -> bool) -> Vec<String> {
    let mut folded = String::with_capacity(value.len());
    for c in value.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        match c {
            'ß' => folded.push_str("ss"),
            'ø' | 'Ø' => folded.push('o'),
            'æ' | 'Æ' => folded.push_str("ae"),
            'œ' | 'Œ' => folded.push_str("oe"),
            'ł' | 'Ł' => folded.push('l'),
            'đ' | 'Đ' => folded.push('d'),
            'þ' | 'Þ' => folded.push_str("th"),
            '\'' | '’' | '`' | '´' => {}
            c if keep(c) => folded.extend(c.to_lowercase()),
            _ => folded.push(' '),
        }
    }
    folded.split_whitespace().map(str::to_string).collect()
}

/// Titles and suffixes that say nothing about who someone is.
const TITLES: [&str; 16] = [
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "jr", "sr", "ii", "iii",
    "phd", "md",
];

/// A person's name: [`text`] without punctuation and without titles (`Dr.`, `Mrs`, `Jr.`).
pub fn name(value: &str) -> Option<String> {
    let words = fold_words(value, |c| c.is_alphabetic());
    let kept: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| !TITLES.contains(w))
        .collect();
    non_empty(kept.join(" "))
}

/// A date as `YYYY-MM-DD`, from ISO dates (optionally with a time), `YYYYMMDD`, `DD.MM.YYYY`,
/// `YYYY/MM/DD` or `MM/DD/YYYY`.
pub fn date(value: &str) -> Option<String> {
    let value = value.trim();
    let head = value.split(['T', ' ']).next().unwrap_or(value);
    let formats = ["%Y-%m-%d", "%Y%m%d", "%d.%m.%Y", "%Y/%m/%d", "%m/%d/%Y"];
    formats
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(head, f).ok())
        .map(|d| d.format("%Y-%m-%d").to_string())
}

/// Upper-case without spaces or dashes; a US ZIP+4 (`02139-4307`) keeps its five digits.
pub fn postcode(value: &str) -> Option<String> {
    let value = value.trim();
    let bytes = value.as_bytes();
    if bytes.len() == 10 && bytes[5] == b'-' && value.chars().filter(char::is_ascii_digit).count() == 9 {
        return Some(value[..5].to_string());
    }
    non_empty(
        value
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_uppercase)
            .collect(),
    )
}

/// Street words spelled one way.
const ADDRESS_WORDS: [(&str, &str); 16] = [
    ("street", "st"),
    ("avenue", "ave"),
    ("av", "ave"),
    ("road", "rd"),
    ("drive", "dr"),
    ("lane", "ln"),
    ("boulevard", "blvd"),
    ("court", "ct"),
    ("place", "pl"),
    ("square", "sq"),
    ("apartment", "apt"),
    ("suite", "ste"),
    ("north", "n"),
    ("south", "s"),
    ("east", "e"),
    ("west", "w"),
];

/// [`text`] with `Street` → `st`, `Avenue` → `ave` and the like, and `#` dropped.
pub fn address(value: &str) -> Option<String> {
    let words = fold_words(value, |c| c.is_alphanumeric());
    let mapped: Vec<&str> = words
        .iter()
        .map(|w| {
            ADDRESS_WORDS
                .iter()
                .find(|(long, _)| long == w)
                .map(|(_, short)| *short)
                .unwrap_or(w.as_str())
        })
        .collect();
    non_empty(mapped.join(" "))
}

/// The local part of a normalized email without a `+tag` and without dots, on any provider:
/// a blocking key and a comparison level for addresses that differ only in tags, dots or
/// domain (`ann.lee+shop@x.com` → `annlee`).
pub fn email_local(email: &str) -> Option<&str> {
    let local = email.rsplit_once('@').map_or(email, |(l, _)| l);
    let local = local.split_once('+').map_or(local, |(head, _)| head);
    (!local.is_empty()).then_some(local)
}

/// [`email_local`] with dots removed, as an owned key.
pub fn email_local_key(email: &str) -> Option<String> {
    let mut key = email_local(email)?.to_string();
    key.retain(|c| c != '.');
    non_empty(key)
}

/// American Soundex of a normalized name (`robert` and `rupert` → `R163`); `None` without a
/// letter.
pub fn soundex(value: &str) -> Option<String> {
    let code = |c: char| match c {
        'b' | 'f' | 'p' | 'v' => b'1',
        'c' | 'g' | 'j' | 'k' | 'q' | 's' | 'x' | 'z' => b'2',
        'd' | 't' => b'3',
        'l' => b'4',
        'm' | 'n' => b'5',
        'r' => b'6',
        'h' | 'w' => b'h',
        _ => b'0',
    };
    let mut letters = value.chars().filter(char::is_ascii_alphabetic).map(|c| c.to_ascii_lowercase());
    let first = letters.next()?;
    let mut out = vec![first.to_ascii_uppercase() as u8];
    let mut last = code(first);
    for c in letters {
        let d = code(c);
        if d == b'h' {
            continue; // h and w do not separate equal codes
        }
        if d != b'0' && d != last {
            out.push(d);
            if out.len() == 4 {
                break;
            }
        }
        last = d;
    }
    out.resize(4, b'0');
    String::from_utf8(out).ok()
}
