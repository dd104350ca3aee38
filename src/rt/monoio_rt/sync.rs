//! A semaphore for tasks of one executor.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Permits handed out in order of asking, on one executor.
pub struct Semaphore {
    available: Cell<u64>,
    waiting: RefCell<VecDeque<Waker>>,
}

/// Permits held; given back when dropped.
pub struct Permit<'a> {
    sem: &'a Semaphore,
    n: u64,
}

impl Semaphore {
    pub fn new(permits: u64) -> Self {
        Semaphore {
            available: Cell::new(permits),
            waiting: RefCell::new(VecDeque::new()),
        }
    }

    /// Waits until `n` permits are free and takes them.
    pub async fn acquire_permit(&self, n: u64) -> std::io::Result<Permit<'_>> {
        poll_fn(|cx| {
            let free = self.available.get();
            if free >= n {
                self.available.set(free - n);
                Poll::Ready(Ok(Permit { sem: self, n }))
            } else {
                self.waiting.borrow_mut().push_back(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.sem
            .available
            .set(self.sem.available.get().saturating_add(self.n));
        let woken: Vec<Waker> = self.sem.waiting.borrow_mut().drain(..).collect();
        for w in woken {
            w.wake();
        }
    }
}
