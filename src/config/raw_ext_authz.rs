//! The native YAML of the ext_authz filter (`http_filters[].ext_authz`) and of its
//! per-route settings (`per_filter_config.<name>.ext_authz`), as serde types; checked
//! in `config/build/ext_authz.rs`. Field names follow Envoy's `ExtAuthz`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::raw_match::RawStringMatch;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExtAuthz {
    /// The gRPC service (`envoy.service.auth.v3.Authorization/Check`).
    #[serde(default)]
    pub grpc_service: Option<RawGrpcService>,
    /// The plain-HTTP service.
    #[serde(default)]
    pub http_service: Option<RawHttpService>,
    #[serde(default)]
    pub failure_mode_allow: bool,
    #[serde(default)]
    pub failure_mode_allow_header_add: bool,
    /// The status of the reply after an error (default 403).
    #[serde(default)]
    pub status_on_error: Option<u16>,
    /// Counters under `http.<stat_prefix>.ext_authz.<stat_prefix>.`.
    #[serde(default)]
    pub stat_prefix: String,
    /// Request headers sent to the service (default: all for gRPC).
    #[serde(default)]
    pub allowed_headers: Option<Vec<RawStringMatch>>,
    /// The request body in the check (Envoy's `with_request_body`).
    #[serde(default)]
    pub with_request_body: Option<RawBufferSettings>,
    /// A denial counts in the route's cluster's `upstream_rq_<class>` (default true).
    #[serde(default)]
    pub charge_cluster_response_stats: Option<bool>,
}

/// Envoy's `BufferSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBufferSettings {
    /// Most body bytes sent in the check (required, more than 0).
    #[serde(default)]
    pub max_request_bytes: u32,
    /// A longer body: check with its first `max_request_bytes` (else `413`).
    #[serde(default)]
    pub allow_partial_message: bool,
    /// The body goes in `raw_body` (bytes), not `body`.
    #[serde(default)]
    pub pack_as_bytes: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrpcService {
    /// An HTTP/2 cluster.
    pub cluster: String,
    /// The call's deadline (default 200ms).
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpService {
    pub cluster: String,
    /// The call's deadline (default 200ms).
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub path_prefix: String,
    /// Headers added to the request to the service.
    #[serde(default)]
    pub headers_to_add: Vec<RawHeader>,
    #[serde(default)]
    pub allowed_headers: Option<Vec<RawStringMatch>>,
    #[serde(default)]
    pub allowed_upstream_headers: Vec<RawStringMatch>,
    #[serde(default)]
    pub allowed_upstream_headers_to_append: Vec<RawStringMatch>,
    #[serde(default)]
    pub allowed_client_headers: Option<Vec<RawStringMatch>>,
    #[serde(default)]
    pub allowed_client_headers_on_success: Vec<RawStringMatch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeader {
    pub name: String,
    pub value: String,
}

/// A route's settings (Envoy's `ExtAuthzPerRoute.check_settings`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExtAuthzPerRoute {
    #[serde(default)]
    pub context_extensions: BTreeMap<String, String>,
    /// The filter's `with_request_body` does not apply on this route.
    #[serde(default)]
    pub disable_request_body_buffering: bool,
    /// `with_request_body` on this route (its `pack_as_bytes` is the filter's).
    #[serde(default)]
    pub with_request_body: Option<RawBufferSettings>,
}

/// The network filter (`network_filters[].ext_authz`, Envoy's network `ExtAuthz`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetworkExtAuthz {
    /// Counters under `ext_authz.<stat_prefix>.` (required, as in Envoy).
    #[serde(default)]
    pub stat_prefix: String,
    pub grpc_service: RawGrpcService,
    #[serde(default)]
    pub failure_mode_allow: bool,
}
