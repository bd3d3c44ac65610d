//! The `lake` binary: the library's command line with the built-in Rust models.

fn main() {
    let registry = lake::builtins::registry();
    std::process::exit(lake::cli::main_with_registry(registry));
}
