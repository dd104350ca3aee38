//! The local rate-limit filter (Envoy's `envoy.filters.http.local_ratelimit`): token
//! buckets per listener filter, per route or virtual host (`typed_per_filter_config`),
//! per descriptor, or per connection; a request without a token gets the configured
//! status (429) with the body `local_rate_limited` and the response flag `RL`.
//!
//! It runs in the request-head hook of the chain (`filter::on_request_head`). Envoy's
//! decisions, step by step: `filter_enabled` (a fraction, 0% when unset: the filter
//! then does nothing at all), the descriptors of the route's (or the filter's own)
//! `rate_limits`, a token from each matched descriptor's bucket (slowest first) and from
//! the default bucket, `filter_enforced` (0% when unset: a limited request is only
//! counted, and gets `request_headers_to_add_when_not_enforced`), and the
//! `x-ratelimit-*` headers on the response, allowed or not.
//!
//! A limit is exact for the process, as under Envoy, whose workers share one bucket:
//! each bucket is one atomic shared by all workers (`bucket::SharedBucket`), which a
//! worker touches once per lease of several tokens, never per request; the lease is
//! per core (a thread-local table here, since a worker is one thread). The design and
//! its error bounds are in docs/rate-limit.md. Its counters are the config's named
//! counters, per core like RBAC's, shown on `/stats` and `/stats/prometheus` under
//! Envoy's names (`<stat_prefix>.http_local_rate_limit.*`, `stats.rs`). What it reads of
//! a request is the chain's `RequestCtx`: the headers, the peer, and the connection's
//! buckets in its filter state (`ConnState`).

pub mod bucket;
pub mod config;
pub mod descriptors;
mod model;
pub mod stats;

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use self::bucket::{now_ns, Lease, PerConnection, SharedBucket};
use self::descriptors::{format_addr, Policy, Source};
use self::model::Bucket;
pub use self::model::{Fraction, Limiter, LocalRateLimitFilter, VhRateLimits};
use super::ctx::RequestCtx;
use super::headers::Edits;
use super::status::{LocalReply, Status};
use crate::http::flags::ResponseFlag;
use crate::http::router::EntryCluster;
use crate::http::stamp::RateLimitHeaders;

pub(crate) use self::config::RawLocalRateLimit;

/// Most descriptors one filter config may have (a request's matches are a bit set).
pub const MAX_DESCRIPTORS: usize = 64;

/// The rate limits of a route (Envoy's `RouteAction.rate_limits`) and of its virtual
/// host (`VirtualHost.rate_limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRateLimits {
    pub route: Vec<Policy>,
    pub vhost: Vec<Policy>,
}

/// No rate limits (a route without any).
pub static NO_RATE_LIMITS: RouteRateLimits = RouteRateLimits {
    route: Vec::new(),
    vhost: Vec::new(),
};

thread_local! {
    /// This core's leases, one per shared bucket it has used.
    static LEASES: RefCell<Vec<(Weak<SharedBucket>, Lease)>> = const { RefCell::new(Vec::new()) };
}

/// One token from `b` for a request at `now`; with `count_left`, also the tokens left
/// (this core's lease and the bucket's; for `x-ratelimit-remaining`).
fn take(b: &Bucket, conn: &PerConnection, now: i64, count_left: bool) -> (bool, u64) {
    match b {
        Bucket::Shared(shared) => LEASES.with(|l| {
            let mut l = l.borrow_mut();
            let i = match l
                .iter()
                .position(|(w, _)| w.as_ptr() == Arc::as_ptr(shared))
            {
                Some(i) => i,
                None => {
                    l.retain(|(w, _)| w.strong_count() > 0);
                    l.push((Arc::downgrade(shared), Lease::default()));
                    l.len() - 1
                }
            };
            let Some((_, lease)) = l.get_mut(i) else {
                return (false, 0);
            };
            let ok = lease.acquire(shared, now);
            let left = if count_left {
                lease.held(now) + shared.available(now)
            } else {
                0
            };
            (ok, left)
        }),
        Bucket::PerConnection(spec, id) => conn.acquire(*id, *spec, now),
    }
}

/// Envoy's local reply for a limited request.
pub const BODY: &str = "local_rate_limited";

impl Limiter {
    /// The policies that make this request's descriptors (Envoy's `populateDescriptors`).
    fn policies<'c>(
        &'c self,
        route: Option<&'c RouteRateLimits>,
    ) -> impl Iterator<Item = &'c Policy> + 'c {
        let (own, route_level, vhost): (&[Policy], &[Policy], &[Policy]) =
            match (&self.rate_limits, route) {
                (Some(own), _) => (own, &[], &[]),
                (None, None) => (&[], &[], &[]),
                (None, Some(r)) => {
                    let vhost: &[Policy] = match self.vh {
                        VhRateLimits::Include => &r.vhost,
                        VhRateLimits::Override if r.route.is_empty() => &r.vhost,
                        _ => &[],
                    };
                    (&[], &r.route, vhost)
                }
            };
        let stage = self.stage;
        own.iter().chain(
            route_level
                .iter()
                .chain(vhost)
                .filter(move |p| p.stage == stage && !p.disabled),
        )
    }

    /// The request-head decision. Records what it decided in `edits` (the
    /// `x-ratelimit-*` stamp, the not-enforced request headers, the limited reply's
    /// headers) and answers `Respond` for a limited, enforced request.
    pub fn on_request_head<'c>(
        &'c self,
        ctx: &RequestCtx<'_>,
        route: Option<&'c RouteRateLimits>,
        cluster: EntryCluster<'_>,
        request: &mut Edits<'c>,
        response: &mut Edits<'c>,
    ) -> Status {
        if !self.enabled.hit() {
            return Status::Continue;
        }
        let inc = |i: usize| {
            if let Some(c) = ctx.counters.get(i) {
                c.inc();
            }
        };
        inc(self.counters.enabled);
        let now = now_ns();
        let mut matched: u64 = 0;
        // Only a route (or virtual host) with rate_limits makes descriptors: without
        // one, nothing below (the trusted address, the query) is worth computing.
        if !self.descriptors.is_empty() && self.policies(route).next().is_some() {
            // Envoy's downstream remote address: after `x-forwarded-for`, not the peer.
            let remote = ctx.remote();
            let mut buf = [0u8; 48];
            let addr = format_addr(remote, &mut buf);
            // The route entry's cluster, for `destination_cluster` (Envoy's
            // `clusterName()`: a `cluster_header` route's is the header's value).
            let cluster = match cluster {
                EntryCluster::None => None,
                EntryCluster::Name(n) => Some(n.as_bytes()),
                EntryCluster::Header(h) => Some(
                    ctx.req
                        .headers
                        .iter()
                        .find(|x| x.name.eq_ignore_ascii_case(h))
                        .map_or(&b""[..], |x| x.value),
                ),
            };
            let src = Source {
                headers: ctx.req.headers,
                query: ctx.req.query(),
                remote,
                cluster,
            };
            for p in self.policies(route) {
                let Some(g) = p.generate(&src, addr) else {
                    continue;
                };
                if let Some(i) = self.descriptors.iter().position(|d| g.equals(&d.entries)) {
                    matched |= 1 << i;
                }
            }
        }
        let is_matched = |i: usize| matched & (1 << i) != 0;
        // Which bucket the headers describe, and whether the request passed.
        let mut shown: Option<(&Bucket, u64)> = None;
        let mut allowed = true;
        for (i, d) in self.descriptors.iter().enumerate() {
            if !is_matched(i) {
                continue;
            }
            let (ok, left) = take(&d.bucket, &ctx.state.local_ratelimit, now, self.x_headers);
            if !ok {
                allowed = false;
                shown = Some((&d.bucket, left));
                break;
            }
            shown.get_or_insert((&d.bucket, left));
        }
        if allowed && (matched == 0 || self.always_consume_default) {
            if let Some(b) = &self.default {
                let (ok, left) = take(b, &ctx.state.local_ratelimit, now, self.x_headers);
                if !ok {
                    allowed = false;
                    shown = Some((b, left));
                } else if matched == 0 {
                    shown = Some((b, left));
                }
            }
        }
        if self.x_headers {
            if let Some((b, left)) = shown {
                let spec = b.spec();
                response.stamp.ratelimit = Some(RateLimitHeaders {
                    limit: spec.max_tokens,
                    remaining: left,
                    reset: spec.reset_seconds(left),
                });
            }
        }
        if allowed {
            inc(self.counters.ok);
            return Status::Continue;
        }
        inc(self.counters.rate_limited);
        if !self.enforced.hit() {
            *request = request.then(&self.request_headers);
            return Status::Continue;
        }
        inc(self.counters.enforced);
        *response = response.then(&self.response_headers);
        Status::Respond(LocalReply {
            status: self.status,
            body: std::borrow::Cow::Borrowed(BODY),
            flag: ResponseFlag::RateLimited,
        })
    }
}

#[cfg(test)]
mod tests;
