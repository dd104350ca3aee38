//! The one table of Envoy v3 fields Outrigger supports, and the walker that checks a
//! decoded bootstrap against it. Control plane only: runs when a bootstrap is loaded.
//!
//! Every set field of every message (recursing into messages, lists, maps and the
//! payloads of `Any`) must be listed for its message's full name; the first one that is
//! not fails validation with its field path. `Any` payloads must be an extension type
//! Outrigger implements. Well-known `google.protobuf` types are leaves.

use prost_reflect::{DynamicMessage, MapKey, ReflectMessage, Value};

mod access_log;
mod cluster;
mod ext_proc;
mod extensions;
mod filters;
mod hashing;
mod stats;
mod tls;

pub(super) use extensions::{EXTENSIONS, HTTP_FILTERS};

/// Supported fields, per message full name (the filters' RBAC, local rate limit, fault
/// and CORS messages are in `filters.rs`, TLS and SDS in `tls.rs`, hashing in
/// `hashing.rs`, access logs in `access_log.rs`, clusters and their endpoints, health
/// checks and upstream protocol options in `cluster.rs`). A message listed in none of the tables
/// supports no field (it may still appear empty, e.g. the router's config).
const SUPPORTED: &[(&str, &[&str])] = &[
    (
        "envoy.config.bootstrap.v3.Bootstrap",
        &[
            "node",
            "static_resources",
            "dynamic_resources",
            "admin",
            "overload_manager",
            "stats_config",
        ],
    ),
    (
        "envoy.config.bootstrap.v3.Bootstrap.DynamicResources",
        &["lds_config", "cds_config", "ads_config"],
    ),
    (
        "envoy.config.core.v3.ApiConfigSource",
        &[
            "api_type",
            "transport_api_version",
            "grpc_services",
            "set_node_on_first_message_only",
        ],
    ),
    ("envoy.config.core.v3.GrpcService", &["envoy_grpc"]),
    ("envoy.config.core.v3.GrpcService.EnvoyGrpc", &["cluster_name"]),
    (
        "envoy.config.core.v3.ConfigSource",
        &["ads", "resource_api_version", "initial_fetch_timeout"],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.Rds",
        &["config_source", "route_config_name"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.EdsClusterConfig",
        &["eds_config", "service_name"],
    ),
    ("envoy.config.core.v3.Locality", &["region", "zone", "sub_zone"]),
    ("envoy.config.core.v3.Node", &["id", "cluster", "metadata", "locality"]),
    (
        "envoy.config.bootstrap.v3.Bootstrap.StaticResources",
        &["listeners", "clusters"],
    ),
    ("envoy.config.bootstrap.v3.Admin", &["address"]),
    ("envoy.config.core.v3.Address", &["socket_address"]),
    (
        "envoy.config.core.v3.SocketAddress",
        &["address", "port_value"],
    ),
    (
        "envoy.config.overload.v3.OverloadManager",
        &["resource_monitors", "refresh_interval"],
    ),
    (
        "envoy.config.overload.v3.ResourceMonitor",
        &["name", "typed_config"],
    ),
    (
        "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
        &["max_active_downstream_connections"],
    ),
    (
        "envoy.config.listener.v3.Listener",
        &[
            "name",
            "address",
            "filter_chains",
            "default_filter_chain",
            "listener_filters",
            "listener_filters_timeout",
            "continue_on_listener_filters_timeout",
            "use_original_dst",
            "bind_to_port",
            "traffic_direction",
        ],
    ),
    (
        "envoy.config.listener.v3.FilterChain",
        &["filters", "name", "filter_chain_match", "transport_socket"],
    ),
    ("envoy.config.core.v3.TransportSocket", &["name", "typed_config"]),
    (
        "envoy.config.listener.v3.FilterChainMatch",
        &[
            "destination_port",
            "prefix_ranges",
            "server_names",
            "transport_protocol",
            "application_protocols",
            "source_prefix_ranges",
            "source_ports",
        ],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig",
        &["unix_sockets", "cidr_ranges"],
    ),
    (
        "envoy.config.core.v3.CidrRange",
        &["address_prefix", "prefix_len"],
    ),
    (
        "envoy.config.listener.v3.ListenerFilter",
        &["name", "typed_config"],
    ),
    ("envoy.config.listener.v3.Filter", &["name", "typed_config"]),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        &[
            "codec_type",
            "stat_prefix",
            "route_config",
            "rds",
            "http_filters",
            "use_remote_address",
            "xff_num_trusted_hops",
            "skip_xff_append",
            "internal_address_config",
            "request_headers_timeout",
            "stream_idle_timeout",
            "common_http_protocol_options",
            "max_request_headers_kb",
            "http2_protocol_options",
            "upgrade_configs",
            "access_log",
            "http_protocol_options",
            "server_name",
            "server_header_transformation",
            "generate_request_id",
            "preserve_external_request_id",
            "strip_any_host_port",
            "strip_matching_host_port",
            "tracing",
            "forward_client_cert_details",
            "set_current_client_cert_details",
        ],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.SetCurrentClientCertDetails",
        &["subject", "cert", "chain", "dns", "uri"],
    ),
    (
        // `verbose` and the other custom tag kinds are refused; `spawn_upstream_span`
        // only as false (docs/tracing.md).
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing",
        &[
            "provider",
            "random_sampling",
            "client_sampling",
            "overall_sampling",
            "max_path_tag_length",
            "custom_tags",
            "spawn_upstream_span",
        ],
    ),
    ("envoy.config.trace.v3.Tracing.Http", &["name", "typed_config"]),
    (
        "envoy.config.trace.v3.OpenTelemetryConfig",
        &["http_service", "grpc_service", "service_name", "max_cache_size"],
    ),
    ("envoy.config.core.v3.HttpService", &["http_uri"]),
    ("envoy.config.core.v3.HttpUri", &["uri", "cluster", "timeout"]),
    (
        "envoy.type.tracing.v3.CustomTag",
        &["tag", "literal", "request_header"],
    ),
    ("envoy.type.tracing.v3.CustomTag.Literal", &["value"]),
    (
        "envoy.type.tracing.v3.CustomTag.Header",
        &["name", "default_value"],
    ),
    (
        "envoy.config.core.v3.Http1ProtocolOptions",
        &["accept_http_10", "default_host_for_http_10", "enable_trailers"],
    ),
    (
        "envoy.extensions.filters.http.router.v3.Router",
        // `dynamic_stats`: accepted; Outrigger's per-cluster counters are fixed and
        // always kept, so there are no per-request dynamic stats to turn off.
        &["suppress_envoy_headers", "dynamic_stats"],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig",
        &["upgrade_type", "enabled"],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
        &["name", "typed_config", "is_optional"],
    ),
    (
        // `max_requests_per_connection`: upstream only (the connection manager refuses
        // it in `hcm.rs`).
        "envoy.config.core.v3.HttpProtocolOptions",
        &[
            "idle_timeout",
            "max_headers_count",
            "max_requests_per_connection",
            "max_stream_duration",
        ],
    ),
    (
        "envoy.config.core.v3.Http2ProtocolOptions",
        &[
            "max_concurrent_streams",
            "initial_stream_window_size",
            "initial_connection_window_size",
            "connection_keepalive",
        ],
    ),
    ("envoy.config.core.v3.KeepaliveSettings", &["interval", "timeout"]),
    (
        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        &["mutations"],
    ),
    (
        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
        &["mutations"],
    ),
    (
        "envoy.extensions.filters.http.buffer.v3.Buffer",
        &["max_request_bytes"],
    ),
    (
        "envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
        &["disabled", "buffer"],
    ),
    (
        "envoy.extensions.filters.http.header_mutation.v3.Mutations",
        &["request_mutations", "response_mutations"],
    ),
    (
        "envoy.config.common.mutation_rules.v3.HeaderMutation",
        &["remove", "append"],
    ),
    (
        "envoy.config.core.v3.HeaderValueOption",
        &["header", "append_action"],
    ),
    ("envoy.config.core.v3.HeaderValue", &["key", "value"]),
    (
        "envoy.config.core.v3.SubstitutionFormatString",
        &["text_format", "text_format_source", "json_format"],
    ),
    (
        "envoy.config.core.v3.DataSource",
        // `filename`: TLS certificates and CAs, and a direct response body (the
        // translation checks where).
        &["inline_string", "inline_bytes", "filename"],
    ),
    (
        "envoy.config.route.v3.RouteConfiguration",
        &[
            "name",
            "virtual_hosts",
            "validate_clusters",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "typed_per_filter_config",
        ],
    ),
    (
        "envoy.config.route.v3.VirtualHost",
        &[
            "name",
            "domains",
            "routes",
            "retry_policy",
            "hedge_policy",
            "include_request_attempt_count",
            "include_attempt_count_in_response",
            "per_request_buffer_limit_bytes",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "typed_per_filter_config",
            "rate_limits",
        ],
    ),
    (
        "envoy.config.route.v3.Route",
        &[
            "name",
            "match",
            "route",
            "redirect",
            "direct_response",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "typed_per_filter_config",
            "per_request_buffer_limit_bytes",
            "stat_prefix",
        ],
    ),
    (
        "envoy.config.route.v3.RouteMatch",
        &[
            "prefix",
            "path",
            "path_separated_prefix",
            "safe_regex",
            "connect_matcher",
            "case_sensitive",
            "headers",
            "query_parameters",
            "grpc",
            "runtime_fraction",
        ],
    ),
    (
        "envoy.config.route.v3.HeaderMatcher",
        // Route matches translate exact, prefix and present (`route.rs` refuses the
        // others); RBAC header rules take every form.
        &[
            "name",
            "exact_match",
            "prefix_match",
            "suffix_match",
            "contains_match",
            "safe_regex_match",
            "range_match",
            "present_match",
            "string_match",
            "invert_match",
            "treat_missing_header_as_empty",
        ],
    ),
    (
        "envoy.type.matcher.v3.StringMatcher",
        &[
            "exact",
            "prefix",
            "suffix",
            "contains",
            "safe_regex",
            "ignore_case",
        ],
    ),
    // `google_re2` only as the (deprecated) empty engine choice.
    ("envoy.type.matcher.v3.RegexMatcher", &["regex", "google_re2"]),
    (
        "envoy.type.matcher.v3.RegexMatchAndSubstitute",
        &["pattern", "substitution"],
    ),
    ("envoy.type.v3.Int64Range", &["start", "end"]),
    (
        "envoy.config.route.v3.QueryParameterMatcher",
        &["name", "string_match", "present_match"],
    ),
    (
        "envoy.config.core.v3.RuntimeFractionalPercent",
        &["default_value", "runtime_key"],
    ),
    (
        "envoy.type.v3.FractionalPercent",
        &["numerator", "denominator"],
    ),
    (
        "envoy.config.route.v3.RouteAction",
        &[
            "cluster",
            "cluster_header",
            "weighted_clusters",
            "cluster_not_found_response_code",
            "prefix_rewrite",
            "regex_rewrite",
            "host_rewrite_literal",
            "auto_host_rewrite",
            "timeout",
            "priority",
            "max_stream_duration",
            "max_grpc_timeout",
            "grpc_timeout_offset",
            "upgrade_configs",
            "retry_policy",
            "hedge_policy",
            "rate_limits",
            "request_mirror_policies",
            "hash_policy",
        ],
    ),
    (
        "envoy.config.route.v3.RouteAction.MaxStreamDuration",
        &[
            "max_stream_duration",
            "grpc_timeout_header_max",
            "grpc_timeout_header_offset",
        ],
    ),
    (
        // Checked field by field by `route::retry::hedge_policy`.
        "envoy.config.route.v3.HedgePolicy",
        &[
            "initial_requests",
            "additional_request_chance",
            "hedge_on_per_try_timeout",
        ],
    ),
    (
        // `request_headers_mutations` is refused; `trace_sampled` is accepted and has
        // no effect (there is no tracing to sample).
        "envoy.config.route.v3.RouteAction.RequestMirrorPolicy",
        &[
            "cluster",
            "cluster_header",
            "runtime_fraction",
            "trace_sampled",
            "disable_shadow_host_suffix_append",
            "host_rewrite_literal",
        ],
    ),
    (
        "envoy.config.route.v3.RetryPolicy",
        &[
            "retry_on",
            "num_retries",
            "per_try_timeout",
            "per_try_idle_timeout",
            "retry_host_predicate",
            "host_selection_retry_max_attempts",
            "retriable_status_codes",
            "retry_back_off",
            "retriable_headers",
            "retriable_request_headers",
        ],
    ),
    (
        "envoy.config.route.v3.RetryPolicy.RetryHostPredicate",
        &["name", "typed_config"],
    ),
    (
        "envoy.config.route.v3.RetryPolicy.RetryBackOff",
        &["base_interval", "max_interval"],
    ),
    (
        "envoy.config.route.v3.WeightedCluster",
        &["clusters", "total_weight"],
    ),
    (
        "envoy.config.route.v3.WeightedCluster.ClusterWeight",
        &["name", "weight", "host_rewrite_literal"],
    ),
    (
        "envoy.config.route.v3.RedirectAction",
        &[
            "https_redirect",
            "scheme_redirect",
            "host_redirect",
            "port_redirect",
            "path_redirect",
            "prefix_rewrite",
            "regex_rewrite",
            "response_code",
            "strip_query",
        ],
    ),
    (
        "envoy.config.route.v3.RouteAction.UpgradeConfig",
        &["upgrade_type", "enabled", "connect_config"],
    ),
    (
        "envoy.config.route.v3.DirectResponseAction",
        &["status", "body"],
    ),
    ("envoy.config.route.v3.FilterConfig", &["config", "disabled"]),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        &[
            "stat_prefix",
            "cluster",
            "weighted_clusters",
            "idle_timeout",
            "access_log",
        ],
    ),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster",
        &["clusters"],
    ),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight",
        &["name", "weight"],
    ),
];

/// A `ConfigSource` under `sds_config` may also name a file (SDS from files); the
/// other config sources are ADS only (`xds.rs`).
const SDS_CONFIG_SOURCE: &[&str] = &[
    "path",
    "path_config_source",
    "ads",
    "resource_api_version",
    "initial_fetch_timeout",
];

fn supported_at(message: &str, field: &str, path: &str) -> bool {
    // An HTTP filter's gRPC service (ext_authz) has a deadline; xDS's and the tracer's
    // do not take one.
    if message == "envoy.config.core.v3.GrpcService" && field == "timeout" {
        let parent = path
            .strip_suffix(".grpc_service")
            .and_then(|p| p.strip_suffix(".typed_config"));
        return parent
            .and_then(|p| p.rsplit('.').next())
            .is_some_and(|last| last.starts_with("http_filters[") || last.starts_with("filters["));
    }
    // Headers on the ADS stream (a control plane's token); other gRPC services do not
    // send them.
    if message == "envoy.config.core.v3.GrpcService" && field == "initial_metadata" {
        return path.contains("ads_config.grpc_services[");
    }
    if message == "envoy.config.core.v3.ConfigSource" && path.ends_with("sds_config") {
        return SDS_CONFIG_SOURCE.contains(&field);
    }
    supported(message, field)
}

fn supported(message: &str, field: &str) -> bool {
    SUPPORTED
        .iter()
        .chain(cluster::SUPPORTED)
        .chain(filters::SUPPORTED)
        .chain(ext_proc::SUPPORTED)
        .chain(tls::SUPPORTED)
        .chain(hashing::SUPPORTED)
        .chain(access_log::SUPPORTED)
        .chain(stats::SUPPORTED)
        .find(|(m, _)| *m == message)
        .is_some_and(|(_, fields)| fields.contains(&field))
}

/// The message name of a type URL (`type.googleapis.com/a.b.C` -> `a.b.C`).
pub(super) fn type_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Checks every set field of `msg` (found at `path`); the first unsupported one is an
/// error `(path, message)`.
pub(super) fn check(msg: &DynamicMessage, path: &str) -> Result<(), (String, String)> {
    let desc = msg.descriptor();
    let name = desc.full_name();
    if name == "google.protobuf.Any" {
        return check_any(msg, path);
    }
    if name.starts_with("google.protobuf.") {
        return Ok(());
    }
    for (field, value) in msg.fields() {
        let fp = join(path, field.name());
        if !supported_at(name, field.name(), path) {
            return Err((fp, "not supported by Outrigger".into()));
        }
        check_value(value, &fp)?;
    }
    Ok(())
}

fn check_value(value: &Value, path: &str) -> Result<(), (String, String)> {
    match value {
        Value::Message(m) => check(m, path),
        Value::List(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_value(v, &format!("{path}[{i}]"))),
        Value::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            let key = match k {
                MapKey::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            check_value(v, &format!("{path}[\"{key}\"]"))
        }),
        _ => Ok(()),
    }
}

/// An `Any` payload: a type Outrigger implements, checked field by field (its fields
/// sit beside `@type` in the JSON, so the path gains no segment).
fn check_any(any: &DynamicMessage, path: &str) -> Result<(), (String, String)> {
    let url = match any.get_field_by_name("type_url").as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let name = type_name(&url);
    if !EXTENSIONS.contains(&name) {
        return Err((
            path.to_string(),
            format!("extension type `{name}` is not supported by Outrigger"),
        ));
    }
    let Some(desc) = any.descriptor().parent_pool().get_message_by_name(name) else {
        return Err((path.to_string(), format!("unknown extension type `{name}`")));
    };
    let bytes = match any.get_field_by_name("value").as_deref() {
        Some(Value::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    let inner = DynamicMessage::decode(desc, bytes)
        .map_err(|e| (path.to_string(), format!("cannot decode `{name}`: {e}")))?;
    check(&inner, path)
}
