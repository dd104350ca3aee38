//! `TlsStream`: a rustls session over any `Io` stream, itself an `Io`, so the
//! connection managers, the TCP proxy and the tunnels run over TLS unchanged.
//!
//! Poll-based, no task and no buffer of its own: ciphertext is read straight from the
//! socket into rustls's record buffer and plaintext straight out of it into the
//! caller's buffer (rustls's `read_tls`/`reader`, `writer`/`write_tls`). The timeouts
//! are the socket's: `set_read_timeout` and `set_write_timeout` are passed down.
//!
//! Writes go through: the HTTP/1 connection manager writes and then reads or closes
//! without a `flush`, as it may on a bare socket, so `poll_write` hands the records of
//! the bytes it accepts to the socket before it reports them written. Closing sends
//! `close_notify` first; a peer that closes without one is a truncated stream (an
//! error from `poll_read`, never a clean end).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use rustls::{ConnectionCommon, SideData};

use super::TlsInfo;
use crate::http::io::Io;

/// A TLS session over `S`; `C` is rustls's `ServerConnection` or `ClientConnection`.
pub struct TlsStream<S, C> {
    io: S,
    conn: C,
    /// The socket reached end of stream.
    eof: bool,
    /// Plaintext bytes accepted into rustls by a `poll_write` that then returned
    /// `Pending` because their records were not out yet; the retry reports them.
    accepted: usize,
    /// `close_notify` was queued.
    closing: bool,
    /// The listener filter's bytes held an error (`new`); `handshake` reports it.
    failed: Option<io::Error>,
    /// Set after a downstream handshake (`set_info`), for the access log and policy.
    info: Option<Rc<TlsInfo>>,
    /// The last read filled the caller's buffer, so rustls may hold more plaintext: a
    /// pooled connection in that state is not clean (`idle_is_clean`).
    maybe_unread: bool,
}

/// `io::Read` / `io::Write` over a poll-based stream for rustls's `read_tls` and
/// `write_tls`: `Pending` becomes `WouldBlock` (the waker is registered).
struct Bridge<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut Context<'b>,
}

impl<S: AsyncRead + Unpin> Read for Bridge<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncWrite + Unpin> Write for Bridge<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    /// rustls hands every queued record at once (`write_tls`): they leave in one send,
    /// a handshake flight or a session ticket with the response that follows it.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// A TLS failure as an IO error; the rustls error rides inside (`tls_error`).
fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The rustls error behind an IO error from a `TlsStream`, if it was one.
pub fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

impl<S, C> TlsStream<S, C> {
    /// The rustls session (negotiated version, suite, ALPN, peer certificates).
    pub fn session(&self) -> &C {
        &self.conn
    }

    /// Keeps what the handshake established, for `Io::tls_info`.
    pub fn set_info(&mut self, info: TlsInfo) {
        self.info = Some(Rc::new(info));
    }
}

impl<S, C, D> TlsStream<S, C>
where
    S: Io,
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
{
    /// A session over `io` whose first ciphertext bytes, already read from it (by a
    /// listener filter), are `prefix`. An error in them is reported by `handshake`,
    /// after the alert rustls queued for it was sent.
    pub fn new(io: S, mut conn: C, mut prefix: &[u8]) -> Self {
        let mut failed = None;
        while !prefix.is_empty() && failed.is_none() {
            match conn.read_tls(&mut prefix) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => failed = Some(e),
            }
            if let Err(e) = conn.process_new_packets() {
                failed = Some(tls_err(e));
            }
        }
        TlsStream {
            io,
            conn,
            eof: false,
            accepted: 0,
            closing: false,
            failed,
            info: None,
            maybe_unread: false,
        }
    }

    /// Runs the handshake to its end, its last flight written out. A rustls error
    /// (`tls_error`) is what the peer did wrong; the alert was sent.
    pub async fn handshake(&mut self) -> io::Result<()> {
        futures_lite::future::poll_fn(|cx| self.poll_handshake(cx)).await
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.failed.take() {
            // Best effort: the alert goes out if the socket takes it now.
            let _ = self.poll_drain(cx);
            return Poll::Ready(Err(e));
        }
        loop {
            // TLS 1.3 ends with the client's Finished: what a server still owes then is
            // its session tickets, and a client its Finished. They wait for the first
            // write (one send with the response or request) or for the first read that
            // has to wait, as BoringSSL's half-RTT tickets save the client a wake-up.
            // TLS 1.2's last flight goes out now: the peer waits for it.
            if !self.conn.is_handshaking()
                && self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
            {
                return Poll::Ready(Ok(()));
            }
            while self.conn.wants_write() {
                match self.write_io(cx) {
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            match self.read_io(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads ciphertext into rustls and processes it. `Ok(0)`: end of stream.
    fn read_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = match self.conn.read_tls(&mut Bridge {
            io: &mut self.io,
            cx,
        }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if n == 0 {
            self.eof = true;
        }
        if let Err(e) = self.conn.process_new_packets() {
            // rustls queued an alert for the peer; send it if the socket takes it now.
            let _ = self.write_io(cx);
            return Poll::Ready(Err(tls_err(e)));
        }
        Poll::Ready(Ok(n))
    }

    /// Writes queued records to the socket.
    fn write_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match self.conn.write_tls(&mut Bridge {
            io: &mut self.io,
            cx,
        }) {
            Ok(0) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Writes every queued record.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            match self.write_io(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S, C, D> AsyncRead for TlsStream<S, C>
where
    S: Io,
    C: DerefMut + Deref<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf) {
                Ok(n) => {
                    // rustls copies all it has, up to the buffer: a shorter read
                    // emptied it.
                    this.maybe_unread = n > 0 && n == buf.len();
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Records rustls owes the peer (a session ticket, a key update answer) go
            // out before waiting; a socket that cannot take them now is retried later.
            if this.conn.wants_write() {
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if this.eof {
                // rustls's reader already said: no close_notify came (UnexpectedEof).
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            match this.read_io(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S, C, D> AsyncWrite for TlsStream<S, C>
where
    S: Io,
    C: DerefMut + Deref<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.accepted > 0 {
            // The retry of a write whose bytes rustls already took.
            if let Err(e) = std::task::ready!(this.poll_drain(cx)) {
                return Poll::Ready(Err(e));
            }
            let n = std::mem::take(&mut this.accepted).min(buf.len());
            return Poll::Ready(Ok(n));
        }
        if buf.is_empty() {
            return this.poll_drain(cx).map_ok(|()| 0);
        }
        // The plaintext joins the records already queued (a session ticket, the last
        // write's tail), so one send carries them all. rustls's send buffer is bounded:
        // when it is full, the socket takes its records first.
        let mut n = match this.conn.writer().write(buf) {
            Ok(n) => n,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if n == 0 {
            if let Err(e) = std::task::ready!(this.poll_drain(cx)) {
                return Poll::Ready(Err(e));
            }
            n = match this.conn.writer().write(buf) {
                Ok(n) => n,
                Err(e) => return Poll::Ready(Err(e)),
            };
        }
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.accepted = n;
                Poll::Pending
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.closing = true;
            this.conn.send_close_notify();
        }
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_close(cx)
    }
}

impl<S, C, D> Io for TlsStream<S, C>
where
    S: Io,
    C: DerefMut + Deref<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
    fn set_read_timeout(&self, d: Option<Duration>) {
        self.io.set_read_timeout(d)
    }
    fn set_write_timeout(&self, d: Option<Duration>) {
        self.io.set_write_timeout(d)
    }
    fn idle_is_clean(&self) -> bool {
        // Plaintext rustls may hold, the peer's end of stream, or any byte on the
        // socket (even a TLS 1.3 session ticket the pool cannot process without
        // reading) makes it unusable: a response nobody asked for must never reach
        // the next client.
        !self.maybe_unread && !self.eof && self.io.idle_is_clean()
    }
    fn idle_is_clean_cx(&mut self, cx: &mut Context<'_>) -> bool {
        !self.maybe_unread && !self.eof && self.io.idle_is_clean_cx(cx)
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.io.raw_fd()
    }
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.io.local_addr()
    }
    fn tls_info(&self) -> Option<Rc<TlsInfo>> {
        self.info.clone()
    }
}
