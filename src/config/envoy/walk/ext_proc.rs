//! The supported-fields table (`walk.rs`'s `SUPPORTED`) for the ext_proc HTTP filter
//! (`config/envoy/ext_proc.rs`). Its own file for size; the walker reads all tables
//! alike. Control plane only.

/// Supported fields, per message full name, as in `walk::SUPPORTED`. The grpc_service
/// is `envoy_grpc.cluster_name` alone (the table's `GrpcService` entries, shared with
/// xDS): its `timeout`, `initial_metadata` and `authority` are refused.
pub(super) const SUPPORTED: &[(&str, &[&str])] = &[
    (
        "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
        &[
            "grpc_service",
            "failure_mode_allow",
            "processing_mode",
            "message_timeout",
            "stat_prefix",
            "allow_mode_override",
        ],
    ),
    (
        "envoy.extensions.filters.http.ext_proc.v3.ProcessingMode",
        &[
            "request_header_mode",
            "response_header_mode",
            "request_body_mode",
            "response_body_mode",
            "request_trailer_mode",
            "response_trailer_mode",
        ],
    ),
    (
        "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
        &["disabled", "overrides"],
    ),
    (
        "envoy.extensions.filters.http.ext_proc.v3.ExtProcOverrides",
        &["processing_mode"],
    ),
];
