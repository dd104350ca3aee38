//! Building a connection manager's `proxy_headers` (`config::OwnHeaders`): the native
//! defaults, checks of the values, and the two header plans compiled from them (the
//! `server` edit and the `x-envoy-*` sanitizing). Part of `config::build`.

use super::super::model::*;
use super::super::raw::RawProxyHeaders;
use super::Builder;
use crate::http::filter::headers::{AppendAction, HeaderAdd, HeaderOps, HeaderPlan};

impl OwnHeaders {
    /// The request plans for the sanitizing removals `remove`: with the removal of
    /// `x-forwarded-client-cert` (every request whose XFCC header is not forwarded),
    /// and without it.
    pub fn request_plans(remove: Vec<String>) -> (HeaderPlan, HeaderPlan) {
        let keep = crate::http::filter::headers::HeaderOps {
            add: Vec::new(),
            remove,
        };
        let mut drop = keep.clone();
        drop.remove.push("x-forwarded-client-cert".into());
        (HeaderPlan::compile([&drop]), HeaderPlan::compile([&keep]))
    }

    /// The plan that removes the retry headers the router consumes.
    pub fn consumed_plan() -> HeaderPlan {
        let ops = crate::http::filter::headers::HeaderOps {
            add: Vec::new(),
            remove: crate::config::retry_model::CONSUMED
                .iter()
                .map(|n| n.to_string())
                .collect(),
        };
        HeaderPlan::compile([&ops])
    }

    /// The native format's defaults: nothing added, HTTP/1.0 served.
    pub fn native() -> OwnHeaders {
        OwnHeaders {
            accept_http_10: true,
            default_host_for_http_10: None,
            h1_trailers: true,
            date: false,
            server_name: "outrigger".into(),
            server_header_transformation: ServerHeader::PassThrough,
            envoy_headers: false,
            sanitize_envoy_headers: false,
            generate_request_id: false,
            preserve_external_request_id: false,
            phases_header: false,
            response_plan: HeaderPlan::default(),
            request_plan: OwnHeaders::request_plans(Vec::new()).0,
            request_plan_keeping_xfcc: HeaderPlan::default(),
            consumed_plan: OwnHeaders::consumed_plan(),
            internal: None,
        }
    }
}

/// Request headers Envoy removes from every request it does not consider internal
/// (`ConnectionManagerUtility::cleanInternalHeaders`, plus `x-envoy-internal`, which it
/// sets itself for internal ones). With no `internal_address_config` Envoy 1.40 treats
/// no client address as internal, so this is every request; an internal one gets
/// `InternalAddresses`'s plans instead. (`x-forwarded-client-cert` follows
/// `forward_client_cert_details` instead: `http/xfcc.rs`.)
const SANITIZED: &[&str] = &[
    "x-envoy-internal",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
    // Not in Envoy's `cleanInternalHeaders` source we read, but Envoy 1.40 honours it
    // only from internal clients (tests/upstream_duration_parity.rs).
    "x-envoy-upstream-stream-duration-ms",
];

/// Removed as well from edge requests (`use_remote_address`).
const SANITIZED_AT_EDGE: &[&str] = &[
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
];

impl Builder {
    /// `forwarding.internal_addresses`: the ranges, and the plans of an internal
    /// request (`x-envoy-internal: true`; nothing else removed but, as the XFCC policy
    /// says, `x-forwarded-client-cert`).
    pub(super) fn internal_addresses(
        &mut self,
        p: &str,
        raw: &[String],
    ) -> Option<Box<InternalAddresses>> {
        if raw.is_empty() {
            return None;
        }
        let mut cidrs = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let parsed = r
                .split_once('/')
                .and_then(|(a, l)| CidrRange::new(a.parse().ok()?, l.parse().ok()?));
            match parsed {
                Some(c) => cidrs.push(c),
                None => self.err(
                    format!("{p}.forwarding.internal_addresses[{i}]"),
                    format!("`{r}` is not an address range like 10.0.0.0/8"),
                ),
            }
        }
        let keep = HeaderOps {
            add: vec![HeaderAdd {
                name: "x-envoy-internal".into(),
                value: "true".into(),
                action: AppendAction::OverwriteIfExistsOrAdd,
            }],
            remove: Vec::new(),
        };
        let mut drop = keep.clone();
        drop.remove.push("x-forwarded-client-cert".into());
        Some(Box::new(InternalAddresses {
            cidrs,
            plan: HeaderPlan::compile([&drop]),
            plan_keeping_xfcc: HeaderPlan::compile([&keep]),
        }))
    }

    pub(super) fn proxy_headers(
        &mut self,
        p: &str,
        raw: &Option<RawProxyHeaders>,
        forwarding: &Forwarding,
    ) -> OwnHeaders {
        let d = OwnHeaders::native();
        let Some(r) = raw else { return d };
        let p = format!("{p}.proxy_headers");
        let server_header_transformation = match r.server_header_transformation.as_deref() {
            None => d.server_header_transformation,
            Some("overwrite") => ServerHeader::Overwrite,
            Some("append_if_absent") => ServerHeader::AppendIfAbsent,
            Some("pass_through") => ServerHeader::PassThrough,
            Some(other) => {
                self.err(
                    format!("{p}.server_header_transformation"),
                    format!(
                        "unknown value `{other}` (use overwrite, append_if_absent or pass_through)"
                    ),
                );
                d.server_header_transformation
            }
        };
        let server_name = r.server_name.clone().unwrap_or(d.server_name);
        if server_name.is_empty()
            || http::HeaderValue::from_str(&server_name).is_err()
            || server_name.trim() != server_name
        {
            self.err(
                format!("{p}.server_name"),
                "must be a non-empty header value",
            );
        }
        if let Some(h) = &r.default_host_for_http_10 {
            if !crate::http::authority::valid_host(h.as_bytes()) {
                self.err(format!("{p}.default_host_for_http_10"), "not a valid host");
            }
        }
        let sanitize_envoy_headers = r.sanitize_envoy_headers.unwrap_or(d.sanitize_envoy_headers);
        let server_ops = HeaderOps {
            add: match server_header_transformation {
                ServerHeader::PassThrough => Vec::new(),
                t => vec![HeaderAdd {
                    name: "server".into(),
                    value: server_name.clone(),
                    action: if t == ServerHeader::Overwrite {
                        AppendAction::OverwriteIfExistsOrAdd
                    } else {
                        AppendAction::AddIfAbsent
                    },
                }],
            },
            remove: Vec::new(),
        };
        let sanitized = if sanitize_envoy_headers {
            let edge = forwarding.use_remote_address.then_some(SANITIZED_AT_EDGE);
            SANITIZED
                .iter()
                .chain(edge.into_iter().flatten())
                .map(|n| n.to_string())
                .collect()
        } else {
            Vec::new()
        };
        let (request_plan, request_plan_keeping_xfcc) = OwnHeaders::request_plans(sanitized);
        OwnHeaders {
            accept_http_10: r.accept_http_10.unwrap_or(d.accept_http_10),
            default_host_for_http_10: r.default_host_for_http_10.clone(),
            h1_trailers: r.http1_trailers.unwrap_or(d.h1_trailers),
            date: r.date.unwrap_or(d.date),
            server_name,
            server_header_transformation,
            envoy_headers: r.envoy_headers.unwrap_or(d.envoy_headers),
            sanitize_envoy_headers,
            generate_request_id: r.generate_request_id.unwrap_or(d.generate_request_id),
            preserve_external_request_id: r
                .preserve_external_request_id
                .unwrap_or(d.preserve_external_request_id),
            phases_header: r.phases_header.unwrap_or(d.phases_header),
            response_plan: HeaderPlan::compile([&server_ops]),
            request_plan,
            request_plan_keeping_xfcc,
            consumed_plan: OwnHeaders::consumed_plan(),
            internal: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_names_are_lower_case_and_include_the_expected_timeout() {
        for n in SANITIZED.iter().chain(SANITIZED_AT_EDGE) {
            assert_eq!(*n, n.to_ascii_lowercase());
        }
        assert!(SANITIZED.contains(&crate::http::stamp::EXPECTED_TIMEOUT));
    }
}
