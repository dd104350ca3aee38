//! The byte-stream abstraction the connection manager runs on.
//!
//! In production this is glommio's `TcpStream`; tests drive the same code over memory.
//! Tunnels move bytes over the two halves of one stream (`split`); the h2 crate reads
//! and writes it through tokio's traits (`TokioIo`).

use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};

mod split;
mod tokio_io;
pub use split::{split, ReadHalf, WriteHalf};
pub use tokio_io::TokioIo;

/// A full-duplex byte stream with per-operation timeouts.
pub trait Io: AsyncRead + AsyncWrite + Unpin {
    /// Timeout for each following read; `None` waits forever.
    fn set_read_timeout(&self, d: Option<Duration>);
    /// Timeout for each following write; `None` waits forever.
    fn set_write_timeout(&self, d: Option<Duration>);
    /// For a connection that sat idle in a pool: true if the peer has neither closed it
    /// nor sent anything since. A response nobody asked for must never reach a client.
    fn idle_is_clean(&self) -> bool {
        true
    }
    /// `idle_is_clean`, asked by the task about to reuse the connection: a stream whose
    /// runtime keeps watching the socket while it idles answers from that watch, without
    /// a syscall (glommio: the poll armed after the last read, see below). The default
    /// asks `idle_is_clean`.
    fn idle_is_clean_cx(&mut self, _cx: &mut Context<'_>) -> bool {
        self.idle_is_clean()
    }
    /// `Ready(Ok(()))` once a read would not wait (bytes, the peer's close or an
    /// error), under the read timeout, without the caller lending a buffer: a
    /// connection idle between requests gives its read buffer back to the worker while
    /// it waits here (`http/conn.rs`). A stream that cannot tell is ready at once (the
    /// default), and the caller's read then waits with its buffer, as before.
    fn poll_read_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    /// The socket descriptor, if there is one.
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// The connection's local address (`getsockname`) where the stream has a socket;
    /// `None` otherwise. An upstream connection reads it once (`upstream::counted`).
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }
    /// The TLS session's facts (version, suite, SNI, peer SANs) on a downstream
    /// connection that terminated TLS; `None` on a plain one.
    fn tls_info(&self) -> Option<std::rc::Rc<crate::tls::TlsInfo>> {
        None
    }
}

/// A borrowed stream is a stream, so a connection the caller keeps can be split for a
/// tunnel (`conn/connect.rs`).
impl<T: Io + ?Sized> Io for &mut T {
    fn set_read_timeout(&self, d: Option<Duration>) {
        (**self).set_read_timeout(d)
    }
    fn set_write_timeout(&self, d: Option<Duration>) {
        (**self).set_write_timeout(d)
    }
    fn idle_is_clean(&self) -> bool {
        (**self).idle_is_clean()
    }
    fn idle_is_clean_cx(&mut self, cx: &mut Context<'_>) -> bool {
        (**self).idle_is_clean_cx(cx)
    }
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        (**self).poll_read_ready(cx)
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        (**self).raw_fd()
    }
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        (**self).local_addr()
    }
    fn tls_info(&self) -> Option<std::rc::Rc<crate::tls::TlsInfo>> {
        (**self).tls_info()
    }
}

impl Io for crate::rt::net::TcpStream {
    fn set_read_timeout(&self, d: Option<Duration>) {
        // glommio refuses a zero timeout; the smallest real one expires just as well.
        let d = d.map(|d| d.max(Duration::from_micros(1)));
        let _ = crate::rt::net::TcpStream::set_read_timeout(self, d);
    }

    fn set_write_timeout(&self, d: Option<Duration>) {
        let d = d.map(|d| d.max(Duration::from_micros(1)));
        let _ = crate::rt::net::TcpStream::set_write_timeout(self, d);
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.as_raw_fd())
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        crate::rt::net::TcpStream::local_addr(self).ok()
    }

    fn idle_is_clean(&self) -> bool {
        use std::os::fd::AsRawFd;
        crate::rt::net::peek_is_clean(self.as_raw_fd())
    }

    /// Answered from the runtime's own readiness watch where it keeps one
    /// (`rt::net::idle_is_clean`).
    fn idle_is_clean_cx(&mut self, cx: &mut Context<'_>) -> bool {
        crate::rt::net::idle_is_clean(self, cx)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        crate::rt::net::poll_read_ready(self, cx)
    }
}

/// `Io::poll_read_ready` as a future.
pub async fn read_ready<T: Io>(io: &mut T) -> std::io::Result<()> {
    std::future::poll_fn(|cx| io.poll_read_ready(cx)).await
}

/// `Io::idle_is_clean_cx` as a future, for the task about to reuse `io`.
pub async fn idle_is_clean<T: Io>(io: &mut T) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(io.idle_is_clean_cx(cx))).await
}

/// True if the error is a timeout from `set_read_timeout` / `set_write_timeout`.
pub fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
}
