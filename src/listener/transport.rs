//! A downstream connection as the terminal filter sees it: the socket itself, or a TLS
//! session over it when the chosen filter chain has a transport socket. One enum (not
//! a type parameter) so the connection managers are compiled once for both; a plain
//! connection pays one branch per read or write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use rustls::ServerConnection;

use crate::http::io::Io;
use crate::tls::TlsStream;

pub enum Transport<D> {
    Plain(D),
    /// Boxed: a rustls session is a few KiB, and plain connections should not carry
    /// its size.
    Tls(Box<TlsStream<D, ServerConnection>>),
}

impl<D> Transport<D> {
    /// The TLS session (peer certificates, version, suite, ALPN), if there is one.
    pub fn tls(&self) -> Option<&ServerConnection> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(t) => Some(t.session()),
        }
    }
}

macro_rules! both {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Transport::Plain($s) => $e,
            Transport::Tls($s) => $e,
        }
    };
}

impl<D: Io> AsyncRead for Transport<D> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        both!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl<D: Io> AsyncWrite for Transport<D> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        both!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self.get_mut(), s => Pin::new(s).poll_close(cx))
    }
}

impl<D: Io> Io for Transport<D> {
    fn set_read_timeout(&self, d: Option<Duration>) {
        both!(self, s => s.set_read_timeout(d))
    }
    fn set_write_timeout(&self, d: Option<Duration>) {
        both!(self, s => s.set_write_timeout(d))
    }
    fn idle_is_clean(&self) -> bool {
        both!(self, s => s.idle_is_clean())
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        both!(self, s => s.raw_fd())
    }
}
