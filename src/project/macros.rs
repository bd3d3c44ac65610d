//! Jinja macros shared by every model and test: `{% macro %}` definitions in `.sql` files under
//! the macro path (`macros/` by default, `macro_path` in `lake.toml`), as dbt projects keep them.
//! Every macro is callable by name in every template, without an import; two macros with one
//! name are an error naming both files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The macro files of a project, loaded once.
#[derive(Debug, Clone, Default)]
pub struct Macros {
    files: Vec<MacroFile>,
}

#[derive(Debug, Clone)]
struct MacroFile {
    /// The template name errors show: the path relative to the project root.
    name: String,
    source: String,
    /// The macros it defines.
    macros: Vec<String>,
}

impl Macros {
    /// Every `*.sql` file under `dir` (none when it does not exist), in path order.
    pub fn load(root: &Path, dir: &Path) -> Result<Macros> {
        let mut paths = Vec::new();
        collect(dir, &mut paths)?;
        paths.sort();
        let mut defined: BTreeMap<String, String> = BTreeMap::new();
        let mut files = Vec::new();
        for path in paths {
            let source = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.strip_prefix(root).unwrap_or(&path).display().to_string();
            let macros = macro_names(&source);
            for m in &macros {
                if let Some(other) = defined.insert(m.clone(), name.clone()) {
                    bail!("macro `{m}` is defined twice: in {other} and in {name}; rename one");
                }
            }
            // Check the syntax here, so the error names the macro file, not a model.
            minijinja::Environment::new()
                .add_template_owned(name.clone(), source.clone())
                .map_err(|e| anyhow::anyhow!("{name}:{}: template error: {}", e.line().unwrap_or(0), e.detail().unwrap_or("syntax error")))?;
            files.push(MacroFile { name, source, macros });
        }
        Ok(Macros { files })
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Add the macro files to `env` as templates.
    pub fn register(&self, env: &mut minijinja::Environment<'_>) -> Result<(), minijinja::Error> {
        for f in &self.files {
            env.add_template_owned(f.name.clone(), f.source.clone())?;
        }
        Ok(())
    }

    /// `{% from "file" import a, b %}` for every file that defines a macro `template` names,
    /// on one line: put before the template's first line, it makes those macros callable
    /// without moving its line numbers. (Files whose macros it does not name are left out:
    /// importing one costs a render as much as the template itself.)
    pub fn imports(&self, template: &str) -> String {
        self.files
            .iter()
            .filter(|f| f.macros.iter().any(|m| template.contains(m.as_str())))
            .map(|f| format!("{{% from {:?} import {} %}}", f.name, f.macros.join(", ")))
            .collect()
    }

    /// The macro sources (their `ref()`/`source()` calls are dependencies of the callers).
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.source.as_str())
    }

    /// Whether a template name is one of the macro files.
    pub fn is_macro_file(&self, name: &str) -> bool {
        self.files.iter().any(|f| f.name == name)
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read the macro folder {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path);
        }
    }
    Ok(())
}

/// Names after `{% macro` / `{%- macro`.
fn macro_names(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(pos) = rest.find("{%") {
        rest = &rest[pos + 2..];
        let tag = rest.trim_start_matches(['-', '+']).trim_start();
        if let Some(after) = tag.strip_prefix("macro") {
            if after.starts_with(char::is_whitespace) {
                let name: String = after
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        }
    }
    out
}
