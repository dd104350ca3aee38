//! Crash containment: a panic while serving one connection ends that connection only.
//!
//! Every task a worker spawns for peer-driven work (a downstream connection, an HTTP/2
//! stream, an upstream HTTP/2 connection driver) runs inside [`contain`]. A panic in it
//! unwinds to here, where the task's state (sockets, buffers, pooled connections it held)
//! is dropped, so the peer sees its connection close; the worker and every other
//! connection on it carry on. The caller counts it and logs an error line with the
//! connection's details.
//!
//! Without this, a panic in a glommio task unwinds through the executor and stops the
//! whole worker. A worker that dies anyway (a panic outside these tasks) is noticed by
//! the control executor, which turns `/ready` to 503, drains the other workers and makes
//! the process exit non-zero (see `control.rs`).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::future::CatchUnwind;
use futures_lite::FutureExt;

/// Runs `fut`; a panic inside it is caught and returned as its message.
pub(crate) fn contain<F: Future<Output = ()>>(fut: F) -> Contained<F> {
    // Unwind safety: the future owns the connection's state, which is dropped on unwind.
    // Shared per-core state it touched (pools, counters) is kept consistent by drop guards
    // or holds plain values; at worst a counter is off by one, never unsound.
    Contained {
        inner: AssertUnwindSafe(fut).catch_unwind(),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`contain`]. A named future, not an `async fn`: a generator that
    /// takes `fut` by value and awaits it holds it twice (the argument and the awaited
    /// value), and the futures contained here (a connection, an HTTP/2 stream) are
    /// kilobytes, copied whenever the task's future moves.
    pub(crate) struct Contained<F> {
        #[pin]
        inner: CatchUnwind<AssertUnwindSafe<F>>,
    }
}

impl<F: Future<Output = ()>> Future for Contained<F> {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map(|r| r.map_err(|p| panic_message(p.as_ref()).to_string()))
    }
}

/// The message of a panic payload (`panic!` with a literal or a formatted string).
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        let r = futures_lite::future::block_on(contain(async { panic!("boom {}", 7) }));
        assert_eq!(r, Err("boom 7".to_string()));
        let r = futures_lite::future::block_on(contain(async {}));
        assert_eq!(r, Ok(()));
    }

    /// The contained future is stored once: an HTTP/2 stream's task is copied into its
    /// box whole, so a second copy of the stream's state would double that copy.
    #[test]
    fn the_contained_future_is_stored_once() {
        let big = [7u8; 4096];
        let fut = async move {
            std::future::ready(()).await;
            assert_eq!(big.iter().map(|&b| usize::from(b)).sum::<usize>(), 7 * 4096);
        };
        let inner = std::mem::size_of_val(&fut);
        let contained = contain(fut);
        assert!(
            std::mem::size_of_val(&contained) <= inner + 64,
            "contain({inner} bytes) is {} bytes",
            std::mem::size_of_val(&contained)
        );
        assert_eq!(futures_lite::future::block_on(contained), Ok(()));
    }
}
