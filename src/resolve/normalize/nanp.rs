//! The fast path of [`super::phone`] for North American numbers (country code 1), which are
//! most of what US shops see.
//!
//! `phonenumber` matches its metadata's regular expressions under one global lock (its regex
//! cache), so phone parsing runs on one core however many threads call it, and it dominates
//! entity resolution. A NANP number written with digits and separators only is read here
//! instead: its E.164 form is `+1` and its ten national digits, and whether `phonenumber`
//! deems it valid depends only on its first six national digits (area code, exchange and,
//! for a few prefixes, the next two digits; every NANP pattern of libphonenumber's metadata
//! ends in free digits after at most six). That verdict is asked of `phonenumber` once per
//! six-digit prefix and kept in a lock-free table, so the numbers themselves are never parsed.
//! `tests::the_fast_path_agrees_with_phonenumber` checks the claim on numbers of many prefixes.

use std::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const VALID: u8 = 1;
const INVALID: u8 = 2;

/// Validity per six-digit national prefix (1 MB, zeroed until asked).
static VERDICTS: [AtomicU8; 1_000_000] = [const { AtomicU8::new(UNKNOWN) }; 1_000_000];

/// The ten national digits of `value` when it is a NANP number written with digits and
/// `+ ( ) - . /` or spaces only: `+1` and ten digits, or (default region US) ten digits or
/// `1` and ten digits. `None` for anything else (the slow path decides).
pub(super) fn national_digits(value: &str, region: &str) -> Option<[u8; 10]> {
    let bytes = value.as_bytes();
    let plus = bytes.first() == Some(&b'+');
    let mut digits = [0u8; 11];
    let mut n = 0;
    for &b in &bytes[usize::from(plus)..] {
        match b {
            b'0'..=b'9' => {
                if n == 11 {
                    return None;
                }
                digits[n] = b;
                n += 1;
            }
            b' ' | b'(' | b')' | b'-' | b'.' | b'/' => {}
            _ => return None,
        }
    }
    let national = match (plus, n) {
        (true, 11) if digits[0] == b'1' => &digits[1..11],
        (false, 10) if region.eq_ignore_ascii_case("US") => &digits[..10],
        (false, 11) if digits[0] == b'1' && region.eq_ignore_ascii_case("US") => &digits[1..11],
        _ => return None,
    };
    national.try_into().ok()
}

/// Whether the NANP number with these national digits is valid, asking `slow` (the
/// `phonenumber` verdict on its E.164 form) once per six-digit prefix.
pub(super) fn is_valid(national: &[u8; 10], slow: impl FnOnce(&str) -> bool) -> bool {
    let prefix = national[..6].iter().fold(0usize, |p, d| p * 10 + usize::from(d - b'0'));
    match VERDICTS[prefix].load(Ordering::Relaxed) {
        VALID => true,
        INVALID => false,
        _ => {
            let valid = slow(&e164(national));
            VERDICTS[prefix].store(if valid { VALID } else { INVALID }, Ordering::Relaxed);
            valid
        }
    }
}

/// `+1` and the national digits.
pub(super) fn e164(national: &[u8; 10]) -> String {
    let mut out = String::with_capacity(12);
    out.push_str("+1");
    out.extend(national.iter().map(|&d| d as char));
    out
}

#[cfg(test)]
mod tests {
    use super::super::{phone, phone_slow};

    /// Numbers over many prefixes, in several spellings, several per prefix (so most are
    /// answered from a verdict another number's parse left): the fast path gives what
    /// `phonenumber` gives for each.
    #[test]
    fn the_fast_path_agrees_with_phonenumber() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut checked = 0;
        // Real area codes (some with exchange-level exceptions in the metadata) and random ones.
        let areas = [212, 305, 415, 472, 503, 505, 512, 274, 720, 809, 868, 876, 983, 800, 416, 604];
        for k in 0..3000 {
            let prefix = match k % 2 {
                0 => areas[(next() % areas.len() as u64) as usize] * 1000 + next() % 1000,
                _ => next() % 1_000_000,
            };
            for _ in 0..4 {
                let digits = format!("{prefix:06}{:04}", next() % 10_000);
                let spelled = match next() % 5 {
                    0 => digits.clone(),
                    1 => format!("+1{digits}"),
                    2 => format!("({}) {}-{}", &digits[..3], &digits[3..6], &digits[6..]),
                    3 => format!("+1 {}.{}.{}", &digits[..3], &digits[3..6], &digits[6..]),
                    _ => format!("1-{}-{}-{}", &digits[..3], &digits[3..6], &digits[6..]),
                };
                assert_eq!(phone(&spelled, "US"), phone_slow(&spelled, "US"), "{spelled}");
                checked += 1;
            }
        }
        assert_eq!(checked, 12_000);
        // Other regions and other countries take the slow path.
        assert_eq!(phone("2127360100", "GB"), phone_slow("2127360100", "GB"));
        assert_eq!(phone("+44 20 7946 0958", "US"), phone_slow("+44 20 7946 0958", "US"));
    }
}
