//! Raw serde types of the RBAC filters (HTTP `rbac` and the network `rbac` filter) in
//! the native YAML format. They mirror Envoy's `envoy.config.rbac.v3.RBAC` field for
//! field (proto JSON names), so an Envoy policy reads the same in both formats.
//! `config::build::rbac` checks them into the compiled engine (`crate::rbac`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::raw_match::{RawHeaderMatch, RawStringMatch};

/// The HTTP filter's config (Envoy's `envoy.extensions.filters.http.rbac.v3.RBAC`), and
/// a route's replacement for it (`RBACPerRoute.rbac`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRbacFilter {
    /// Enforced: a denied request gets `403`. Absent: every request passes.
    #[serde(default)]
    pub rules: Option<RawRbac>,
    /// Evaluated and counted (`shadow_allowed`, `shadow_denied`), never enforced.
    #[serde(default)]
    pub shadow_rules: Option<RawRbac>,
    /// Inserted after `rbac.` in the stat names of the enforced rules.
    #[serde(default)]
    pub rules_stat_prefix: String,
    /// Inserted after `rbac.<rules_stat_prefix>` in the shadow rules' stat names.
    #[serde(default)]
    pub shadow_rules_stat_prefix: String,
}

/// The network filter's config (Envoy's `envoy.extensions.filters.network.rbac.v3.RBAC`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetworkRbac {
    #[serde(default)]
    pub rules: Option<RawRbac>,
    #[serde(default)]
    pub shadow_rules: Option<RawRbac>,
    /// Required: the stats are `<stat_prefix>.rbac.allowed`, ...
    pub stat_prefix: String,
    #[serde(default)]
    pub shadow_rules_stat_prefix: String,
    /// `ONE_TIME_ON_FIRST_BYTE` (the default) or `CONTINUOUS`.
    #[serde(default)]
    pub enforcement_type: Option<String>,
}

/// One entry of a chain's (or a single-chain listener's) `network_filters`, run before
/// its terminal filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetworkFilter {
    pub name: String,
    #[serde(default)]
    pub rbac: Option<RawNetworkRbac>,
    #[serde(default)]
    pub ext_authz: Option<super::raw_ext_authz::RawNetworkExtAuthz>,
}

/// Envoy's `RBAC`: an action and named policies.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRbac {
    /// `ALLOW` (the default), `DENY` or `LOG`.
    #[serde(default)]
    pub action: Option<String>,
    /// Evaluated in name order (Envoy keeps them in a sorted map).
    #[serde(default)]
    pub policies: BTreeMap<String, RawPolicy>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    pub permissions: Vec<RawPermission>,
    #[serde(default)]
    pub principals: Vec<RawPrincipal>,
}

/// Envoy's `Permission`: exactly one rule.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPermission {
    #[serde(default)]
    pub and_rules: Option<RawPermissionSet>,
    #[serde(default)]
    pub or_rules: Option<RawPermissionSet>,
    #[serde(default)]
    pub not_rule: Option<Box<RawPermission>>,
    #[serde(default)]
    pub any: Option<bool>,
    #[serde(default)]
    pub header: Option<RawHeaderMatch>,
    #[serde(default)]
    pub url_path: Option<RawPathMatcher>,
    #[serde(default)]
    pub destination_ip: Option<RawCidr>,
    #[serde(default)]
    pub destination_port: Option<u32>,
    #[serde(default)]
    pub destination_port_range: Option<RawPortRange>,
    #[serde(default)]
    pub requested_server_name: Option<RawStringMatch>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPermissionSet {
    #[serde(default)]
    pub rules: Vec<RawPermission>,
}

/// Envoy's `Principal`: exactly one identifier.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrincipal {
    #[serde(default)]
    pub and_ids: Option<RawPrincipalSet>,
    #[serde(default)]
    pub or_ids: Option<RawPrincipalSet>,
    #[serde(default)]
    pub not_id: Option<Box<RawPrincipal>>,
    #[serde(default)]
    pub any: Option<bool>,
    #[serde(default)]
    pub authenticated: Option<RawAuthenticated>,
    #[serde(default)]
    pub source_ip: Option<RawCidr>,
    #[serde(default)]
    pub direct_remote_ip: Option<RawCidr>,
    #[serde(default)]
    pub remote_ip: Option<RawCidr>,
    #[serde(default)]
    pub header: Option<RawHeaderMatch>,
    #[serde(default)]
    pub url_path: Option<RawPathMatcher>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrincipalSet {
    #[serde(default)]
    pub ids: Vec<RawPrincipal>,
}

/// `principal_name` absent: any TLS peer.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthenticated {
    #[serde(default)]
    pub principal_name: Option<RawStringMatch>,
}

/// Envoy's `PathMatcher`: a `StringMatcher` over the path without its query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPathMatcher {
    pub path: RawStringMatch,
}

/// Envoy's `CidrRange`; `prefix_len` absent is 0.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCidr {
    pub address_prefix: String,
    #[serde(default)]
    pub prefix_len: Option<u32>,
}

/// Envoy's `Int32Range`, `[start, end)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPortRange {
    #[serde(default)]
    pub start: i64,
    #[serde(default)]
    pub end: i64,
}
