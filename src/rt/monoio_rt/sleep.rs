//! `rt::sleep` on monoio: a sleep that is small until it has to wait.
//!
//! monoio's own `Sleep` holds its timer entry inline: 640 bytes aligned to 128. Every
//! future that may sleep (a retry's back-off, a fault's delay, a per-try clock) carried
//! that size and alignment in its state even when it never slept, and the HTTP/2 stream
//! future that nests them grew to 12.7 KiB, copied whole into its box for every stream
//! (docs/benchmarks/runtime-prototypes.md). This one is a deadline and a pointer; the
//! timer is boxed only when the sleep really waits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::time::Instant;

/// Completes at its deadline.
pub struct Sleep {
    at: Instant,
    timer: Option<Pin<Box<monoio::time::Sleep>>>,
}

/// Completes once `d` has passed. A duration past what the clock can hold (a peer's
/// fault delay or grpc-timeout can ask for one) sleeps for thirty years instead.
pub fn sleep(d: Duration) -> Sleep {
    Sleep {
        at: after(d),
        timer: None,
    }
}

/// The instant `d` from now, but at most thirty years from now: monoio's timer wheel
/// counts milliseconds from its start in a `u64` and panics on a deadline past that,
/// which a peer's `x-envoy-upstream-stream-duration-ms` or `grpc-timeout` can ask for
/// even when `Instant` itself could hold it.
pub(super) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

/// monoio's own "far future".
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.at;
        let timer = match &mut self.timer {
            Some(t) => t,
            None if Instant::now() >= at => return Poll::Ready(()),
            None => self.timer.insert(Box::pin(monoio::time::sleep_until(at))),
        };
        timer.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_is_small_and_plainly_aligned_until_it_waits() {
        let s = sleep(Duration::from_millis(1));
        assert!(std::mem::size_of_val(&s) <= 32);
        assert_eq!(std::mem::align_of_val(&s), 8);
    }

    #[test]
    fn a_duration_past_the_clock_does_not_panic() {
        let s = sleep(Duration::MAX);
        assert!(s.at > Instant::now() + Duration::from_secs(86_400 * 365));
    }

    #[test]
    fn a_deadline_the_clock_holds_but_the_timer_wheel_cannot_is_capped_and_armed() {
        super::super::executor::block_on(async {
            // u64::MAX milliseconds: an `Instant` holds it, monoio's wheel panicked on it.
            let mut s = std::pin::pin!(sleep(Duration::from_millis(u64::MAX)));
            assert!(s.at <= Instant::now() + FAR);
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            assert!(s.as_mut().poll(&mut cx).is_pending());
        });
    }

    #[test]
    fn it_completes_once_its_time_has_passed() {
        super::super::executor::block_on(async {
            let start = Instant::now();
            sleep(Duration::from_millis(5)).await;
            assert!(start.elapsed() >= Duration::from_millis(5));
            // Already due: no timer.
            sleep(Duration::ZERO).await;
        });
    }
}
