//! The supported-fields table (`walk.rs`'s `SUPPORTED`) for the HTTP and network filters
//! with large configs: the local rate limit, RBAC, fault injection and CORS. Split out
//! of `walk.rs` only for size; the walker reads both tables alike. Control plane only.

/// Supported fields, per message full name, as in `walk::SUPPORTED`.
pub(super) const SUPPORTED: &[(&str, &[&str])] = &[
    // --- ext_authz (`config/envoy/ext_authz.rs`); its `grpc_service.timeout` is let
    // through by `walk::supported_at` ---
    (
        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        &[
            "grpc_service",
            "http_service",
            "transport_api_version",
            "failure_mode_allow",
            "failure_mode_allow_header_add",
            "status_on_error",
            "stat_prefix",
            "allowed_headers",
            "with_request_body",
            "charge_cluster_response_stats",
        ],
    ),
    (
        "envoy.extensions.filters.http.ext_authz.v3.BufferSettings",
        &[
            "max_request_bytes",
            "allow_partial_message",
            "pack_as_bytes",
        ],
    ),
    (
        "envoy.extensions.filters.http.ext_authz.v3.HttpService",
        &[
            "server_uri",
            "path_prefix",
            "authorization_request",
            "authorization_response",
        ],
    ),
    (
        "envoy.extensions.filters.http.ext_authz.v3.AuthorizationRequest",
        &["allowed_headers", "headers_to_add"],
    ),
    (
        "envoy.extensions.filters.http.ext_authz.v3.AuthorizationResponse",
        &[
            "allowed_upstream_headers",
            "allowed_upstream_headers_to_append",
            "allowed_client_headers",
            "allowed_client_headers_on_success",
        ],
    ),
    ("envoy.type.matcher.v3.ListStringMatcher", &["patterns"]),
    (
        "envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
        &[
            "stat_prefix",
            "grpc_service",
            "failure_mode_allow",
            "transport_api_version",
        ],
    ),
    (
        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
        &["disabled", "check_settings"],
    ),
    (
        "envoy.extensions.filters.http.ext_authz.v3.CheckSettings",
        &[
            "context_extensions",
            "disable_request_body_buffering",
            "with_request_body",
        ],
    ),
    // Istio's stats filter: the fields Istio's control plane sets by default. The
    // durations are accepted without effect (TCP is reported once, at close; the
    // series are not rotated); `metrics` and `definitions` are refused.
    (
        "stats.PluginConfig",
        &[
            "disable_host_header_fallback",
            "tcp_reporting_duration",
            "reporter",
            "rescoping_duration",
            "scope_grace_period_duration",
        ],
    ),
    // --- Local rate limit (`config/envoy/local_ratelimit.rs`) and the routes'
    // `rate_limits` ---
    (
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        &[
            "stat_prefix",
            "status",
            "token_bucket",
            "filter_enabled",
            "filter_enforced",
            "request_headers_to_add_when_not_enforced",
            "response_headers_to_add",
            "descriptors",
            "stage",
            "local_rate_limit_per_downstream_connection",
            "enable_x_ratelimit_headers",
            "vh_rate_limits",
            "always_consume_default_token_bucket",
            "rate_limits",
        ],
    ),
    ("envoy.type.v3.HttpStatus", &["code"]),
    (
        "envoy.type.v3.TokenBucket",
        &["max_tokens", "tokens_per_fill", "fill_interval"],
    ),
    (
        "envoy.extensions.common.ratelimit.v3.LocalRateLimitDescriptor",
        &["entries", "token_bucket"],
    ),
    (
        "envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry",
        &["key", "value"],
    ),
    (
        "envoy.config.route.v3.RateLimit",
        &["stage", "disable_key", "actions"],
    ),
    (
        "envoy.config.route.v3.RateLimit.Action",
        &[
            "request_headers",
            "generic_key",
            "remote_address",
            "masked_remote_address",
            "destination_cluster",
            "header_value_match",
            "query_parameter_value_match",
        ],
    ),
    (
        "envoy.config.route.v3.RateLimit.Action.HeaderValueMatch",
        &[
            "descriptor_value",
            "descriptor_key",
            "expect_match",
            "headers",
        ],
    ),
    (
        "envoy.config.route.v3.RateLimit.Action.QueryParameterValueMatch",
        &[
            "descriptor_value",
            "descriptor_key",
            "expect_match",
            "query_parameters",
        ],
    ),
    (
        "envoy.config.route.v3.RateLimit.Action.MaskedRemoteAddress",
        &["v4_prefix_mask_len", "v6_prefix_mask_len"],
    ),
    (
        "envoy.config.route.v3.RateLimit.Action.RequestHeaders",
        &["header_name", "descriptor_key", "skip_if_absent"],
    ),
    (
        "envoy.config.route.v3.RateLimit.Action.GenericKey",
        &["descriptor_value", "descriptor_key"],
    ),
    // --- RBAC (HTTP and network filters; `config/envoy/rbac.rs`) ---
    (
        "envoy.extensions.filters.http.rbac.v3.RBAC",
        &[
            "rules",
            "shadow_rules",
            "rules_stat_prefix",
            "shadow_rules_stat_prefix",
            "track_per_rule_stats",
        ],
    ),
    (
        "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
        &["rbac"],
    ),
    (
        "envoy.extensions.filters.network.rbac.v3.RBAC",
        &[
            "rules",
            "shadow_rules",
            "stat_prefix",
            "shadow_rules_stat_prefix",
            "enforcement_type",
        ],
    ),
    ("envoy.config.rbac.v3.RBAC", &["action", "policies"]),
    (
        "envoy.config.rbac.v3.Policy",
        &["permissions", "principals"],
    ),
    (
        "envoy.config.rbac.v3.Permission",
        &[
            "and_rules",
            "or_rules",
            "not_rule",
            "any",
            "header",
            "url_path",
            "destination_ip",
            "destination_port",
            "destination_port_range",
            "requested_server_name",
        ],
    ),
    ("envoy.config.rbac.v3.Permission.Set", &["rules"]),
    (
        "envoy.config.rbac.v3.Principal",
        &[
            "and_ids",
            "or_ids",
            "not_id",
            "any",
            "authenticated",
            "source_ip",
            "direct_remote_ip",
            "remote_ip",
            "header",
            "url_path",
        ],
    ),
    ("envoy.config.rbac.v3.Principal.Set", &["ids"]),
    (
        "envoy.config.rbac.v3.Principal.Authenticated",
        &["principal_name"],
    ),
    ("envoy.type.matcher.v3.PathMatcher", &["path"]),
    ("envoy.type.v3.Int32Range", &["start", "end"]),
    // --- Fault injection and CORS (`config/envoy/fault_cors.rs`); `response_body`, the
    // runtime keys and the downstream-cluster stats switch are refused here by path ---
    (
        "envoy.extensions.filters.http.fault.v3.HTTPFault",
        &[
            "delay",
            "abort",
            "upstream_cluster",
            "headers",
            "downstream_nodes",
            "max_active_faults",
            "response_rate_limit",
        ],
    ),
    (
        "envoy.extensions.filters.common.fault.v3.FaultRateLimit",
        &["fixed_limit", "header_limit", "percentage"],
    ),
    (
        "envoy.extensions.filters.common.fault.v3.FaultRateLimit.FixedLimit",
        &["limit_kbps"],
    ),
    (
        "envoy.extensions.filters.common.fault.v3.FaultDelay",
        &["fixed_delay", "header_delay", "percentage"],
    ),
    (
        "envoy.extensions.filters.http.fault.v3.FaultAbort",
        &["http_status", "grpc_status", "header_abort", "percentage"],
    ),
    (
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        &[
            "allow_origin_string_match",
            "allow_methods",
            "allow_headers",
            "expose_headers",
            "max_age",
            "allow_credentials",
            "filter_enabled",
            "shadow_enabled",
            "allow_private_network_access",
            "forward_not_matching_preflights",
        ],
    ),
    // --- proxy-wasm (`config/envoy/wasm.rs`): remote code, precompiled code, the VM's
    // environment variables, capability restrictions and reload back-off are refused ---
    ("envoy.extensions.filters.http.wasm.v3.Wasm", &["config"]),
    (
        "envoy.extensions.wasm.v3.PluginConfig",
        &[
            "name",
            "root_id",
            "vm_config",
            "configuration",
            "fail_open",
            "failure_policy",
        ],
    ),
    (
        "envoy.extensions.wasm.v3.VmConfig",
        &["vm_id", "runtime", "code", "configuration"],
    ),
    ("envoy.config.core.v3.AsyncDataSource", &["local"]),
];
