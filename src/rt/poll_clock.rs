//! A monotonic clock read at most once per task poll, for the stamps a request takes
//! many times while it moves bytes (when a byte last moved, when a pooled connection
//! went idle or was taken) and that only timeouts read.
//!
//! An HTTP/2 stream proxied to an HTTP/1 upstream read the clock about ten times, most
//! of them for such stamps within the same poll (about 33 ns each in a VM's vDSO:
//! `docs/benchmarks/README.md`, "Fewer polls, clock reads and moves per request").
//! HAProxy and Envoy likewise read their event loop's time once per loop turn for
//! timers. Here a task's poll is the turn: the first [`now`] in a poll reads the clock
//! and the rest of that poll gets the same instant, at most one poll's work
//! (microseconds) old. Outside a poll the executor's task wrappers mark (a unit test's
//! `block_on`, a thread of its own) every call reads the clock.
//!
//! What needs the time an event happened to the microsecond (a request's start and end,
//! a timer's deadline) reads `Instant::now`. The response head's mark, which ends the
//! "waiting for the upstream" phase, is this clock's: the start of the poll that found
//! the response.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

thread_local! {
    /// Inside a poll: `Some(None)` until the first read, then `Some(Some(t))`.
    static TURN: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
}

/// The time at the first call in the current task poll (a clock read outside one).
pub fn now() -> Instant {
    TURN.with(|t| match t.get() {
        Some(Some(at)) => at,
        Some(None) => {
            let at = Instant::now();
            t.set(Some(Some(at)));
            at
        }
        None => Instant::now(),
    })
}

/// Runs `f` as one poll: [`now`] reads the clock at most once inside it. Nested calls
/// start a poll of their own and give the outer one back a fresh read.
pub fn in_poll<T>(f: impl FnOnce() -> T) -> T {
    /// Ends the poll however `f` returns: a panic unwinding out of it must not leave
    /// the thread's clock frozen at that poll's instant.
    struct End(bool);
    impl Drop for End {
        fn drop(&mut self) {
            let outer = self.0;
            TURN.with(|t| t.set(outer.then_some(None)));
        }
    }
    let _end = End(TURN.with(|t| t.replace(Some(None))).is_some());
    f()
}

/// A future whose every poll is one [`in_poll`] (the executor wraps its tasks so).
pub struct Polled<F>(pub F);

impl<F: Future> Future for Polled<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the inner future is structurally pinned: never moved out of `self`.
        let inner = unsafe { self.map_unchecked_mut(|p| &mut p.0) };
        in_poll(|| inner.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_read_per_poll_and_fresh_reads_outside() {
        let a = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > a, "outside a poll every call reads the clock");
        in_poll(|| {
            let first = now();
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(now(), first, "the same poll gets the same instant");
            let inner = in_poll(now);
            assert!(inner > first, "a nested poll reads again");
            assert!(
                now() >= inner,
                "after a nested poll the outer one reads again"
            );
        });
        let after = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > after);
    }

    #[test]
    fn a_poll_that_panics_does_not_freeze_the_clock() {
        let frozen = std::panic::catch_unwind(|| {
            in_poll(|| {
                let at = now();
                std::panic::panic_any(at)
            })
        });
        let at = *frozen.unwrap_err().downcast::<Instant>().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > at, "outside a poll again: a fresh read");
    }
}
