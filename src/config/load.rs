//! Config text -> `Snapshot`, whatever its format: reads the file, tells an Envoy v3
//! bootstrap from the native format, and hands the text to that format's source. It
//! sits above both sources, so that neither depends on the other: `build` checks native
//! raw config, and `envoy` translates a bootstrap into native raw config and has `build`
//! check it. Control plane only.

use super::build::{self, ConfigErrors};
use super::envoy;
use super::model::Snapshot;

/// Reads and checks a config file.
pub fn load_file(path: &str) -> Result<Snapshot, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one("(file)", format!("cannot read {path}: {e}")))?;
    parse_str(&text)
}

/// Parses and checks config text: the native YAML format, or an Envoy v3 bootstrap in
/// YAML or JSON (told apart by its top-level keys, see `envoy::is_bootstrap`).
pub fn parse_str(text: &str) -> Result<Snapshot, ConfigErrors> {
    if let Ok(value) = serde_yaml::from_str::<serde_json::Value>(text) {
        if envoy::is_bootstrap(&value) {
            return envoy::load(text, value);
        }
    }
    build::parse_native(text)
}
