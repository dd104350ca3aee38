//! The glommio 0.9 backend of `rt`: glommio's own items, and the few functions the
//! contract adds over them.

pub use glommio::spawn_local;
pub use glommio::sync::Semaphore;
pub use glommio::timer::sleep;
pub use glommio::Task;

/// Runs `f` on the current executor to its end, with no handle.
pub fn spawn_detached(f: impl std::future::Future<Output = ()> + 'static) {
    glommio::spawn_local(f).detach();
}

/// Sockets.
pub mod net {
    use std::os::fd::{FromRawFd, IntoRawFd};
    use std::pin::Pin;
    use std::task::Context;

    pub use super::super::peek::peek_is_clean;
    pub use glommio::net::{TcpListener, TcpStream, UnixStream};

    /// Adopts a bound, listening socket.
    pub fn listener_from(socket: socket2::Socket) -> std::io::Result<TcpListener> {
        // SAFETY: the descriptor is a listening TCP socket, owned by `socket`, whose
        // ownership moves to glommio here.
        Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
    }

    /// Adopts a nonblocking TCP socket, connected or with a connect in progress.
    pub fn stream_from(socket: socket2::Socket) -> std::io::Result<TcpStream> {
        // SAFETY: the descriptor is a TCP socket owned by `socket`; ownership moves.
        Ok(unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) })
    }

    /// Adopts one end of a Unix socket pair.
    pub fn unix_from(s: std::os::unix::net::UnixStream) -> std::io::Result<UnixStream> {
        // SAFETY: the descriptor is a Unix stream socket owned by `s`; ownership moves.
        Ok(unsafe { UnixStream::from_raw_fd(s.into_raw_fd()) })
    }

    /// Ready at once: glommio reads into the caller's buffer, so a caller gains
    /// nothing by waiting without one (`Io::poll_read_ready`'s default).
    pub fn poll_read_ready(
        _s: &mut TcpStream,
        _cx: &mut Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    /// For a connection that sat idle in a pool: true if the peer has neither closed it
    /// nor sent anything since, answered from the executor's own watch where it has one.
    ///
    /// A read of nothing, polled once. glommio arms a one-shot poll for readability
    /// after every read that did not fill its buffer (the read that ended the last
    /// response did not), and while that poll is pending a read returns `Pending`
    /// without a syscall: nothing arrived and the peer did not close, as far as the
    /// executor's last look at its completions goes. A completed poll (bytes, end of
    /// stream, an error) or no poll at all makes glommio try `recv` of zero bytes,
    /// which returns 0 when bytes or the end of stream are there and `EAGAIN` (then a
    /// poll is armed, `Pending`) when not: the same answer as a peek, for one
    /// syscall. `Ready` in any form is a connection not to reuse.
    pub fn idle_is_clean(s: &mut TcpStream, cx: &mut Context<'_>) -> bool {
        use futures_lite::io::AsyncRead;
        // No timer for this poll: glommio would arm the read timeout on `Pending`, and
        // the exchange's own reads set theirs.
        let timeout = s.read_timeout();
        let _ = s.set_read_timeout(None);
        let polled = Pin::new(&mut *s).poll_read(cx, &mut []);
        let _ = s.set_read_timeout(timeout);
        polled.is_pending()
    }
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
    pub use glommio::{LocalExecutorBuilder, Placement};

    /// Runs `f` to its end on an executor on the calling thread (unit tests).
    pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(128 * 1024)
            .make()
            .expect("a glommio executor (io_uring, RLIMIT_MEMLOCK)")
            .run(f)
    }
}

/// Runs blocking `f` (a `getaddrinfo`) on glommio's blocking thread pool and completes
/// with its result; the executor that awaits it goes on serving.
pub async fn blocking<T, F>(_name: &str, f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let r = glommio::executor()
        .spawn_blocking(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
        .await;
    r.ok()
}
