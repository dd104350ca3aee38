//! Tasks: monoio's, with glommio's contract that dropping the handle cancels the task.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// What a `Task` handle and its task share: the handle's drop asks the task to end.
#[derive(Default)]
struct Cancel {
    asked: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

/// A spawned task. Dropping it cancels the task at its next await point; awaiting it
/// gives the task's output; `detach` lets it run to its end.
#[must_use = "a dropped Task is cancelled: detach() it to let it run"]
pub struct Task<T> {
    join: Option<monoio::task::JoinHandle<Option<T>>>,
    cancel: Rc<Cancel>,
}

impl<T> Task<T> {
    /// Lets the task run to its end with no handle left.
    pub fn detach(mut self) {
        self.join = None;
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if self.join.take().is_some() {
            self.cancel.asked.set(true);
            if let Some(w) = self.cancel.waker.take() {
                w.wake();
            }
        }
    }
}

impl<T> Future for Task<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(join) = self.join.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(join).poll(cx) {
            Poll::Ready(Some(v)) => {
                self.join = None;
                Poll::Ready(v)
            }
            // Only a dropped handle cancels, and this one is alive: cannot happen.
            Poll::Ready(None) => Poll::Pending,
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The spawned future, ended early once its handle is dropped.
struct Cancellable<F> {
    fut: F,
    cancel: Rc<Cancel>,
}

impl<F: Future> Future for Cancellable<F> {
    type Output = Option<F::Output>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of `self`.
        let this = unsafe { self.get_unchecked_mut() };
        if this.cancel.asked.get() {
            return Poll::Ready(None);
        }
        let waker = this.cancel.waker.take();
        this.cancel.waker.set(match waker {
            Some(w) if w.will_wake(cx.waker()) => Some(w),
            _ => Some(cx.waker().clone()),
        });
        // SAFETY: as above.
        unsafe { Pin::new_unchecked(&mut this.fut) }
            .poll(cx)
            .map(Some)
    }
}

/// Runs `f` on the current executor.
pub fn spawn_local<T: 'static>(f: impl Future<Output = T> + 'static) -> Task<T> {
    let cancel = Rc::new(Cancel::default());
    // Every task's poll is one of `poll_clock`'s.
    let join = monoio::spawn(crate::rt::poll_clock::Polled(Cancellable {
        fut: f,
        cancel: cancel.clone(),
    }));
    Task {
        join: Some(join),
        cancel,
    }
}

/// Runs `f` on the current executor to its end with no handle: what
/// `spawn_local(f).detach()` does, without the cancel state only a handle uses (one
/// allocation and a waker check per poll fewer, for a task per HTTP/2 stream).
pub fn spawn_detached(f: impl Future<Output = ()> + 'static) {
    // monoio detaches a task whose join handle is dropped.
    drop(monoio::spawn(crate::rt::poll_clock::Polled(f)));
}
