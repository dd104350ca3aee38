//! The two clocks of a proxied request, on every protocol path, and what the request
//! has done so far. One `Progress` lives on the stack of each upstream request.
//!
//! - The route timeout (shortened by `grpc-timeout`) starts when the downstream request
//!   is complete, as Envoy's router starts its global timeout in `onRequestComplete`,
//!   and runs until the response is complete: response head and response body. When it
//!   runs out before a response head went to the client the answer is `504 UT`
//!   (`upstream request timeout`); after, the stream is reset (HTTP/2) or the connection
//!   closed (HTTP/1), as Envoy's `onResponseTimeout` does. A request whose body never
//!   ends (a stalled upload, a streaming call) is bounded by the stream idle timeout.
//! - The stream idle timeout (the listener's `stream_idle_timeout`, Envoy's, default
//!   5 minutes; zero disables it) ends a request that moved no byte in either direction
//!   for that long, whatever it waits for: the client's body, the upstream, a client that
//!   does not read. Before the response head it is a `408` while the request is still
//!   arriving, a `504` once it was received whole (Envoy's `maybeRequestTimeoutCode`).
//!
//! - The stream's duration limit (`max_stream_duration`, or the `grpc-timeout` a route
//!   honours: `http::router::timeouts`), from the stream's start, whatever the stream
//!   does: `408` while the request is still arriving, `504` once it is whole (flag none,
//!   `downstream duration timeout`, as Envoy's connection manager), a reset after the
//!   response head.
//! - The streaming try's duration bound (the cluster's `max_stream_duration`, or the
//!   request's `x-envoy-upstream-stream-duration-ms`), from when the try got its
//!   connection: before the response head the attempt loop races each try against it
//!   (`request::run`: a try it ends may be retried, as Envoy's router does); once a
//!   try's head is here it is set here (`streaming_until`) and cuts the response body
//!   (a reset or a closed connection, flag `UMSDR`).
//! - The per-try idle timeout (a retry policy's `per_try_idle_timeout`), armed by the
//!   attempt loop once a try's response head is here (before it, `request::run` races
//!   the try against its per-try clocks): the response body moving no byte for that
//!   long cuts the response (a reset or a closed connection, flag `UT`), as Envoy's
//!   per-try idle timer, which runs on after the downstream response started.
//!
//! Moving bytes only stores a timestamp. Who enforces the clocks depends on the
//! downstream side, never on a timer per stream where it can be avoided:
//! - HTTP/2 clients: the connection task sweeps its streams' clocks (`http/h2/clock.rs`)
//!   and `run` drops the proxying future when one fires.
//! - HTTP/1 clients to HTTP/1 upstreams: every socket read and write is given the time
//!   left (`time_left`), so the socket's own timeout is the clock; `expired` tells which
//!   clock it was.
//! - HTTP/1 clients to HTTP/2 upstreams (no socket of their own to time): `run_timed`,
//!   one timer for the exchange that re-arms itself when bytes pushed the idle clock back.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::config::circuit::Priority;
use crate::http::flags::ResponseFlag;
use crate::http::io::Io;
use crate::observe::stream_info::UpstreamWants;
use crate::observe::transport_failure::TransportFailure;
use crate::tls::TlsInfo;

/// Which clock ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// The route timeout: 504 `UT` before the response head, a reset after.
    Route,
    /// The stream idle timeout: 408 or 504 `SI` before the response head, a reset after.
    Idle,
    /// The per-try idle timeout during the response body: a reset, flag `UT`.
    PerTryIdle,
    /// The stream's duration limit: 408 or 504 before the response head, a reset after.
    Duration,
    /// The streaming try's duration bound (the cluster's `max_stream_duration`): a
    /// reset, flag `UMSDR`.
    UpstreamDuration,
}

/// A sleep until `.0`, for the clocks armed late (the per-try idle clock, the streaming
/// try's duration bound).
type LateTimer = (Instant, std::pin::Pin<Box<dyn Future<Output = ()>>>);

/// Deadlines and progress of one request, shared by reference with the proxying future.
pub(crate) struct Progress {
    /// Zero: no route timeout.
    route_timeout: Duration,
    /// Set when the request is complete (`request_done`).
    route: Cell<Option<Instant>>,
    /// When the request was complete, and the task waiting for it (`completed`).
    completed_at: Cell<Option<Instant>>,
    done_waker: Cell<Option<Waker>>,
    /// The per-try idle timeout of the try whose response is streaming (zero: none).
    per_try_idle: Cell<Duration>,
    /// The timer that watches it and `upstream_at` for a stream raced by `run` or
    /// `run_timed` (whose sweep or timer was set before they were armed): when it was
    /// set for, and the sleep. Boxed, and made only when one of them is armed.
    late_timer: std::cell::RefCell<Option<LateTimer>>,
    /// When the stream's duration limit runs out (`None`: no limit).
    duration_at: Option<Instant>,
    /// Each try's duration bound when the request sets it
    /// (`x-envoy-upstream-stream-duration-ms`; zero: none), else the cluster's.
    upstream_override: Option<Duration>,
    /// When the try whose response streams reaches its duration bound.
    upstream_at: Cell<Option<Instant>>,
    /// Zero: no idle clock.
    idle: Duration,
    last: Cell<Instant>,
    /// The client's request ended (END_STREAM received, the body read whole).
    request_complete: Cell<bool>,
    status: Cell<u16>,
    received: Cell<u64>,
    sent: Cell<u64>,
    /// Set by a sweep or the exchange's timer when a clock ran out.
    fired: Cell<Option<Expiry>>,
    /// The task waiting in `run`, woken when a clock fires.
    waker: Cell<Option<Waker>>,
    /// The self-time marks (`observe::phases`), from instants the clocks read anyway:
    /// time spent opening upstream connections, when the upstream's turn began (the
    /// request whole and a connection up), when the response head was ready.
    connect: Cell<Duration>,
    wait_from: Cell<Option<Instant>>,
    head_at: Cell<Option<Instant>>,
    /// Why the last connect to the upstream failed (`observe::transport_failure`).
    transport_failure: Cell<Option<TransportFailure>>,
    /// The local address and TLS facts of the connection the last try used, read only
    /// when the stream's chain wants them (`wants`).
    upstream_local: Cell<Option<std::net::SocketAddr>>,
    upstream_tls: RefCell<Option<Rc<TlsInfo>>>,
    wants: UpstreamWants,
    /// The retry state's own flag once the attempt loop is done (`URX`, `UO`).
    retry_flag: Cell<ResponseFlag>,
    /// The route's priority: which breakers and pools of the cluster the tries use.
    priority: Priority,
}

impl Progress {
    /// `route_timeout` zero: no route timeout; `idle` zero: no stream idle timeout.
    pub fn new(route_timeout: Duration, idle: Duration) -> Self {
        Progress::new_at(route_timeout, idle, Instant::now())
    }

    /// As `new`, for a stream whose caller has just read the clock (`now`): the idle
    /// clock runs from then.
    pub fn new_at(route_timeout: Duration, idle: Duration, now: Instant) -> Self {
        Progress {
            route_timeout,
            route: Cell::new(None),
            completed_at: Cell::new(None),
            done_waker: Cell::new(None),
            per_try_idle: Cell::new(Duration::ZERO),
            late_timer: std::cell::RefCell::new(None),
            duration_at: None,
            upstream_override: None,
            upstream_at: Cell::new(None),
            idle,
            last: Cell::new(now),
            request_complete: Cell::new(false),
            status: Cell::new(0),
            received: Cell::new(0),
            sent: Cell::new(0),
            fired: Cell::new(None),
            waker: Cell::new(None),
            connect: Cell::new(Duration::ZERO),
            wait_from: Cell::new(None),
            head_at: Cell::new(None),
            transport_failure: Cell::new(None),
            upstream_local: Cell::new(None),
            upstream_tls: RefCell::new(None),
            wants: UpstreamWants::default(),
            retry_flag: Cell::new(ResponseFlag::None),
            priority: Priority::Default,
        }
    }

    /// The tries go at the route's `priority` (its cluster's breakers and pools).
    pub fn at_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The stream ends at `at` whatever it does (its duration limit), if set.
    pub fn ending_at(mut self, at: Option<Instant>) -> Self {
        self.duration_at = at;
        self
    }

    /// Each try's duration bound is `d` (zero: none) instead of its cluster's, when set
    /// (the request's `x-envoy-upstream-stream-duration-ms`).
    pub fn upstream_duration(mut self, d: Option<Duration>) -> Self {
        self.upstream_override = d;
        self
    }

    /// The duration bound of a try to a cluster whose `max_stream_duration` is
    /// `cluster` (`None`: none).
    pub fn try_bound(&self, cluster: Duration) -> Option<Duration> {
        Some(self.upstream_override.unwrap_or(cluster)).filter(|d| !d.is_zero())
    }

    /// The try whose response head is here streams its body until `at` at most (its
    /// duration bound, `None`: none).
    pub fn streaming_until(&self, at: Option<Instant>) {
        self.upstream_at.set(at);
        // A stream raced by `run` looks at it (and sets its timer) when next polled.
        if at.is_some() {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// When the try whose response streams reaches its bound, if it has one (a tunnel
    /// after an upgrade ends then).
    pub fn streaming_end(&self) -> Option<Instant> {
        self.upstream_at.get()
    }

    /// Has the tries note what `wants` names of their connection (decided per chain at
    /// config time: `WorkerView::upstream_wants`).
    pub fn recording_upstream(mut self, wants: UpstreamWants) -> Self {
        self.wants = wants;
        self
    }

    /// A connect to the upstream failed with `e` (the last failure's reason is kept).
    pub fn connect_failed(&self, e: &std::io::Error) {
        if let Some(f) = TransportFailure::of(e) {
            self.transport_failure.set(Some(f));
        }
    }

    /// A try got connection `c`: notes what the stream wants of it (nothing is asked
    /// of the socket otherwise).
    pub fn note_upstream<C: Io + ?Sized>(&self, c: &C) {
        if self.wants.local {
            self.upstream_local.set(c.local_addr());
        }
        if self.wants.tls {
            *self.upstream_tls.borrow_mut() = c.tls_info();
        }
    }

    /// A try got a stream on a shared (HTTP/2) connection, whose facts the pool keeps.
    pub fn note_shared_upstream(
        &self,
        local: Option<std::net::SocketAddr>,
        tls: &Option<Rc<TlsInfo>>,
    ) {
        if self.wants.local {
            self.upstream_local.set(local);
        }
        if self.wants.tls {
            self.upstream_tls.borrow_mut().clone_from(tls);
        }
    }

    /// The local address of the connection the last try used (`%UPSTREAM_LOCAL_ADDRESS%`).
    pub fn upstream_local(&self) -> Option<std::net::SocketAddr> {
        self.upstream_local.get()
    }

    /// The TLS facts of the connection the last try used (a TLS cluster, when wanted).
    pub fn upstream_tls(&self) -> Option<Rc<TlsInfo>> {
        self.upstream_tls.borrow().clone()
    }

    /// The attempt loop's retry state ended with `f` (`RetryState::response_flag`).
    pub fn note_retry_flag(&self, f: ResponseFlag) {
        self.retry_flag.set(f);
    }

    /// The retry state's own flag, for the log beside the stream's (`None`: none).
    pub fn retry_flag(&self) -> Option<ResponseFlag> {
        Some(self.retry_flag.get()).filter(|f| *f != ResponseFlag::None)
    }

    /// Why the last connect failed, if one did.
    pub fn transport_failure(&self) -> Option<TransportFailure> {
        self.transport_failure.get()
    }

    /// The route deadline, once the route timer runs.
    pub fn deadline(&self) -> Option<Instant> {
        self.route.get()
    }

    /// Whether any clock is configured (a sweep needs to watch this request).
    pub fn has_clocks(&self) -> bool {
        !self.route_timeout.is_zero()
            || !self.idle.is_zero()
            || !self.per_try_idle.get().is_zero()
            || self.duration_at.is_some()
            || self.upstream_at.get().is_some()
    }

    /// Something moved on the stream (a head, a frame, bytes to or from the upstream).
    pub fn touch(&self) {
        // Once per poll: several byte moves of a poll stamp the same instant.
        self.last.set(crate::rt::poll_clock::now());
    }

    /// When a byte last moved (or the request started).
    pub fn last_activity(&self) -> Instant {
        self.last.get()
    }

    /// `n` request body bytes were passed on.
    pub fn received(&self, n: u64) {
        self.received.set(self.received.get() + n);
        self.touch();
    }

    /// `n` response body bytes were passed on.
    pub fn sent(&self, n: u64) {
        self.sent.set(self.sent.get() + n);
        self.touch();
    }

    /// The client's request arrived whole: the route timer starts (once).
    pub fn request_done(&self) {
        self.request_done_at(Instant::now());
    }

    /// As `request_done`, at `now` (a clock read the caller has just made).
    pub fn request_done_at(&self, now: Instant) {
        if !self.request_complete.replace(true) {
            if !self.route_timeout.is_zero() {
                self.route.set(Some(now + self.route_timeout));
            }
            self.completed_at.set(Some(now));
            if let Some(w) = self.done_waker.take() {
                w.wake();
            }
            self.wait_from_at(now);
        }
        self.last.set(now);
    }

    /// Resolves when the request is complete, with the instant it was: a try's per-try
    /// clocks start then (Envoy's `create_per_try_timeout_on_request_complete_`).
    pub async fn completed(&self) -> Instant {
        std::future::poll_fn(|cx| match self.completed_at.get() {
            Some(at) => Poll::Ready(at),
            None => {
                let w = match self.done_waker.take() {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                self.done_waker.set(Some(w));
                Poll::Pending
            }
        })
        .await
    }

    /// The try that goes on (its response head is here, or on an HTTP/2 stream that
    /// streams its request body, its stream is open) runs under the per-try idle
    /// timeout `d` (zero: none) from now, or from the request's completion if later.
    pub fn arm_per_try_idle(&self, d: Duration) {
        self.per_try_idle.set(d);
        self.touch();
        // A stream raced by `run` looks at it (and sets its timer) when next polled.
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// When the per-try idle clock runs out, if it runs: armed, and from the request's
    /// completion on (Envoy sets a try's per-try timers up then).
    fn per_try_idle_at(&self) -> Option<Instant> {
        let d = self.per_try_idle.get();
        if d.is_zero() {
            return None;
        }
        let from = self.completed_at.get()?;
        Some(self.last.get().max(from) + d)
    }

    /// When the stream idle clock runs out, if it runs.
    fn idle_at(&self) -> Option<Instant> {
        (!self.idle.is_zero()).then(|| self.last.get() + self.idle)
    }

    /// The clock armed late that runs out first (`late_timer`), and when.
    fn late_at(&self) -> Option<(Instant, Expiry)> {
        match (self.per_try_idle_at(), self.upstream_at.get()) {
            (Some(p), Some(u)) if p < u => Some((p, Expiry::PerTryIdle)),
            (_, Some(u)) => Some((u, Expiry::UpstreamDuration)),
            (Some(p), None) => Some((p, Expiry::PerTryIdle)),
            (None, None) => None,
        }
    }

    /// The idle clock that runs out first (both restart on every byte), and when.
    fn first_idle(&self) -> Option<(Instant, Expiry)> {
        match (self.per_try_idle_at(), self.idle_at()) {
            (Some(p), Some(i)) if p < i => Some((p, Expiry::PerTryIdle)),
            (_, Some(i)) => Some((i, Expiry::Idle)),
            (Some(p), None) => Some((p, Expiry::PerTryIdle)),
            (None, None) => None,
        }
    }

    /// The upstream's turn begins no earlier than `at`.
    fn wait_from_at(&self, at: Instant) {
        let w = self.wait_from.get().map_or(at, |w| w.max(at));
        self.wait_from.set(Some(w));
    }

    /// A new upstream connection, asked for at `started`, is up (TCP and TLS).
    pub fn connected(&self, started: Instant) {
        let now = Instant::now();
        self.connect
            .set(self.connect.get() + now.saturating_duration_since(started));
        self.wait_from_at(now);
    }

    /// The self-time marks: connect time, the upstream's turn, the response head.
    pub fn phase_marks(&self) -> (Duration, Option<Instant>, Option<Instant>) {
        (self.connect.get(), self.wait_from.get(), self.head_at.get())
    }

    /// When the client's request arrived whole (`%REQUEST_DURATION%`).
    pub fn completed_at(&self) -> Option<Instant> {
        self.completed_at.get()
    }

    /// Whether the client's request arrived whole.
    pub fn request_complete(&self) -> bool {
        self.request_complete.get()
    }

    /// A response head with `status` went to the client. Its mark is the instant of
    /// the poll that found it (`rt::poll_clock`), a byte move's stamp being due then too.
    pub fn head_sent(&self, status: u16) {
        self.status.set(status);
        let now = crate::rt::poll_clock::now();
        self.last.set(now);
        if self.head_at.get().is_none() {
            self.head_at.set(Some(now));
        }
    }

    /// When the first response head went to the client.
    pub fn head_at(&self) -> Option<Instant> {
        self.head_at.get()
    }

    /// The status of the response head sent, 0 if none was.
    pub fn status(&self) -> u16 {
        self.status.get()
    }

    pub fn bytes_received(&self) -> u64 {
        self.received.get()
    }

    pub fn bytes_sent(&self) -> u64 {
        self.sent.get()
    }

    /// The earliest instant a running clock runs out (`None`: none runs).
    pub fn next_expiry(&self) -> Option<Instant> {
        let idle_at = self.first_idle().map(|(at, _)| at);
        [
            self.route.get(),
            idle_at,
            self.duration_at,
            self.upstream_at.get(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The route, duration or try bound clock that has run out by `now`, the earliest
    /// first (the route clock on a tie).
    fn fixed_expired(&self, now: Instant) -> Option<Expiry> {
        [
            (self.route.get(), Expiry::Route),
            (self.duration_at, Expiry::Duration),
            (self.upstream_at.get(), Expiry::UpstreamDuration),
        ]
        .into_iter()
        .filter_map(|(at, e)| at.filter(|at| now >= *at).map(|at| (at, e)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, e)| e)
    }

    /// The time left until the next clock runs out (`None`: no clock runs), for a
    /// socket timeout. Zero when one already ran out.
    pub fn time_left(&self) -> Option<Duration> {
        self.next_expiry()
            .map(|at| at.saturating_duration_since(crate::rt::poll_clock::now()))
    }

    /// The clock that has run out by now, if any (the route clock first).
    pub fn expired(&self) -> Option<Expiry> {
        if let Some(e) = self.fired.get() {
            return Some(e);
        }
        let now = Instant::now();
        if let Some(e) = self.fixed_expired(now) {
            return Some(e);
        }
        match self.first_idle() {
            Some((at, e)) if now >= at => Some(e),
            _ => None,
        }
    }

    /// Checks the clocks at `now`: the clock that ran out (and wakes the stream), or
    /// the next instant to look again (`None`: no clock runs).
    pub(crate) fn check(&self, now: Instant) -> Result<Option<Instant>, Expiry> {
        if let Some(e) = self.fixed_expired(now) {
            return Err(self.fire(e));
        }
        let first = self.first_idle();
        if let Some((_, e)) = first.filter(|(at, _)| now >= *at) {
            return Err(self.fire(e));
        }
        let idle_at = first.map(|(at, _)| at);
        // A route timer that has not started yet (the request is still arriving) cannot
        // run out before `now + route_timeout`: look again then, not sooner. Nothing
        // tells the sweeper when the request completes, and it need not be told: the
        // deadline it would set is never earlier than this bound.
        let pending = (!self.route_timeout.is_zero() && self.route.get().is_none())
            .then(|| now + self.route_timeout);
        Ok([
            self.route.get(),
            idle_at,
            pending,
            self.duration_at,
            self.upstream_at.get(),
        ]
        .into_iter()
        .flatten()
        .min())
    }

    /// The failure a clock that ran out stands for (its local reply before a response
    /// head; what is counted after one).
    pub(crate) fn failure(&self, e: Expiry) -> crate::http::failure::Failure {
        use crate::http::failure::Failure;
        let request_complete = self.request_complete();
        match e {
            Expiry::Route => Failure::RouteTimeout,
            Expiry::PerTryIdle => Failure::PerTryTimeout,
            Expiry::Idle => Failure::StreamIdle { request_complete },
            Expiry::Duration => Failure::MaxDuration { request_complete },
            Expiry::UpstreamDuration => Failure::UpstreamMaxDuration { request_complete },
        }
    }

    /// The route timeout ran out (its clock fired, or a wait it bounded found it past).
    pub fn route_timed_out(&self) -> bool {
        self.fired.get() == Some(Expiry::Route)
            || self.route.get().is_some_and(|r| Instant::now() >= r)
    }

    /// The clock a sweep or timer found run out, if any.
    #[cfg(test)]
    pub(crate) fn fired_clock(&self) -> Option<Expiry> {
        self.fired.get()
    }

    fn fire(&self, e: Expiry) -> Expiry {
        self.fired.set(Some(e));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        e
    }

    /// Resolves when a sweep finds a clock run out, or when a clock armed late (the
    /// per-try idle clock, the streaming try's bound) does: those have a timer of their
    /// own here, as the sweep or the timer of `run_timed` was set before they were armed.
    async fn fired(&self) -> Expiry {
        std::future::poll_fn(|cx| {
            if let Some(e) = self.fired.get() {
                return Poll::Ready(e);
            }
            if let Some(e) = self.late_timer_fired(cx) {
                return Poll::Ready(self.fire(e));
            }
            let w = match self.waker.take() {
                Some(w) if w.will_wake(cx.waker()) => w,
                _ => cx.waker().clone(),
            };
            self.waker.set(Some(w));
            Poll::Pending
        })
        .await
    }

    /// The clock armed late that has run out, if one has; else the timer is set for
    /// when one could (re-set when bytes moved the idle one on) and registered with `cx`.
    fn late_timer_fired(&self, cx: &mut std::task::Context<'_>) -> Option<Expiry> {
        self.late_at()?;
        let mut timer = self.late_timer.borrow_mut();
        // Bounded: each pass either finds the clock run out or sets a timer for a later
        // instant, which a fresh sleep does not reach at once.
        for _ in 0..4 {
            let now = Instant::now();
            let (at, e) = self.late_at()?;
            if now >= at {
                *timer = None;
                return Some(e);
            }
            if timer.as_ref().map(|(t, _)| *t) != Some(at) {
                let sleep: std::pin::Pin<Box<dyn Future<Output = ()>>> =
                    Box::pin(crate::rt::sleep(at.saturating_duration_since(now)));
                *timer = Some((at, sleep));
            }
            match timer.as_mut().map(|(_, s)| s.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => *timer = None,
                _ => return None,
            }
        }
        None
    }

    /// Runs `work` until it finishes or a sweep finds a clock run out (then `work` is
    /// dropped). For streams whose connection sweeps their clocks.
    pub fn run<F: Future>(&self, work: F) -> Race<F, impl Future<Output = Expiry> + '_> {
        Race {
            work,
            watch: self.fired(),
        }
    }

    /// Like `run`, with one timer of its own instead of a sweep: it sleeps until the
    /// next clock could run out, and sleeps again if bytes moved the idle clock on.
    pub fn run_timed<F: Future>(&self, work: F) -> Race<F, impl Future<Output = Expiry> + '_> {
        let timed = async move {
            loop {
                let now = Instant::now();
                match self.check(now) {
                    Err(e) => return e,
                    Ok(Some(at)) => crate::rt::sleep(at.saturating_duration_since(now)).await,
                    // No clock runs: nothing can expire.
                    Ok(None) => std::future::pending::<()>().await,
                }
            }
        };
        // The per-try idle clock, armed later than this timer was set, is watched by
        // `fired`.
        let watch = futures_lite::future::or(timed, self.fired());
        Race { work, watch }
    }
}

pin_project_lite::pin_project! {
    /// `work` raced against a clock (`watch`), `work` polled first. A named future
    /// rather than an `async` block around `work`: a generator that takes a future by
    /// value and awaits it keeps two copies of it (the argument and the awaited value),
    /// `futures_lite::future::or` of such blocks a third, and the proxying futures it
    /// wraps are kilobytes, copied whenever the stream's future moves.
    pub(crate) struct Race<W, E> {
        #[pin]
        work: W,
        #[pin]
        watch: E,
    }
}

impl<W: Future, E: Future<Output = Expiry>> Future for Race<W, E> {
    type Output = Result<W::Output, Expiry>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.work.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        this.watch.poll(cx).map(Err)
    }
}

#[cfg(test)]
#[path = "clock_tests.rs"]
mod tests;
