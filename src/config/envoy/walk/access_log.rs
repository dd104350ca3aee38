//! The supported-fields table (`walk.rs`'s `SUPPORTED`) for access logs: the
//! `AccessLog` entries of connection managers and TCP proxies, their filters and
//! sinks. Split out of `walk.rs` only for size; the walker reads every table alike.
//! Control plane only.

/// Supported fields, per message full name, as in `walk::SUPPORTED`.
pub(super) const SUPPORTED: &[(&str, &[&str])] = &[
    (
        "envoy.config.accesslog.v3.AccessLog",
        &["name", "typed_config", "filter"],
    ),
    (
        "envoy.config.accesslog.v3.AccessLogFilter",
        &[
            "status_code_filter",
            "duration_filter",
            "not_health_check_filter",
            "runtime_filter",
            "and_filter",
            "or_filter",
            "response_flag_filter",
        ],
    ),
    (
        "envoy.config.accesslog.v3.StatusCodeFilter",
        &["comparison"],
    ),
    ("envoy.config.accesslog.v3.DurationFilter", &["comparison"]),
    (
        "envoy.config.accesslog.v3.ComparisonFilter",
        &["op", "value"],
    ),
    (
        "envoy.config.core.v3.RuntimeUInt32",
        &["default_value", "runtime_key"],
    ),
    (
        "envoy.config.accesslog.v3.RuntimeFilter",
        &[
            "runtime_key",
            "percent_sampled",
            "use_independent_randomness",
        ],
    ),
    ("envoy.config.accesslog.v3.AndFilter", &["filters"]),
    ("envoy.config.accesslog.v3.OrFilter", &["filters"]),
    ("envoy.config.accesslog.v3.ResponseFlagFilter", &["flags"]),
    (
        "envoy.extensions.access_loggers.file.v3.FileAccessLog",
        &["path", "log_format"],
    ),
    (
        "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        &["log_format"],
    ),
    (
        "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
        &["log_format"],
    ),
];
