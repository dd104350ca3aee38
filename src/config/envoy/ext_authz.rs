//! Envoy's ext_authz HTTP filter (`ExtAuthz`) and its per-route config
//! (`ExtAuthzPerRoute`) -> the native `ext_authz` filter and route settings. The fields
//! the walker lets through (`walk/filters.rs`) are translated here; the rest are refused
//! there by path. Control plane only.

use envoy_types::pb::envoy::config::core::v3::{grpc_service, http_uri};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ext_authz::Services, ext_authz_per_route::Override, BufferSettings, ExtAuthz, ExtAuthzPerRoute,
};
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as NetExtAuthz;
use envoy_types::pb::envoy::r#type::matcher::v3::ListStringMatcher;

use super::super::raw_ext_authz::*;
use super::super::raw_match::RawStringMatch;
use super::super::raw_rbac::RawNetworkFilter;
use super::convert::{duration, native_duration, R};
use super::{err, rbac};

pub(super) const HTTP: &str = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
pub(super) const PER_ROUTE: &str = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";
pub(super) const NETWORK: &str = "envoy.extensions.filters.network.ext_authz.v3.ExtAuthz";

/// The network filter, as a chain's `network_filters` entry.
pub(super) fn network(e: &NetExtAuthz, name: &str, p: &str) -> R<RawNetworkFilter> {
    if e.transport_api_version != 2 && e.transport_api_version != 0 {
        return Err(err(format!("{p}.transport_api_version"), "must be V3"));
    }
    if e.stat_prefix.is_empty() {
        return Err(err(format!("{p}.stat_prefix"), "is required"));
    }
    let gp = format!("{p}.grpc_service");
    let Some(g) = &e.grpc_service else {
        return Err(err(gp, "is required"));
    };
    let Some(grpc_service::TargetSpecifier::EnvoyGrpc(eg)) = &g.target_specifier else {
        return Err(err(
            format!("{gp}.envoy_grpc"),
            "is required (google_grpc is not supported)",
        ));
    };
    Ok(RawNetworkFilter {
        name: name.to_string(),
        rbac: None,
        ext_authz: Some(RawNetworkExtAuthz {
            stat_prefix: e.stat_prefix.clone(),
            grpc_service: RawGrpcService {
                cluster: eg.cluster_name.clone(),
                timeout: duration(&g.timeout, &format!("{gp}.timeout"))?.map(native_duration),
            },
            failure_mode_allow: e.failure_mode_allow,
        }),
    })
}

/// The filter's config.
#[allow(deprecated)] // `authorization_request.allowed_headers`: still Envoy 1.40's field
pub(super) fn http(e: &ExtAuthz, p: &str) -> R<RawExtAuthz> {
    // `transport_api_version`: only V3 exists (AUTO and V2 are gone from Envoy 1.40).
    if e.transport_api_version != 2 && e.transport_api_version != 0 {
        return Err(err(format!("{p}.transport_api_version"), "must be V3"));
    }
    let mut out = RawExtAuthz {
        failure_mode_allow: e.failure_mode_allow,
        failure_mode_allow_header_add: e.failure_mode_allow_header_add,
        status_on_error: match &e.status_on_error {
            Some(s) if s.code != 0 => Some(
                u16::try_from(s.code)
                    .map_err(|_| err(format!("{p}.status_on_error.code"), "not an HTTP status"))?,
            ),
            _ => None,
        },
        stat_prefix: e.stat_prefix.clone(),
        allowed_headers: matchers(&e.allowed_headers, &format!("{p}.allowed_headers"))?,
        with_request_body: e.with_request_body.as_ref().map(buffer_settings),
        charge_cluster_response_stats: e.charge_cluster_response_stats.as_ref().map(|b| b.value),
        ..RawExtAuthz::default()
    };
    match &e.services {
        Some(Services::GrpcService(g)) => {
            let gp = format!("{p}.grpc_service");
            let Some(grpc_service::TargetSpecifier::EnvoyGrpc(eg)) = &g.target_specifier else {
                return Err(err(
                    format!("{gp}.envoy_grpc"),
                    "is required (google_grpc is not supported)",
                ));
            };
            if !eg.authority.is_empty() {
                return Err(err(
                    format!("{gp}.envoy_grpc.authority"),
                    "is not supported",
                ));
            }
            out.grpc_service = Some(RawGrpcService {
                cluster: eg.cluster_name.clone(),
                timeout: duration(&g.timeout, &format!("{gp}.timeout"))?.map(native_duration),
            });
        }
        Some(Services::HttpService(h)) => {
            let hp = format!("{p}.http_service");
            let Some(uri) = &h.server_uri else {
                return Err(err(format!("{hp}.server_uri"), "is required"));
            };
            let up = format!("{hp}.server_uri");
            let Some(http_uri::HttpUpstreamType::Cluster(cluster)) = &uri.http_upstream_type else {
                return Err(err(format!("{up}.cluster"), "is required"));
            };
            // Envoy requires the timeout of an HttpUri.
            let Some(timeout) = duration(&uri.timeout, &format!("{up}.timeout"))? else {
                return Err(err(format!("{up}.timeout"), "is required"));
            };
            let req = h.authorization_request.clone().unwrap_or_default();
            let resp = h.authorization_response.clone().unwrap_or_default();
            let rp = format!("{hp}.authorization_request");
            let sp = format!("{hp}.authorization_response");
            let mut headers_to_add = Vec::new();
            for (k, hv) in req.headers_to_add.iter().enumerate() {
                if !hv.raw_value.is_empty() {
                    return Err(err(
                        format!("{rp}.headers_to_add[{k}].raw_value"),
                        "is not supported (use value)",
                    ));
                }
                headers_to_add.push(RawHeader {
                    name: hv.key.clone(),
                    value: hv.value.clone(),
                });
            }
            let list = |m: &Option<ListStringMatcher>, f: &str| -> R<Vec<RawStringMatch>> {
                Ok(matchers(m, &format!("{sp}.{f}"))?.unwrap_or_default())
            };
            out.http_service = Some(RawHttpService {
                cluster: cluster.clone(),
                timeout: Some(native_duration(timeout)),
                path_prefix: h.path_prefix.clone(),
                headers_to_add,
                allowed_headers: matchers(&req.allowed_headers, &format!("{rp}.allowed_headers"))?,
                allowed_upstream_headers: list(
                    &resp.allowed_upstream_headers,
                    "allowed_upstream_headers",
                )?,
                allowed_upstream_headers_to_append: list(
                    &resp.allowed_upstream_headers_to_append,
                    "allowed_upstream_headers_to_append",
                )?,
                allowed_client_headers: matchers(
                    &resp.allowed_client_headers,
                    &format!("{sp}.allowed_client_headers"),
                )?,
                allowed_client_headers_on_success: list(
                    &resp.allowed_client_headers_on_success,
                    "allowed_client_headers_on_success",
                )?,
            });
        }
        None => {
            return Err(err(
                p,
                "set one of `grpc_service` and `http_service` (Envoy requires a service)",
            ))
        }
    }
    Ok(out)
}

/// A route's `ExtAuthzPerRoute`: `Ok(None)` disables the filter there.
pub(super) fn per_route(e: &ExtAuthzPerRoute, p: &str) -> R<Option<RawExtAuthzPerRoute>> {
    match &e.r#override {
        Some(Override::Disabled(true)) => Ok(None),
        Some(Override::CheckSettings(c)) => {
            // Envoy's validation: at most one of the two.
            if c.disable_request_body_buffering && c.with_request_body.is_some() {
                return Err(err(
                    format!("{p}.check_settings.with_request_body"),
                    "set at most one of `with_request_body` and `disable_request_body_buffering`",
                ));
            }
            Ok(Some(RawExtAuthzPerRoute {
                context_extensions: c
                    .context_extensions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                disable_request_body_buffering: c.disable_request_body_buffering,
                with_request_body: c.with_request_body.as_ref().map(buffer_settings),
            }))
        }
        // Envoy: `disabled` must be true, and the oneof is required.
        _ => Err(err(p, "set `disabled: true` or `check_settings`")),
    }
}

fn buffer_settings(b: &BufferSettings) -> RawBufferSettings {
    RawBufferSettings {
        max_request_bytes: b.max_request_bytes,
        allow_partial_message: b.allow_partial_message,
        pack_as_bytes: b.pack_as_bytes,
    }
}

fn matchers(m: &Option<ListStringMatcher>, p: &str) -> R<Option<Vec<RawStringMatch>>> {
    let Some(m) = m else { return Ok(None) };
    let mut out = Vec::new();
    for (k, s) in m.patterns.iter().enumerate() {
        out.push(rbac::string(s, &format!("{p}.patterns[{k}]"))?);
    }
    Ok(Some(out))
}
