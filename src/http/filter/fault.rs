//! The fault-injection filter (Envoy's `envoy.filters.http.fault`, `HTTPFault`): on the
//! request head it may delay the request (a timer on the worker: the stream waits, the
//! worker does not) and then, or instead, abort it with a local reply `fault filter
//! abort` (flag `FI`; a delayed request is flagged `DI`). A gRPC request gets the gRPC
//! form of the reply: a configured `grpc_status` becomes its `grpc-status`, an HTTP
//! status is mapped as every local reply's is (`http::grpc_local`).
//!
//! Envoy's decisions, in its order: the fault applies only to requests whose route goes
//! to `upstream_cluster` (when set), whose `x-envoy-downstream-service-node` is one of
//! `downstream_nodes` (when set) and whose headers match every `headers` matcher. The
//! response rate limit, the delay, then the abort, each fire with their `percentage` (a
//! random draw per request; for `header_limit` / `header_delay` / `header_abort` the
//! request's `x-envoy-fault-*-percentage` header may lower the numerator, never raise
//! it). A fault is only injected while fewer than `max_active_faults` are active in the
//! whole process (else `faults_overflow` counts it and the request goes on untouched);
//! a request holds one active fault from its first injected fault: a delay alone
//! releases it when the delay ends, an abort when it answers, and with a response rate
//! limit configured the stream keeps it until it ends (as Envoy's filter does).
//!
//! The response rate limit (`fixed_limit.limit_kbps`, or `header_limit: {}` reading
//! the KiB/s from `x-envoy-fault-throughput-response`, 0 or unparsable: none) paces the
//! response body on the chain's response-body hook, Envoy's `StreamRateLimiter`
//! bucket (`filter::throttle`); the stream's state rides in its `SetHeaders` store.
//!
//! Configured natively as a listener's `http_filters` entry `fault: {...}` with
//! Envoy's field names, and per route (`per_filter_config`) with `disabled: true` or
//! `fault: {...}` replacing the filter's settings for that route (Envoy's most
//! specific `HTTPFault`). Not here: runtime overrides, the per-downstream-cluster stats
//! and `response_body`.
//!
//! Counters, per Envoy: `http.<stat_prefix>.fault.delays_injected`, `.aborts_injected`,
//! `.faults_overflow`, `.response_rl_injected` and the gauge `.active_faults` (summed
//! over the workers like the counters).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ctx::RequestCtx;
use super::set_headers::SetHeaders;
use super::status::{LocalReply, Status};
use super::throttle::{ActiveFault, Bucket};
use crate::config::{Fraction, HeaderMatch};
use crate::http::flags::ResponseFlag;
use crate::http::router::{header_matches, random, EntryCluster};

/// Envoy's reply for an injected abort (the status is the fault's).
pub const ABORT_BODY: &str = "fault filter abort";
pub const DELAY_HEADER: &str = "x-envoy-fault-delay-request";
pub const DELAY_PERCENTAGE_HEADER: &str = "x-envoy-fault-delay-request-percentage";
pub const ABORT_HEADER: &str = "x-envoy-fault-abort-request";
pub const ABORT_GRPC_HEADER: &str = "x-envoy-fault-abort-grpc-request";
pub const ABORT_PERCENTAGE_HEADER: &str = "x-envoy-fault-abort-request-percentage";
pub const NODE_HEADER: &str = "x-envoy-downstream-service-node";
pub const THROUGHPUT_HEADER: &str = "x-envoy-fault-throughput-response";
pub const THROUGHPUT_PERCENTAGE_HEADER: &str = "x-envoy-fault-throughput-response-percentage";

/// Where a delay's length comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayKind {
    Fixed(Duration),
    /// `x-envoy-fault-delay-request`, in milliseconds.
    Header,
}

/// Where an abort's status comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    Http(u16),
    Grpc(u32),
    /// `x-envoy-fault-abort-request` (an HTTP status, 200..=599), else
    /// `x-envoy-fault-abort-grpc-request`.
    Header,
}

/// Where a response rate limit's KiB per second come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Fixed(u64),
    /// `x-envoy-fault-throughput-response`.
    Header,
}

/// Envoy's `FaultRateLimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub kind: LimitKind,
    pub percentage: Fraction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    pub kind: DelayKind,
    pub percentage: Fraction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    pub kind: AbortKind,
    pub percentage: Fraction,
}

/// One level's fault settings: the filter's own, or a route's replacement.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSettings {
    pub delay: Option<Delay>,
    pub abort: Option<Abort>,
    pub response_rate_limit: Option<RateLimit>,
    pub upstream_cluster: Option<String>,
    pub headers: Vec<HeaderMatch>,
    pub downstream_nodes: Vec<String>,
    pub max_active_faults: Option<u64>,
}

/// Indices of the filter's counters in the worker's named counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultCounters {
    pub delays_injected: usize,
    pub aborts_injected: usize,
    pub faults_overflow: usize,
    pub active_faults: usize,
    pub response_rl_injected: usize,
}

/// The filter as configured on a listener.
#[derive(Debug, Clone)]
pub struct FaultFilter {
    pub settings: FaultSettings,
    pub counters: FaultCounters,
    /// Faults active in the whole process (Envoy's `active_faults` gauge, which bounds
    /// `max_active_faults`). Touched only when a fault is about to be injected, never
    /// on a request the filter lets through untouched.
    pub active: Arc<AtomicU64>,
}

impl PartialEq for FaultFilter {
    fn eq(&self, o: &FaultFilter) -> bool {
        self.settings == o.settings && self.counters == o.counters
    }
}

/// What the filter did to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// The request was delayed (flag `DI`).
    pub delayed: bool,
    /// A response rate limit was injected: the stream's response body goes through
    /// the response-body hook ([`on_response_data`]).
    pub throttled: bool,
}

impl FaultFilter {
    fn count(&self, ctx: &RequestCtx<'_>, i: usize) {
        if let Some(c) = ctx.counters.get(i) {
            c.inc();
        }
    }

    /// Envoy's `tryIncActiveFaults`: a fuzzy limit (load, then add), as Envoy's is.
    fn try_activate(&self, s: &FaultSettings, ctx: &RequestCtx<'_>) -> Option<ActiveFault> {
        let max = s.max_active_faults.unwrap_or(u64::MAX);
        if self.active.load(Ordering::Relaxed) >= max {
            self.count(ctx, self.counters.faults_overflow);
            return None;
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        let worker = ctx.counters.get(self.counters.active_faults).cloned();
        if let Some(c) = &worker {
            c.inc();
        }
        Some(ActiveFault {
            process: Arc::clone(&self.active),
            worker,
        })
    }

    /// Decides one request with `s` (the filter's settings or its route's). A gRPC
    /// abort with a `grpc_status` sets `grpc-status` in `store` (the reply's gRPC form);
    /// a response rate limit, and the active fault the stream keeps, go in `store` too
    /// (without a store there is no rate limit).
    pub async fn on_request_head(
        &self,
        s: &FaultSettings,
        ctx: &RequestCtx<'_>,
        route: EntryCluster<'_>,
        store: Option<&SetHeaders>,
    ) -> Outcome {
        let pass = Outcome {
            status: Status::Continue,
            delayed: false,
            throttled: false,
        };
        if !applies(s, ctx, route) {
            return pass;
        }
        let mut active = None;
        let mut delayed = false;
        let mut throttled = false;
        if let (Some(kbps), Some(store)) = (rate_limit_for(s, ctx), store) {
            active = self.try_activate(s, ctx);
            if active.is_some() {
                self.count(ctx, self.counters.response_rl_injected);
                if let Ok(mut f) = store.fault.try_borrow_mut() {
                    f.bucket = Some(Bucket::new(kbps, Instant::now()));
                    throttled = true;
                }
            }
        }
        // A stream with a rate limit configured keeps its active fault to the end, as
        // Envoy's does (even when this request drew no rate limit).
        let keep = |active: Option<ActiveFault>| {
            if let (Some(a), Some(store), true) = (active, store, s.response_rate_limit.is_some()) {
                if let Ok(mut f) = store.fault.try_borrow_mut() {
                    f.active.get_or_insert(a);
                }
            }
        };
        if let Some(d) = delay_for(s, ctx) {
            if active.is_none() {
                active = self.try_activate(s, ctx);
            }
            if active.is_some() {
                self.count(ctx, self.counters.delays_injected);
                tracing::debug!(ms = d.as_millis() as u64, "fault: delaying request");
                crate::rt::sleep(d).await;
                delayed = true;
            }
        }
        let Some((http, grpc)) = abort_status(s, ctx) else {
            keep(active);
            return Outcome {
                delayed,
                throttled,
                ..pass
            };
        };
        // After a delay the request already holds its active fault (Envoy counts one
        // per request and does not check the limit again).
        if active.is_none() && !delayed {
            active = self.try_activate(s, ctx);
            if active.is_none() {
                return Outcome { throttled, ..pass };
            }
        }
        self.count(ctx, self.counters.aborts_injected);
        if let (Some(g), Some(store), true) = (grpc, store, ctx.req.is_grpc()) {
            let mut buf = [0u8; 20];
            store.set("grpc-status", decimal(&mut buf, u64::from(g)));
        }
        keep(active);
        Outcome {
            status: Status::Respond(LocalReply {
                status: http,
                body: std::borrow::Cow::Borrowed(ABORT_BODY),
                flag: ResponseFlag::FaultInjected,
            }),
            delayed,
            throttled,
        }
    }
}

/// One chunk (`n` bytes) of a rate-limited stream's response body: waits until the
/// stream's bucket has let it through (a worker timer). A stream without a rate limit
/// goes on at once.
pub async fn on_response_data(store: &SetHeaders, n: usize) {
    let wait = {
        let Ok(mut f) = store.fault.try_borrow_mut() else {
            return;
        };
        match f.bucket.as_mut() {
            Some(b) => b.take(n, Instant::now()),
            None => return,
        }
    };
    if !wait.is_zero() {
        crate::rt::sleep(wait).await;
    }
}

/// Envoy's gates before any fault: upstream cluster, downstream node, headers.
fn applies(s: &FaultSettings, ctx: &RequestCtx<'_>, route: EntryCluster<'_>) -> bool {
    // Envoy compares its route entry's `clusterName()`: the weighted cluster picked for
    // this request, or the `cluster_header` value (empty when missing).
    if let Some(want) = &s.upstream_cluster {
        let named = match route {
            EntryCluster::None => false,
            EntryCluster::Name(c) => c == want,
            EntryCluster::Header(h) => first(ctx, h).unwrap_or_default() == want.as_bytes(),
        };
        if !named {
            return false;
        }
    }
    if !s.downstream_nodes.is_empty() {
        let Some(node) = first(ctx, NODE_HEADER) else {
            return false;
        };
        if !s.downstream_nodes.iter().any(|n| n.as_bytes() == node) {
            return false;
        }
    }
    s.headers.iter().all(|m| header_matches(m, ctx.req))
}

/// The first value of a request header (Envoy reads only the first of these untrusted
/// headers).
fn first<'a>(ctx: &RequestCtx<'a>, name: &str) -> Option<&'a [u8]> {
    ctx.req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// A header's value as an unsigned decimal (Envoy's `SimpleAtoi`: surrounding spaces
/// allowed, a leading `+` too).
fn number(ctx: &RequestCtx<'_>, name: &str) -> Option<u64> {
    let v = std::str::from_utf8(first(ctx, name)?).ok()?.trim();
    v.strip_prefix('+').unwrap_or(v).parse().ok()
}

/// The percentage of a header-driven fault: the request's header may lower the
/// numerator (never raise it); the denominator stays.
fn header_percentage(ctx: &RequestCtx<'_>, name: &str, configured: Fraction) -> Fraction {
    match number(ctx, name).and_then(|n| u32::try_from(n).ok()) {
        Some(n) => Fraction {
            numerator: n.min(configured.numerator),
            ..configured
        },
        None => configured,
    }
}

fn hit(f: Fraction) -> bool {
    f.denominator != 0 && random() % u64::from(f.denominator) < u64::from(f.numerator)
}

/// Envoy's `maybeSetupResponseRateLimit` draw: the KiB/s of the response rate limit to
/// inject, if this request gets one.
fn rate_limit_for(s: &FaultSettings, ctx: &RequestCtx<'_>) -> Option<u64> {
    let r = s.response_rate_limit?;
    let pct = match r.kind {
        LimitKind::Fixed(_) => r.percentage,
        LimitKind::Header => header_percentage(ctx, THROUGHPUT_PERCENTAGE_HEADER, r.percentage),
    };
    if !hit(pct) {
        return None;
    }
    match r.kind {
        LimitKind::Fixed(kbps) => Some(kbps),
        LimitKind::Header => number(ctx, THROUGHPUT_HEADER).filter(|k| *k > 0),
    }
}

/// The delay to inject, if this request gets one (a draw, then a length over zero).
fn delay_for(s: &FaultSettings, ctx: &RequestCtx<'_>) -> Option<Duration> {
    let d = s.delay?;
    let pct = match d.kind {
        DelayKind::Fixed(_) => d.percentage,
        DelayKind::Header => header_percentage(ctx, DELAY_PERCENTAGE_HEADER, d.percentage),
    };
    if !hit(pct) {
        return None;
    }
    let len = match d.kind {
        DelayKind::Fixed(len) => len,
        DelayKind::Header => Duration::from_millis(number(ctx, DELAY_HEADER)?),
    };
    (!len.is_zero()).then_some(len)
}

/// Envoy's `abortStatus`: the HTTP status (`200` for a gRPC-only abort) and the gRPC
/// status, if this request is aborted.
fn abort_status(s: &FaultSettings, ctx: &RequestCtx<'_>) -> Option<(u16, Option<u32>)> {
    let a = s.abort?;
    let pct = match a.kind {
        AbortKind::Header => header_percentage(ctx, ABORT_PERCENTAGE_HEADER, a.percentage),
        _ => a.percentage,
    };
    if !hit(pct) {
        return None;
    }
    match a.kind {
        AbortKind::Http(code) => Some((code, None)),
        AbortKind::Grpc(g) => Some((200, Some(g))),
        AbortKind::Header => {
            let http = number(ctx, ABORT_HEADER)
                .filter(|c| (200..600).contains(c))
                .and_then(|c| u16::try_from(c).ok());
            match http {
                Some(c) => Some((c, None)),
                None => {
                    let g = number(ctx, ABORT_GRPC_HEADER)?;
                    Some((200, Some(u32::try_from(g).ok()?)))
                }
            }
        }
    }
}

/// `n` in decimal, in `buf`.
fn decimal(buf: &mut [u8; 20], mut n: u64) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..)
        .and_then(|d| std::str::from_utf8(d).ok())
        .unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::http::router::Request;
    use crate::observe::stats::Counter;

    static FWD: crate::config::Forwarding = crate::config::Forwarding {
        use_remote_address: true,
        xff_num_trusted_hops: 0,
        skip_xff_append: false,
        ..crate::config::Forwarding::SIDECAR
    };

    fn with_headers<R>(headers: &[(&str, &str)], f: impl FnOnce(&RequestCtx<'_>) -> R) -> R {
        let hs: Vec<httparse::Header<'_>> = headers
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect();
        let req = Request {
            method: "GET",
            authority: b"h",
            path: "/",
            scheme: "http",
            headers: &hs,
        };
        let counters: Vec<Rc<Counter>> = (0..5).map(|_| Rc::default()).collect();
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
        f(&ctx)
    }

    fn all() -> Fraction {
        Fraction {
            numerator: 100,
            denominator: 100,
        }
    }

    fn settings(abort: AbortKind) -> FaultSettings {
        FaultSettings {
            delay: None,
            abort: Some(Abort {
                kind: abort,
                percentage: all(),
            }),
            response_rate_limit: None,
            upstream_cluster: None,
            headers: vec![],
            downstream_nodes: vec![],
            max_active_faults: None,
        }
    }

    fn filter(s: FaultSettings) -> FaultFilter {
        FaultFilter {
            settings: s,
            counters: FaultCounters {
                delays_injected: 0,
                aborts_injected: 1,
                faults_overflow: 2,
                active_faults: 3,
                response_rl_injected: 4,
            },
            active: Arc::default(),
        }
    }

    fn run(f: &FaultFilter, h: &[(&str, &str)], route: Option<&str>) -> (Outcome, Vec<u64>) {
        with_headers(h, |ctx| {
            let o = futures_lite::future::block_on(f.on_request_head(
                &f.settings,
                ctx,
                route.map_or(EntryCluster::None, EntryCluster::Name),
                None,
            ));
            (o, ctx.counters.iter().map(|c| c.get()).collect())
        })
    }

    fn status(o: &Outcome) -> Option<u16> {
        match &o.status {
            Status::Respond(r) => Some(r.status),
            Status::Continue => None,
        }
    }

    #[test]
    fn aborts_count_and_release_their_active_fault() {
        let f = filter(settings(AbortKind::Http(503)));
        let (o, counts) = run(&f, &[], None);
        assert_eq!(status(&o), Some(503));
        assert_eq!(counts, [0, 1, 0, 0, 0], "aborted; no fault left active");
        assert_eq!(f.active.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn header_aborts_take_http_then_grpc_and_cap_the_percentage() {
        let f = filter(settings(AbortKind::Header));
        assert_eq!(status(&run(&f, &[], None).0), None, "no header, no abort");
        let (o, _) = run(&f, &[(ABORT_HEADER, "429")], None);
        assert_eq!(status(&o), Some(429));
        assert_eq!(status(&run(&f, &[(ABORT_HEADER, "600")], None).0), None);
        let (o, _) = run(&f, &[(ABORT_GRPC_HEADER, "14")], None);
        assert_eq!(status(&o), Some(200), "a gRPC abort answers 200");
        // The header lowers the configured 100% to 0%.
        let h = [(ABORT_HEADER, "503"), (ABORT_PERCENTAGE_HEADER, "0")];
        assert_eq!(status(&run(&f, &h, None).0), None);
        // ...and cannot raise a configured 0%.
        let mut zero = settings(AbortKind::Header);
        zero.abort = zero.abort.map(|a| Abort {
            percentage: Fraction {
                numerator: 0,
                denominator: 100,
            },
            ..a
        });
        let h = [(ABORT_HEADER, "503"), (ABORT_PERCENTAGE_HEADER, "100")];
        assert_eq!(status(&run(&filter(zero), &h, None).0), None);
    }

    #[test]
    fn gates_cluster_node_and_headers() {
        let mut s = settings(AbortKind::Http(500));
        s.upstream_cluster = Some("a".into());
        s.downstream_nodes = vec!["web".into()];
        let f = filter(s);
        let node = [(NODE_HEADER, "web")];
        assert_eq!(status(&run(&f, &node, Some("a")).0), Some(500));
        assert_eq!(status(&run(&f, &node, Some("b")).0), None);
        assert_eq!(status(&run(&f, &node, None).0), None);
        assert_eq!(status(&run(&f, &[], Some("a")).0), None);
        assert_eq!(status(&run(&f, &[(NODE_HEADER, "db")], Some("a")).0), None);
        // A `cluster_header` route: the header's first value is the route's cluster.
        let by_header = |h: &[(&str, &str)]| {
            with_headers(h, |ctx| {
                let o = futures_lite::future::block_on(f.on_request_head(
                    &f.settings,
                    ctx,
                    EntryCluster::Header("x-cluster"),
                    None,
                ));
                status(&o)
            })
        };
        assert_eq!(
            by_header(&[(NODE_HEADER, "web"), ("x-cluster", "a")]),
            Some(500)
        );
        let two = [(NODE_HEADER, "web"), ("x-cluster", "b"), ("x-cluster", "a")];
        assert_eq!(by_header(&two), None, "the first value only");
        assert_eq!(by_header(&[(NODE_HEADER, "web")]), None);
    }

    #[test]
    fn a_full_process_overflows() {
        let mut s = settings(AbortKind::Http(503));
        s.max_active_faults = Some(1);
        let f = filter(s);
        f.active.store(1, Ordering::Relaxed);
        let (o, counts) = run(&f, &[], None);
        assert_eq!(status(&o), None);
        assert_eq!(counts, [0, 0, 1, 0, 0]);
    }

    #[test]
    fn a_response_rate_limit_holds_its_active_fault_until_the_stream_ends() {
        let mut s = settings(AbortKind::Http(503));
        s.abort = None;
        s.response_rate_limit = Some(RateLimit {
            kind: LimitKind::Header,
            percentage: all(),
        });
        let f = filter(s);
        let go = |h: &[(&str, &str)]| {
            let store = SetHeaders::default();
            let (o, counts) = with_headers(h, |ctx| {
                let o = futures_lite::future::block_on(f.on_request_head(
                    &f.settings,
                    ctx,
                    EntryCluster::None,
                    Some(&store),
                ));
                (o, ctx.counters.iter().map(|c| c.get()).collect::<Vec<_>>())
            });
            let held = f.active.load(Ordering::Relaxed);
            let bucket = store.fault.borrow().bucket.is_some();
            drop(store);
            (o.throttled, bucket, counts, held)
        };
        // No header, or a zero one: no limit, no active fault.
        assert_eq!(go(&[]), (false, false, vec![0, 0, 0, 0, 0], 0));
        assert!(!go(&[(THROUGHPUT_HEADER, "0")]).0);
        // The header's percentage lowers the configured 100% to 0%.
        let h = [
            (THROUGHPUT_HEADER, "1"),
            (THROUGHPUT_PERCENTAGE_HEADER, "0"),
        ];
        assert!(!go(&h).0);
        // Injected: counted, one active fault held by the stream's store.
        let (throttled, bucket, counts, held) = go(&[(THROUGHPUT_HEADER, "1")]);
        assert!(throttled && bucket);
        assert_eq!(counts, [0, 0, 0, 1, 1]);
        assert_eq!(held, 1);
        assert_eq!(
            f.active.load(Ordering::Relaxed),
            0,
            "released with the store"
        );
    }

    #[test]
    fn decimals() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(&mut b, 0), "0");
        assert_eq!(decimal(&mut b, 14), "14");
        assert_eq!(decimal(&mut b, u64::MAX), "18446744073709551615");
    }
}
