//! The two clocks of a proxied HTTP/2 stream, and what the stream has done so far.
//!
//! - The route timeout (shortened by `grpc-timeout`) bounds the whole exchange: connect,
//!   request body, response head, response body.
//! - The stream idle timeout (the listener's `stream_idle_timeout`, as Envoy's; zero
//!   disables it) ends a stream that moved no byte in either direction for that long,
//!   whatever it waits for: client DATA, send window, the upstream. Before the response
//!   head it is a `408` while the request is still arriving, a `504` once it was received
//!   whole (Envoy's `maybeRequestTimeoutCode`).
//!
//! No stream owns a timer: a glommio timer per stream cost the HTTP/2 path about a tenth
//! of its CPU per request (measured in the load tests). Each stream registers its clocks
//! with its connection's [`Clocks`]; the connection task, which already keeps a timer
//! for its own clocks, arms it for the earliest stream deadline too and sweeps the
//! streams when it fires. Moving bytes only stores a timestamp, so a busy stream costs
//! nothing per DATA frame; a deadline that moved is found at the sweep and re-noted.
//! The connection task sleeps until its earliest deadline and no longer: a stream that
//! registers an earlier deadline, and anything else that changes what the connection
//! waits for, wakes it ([`Clocks::poke`]), so an idle connection arms no timer it does
//! not need (issue 12).
//! The proxying future runs under `run`; when a
//! clock expires that future is dropped (which closes its upstream connection or resets
//! its upstream stream), and `Progress` tells the caller whether a response head already
//! went out: a local reply if not, a RST_STREAM if so.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Which clock ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// The route timeout: 504 `UT` before the response head, a reset after.
    Route,
    /// The stream idle timeout: 408 or 504 `SI` before the response head, a reset after.
    Idle,
}

/// Deadlines and progress of one stream, shared by reference with the proxying future.
pub(crate) struct Progress {
    route: Option<Instant>,
    /// Zero: no idle clock.
    idle: Duration,
    last: Cell<Instant>,
    /// The client's request ended (END_STREAM received).
    request_complete: Cell<bool>,
    status: Cell<u16>,
    received: Cell<u64>,
    sent: Cell<u64>,
    /// Set by the connection's sweep when a clock ran out.
    fired: Cell<Option<Expiry>>,
    /// The task waiting in `run`, woken when a clock fires.
    waker: Cell<Option<Waker>>,
}

impl Progress {
    /// `route_timeout` zero: no route timeout; `idle` zero: no stream idle timeout.
    pub fn new(start: Instant, route_timeout: Duration, idle: Duration) -> Self {
        Progress {
            route: (!route_timeout.is_zero()).then(|| start + route_timeout),
            idle,
            last: Cell::new(Instant::now()),
            request_complete: Cell::new(false),
            status: Cell::new(0),
            received: Cell::new(0),
            sent: Cell::new(0),
            fired: Cell::new(None),
            waker: Cell::new(None),
        }
    }

    /// The route deadline, for socket timeouts on the way to it.
    pub fn deadline(&self) -> Option<Instant> {
        self.route
    }

    /// Something moved on the stream (a head, a frame, bytes to or from the upstream).
    pub fn touch(&self) {
        self.last.set(Instant::now());
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

    /// The client's request arrived whole (its END_STREAM was received).
    pub fn request_done(&self) {
        self.request_complete.set(true);
        self.touch();
    }

    /// Whether the client's request arrived whole.
    pub fn request_complete(&self) -> bool {
        self.request_complete.get()
    }

    /// A response head with `status` went to the client.
    pub fn head_sent(&self, status: u16) {
        self.status.set(status);
        self.touch();
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

    /// Checks the clocks at `now`: the clock that ran out (and wakes the stream), or
    /// the next instant to look again (`None`: no clock runs).
    fn check(&self, now: Instant) -> Result<Option<Instant>, Expiry> {
        if self.route.is_some_and(|r| now >= r) {
            return Err(self.fire(Expiry::Route));
        }
        let idle_at = (!self.idle.is_zero()).then(|| self.last.get() + self.idle);
        if idle_at.is_some_and(|i| now >= i) {
            return Err(self.fire(Expiry::Idle));
        }
        Ok(match (self.route, idle_at) {
            (Some(r), Some(i)) => Some(r.min(i)),
            (r, i) => r.or(i),
        })
    }

    fn fire(&self, e: Expiry) -> Expiry {
        self.fired.set(Some(e));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        e
    }

    /// Resolves when the connection's sweep finds a clock run out.
    async fn expired(&self) -> Expiry {
        std::future::poll_fn(|cx| match self.fired.get() {
            Some(e) => Poll::Ready(e),
            None => {
                let w = match self.waker.take() {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                self.waker.set(Some(w));
                Poll::Pending
            }
        })
        .await
    }

    /// Runs `work` until it finishes or a clock runs out (then `work` is dropped).
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, Expiry> {
        futures_lite::future::or(async { Ok(work.await) }, async {
            Err(self.expired().await)
        })
        .await
    }
}

/// The stream clocks of one HTTP/2 connection, swept by the connection task.
#[derive(Default)]
pub(crate) struct Clocks {
    /// Streams whose clocks run; a slot is freed when its stream ends (`Registered`).
    streams: RefCell<Vec<Option<Rc<Progress>>>>,
    free: RefCell<Vec<usize>>,
    /// The earliest instant a registered clock may run out (`None`: none runs).
    next: Cell<Option<Instant>>,
    /// Set by `poke`, taken by the connection task's `sleep`.
    poked: Cell<bool>,
    /// The connection task, while it sleeps.
    waker: Cell<Option<Waker>>,
}

/// A stream's registration; dropping it (when the stream ends) frees its slot.
pub(crate) struct Registered<'c> {
    clocks: &'c Clocks,
    slot: Option<usize>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            if let Some(s) = self.clocks.streams.borrow_mut().get_mut(i) {
                *s = None;
            }
            let mut free = self.clocks.free.borrow_mut();
            free.push(i);
            // The last stream ended: no deadline is left to sweep for.
            if free.len() == self.clocks.streams.borrow().len() {
                self.clocks.next.set(None);
            }
        }
    }
}

impl Clocks {
    /// Starts watching a stream's clocks until the returned registration is dropped.
    pub fn register(&self, p: &Rc<Progress>) -> Registered<'_> {
        let at = match p.check(Instant::now()) {
            Ok(Some(at)) => at,
            _ => {
                return Registered {
                    clocks: self,
                    slot: None,
                }
            }
        };
        let mut streams = self.streams.borrow_mut();
        let slot = match self.free.borrow_mut().pop() {
            Some(i) => {
                if let Some(s) = streams.get_mut(i) {
                    *s = Some(p.clone());
                }
                i
            }
            None => {
                streams.push(Some(p.clone()));
                streams.len() - 1
            }
        };
        drop(streams);
        match self.next.get() {
            Some(n) if n <= at => {}
            _ => {
                // Earlier than the connection task sleeps for: have it look again.
                self.next.set(Some(at));
                self.poke();
            }
        }
        Registered {
            clocks: self,
            slot: Some(slot),
        }
    }

    /// When the connection should sweep next, if any clock runs.
    pub fn next(&self) -> Option<Instant> {
        self.next.get()
    }

    /// Wakes the connection task from `sleep` to look at its clocks again.
    pub fn poke(&self) {
        self.poked.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Registers the connection task to be woken by `poke`; true if it was poked since
    /// it last looked (and clears that).
    pub fn poll_poked(&self, waker: &Waker) -> bool {
        if self.poked.replace(false) {
            return true;
        }
        let w = match self.waker.take() {
            Some(w) if w.will_wake(waker) => w,
            _ => waker.clone(),
        };
        self.waker.set(Some(w));
        false
    }

    /// Fires every clock that ran out by `now`; notes when to look again.
    pub fn sweep(&self, now: Instant) {
        let mut next: Option<Instant> = None;
        for p in self.streams.borrow().iter().flatten() {
            if let Ok(Some(at)) = p.check(now) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.next.set(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_fires_what_ran_out_and_wakes_it() {
        let clocks = Clocks::default();
        let start = Instant::now();
        let p = Rc::new(Progress::new(
            start,
            Duration::from_millis(50),
            Duration::ZERO,
        ));
        let q = Rc::new(Progress::new(
            start,
            Duration::ZERO,
            Duration::from_secs(60),
        ));
        let _rp = clocks.register(&p);
        let rq = clocks.register(&q);
        assert_eq!(clocks.next(), Some(start + Duration::from_millis(50)));
        clocks.sweep(start + Duration::from_millis(10));
        assert_eq!(p.fired.get(), None);
        clocks.sweep(start + Duration::from_millis(60));
        assert_eq!(p.fired.get(), Some(Expiry::Route));
        assert_eq!(q.fired.get(), None);
        // The route clock is gone; the idle clock is next.
        assert!(clocks
            .next()
            .is_some_and(|n| n >= start + Duration::from_secs(59)));
        drop(rq);
        clocks.sweep(start + Duration::from_millis(70));
        assert_eq!(clocks.next(), None);
        assert_eq!(
            clocks.free.borrow().len(),
            1,
            "the ended stream's slot is reused"
        );
    }

    #[test]
    fn an_earlier_deadline_pokes_the_connection_and_the_last_stream_clears_them() {
        let clocks = Clocks::default();
        let waker = std::task::Waker::noop();
        assert!(!clocks.poll_poked(waker));
        let start = Instant::now();
        let late = Rc::new(Progress::new(
            start,
            Duration::from_secs(60),
            Duration::ZERO,
        ));
        let early = Rc::new(Progress::new(start, Duration::from_secs(5), Duration::ZERO));
        let r_late = clocks.register(&late);
        assert!(clocks.poll_poked(waker), "a first deadline is news");
        let r_early = clocks.register(&early);
        assert!(clocks.poll_poked(waker), "an earlier deadline is news");
        let again = Rc::new(Progress::new(
            start,
            Duration::from_secs(30),
            Duration::ZERO,
        ));
        let r_again = clocks.register(&again);
        assert!(!clocks.poll_poked(waker), "a later one is not");
        drop((r_late, r_early));
        assert!(clocks.next().is_some(), "a stream is left");
        drop(r_again);
        assert_eq!(clocks.next(), None, "no stream left: nothing to sweep for");
    }
}
