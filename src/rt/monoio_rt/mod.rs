//! The monoio backend of `rt` (the default; `rt-glommio` builds on glommio instead):
//! monoio 0.2 on an io_uring set up with `COOP_TASKRUN | SINGLE_ISSUER`, so completions
//! run in the worker's own context instead of interrupting it
//! (docs/benchmarks/runtime-prototypes.md). TCP
//! reads and writes are io_uring `recv`/`send` operations on buffers each direction
//! owns, behind the proxy's poll-based `Io` trait (`ring_io`: no syscall per read or
//! write, one copy); Unix streams use monoio's poll-io.

pub mod channel;
pub mod executor;
pub mod net;
mod ring_io;
mod sleep;
mod sync;
mod task;

pub use sleep::{sleep, Sleep};
pub use sync::Semaphore;
pub use task::{spawn_detached, spawn_local, Task};

/// Runs blocking `f` (a `getaddrinfo`) on a thread of its own and completes with its
/// result, so the executor that awaits it goes on serving; the thread ends with `f`.
/// `None` if the thread could not be started or `f` panicked.
pub async fn blocking<T, F>(name: &str, f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // flume's receiver is woken from the other thread (monoio's `sync` feature).
    let (tx, rx) = flume::bounded(1);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    rx.recv_async().await.ok()
}
