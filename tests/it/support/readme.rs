//! The README's shell and config blocks, read by the tests that run what the README says.

/// The non-empty, non-comment lines of the ```sh blocks in the README section `### {title}`
/// (up to the next `##` or `###` heading).
pub fn sh_lines(title: &str) -> Vec<String> {
    let mut in_sh = false;
    let mut lines = Vec::new();
    for l in section(title).lines() {
        match l.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() && !l.starts_with('#') => lines.push(l.to_string()),
            _ => {}
        }
    }
    lines
}

/// The first ```toml block of the README section `### {title}`, as written.
pub fn toml_block(title: &str) -> String {
    let section = section(title);
    let block = section.split("```toml\n").nth(1).unwrap_or_else(|| panic!("a toml block in the README section {title}"));
    block.split("```").next().unwrap().to_string()
}

/// The README section `### {title}`, up to the next `##` or `###` heading.
fn section(title: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split(&format!("\n### {title}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("a {title} section in the README"));
    section.split("\n## ").next().unwrap().split("\n### ").next().unwrap().to_string()
}
