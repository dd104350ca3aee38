//! The runtime surface Outrigger runs on: executors pinned to cores, tasks, timers,
//! sockets and the channels between executors.
//!
//! Everything above this module reaches the runtime only through it, so the runtime
//! behind it can change in one place (issue 12: glommio's reactor is where most of the
//! proxy's kernel time goes; `docs/benchmarks/runtime-prototypes.md` measured what a
//! runtime whose completions run in the worker's own context saves). Today every item
//! is glommio 0.9's own, re-exported at no cost. The contract each keeps, which is what
//! another backend has to keep, is:
//!
//! - [`spawn_local`] runs a future on the current executor; dropping its [`Task`] cancels it
//!   at its next await point, [`Task::detach`] lets it run to its end, awaiting it
//!   gives its output.
//! - [`sleep`] completes once a duration has passed.
//! - [`net::TcpStream`]: a nonblocking TCP socket with futures-io `AsyncRead` and
//!   `AsyncWrite`, per-operation read and write timeouts (`set_read_timeout`,
//!   `set_write_timeout`, `read_timeout`; a timeout fails the operation with
//!   `TimedOut`), `connect_timeout`, `set_nodelay`, `peer_addr`, `local_addr`, and
//!   `FromRawFd`/`AsRawFd`. A poll of a zero-byte read answers from the readiness watch
//!   armed after the last short read, which the pool's reuse check reads
//!   (`http::io::Io::idle_is_clean_cx`). [`net::TcpListener`]: `FromRawFd` on a bound,
//!   listening socket, and `accept`. [`net::UnixStream`]: `FromRawFd`, `AsyncRead`.
//! - [`channel::shared`] crosses executors (config to the workers, stats back): bounded,
//!   each end `connect`ed on the executor that uses it. [`channel::local`] stays on one
//!   executor. [`Semaphore`] orders tasks on one executor.
//! - [`executor`] starts executor threads: pinned to a CPU (workers) or unbound (the
//!   control executor), with a name, and runs a future to its end on the thread.

pub use glommio::spawn_local;
pub use glommio::sync::Semaphore;
pub use glommio::timer::sleep;
pub use glommio::Task;

/// Sockets.
pub mod net {
    pub use glommio::net::{TcpListener, TcpStream, UnixStream};
}

/// Channels between tasks.
pub mod channel {
    /// Between executors (threads).
    pub mod shared {
        pub use glommio::channels::shared_channel::{
            new_bounded, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
        };
    }
    /// Between tasks of one executor.
    pub mod local {
        pub use glommio::channels::local_channel::{
            new_bounded, new_unbounded, LocalReceiver, LocalSender,
        };
    }
}

/// Executor threads.
pub mod executor {
    pub use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
}
