//! Raw serde types of the fault-injection and CORS filters in the native YAML (Envoy's
//! `HTTPFault` and `CorsPolicy` field names); checked by `config::build::fault_cors`
//! into `http::filter::fault` and `http::filter::cors`.

use serde::Deserialize;

use super::raw_match::{RawFractionalPercent, RawHeaderMatch, RawRuntimeFraction, RawStringMatch};

/// The filter's config as written in the YAML (Envoy's `HTTPFault` field names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    #[serde(default)]
    pub delay: Option<RawDelay>,
    #[serde(default)]
    pub abort: Option<RawAbort>,
    #[serde(default)]
    pub upstream_cluster: Option<String>,
    #[serde(default)]
    pub headers: Vec<RawHeaderMatch>,
    #[serde(default)]
    pub downstream_nodes: Vec<String>,
    #[serde(default)]
    pub max_active_faults: Option<u64>,
    #[serde(default)]
    pub response_rate_limit: Option<RawRateLimit>,
}

/// Envoy's `FaultRateLimit`: `fixed_limit: {limit_kbps}` or `header_limit: {}`, and
/// `percentage`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    #[serde(default)]
    pub fixed_limit: Option<RawFixedLimit>,
    #[serde(default)]
    pub header_limit: Option<RawEmptyObject>,
    #[serde(default)]
    pub percentage: Option<RawFractionalPercent>,
}

/// Envoy's `FaultRateLimit.FixedLimit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFixedLimit {
    pub limit_kbps: u64,
}

/// Envoy's `FaultDelay`: `fixed_delay` or `header_delay: {}`, and `percentage`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDelay {
    #[serde(default)]
    pub fixed_delay: Option<String>,
    #[serde(default)]
    pub header_delay: Option<RawEmptyObject>,
    #[serde(default)]
    pub percentage: Option<RawFractionalPercent>,
}

/// Envoy's `FaultAbort`: one of `http_status`, `grpc_status`, `header_abort: {}`, and
/// `percentage`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAbort {
    #[serde(default)]
    pub http_status: Option<u32>,
    #[serde(default)]
    pub grpc_status: Option<u32>,
    #[serde(default)]
    pub header_abort: Option<RawEmptyObject>,
    #[serde(default)]
    pub percentage: Option<RawFractionalPercent>,
}

/// An empty message (`{}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmptyObject {}

/// The CORS filter's own config: empty, as Envoy's `Cors` (the policies are per route).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCorsFilter {}

/// Envoy's `CorsPolicy`, a route's policy for the CORS filter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCorsPolicy {
    #[serde(default)]
    pub allow_origin_string_match: Vec<RawStringMatch>,
    #[serde(default)]
    pub allow_methods: Option<String>,
    #[serde(default)]
    pub allow_headers: Option<String>,
    #[serde(default)]
    pub expose_headers: Option<String>,
    #[serde(default)]
    pub max_age: Option<String>,
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    #[serde(default)]
    pub filter_enabled: Option<RawRuntimeFraction>,
    #[serde(default)]
    pub shadow_enabled: Option<RawRuntimeFraction>,
    #[serde(default)]
    pub allow_private_network_access: Option<bool>,
    #[serde(default)]
    pub forward_not_matching_preflights: Option<bool>,
}
