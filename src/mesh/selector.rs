//! The security API's workload selector, below the kinds that use it (`istio.rs`,
//! `mtls_kinds.rs`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The security API's `selector` (`matchLabels`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchLabels {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl MatchLabels {
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}
