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
//! `resolve_kernels::the_nanp_fast_path_agrees_with_phonenumber` checks the claim on numbers of many
//! prefixes.

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
