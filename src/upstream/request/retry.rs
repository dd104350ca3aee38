//! The retry state of one request (Envoy's `RetryStateImpl`): which failures and
//! responses are retried (`retry_on`, merged with the `x-envoy-retry-on`,
//! `x-envoy-retry-grpc-on` and `x-envoy-max-retries` request headers), how many retries
//! are left, the jittered exponential back-off, the per-try clocks and the endpoints
//! tried (`previous_hosts`). Lives on the stack of the adapter, created only when the
//! route has a policy or the request asks for retries in its headers: a route without
//! one pays one `Option` check per try. Counted per cluster as Envoy counts them
//! (`rq_retry`, `rq_retry_success`, `rq_retry_limit_exceeded`,
//! `rq_retry_backoff_exponential`).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use crate::config::circuit::Breakers;
use crate::config::retry_model::{on, parse_retry_grpc_on, parse_retry_on, CONSUMED, HEADER_ONLY};
use crate::config::{HeaderMatch, Retries, RetryPolicy};
use crate::http::failure::Failure;
use crate::http::flags::ResponseFlag;
use crate::http::restamp::Restamp;
use crate::observe::stats::{ClusterStats, Counter};

/// Request and response header lookup for the retry decisions, over both header
/// representations (HTTP/1 field slices and `http::HeaderMap`).
pub(crate) trait Headers {
    /// Every value of the (lower-case) field `name`.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// `values` of a field whose name is known in advance: a header map looks it up by
    /// hash alone, without parsing and lower-casing a `&str` first (every forwarded
    /// request asks for the retry headers).
    fn known<'a>(&'a self, name: &'static HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.values(name.as_str())
    }
}

impl Headers for [httparse::Header<'_>] {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

impl Headers for http::HeaderMap {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).iter().map(|v| v.as_bytes())
    }
    fn known<'a>(&'a self, name: &'static HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).iter().map(|v| v.as_bytes())
    }
}

/// The fields the retry decisions read.
static RETRY_ON: HeaderName = HeaderName::from_static("x-envoy-retry-on");
static RETRY_GRPC_ON: HeaderName = HeaderName::from_static("x-envoy-retry-grpc-on");
static MAX_RETRIES: HeaderName = HeaderName::from_static("x-envoy-max-retries");
static RETRIABLE_STATUS_CODES: HeaderName =
    HeaderName::from_static("x-envoy-retriable-status-codes");
static RETRIABLE_HEADER_NAMES: HeaderName =
    HeaderName::from_static("x-envoy-retriable-header-names");
static PER_TRY_TIMEOUT: HeaderName =
    HeaderName::from_static("x-envoy-upstream-rq-per-try-timeout-ms");
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static HEDGE: HeaderName = HeaderName::from_static("x-envoy-hedge-on-per-try-timeout");
static TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-upstream-rq-timeout-ms");

/// `x-envoy-upstream-rq-timeout-ms` of a request whose `x-envoy-*` headers the proxy
/// honours (an internal one, or any on a connection manager that does not sanitize
/// them): the route timeout in its place, 0 for none (Envoy's `finalTimeout`). The
/// router consumes the header (`CONSUMED`).
pub(crate) fn timeout_header<H: Headers + ?Sized>(request: &H) -> Option<Duration> {
    first(request, &TIMEOUT)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

static STREAM_DURATION: HeaderName = HeaderName::from_static("x-envoy-upstream-stream-duration-ms");

/// `x-envoy-upstream-stream-duration-ms` of a request whose `x-envoy-*` headers the proxy
/// honours (an internal one, as `timeout_header`): each try's duration bound in place of
/// the cluster's `max_stream_duration` (0: none; not a number: the cluster's). The router
/// consumes the header (`CONSUMED`): look only when `carries_consumed`.
pub(crate) fn stream_duration_header<H: Headers + ?Sized>(request: &H) -> Option<Duration> {
    first(request, &STREAM_DURATION)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// Whether a field name is one of the `CONSUMED` headers (a name without the
/// `x-envoy-` prefix, nearly all of them, is told apart by its first bytes).
pub(crate) fn consumed(name: &str) -> bool {
    name.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("x-envoy-"))
        && CONSUMED.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// Whether an HTTP/1 request carries one of the `CONSUMED` headers (one pass; most
/// requests have no `x-envoy-` header at all).
pub(crate) fn carries_consumed(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| consumed(h.name))
}

fn first<'a, H: Headers + ?Sized>(h: &'a H, name: &'static HeaderName) -> Option<&'a str> {
    h.known(name)
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Why a try failed, as the retry conditions see it (Envoy's reset reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    ConnectFailure,
    /// The connection closed or reset, a malformed response, a per-try timeout.
    Termination,
    /// An HTTP/2 stream refused by the upstream (REFUSED_STREAM, or left unprocessed
    /// by a GOAWAY).
    RefusedStream,
}

/// How many endpoint indices the `previous_hosts` set tracks (a bit each); endpoints
/// past it are never avoided.
const TRACKED_HOSTS: usize = 64;

/// The retry state of one request.
pub(crate) struct RetryState<'p> {
    policy: &'p RetryPolicy,
    retry_on: u32,
    remaining: Cell<u32>,
    /// Extra retriable status codes from `x-envoy-retriable-status-codes`.
    header_codes: [u16; 4],
    /// Extra retriable response headers (present: retriable) from
    /// `x-envoy-retriable-header-names`: its value, lower-cased (comma-separated names).
    header_names: Option<Box<str>>,
    per_try_timeout: Duration,
    /// The timeout the upstream may expect, in milliseconds (0: none), as the first
    /// try's request carried it (`expect`); a retry's is what is left of it.
    expected_ms: Cell<u32>,
    /// `grpc-timeout` is the router's under `max_grpc_timeout`: it follows the expected
    /// timeout on retries.
    grpc_expected: Cell<bool>,
    /// The back-off ceiling for the next retry, in milliseconds.
    next_interval: Cell<u64>,
    /// A retry was scheduled: the next try that is not retried counts as a success.
    armed: Cell<bool>,
    limit_exceeded: Cell<bool>,
    /// A retry was refused by the circuit breakers (flag `UO`).
    overflowed: Cell<bool>,
    /// The last decision would have retried but could not (no retries left, or the
    /// circuit breakers refused): Envoy's `could_not_retry`.
    refused: Cell<bool>,
    /// Hedging on a per-try timeout (the route's `hedge_policy`, or the request's
    /// `x-envoy-hedge-on-per-try-timeout`).
    hedge: bool,
    tried: Cell<u64>,
    /// Tries started so far (1 for the first).
    attempts: Cell<u32>,
    pub attempt_count_request: bool,
    pub attempt_count_response: bool,
    /// The request's hash for a ring hash or Maglev cluster: a retry's pick uses it
    /// again, as Envoy's router does (set by the connection manager with the first).
    pub hash: Option<u64>,
    /// The circuit breakers' retry slot this request holds, from the moment a retry is
    /// scheduled until the next decision (or the end of the request): Envoy's
    /// `resetRetry`. An `Arc` so that the slot is given back whatever ends the request;
    /// cloned only when a retry is made.
    held: Cell<Option<Arc<Breakers>>>,
    /// How much of a streamed request body is kept for a retry (`Retries::buffer_limit`).
    buffer_limit: usize,
    /// The route's stats, when it keeps them (Envoy's route `stat_prefix`): its retry
    /// counters follow the cluster's (set by the connection manager).
    pub route: Option<&'p crate::observe::route_stats::RouteStats>,
}

impl Drop for RetryState<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.held.take() {
            b.end_retry();
        }
    }
}

impl<'p> RetryState<'p> {
    /// The state for a request to a route with `retries`; `None` when nothing can be
    /// retried (no policy, no retry headers) and no attempt count is asked for.
    /// `request` gives the request headers the proxy honours (sanitized ones hidden);
    /// `retriable_request`: what `Retries::retries_request` said of the request (with
    /// its pseudo-headers, as the router's matching sees them).
    pub fn new<H: Headers + ?Sized>(
        retries: &'p Retries,
        request: &H,
        retriable_request: bool,
    ) -> Option<RetryState<'p>> {
        let header_on = first(request, &RETRY_ON).map_or(0, |v| parse_retry_on(v).0)
            | first(request, &RETRY_GRPC_ON).map_or(0, |v| parse_retry_grpc_on(v).0);
        let policy: &'p RetryPolicy = match &retries.policy {
            Some(p) => p,
            None if header_on != 0 => &HEADER_ONLY,
            None if retries.attempt_count_request || retries.attempt_count_response => &HEADER_ONLY,
            None => return None,
        };
        let mut retry_on = policy.retry_on | header_on;
        // A route that limits retries to some requests (`retriable_request_headers`):
        // any other request is not retried at all, whatever its headers ask (Envoy).
        if !retriable_request {
            retry_on = 0;
        }
        let mut remaining = policy.num_retries;
        if retry_on != 0 {
            // The max retries header takes precedence when it parses.
            if let Some(n) = first(request, &MAX_RETRIES).and_then(|v| v.trim().parse().ok()) {
                remaining = n;
            }
        }
        let mut header_codes = [0u16; 4];
        if let Some(list) = first(request, &RETRIABLE_STATUS_CODES) {
            for (slot, code) in header_codes
                .iter_mut()
                .zip(list.split(',').filter_map(|c| c.trim().parse::<u16>().ok()))
            {
                *slot = code;
            }
        }
        // Names only, each retriable when present in a response, as Envoy reads it.
        let header_names =
            first(request, &RETRIABLE_HEADER_NAMES).map(|l| l.to_ascii_lowercase().into());
        // Envoy's `finalHedgingParams`: exactly `true` or `false` overrides the route.
        let hedge = match first(request, &HEDGE) {
            Some("true") => true,
            Some("false") => false,
            _ => retries.hedge_on_per_try_timeout,
        };
        let per_try_timeout = first(request, &PER_TRY_TIMEOUT)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(policy.per_try_timeout, Duration::from_millis);
        Some(RetryState {
            policy,
            retry_on,
            remaining: Cell::new(remaining),
            header_codes,
            header_names,
            per_try_timeout,
            expected_ms: Cell::new(0),
            grpc_expected: Cell::new(false),
            next_interval: Cell::new(
                u64::try_from(policy.base_interval.as_millis())
                    .unwrap_or(25)
                    .max(1),
            ),
            armed: Cell::new(false),
            limit_exceeded: Cell::new(false),
            overflowed: Cell::new(false),
            refused: Cell::new(false),
            hedge,
            tried: Cell::new(0),
            attempts: Cell::new(1),
            attempt_count_request: retries.attempt_count_request,
            attempt_count_response: retries.attempt_count_response,
            hash: None,
            held: Cell::new(None),
            buffer_limit: retries.buffer_limit(),
            route: None,
        })
    }

    /// The per-try timeout (zero: none), bounded by nothing here: the route clock stays
    /// the overall bound. A value not below the route timeout is ignored (Envoy).
    pub fn per_try(&self, route_timeout: Duration) -> (Duration, Duration) {
        let t = if !route_timeout.is_zero() && self.per_try_timeout >= route_timeout {
            Duration::ZERO
        } else {
            self.per_try_timeout
        };
        (t, self.policy.per_try_idle_timeout)
    }

    /// The timeout the upstream is told to expect (`x-envoy-expected-rq-timeout-ms`, and
    /// `grpc-timeout` under `max_grpc_timeout`) for a request whose route timeout is
    /// `route_timeout` (zero: none): the per-try timeout when there is one below the
    /// route timeout and the request does not hedge, else the route timeout (Envoy's
    /// `setTimeoutHeaders`). Zero: none.
    /// Kept for the retries' requests (`restamp`), with whether `grpc-timeout` is
    /// the router's.
    pub fn expect(&self, route_timeout: Duration, grpc: bool) -> Duration {
        let t = match self.per_try(route_timeout).0 {
            t if t.is_zero() || self.hedge => route_timeout,
            t => t,
        };
        self.expected_ms
            .set(u32::try_from(t.as_millis()).unwrap_or(u32::MAX));
        self.grpc_expected.set(grpc);
        t
    }

    /// What this try's request says differently from the first's (nothing for the
    /// first): the attempt count when asked for, and the expected timeout bounded by
    /// what is left before `deadline` (the route clock's end, once it runs).
    pub fn restamp(&self, deadline: Option<std::time::Instant>) -> Restamp {
        if self.attempt() <= 1 {
            return Restamp::default();
        }
        let base = Duration::from_millis(self.expected_ms.get().into());
        Restamp {
            attempt: self.attempt_count_request.then(|| self.attempt()),
            expected: Restamp::expected_now(base, deadline),
            grpc: self.grpc_expected.get(),
        }
    }

    /// How many bytes of a streamed request body are kept so that a retry can send it
    /// again (Envoy's `per_request_buffer_limit_bytes`, within the listener's 1 MiB).
    pub fn buffer_limit(&self) -> usize {
        self.buffer_limit
    }

    /// The number of the try under way (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempts.get()
    }

    /// A retry that was decided is not made after all (the request body outgrew its
    /// copy while it waited): the try count is what was started (Envoy counts a try
    /// when it starts, after the back-off).
    pub fn cancel(&self) {
        self.attempts
            .set(self.attempts.get().saturating_sub(1).max(1));
    }

    /// The last response went to the client although it was retriable: the retries ran
    /// out (flag `URX`).
    #[cfg(test)]
    pub fn limit_exceeded(&self) -> bool {
        self.limit_exceeded.get()
    }

    /// The last try was not retried because the circuit breakers refused the retry
    /// (flag `UO`).
    #[cfg(test)]
    pub fn overflowed(&self) -> bool {
        self.overflowed.get()
    }

    /// The flag of a response that went to the client although it was retriable: `URX`
    /// when the retries ran out, `UO` when the circuit breakers refused the retry.
    pub fn response_flag(&self) -> ResponseFlag {
        if self.limit_exceeded.get() {
            ResponseFlag::UpstreamRetryLimitExceeded
        } else if self.overflowed.get() {
            ResponseFlag::UpstreamOverflow
        } else {
            ResponseFlag::None
        }
    }

    /// Whether a retry was made (the local reply's text says so, as Envoy's does).
    pub fn retried(&self) -> bool {
        self.attempts.get() > 1
    }

    /// Whether a response head with `status` and `headers` is retried; counts the
    /// decision. `resendable`: the request can go again as it was.
    pub fn on_response<H: Headers + ?Sized>(
        &self,
        status: u16,
        headers: &H,
        resendable: bool,
        stats: &ClusterStats,
        breakers: &Arc<Breakers>,
    ) -> bool {
        let would = resendable && self.would_retry_response(status, headers);
        self.decide(would, stats, breakers)
    }

    /// Whether a try its per-try timeout cut while hedging (the try keeps going) gets a
    /// retry next to it: Envoy's `shouldHedgeRetryPerTryTimeout`, which needs retries
    /// left and a circuit breaker slot, whatever `retry_on` lists (but some condition
    /// must be set: without one Envoy has no retry state). `resendable`: a copy of the
    /// request is at hand.
    pub fn on_hedge(
        &self,
        resendable: bool,
        stats: &ClusterStats,
        breakers: &Arc<Breakers>,
    ) -> bool {
        let would = resendable && self.retry_on != 0;
        self.decide(would, stats, breakers)
    }

    /// Whether hedging on a per-try timeout is on for this request.
    pub fn hedging(&self) -> bool {
        self.hedge
    }

    /// Whether a response head would be retried, counting and deciding nothing (a try
    /// already hedged is never retried again: Envoy's `wouldRetryFromHeaders`).
    pub fn would_retry<H: Headers + ?Sized>(&self, status: u16, headers: &H) -> bool {
        self.would_retry_response(status, headers)
    }

    /// The last decision would have retried but could not (no retries left, or no
    /// circuit breaker slot).
    pub fn could_not(&self) -> bool {
        self.refused.get()
    }

    /// Whether a try that failed with `f` is retried; counts the decision. `refused`:
    /// an HTTP/2 upstream refused the stream (a reset all the same).
    pub fn on_failure(
        &self,
        f: Failure,
        refused: bool,
        resendable: bool,
        stats: &ClusterStats,
        breakers: &Arc<Breakers>,
    ) -> bool {
        let reset = match f {
            Failure::ConnectionTermination if refused => Some(Cause::RefusedStream),
            Failure::ConnectFailure => Some(Cause::ConnectFailure),
            // A try its duration bound ended is Envoy's local reset.
            Failure::ConnectionTermination
            | Failure::ProtocolError
            | Failure::PerTryTimeout
            | Failure::UpstreamMaxDuration { .. } => Some(Cause::Termination),
            // The route clock bounds every try; the rest never reached an upstream.
            _ => None,
        };
        let would = resendable && reset.is_some_and(|r| self.would_retry_reset(r));
        self.decide(would, stats, breakers)
    }

    /// Envoy's `shouldRetry`: a success is a try after a retry that is not retried; a
    /// retry needs a slot of the circuit breakers' `max_retries` (or retry budget),
    /// else it is not made (`upstream_rq_retry_overflow`, flag UO).
    fn decide(&self, would: bool, stats: &ClusterStats, breakers: &Arc<Breakers>) -> bool {
        let route = |f: fn(&crate::observe::route_stats::RouteStats) -> &Counter| {
            if let Some(r) = self.route {
                f(r).inc();
            }
        };
        if self.armed.replace(false) && !would {
            stats.rq_retry_success.inc();
            route(|r| &r.rq_retry_success);
        }
        if let Some(b) = self.held.take() {
            b.end_retry();
        }
        self.refused.set(would);
        if !would {
            return false;
        }
        let left = self.remaining.get();
        if left == 0 {
            stats.rq_retry_limit_exceeded.inc();
            route(|r| &r.rq_retry_limit_exceeded);
            self.limit_exceeded.set(true);
            return false;
        }
        self.remaining.set(left - 1);
        if !breakers.try_retry() {
            stats.rq_retry_overflow.inc();
            route(|r| &r.rq_retry_overflow);
            self.overflowed.set(true);
            return false;
        }
        self.refused.set(false);
        self.held.set(Some(breakers.clone()));
        self.armed.set(true);
        self.attempts.set(self.attempts.get() + 1);
        true
    }

    fn would_retry_response<H: Headers + ?Sized>(&self, status: u16, headers: &H) -> bool {
        let on = self.retry_on;
        // A rate-limited answer from an upstream Envoy is never retried here.
        if headers.values("x-envoy-ratelimited").next().is_some() {
            return false;
        }
        if on & on::FIVE_XX != 0 && (500..600).contains(&status) {
            return true;
        }
        if on & on::GATEWAY_ERROR != 0 && matches!(status, 502..=504) {
            return true;
        }
        if on & on::RETRIABLE_4XX != 0 && status == 409 {
            return true;
        }
        if on & on::RETRIABLE_STATUS_CODES != 0
            && (self.policy.retriable_status_codes.contains(&status)
                || self.header_codes.iter().any(|c| *c != 0 && *c == status))
        {
            return true;
        }
        if on & on::RETRIABLE_HEADERS != 0
            && (self
                .policy
                .retriable_headers
                .iter()
                .any(|m| header_matches(m, headers))
                || self.header_names.as_deref().is_some_and(|list| {
                    list.split(',')
                        .map(str::trim)
                        .any(|n| !n.is_empty() && headers.values(n).next().is_some())
                }))
        {
            return true;
        }
        if on & on::GRPC != 0 {
            let bit = match first(headers, &GRPC_STATUS).and_then(|v| v.trim().parse::<u32>().ok())
            {
                Some(1) => on::GRPC_CANCELLED,
                Some(4) => on::GRPC_DEADLINE_EXCEEDED,
                Some(8) => on::GRPC_RESOURCE_EXHAUSTED,
                Some(13) => on::GRPC_INTERNAL,
                Some(14) => on::GRPC_UNAVAILABLE,
                _ => 0,
            };
            if on & bit != 0 {
                return true;
            }
        }
        false
    }

    fn would_retry_reset(&self, r: Cause) -> bool {
        let on = self.retry_on;
        on & (on::RESET | on::FIVE_XX | on::GATEWAY_ERROR) != 0
            || (on & on::REFUSED_STREAM != 0 && r == Cause::RefusedStream)
            || (on & on::CONNECT_FAILURE != 0 && r == Cause::ConnectFailure)
    }

    /// The back-off before the retry just decided (Envoy's fully jittered exponential
    /// back-off: uniform in `[0, ceiling)`, the ceiling doubling from the base up to the
    /// maximum).
    pub fn backoff(&self) -> Duration {
        let max = u64::try_from(self.policy.max_interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let ceiling = self.next_interval.get();
        self.next_interval
            .set(if ceiling > max / 2 { max } else { ceiling * 2 });
        Duration::from_millis(jitter(ceiling, fastrand::u64(..)).min(max))
    }

    /// The retry decided starts, its back-off over: counted as Envoy 1.40 counts it,
    /// `rq_retry` and `rq_retry_backoff_exponential` when the retry is made, not when
    /// it is decided (a retry that never starts, cut by the route timeout or a request
    /// body past the retry buffer while it waited, counts neither).
    pub fn started(&self, stats: &ClusterStats) {
        stats.rq_retry.inc();
        stats.rq_retry_backoff_exponential.inc();
        // The retry is another try upstream (Envoy counts the route's
        // `upstream_rq_total` per try).
        if let Some(r) = self.route {
            r.rq_retry.inc();
            r.rq_total.inc();
        }
    }

    /// Notes that endpoint `ep` was tried.
    pub fn tried(&self, ep: usize) {
        if ep < TRACKED_HOSTS {
            self.tried.set(self.tried.get() | 1 << ep);
        }
    }

    /// The endpoint for a retry: `pick` (the cluster's load balancer) again, up to
    /// `host_selection_retry_max_attempts` more times while it gives an endpoint tried
    /// before (`previous_hosts`); the last pick goes anyway. `pick` is given the
    /// attempt number (0 first), which moves a consistent hash on, as Envoy's
    /// `chooseHost` attempts do.
    pub fn select(&self, mut pick: impl FnMut(u32) -> Option<usize>) -> Option<usize> {
        let mut ep = pick(0)?;
        if self.policy.previous_hosts {
            for attempt in 1..=self.policy.host_selection_max_attempts {
                if ep >= TRACKED_HOSTS || self.tried.get() & (1 << ep) == 0 {
                    break;
                }
                ep = pick(attempt)?;
            }
        }
        Some(ep)
    }
}

/// A uniform draw in `[0, ceiling)` from `random`.
fn jitter(ceiling: u64, random: u64) -> u64 {
    random % ceiling.max(1)
}

fn header_matches<H: Headers + ?Sized>(m: &HeaderMatch, headers: &H) -> bool {
    crate::http::router::header_matches_values(m, headers.values(&m.name))
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
