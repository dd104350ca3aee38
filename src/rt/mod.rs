//! The runtime surface Outrigger runs on: executors pinned to cores, tasks, timers,
//! sockets and the channels between executors.
//!
//! Everything above this module reaches the runtime only through it, so the runtime
//! behind it changes in one place (issue 12: glommio's reactor was where most of the
//! proxy's kernel time went; `docs/benchmarks/runtime-prototypes.md` measured what a
//! runtime whose completions run in the worker's own context saves, and the proxy on
//! each backend). The contract each item keeps, on either backend, is:
//!
//! - [`spawn_local`] runs a future on the current executor; dropping its [`Task`] cancels it
//!   at its next await point, [`Task::detach`] lets it run to its end, awaiting it
//!   gives its output. [`spawn_detached`] runs one to its end with no handle at all.
//! - [`sleep`] completes once a duration has passed. [`blocking`] runs a blocking call
//!   (name resolution) off the executor and awaits its result.
//! - [`net::TcpStream`]: a nonblocking TCP socket with futures-io `AsyncRead` and
//!   `AsyncWrite`, per-operation read and write timeouts (`set_read_timeout`,
//!   `set_write_timeout`, `read_timeout`; a timeout fails the operation with
//!   `TimedOut`), `connect_timeout`, `set_nodelay`, `peer_addr`, `local_addr`, and
//!   `AsRawFd`; [`net::stream_from`] adopts a socket connected (or connecting) by hand.
//!   [`net::idle_is_clean`] answers, without a syscall where the backend can, whether
//!   a pooled connection stayed silent and open (`http::io::Io::idle_is_clean_cx`).
//!   [`net::TcpListener`]: [`net::listener_from`] adopts a bound, listening socket;
//!   `accept`. [`net::UnixStream`]: [`net::unix_from`], `AsyncRead`.
//! - [`channel::shared`] crosses executors (config to the workers, stats back): bounded,
//!   each end `connect`ed on the executor that uses it. [`channel::local`] stays on one
//!   executor. [`Semaphore`] orders tasks on one executor.
//! - [`executor`] starts executor threads: pinned to a CPU (workers) or unbound (the
//!   control executor), with a name, and runs a future to its end on the thread;
//!   [`executor::block_on`] runs one on the calling thread (unit tests).
//!
//! Two backends. The default is monoio 0.2 on an io_uring set up with `COOP_TASKRUN |
//! SINGLE_ISSUER` (the flags the prototypes found decisive), whose TCP streams read and
//! write with io_uring operations on buffers of their own (`monoio_rt/ring_io.rs`).
//! The `rt-glommio` cargo feature builds on glommio 0.9 instead, to measure against.
//!
//! [`poll_clock::now`] reads the clock once per task poll on the monoio backend (each
//! task's poll is wrapped so); on glommio every call reads it.
//!
//! On either backend, [`recycle::recycled`] boxes a future in memory the thread keeps for
//! reuse (a connection's per-request state, held only while the request runs).

#[cfg(feature = "rt-glommio")]
mod glommio_rt;
#[cfg(feature = "rt-glommio")]
pub use glommio_rt::*;

#[cfg(not(feature = "rt-glommio"))]
mod monoio_rt;
#[cfg(not(feature = "rt-glommio"))]
pub use monoio_rt::*;

pub mod poll_clock;
pub mod recycle;

/// Socket checks that do not depend on the backend.
mod peek {
    /// True if the socket has neither bytes waiting nor a close from its peer: a
    /// one-byte nonblocking `MSG_PEEK`.
    pub fn peek_is_clean(fd: std::os::fd::RawFd) -> bool {
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into a valid buffer on the caller's socket; it never
        // blocks.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
}
