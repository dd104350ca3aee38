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

/// The instant `d` from now, or thirty years from now if the clock cannot hold it.
pub(super) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
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
