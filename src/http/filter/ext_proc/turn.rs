//! One message in flight on a processing stream at a time. A request whose body streams
//! to the processor while its response comes back (an HTTP/2 upstream answering a
//! streaming call before the request's end) has two sides that each send a message
//! and wait for its answer on the one gRPC stream; the answers come in the order the
//! messages went, so each side waits for its turn ([`Turn::take`]) before it sends.
//! The turn is given back when the exchange ends, also when its future is dropped.

use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};

#[derive(Default)]
pub(super) struct Turn {
    busy: Cell<bool>,
    waiting: RefCell<Vec<Waker>>,
}

/// The turn, held; given back on drop.
pub(super) struct Held<'t>(&'t Turn);

impl Turn {
    /// Waits until no exchange is in flight, then holds the turn.
    pub(super) async fn take(&self) -> Held<'_> {
        std::future::poll_fn(|cx| {
            if !self.busy.get() {
                return Poll::Ready(());
            }
            if let Ok(mut w) = self.waiting.try_borrow_mut() {
                if !w.iter().any(|k| k.will_wake(cx.waker())) {
                    w.push(cx.waker().clone());
                }
            }
            Poll::Pending
        })
        .await;
        self.busy.set(true);
        Held(self)
    }

    /// An exchange is in flight (the stream is out of its cell, lent to it).
    pub(super) fn busy(&self) -> bool {
        self.busy.get()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.busy.set(false);
        let woken = self
            .0
            .waiting
            .try_borrow_mut()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        for w in woken {
            w.wake();
        }
    }
}
