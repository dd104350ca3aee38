//! Sockets: TCP streams on io_uring operations (`ring_io`), Unix streams on monoio's
//! poll-io, both with glommio's per-operation timeouts.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};

pub use super::super::peek::peek_is_clean;
use monoio::io::{IntoPollIo, Splitable};
use monoio::net::unix::stream_poll::UnixStreamPoll;
use monoio::time::{Instant, Sleep};
use tokio::io::{AsyncRead as TokioRead, ReadBuf};

use super::ring_io::{Reader, Writer};

/// One direction's timeout. The deadline is a number kept per operation; the timer
/// behind it is re-armed in place only when it would fire too late (an earlier
/// operation armed it for a later time) or would wake another task, and moved when it
/// fires early (for a later operation), so an operation that completes costs no timer
/// work, and operations of one task with one clock length share one timer.
#[derive(Default)]
struct Deadline {
    timer: Option<Pin<Box<Sleep>>>,
    /// When the timer fires.
    armed: Option<Instant>,
    /// The task the pending timer wakes.
    waker: Option<Waker>,
    /// When the pending operation times out.
    at: Option<Instant>,
}

impl Deadline {
    /// `Ready` once the pending operation has waited `timeout`.
    fn poll_expired(&mut self, cx: &mut Context<'_>, timeout: Option<Duration>) -> Poll<()> {
        let Some(t) = timeout else {
            return Poll::Pending;
        };
        let at = *self.at.get_or_insert_with(|| super::sleep::after(t));
        // monoio 0.2.4's timer keeps the waker of the first poll until it fires (its
        // `StateCell::poll` stores a waker only when it holds none). A pooled upstream
        // connection is used by one downstream connection's task, then another's: its
        // pending timer would wake the task that armed it, and the operation waited past
        // its clock (seen as 2 s waits under a 0.3 s clock). So a timer armed by another
        // task, or for later than this operation's deadline, is re-armed in place (a new
        // entry in the same allocation) for this task; a fired one is moved (below).
        let ours = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if !ours || self.armed.is_none_or(|armed| armed > at) {
            let fresh = monoio::time::sleep_until(at);
            match self.timer.as_mut() {
                Some(t) => t.set(fresh),
                None => self.timer = Some(Box::pin(fresh)),
            }
            self.armed = Some(at);
            self.waker = Some(cx.waker().clone());
        }
        let (Some(timer), Some(armed)) = (self.timer.as_mut(), self.armed.as_mut()) else {
            return Poll::Pending;
        };
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= at {
                self.at = None;
                return Poll::Ready(());
            }
            // Fired early: its waker was taken, the next poll stores this task's.
            timer.as_mut().reset(at);
            *armed = at;
        }
    }

    /// The operation ended: the next one starts its own clock.
    fn done(&mut self) {
        self.at = None;
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "operation timed out")
}

/// A TCP stream whose reads and writes are io_uring operations (`ring_io`), with
/// per-operation read and write timeouts.
pub struct TcpStream {
    reader: Reader,
    writer: Writer,
    /// The socket, for the calls that are not reads or writes. The halves inside the
    /// reader's and writer's drivers keep it open as long as this stream lives.
    fd: RawFd,
    read_timeout: Cell<Option<Duration>>,
    write_timeout: Cell<Option<Duration>>,
    read_deadline: Deadline,
    write_deadline: Deadline,
    /// Bytes written since the peer last sent any (`quiet_send`).
    since_read: usize,
}

/// What a stream may write after it last read and still be sure the kernel took it in
/// one send: half of the initial TCP send buffer (`net.ipv4.tcp_wmem`'s default, 16 KiB
/// unless set otherwise, read once per process, by the first executor that starts:
/// `executor::Builder::spawn`, so no request pays the file read). A request or a
/// response of up to that much, written once the peer has answered the last one (and
/// so read what was sent before), finds room for all of it. Past it, a read that waits
/// also watches the write in flight (`poll_read`).
pub(super) fn quiet_send() -> usize {
    static QUIET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *QUIET.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
            .map_or(8 * 1024, |initial| initial / 2)
    })
}

impl TcpStream {
    fn new(s: monoio::net::TcpStream) -> io::Result<Self> {
        let fd = s.as_raw_fd();
        let (r, w) = s.into_split();
        Ok(TcpStream {
            reader: Reader::new(r),
            writer: Writer::new(w),
            fd,
            read_timeout: Cell::new(None),
            write_timeout: Cell::new(None),
            read_deadline: Deadline::default(),
            write_deadline: Deadline::default(),
            since_read: 0,
        })
    }

    /// Connects, failing with `TimedOut` after `timeout`.
    pub async fn connect_timeout(addr: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let connect = async { Some(monoio::net::TcpStream::connect_addr(addr).await) };
        let expire = async {
            super::sleep(timeout).await;
            None
        };
        match futures_lite::future::or(connect, expire).await {
            Some(s) => TcpStream::new(s?),
            None => Err(timed_out()),
        }
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.read_timeout.set(d);
        Ok(())
    }

    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.write_timeout.set(d);
        Ok(())
    }

    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout.get()
    }

    /// The socket, borrowed for a call that is not a read or a write.
    fn sock<R>(&self, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
        // SAFETY: `fd` is this stream's socket, which the halves owned by `reader` and
        // `writer` keep open for as long as `self` lives; the borrow ends with `f`.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        f(socket2::SockRef::from(&fd))
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.sock(|s| s.set_nodelay(on))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(self.sock(|s| s.peer_addr())?)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(self.sock(|s| s.local_addr())?)
    }

    /// A write (`ring_io::Writer::poll_write`), counted towards `quiet_send`, under the
    /// write timeout.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let done = self.writer.poll_write(cx, bufs);
        if let Poll::Ready(Ok(n)) = done {
            self.since_read = self.since_read.saturating_add(n);
        }
        self.timed_write(cx, done)
    }

    /// A write's outcome under the write timeout: a pending write fails with
    /// `TimedOut` once it has waited that long.
    fn timed_write(
        &mut self,
        cx: &mut Context<'_>,
        done: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match done {
            Poll::Ready(r) => {
                self.write_deadline.done();
                Poll::Ready(r)
            }
            Poll::Pending => match self
                .write_deadline
                .poll_expired(cx, self.write_timeout.get())
            {
                Poll::Ready(()) => Poll::Ready(Err(timed_out())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

fn sock_addr(a: socket2::SockAddr) -> io::Result<SocketAddr> {
    a.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.reader.poll_read(cx, buf) {
            Poll::Ready(r) => {
                // A write finished since gives its buffer back (`Writer::settle`); one
                // this task watches (below) is driven on, or known to be done.
                this.writer.settle();
                this.writer.poll_attended(cx);
                this.read_deadline.done();
                // The peer answered: what was written before is read. A write still
                // in flight (an early answer to a large upload) stays watched.
                if matches!(r, Ok(n) if n > 0) && !this.writer.in_flight() {
                    this.since_read = 0;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                // A message too large to be sure of one send may have gone in part: its
                // rest goes out when the driver is next polled, and the peer may wait
                // for it before it answers. The task that waits for the answer is woken
                // by the write's end, and drives it on from here. A message that fits
                // is left alone (no wake per request).
                if this.writer.busy() && this.since_read > quiet_send() {
                    this.writer.settle_cx(cx);
                }
                match this.read_deadline.poll_expired(cx, this.read_timeout.get()) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, bufs)
    }

    /// Waits until the kernel has sent every byte written (`ring_io::Writer`), under
    /// the write timeout.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let done = this.writer.poll_flush(cx).map(|r| r.map(|()| 0));
        this.timed_write(cx, done).map(|r| r.map(|_| ()))
    }

    /// Shuts the write side down once every byte written was sent.
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = std::task::ready!(self.as_mut().poll_flush(cx)) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(self.sock(|s| s.shutdown(std::net::Shutdown::Write)))
    }
}

/// A listening TCP socket.
pub struct TcpListener(monoio::net::TcpListener);

impl TcpListener {
    pub async fn accept(&self) -> io::Result<TcpStream> {
        let (s, _) = self.0.accept().await?;
        TcpStream::new(s)
    }
}

/// One end of a Unix stream socket.
pub struct UnixStream(UnixStreamPoll);

impl AsyncRead for UnixStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut self.get_mut().0).poll_read(cx, &mut rb) {
            Poll::Ready(r) => Poll::Ready(r.map(|()| rb.filled().len())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Adopts a bound, listening socket.
pub fn listener_from(socket: socket2::Socket) -> io::Result<TcpListener> {
    let std: std::net::TcpListener = socket.into();
    std.set_nonblocking(true)?;
    Ok(TcpListener(monoio::net::TcpListener::from_std(std)?))
}

/// Adopts a nonblocking TCP socket, connected or with a connect in progress.
pub fn stream_from(socket: socket2::Socket) -> io::Result<TcpStream> {
    let std: std::net::TcpStream = socket.into();
    TcpStream::new(monoio::net::TcpStream::from_std(std)?)
}

/// Adopts one end of a Unix socket pair.
pub fn unix_from(s: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
    s.set_nonblocking(true)?;
    Ok(UnixStream(
        monoio::net::UnixStream::from_std(s)?.into_poll_io()?,
    ))
}

/// `Ready(Ok(()))` once a read would not wait (`ring_io::Reader::poll_ready`), under the
/// read timeout: a connection idle between requests waits here without a read buffer of
/// its caller's (`Io::poll_read_ready`).
pub fn poll_read_ready(s: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    match s.reader.poll_ready(cx) {
        Poll::Ready(()) => {
            s.writer.settle();
            s.read_deadline.done();
            Poll::Ready(Ok(()))
        }
        Poll::Pending => match s.read_deadline.poll_expired(cx, s.read_timeout.get()) {
            Poll::Pending if s.writer.busy() => {
                // Idle with a write in flight (the last response): woken when it
                // finishes, to give its buffer back.
                s.writer.settle_cx(cx);
                Poll::Pending
            }
            Poll::Ready(()) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        },
    }
}

/// For a connection that sat idle in a pool: true if the peer has neither closed it
/// nor sent anything since, answered from the read the stream keeps in flight
/// (`ring_io::Reader::idle_is_clean`), without a syscall where one is in flight.
pub fn idle_is_clean(s: &mut TcpStream, cx: &mut Context<'_>) -> bool {
    let fd = s.fd;
    s.reader.idle_is_clean(cx, fd)
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
