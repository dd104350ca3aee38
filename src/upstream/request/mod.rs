//! The upstream request: one attempt loop for every protocol combination.
//!
//! ```text
//!  downstream adapter (http/conn/exchange.rs, http/h1_to_h2.rs, http/h2/to_h1.rs,
//!  http/h2/to_h2.rs): builds the request in the upstream's protocol
//!     │
//!     ▼  pick            the request's `max_requests` slot (503 UO), the endpoint by
//!     │                  the cluster's load balancer (503 UH); in flight until the
//!     │                  `Picked` is dropped
//!     ▼  run             loop {
//!     │     obtain         UpstreamCodec: Http1 = pooled (checked clean) or new
//!     │                    connection (UF; UT when the route clock cut the connect;
//!     │                    max_pending_requests: UO; max_connections: wait),
//!     │                    Http2 = a stream slot on the per-core multiplexed connection
//!     │     try_once       the adapter's Exchange: send the request on that connection
//!     │                    and read until the response head, within the try's duration
//!     │                    bound if it has one (`bound`) (to HTTP/1.1, a streamed
//!     │                    body's copy is kept up to the limit, `replay`, and a retry
//!     │                    sends the copy; to HTTP/2 too, the copy of the DATA frames)
//!     │     decide         RetryPolicy: send again on a fresh connection, or fail
//!     │                  }   a final failure is counted here, once (`count_failure`)
//!     │     [hedge]        with `hedge_on_per_try_timeout`, a per-try timeout does not
//!     │                    cut the try: `hedge::race` runs retries next to it and the
//!     │                    first good head wins
//!     ▼
//!  adapter: the response head and body to the client, under the same `clock::Progress`
//! ```
//!
//! Both traits are used with concrete types (no boxing, no `Send`): the codec is
//! `Http1` or `Http2`, the exchange is the adapter's own state, borrowed for the loop.

pub(crate) mod bound;
pub(crate) mod clock;
pub(crate) mod hedge;
pub(crate) mod http1;
pub(crate) mod http1_hedge;
pub(crate) mod http2;
pub(crate) mod replay;
pub(crate) mod retry;
pub(crate) mod shadow;
pub(crate) mod tee;
mod tried;

pub(crate) use http1::Http1;
pub(crate) use http2::{H2Open, Http2};
pub(crate) use tried::Tried;

use std::time::{Duration, Instant};

use clock::Progress;
use retry::RetryState;

use super::cluster::ClusterState;
use super::outlier::Outcome;
use super::Connector;
use crate::config::circuit::Breakers;
use crate::config::Endpoint;
use crate::http::failure::Failure;
use crate::observe::stats::{class_index, ClusterStats, EndpointStats};

/// An endpoint picked for one request, counted in flight until this is dropped; the
/// first pick also holds the request's `max_requests` slot of the cluster's circuit
/// breakers (a retry's pick does not take another: the request keeps its one slot).
pub(crate) struct Picked<'a> {
    pub ep: usize,
    pub endpoint: &'a Endpoint,
    pub stats: &'a EndpointStats,
    slot: Option<&'a Breakers>,
}

impl Drop for Picked<'_> {
    fn drop(&mut self) {
        self.stats.rq_active.dec();
        if let Some(b) = self.slot {
            b.end_request();
        }
    }
}

/// Takes the request's `max_requests` slot, counts the request for the cluster and
/// picks its endpoint with the cluster's load balancer. `Err` is the local reply,
/// already counted: `Overflow` (503 UO, Envoy's `upstream_rq_active_overflow`) or
/// `NoHealthyUpstream` (503 UH).
/// `hash`: the request's hash for a ring hash or Maglev cluster (`http::router::hash`);
/// `priority`: the route's, whose breakers count the request.
pub(crate) fn pick<C: 'static>(
    cs: &ClusterState<C>,
    hash: Option<u64>,
    priority: crate::config::circuit::Priority,
) -> Result<Picked<'_>, Failure> {
    let breakers: &Breakers = cs.cfg.breakers.at(priority);
    if !breakers.try_request() {
        cs.stats.rq_active_overflow.inc();
        count_status(&cs.stats, Failure::Overflow.status());
        return Err(Failure::Overflow);
    }
    let found = cs
        .start_request(hash)
        .and_then(|ep| Some((ep, cs.cfg.endpoints.get(ep)?, cs.endpoints.get(ep)?)));
    let Some((ep, endpoint, stats)) = found else {
        breakers.end_request();
        return Err(Failure::NoHealthyUpstream);
    };
    stats.rq_active.inc();
    Ok(Picked {
        ep,
        endpoint,
        stats,
        slot: Some(breakers),
    })
}

/// Counts a request that failed before a response head reached the client, by why it
/// failed: its status class, and the timeout, reset and protocol-error counters.
pub(crate) fn count_failure(stats: &ClusterStats, f: Failure) {
    match f {
        Failure::RouteTimeout => stats.rq_timeout.inc(),
        Failure::ConnectionTermination => stats.rq_reset.inc(),
        Failure::ProtocolError => stats.rq_protocol_error.inc(),
        // Envoy charges no upstream status for a try its bound ended (counted then).
        Failure::UpstreamMaxDuration { .. } => return,
        _ => {}
    }
    count_status(stats, f.status());
}

/// Counts a request a clock of its stream ended before a response head reached the
/// client (`clock::Progress`): the clock's own counter (the per-try idle timeout's, the
/// try bound's: a try whose stream opened before its response head is bounded there),
/// then the failure it stands for (`count_failure`).
pub(crate) fn count_expired(stats: &ClusterStats, e: clock::Expiry, f: Failure) {
    match e {
        clock::Expiry::PerTryIdle => stats.rq_per_try_idle_timeout.inc(),
        clock::Expiry::UpstreamDuration => stats.rq_max_duration_reached.inc(),
        _ => {}
    }
    count_failure(stats, f);
}

/// A final response head from endpoint `ep`: counted in its class for the cluster, and
/// reported to outlier detection.
pub(crate) fn count_response<C: 'static>(cs: &ClusterState<C>, ep: usize, status: u16) {
    count_status(&cs.stats, status);
    cs.outlier(ep, Outcome::Status(status));
}

/// What a failed try tells outlier detection about its endpoint (Envoy's router: a
/// reset or connect failure is `LOCAL_ORIGIN_CONNECT_FAILED`, a timeout
/// `LOCAL_ORIGIN_TIMEOUT`; a circuit breaker's overflow says nothing about the host).
pub(crate) fn outlier_outcome(f: Failure) -> Option<Outcome> {
    match f {
        Failure::ConnectFailure | Failure::ConnectionTermination | Failure::ProtocolError => {
            Some(Outcome::ConnectFailed)
        }
        Failure::RouteTimeout | Failure::PerTryTimeout => Some(Outcome::Timeout),
        _ => None,
    }
}

/// Reports a failure of a try to endpoint `ep` to outlier detection.
pub(crate) fn outlier_failure<C: 'static>(cs: &ClusterState<C>, ep: usize, f: Failure) {
    if let Some(o) = outlier_outcome(f) {
        cs.outlier(ep, o);
    }
}

/// Counts a response status in its class for the cluster.
pub(crate) fn count_status(stats: &ClusterStats, status: u16) {
    if let Some(c) = stats.rq_class.get(class_index(status)) {
        c.inc();
    }
}

/// Counts what went wrong on the upstream side after the response head was forwarded
/// (the client then sees a reset or a closed connection, no local reply).
pub(crate) fn count_late(stats: &ClusterStats, f: Failure) {
    match f {
        Failure::RouteTimeout => stats.rq_timeout.inc(),
        // After the response head only the per-try idle timeout cuts a try (Envoy
        // ignores the per-try timeout once the response started).
        Failure::PerTryTimeout => stats.rq_per_try_idle_timeout.inc(),
        Failure::ConnectionTermination => stats.rq_reset.inc(),
        Failure::ProtocolError => stats.rq_protocol_error.inc(),
        Failure::UpstreamMaxDuration { .. } => stats.rq_max_duration_reached.inc(),
        _ => {}
    }
}

/// How a connection to an upstream is obtained, per upstream protocol.
pub(crate) trait UpstreamCodec<K: Connector> {
    /// What a request is sent on: a connection, or a handle to a multiplexed one.
    type Conn: hedge::Hedgeable;
    /// A connection for one try to endpoint `ep`: `(conn, reused)`. The request's
    /// `progress`: its route clock bounds a new connection's connect too, and a new
    /// connection's connect time is its `upstream_connect` phase.
    #[allow(async_fn_in_trait)]
    async fn obtain(
        &self,
        cs: &ClusterState<K::Conn>,
        ep: usize,
        connector: &K,
        progress: &Progress,
    ) -> Result<(Self::Conn, bool), Failure>;

    /// Whether this codec can run hedged tries (`hedge_try`).
    fn hedges(&self) -> bool {
        false
    }

    /// A hedged try on `conn` (`hedge::race`): sends `request` (head, body, trailers)
    /// and waits for the final response head, interim ones skipped. `Err`: how the try
    /// failed (the request can always go again: it is a copy).
    #[allow(async_fn_in_trait)]
    async fn hedge_try(
        &self,
        _conn: &mut Self::Conn,
        _request: &<Self::Conn as hedge::Hedgeable>::Request,
        _progress: &Progress,
    ) -> Result<<Self::Conn as hedge::Hedgeable>::Won, Tried> {
        Err(Tried::failed(Failure::ProtocolError, false, true))
    }
}

/// What a try knows of the attempt loop: the request's retry state (`None`: the route
/// has no retry policy, and the request asked for none).
#[derive(Clone, Copy)]
pub(crate) struct Attempt<'r, 'p> {
    pub retry: Option<&'r RetryState<'p>>,
    /// The cluster's circuit breakers, which a retry must get a slot of.
    pub breakers: &'r std::sync::Arc<Breakers>,
    /// Reports a response head that is retried to outlier detection (Envoy counts
    /// every upstream response, retried or not).
    pub judged: &'r dyn Fn(u16),
    /// The race the try runs in when it hedges (`hedge::race`): once its per-try
    /// timeout fired, its answer is never retried, and a retriable one is dropped while
    /// other tries may still answer.
    pub hedge: Option<&'r hedge::Hedged>,
    /// The route clock's end when the try started (once the request was complete).
    pub deadline: Option<Instant>,
}

impl Attempt<'_, '_> {
    /// What this try's request says differently from the first's (`http::restamp`).
    pub fn restamp(&self) -> crate::http::restamp::Restamp {
        self.retry
            .map(|r| r.restamp(self.deadline))
            .unwrap_or_default()
    }

    /// Whether a response head is retried (counted); `false` without a retry state.
    pub fn retry_response<H: retry::Headers + ?Sized>(
        &self,
        status: u16,
        headers: &H,
        resendable: bool,
        stats: &ClusterStats,
    ) -> bool {
        if let Some(h) = self.hedge.filter(|h| h.soft.get()) {
            let dropped =
                h.others.get() > 0 && self.retry.is_some_and(|r| r.would_retry(status, headers));
            if dropped {
                (self.judged)(status);
            }
            return dropped;
        }
        let retried = self
            .retry
            .is_some_and(|r| r.on_response(status, headers, resendable, stats, self.breakers));
        if retried {
            (self.judged)(status);
        }
        retried
    }

    /// Whether a try whose upstream went away while the request body was being sent
    /// (before any response) is retried (counted), as Envoy's router decides on the
    /// reset, while the body still streams: the body is then kept whole for the retry.
    pub fn retry_loss(&self, stats: &ClusterStats) -> bool {
        self.retry.is_some_and(|r| {
            r.on_failure(
                Failure::ConnectionTermination,
                false,
                true,
                stats,
                self.breakers,
            )
        })
    }
}

/// When a failed try is sent again. The point where the resilience work (retry_on,
/// num_retries, budgets) plugs in; today it keeps one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    max_retries: u32,
}

impl RetryPolicy {
    /// One retry, on a fresh connection, when a reused keep-alive connection failed
    /// before any response byte and the request can be sent again: the upstream may
    /// have closed the idle connection just as it was taken from the pool.
    pub const STALE_CONNECTION: RetryPolicy = RetryPolicy { max_retries: 1 };
    /// Never again for staleness (HTTP/2 upstreams: a multiplexed connection is not
    /// stale in that way; the route's retry policy still applies).
    pub const NONE: RetryPolicy = RetryPolicy { max_retries: 0 };

    /// Whether to try again after `retries` retries, on a connection that was `reused`.
    pub fn retry(&self, retries: u32, reused: bool, t: &Tried) -> bool {
        retries < self.max_retries && reused && t.replayable
    }
}

/// One protocol combination's send and receive on a connection the loop obtained.
pub(crate) trait Exchange<C: hedge::Hedgeable> {
    /// What the adapter goes on with: the response head, or an end of the exchange
    /// that is no upstream failure (the client went away, sent a malformed body).
    type Head;
    /// Sends the request on `conn` and reads until the response head; a head the retry
    /// policy retries (`Attempt::retry_response`) is `Err(Tried::retry_response())`.
    #[allow(async_fn_in_trait)]
    async fn try_once(&mut self, conn: &mut C, at: Attempt<'_, '_>) -> Result<Self::Head, Tried>;

    /// Whether the request can go again as it was after a try its per-try clock cut.
    /// `None`: the exchange does not track it, and its per-try clocks run only for a
    /// request complete when the try starts (whole at hand, so it can). `Some`: the
    /// clocks of a try that starts while the body still streams start when it is
    /// complete, as Envoy's do.
    fn resendable(&self) -> Option<bool> {
        None
    }

    /// The copy of the request that hedged tries send (`hedge::Copy`, filled once the
    /// request is complete); `None`: this exchange does not hedge, and a per-try timeout
    /// cuts its try even when the route hedges.
    fn hedge_copy(&self) -> Option<hedge::Copy<C::Request>> {
        None
    }

    /// Takes over a hedged try that won (`won`: its final response head, with what goes
    /// with it); the head is made as `try_once` makes one, never retried.
    fn adopt(&mut self, _won: C::Won) -> Result<Self::Head, Tried> {
        Err(Tried::fatal(Failure::ProtocolError))
    }
}

/// An endpoint picked again for a retry, counted as a new upstream request (Envoy
/// counts every try in `upstream_rq_total`).
fn repick<'c, C: 'static>(cs: &'c ClusterState<C>, ep: usize) -> Option<Picked<'c>> {
    let (endpoint, stats) = (cs.cfg.endpoints.get(ep)?, cs.endpoints.get(ep)?);
    cs.stats.rq_total.inc();
    stats.rq_total.inc();
    stats.rq_active.inc();
    Some(Picked {
        ep,
        endpoint,
        stats,
        slot: None,
    })
}

/// How a try ran out of its own time.
enum PerTry {
    Timeout,
    Idle,
}

/// Resolves when the try started at `start` has run for `timeout`, or moved no byte
/// for `idle` (zero: that clock is off). One timer at a time, re-armed only when bytes
/// moved the idle clock on.
async fn per_try_clock(
    start: Instant,
    timeout: Duration,
    idle: Duration,
    progress: &Progress,
) -> PerTry {
    // The clocks start once the request is complete (Envoy's
    // `create_per_try_timeout_on_request_complete_`), or when the try does if later.
    let start = progress.completed().await.max(start);
    loop {
        let now = Instant::now();
        let hard = (!timeout.is_zero()).then(|| start + timeout);
        let soft = (!idle.is_zero()).then(|| progress.last_activity().max(start) + idle);
        match (hard, soft) {
            (Some(h), _) if now >= h => return PerTry::Timeout,
            (_, Some(s)) if now >= s => return PerTry::Idle,
            (h, s) => {
                let at = h.into_iter().chain(s).min().unwrap_or(now);
                crate::rt::sleep(at.saturating_duration_since(now)).await;
            }
        }
    }
}

/// `x`'s try on `conn`, unless the try's duration bound (ending at `ends`) runs out
/// first: then the try failed (`bound::reached`). `complete`: the request was complete
/// when the try started (so it can go again if the exchange does not say).
#[allow(clippy::too_many_arguments)]
async fn try_bounded<C: hedge::Hedgeable, X: Exchange<C>>(
    x: &mut X,
    conn: &mut C,
    at: Attempt<'_, '_>,
    ends: Option<Instant>,
    complete: bool,
    progress: &Progress,
    stats: &ClusterStats,
) -> Result<X::Head, Tried> {
    let tried = bound::bounded(x.try_once(conn, at), ends).await;
    settle(tried, x, complete, progress, stats)
}

/// A bounded try's result: its own, or the failure of a bound that ran out first.
fn settle<C: hedge::Hedgeable, X: Exchange<C>>(
    tried: Option<Result<X::Head, Tried>>,
    x: &X,
    complete: bool,
    progress: &Progress,
    stats: &ClusterStats,
) -> Result<X::Head, Tried> {
    match tried {
        Some(t) => t,
        None => Err(bound::reached(
            progress,
            stats,
            x.resendable().unwrap_or(complete),
        )),
    }
}

/// The attempt loop: obtain a connection, try, decide. A final failure is counted for
/// the cluster (`count_failure`) and returned for the adapter to answer. `stale`: the
/// rule for a reused connection that failed before any response byte; `retry`: the
/// route's retry policy, if any (then a retry re-picks the endpoint in `picked`, after
/// the back-off). `ep`: the endpoint picked, and after a retry the last one tried,
/// held in flight by `again`. `route_timeout`: the route clock's length, which bounds
/// every try.
/// The retry state's own flag (`URX`, `UO`) goes on `progress` for the log.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<'c, K, U, X>(
    codec: &U,
    stale: RetryPolicy,
    retry: Option<&RetryState<'_>>,
    cs: &'c ClusterState<K::Conn>,
    ep: &mut usize,
    again: &mut Option<Picked<'c>>,
    connector: &K,
    progress: &Progress,
    route_timeout: Duration,
    x: &mut X,
) -> Result<(U::Conn, X::Head), Failure>
where
    K: Connector,
    U: UpstreamCodec<K>,
    X: Exchange<U::Conn>,
{
    let mut stale_retries = 0;
    // One loop in this future, not a future of its own awaited here: each layer of
    // futures is one more copy of its state on the request path.
    let out = 'tries: loop {
        if let Some(r) = retry {
            r.tried(*ep);
        }
        let tried_ep = *ep;
        let judged = |status| cs.outlier(tried_ep, Outcome::Status(status));
        let t = match codec.obtain(cs, *ep, connector, progress).await {
            Ok((mut conn, reused)) => {
                cs.outlier(tried_ep, Outcome::Connected);
                // The try's duration bound runs from here (Envoy's `onPoolReady`).
                let ends = bound::ends(progress, cs.cfg.pool.max_stream_duration);
                let complete = progress.request_complete();
                let stats = &cs.stats;
                // Peak EWMA's sample: from here to the response head (or the cut).
                // (Read only for a cluster whose balancer wants it: no clock read else.)
                let sent = cs.wants_latency().then(Instant::now);
                let at = Attempt {
                    retry,
                    breakers: cs.cfg.breakers.at(progress.priority()),
                    judged: &judged,
                    hedge: None,
                    deadline: progress.deadline(),
                };
                let clocks = retry.map(|r| r.per_try(route_timeout));
                let tracked = x.resendable().is_some();
                let copy = match retry {
                    Some(r) if r.hedging() && codec.hedges() => x.hedge_copy(),
                    _ => None,
                };
                let tried = match (clocks, copy) {
                    // Hedging: the try's per-try timeout does not cut it (`hedge::race`).
                    (Some((timeout, idle)), Some(copy))
                        if (!timeout.is_zero() || !idle.is_zero())
                            && (progress.request_complete() || tracked) =>
                    {
                        let (start, flags) = (Instant::now(), hedge::Hedged::default());
                        let at = Attempt {
                            hedge: Some(&flags),
                            ..at
                        };
                        let raced = {
                            let mut first = std::pin::pin!(try_bounded(
                                x, &mut conn, at, ends, complete, progress, stats
                            ));
                            let early = futures_lite::future::or(
                                async { Some(first.as_mut().await) },
                                async {
                                    per_try_clock(start, timeout, idle, progress).await;
                                    None
                                },
                            )
                            .await;
                            match (early, retry) {
                                (Some(t), _) => Ok(t),
                                (None, Some(r)) => Err(hedge::race(
                                    codec,
                                    r,
                                    cs,
                                    tried_ep,
                                    connector,
                                    progress,
                                    (timeout, idle),
                                    first,
                                    &flags,
                                    &copy,
                                )
                                .await),
                                (None, None) => Ok(Err(Tried::fatal(Failure::PerTryTimeout))),
                            }
                        };
                        match raced {
                            Ok(t) => Some(t),
                            Err(hedge::Raced::First(head)) => {
                                cs.observe_latency(tried_ep, sent);
                                if !idle.is_zero() {
                                    progress.arm_per_try_idle(idle);
                                }
                                progress.streaming_until(ends);
                                break 'tries Ok((conn, head));
                            }
                            Err(hedge::Raced::Hedge(conn, won, picked, hedge_ends)) => {
                                *ep = picked.ep;
                                *again = Some(picked);
                                break 'tries match x.adopt(won) {
                                    Ok(head) => {
                                        if !idle.is_zero() {
                                            progress.arm_per_try_idle(idle);
                                        }
                                        progress.streaming_until(hedge_ends);
                                        Ok((conn, head))
                                    }
                                    Err(t) => {
                                        count_failure(&cs.stats, t.failure);
                                        Err(t.failure)
                                    }
                                };
                            }
                            Err(hedge::Raced::Failed(f)) => {
                                count_failure(&cs.stats, f);
                                break 'tries Err(f);
                            }
                        }
                    }
                    (clocks, _) => match clocks {
                        // Per Envoy, a try's clocks start once the request is complete and
                        // a connection is at hand.
                        Some((timeout, idle))
                            if (!timeout.is_zero() || !idle.is_zero())
                                && (progress.request_complete() || tracked) =>
                        {
                            let start = Instant::now();
                            futures_lite::future::or(
                                async {
                                    let t = try_bounded(
                                        x, &mut conn, at, ends, complete, progress, stats,
                                    );
                                    Some(t.await)
                                },
                                async {
                                    match per_try_clock(start, timeout, idle, progress).await {
                                        PerTry::Timeout => cs.stats.rq_per_try_timeout.inc(),
                                        PerTry::Idle => cs.stats.rq_per_try_idle_timeout.inc(),
                                    }
                                    None
                                },
                            )
                            .await
                        }
                        // The common case, awaited here rather than in `try_bounded`'s
                        // future (one copy of the try's state fewer).
                        _ => {
                            let tried = bound::bounded(x.try_once(&mut conn, at), ends).await;
                            Some(settle(tried, x, complete, progress, stats))
                        }
                    },
                };
                match tried {
                    Some(Ok(head)) => {
                        cs.observe_latency(tried_ep, sent);
                        // The response body streams under the per-try idle timeout.
                        if let Some((_, idle)) = clocks.filter(|(_, i)| !i.is_zero()) {
                            progress.arm_per_try_idle(idle);
                        }
                        progress.streaming_until(ends);
                        break 'tries Ok((conn, head));
                    }
                    Some(Err(t)) if stale.retry(stale_retries, reused, &t) => {
                        stale_retries += 1;
                        tracing::debug!(failure = ?t.failure, "reused upstream connection failed: retrying");
                        continue;
                    }
                    Some(Err(t)) => {
                        // A retried head, or a timeout: at least this slow.
                        if t.judged
                            || matches!(
                                t.failure,
                                Failure::RouteTimeout
                                    | Failure::PerTryTimeout
                                    | Failure::UpstreamMaxDuration { .. }
                            )
                        {
                            cs.observe_latency(tried_ep, sent);
                        }
                        t
                    }
                    // The try's connection is dropped with the try: never pooled.
                    None => {
                        cs.observe_latency(tried_ep, sent);
                        let resend = x.resendable().unwrap_or(true);
                        Tried::failed(Failure::PerTryTimeout, false, resend)
                    }
                }
            }
            Err(f) => Tried::failed(f, false, true),
        };
        // A retried response head was reported when it was judged; a stale pooled
        // connection (above) is not the endpoint's failure.
        if !t.judged || t.settled {
            outlier_failure(cs, tried_ep, t.failure);
        }
        let retrying = match retry {
            Some(r) if t.judged => Some(r),
            Some(r)
                if !t.settled
                    && r.on_failure(
                        t.failure,
                        t.refused,
                        t.resend,
                        &cs.stats,
                        cs.cfg.breakers.at(progress.priority()),
                    ) =>
            {
                Some(r)
            }
            _ => None,
        };
        let Some(r) = retrying else {
            count_failure(&cs.stats, t.failure);
            break 'tries Err(t.failure);
        };
        if t.overflowed {
            // Envoy answers this itself and charges no upstream status for it.
            r.cancel();
            break 'tries Err(Failure::RetryBufferOverflow);
        }
        tracing::debug!(failure = ?t.failure, judged = t.judged, "retrying upstream request");
        let wait = r.backoff();
        // The route clock bounds the back-off too.
        match progress.deadline() {
            Some(d) if Instant::now() + wait >= d => {
                crate::rt::sleep(d.saturating_duration_since(Instant::now())).await;
                count_failure(&cs.stats, Failure::RouteTimeout);
                break 'tries Err(Failure::RouteTimeout);
            }
            _ => crate::rt::sleep(wait).await,
        }
        r.started(&cs.stats);
        if let Some(p) = r
            .select(|attempt| cs.pick(r.hash, attempt))
            .and_then(|e| repick(cs, e))
        {
            *ep = p.ep;
            *again = Some(p);
        }
    };
    if let Some(r) = retry {
        progress.note_retry_flag(r.response_flag());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_replayable_failure_on_a_reused_connection_is_retried_once() {
        let p = RetryPolicy::STALE_CONNECTION;
        let t = Tried::failed(Failure::ConnectionTermination, true, false);
        assert!(p.retry(0, true, &t));
        assert!(!p.retry(1, true, &t), "once");
        assert!(!p.retry(0, false, &t), "a fresh connection is not stale");
        assert!(!p.retry(0, true, &Tried::fatal(Failure::ConnectionTermination)));
        assert!(!RetryPolicy::NONE.retry(0, true, &t));
    }
}
