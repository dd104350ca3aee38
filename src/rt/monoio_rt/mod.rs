//! The monoio backend of `rt` (cargo feature `rt-monoio`): monoio 0.2 on an io_uring
//! set up with `COOP_TASKRUN | SINGLE_ISSUER`, so completions run in the worker's own
//! context instead of interrupting it (docs/benchmarks/runtime-prototypes.md). Sockets
//! use monoio's poll-io streams (readiness from the ring, `recv`/`send` into the
//! caller's buffers), which keeps the proxy's poll-based `Io` trait as it is.

pub mod channel;
pub mod executor;
pub mod net;
mod ring_io;
mod sync;
mod task;

pub use sync::Semaphore;
pub use task::{spawn_local, Task};

/// Completes once `d` has passed.
pub fn sleep(d: std::time::Duration) -> monoio::time::Sleep {
    monoio::time::sleep(d)
}
