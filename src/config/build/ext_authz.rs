//! Building the ext_authz filter from the raw YAML (`config/raw_ext_authz.rs`): exactly
//! one service, its cluster resolved to an index (an HTTP/2 cluster for gRPC, as Envoy's
//! gRPC client needs; an HTTP/1.1 one for the HTTP service), deadlines, matchers, and
//! the counters as Envoy names them. Part of `config::build`.

use std::sync::Arc;
use std::time::Duration;

use super::super::raw_ext_authz::*;
use super::super::raw_match::RawStringMatch;
use super::Builder;
use crate::config::StringMatch;
use crate::config::{Cluster, UpstreamProtocol};
use crate::http::filter::ext_authz::body::BodySettings;
use crate::http::filter::ext_authz::http_service::HttpService;
use crate::http::filter::ext_authz::{Counters, ExtAuthzFilter, PerRoute, Service};
use crate::listener::ext_authz::{NetCounters, NetworkExtAuthz};

/// Envoy's default deadline of a check call.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);

impl Builder {
    /// An `ext_authz` filter of the connection manager whose stats prefix is
    /// `stat_prefix`.
    pub(super) fn ext_authz_filter(
        &mut self,
        p: &str,
        raw: &RawExtAuthz,
        stat_prefix: &str,
        clusters: &[Arc<Cluster>],
    ) -> Option<ExtAuthzFilter> {
        let service = match (&raw.grpc_service, &raw.http_service) {
            (Some(g), None) => {
                let gp = format!("{p}.grpc_service");
                let cluster = self.authz_cluster(&gp, &g.cluster, clusters, true)?;
                let timeout = self.duration(format!("{gp}.timeout"), &g.timeout, DEFAULT_TIMEOUT);
                Service::Grpc { cluster, timeout }
            }
            (None, Some(h)) => {
                let hp = format!("{p}.http_service");
                let cluster = self.authz_cluster(&hp, &h.cluster, clusters, false)?;
                let timeout = self.duration(format!("{hp}.timeout"), &h.timeout, DEFAULT_TIMEOUT);
                if !h.path_prefix.is_empty() && !h.path_prefix.starts_with('/') {
                    self.err(format!("{hp}.path_prefix"), "must start with `/`");
                }
                let mut headers_to_add = Vec::new();
                for (k, a) in h.headers_to_add.iter().enumerate() {
                    let name = a.name.to_ascii_lowercase();
                    let ok = http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                        && http::HeaderValue::from_str(&a.value).is_ok()
                        && !matches!(
                            name.as_str(),
                            "host" | "content-length" | "transfer-encoding" | "connection"
                        );
                    if !ok {
                        self.err(
                            format!("{hp}.headers_to_add[{k}]"),
                            "not a header the request to the service can carry",
                        );
                    }
                    headers_to_add.push((name, a.value.clone()));
                }
                Service::Http(Box::new(HttpService {
                    cluster,
                    timeout,
                    path_prefix: h.path_prefix.clone(),
                    headers_to_add,
                    allowed_headers: self.authz_matchers(
                        &format!("{hp}.allowed_headers"),
                        h.allowed_headers.as_deref(),
                    ),
                    allowed_upstream_headers: self
                        .authz_matchers(
                            &format!("{hp}.allowed_upstream_headers"),
                            Some(&h.allowed_upstream_headers),
                        )
                        .unwrap_or_default(),
                    allowed_upstream_headers_to_append: self
                        .authz_matchers(
                            &format!("{hp}.allowed_upstream_headers_to_append"),
                            Some(&h.allowed_upstream_headers_to_append),
                        )
                        .unwrap_or_default(),
                    allowed_client_headers: self.authz_matchers(
                        &format!("{hp}.allowed_client_headers"),
                        h.allowed_client_headers.as_deref(),
                    ),
                    allowed_client_headers_on_success: self
                        .authz_matchers(
                            &format!("{hp}.allowed_client_headers_on_success"),
                            Some(&h.allowed_client_headers_on_success),
                        )
                        .unwrap_or_default(),
                }))
            }
            _ => {
                self.err(
                    p.to_string(),
                    "set exactly one of `grpc_service` and `http_service`",
                );
                return None;
            }
        };
        let status_on_error = raw.status_on_error.unwrap_or(403);
        if !(200..=599).contains(&status_on_error) {
            self.err(
                format!("{p}.status_on_error"),
                "must be between 200 and 599",
            );
        }
        let prefix = if raw.stat_prefix.is_empty() {
            format!("http.{stat_prefix}.ext_authz.")
        } else {
            format!("http.{stat_prefix}.ext_authz.{}.", raw.stat_prefix)
        };
        let counters = Counters {
            ok: self.counter(format!("{prefix}ok")),
            denied: self.counter(format!("{prefix}denied")),
            error: self.counter(format!("{prefix}error")),
            failure_mode_allowed: self.counter(format!("{prefix}failure_mode_allowed")),
            disabled: self.counter(format!("{prefix}disabled")),
        };
        let body = raw
            .with_request_body
            .as_ref()
            .map(|b| self.body_settings(&format!("{p}.with_request_body"), b));
        Some(ExtAuthzFilter {
            service,
            body,
            failure_mode_allow: raw.failure_mode_allow,
            failure_mode_allow_header_add: raw.failure_mode_allow_header_add,
            status_on_error,
            allowed_headers: self.authz_matchers(
                &format!("{p}.allowed_headers"),
                raw.allowed_headers.as_deref(),
            ),
            counters,
            stat_prefix: raw.stat_prefix.clone(),
            charge_cluster_response_stats: raw.charge_cluster_response_stats.unwrap_or(true),
        })
    }

    fn body_settings(&mut self, p: &str, b: &RawBufferSettings) -> BodySettings {
        if b.max_request_bytes == 0 {
            self.err(format!("{p}.max_request_bytes"), "must be more than 0");
        }
        BodySettings {
            max_request_bytes: u64::from(b.max_request_bytes),
            allow_partial_message: b.allow_partial_message,
            pack_as_bytes: b.pack_as_bytes,
        }
    }

    /// A network `ext_authz` filter.
    pub(super) fn network_ext_authz(
        &mut self,
        p: &str,
        name: &str,
        raw: &RawNetworkExtAuthz,
        clusters: &[Arc<Cluster>],
    ) -> Option<NetworkExtAuthz> {
        if raw.stat_prefix.is_empty() {
            self.err(format!("{p}.stat_prefix"), "is required");
        }
        let gp = format!("{p}.grpc_service");
        let cluster = self.authz_cluster(&gp, &raw.grpc_service.cluster, clusters, true)?;
        let timeout = self.duration(
            format!("{gp}.timeout"),
            &raw.grpc_service.timeout,
            DEFAULT_TIMEOUT,
        );
        let prefix = format!("ext_authz.{}.", raw.stat_prefix);
        let counters = NetCounters {
            total: self.counter(format!("{prefix}total")),
            ok: self.counter(format!("{prefix}ok")),
            denied: self.counter(format!("{prefix}denied")),
            error: self.counter(format!("{prefix}error")),
            failure_mode_allowed: self.counter(format!("{prefix}failure_mode_allowed")),
            cx_closed: self.counter(format!("{prefix}cx_closed")),
            disabled: self.counter(format!("{prefix}disabled")),
            active: self.counter(format!("{prefix}active")),
        };
        Some(NetworkExtAuthz {
            name: name.to_string(),
            cluster,
            timeout,
            failure_mode_allow: raw.failure_mode_allow,
            counters,
        })
    }

    /// A route's check settings.
    pub(super) fn ext_authz_per_route(&mut self, p: &str, raw: &RawExtAuthzPerRoute) -> PerRoute {
        if raw.disable_request_body_buffering && raw.with_request_body.is_some() {
            self.err(
                format!("{p}.with_request_body"),
                "set at most one of `with_request_body` and `disable_request_body_buffering`",
            );
        }
        PerRoute {
            disable_request_body_buffering: raw.disable_request_body_buffering,
            with_request_body: raw
                .with_request_body
                .as_ref()
                .map(|b| self.body_settings(&format!("{p}.with_request_body"), b)),
            context_extensions: raw
                .context_extensions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    fn authz_cluster(
        &mut self,
        p: &str,
        name: &str,
        clusters: &[Arc<Cluster>],
        grpc: bool,
    ) -> Option<usize> {
        let Some(i) = clusters.iter().position(|c| c.name == name) else {
            self.err(format!("{p}.cluster"), format!("unknown cluster `{name}`"));
            return None;
        };
        let protocol = clusters.get(i).map(|c| c.protocol);
        if grpc && protocol != Some(UpstreamProtocol::Http2) {
            self.err(
                format!("{p}.cluster"),
                format!("cluster `{name}` must be an HTTP/2 cluster (`protocol: http2`) for gRPC"),
            );
            return None;
        }
        if !grpc && protocol != Some(UpstreamProtocol::Http1) {
            self.err(
                format!("{p}.cluster"),
                format!("cluster `{name}` must be an HTTP/1.1 cluster for the HTTP service"),
            );
            return None;
        }
        Some(i)
    }

    fn authz_matchers(
        &mut self,
        p: &str,
        raw: Option<&[RawStringMatch]>,
    ) -> Option<Vec<StringMatch>> {
        let raw = raw?;
        Some(
            raw.iter()
                .enumerate()
                .filter_map(|(k, m)| self.string_match(&format!("{p}[{k}]"), m))
                .collect(),
        )
    }
}
