//! The CORS filter (Envoy's `envoy.filters.http.cors`): the policy comes from the route
//! (Envoy's `CorsPolicy` in `typed_per_filter_config` at the route, virtual host or
//! route configuration; the Envoy translation merges those levels into the route's
//! policy, field by field, the most specific first, as Envoy's filter reads them).
//!
//! On a request head with a policy, on a route that forwards (Envoy's filter does
//! nothing on direct responses and redirects), enabled (`filter_enabled`, default all)
//! or shadowed (`shadow_enabled`), with a non-empty `Origin`: the origin is checked
//! against `allow_origin_string_match` (a matcher that matches `*` allows every origin)
//! and counted `origin_valid` / `origin_invalid`. A shadowed, not enabled, policy stops
//! there. A preflight (`OPTIONS` with a non-empty `access-control-request-method`) is
//! answered here, `200` without a body, with the policy's `access-control-*` headers
//! (an `allow_methods` / `allow_headers` of `*` echoes the request's; the exposed
//! headers too, as Envoy 1.40's answer passes its own response hook), unless the origin
//! is not allowed and `forward_not_matching_preflights` (default true) sends it on.
//! Any other request from an allowed origin gets `access-control-allow-origin` (the
//! request's origin), `-allow-credentials: true` when allowed and `-expose-headers` on
//! its response, whoever answers it. A request from another origin gets nothing added.
//!
//! The per-request values ride in the stream's `SetHeaders` (allocated only when the
//! filter adds something); a request without `Origin`, or a route without a policy,
//! costs a lookup.
//!
//! Counters, per Envoy: `http.<stat_prefix>.cors.origin_valid`, `.origin_invalid`.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use super::ctx::RequestCtx;
use super::set_headers::SetHeaders;
use super::status::{LocalReply, Status};
use crate::config::{Fraction, StringMatch};
use crate::http::flags::ResponseFlag;
use crate::http::router::{random, string_matches};

pub const ALLOW_ORIGIN: &str = "access-control-allow-origin";
pub const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";
pub const ALLOW_METHODS: &str = "access-control-allow-methods";
pub const ALLOW_HEADERS: &str = "access-control-allow-headers";
pub const EXPOSE_HEADERS: &str = "access-control-expose-headers";
pub const MAX_AGE: &str = "access-control-max-age";
pub const ALLOW_PRIVATE_NETWORK: &str = "access-control-allow-private-network";

/// The preflight answer: `200`, no body (its headers are in the stream's `SetHeaders`).
pub const PREFLIGHT: LocalReply = LocalReply {
    status: 200,
    body: std::borrow::Cow::Borrowed(""),
    flag: ResponseFlag::None,
};

/// A route's CORS policy (Envoy's `CorsPolicy`); empty strings are unset fields.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsPolicy {
    pub allow_origin: Vec<StringMatch>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub max_age: String,
    pub allow_credentials: bool,
    /// `None`: enabled for every request.
    pub filter_enabled: Option<Fraction>,
    /// `None`: never shadowed.
    pub shadow_enabled: Option<Fraction>,
    pub allow_private_network_access: bool,
    pub forward_not_matching_preflights: bool,
}

/// Indices of the filter's counters in the worker's named counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorsFilter {
    pub origin_valid: usize,
    pub origin_invalid: usize,
}

fn hit(f: Fraction) -> bool {
    f.denominator != 0 && random() % u64::from(f.denominator) < u64::from(f.numerator)
}

/// The first value of a request header, if not empty.
fn value<'a>(ctx: &RequestCtx<'a>, name: &str) -> Option<&'a str> {
    ctx.req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .filter(|v| !v.is_empty())
}

impl CorsFilter {
    /// Decides one request on a forwarding route with policy `p`. Headers for the
    /// response (or the preflight answer) go into `store`; returns whether it set any.
    pub fn on_request_head(
        &self,
        p: &CorsPolicy,
        ctx: &RequestCtx<'_>,
        store: &SetHeaders,
    ) -> (Status, bool) {
        let pass = (Status::Continue, false);
        let enabled = p.filter_enabled.is_none_or(hit);
        let shadow = p.shadow_enabled.is_some_and(hit);
        if !enabled && !shadow {
            return pass;
        }
        let Some(origin) = value(ctx, "origin") else {
            return pass;
        };
        let allowed = p
            .allow_origin
            .iter()
            .any(|m| string_matches(m, b"*") || string_matches(m, origin.as_bytes()));
        let counter = if allowed {
            self.origin_valid
        } else {
            self.origin_invalid
        };
        if let Some(c) = ctx.counters.get(counter) {
            c.inc();
        }
        if !enabled {
            return pass;
        }
        let request_method = value(ctx, "access-control-request-method");
        let preflight = ctx.req.method == "OPTIONS" && request_method.is_some();
        if !preflight {
            if !allowed {
                return pass;
            }
            store.set(ALLOW_ORIGIN, origin);
            if p.allow_credentials {
                store.set(ALLOW_CREDENTIALS, "true");
            }
            if !p.expose_headers.is_empty() {
                store.set(EXPOSE_HEADERS, &p.expose_headers);
            }
            return (Status::Continue, true);
        }
        if !allowed && p.forward_not_matching_preflights {
            return pass;
        }
        if allowed {
            store.set(ALLOW_ORIGIN, origin);
        }
        // The answer passes the filter's own response hook too, which adds the exposed
        // headers for an allowed origin (Envoy 1.40 sends them on preflights).
        if allowed && !p.expose_headers.is_empty() {
            store.set(EXPOSE_HEADERS, &p.expose_headers);
        }
        if p.allow_credentials {
            store.set(ALLOW_CREDENTIALS, "true");
        }
        let echo = |configured: &str, request: &str| -> Option<String> {
            match configured {
                "" => None,
                "*" => Some(value(ctx, request).unwrap_or("").to_string()),
                c => Some(c.to_string()),
            }
        };
        if let Some(m) = echo(&p.allow_methods, "access-control-request-method") {
            store.set(ALLOW_METHODS, &m);
        }
        if let Some(h) = echo(&p.allow_headers, "access-control-request-headers") {
            store.set(ALLOW_HEADERS, &h);
        }
        if !p.max_age.is_empty() {
            store.set(MAX_AGE, &p.max_age);
        }
        if p.allow_private_network_access
            && value(ctx, "access-control-request-private-network") == Some("true")
        {
            store.set(ALLOW_PRIVATE_NETWORK, "true");
        }
        (Status::Respond(PREFLIGHT), true)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::config::StringMatchKind;
    use crate::http::router::Request;
    use crate::observe::stats::Counter;

    static FWD: crate::config::Forwarding = crate::config::Forwarding {
        use_remote_address: true,
        xff_num_trusted_hops: 0,
        skip_xff_append: false,
        ..crate::config::Forwarding::SIDECAR
    };

    fn policy() -> CorsPolicy {
        CorsPolicy {
            allow_origin: vec![StringMatch {
                kind: StringMatchKind::Suffix(".example.com".into()),
                ignore_case: false,
            }],
            allow_methods: "GET, PUT".into(),
            allow_headers: "*".into(),
            expose_headers: "x-total".into(),
            max_age: "600".into(),
            allow_credentials: true,
            filter_enabled: None,
            shadow_enabled: None,
            allow_private_network_access: false,
            forward_not_matching_preflights: true,
        }
    }

    /// Runs the filter; returns its status, the headers it set and [valid, invalid].
    fn run(p: &CorsPolicy, method: &str, h: &[(&str, &str)]) -> (Status, Vec<String>, [u64; 2]) {
        let hs: Vec<httparse::Header<'_>> = h
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect();
        let req = Request {
            method,
            authority: b"h",
            path: "/",
            scheme: "http",
            headers: &hs,
        };
        let counters: Vec<Rc<Counter>> = (0..2).map(|_| Rc::default()).collect();
        let ctx = RequestCtx {
            req: &req,
            conn: crate::rbac::Conn {
                peer: std::net::Ipv4Addr::LOCALHOST.into(),
                local: ([127, 0, 0, 1], 80).into(),
                tls: None,
            },
            forwarding: &FWD,
            counters: &counters,
            state: &crate::http::filter::ConnState::default(),
            grpc: None,
            peer_port: 0,
            protocol: "HTTP/1.1",
            upstream: None,
            body: false,
            stream_idle_timeout: std::time::Duration::ZERO,
        };
        let f = CorsFilter {
            origin_valid: 0,
            origin_invalid: 1,
        };
        let store = SetHeaders::default();
        let (s, set) = f.on_request_head(p, &ctx, &store);
        let mut out = Vec::new();
        store.for_each(|n, v| out.push(format!("{n}: {v}")));
        assert_eq!(set, !out.is_empty());
        let n = |i: usize| counters.get(i).map_or(0, |c| c.get());
        (s, out, [n(0), n(1)])
    }

    #[test]
    fn preflights_are_answered_with_the_policy() {
        let h = [
            ("origin", "https://a.example.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-a, x-b"),
        ];
        let (s, set, counts) = run(&policy(), "OPTIONS", &h);
        assert_eq!(s, Status::Respond(PREFLIGHT));
        assert_eq!(
            set,
            [
                "access-control-allow-origin: https://a.example.com",
                "access-control-expose-headers: x-total",
                "access-control-allow-credentials: true",
                "access-control-allow-methods: GET, PUT",
                "access-control-allow-headers: x-a, x-b",
                "access-control-max-age: 600",
            ]
        );
        assert_eq!(counts, [1, 0]);
        // Another origin's preflight goes on to the upstream, with nothing added.
        let h = [
            ("origin", "https://evil.test"),
            ("access-control-request-method", "PUT"),
        ];
        let (s, set, counts) = run(&policy(), "OPTIONS", &h);
        assert_eq!((s, set.len(), counts), (Status::Continue, 0, [0, 1]));
        // ...unless the policy says not to forward it.
        let p = CorsPolicy {
            forward_not_matching_preflights: false,
            ..policy()
        };
        let (s, set, _) = run(&p, "OPTIONS", &h);
        assert_eq!(s, Status::Respond(PREFLIGHT));
        assert!(!set.iter().any(|h| h.starts_with(ALLOW_ORIGIN)));
    }

    #[test]
    fn actual_requests_get_the_origin_and_shadow_only_counts() {
        let h = [("origin", "https://b.example.com")];
        let (s, set, _) = run(&policy(), "GET", &h);
        assert_eq!(s, Status::Continue);
        assert_eq!(
            set,
            [
                "access-control-allow-origin: https://b.example.com",
                "access-control-allow-credentials: true",
                "access-control-expose-headers: x-total",
            ]
        );
        // An OPTIONS without access-control-request-method is an actual request.
        assert_eq!(run(&policy(), "OPTIONS", &h).1.len(), 3);
        assert_eq!(run(&policy(), "GET", &[]).2, [0, 0], "no origin");
        let off = Fraction {
            numerator: 0,
            denominator: 100,
        };
        let on = Fraction {
            numerator: 100,
            denominator: 100,
        };
        let shadow = CorsPolicy {
            filter_enabled: Some(off),
            shadow_enabled: Some(on),
            ..policy()
        };
        let (s, set, counts) = run(&shadow, "GET", &h);
        assert_eq!((s, set.len(), counts), (Status::Continue, 0, [1, 0]));
    }
}
