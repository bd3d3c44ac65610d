//! Secrets never reach the terminal, the logs or `run_results.json`.
//!
//! Loading `lake.toml` registers every value that came from the environment (`${VAR}`) and
//! every value in a secret position (passwords in URIs, `credential`, `token`, keys naming a
//! secret, key or password). [`scrub`] replaces them, and the user info and secret query
//! parameters of any URI, before a message is printed or written.

use std::sync::RwLock;

use crate::lakehouse::catalog::redact_uri;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values shorter than this are not treated as secrets (they would mask ordinary words).
const MIN_LEN: usize = 4;

/// Remember `value` as a secret for the rest of the process.
pub fn register(value: &str) {
    let value = value.trim();
    if value.len() < MIN_LEN {
        return;
    }
    let mut secrets = SECRETS.write().expect("secrets");
    if !secrets.iter().any(|s| s == value) {
        secrets.push(value.to_string());
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Does this settings key hold a secret by its name?
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "token", "credential", "passwd", "api-key", "api_key", "access-key-id"]
        .iter()
        .any(|w| k.contains(w))
}

/// `text` with every registered secret and every URI's credentials replaced by `***`.
pub fn scrub(text: &str) -> String {
    let mut out = redact_uri(text);
    for secret in SECRETS.read().expect("secrets").iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// The password inside a URI's user info, if any (`postgres://u:pw@h` → `pw`).
pub fn uri_password(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let head = rest.split('?').next().unwrap_or(rest);
    let at = head.rfind('@')?;
    let userinfo = &head[..at];
    userinfo.split_once(':').map(|(_, p)| p)
}
