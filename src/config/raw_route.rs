//! Raw serde types for routes in the native YAML format: the match and the action.
//!
//! Field names and shapes are Envoy v3's (`RouteMatch`, `HeaderMatcher`,
//! `QueryParameterMatcher`, `StringMatcher`, `RouteAction`, `RedirectAction`,
//! `DirectResponseAction`), except that the `RouteAction` fields sit on the route itself
//! (`cluster`, `prefix_rewrite`, ... instead of `route: {cluster, prefix_rewrite}`), so a
//! translator from Envoy maps each field 1:1. `config::build::route_match` checks them.

use std::collections::BTreeMap;

use serde::Deserialize;

pub(crate) use super::raw_match::{
    RawFractionalPercent, RawHeaderMatch, RawQueryParameterMatch, RawRange, RawRegex,
    RawRegexMatcher, RawRuntimeFraction, RawStringMatch,
};

use crate::http::filter::header_mutation::RawHeaderAdd;
use crate::http::filter::local_ratelimit::descriptors::RawRateLimit;
use crate::http::filter::RawFilterOverride;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    /// Envoy's route `name`: what `%ROUTE_NAME%` logs.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: RawRouteMatch,
    // --- The action: exactly one of cluster, cluster_header, weighted_clusters,
    // redirect, direct_response. ---
    #[serde(default)]
    pub cluster: Option<String>,
    /// Envoy's `cluster_header`: the cluster named by this request header.
    #[serde(default)]
    pub cluster_header: Option<String>,
    #[serde(default)]
    pub weighted_clusters: Option<RawWeightedClusters>,
    #[serde(default)]
    pub redirect: Option<RawRedirect>,
    #[serde(default)]
    pub direct_response: Option<RawDirectResponse>,
    // --- What a cluster route does to the request. ---
    #[serde(default)]
    pub timeout: Option<String>,
    /// Envoy's `priority`: `DEFAULT` (the default) or `HIGH`, which of the cluster's
    /// circuit breakers and connection pools the route's requests use.
    #[serde(default)]
    pub priority: Option<String>,
    /// Envoy's `max_stream_duration` (`RouteAction.MaxStreamDuration`).
    #[serde(default)]
    pub max_stream_duration: Option<RawMaxStreamDuration>,
    /// Envoy's `max_grpc_timeout`.
    #[serde(default)]
    pub max_grpc_timeout: Option<String>,
    /// Envoy's `grpc_timeout_offset`.
    #[serde(default)]
    pub grpc_timeout_offset: Option<String>,
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    #[serde(default)]
    pub regex_rewrite: Option<RawRegexRewrite>,
    #[serde(default)]
    pub host_rewrite_literal: Option<String>,
    #[serde(default)]
    pub auto_host_rewrite: bool,
    /// `SERVICE_UNAVAILABLE` (503, default), `NOT_FOUND` (404), `INTERNAL_SERVER_ERROR`.
    #[serde(default)]
    pub cluster_not_found_response_code: Option<String>,
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// Envoy's `retry_policy`; replaces the virtual host's whole (no merge).
    #[serde(default)]
    pub retry_policy: Option<super::raw_retry::RawRetryPolicy>,
    /// Envoy's `per_request_buffer_limit_bytes`; replaces the virtual host's.
    #[serde(default)]
    pub per_request_buffer_limit_bytes: Option<u32>,
    /// Envoy's `hedge_policy`; replaces the virtual host's.
    #[serde(default)]
    pub hedge_policy: Option<RawHedgePolicy>,
    /// Envoy's `stat_prefix`: the route's stats, under
    /// `vhost.<virtual host>.route.<stat_prefix>.` (`observe::route_stats`).
    #[serde(default)]
    pub stat_prefix: Option<String>,
    /// Envoy's `request_mirror_policies`: shadow copies of the request to other
    /// clusters, their responses discarded.
    #[serde(default)]
    pub request_mirror_policies: Vec<RawMirrorPolicy>,
    /// Envoy's `hash_policy`: the request's hash for a ring hash or Maglev cluster.
    #[serde(default)]
    pub hash_policy: Vec<RawHashPolicy>,
    /// Per-route filter overrides, by filter name (Envoy's `typed_per_filter_config`).
    #[serde(default)]
    pub per_filter_config: BTreeMap<String, RawFilterOverride>,
    /// Envoy's `RouteAction.rate_limits` (descriptors for the local rate limit).
    #[serde(default)]
    pub rate_limits: Vec<RawRateLimit>,
    #[serde(default)]
    pub request_headers_to_add: Vec<RawHeaderAdd>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<RawHeaderAdd>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

/// Envoy's `RouteAction.MaxStreamDuration`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMaxStreamDuration {
    #[serde(default)]
    pub max_stream_duration: Option<String>,
    #[serde(default)]
    pub grpc_timeout_header_max: Option<String>,
    #[serde(default)]
    pub grpc_timeout_header_offset: Option<String>,
}

/// Envoy's `RouteMatch`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteMatch {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub path_separated_prefix: Option<String>,
    #[serde(default)]
    pub safe_regex: Option<RawRegex>,
    /// Applies to `path`, `prefix` and `path_separated_prefix` (Envoy: default true).
    #[serde(default)]
    pub case_sensitive: Option<bool>,
    #[serde(default)]
    pub headers: Vec<RawHeaderMatch>,
    #[serde(default)]
    pub query_parameters: Vec<RawQueryParameterMatch>,
    /// `grpc: {}`: only gRPC requests (`content-type: application/grpc*`).
    #[serde(default)]
    pub grpc: Option<RawEmpty>,
    #[serde(default)]
    pub runtime_fraction: Option<RawRuntimeFraction>,
}

/// An empty object (`grpc: {}`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmpty {}

/// Envoy's `RouteAction.HashPolicy`: exactly one of `header`, `cookie`,
/// `connection_properties` and `query_parameter`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHashPolicy {
    #[serde(default)]
    pub header: Option<RawHashHeader>,
    #[serde(default)]
    pub cookie: Option<RawHashCookie>,
    #[serde(default)]
    pub connection_properties: Option<RawHashConnection>,
    #[serde(default)]
    pub query_parameter: Option<RawHashQuery>,
    #[serde(default)]
    pub terminal: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHashHeader {
    pub header_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHashCookie {
    pub name: String,
    /// A duration (`3600s`); set: a missing cookie is generated (`Set-Cookie`).
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHashConnection {
    #[serde(default)]
    pub source_ip: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHashQuery {
    pub name: String,
}

/// Envoy's `RouteAction.RequestMirrorPolicy`: exactly one of `cluster` and
/// `cluster_header`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMirrorPolicy {
    #[serde(default)]
    pub cluster: Option<String>,
    /// The cluster named by this request header; a request without it, or naming no
    /// cluster, is not mirrored by this policy.
    #[serde(default)]
    pub cluster_header: Option<String>,
    /// Default: every request.
    #[serde(default)]
    pub runtime_fraction: Option<RawRuntimeFraction>,
    /// Keep the Host / `:authority` as it is instead of suffixing `-shadow`.
    #[serde(default)]
    pub disable_shadow_host_suffix_append: bool,
    /// The shadow's Host / `:authority` becomes this (no `-shadow` suffix then).
    #[serde(default)]
    pub host_rewrite_literal: Option<String>,
    /// Envoy's span sampling for the shadow. Outrigger has no tracing, so there is no
    /// span to sample: accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    pub trace_sampled: Option<bool>,
}

/// Envoy's `WeightedCluster`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWeightedClusters {
    pub clusters: Vec<RawClusterWeight>,
    /// Deprecated in Envoy and ignored by it since 1.30: the sum of the weights is the
    /// total. Accepted so that translated configs load.
    #[serde(default)]
    #[allow(dead_code)]
    pub total_weight: Option<u32>,
}

/// Envoy's `WeightedCluster.ClusterWeight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClusterWeight {
    pub name: String,
    pub weight: u32,
    #[serde(default)]
    pub host_rewrite_literal: Option<String>,
}

/// Envoy's `RegexMatchAndSubstitute`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegexRewrite {
    pub pattern: RawRegex,
    pub substitution: String,
}

/// Envoy's `RedirectAction`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedirect {
    #[serde(default)]
    pub https_redirect: bool,
    #[serde(default)]
    pub scheme_redirect: Option<String>,
    #[serde(default)]
    pub host_redirect: Option<String>,
    #[serde(default)]
    pub port_redirect: Option<u16>,
    #[serde(default)]
    pub path_redirect: Option<String>,
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    #[serde(default)]
    pub regex_rewrite: Option<RawRegexRewrite>,
    /// `MOVED_PERMANENTLY` (301, default), `FOUND` (302), `SEE_OTHER` (303),
    /// `TEMPORARY_REDIRECT` (307), `PERMANENT_REDIRECT` (308).
    #[serde(default)]
    pub response_code: Option<String>,
    #[serde(default)]
    pub strip_query: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDirectResponse {
    pub status: u16,
    #[serde(default)]
    pub body: Option<RawDataSource>,
    #[serde(default)]
    pub content_type: Option<String>,
}

/// Envoy's `DataSource`: `{inline_string}` or `{filename}` (read when the config loads);
/// a bare string is the inline form.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDataSource {
    Inline(String),
    Source(RawDataSourceFields),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDataSourceFields {
    #[serde(default)]
    pub inline_string: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
}

/// Envoy's `HedgePolicy`: `hedge_on_per_try_timeout` (default false).
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHedgePolicy {
    #[serde(default)]
    pub hedge_on_per_try_timeout: bool,
}
