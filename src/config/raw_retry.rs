//! Raw serde types for a retry policy in the native YAML format: Envoy v3's
//! `RetryPolicy` field names and shapes (durations as strings, as elsewhere in the
//! native format). `config::build::retry` checks them.

use serde::Deserialize;

use super::raw_match::RawHeaderMatch;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetryPolicy {
    /// Comma-separated conditions (`5xx,reset,unavailable`).
    #[serde(default)]
    pub retry_on: Option<String>,
    #[serde(default)]
    pub num_retries: Option<u32>,
    #[serde(default)]
    pub per_try_timeout: Option<String>,
    #[serde(default)]
    pub per_try_idle_timeout: Option<String>,
    #[serde(default)]
    pub retry_back_off: Option<RawBackOff>,
    #[serde(default)]
    pub retriable_status_codes: Vec<u16>,
    #[serde(default)]
    pub retriable_headers: Vec<RawHeaderMatch>,
    #[serde(default)]
    pub retriable_request_headers: Vec<RawHeaderMatch>,
    #[serde(default)]
    pub retry_host_predicate: Vec<RawNamed>,
    #[serde(default)]
    pub host_selection_retry_max_attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackOff {
    pub base_interval: String,
    #[serde(default)]
    pub max_interval: Option<String>,
}

/// An extension named by its Envoy name (`envoy.retry_host_predicates.previous_hosts`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNamed {
    pub name: String,
}
