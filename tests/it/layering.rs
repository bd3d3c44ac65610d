//! The shape of the code: data flows one way, cli → run → graph/project, engine, materialize
//! → lakehouse, with ingest and resolve beside (see `src/lib.rs`). This test reads every
//! `crate::<module>` reference in `src/` (comments aside) and fails on one that goes up a
//! layer or closes a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and the modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("lakehouse", &[]),
    ("csv", &[]),
    ("materialize", &["lakehouse"]),
    ("engine", &["lakehouse"]),
    ("project", &["lakehouse"]),
    ("graph", &["project"]),
    ("ingest", &["materialize", "lakehouse", "project", "csv"]),
    ("resolve", &["engine", "csv"]),
    ("builtins", &["engine", "resolve"]),
    ("demo", &["ingest"]),
    ("run", &["graph", "project", "engine", "materialize", "lakehouse"]),
    ("cli", &["run", "graph", "project", "engine", "materialize", "lakehouse", "ingest", "resolve", "builtins", "csv", "demo"]),
];

/// `module -> modules it references`, from the source tree.
fn references(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy().to_string();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "main" || module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                let mut rest = line;
                while let Some(pos) = rest.find("crate::") {
                    let after = &rest[pos + "crate::".len()..];
                    let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && name != module {
                        out.entry(module.clone()).or_default().insert(name);
                    }
                    rest = after;
                }
            }
        }
    }
    out
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, used) in references(&src) {
        let Some(may) = allowed.get(module.as_str()) else {
            wrong.push(format!("{module}: a new top-level module; add it to ALLOWED and to the layering in src/lib.rs"));
            continue;
        };
        for u in used {
            if !may.contains(&u.as_str()) {
                wrong.push(format!("{module} uses crate::{u}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
}

#[test]
fn the_allowed_layering_has_no_loops() {
    // A depth-first walk over ALLOWED: no module reaches itself.
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    fn reaches(from: &str, target: &str, allowed: &BTreeMap<&str, &[&str]>, seen: &mut BTreeSet<String>) -> bool {
        for next in allowed.get(from).copied().unwrap_or(&[]) {
            if *next == target {
                return true;
            }
            if seen.insert(next.to_string()) && reaches(next, target, allowed, seen) {
                return true;
            }
        }
        false
    }
    for module in allowed.keys() {
        assert!(!reaches(module, module, &allowed, &mut BTreeSet::new()), "{module} reaches itself");
    }
}

/// Every `.rs` file under `src/` with its lines.
fn sources() -> Vec<(String, Vec<String>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let name = path.strip_prefix(&src).unwrap().display().to_string();
                out.push((name, text.lines().map(str::to_string).collect()));
            }
        }
    }
    out
}

#[test]
fn no_source_file_over_700_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, lines)| lines.len() > 700)
        .map(|(name, lines)| format!("src/{name}: {} lines", lines.len()))
        .collect();
    assert!(long.is_empty(), "split these along their seams:\n{}", long.join("\n"));
}

#[test]
fn no_function_over_120_lines() {
    let mut long = Vec::new();
    for (name, lines) in sources() {
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim_start();
            let is_fn = ["fn ", "pub fn ", "async fn ", "pub async fn ", "pub(crate) fn ", "pub(super) fn ", "pub(crate) async fn ", "pub(super) async fn "]
                .iter()
                .any(|p| line.starts_with(p))
                && !line.trim_end().ends_with(';');
            if !is_fn {
                i += 1;
                continue;
            }
            // Count braces (outside strings and comments, roughly) to the end of the body.
            let (mut depth, mut started, mut j) = (0i64, false, i);
            while j < lines.len() {
                let code = strip_strings_and_comments(&lines[j]);
                depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
                started |= code.contains('{');
                if started && depth <= 0 {
                    break;
                }
                j += 1;
            }
            if j - i + 1 > 120 {
                long.push(format!("src/{name}:{} {} lines", i + 1, j - i + 1));
            }
            i += 1;
        }
    }
    assert!(long.is_empty(), "split these functions:\n{}", long.join("\n"));
}

fn strip_strings_and_comments(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_string => {
                chars.next();
            }
            '"' => in_string = !in_string,
            '/' if !in_string && chars.peek() == Some(&'/') => break,
            '\'' if !in_string => {
                // A char literal like '{' or '\'' (lifetimes have no closing quote nearby).
                let rest: String = chars.clone().take(3).collect();
                if rest.len() >= 2 && (rest.as_bytes()[1] == b'\'' || (rest.starts_with('\\') && rest.as_bytes()[2] == b'\'')) {
                    let skip = if rest.starts_with('\\') { 3 } else { 2 };
                    for _ in 0..skip {
                        chars.next();
                    }
                }
            }
            _ if !in_string => out.push(c),
            _ => {}
        }
    }
    out
}

/// The library is built without its unit tests (`test = false`): a `#[cfg(test)]` in `src/`
/// would never run. Tests go in this binary.
#[test]
fn no_unit_tests_in_src() {
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(_, lines)| lines.iter().any(|l| l.trim() == "#[cfg(test)]"))
        .map(|(path, _)| path)
        .collect();
    assert!(found.is_empty(), "#[cfg(test)] in {found:?}: move the tests to tests/it");
}
