//! Jaro and Jaro-Winkler similarity, the comparisons most candidate pairs go through.
//!
//! For ASCII strings of up to 64 bytes (normalized names, almost always) they are computed on
//! the bytes with bit sets on the stack; anything else goes to `strsim`. Both give the same
//! number, bit for bit: the same matching window, the same greedy matching order and the same
//! formula as `strsim` 0.11 (`resolve_kernels::jaro_and_jaro_winkler_are_strsims_bit_for_bit` checks it
//! on random strings). `strsim`
//! decodes the strings again for each character of the first and allocates its flags on every
//! call, which made name comparison the largest part of matching.

/// Jaro similarity of `a` and `b` (as [`strsim::jaro`]).
pub fn jaro(a: &str, b: &str) -> f64 {
    match short_ascii(a, b) {
        Some((a, b)) => jaro_bytes(a, b),
        None => strsim::jaro(a, b),
    }
}

/// Jaro-Winkler similarity of `a` and `b` (as [`strsim::jaro_winkler`]).
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    let Some((x, y)) = short_ascii(a, b) else {
        return strsim::jaro_winkler(a, b);
    };
    let sim = jaro_bytes(x, y);
    if sim > 0.7 {
        let prefix = x.iter().take(4).zip(y).take_while(|(p, q)| p == q).count();
        sim + 0.1 * prefix as f64 * (1.0 - sim)
    } else {
        sim
    }
}

fn short_ascii<'a>(a: &'a str, b: &'a str) -> Option<(&'a [u8], &'a [u8])> {
    (a.len() <= 64 && b.len() <= 64 && a.is_ascii() && b.is_ascii()).then(|| (a.as_bytes(), b.as_bytes()))
}

fn jaro_bytes(a: &[u8], b: &[u8]) -> f64 {
    let (a_len, b_len) = (a.len(), b.len());
    if a_len == 0 && b_len == 0 {
        return 1.0;
    } else if a_len == 0 || b_len == 0 {
        return 0.0;
    }
    let range = (a_len.max(b_len) / 2).saturating_sub(1);
    let (mut a_flags, mut b_flags) = (0u64, 0u64);
    let mut matches = 0usize;
    for (i, &x) in a.iter().enumerate() {
        let low = i.saturating_sub(range);
        let high = b_len.min(i + range + 1);
        for j in low..high {
            if b[j] == x && b_flags & (1 << j) == 0 {
                a_flags |= 1 << i;
                b_flags |= 1 << j;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let mut j = 0;
    for (i, &x) in a.iter().enumerate() {
        if a_flags & (1 << i) == 0 {
            continue;
        }
        while b_flags & (1 << j) == 0 {
            j += 1;
        }
        if x != b[j] {
            transpositions += 1;
        }
        j += 1;
    }
    transpositions /= 2;
    ((matches as f64 / a_len as f64) + (matches as f64 / b_len as f64) + ((matches - transpositions) as f64 / matches as f64))
        / 3.0
}
