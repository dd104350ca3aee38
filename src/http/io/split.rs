//! Read and write halves of one stream, for tunnels (TCP proxy, CONNECT, upgrades):
//! `tunnel::run` reads from one half while it writes to the other, both on the worker
//! that owns the connection.
//!
//! The halves share the stream through an `Rc<RefCell<_>>` (one allocation per split,
//! none per read or write) instead of a second, `dup`ed descriptor: a stream that keeps
//! state above the socket, such as a TLS session, has only one copy of that state.
//!
//! This relies on the stream keeping a read and a write pending at the same time.
//! glommio 0.9's `TcpStream` does (`net/stream.rs`): it has separate poll sources for
//! reading and writing (`source_rx`, `source_tx`), each waking its own waiter, and
//! separate read and write timeouts, each with its own timer. So a read pending in one
//! task (or one branch of a `zip`) and a write pending in another do not disturb each
//! other, and each half's timeout stays its own.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::Io;

/// The reading half of a stream split by [`split`].
pub struct ReadHalf<S>(Rc<RefCell<S>>);

/// The writing half of a stream split by [`split`]. Closing it shuts the stream down for
/// writing only (a half-close); the stream itself is dropped with the last half.
pub struct WriteHalf<S>(Rc<RefCell<S>>);

/// Splits `stream` into a half that reads and a half that writes.
pub fn split<S>(stream: S) -> (ReadHalf<S>, WriteHalf<S>) {
    let shared = Rc::new(RefCell::new(stream));
    (ReadHalf(shared.clone()), WriteHalf(shared))
}

/// Runs `f` on the shared stream.
///
/// Why the borrow cannot conflict: the halves are `!Send`, so both live on one thread,
/// and every borrow is taken inside one synchronous call (a `poll_*` or a timeout
/// setter) and released before it returns; none is held across an `.await`. Two borrows
/// could only overlap if one half were used from inside the other's poll, which nothing
/// does. Should that ever happen, the operation fails with an error instead of a panic.
fn with<S, R>(shared: &RefCell<S>, f: impl FnOnce(&mut S) -> R) -> io::Result<R> {
    match shared.try_borrow_mut() {
        Ok(mut s) => Ok(f(&mut s)),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "stream half used while the other half is mid-operation",
        )),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadHalf<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // Borrowed for this poll only (see `with`).
        with(&self.0, |s| Pin::new(s).poll_read(cx, buf))?
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteHalf<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Borrowed for this poll only (see `with`).
        with(&self.0, |s| Pin::new(s).poll_write(cx, buf))?
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with(&self.0, |s| Pin::new(s).poll_flush(cx))?
    }

    /// A write shutdown of the stream: for glommio's `TcpStream` its `poll_close` is
    /// `shutdown(SHUT_WR)`, which sends the peer end of stream and leaves reading (and
    /// the descriptor) open, so the other direction carries on.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with(&self.0, |s| Pin::new(s).poll_close(cx))?
    }
}

impl<S: Io> ReadHalf<S> {
    /// `Io::set_read_timeout` of the stream: the timeout of each following read.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        with(&self.0, |s| s.set_read_timeout(d))
    }
}

impl<S: Io> WriteHalf<S> {
    /// `Io::set_write_timeout` of the stream: the timeout of each following write.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        with(&self.0, |s| s.set_write_timeout(d))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::task::Waker;

    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A stream whose reads are pending until `ready` holds data, and that records what
    /// is written, whether it was closed and the timeouts set on it.
    #[derive(Default)]
    struct Pipe {
        ready: Vec<u8>,
        written: Vec<u8>,
        closed: bool,
        read_timeout: Cell<Option<Duration>>,
        write_timeout: Cell<Option<Duration>>,
    }

    impl AsyncRead for Pipe {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.ready.is_empty() {
                return Poll::Pending;
            }
            let n = buf.len().min(self.ready.len());
            buf[..n].copy_from_slice(&self.ready[..n]);
            self.ready.drain(..n);
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Pipe {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.closed = true;
            Poll::Ready(Ok(()))
        }
    }

    impl Io for Pipe {
        fn set_read_timeout(&self, d: Option<Duration>) {
            self.read_timeout.set(d);
        }
        fn set_write_timeout(&self, d: Option<Duration>) {
            self.write_timeout.set(d);
        }
    }

    #[test]
    fn a_write_goes_through_while_a_read_is_pending() {
        let (mut r, mut w) = split(Pipe::default());
        let shared = r.0.clone();
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 8];
        // The read waits for data; nothing of it is held while it waits.
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut buf).is_pending());
        futures_lite::future::block_on(w.write_all(b"out")).unwrap();
        futures_lite::future::block_on(w.close()).unwrap();
        shared.borrow_mut().ready.extend_from_slice(b"in");
        let n = futures_lite::future::block_on(r.read(&mut buf)).unwrap();
        assert_eq!(&buf[..n], b"in");
        let s = shared.borrow();
        assert_eq!(s.written, b"out");
        assert!(
            s.closed,
            "closing the write half closes the stream's writing"
        );
    }

    #[test]
    fn timeouts_reach_the_stream_and_a_busy_stream_is_an_error_not_a_panic() {
        let (r, w) = split(Pipe::default());
        r.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        w.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let shared = r.0.clone();
        {
            let s = shared.borrow();
            assert_eq!(s.read_timeout.get(), Some(Duration::from_secs(1)));
            assert_eq!(s.write_timeout.get(), Some(Duration::from_secs(2)));
        }
        let _held = shared.borrow_mut();
        assert!(w.set_write_timeout(None).is_err());
    }
}
