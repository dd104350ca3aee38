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
//! Both run on one glommio timer per stream. Moving bytes only stores a timestamp; the
//! timer is re-armed lazily when it fires and finds the idle deadline moved, so a busy
//! stream costs no timer per DATA frame. The proxying future runs under `run`; when a
//! clock expires that future is dropped (which closes its upstream connection or resets
//! its upstream stream), and `Progress` tells the caller whether a response head already
//! went out: a local reply if not, a RST_STREAM if so.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::Cell;
use std::future::Future;
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

    /// Resolves when a clock runs out. One timer at a time: when it fires early (the
    /// stream moved since it was armed) it is armed again for the new deadline.
    async fn expired(&self) -> Expiry {
        loop {
            let now = Instant::now();
            if self.route.is_some_and(|r| now >= r) {
                return Expiry::Route;
            }
            let idle_at = (!self.idle.is_zero()).then(|| self.last.get() + self.idle);
            if idle_at.is_some_and(|i| now >= i) {
                return Expiry::Idle;
            }
            let wake = match (self.route, idle_at) {
                (Some(r), Some(i)) => r.min(i),
                (Some(at), None) | (None, Some(at)) => at,
                // Neither clock runs: the work alone decides.
                (None, None) => return std::future::pending().await,
            };
            glommio::timer::sleep(wake.saturating_duration_since(now)).await;
        }
    }

    /// Runs `work` until it finishes or a clock runs out (then `work` is dropped).
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, Expiry> {
        futures_lite::future::or(async { Ok(work.await) }, async {
            Err(self.expired().await)
        })
        .await
    }
}
