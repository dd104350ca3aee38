//! The token buckets of the local rate-limit filter, with Envoy 1.40's arithmetic: a
//! bucket starts full, refills continuously at `tokens_per_fill / fill_interval` up to
//! `max_tokens`, and a request takes one whole token.
//!
//! A bucket's state is one instant, `t0`: the bucket holds
//! `min(max_tokens, (now - t0) * rate)` tokens, and taking `k` tokens moves `t0` forward
//! by the time `k` tokens take to refill (Envoy's `AtomicTokenBucketImpl` keeps the same
//! state as a double; here it is integer nanoseconds, and the time of a token is rounded
//! up so that rounding can only ever admit less, never more).
//!
//! [`SharedBucket`] is the process-wide bucket (an `AtomicI64`, shared by the workers
//! through the config snapshot); workers never take single tokens from it on the request
//! path but [`Lease`]s: a batch of tokens taken with one compare-and-swap, used from a
//! per-core `Lease` without any shared access, and credited back to the bucket (in the
//! same compare-and-swap as the next batch) when it expires unused. See
//! docs/rate-limit.md for the bounds this gives. [`LocalBucket`] is the same bucket for
//! one connection (`local_rate_limit_per_downstream_connection`): it never leaves its
//! worker, so it is a `Cell`.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Most tokens one lease takes.
pub const LEASE_MAX: u64 = 64;
/// A lease takes at most this fraction (1/n) of what the bucket holds, so that near
/// exhaustion leases shrink to one token and no core sits on tokens another needs.
pub const LEASE_SHARE: u64 = 16;
/// Bounds of a lease's lifetime: one token's refill time, clamped to these.
pub const LEASE_TTL_MIN: Duration = Duration::from_millis(1);
pub const LEASE_TTL_MAX: Duration = Duration::from_secs(1);

/// Nanoseconds on the process's monotonic clock (since the first call).
pub fn now_ns() -> i64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let e = EPOCH.get_or_init(Instant::now);
    i64::try_from(e.elapsed().as_nanos()).unwrap_or(i64::MAX / 4)
}

/// A token bucket's configuration (Envoy's `TokenBucket`), checked: every field > 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub max_tokens: u64,
    pub tokens_per_fill: u64,
    pub fill_interval: Duration,
}

impl Spec {
    fn interval_ns(&self) -> u128 {
        self.fill_interval.as_nanos().max(1)
    }

    /// Nanoseconds `k` tokens take to refill, rounded up (bounded so sums never overflow).
    pub fn cost(&self, k: u64) -> i64 {
        let n = u128::from(k) * self.interval_ns();
        let per = u128::from(self.tokens_per_fill.max(1));
        i64::try_from(n.div_ceil(per))
            .unwrap_or(i64::MAX / 8)
            .min(i64::MAX / 8)
    }

    /// Whole tokens that `elapsed` nanoseconds of refill make, capped at `max_tokens`.
    pub fn tokens(&self, elapsed: i64) -> u64 {
        let Ok(e) = u128::try_from(elapsed) else {
            return 0;
        };
        let t = e * u128::from(self.tokens_per_fill) / self.interval_ns();
        u64::try_from(t).unwrap_or(u64::MAX).min(self.max_tokens)
    }

    /// Time for an empty bucket to become full.
    fn full(&self) -> i64 {
        self.cost(self.max_tokens)
    }

    /// Fill rate in tokens per second (to order descriptors as Envoy does).
    pub fn rate(&self) -> f64 {
        self.tokens_per_fill as f64 / self.fill_interval.as_secs_f64().max(1e-9)
    }

    /// Envoy's `x-ratelimit-reset`: 0 while a token is left, else the whole seconds of
    /// one token's refill time (`nextTokenAvailable`, milliseconds rounded up, divided
    /// down to seconds).
    pub fn reset_seconds(&self, remaining: u64) -> u64 {
        if remaining >= 1 {
            return 0;
        }
        let ms = (self.cost(1) as u64).div_ceil(1_000_000);
        ms / 1000
    }

    /// How long an unused lease may be kept: one token's refill time, clamped.
    pub fn lease_ttl(&self) -> i64 {
        let min = LEASE_TTL_MIN.as_nanos() as i64;
        let max = LEASE_TTL_MAX.as_nanos() as i64;
        self.cost(1).clamp(min, max)
    }
}

/// What taking from a bucket gave: tokens taken, and whole tokens left after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Took {
    pub got: u64,
    pub left: u64,
    /// Nanoseconds until one more whole token is in the bucket.
    pub wait: i64,
}

/// The arithmetic of one take on state `t0` at `now`: `returning` tokens are credited
/// first (an expired lease), then `want(available)` tokens are taken (at most what is
/// available). Returns the new `t0` (`None`: nothing changes) and what was taken.
fn step(
    spec: &Spec,
    t0: i64,
    now: i64,
    returning: u64,
    want: impl Fn(u64) -> u64,
) -> (Option<i64>, Took) {
    let base = t0.saturating_sub(spec.cost(returning));
    let elapsed = now.saturating_sub(base).clamp(0, spec.full());
    let avail = spec.tokens(elapsed);
    let got = want(avail).min(avail);
    let rest = (elapsed - spec.cost(got)).max(0);
    let took = Took {
        got,
        left: avail - got,
        wait: (spec.cost(avail - got + 1) - rest).max(0),
    };
    if got == 0 && returning == 0 {
        return (None, took);
    }
    // `avail >= got` means `elapsed >= cost(got)`: the refill time left is never negative.
    (Some(now - rest), took)
}

/// The process-wide bucket: one atomic, written once per lease.
#[derive(Debug)]
pub struct SharedBucket {
    pub spec: Spec,
    t0: AtomicI64,
}

impl SharedBucket {
    /// A full bucket (Envoy's start state).
    pub fn new(spec: Spec) -> SharedBucket {
        SharedBucket {
            spec,
            t0: AtomicI64::new(now_ns() - spec.full()),
        }
    }

    /// Credits `returning` tokens and takes up to `want(available)`, in one
    /// compare-and-swap (retried only when another core wrote in between).
    pub fn take(&self, now: i64, returning: u64, want: impl Fn(u64) -> u64) -> Took {
        let mut old = self.t0.load(Ordering::Relaxed);
        loop {
            let (new, took) = step(&self.spec, old, now, returning, &want);
            let Some(new) = new else {
                return took;
            };
            match self
                .t0
                .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return took,
                Err(actual) => old = actual,
            }
        }
    }

    /// Whole tokens in the bucket now (a load; for `x-ratelimit-remaining`).
    pub fn available(&self, now: i64) -> u64 {
        step(&self.spec, self.t0.load(Ordering::Relaxed), now, 0, |_| 0)
            .1
            .left
    }
}

/// One core's lease on a [`SharedBucket`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Lease {
    /// Tokens taken from the bucket and not used yet.
    held: u64,
    /// The held tokens go back to the bucket at this instant.
    expires: i64,
    /// The bucket was empty when last asked; it is not asked again before this.
    empty_until: i64,
}

impl Lease {
    /// Takes one token for a request at `now`: from the lease while it lasts, else
    /// with one compare-and-swap on the bucket (which returns the expired rest and
    /// takes the next batch).
    pub fn acquire(&mut self, bucket: &SharedBucket, now: i64) -> bool {
        if self.held > 0 && now < self.expires {
            self.held -= 1;
            return true;
        }
        if self.held == 0 && now < self.empty_until {
            return false;
        }
        let returning = std::mem::take(&mut self.held);
        let took = bucket.take(now, returning, |avail| {
            if avail == 0 {
                0
            } else {
                (avail / LEASE_SHARE).clamp(1, LEASE_MAX)
            }
        });
        if took.got == 0 {
            // Ask again when the next token is due, or sooner when a lease another
            // core holds could have been returned.
            self.empty_until = now + took.wait.min(bucket.spec.lease_ttl());
            return false;
        }
        self.held = took.got - 1;
        self.expires = now + bucket.spec.lease_ttl();
        true
    }

    /// Tokens this core holds (valid at `now`).
    pub fn held(&self, now: i64) -> u64 {
        if now < self.expires {
            self.held
        } else {
            0
        }
    }
}

/// A bucket of one connection: the same arithmetic, no sharing.
#[derive(Debug)]
pub struct LocalBucket {
    pub spec: Spec,
    t0: Cell<i64>,
}

impl LocalBucket {
    pub fn new(spec: Spec, now: i64) -> LocalBucket {
        LocalBucket {
            spec,
            t0: Cell::new(now - spec.full()),
        }
    }

    /// Takes one token; `Took::left` is what remains.
    pub fn acquire(&self, now: i64) -> Took {
        let (new, took) = step(&self.spec, self.t0.get(), now, 0, |a| a.min(1));
        if let Some(t) = new {
            self.t0.set(t);
        }
        took
    }
}

/// One connection's buckets (kept in the connection's filter state,
/// `filter::ConnState`), made when a per-connection limiter first sees the connection:
/// one allocation per connection and bucket, as Envoy's filter state.
#[derive(Default)]
pub struct PerConnection(RefCell<Vec<(u64, LocalBucket)>>);

impl PerConnection {
    /// One token from this connection's bucket `id` (made with `spec` when first used);
    /// whether it was got, and the tokens left.
    pub fn acquire(&self, id: u64, spec: Spec, now: i64) -> (bool, u64) {
        let mut c = self.0.borrow_mut();
        let i = match c.iter().position(|(k, _)| *k == id) {
            Some(i) => i,
            None => {
                c.push((id, LocalBucket::new(spec, now)));
                c.len() - 1
            }
        };
        match c.get(i) {
            Some((_, b)) => {
                let t = b.acquire(now);
                (t.got == 1, t.left)
            }
            None => (false, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn spec(max: u64, per: u64, secs: u64) -> Spec {
        Spec {
            max_tokens: max,
            tokens_per_fill: per,
            fill_interval: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_bucket_starts_full_and_refills_continuously() {
        let s = spec(3, 3, 60);
        let b = LocalBucket {
            spec: s,
            t0: Cell::new(-s.full()),
        };
        let left: Vec<u64> = (0..4).map(|_| b.acquire(0)).map(|t| t.left).collect();
        assert_eq!(left, vec![2, 1, 0, 0]);
        assert_eq!(b.acquire(0).got, 0);
        // One token per 20 s.
        assert_eq!(b.acquire(19 * S).got, 0);
        assert_eq!(b.acquire(20 * S).got, 1);
        assert_eq!(b.acquire(20 * S).got, 0);
        // Never more than max_tokens, however long it rests.
        let later = 3600 * S;
        let got: u64 = (0..10).map(|_| b.acquire(later).got).sum();
        assert_eq!(got, 3);
        assert_eq!(s.reset_seconds(0), 20);
        assert_eq!(s.reset_seconds(1), 0);
    }

    #[test]
    fn leases_never_admit_more_than_the_bucket_holds() {
        let s = spec(100, 1, 3600);
        let b = SharedBucket {
            spec: s,
            t0: AtomicI64::new(-s.full()),
        };
        let mut cores = [Lease::default(); 4];
        let mut admitted = 0;
        // Interleaved requests on four cores at one instant: exactly the budget.
        for i in 0..1000 {
            if cores[i % 4].acquire(&b, 0) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 100);
        assert!(cores.iter().all(|c| c.held(0) == 0));
    }

    #[test]
    fn an_expired_lease_goes_back_to_the_bucket() {
        let s = spec(1000, 1, 3600);
        let b = SharedBucket {
            spec: s,
            t0: AtomicI64::new(-s.full()),
        };
        let mut a = Lease::default();
        assert!(a.acquire(&b, 0));
        let held = a.held(0);
        assert_eq!(held, 1000 / LEASE_SHARE - 1);
        assert_eq!(b.available(0), 1000 - held - 1);
        // After its lifetime, the next take credits the rest back first.
        let t = s.lease_ttl();
        assert!(a.acquire(&b, t));
        assert_eq!(a.held(t) + b.available(t) + 2, 1000);
    }

    #[test]
    fn an_empty_bucket_is_not_asked_again_before_a_token_is_due() {
        let s = spec(1, 1, 1);
        let b = SharedBucket {
            spec: s,
            t0: AtomicI64::new(-s.full()),
        };
        let mut a = Lease::default();
        assert!(a.acquire(&b, 0));
        assert!(!a.acquire(&b, 1));
        assert_eq!(a.empty_until, S);
        assert!(!a.acquire(&b, S - 1));
        assert!(a.acquire(&b, S));
    }

    #[test]
    fn costs_round_up_and_saturate() {
        let s = Spec {
            max_tokens: 3,
            tokens_per_fill: 3,
            fill_interval: Duration::from_nanos(10),
        };
        assert_eq!(s.cost(1), 4);
        assert_eq!(s.tokens(3), 0);
        assert_eq!(s.tokens(4), 1);
        let huge = Spec {
            max_tokens: u64::from(u32::MAX),
            tokens_per_fill: 1,
            fill_interval: Duration::from_secs(u64::from(u32::MAX)),
        };
        assert!(huge.cost(huge.max_tokens) > 0);
        assert_eq!(huge.tokens(-5), 0);
    }
}
