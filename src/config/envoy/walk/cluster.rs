//! The walker's table for clusters: discovery, load balancing, circuit breakers,
//! outlier detection, health checks, endpoints, connection options and the upstream
//! HTTP protocol options (`walk.rs` has the rest).

pub(super) const SUPPORTED: &[(&str, &[&str])] = &[
    (
        "envoy.config.cluster.v3.Cluster",
        &[
            "name",
            "type",
            "connect_timeout",
            "lb_policy",
            "ring_hash_lb_config",
            "maglev_lb_config",
            "round_robin_lb_config",
            "least_request_lb_config",
            "original_dst_lb_config",
            "load_balancing_policy",
            "load_assignment",
            "eds_cluster_config",
            "typed_extension_protocol_options",
            "transport_socket",
            "transport_socket_matches",
            "health_checks",
            "common_lb_config",
            "upstream_bind_config",
            "circuit_breakers",
            "outlier_detection",
            "dns_refresh_rate",
            "dns_failure_refresh_rate",
            "dns_lookup_family",
            "max_requests_per_connection",
            "upstream_connection_options",
        ],
    ),
    // `set_local_interface_name_on_upstream_connections` and `happy_eyeballs_config`
    // are refused.
    (
        "envoy.config.cluster.v3.UpstreamConnectionOptions",
        &["tcp_keepalive"],
    ),
    (
        "envoy.config.core.v3.TcpKeepalive",
        &["keepalive_probes", "keepalive_time", "keepalive_interval"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.RefreshRate",
        &["base_interval", "max_interval"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.OriginalDstLbConfig",
        &["use_http_header", "http_header_name"],
    ),
    (
        "envoy.config.cluster.v3.OutlierDetection",
        &[
            "consecutive_5xx",
            "interval",
            "base_ejection_time",
            "max_ejection_percent",
            "enforcing_consecutive_5xx",
            "enforcing_success_rate",
            "success_rate_minimum_hosts",
            "success_rate_request_volume",
            "success_rate_stdev_factor",
            "consecutive_gateway_failure",
            "enforcing_consecutive_gateway_failure",
            "split_external_local_origin_errors",
            "consecutive_local_origin_failure",
            "enforcing_consecutive_local_origin_failure",
            "enforcing_local_origin_success_rate",
            "failure_percentage_threshold",
            "enforcing_failure_percentage",
            "enforcing_failure_percentage_local_origin",
            "failure_percentage_minimum_hosts",
            "failure_percentage_request_volume",
            "max_ejection_time",
            "max_ejection_time_jitter",
            "successful_active_health_check_uneject_host",
            "always_eject_one_host",
        ],
    ),
    (
        "envoy.config.cluster.v3.CircuitBreakers",
        &["thresholds", "per_host_thresholds"],
    ),
    (
        "envoy.config.cluster.v3.CircuitBreakers.Thresholds",
        &[
            "priority",
            "max_connections",
            "max_pending_requests",
            "max_requests",
            "max_retries",
            "retry_budget",
            "track_remaining",
            "max_connection_pools",
        ],
    ),
    (
        "envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget",
        &["budget_percent", "min_retry_concurrency"],
    ),
    ("envoy.config.core.v3.BindConfig", &["source_address"]),
    (
        "envoy.config.cluster.v3.Cluster.CommonLbConfig",
        &["healthy_panic_threshold", "locality_weighted_lb_config"],
    ),
    ("envoy.type.v3.Percent", &["value"]),
    (
        "envoy.config.cluster.v3.Cluster.RoundRobinLbConfig",
        &["slow_start_config"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.LeastRequestLbConfig",
        &["slow_start_config", "active_request_bias"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.SlowStartConfig",
        &["slow_start_window", "aggression", "min_weight_percent"],
    ),
    (
        "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin",
        &["slow_start_config"],
    ),
    (
        "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
        &["slow_start_config", "active_request_bias"],
    ),
    (
        "envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma",
        &[
            "decay_time",
            "aggregation_interval",
            "max_samples_per_host",
            "default_rtt",
            "penalty_value",
        ],
    ),
    (
        "envoy.extensions.load_balancing_policies.common.v3.SlowStartConfig",
        &["slow_start_window", "aggression", "min_weight_percent"],
    ),
    // Envoy requires the key; Outrigger has no runtime layer, so the default applies.
    (
        "envoy.config.core.v3.RuntimeDouble",
        &["default_value", "runtime_key"],
    ),
    (
        "envoy.config.core.v3.HealthCheck",
        &[
            "timeout",
            "interval",
            "initial_jitter",
            "interval_jitter",
            "interval_jitter_percent",
            "unhealthy_threshold",
            "healthy_threshold",
            "reuse_connection",
            "no_traffic_interval",
            "no_traffic_healthy_interval",
            "unhealthy_interval",
            "unhealthy_edge_interval",
            "healthy_edge_interval",
            "http_health_check",
            "tcp_health_check",
            "grpc_health_check",
        ],
    ),
    (
        "envoy.config.core.v3.HealthCheck.HttpHealthCheck",
        &[
            "host",
            "path",
            "method",
            "expected_statuses",
            "retriable_statuses",
        ],
    ),
    (
        "envoy.config.core.v3.HealthCheck.TcpHealthCheck",
        &["send", "receive"],
    ),
    (
        "envoy.config.core.v3.HealthCheck.Payload",
        &["text", "binary"],
    ),
    (
        "envoy.config.core.v3.HealthCheck.GrpcHealthCheck",
        &["service_name", "authority", "initial_metadata"],
    ),
    (
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        &["cluster_name", "endpoints", "policy"],
    ),
    (
        "envoy.config.endpoint.v3.ClusterLoadAssignment.Policy",
        &["overprovisioning_factor"],
    ),
    (
        "envoy.config.endpoint.v3.LocalityLbEndpoints",
        &[
            "lb_endpoints",
            "locality",
            "load_balancing_weight",
            "priority",
        ],
    ),
    (
        "envoy.config.endpoint.v3.LbEndpoint",
        &[
            "endpoint",
            "load_balancing_weight",
            "health_status",
            "metadata",
        ],
    ),
    // Read: `filter_metadata["envoy.transport_socket_match"]` (what the cluster's
    // `transport_socket_matches` look at); the other namespaces are carried and unused.
    ("envoy.config.core.v3.Metadata", &["filter_metadata"]),
    (
        "envoy.config.cluster.v3.Cluster.TransportSocketMatch",
        &["name", "match", "transport_socket"],
    ),
    (
        "envoy.config.endpoint.v3.Endpoint",
        &["address", "hostname"],
    ),
    (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        &[
            "common_http_protocol_options",
            "explicit_http_config",
            "use_downstream_protocol_config",
        ],
    ),
    (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig",
        &["http_protocol_options", "http2_protocol_options"],
    ),
    (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.UseDownstreamHttpConfig",
        &["http_protocol_options", "http2_protocol_options"],
    ),
];
