//! Raw serde types for the native YAML format.
//!
//! These mirror the file one to one and reject unknown fields. They are never used past
//! `config::build`, which turns them into the checked domain model in `config::model`.

use serde::Deserialize;

use crate::http::filter::header_mutation::{RawHeaderAdd, RawHeaderMutationRef};
use crate::http::filter::RawHttpFilter;

pub(crate) use super::raw_route::*;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub runtime: Option<RawRuntime>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub route_tables: Vec<RawRouteTable>,
    #[serde(default)]
    pub clusters: Vec<RawCluster>,
    #[serde(default)]
    pub stats: Option<RawStats>,
}

/// `stats`: how the stats are kept (Envoy's bootstrap `stats_config`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStats {
    /// Envoy's `histogram_bucket_settings`: the first rule whose `match` takes a
    /// histogram's name gives its buckets.
    #[serde(default)]
    pub histogram_buckets: Vec<RawHistogramBuckets>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHistogramBuckets {
    #[serde(rename = "match")]
    pub matcher: super::raw_match::RawStringMatch,
    /// Upper bounds in milliseconds, each greater than 0, in any order.
    pub buckets: Vec<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub address: String,
    pub port: u16,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuntime {
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[serde(default)]
    pub drain_timeout: Option<String>,
    #[serde(default)]
    pub spin_before_park: Option<String>,
    #[serde(default)]
    pub max_connections: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub name: String,
    pub address: String,
    pub port: u16,
    #[serde(default)]
    pub route_table: Option<String>,
    #[serde(default)]
    pub tcp_proxy: Option<RawTcpProxy>,
    #[serde(default)]
    pub limits: Option<RawLimits>,
    #[serde(default)]
    pub idle_timeout: Option<String>,
    #[serde(default)]
    pub backlog: Option<u32>,
    #[serde(default)]
    pub access_log: Option<RawAccessLog>,
    #[serde(default)]
    pub http2: Option<RawHttp2>,
    #[serde(default)]
    pub request_headers_timeout: Option<String>,
    #[serde(default)]
    pub stream_idle_timeout: Option<String>,
    /// Envoy's `common_http_protocol_options.max_stream_duration` (none by default).
    #[serde(default)]
    pub max_stream_duration: Option<String>,
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// Envoy's `strip_any_host_port`: the Host loses its port before routing.
    #[serde(default)]
    pub strip_any_host_port: Option<bool>,
    /// Envoy's `strip_matching_host_port`: only a port equal to the listener's.
    #[serde(default)]
    pub strip_matching_host_port: Option<bool>,
    #[serde(default)]
    pub forwarding: Option<RawForwarding>,
    #[serde(default)]
    pub proxy_headers: Option<RawProxyHeaders>,
    /// Distributed tracing (`observe::trace`).
    #[serde(default)]
    pub tracing: Option<super::raw_tracing::RawTracing>,
    /// Istio's standard metrics (`observe::istio`).
    #[serde(default)]
    pub istio_stats: Option<super::raw_istio::RawIstioStats>,
    #[serde(default)]
    pub http_filters: Vec<RawHttpFilter>,
    /// Network filters before the terminal (the network `rbac` filter).
    #[serde(default)]
    pub network_filters: Vec<super::raw_rbac::RawNetworkFilter>,
    /// By name: `http_inspector`.
    #[serde(default)]
    pub listener_filters: Vec<String>,
    #[serde(default)]
    pub listener_filters_timeout: Option<String>,
    #[serde(default)]
    pub continue_on_listener_filters_timeout: Option<bool>,
    /// Server-first detection (no Envoy equivalent): a duration.
    #[serde(default)]
    pub server_first_probe: Option<String>,
    #[serde(default)]
    pub filter_chains: Vec<RawFilterChain>,
    #[serde(default)]
    pub default_filter_chain: Option<RawFilterChain>,
    /// Envoy's `use_original_dst`: hand a redirected connection to the listener of its
    /// original destination.
    #[serde(default)]
    pub use_original_dst: Option<bool>,
    /// Envoy's `bind_to_port` (default true).
    #[serde(default)]
    pub bind_to_port: Option<bool>,
}

/// One filter chain: its match and its terminal filter's settings (the same fields a
/// single-chain listener carries itself).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilterChain {
    pub name: String,
    #[serde(default)]
    pub filter_chain_match: Option<RawFilterChainMatch>,
    #[serde(default)]
    pub route_table: Option<String>,
    #[serde(default)]
    pub tcp_proxy: Option<RawTcpProxy>,
    #[serde(default)]
    pub codec: Option<String>,
    #[serde(default)]
    pub stat_prefix: Option<String>,
    #[serde(default)]
    pub limits: Option<RawLimits>,
    #[serde(default)]
    pub idle_timeout: Option<String>,
    #[serde(default)]
    pub access_log: Option<RawAccessLog>,
    #[serde(default)]
    pub http2: Option<RawHttp2>,
    #[serde(default)]
    pub request_headers_timeout: Option<String>,
    #[serde(default)]
    pub stream_idle_timeout: Option<String>,
    /// Envoy's `common_http_protocol_options.max_stream_duration` (none by default).
    #[serde(default)]
    pub max_stream_duration: Option<String>,
    /// Envoy's `strip_any_host_port`: the Host loses its port before routing.
    #[serde(default)]
    pub strip_any_host_port: Option<bool>,
    /// Envoy's `strip_matching_host_port`: only a port equal to the listener's.
    #[serde(default)]
    pub strip_matching_host_port: Option<bool>,
    #[serde(default)]
    pub forwarding: Option<RawForwarding>,
    #[serde(default)]
    pub proxy_headers: Option<RawProxyHeaders>,
    /// Distributed tracing (`observe::trace`).
    #[serde(default)]
    pub tracing: Option<super::raw_tracing::RawTracing>,
    /// Istio's standard metrics (`observe::istio`).
    #[serde(default)]
    pub istio_stats: Option<super::raw_istio::RawIstioStats>,
    #[serde(default)]
    pub http_filters: Vec<RawHttpFilter>,
    /// Network filters before the terminal (the network `rbac` filter).
    #[serde(default)]
    pub network_filters: Vec<super::raw_rbac::RawNetworkFilter>,
    /// The chain's transport socket: TLS termination (Envoy's DownstreamTlsContext).
    #[serde(default)]
    pub tls: Option<crate::tls::config::RawDownstreamTls>,
}

/// Envoy's `FilterChainMatch` fields; addresses as `ADDRESS/LEN` (or a bare address).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilterChainMatch {
    #[serde(default)]
    pub destination_port: Option<u32>,
    #[serde(default)]
    pub prefix_ranges: Vec<String>,
    #[serde(default)]
    pub server_names: Vec<String>,
    #[serde(default)]
    pub transport_protocol: Option<String>,
    #[serde(default)]
    pub application_protocols: Vec<String>,
    #[serde(default)]
    pub source_prefix_ranges: Vec<String>,
    #[serde(default)]
    pub source_ports: Vec<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForwarding {
    #[serde(default)]
    pub use_remote_address: Option<bool>,
    #[serde(default)]
    pub xff_num_trusted_hops: Option<u32>,
    #[serde(default)]
    pub skip_xff_append: Option<bool>,
    /// `x-forwarded-client-cert`: sanitize (default), forward_only, append_forward,
    /// sanitize_set or always_forward_only.
    #[serde(default)]
    pub forward_client_cert_details: Option<String>,
    #[serde(default)]
    pub set_current_client_cert_details: Option<RawCertDetails>,
    /// Client ranges (`10.0.0.0/8`, `fd00::/8`) whose requests are internal (Envoy's
    /// `internal_address_config.cidr_ranges`).
    #[serde(default)]
    pub internal_addresses: Vec<String>,
}

/// Which parts of the client certificate the proxy's `x-forwarded-client-cert`
/// element carries besides `By` and `Hash`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertDetails {
    #[serde(default)]
    pub subject: bool,
    #[serde(default)]
    pub cert: bool,
    #[serde(default)]
    pub chain: bool,
    #[serde(default)]
    pub dns: bool,
    #[serde(default)]
    pub uri: bool,
}

/// `proxy_headers`: what the connection manager and router add by themselves
/// (`config::OwnHeaders`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxyHeaders {
    #[serde(default)]
    pub accept_http_10: Option<bool>,
    #[serde(default)]
    pub default_host_for_http_10: Option<String>,
    /// Envoy's `http_protocol_options.enable_trailers` (native default true).
    #[serde(default)]
    pub http1_trailers: Option<bool>,
    #[serde(default)]
    pub date: Option<bool>,
    #[serde(default)]
    pub server_name: Option<String>,
    /// `overwrite`, `append_if_absent` or `pass_through`.
    #[serde(default)]
    pub server_header_transformation: Option<String>,
    #[serde(default)]
    pub envoy_headers: Option<bool>,
    #[serde(default)]
    pub sanitize_envoy_headers: Option<bool>,
    #[serde(default)]
    pub generate_request_id: Option<bool>,
    #[serde(default)]
    pub preserve_external_request_id: Option<bool>,
    #[serde(default)]
    pub phases_header: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp2 {
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    #[serde(default)]
    pub initial_stream_window_size: Option<u32>,
    #[serde(default)]
    pub initial_connection_window_size: Option<u32>,
    #[serde(default)]
    pub keepalive_interval: Option<String>,
    #[serde(default)]
    pub keepalive_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTcpProxy {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub weighted_clusters: Vec<RawWeightedCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWeightedCluster {
    pub name: String,
    pub weight: u32,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    #[serde(default)]
    pub max_request_line_bytes: Option<usize>,
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    #[serde(default)]
    pub max_headers: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessLog {
    pub path: String,
    /// A text format (Envoy command operators).
    #[serde(default)]
    pub format: Option<String>,
    /// A JSON format: an object of format strings (Envoy's `json_format`).
    #[serde(default)]
    pub json_format: Option<serde_json::Value>,
    #[serde(default)]
    pub filter: Option<super::access_log_filter::RawLogFilter>,
}

fn validate_clusters_default() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteTable {
    pub name: String,
    pub virtual_hosts: Vec<RawVirtualHost>,
    /// Envoy's `ignore_port_in_host_matching`: match domains on the Host without its port.
    #[serde(default)]
    pub ignore_port_in_host_matching: bool,
    /// Envoy's `validate_clusters`: `true` (the default) refuses a route to a cluster
    /// that does not exist; `false` loads it, and such a route answers `503` with flag
    /// `NC` (its `cluster_not_found_response_code`) until the cluster exists.
    #[serde(default = "validate_clusters_default")]
    pub validate_clusters: bool,
    #[serde(default)]
    pub request_headers_to_add: Vec<RawHeaderAdd>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<RawHeaderAdd>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<RawRoute>,
    /// Envoy's `retry_policy`, for routes without their own.
    #[serde(default)]
    pub retry_policy: Option<super::raw_retry::RawRetryPolicy>,
    /// Envoy's `include_request_attempt_count`: `x-envoy-attempt-count` upstream.
    #[serde(default)]
    pub include_request_attempt_count: bool,
    /// Envoy's `include_attempt_count_in_response`: `x-envoy-attempt-count` downstream.
    #[serde(default)]
    pub include_attempt_count_in_response: bool,
    /// Envoy's `per_request_buffer_limit_bytes`: the most of a request body kept for a
    /// retry (for routes without their own), within the listener's 1 MiB.
    #[serde(default)]
    pub per_request_buffer_limit_bytes: Option<u32>,
    /// Envoy's `hedge_policy`, for routes without their own.
    #[serde(default)]
    pub hedge_policy: Option<super::raw_route::RawHedgePolicy>,
    /// Envoy's `VirtualHost.rate_limits`.
    #[serde(default)]
    pub rate_limits: Vec<crate::http::filter::local_ratelimit::descriptors::RawRateLimit>,
    #[serde(default)]
    pub request_headers_to_add: Vec<RawHeaderAdd>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<RawHeaderAdd>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

/// Envoy's `RingHashLbConfig`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRingHash {
    #[serde(default)]
    pub minimum_ring_size: Option<u64>,
    #[serde(default)]
    pub maximum_ring_size: Option<u64>,
    /// `XX_HASH` (default); `MURMUR_HASH_2` is refused.
    #[serde(default)]
    pub hash_function: Option<String>,
}

/// Envoy's `MaglevLbConfig`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMaglev {
    #[serde(default)]
    pub table_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub name: String,
    #[serde(default)]
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub lb_policy: Option<String>,
    /// For `lb_policy: ring_hash` (Envoy's `ring_hash_lb_config`).
    #[serde(default)]
    pub ring_hash_lb_config: Option<RawRingHash>,
    /// For `lb_policy: maglev` (Envoy's `maglev_lb_config`).
    #[serde(default)]
    pub maglev_lb_config: Option<RawMaglev>,
    /// For `lb_policy: least_request` (Envoy's `least_request_lb_config`).
    #[serde(default)]
    pub least_request_lb_config: Option<RawLeastRequest>,
    /// For `lb_policy: peak_ewma` (Envoy's contrib `PeakEwma` fields).
    #[serde(default)]
    pub peak_ewma_lb_config: Option<RawPeakEwma>,
    /// `static` (default), `strict_dns`, `logical_dns` or `original_dst`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// A DNS cluster's refresh interval (Envoy's `dns_refresh_rate`, default 5s).
    #[serde(default)]
    pub dns_refresh_rate: Option<String>,
    /// A DNS cluster's back-off after a failed resolution (Envoy's
    /// `dns_failure_refresh_rate`).
    #[serde(default)]
    pub dns_failure_refresh_rate: Option<RawRefreshRate>,
    /// `auto` (default), `v4_only`, `v6_only`, `v4_preferred` or `all`.
    #[serde(default)]
    pub dns_lookup_family: Option<String>,
    /// Required for `static` (may be empty); absent for `original_dst`.
    #[serde(default)]
    pub endpoints: Option<Vec<RawEndpoint>>,
    /// Envoy's `upstream_bind_config.source_address`: an IP address.
    #[serde(default)]
    pub source_address: Option<String>,
    /// Envoy's `original_dst_lb_config` (an original_dst cluster only).
    #[serde(default)]
    pub original_dst_lb_config: Option<RawOriginalDstLb>,
    #[serde(default)]
    pub pool: Option<RawPool>,
    /// Envoy's `upstream_connection_options.tcp_keepalive` (field names as Envoy's,
    /// seconds as integers).
    #[serde(default)]
    pub tcp_keepalive: Option<RawTcpKeepalive>,
    #[serde(default)]
    pub protocol: Option<String>,
    /// Envoy's `http_protocol_options.enable_trailers` for an HTTP/1 upstream (native
    /// default true).
    #[serde(default)]
    pub http1_trailers: Option<bool>,
    /// TLS to the endpoints (Envoy's UpstreamTlsContext).
    #[serde(default)]
    pub tls: Option<crate::tls::client::RawUpstreamTls>,
    /// Envoy's `transport_socket_matches`: an endpoint takes the transport of the first
    /// entry whose `match` its `metadata` includes (`tls`, or plaintext without it);
    /// an endpoint no entry matches takes the cluster's `tls`.
    #[serde(default)]
    pub transport_socket_matches: Vec<RawTlsMatch>,
    /// Envoy's `health_checks` (field names and shapes as Envoy's, durations as strings).
    #[serde(default)]
    pub health_checks: Vec<super::raw_health::RawHealthCheck>,
    /// Envoy's `common_lb_config.healthy_panic_threshold` (percent).
    #[serde(default)]
    pub healthy_panic_threshold: Option<f64>,
    /// Envoy's `policy.overprovisioning_factor` (percent, default 140).
    #[serde(default)]
    pub overprovisioning_factor: Option<u32>,
    /// Envoy's `common_lb_config.locality_weighted_lb_config`.
    #[serde(default)]
    pub locality_weighted_lb: Option<bool>,
    /// Each locality's weight, by name (Envoy's `LocalityLbEndpoints.load_balancing_weight`).
    #[serde(default)]
    pub locality_weights: Option<std::collections::BTreeMap<String, u32>>,
    /// Envoy's `slow_start_config` (round robin and least request).
    #[serde(default)]
    pub slow_start: Option<RawSlowStart>,
    /// Envoy's `circuit_breakers` (field names as Envoy's).
    #[serde(default)]
    pub circuit_breakers: Option<super::raw_circuit::RawCircuitBreakers>,
    /// Envoy's `outlier_detection` (field names as Envoy's, durations as strings).
    #[serde(default)]
    pub outlier_detection: Option<super::raw_outlier::RawOutlierDetection>,
}

/// Envoy's `Cluster.RefreshRate`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRefreshRate {
    pub base_interval: String,
    #[serde(default)]
    pub max_interval: Option<String>,
}

/// Envoy's `Cluster.OriginalDstLbConfig`: where an HTTP request may name its upstream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOriginalDstLb {
    #[serde(default)]
    pub use_http_header: bool,
    /// Default `x-envoy-original-dst-host`.
    #[serde(default)]
    pub http_header_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub address: String,
    /// Envoy's `endpoint.hostname`: what `auto_host_rewrite` sends as Host.
    #[serde(default)]
    pub hostname: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub weight: Option<u32>,
    /// Envoy's priority level (0, the default, is the highest).
    #[serde(default)]
    pub priority: Option<u32>,
    /// The locality's name (Envoy: `region/zone/sub_zone`); weights in the cluster's
    /// `locality_weights`.
    #[serde(default)]
    pub locality: Option<String>,
    /// Envoy's `health_status`: `healthy`, `unknown`, `degraded`, `unhealthy`,
    /// `draining` or `timeout`.
    #[serde(default)]
    pub health_status: Option<String>,
    /// What the cluster's `transport_socket_matches` look at (Envoy's
    /// `metadata.filter_metadata["envoy.transport_socket_match"]`).
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, serde_json::Value>,
}

/// One of a cluster's `transport_socket_matches`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsMatch {
    pub name: String,
    /// Metadata values an endpoint must have (empty: every endpoint).
    #[serde(default, rename = "match")]
    pub criteria: std::collections::BTreeMap<String, serde_json::Value>,
    /// Its TLS (none: plaintext, Envoy's `raw_buffer`).
    #[serde(default)]
    pub tls: Option<crate::tls::client::RawUpstreamTls>,
}

/// Envoy's `LeastRequest` settings: `active_request_bias` (its runtime default value;
/// 1.0 when unset).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLeastRequest {
    #[serde(default)]
    pub active_request_bias: Option<f64>,
}

/// Peak EWMA's settings (Envoy's contrib `PeakEwma`): durations as text.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeakEwma {
    #[serde(default)]
    pub decay_time: Option<String>,
    #[serde(default)]
    pub default_rtt: Option<String>,
    #[serde(default)]
    pub penalty_value: Option<f64>,
}

/// Envoy's `SlowStartConfig` (`aggression` is its runtime default value).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlowStart {
    pub slow_start_window: Option<String>,
    #[serde(default)]
    pub aggression: Option<f64>,
    #[serde(default)]
    pub min_weight_percent: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    #[serde(default)]
    pub max_idle_per_endpoint: Option<usize>,
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// Envoy's `max_requests_per_connection` (requests, or HTTP/2 streams, per upstream
    /// connection; 0: no limit).
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
    /// Envoy's `http2_protocol_options.max_concurrent_streams` (HTTP/2 clusters).
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    /// Envoy's cluster `common_http_protocol_options.max_stream_duration` (0: none).
    #[serde(default)]
    pub max_stream_duration: Option<String>,
}

/// Envoy's `TcpKeepalive`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTcpKeepalive {
    #[serde(default)]
    pub keepalive_probes: Option<u32>,
    #[serde(default)]
    pub keepalive_time: Option<u32>,
    #[serde(default)]
    pub keepalive_interval: Option<u32>,
}

/// The header edits a route table, virtual host or route carries (Envoy's four fields).
macro_rules! header_mutation_of {
    ($($t:ty),*) => {$(
        impl $t {
            pub(crate) fn header_mutation(&self) -> RawHeaderMutationRef<'_> {
                RawHeaderMutationRef {
                    request_headers_to_add: &self.request_headers_to_add,
                    request_headers_to_remove: &self.request_headers_to_remove,
                    response_headers_to_add: &self.response_headers_to_add,
                    response_headers_to_remove: &self.response_headers_to_remove,
                }
            }
        }
    )*};
}
header_mutation_of!(RawRouteTable, RawVirtualHost, RawRoute);
