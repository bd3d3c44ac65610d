//! The project on disk: `lake.toml`, YAML property files, model discovery and templating.

pub mod model;
