//! A worker's alarm for housekeeping: work that falls due later (handing an access-log
//! batch to the flush thread, closing pooled upstream connections that aged out) asks
//! the alarm to ring at an instant, and the worker's housekeeping task
//! (`runtime/worker.rs`) sleeps until the earliest instant asked for.
//!
//! Nothing asks while the worker has no work, so no timer is armed then and the executor
//! sleeps in the kernel until a socket or a control message wakes it (issue 12: idle
//! costs nothing). Off the request path except [`Alarm::ring_at`], which the access log
//! calls once per batch and the pool once per idle period: a `Cell` compare when an
//! earlier ring is already set, a task wake-up when not.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::Instant;

/// One timer's worth of deadlines: only the earliest one asked for is kept. Whoever
/// asked must ask again when it rings if it still has work pending (see the pool's
/// `evict_expired`).
#[derive(Default)]
pub struct Alarm {
    due: Cell<Option<Instant>>,
    /// The task waiting in [`Alarm::rung`].
    waker: Cell<Option<Waker>>,
}

impl Alarm {
    /// Rings at `at`, or earlier if an earlier ring was already asked for.
    pub fn ring_at(&self, at: Instant) {
        if self.due.get().is_some_and(|d| d <= at) {
            return;
        }
        self.due.set(Some(at));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Resolves once the earliest instant asked for has passed, and forgets it. With
    /// nothing asked for it waits without a timer.
    pub async fn rung(&self) {
        loop {
            let seen = self.due.get();
            let Some(at) = seen else {
                self.changed(None).await;
                continue;
            };
            let now = Instant::now();
            if now >= at {
                self.due.set(None);
                return;
            }
            // Sleep until `at`, unless an earlier ring is asked for meanwhile.
            futures_lite::future::or(crate::rt::sleep(at - now), self.changed(seen)).await;
        }
    }

    /// Resolves when the instant asked for is no longer `seen`.
    async fn changed(&self, seen: Option<Instant>) {
        poll_fn(|cx| {
            if self.due.get() != seen {
                return Poll::Ready(());
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
}

impl std::fmt::Debug for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarm")
            .field("due", &self.due.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;
    use std::time::Duration;

    fn on_executor<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
        crate::rt::executor::block_on(f)
    }

    #[test]
    fn rings_at_the_earliest_instant_asked_for_even_if_asked_while_sleeping() {
        on_executor(async {
            let alarm = Rc::new(Alarm::default());
            let start = Instant::now();
            alarm.ring_at(start + Duration::from_secs(30));
            let a = alarm.clone();
            // Asked for an earlier ring while the waiter sleeps towards the later one.
            crate::rt::spawn_local(async move {
                crate::rt::sleep(Duration::from_millis(10)).await;
                a.ring_at(Instant::now() + Duration::from_millis(10));
            })
            .detach();
            alarm.rung().await;
            assert!(start.elapsed() < Duration::from_secs(30));
            // Forgotten once rung: a later ask is what rings next.
            assert_eq!(alarm.due.get(), None);
            alarm.ring_at(Instant::now());
            alarm.rung().await;
        });
    }
}
