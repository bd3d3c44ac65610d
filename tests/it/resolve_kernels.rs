//! The fast paths of entity resolution give exactly what the libraries they stand in for give:
//! phone normalization of North American numbers and each thread's copy of the phone metadata
//! (`phonenumber`), and Jaro / Jaro-Winkler (`strsim`); and packed records compare as the
//! records they were packed from.

use std::sync::Arc;

use lake::resolve::Norm;
use lake::resolve::compare::{Kind, Values, order, pattern};
use lake::resolve::config::Role;
use lake::resolve::jaro::{jaro, jaro_winkler};
use lake::resolve::packed::Packed;
use lake::resolve::normalize::{phone, phone_parsed, rebuild_phone_metadata};
use phonenumber::metadata::DATABASE;
use phonenumber::{Mode, PhoneNumber};

/// A seeded xorshift: `next(n)` is in `0..n`.
fn rng(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed;
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    }
}

/// The copy of `phonenumber`'s metadata each thread parses with holds what the default holds,
/// field by field and in the same order, for every country code.
#[test]
fn each_threads_phone_metadata_is_phonenumbers_own() {
    let own = rebuild_phone_metadata(&DATABASE);
    let mut regions = 0;
    for code in 1..1000u16 {
        let shown = |db: &phonenumber::metadata::Database| format!("{:?}", db.by_code(&code));
        assert_eq!(shown(&own), shown(&DATABASE), "country code {code}");
        assert_eq!(own.region(&code), DATABASE.region(&code), "country code {code}");
        regions += DATABASE.by_code(&code).map_or(0, |m| m.len());
    }
    assert!(regions > 240, "only {regions} regions compared");
    assert_eq!(format!("{:?}", own.by_id("001")), format!("{:?}", DATABASE.by_id("001")));
}

/// Every example number of the metadata (each type of each region), written internationally
/// and nationally, parses, validates and formats the same with a thread's copy as with the
/// default database.
#[test]
fn phone_numbers_parse_the_same_with_each_threads_metadata() {
    let own = rebuild_phone_metadata(&DATABASE);
    let parsed = |db, country, s: &str| {
        phonenumber::parse_with(db, country, s)
            .map(|n: PhoneNumber| (n.is_valid_with(db), n.format_with(db).mode(Mode::E164).to_string(), n))
            .map_err(|e| e.to_string())
    };
    let mut checked = 0;
    for code in 1..1000u16 {
        for meta in DATABASE.by_code(&code).unwrap_or_default() {
            let d = meta.descriptors();
            let descriptors = [d.fixed_line(), d.mobile(), d.toll_free(), d.premium_rate(), d.voip(), d.uan()];
            for example in descriptors.into_iter().flatten().filter_map(|d| d.example()) {
                let country = meta.id().parse().ok();
                for (country, s) in [(None, format!("+{code} {example}")), (country, example.to_string())] {
                    assert_eq!(parsed(&own, country, &s), parsed(&DATABASE, country, &s), "{s} in {}", meta.id());
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} numbers checked");
    assert_eq!(phone_parsed("+44 20 7946 0958", "US").as_deref(), Some("+442079460958"));
    assert_eq!(phone_parsed("0049 151 23456789", "US").as_deref(), Some("+4915123456789"));
}

/// Numbers over many prefixes, in several spellings, several per prefix (so most are answered
/// from a verdict another number's parse left): the fast path gives what `phonenumber` gives.
#[test]
fn the_nanp_fast_path_agrees_with_phonenumber() {
    let mut next = rng(0x9E37_79B9_7F4A_7C15);
    // Real area codes (some with exchange-level exceptions in the metadata) and random ones.
    let areas = [212, 305, 415, 472, 503, 505, 512, 274, 720, 809, 868, 876, 983, 800, 416, 604];
    let mut checked = 0;
    for k in 0..3000 {
        let prefix = match k % 2 {
            0 => areas[next(areas.len() as u64) as usize] * 1000 + next(1000),
            _ => next(1_000_000),
        };
        for _ in 0..4 {
            let digits = format!("{prefix:06}{:04}", next(10_000));
            let spelled = match next(5) {
                0 => digits.clone(),
                1 => format!("+1{digits}"),
                2 => format!("({}) {}-{}", &digits[..3], &digits[3..6], &digits[6..]),
                3 => format!("+1 {}.{}.{}", &digits[..3], &digits[3..6], &digits[6..]),
                _ => format!("1-{}-{}-{}", &digits[..3], &digits[3..6], &digits[6..]),
            };
            assert_eq!(phone(&spelled, "US"), phone_parsed(&spelled, "US"), "{spelled}");
            checked += 1;
        }
    }
    assert_eq!(checked, 12_000);
    // Other regions and other countries take the slow path.
    assert_eq!(phone("2127360100", "GB"), phone_parsed("2127360100", "GB"));
    assert_eq!(phone("+44 20 7946 0958", "US"), phone_parsed("+44 20 7946 0958", "US"));
    assert_eq!(phone("(212) 736-0100", "US").as_deref(), Some("+12127360100"));
}

#[test]
fn within_one_edit_is_strsims_osa_distance_at_most_one() {
    use lake::resolve::compare::within_one_edit;
    let mut next = rng(0x9E37_79B9_7F4A_7C15);
    // Near strings: a random word and one, two or no edits of it, so every kind of edit (and
    // the swap of neighbours) comes up often.
    for _ in 0..50_000 {
        let alphabet: &[u8] = if next(2) == 0 { b"ab" } else { b"0123456789" };
        let len = next(9) as usize;
        let a: Vec<u8> = (0..len).map(|_| alphabet[next(alphabet.len() as u64) as usize]).collect();
        let mut b = a.clone();
        for _ in 0..next(3) {
            let at = if b.is_empty() { 0 } else { next(b.len() as u64) as usize };
            match next(4) {
                0 if !b.is_empty() => b[at] = alphabet[next(alphabet.len() as u64) as usize],
                1 => b.insert(at, alphabet[next(alphabet.len() as u64) as usize]),
                2 if !b.is_empty() => {
                    b.remove(at);
                }
                _ if at + 1 < b.len() => b.swap(at, at + 1),
                _ => {}
            }
        }
        let (a, b) = (String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        assert_eq!(within_one_edit(&a, &b), strsim::osa_distance(&a, &b) <= 1, "{a:?} {b:?}");
    }
    for (a, b) in [("", ""), ("", "a"), ("ab", "ba"), ("abc", "bca"), ("josé", "jsoé"), ("josé", "jose"), ("é", "")] {
        assert_eq!(within_one_edit(a, b), strsim::osa_distance(a, b) <= 1, "{a:?} {b:?}");
    }
}

#[test]
fn jaro_and_jaro_winkler_are_strsims_bit_for_bit() {
    let mut next = rng(0x2545_F491_4F6C_DD1D);
    fn word(next: &mut impl FnMut(u64) -> u64, alphabet: &[u8], max: u64) -> String {
        let len = next(max + 1) as usize;
        (0..len).map(|_| alphabet[next(alphabet.len() as u64) as usize] as char).collect()
    }
    // Small alphabets make many matches and transpositions; lengths up to 64 and past it.
    for _ in 0..50_000 {
        let alphabet: &[u8] = if next(2) == 0 { b"abc" } else { b"abcdefghijklmnopqrstuvwxyz '-" };
        let max = if next(10) == 0 { 70 } else { 12 };
        let (a, b) = (word(&mut next, alphabet, max), word(&mut next, alphabet, max));
        assert_eq!(jaro(&a, &b).to_bits(), strsim::jaro(&a, &b).to_bits(), "jaro {a:?} {b:?}");
        assert_eq!(jaro_winkler(&a, &b).to_bits(), strsim::jaro_winkler(&a, &b).to_bits(), "jw {a:?} {b:?}");
    }
    for (a, b) in [("", ""), ("", "a"), ("martha", "marhta"), ("dwayne", "duane"), ("josé", "jose")] {
        assert_eq!(jaro_winkler(a, b).to_bits(), strsim::jaro_winkler(a, b).to_bits(), "{a:?} {b:?}");
    }
}

/// Records of few, short, often shared, sometimes missing or empty values (so that pairs agree
/// at every level and tie on most roles): packed, each gives the same values, the same canonical
/// order and the same levels as the record it was packed from.
#[test]
fn packed_records_compare_as_their_records() {
    let mut next = rng(0x51ED_270B_2741_8A4D);
    let words = ["ann", "anne", "lee", "leigh", "a@x.com", "ann.lee@x.com", "+12125550101", "1980-01-02", "1980-02-01", "10001", "1 main st", "", "josé"];
    let norms: Vec<Norm> = (0..3000)
        .map(|_| std::array::from_fn(|_| (next(4) != 0).then(|| Arc::from(words[next(words.len() as u64) as usize]))))
        .collect();
    let packed = Packed::new(&norms);
    for (i, norm) in norms.iter().enumerate() {
        for role in Role::ALL {
            assert_eq!(packed.get(i as u32).get(role), norm.get(role), "record {i}, {role:?}");
        }
    }
    for _ in 0..20_000 {
        let (a, b) = (next(norms.len() as u64) as u32, next(norms.len() as u64) as u32);
        let (x, y) = (&norms[a as usize], &norms[b as usize]);
        assert_eq!(order(&packed.get(a), &packed.get(b)), x.cmp(y), "{x:?} {y:?}");
        assert_eq!(order(x, y), x.cmp(y), "{x:?} {y:?}");
        assert_eq!(pattern(&packed.get(a), &packed.get(b), &Kind::ALL), pattern(x, y, &Kind::ALL), "{x:?} {y:?}");
    }
}
