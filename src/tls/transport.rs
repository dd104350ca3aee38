//! A connection as the proxy's protocol code sees it: the socket itself, or a TLS
//! session over it. Downstream (`S = ServerConnection`) when the chosen filter chain has
//! a transport socket; upstream (`ClientConnection`) when the cluster has `tls`. One
//! enum (not a type parameter) so the connection managers and the upstream paths are
//! compiled once for both; a plain connection pays one branch per read or write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use rustls::{ConnectionCommon, ServerConnection, SideData};
use std::ops::{Deref, DerefMut};

use crate::http::io::Io;
use crate::tls::TlsStream;

pub enum Transport<D, S = ServerConnection> {
    Plain(D),
    /// Boxed: a rustls session is a few KiB, and plain connections should not carry
    /// its size.
    Tls(Box<TlsStream<D, S>>),
}

impl<D, S> Transport<D, S> {
    /// The TLS session (peer certificates, version, suite, ALPN), if there is one.
    pub fn tls(&self) -> Option<&S> {
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

impl<D: Io, S, C> AsyncRead for Transport<D, S>
where
    S: DerefMut + Deref<Target = ConnectionCommon<C>> + Unpin,
    C: SideData,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        both!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl<D: Io, S, C> AsyncWrite for Transport<D, S>
where
    S: DerefMut + Deref<Target = ConnectionCommon<C>> + Unpin,
    C: SideData,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        both!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        both!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self.get_mut(), s => Pin::new(s).poll_close(cx))
    }
}

impl<D: Io, S, C> Io for Transport<D, S>
where
    S: DerefMut + Deref<Target = ConnectionCommon<C>> + Unpin,
    C: SideData,
{
    fn set_read_timeout(&self, d: Option<Duration>) {
        both!(self, s => s.set_read_timeout(d))
    }
    fn set_write_timeout(&self, d: Option<Duration>) {
        both!(self, s => s.set_write_timeout(d))
    }
    fn idle_is_clean(&self) -> bool {
        both!(self, s => s.idle_is_clean())
    }
    fn idle_is_clean_cx(&mut self, cx: &mut Context<'_>) -> bool {
        both!(self, s => s.idle_is_clean_cx(cx))
    }
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_read_ready(cx))
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        both!(self, s => s.raw_fd())
    }
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        both!(self, s => s.local_addr())
    }
    fn tls_info(&self) -> Option<std::rc::Rc<crate::tls::TlsInfo>> {
        both!(self, s => s.tls_info())
    }
}
