//! The fault filter's per-stream state after the request head: the response rate limit
//! it injected (Envoy's `response_rate_limit`, paced on the response-body hook,
//! `Chain::on_response_data`) and the active fault the stream holds until it ends.
//!
//! It lives in the stream's `SetHeaders` store (the one per-stream storage the
//! connection manager lends the chain), so whatever ends the stream (completion, a
//! reset, a dropped connection) drops it and releases the active fault.
//!
//! The pacing follows Envoy's `StreamRateLimiter`: a token bucket of `limit_kbps * 1024`
//! tokens (one per byte), refilled at that many per second, holding 50 ms worth when the
//! limit is set up (on the request head), and drained every 50 ms (its fill interval)
//! by the bytes waiting. Envoy releases a part of a buffered chunk each tick; here a
//! chunk goes on whole, at the tick Envoy would release its last byte: the bytes arrive
//! in the pieces the upstream sent, no sooner overall than Envoy lets them. The wait is
//! a timer on the worker: the stream waits, the worker does not.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::observe::stats::Counter;

/// Envoy's `StreamRateLimiter::DefaultFillInterval`.
pub const FILL_INTERVAL: Duration = Duration::from_millis(50);

/// One active fault (Envoy's `active_faults` gauge, process-wide and per worker),
/// released when dropped.
pub struct ActiveFault {
    pub(crate) process: Arc<AtomicU64>,
    pub(crate) worker: Option<Rc<Counter>>,
}

impl Drop for ActiveFault {
    fn drop(&mut self) {
        self.process.fetch_sub(1, Ordering::Relaxed);
        if let Some(c) = &self.worker {
            c.dec();
        }
    }
}

impl std::fmt::Debug for ActiveFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActiveFault")
    }
}

/// A response rate limit's token bucket.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    /// Bytes per second (and the bucket's size).
    rate: f64,
    /// Tokens now; negative while bytes already let through wait for theirs.
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A bucket for `kbps` (KiB per second), set up at `now` with 50 ms worth of tokens.
    pub fn new(kbps: u64, now: Instant) -> Bucket {
        let rate = kbps.saturating_mul(1024) as f64;
        Bucket {
            rate,
            tokens: rate * FILL_INTERVAL.as_secs_f64(),
            last: now,
        }
    }

    /// Takes `n` bytes' tokens at `now`: how long the chunk must wait before it goes
    /// (zero when the bucket holds enough), in whole fill intervals as Envoy's timer
    /// runs.
    pub fn take(&mut self, n: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let secs = -self.tokens / self.rate;
        let tick = FILL_INTERVAL.as_secs_f64();
        let ticks = (secs / tick).ceil().min(1e9);
        FILL_INTERVAL.saturating_mul(ticks as u32)
    }
}

/// What the fault filter keeps for one stream after its request head.
#[derive(Debug, Default)]
pub struct FaultStream {
    /// The response rate limit, when one was injected.
    pub bucket: Option<Bucket>,
    /// The stream's active fault, held until the stream ends.
    pub active: Option<ActiveFault>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_50ms_through_then_paces_at_the_rate() {
        let t0 = Instant::now();
        // 1 KiB/s: 51.2 bytes at the start, 1024 a second after.
        let mut b = Bucket::new(1, t0);
        assert_eq!(b.take(51, t0), Duration::ZERO);
        // 1024 more bytes need a second, rounded up to whole ticks.
        let wait = b.take(1024, t0);
        assert_eq!(wait, Duration::from_millis(1000));
        // Sent at t0 + 1s: the bucket is back near zero, the next byte waits a tick.
        let t1 = t0 + wait;
        assert_eq!(b.take(1, t1), FILL_INTERVAL);
        // An idle stream fills up to one second's worth, no more.
        let later = t1 + Duration::from_secs(10);
        assert_eq!(b.take(1024, later), Duration::ZERO);
        assert!(b.take(1, later) > Duration::ZERO);
    }

    #[test]
    fn huge_limits_never_wait() {
        let t0 = Instant::now();
        let mut b = Bucket::new(u64::MAX, t0);
        assert_eq!(b.take(1 << 40, t0), Duration::ZERO);
    }
}
