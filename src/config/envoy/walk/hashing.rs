//! The supported-fields table (`walk.rs`'s `SUPPORTED`) for consistent-hash load
//! balancing: the clusters' ring hash and Maglev settings and the routes' hash
//! policies. Split out of `walk.rs` only for size; the walker reads every table alike.
//! Control plane only.

/// Supported fields, per message full name, as in `walk::SUPPORTED`. `Cluster` and
/// `RouteAction` list their `ring_hash_lb_config`, `maglev_lb_config` and
/// `hash_policy` fields in `walk.rs`.
pub(super) const SUPPORTED: &[(&str, &[&str])] = &[
    (
        // `hash_function: MURMUR_HASH_2` is refused by the translation.
        "envoy.config.cluster.v3.Cluster.RingHashLbConfig",
        &["minimum_ring_size", "maximum_ring_size", "hash_function"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.MaglevLbConfig",
        &["table_size"],
    ),
    // The typed `load_balancing_policy` (`config/envoy/lb.rs`): its first policy.
    ("envoy.config.cluster.v3.LoadBalancingPolicy", &["policies"]),
    (
        "envoy.config.cluster.v3.LoadBalancingPolicy.Policy",
        &["typed_extension_config"],
    ),
    (
        "envoy.config.core.v3.TypedExtensionConfig",
        &["name", "typed_config"],
    ),
    (
        "envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash",
        &["minimum_ring_size", "maximum_ring_size", "hash_function"],
    ),
    (
        "envoy.extensions.load_balancing_policies.maglev.v3.Maglev",
        &["table_size"],
    ),
    (
        // `filter_state` is refused (Outrigger has no filter state).
        "envoy.config.route.v3.RouteAction.HashPolicy",
        &[
            "header",
            "cookie",
            "connection_properties",
            "query_parameter",
            "terminal",
        ],
    ),
    (
        // `regex_rewrite` is refused.
        "envoy.config.route.v3.RouteAction.HashPolicy.Header",
        &["header_name"],
    ),
    (
        // `attributes` are refused.
        "envoy.config.route.v3.RouteAction.HashPolicy.Cookie",
        &["name", "ttl", "path"],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties",
        &["source_ip"],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter",
        &["name"],
    ),
];
