//! HTTP/1.1 upstream connections counted for the cluster's `max_connections` circuit
//! breaker (Envoy's `connections` resource), and per endpoint on this core.
//!
//! `Counted` wraps the connection the connector made; its drop, wherever the
//! connection ends (pool eviction, a closed exchange, a failed try), gives the
//! process-wide slot back and wakes the requests of this core waiting for a connection
//! to that endpoint. Counting costs nothing per request: a pooled connection is reused
//! as it is; only opening and closing one touch the atomic.

use std::cell::{Cell, OnceCell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::config::circuit::{Breakers, HostCx, Priority};
use crate::http::io::Io;

/// Open connections per endpoint on this core, and the requests waiting for one to be
/// pooled or closed (Envoy's pending requests of a pool at `max_connections`).
#[derive(Default)]
pub(crate) struct Live {
    open: Vec<Cell<u32>>,
    waiters: RefCell<Vec<Vec<Waker>>>,
}

impl Live {
    pub fn new(endpoints: usize) -> Rc<Live> {
        Rc::new(Live {
            open: (0..endpoints).map(|_| Cell::new(0)).collect(),
            waiters: RefCell::new((0..endpoints).map(|_| Vec::new()).collect()),
        })
    }

    /// Connections open to endpoint `ep` on this core, idle or busy.
    pub fn open(&self, ep: usize) -> u32 {
        self.open.get(ep).map_or(0, Cell::get)
    }

    /// A connection to `ep` is opening; the first one makes this core's pool for the
    /// endpoint (`max_connection_pools`).
    fn up(&self, ep: usize, breakers: &Breakers) {
        if let Some(n) = self.open.get(ep) {
            if n.get() == 0 {
                breakers.open_pool();
            }
            n.set(n.get() + 1);
        }
    }

    /// A connection to `ep` closed (or failed to open); the last one ends the pool.
    fn down(&self, ep: usize, breakers: &Breakers) {
        if let Some(n) = self.open.get(ep) {
            if n.get() == 1 {
                breakers.close_pool();
            }
            n.set(n.get().saturating_sub(1));
        }
    }

    /// Wakes the requests waiting for a connection to `ep` (one was pooled or closed).
    pub fn wake(&self, ep: usize) {
        let woken = match self.waiters.borrow_mut().get_mut(ep) {
            Some(w) if !w.is_empty() => std::mem::take(w),
            _ => return,
        };
        for w in woken {
            w.wake();
        }
    }

    /// Resolves at the next `wake(ep)`.
    pub async fn wait(&self, ep: usize) {
        let mut registered = false;
        std::future::poll_fn(|cx| {
            if registered {
                return Poll::Ready(());
            }
            registered = true;
            if let Some(w) = self.waiters.borrow_mut().get_mut(ep) {
                w.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// A counted connection to endpoint `ep`.
///
/// Boxed once when the connection opens: a request moves its connection several times
/// (out of the pool, through the attempt loop, into the exchange and back), and a
/// socket with its ring drivers and counts is over 300 bytes; a box moves as a pointer.
pub(crate) struct Counted<C>(Box<CountedConn<C>>);

struct CountedConn<C> {
    conn: C,
    /// The connection's local address, read the first time a request asks for it (an
    /// access log that prints `%UPSTREAM_LOCAL_ADDRESS%`), then kept: one `getsockname`
    /// per connection at most, and none for connections no such log sees.
    local: OnceCell<Option<std::net::SocketAddr>>,
    /// The breakers of the priority it was opened for, whose pools it goes back to.
    breakers: Arc<Breakers>,
    priority: Priority,
    /// Its endpoint's process-wide count (the per-host `max_connections`).
    host: HostCx,
    live: Rc<Live>,
    ep: usize,
    /// Requests sent on it so far (`max_requests_per_connection`).
    used: u32,
}

/// A connection being opened to endpoint `ep`: it holds a `max_connections` slot the
/// caller took (`Breakers::open_cx`, `force_cx`) and counts on this core as open, so
/// that the next request waits for it rather than opening another (Envoy counts its
/// connecting clients). Dropped, when the connect fails or is cut short, it gives both
/// back; `connected` turns it into the connection's `Counted`.
pub(crate) struct Connecting<'a> {
    breakers: &'a Arc<Breakers>,
    priority: Priority,
    live: &'a Rc<Live>,
    ep: usize,
    host: HostCx,
}

impl<'a> Connecting<'a> {
    /// `breakers` and `live`: those of `priority` (its `Pools`).
    pub fn new(
        breakers: &'a Arc<Breakers>,
        priority: Priority,
        live: &'a Rc<Live>,
        ep: usize,
        host: HostCx,
    ) -> Self {
        live.up(ep, breakers);
        Connecting {
            breakers,
            priority,
            live,
            ep,
            host,
        }
    }

    pub fn connected<C: Io>(mut self, conn: C) -> Counted<C> {
        let c = Counted(Box::new(CountedConn {
            conn,
            local: OnceCell::new(),
            breakers: self.breakers.clone(),
            priority: self.priority,
            host: std::mem::take(&mut self.host),
            live: self.live.clone(),
            ep: self.ep,
            used: 0,
        }));
        // The slots go with the connection (what is left holds nothing).
        std::mem::forget(self);
        c
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.breakers.close_cx(&self.host);
        self.live.down(self.ep, self.breakers);
        self.live.wake(self.ep);
    }
}

impl<C> Counted<C> {
    /// The routing priority whose pools the connection belongs to.
    pub fn priority(&self) -> Priority {
        self.0.priority
    }

    /// Counts a request sent on the connection.
    pub fn use_once(&mut self) {
        self.0.used = self.0.used.saturating_add(1);
    }

    /// Whether the connection may take another request: fewer than `max` sent on it
    /// (Envoy's `max_requests_per_connection`; `None`: no limit).
    pub fn reusable(&self, max: Option<u32>) -> bool {
        max.is_none_or(|m| self.0.used < m)
    }

    /// Moves the per-core count to another pool's `live` and endpoint (a reload kept the
    /// connection's endpoint under another index).
    pub fn rehome(&mut self, live: &Rc<Live>, ep: usize) {
        if let Some(n) = self.0.live.open.get(self.0.ep) {
            n.set(n.get().saturating_sub(1));
        }
        if let Some(n) = live.open.get(ep) {
            n.set(n.get() + 1);
        }
        self.0.live = live.clone();
        self.0.ep = ep;
    }
}

impl<C> Drop for Counted<C> {
    fn drop(&mut self) {
        self.0.breakers.close_cx(&self.0.host);
        self.0.live.down(self.0.ep, &self.0.breakers);
        self.0.live.wake(self.0.ep);
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Counted<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0.conn).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Counted<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0.conn).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0.conn).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0.conn).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0.conn).poll_close(cx)
    }
}

impl<C: Io> Io for Counted<C> {
    fn set_read_timeout(&self, d: Option<Duration>) {
        self.0.conn.set_read_timeout(d)
    }
    fn set_write_timeout(&self, d: Option<Duration>) {
        self.0.conn.set_write_timeout(d)
    }
    fn idle_is_clean(&self) -> bool {
        self.0.conn.idle_is_clean()
    }
    fn idle_is_clean_cx(&mut self, cx: &mut Context<'_>) -> bool {
        self.0.conn.idle_is_clean_cx(cx)
    }
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        self.0.conn.poll_read_ready(cx)
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.0.conn.raw_fd()
    }
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        *self.0.local.get_or_init(|| self.0.conn.local_addr())
    }
    fn tls_info(&self) -> Option<Rc<crate::tls::TlsInfo>> {
        self.0.conn.tls_info()
    }
}
