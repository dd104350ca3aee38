//! Per-core HTTP/2 upstream connections: per endpoint, as many multiplexed connections
//! as the streams need. A stream goes on the first live connection with room under its
//! concurrency limit: the cluster's `max_concurrent_streams` or the upstream's
//! SETTINGS_MAX_CONCURRENT_STREAMS, whichever is lower (Envoy's
//! `MultiplexedActiveClientBase`). When every connection is full, a new one is opened
//! for it, unless one being opened has room for it (Envoy counts a connecting client's
//! capacity as the configured limit, since the upstream's is not known yet), subject to
//! `max_connections` and `max_pending_requests` as Envoy's pool. Each connection's
//! h2 driver runs as its own task on the worker.
//!
//! A connection with no stream for the cluster's idle timeout (`pool.idle_timeout`,
//! Envoy's `common_http_protocol_options.idle_timeout`) leaves the pool and closes with
//! a GOAWAY, as Envoy's idle timer closes it. h2 tells no one when a stream ends, so
//! the worker's housekeeping sweep (`evict_idle`, asked for through the worker's
//! [`Alarm`] only while connections are open) notes when each was last seen busy: a
//! stream handed out, or a sweep that found streams open (such a connection is looked
//! at again within an eighth of the timeout). A connection closes at the first sweep
//! that finds it without streams and not busy for the idle timeout: for streams
//! shorter than the timeout, the timeout after the last one (Envoy's); after a longer
//! one, up to an eighth of the timeout sooner.
//!
//! With `max_requests_per_connection`, a connection carries that many streams in all:
//! the stream that uses up its count takes it out of the pool (Envoy's DRAINING,
//! counted in `upstream_cx_max_requests`), and its driver ends, with a GOAWAY, once
//! its last stream is done and no handle to it is left.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;

use super::Connector;
use crate::alarm::Alarm;
use crate::tls::TlsInfo;

/// What a stream's record may keep of its shared connection: the local address and
/// the TLS facts.
pub(crate) type Facts = (Option<SocketAddr>, Option<Rc<TlsInfo>>);

/// Flow-control windows the proxy grants its HTTP/2 upstreams: how much response data
/// may be in flight per stream and per connection before the proxy has passed it on.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// How many times per idle timeout a sweep looks at a connection with streams open.
const BUSY_LOOKS: u32 = 8;

pub(crate) struct H2Conns {
    eps: Vec<RefCell<Endpoint>>,
    /// The cluster's idle timeout for its connections (zero: none).
    idle_timeout: Duration,
    /// The worker's housekeeping alarm (unset outside a worker: nothing is swept).
    alarm: std::cell::OnceCell<Rc<Alarm>>,
    /// A sweep is asked for: set when a connection opens, cleared by a sweep that
    /// leaves no connection.
    swept: Cell<bool>,
}

/// One endpoint's connections on this core, and the requests waiting for a connection
/// being opened.
#[derive(Default, Clone)]
struct Endpoint {
    conns: Vec<Live>,
    /// The streams the connections being opened are counted on to carry, besides the
    /// ones they are opened for.
    capacity: u64,
    /// Requests waiting for a connection being opened (Envoy's pending streams).
    waiting: u64,
    wakers: Vec<Waker>,
    /// Bumped by each connection that failed to open: the requests that waited for it
    /// fail with it (Envoy purges its pending streams on a connect failure).
    failed: u64,
    /// Connections open or opening (their `OpenCx` alive): while there is one, this
    /// core has a connection pool for the endpoint (`max_connection_pools`).
    cx: Rc<Cell<u32>>,
}

/// A live connection: the handle streams are opened on, the connection's local address
/// (`%UPSTREAM_LOCAL_ADDRESS%`), and whether its driver has ended. The socket belongs to
/// the h2 driver once the handshake starts, so the address is read when the connection
/// opens: one `getsockname` per HTTP/2 connection, never per request.
#[derive(Clone)]
struct Live {
    send: SendRequest<Bytes>,
    local: Option<SocketAddr>,
    /// Its TLS facts (a TLS cluster's connection; shared, not copied, per request).
    tls: Option<Rc<TlsInfo>>,
    ended: Rc<Cell<bool>>,
    /// Streams it may still carry (`max_requests_per_connection`; `u32::MAX`: no limit).
    left: Rc<Cell<u32>>,
    /// When it was last seen busy: a stream handed out, or a sweep that found streams
    /// open (`evict_idle`).
    busy_at: Rc<Cell<Instant>>,
}

impl Live {
    /// Whether another stream fits under the connection's limit: the configured one, or
    /// the upstream's SETTINGS_MAX_CONCURRENT_STREAMS when lower.
    fn has_room(&self, configured: u32) -> bool {
        let limit = self
            .send
            .current_max_send_streams()
            .min(configured as usize);
        !self.ended.get() && self.left.get() > 0 && self.send.num_active_streams() < limit
    }

    /// Takes one stream of its `max_requests_per_connection`; true when that was its
    /// last (the caller takes it out of the pool).
    fn take_stream(&self) -> bool {
        let left = self.left.get();
        if left == u32::MAX {
            return false;
        }
        self.left.set(left.saturating_sub(1));
        left <= 1
    }
}

/// Keeps in the endpoint's pool only the connections that may carry a new stream: not
/// ended, and not at their `max_requests_per_connection` (Envoy's DRAINING). Dropping a
/// drained one's handle promptly is what lets h2 close it once its streams are done;
/// the rule also clears a drained connection that a reload shared into this pool
/// (`adopt`), which its own pool drained.
fn prune(e: &mut Endpoint) {
    e.conns.retain(|c| !c.ended.get() && c.left.get() > 0);
}

/// `ready`'s answer: a handle ready for a new stream, the connection's local address,
/// whether the connection was opened for it, whether that went past the cluster's
/// `max_connections`, and whether this stream used up the connection's
/// `max_requests_per_connection` (`maxed`: Envoy's `upstream_cx_max_requests`).
pub(crate) struct Ready {
    pub send: SendRequest<Bytes>,
    pub local: Option<SocketAddr>,
    pub tls: Option<Rc<TlsInfo>>,
    pub opened: bool,
    pub over: bool,
    pub maxed: bool,
}

impl H2Conns {
    pub fn new(endpoints: usize, idle_timeout: Duration) -> Self {
        H2Conns {
            eps: (0..endpoints).map(|_| RefCell::default()).collect(),
            idle_timeout,
            alarm: std::cell::OnceCell::new(),
            swept: Cell::new(false),
        }
    }

    /// Has the worker's housekeeping close this cluster's idle connections.
    pub fn sweep_with(&self, alarm: Rc<Alarm>) {
        let _ = self.alarm.set(alarm);
    }

    /// A connection opened: asks for a sweep when it could first be idle long enough.
    fn ask_sweep(&self, now: Instant) {
        if self.idle_timeout.is_zero() || self.swept.get() {
            return;
        }
        if let Some(a) = self.alarm.get() {
            a.ring_at(now + self.idle_timeout);
            self.swept.set(true);
        }
    }

    /// Closes the connections that had no stream for the idle timeout (dropping the
    /// pool's handle: h2 then ends the connection with a GOAWAY). Returns how many, and
    /// asks the alarm again for the next one that could age out while any is left.
    pub fn evict_idle(&self) -> usize {
        if self.idle_timeout.is_zero() {
            return 0;
        }
        let now = Instant::now();
        let mut closed = 0;
        let mut next: Option<Instant> = None;
        for e in &self.eps {
            let mut e = e.borrow_mut();
            prune(&mut e);
            e.conns.retain(|c| {
                let at = if c.send.num_active_streams() > 0 {
                    c.busy_at.set(now);
                    // Looked at again within an eighth of the timeout while streams
                    // are open, so that the idle time counts from no more than that
                    // before the last stream's end.
                    now + self.idle_timeout / BUSY_LOOKS
                } else {
                    let at = c.busy_at.get() + self.idle_timeout;
                    if now >= at {
                        closed += 1;
                        return false;
                    }
                    at
                };
                next = Some(next.map_or(at, |n| n.min(at)));
                true
            });
        }
        self.swept.set(next.is_some());
        if let (Some(at), Some(a)) = (next, self.alarm.get()) {
            a.ring_at(at);
        }
        closed
    }

    /// Shares `other`'s connections to its endpoint `from` as this one's `to`.
    pub fn adopt(&self, other: &H2Conns, from: usize, to: usize) {
        let conns = match other.eps.get(from) {
            Some(e) => e.borrow().conns.clone(),
            None => return,
        };
        let cx = match other.eps.get(from) {
            Some(e) => e.borrow().cx.clone(),
            None => return,
        };
        if !conns.is_empty() {
            // The adopted connections are swept here from now on.
            self.ask_sweep(Instant::now());
        }
        if let Some(e) = self.eps.get(to) {
            let mut e = e.borrow_mut();
            e.conns = conns;
            // The adopted connections count in the pool they were opened in.
            e.cx = cx;
        }
    }

    /// A handle ready for a new stream to endpoint `ep`: on a live connection with room,
    /// else on a new one. `Ready::over`: the new connection went past the cluster's
    /// `max_connections` or the endpoint's (`host`, the per-host limit; opened anyway
    /// when the endpoint has none, as in Envoy); `Err` is a connect or handshake
    /// failure, or `PendingOverflow`.
    pub async fn ready<C: Connector>(
        &self,
        ep: usize,
        connector: &C,
        cluster: &crate::config::Cluster,
        addr: SocketAddr,
        host: &crate::config::circuit::HostCx,
        breakers: &std::sync::Arc<crate::config::circuit::Breakers>,
    ) -> std::io::Result<Ready>
    where
        C::Conn: 'static,
    {
        let Some(slot) = self.eps.get(ep) else {
            return Err(std::io::Error::other("no such endpoint"));
        };
        let configured = cluster.pool.max_concurrent_streams;
        // No connection to the endpoint on this core: the request needs a new pool,
        // within `max_connection_pools` (Envoy's router answers 503 UH past it).
        if slot.borrow().cx.get() == 0 && !breakers.can_open_pool() {
            return Err(std::io::Error::other(PoolOverflow));
        }
        // The request's `max_pending_requests` slot while it waits for a connection
        // (taken on the first wait; for HTTP/2 the only time the limit applies).
        let mut pending = None;
        loop {
            let (found, fallback, maxed) = {
                let mut e = slot.borrow_mut();
                prune(&mut e);
                let found = e.conns.iter().find(|c| c.has_room(configured)).cloned();
                // The stream is taken now, before the wait for the handle, so that no
                // other request counts on it.
                let maxed = found.as_ref().is_some_and(Live::take_stream);
                if maxed {
                    prune(&mut e);
                }
                // The least loaded connection, for a request the breakers keep from
                // opening another.
                let fallback = e
                    .conns
                    .iter()
                    .min_by_key(|c| c.send.num_active_streams())
                    .cloned();
                (found, fallback, maxed)
            };
            if let Some(live) = found {
                live.busy_at.set(Instant::now());
                match live.send.clone().ready().await {
                    Ok(send) => {
                        return Ok(Ready {
                            send,
                            local: live.local,
                            tls: live.tls.clone(),
                            opened: false,
                            over: false,
                            maxed,
                        })
                    }
                    // Gone (GOAWAY, reset): forget it and look again.
                    Err(_) => {
                        live.ended.set(true);
                        continue;
                    }
                }
            }
            if pending.is_none() {
                let Some(p) = breakers.try_pending() else {
                    return Err(std::io::Error::other(PendingOverflow));
                };
                pending = Some(p);
            }
            // A connection being opened has room for this request: wait for it (Envoy's
            // `pending streams <= connecting stream capacity`).
            let wait = {
                let mut e = slot.borrow_mut();
                let wait = e.waiting < e.capacity;
                if wait {
                    e.waiting += 1;
                }
                wait
            };
            if wait {
                let epoch = slot.borrow().failed;
                let mut registered = false;
                std::future::poll_fn(|cx| {
                    if registered {
                        return Poll::Ready(());
                    }
                    registered = true;
                    slot.borrow_mut().wakers.push(cx.waker().clone());
                    Poll::Pending
                })
                .await;
                if slot.borrow().failed != epoch {
                    return Err(std::io::Error::other(WaitedFailed));
                }
                continue;
            }
            let breakers = breakers.clone();
            let mut over = false;
            if !breakers.open_cx(host) {
                over = true;
                if let Some(live) = fallback {
                    // At `max_connections` with connections open: Envoy keeps the
                    // request pending until a stream ends; here it goes on the least
                    // loaded connection, whose h2 codec holds it until the upstream's
                    // limit lets it open.
                    let maxed = live.take_stream();
                    if maxed {
                        prune(&mut slot.borrow_mut());
                    }
                    live.busy_at.set(Instant::now());
                    let send = live.send.clone().ready().await.map_err(|e| {
                        live.ended.set(true);
                        std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e)
                    })?;
                    return Ok(Ready {
                        send,
                        local: live.local,
                        tls: live.tls.clone(),
                        opened: false,
                        over: true,
                        maxed,
                    });
                }
                // A pool with no connection always gets one, as in Envoy.
                breakers.force_cx(host);
            }
            let pool = slot.borrow().cx.clone();
            return self
                .open(
                    slot,
                    connector,
                    cluster,
                    addr,
                    OpenCx::new(breakers, host.clone(), pool),
                )
                .await
                .map(|r| Ready { over, ..r });
        }
    }

    /// Opens a connection to `addr`, counted as connecting (with the configured stream
    /// capacity) until the handshake is done, then shares it with the requests that
    /// waited for it.
    async fn open<C: Connector>(
        &self,
        slot: &RefCell<Endpoint>,
        connector: &C,
        cluster: &crate::config::Cluster,
        addr: SocketAddr,
        cx_slot: OpenCx,
    ) -> std::io::Result<Ready>
    where
        C::Conn: 'static,
    {
        let configured = cluster.pool.max_concurrent_streams;
        // Streams the connection may carry in all; the first is this request's.
        let limit = cluster.pool.max_requests_per_connection.unwrap_or(u32::MAX);
        let mut connecting = Connecting::new(slot, u64::from(configured.min(limit)));
        let io = connector
            .connect_to(cluster, addr, cluster.connect_timeout)
            .await?;
        let local = crate::http::io::Io::local_addr(&io);
        let tls = crate::http::io::Io::tls_info(&io);
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            // Until the upstream's SETTINGS say otherwise (Envoy: the configured limit).
            .initial_max_send_streams(configured as usize);
        let (send, conn) = builder
            .handshake::<_, Bytes>(crate::http::io::TokioIo::new(io))
            .await
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e))?;
        let ended = Rc::new(Cell::new(false));
        let done = ended.clone();
        crate::rt::spawn_local(async move {
            let _slot = cx_slot;
            // The driver reads the upstream's bytes: a panic in it must end this
            // connection only (its streams then fail as resets), never the worker.
            let driven = crate::contain::contain(async {
                if let Err(e) = conn.await {
                    tracing::debug!(upstream = %addr, error = %e, "upstream h2 connection ended");
                }
            })
            .await;
            done.set(true);
            if let Err(panic) = driven {
                tracing::error!(upstream = %addr, panic = %panic, "upstream HTTP/2 connection driver panicked: connection closed");
            }
        })
        .detach();
        let now = Instant::now();
        let live = Live {
            send: send.clone(),
            local,
            tls: tls.clone(),
            ended,
            left: Rc::new(Cell::new(limit)),
            busy_at: Rc::new(Cell::new(now)),
        };
        self.ask_sweep(now);
        let maxed = live.take_stream();
        if !maxed {
            slot.borrow_mut().conns.push(live);
        }
        connecting.opened = true;
        drop(connecting);
        let send = send
            .ready()
            .await
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e))?;
        Ok(Ready {
            send,
            local,
            tls,
            opened: true,
            over: false,
            maxed,
        })
    }
}

/// A connection being opened to an endpoint: its stream capacity counts for the
/// requests that wait for it until it is open or has failed; then they are woken, to
/// look again when it opened, or to fail with it (`WaitedFailed`, as Envoy fails its
/// pending streams on a connect failure).
struct Connecting<'a> {
    slot: &'a RefCell<Endpoint>,
    capacity: u64,
    opened: bool,
}

impl<'a> Connecting<'a> {
    fn new(slot: &'a RefCell<Endpoint>, capacity: u64) -> Self {
        let mut e = slot.borrow_mut();
        // The opener's own stream is not waiting: the capacity left is for others.
        e.capacity += capacity.saturating_sub(1);
        Connecting {
            slot,
            capacity: capacity.saturating_sub(1),
            opened: false,
        }
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        let woken = {
            let mut e = self.slot.borrow_mut();
            e.capacity = e.capacity.saturating_sub(self.capacity);
            e.waiting = 0;
            if !self.opened {
                e.failed += 1;
            }
            std::mem::take(&mut e.wakers)
        };
        for w in woken {
            w.wake();
        }
    }
}

/// `ready`'s error when `max_pending_requests` refused the request (503 UO).
#[derive(Debug)]
pub(crate) struct PendingOverflow;

impl std::fmt::Display for PendingOverflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("max_pending_requests reached")
    }
}

impl std::error::Error for PendingOverflow {}

impl PendingOverflow {
    pub fn is(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<PendingOverflow>())
    }
}

/// `ready`'s error for a request that waited for a connection which failed to open
/// (502/503 as a connect failure; the connect failure itself is counted once, by the
/// request that opened it).
#[derive(Debug)]
pub(crate) struct WaitedFailed;

impl std::fmt::Display for WaitedFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream connection this request waited for failed")
    }
}

impl std::error::Error for WaitedFailed {}

impl WaitedFailed {
    pub fn is(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<WaitedFailed>())
    }
}

/// The `max_connections` slot of an HTTP/2 connection, and its place in the endpoint's
/// pool on this core (`max_connection_pools`), given back when its driver task ends (or
/// the connect fails).
struct OpenCx(
    std::sync::Arc<crate::config::circuit::Breakers>,
    crate::config::circuit::HostCx,
    Rc<Cell<u32>>,
);

impl OpenCx {
    fn new(
        breakers: std::sync::Arc<crate::config::circuit::Breakers>,
        host: crate::config::circuit::HostCx,
        pool: Rc<Cell<u32>>,
    ) -> Self {
        if pool.get() == 0 {
            breakers.open_pool();
        }
        pool.set(pool.get() + 1);
        OpenCx(breakers, host, pool)
    }
}

impl Drop for OpenCx {
    fn drop(&mut self) {
        self.0.close_cx(&self.1);
        if self.2.get() == 1 {
            self.0.close_pool();
        }
        self.2.set(self.2.get().saturating_sub(1));
    }
}

/// `ready`'s error when a new connection pool would pass `max_connection_pools` (503
/// UH, as Envoy's router answers when it gets no pool).
#[derive(Debug)]
pub(crate) struct PoolOverflow;

impl std::fmt::Display for PoolOverflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("max_connection_pools reached")
    }
}

impl std::error::Error for PoolOverflow {}

impl PoolOverflow {
    pub fn is(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<PoolOverflow>())
    }
}
