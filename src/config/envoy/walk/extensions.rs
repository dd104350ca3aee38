//! The extension types an Envoy bootstrap may name (`walk.rs` checks `Any` payloads and
//! HTTP filters against these lists).

/// Extension types (`typed_config` and other `Any` payloads) Outrigger implements.
/// Where each may appear is checked by the translation.
pub(in crate::config::envoy) const EXTENSIONS: &[&str] = &[
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
    "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
    "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    // Only as a resource of an SDS file or of SDS over ADS (`sds.rs`).
    "envoy.extensions.transport_sockets.tls.v3.Secret",
    "envoy.extensions.filters.http.router.v3.Router",
    "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
    "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
    "envoy.extensions.filters.http.buffer.v3.Buffer",
    "envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
    "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    "envoy.config.route.v3.FilterConfig",
    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
    "envoy.extensions.filters.http.rbac.v3.RBAC",
    "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
    "envoy.extensions.filters.network.rbac.v3.RBAC",
    "envoy.extensions.filters.http.fault.v3.HTTPFault",
    "envoy.extensions.filters.http.cors.v3.Cors",
    "envoy.extensions.filters.http.cors.v3.CorsPolicy",
    "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
    "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
    "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
    "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
    "envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
    "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
    "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
    "envoy.config.trace.v3.OpenTelemetryConfig",
    "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin",
    "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
    "envoy.extensions.load_balancing_policies.random.v3.Random",
    "envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash",
    "envoy.extensions.load_balancing_policies.maglev.v3.Maglev",
    // Envoy's contrib (`config/envoy/peak_ewma.rs`).
    "envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma",
    "envoy.extensions.filters.http.peak_ewma.v3alpha.PeakEwmaConfig",
    "stats.PluginConfig", // Istio's stats filter: not Envoy's API (istio_stats.rs)
    "envoy.extensions.filters.http.wasm.v3.Wasm",
    // A wasm plugin's and VM's `configuration` (`config/envoy/wasm.rs` checks where).
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
    // A `transport_socket_matches` entry's plaintext transport (`config/envoy/tls.rs`).
    "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
];

/// HTTP filter types Outrigger implements (the others are refused, or skipped when the
/// filter is marked `is_optional`).
pub(in crate::config::envoy) const HTTP_FILTERS: &[&str] = &[
    "envoy.extensions.filters.http.router.v3.Router",
    "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
    "envoy.extensions.filters.http.buffer.v3.Buffer",
    "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    "envoy.extensions.filters.http.rbac.v3.RBAC",
    "envoy.extensions.filters.http.fault.v3.HTTPFault",
    "envoy.extensions.filters.http.cors.v3.Cors",
    "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
    "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
    "stats.PluginConfig",
    "envoy.extensions.filters.http.wasm.v3.Wasm",
    "envoy.extensions.filters.http.peak_ewma.v3alpha.PeakEwmaConfig",
];
