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

use futures_lite::FutureExt;

/// Runs `fut`; a panic inside it is caught and returned as its message.
pub(crate) async fn contain<F: Future<Output = ()>>(fut: F) -> Result<(), String> {
    // Unwind safety: the future owns the connection's state, which is dropped on unwind.
    // Shared per-core state it touched (pools, counters) is kept consistent by drop guards
    // or holds plain values; at worst a counter is off by one, never unsound.
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|p| panic_message(p.as_ref()).to_string())
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
}
