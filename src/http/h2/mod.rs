//! The HTTP/2 side of the connection manager: h2c with prior knowledge, detected on the
//! same port as HTTP/1.1 by the connection preface. Streams are routed by the same
//! router and proxied in the cluster's protocol: to HTTP/1.1 upstreams (`to_h1`) or over
//! a multiplexed HTTP/2 upstream connection (`to_h2`), with end-to-end flow control.
//!
//! The h2 crate runs on the worker's runtime (`rt`) through `http::io::TokioIo` (tokio's
//! IO traits over the futures-io stream); no tokio runtime exists. Each stream runs as
//! its own task on the worker that accepted the connection, its future in memory the
//! worker lends (`rt::recycle`); the connection task drives the socket.

mod clock;
mod connect;
mod held;
pub(crate) mod io;
mod reply;
mod request;
mod respond;
mod stream;
mod streamed;
mod to_h1;
mod to_h2;
mod to_h2_retry;
mod upload;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::io::{Io, TokioIo};
use super::view::{ChainRef, ConnSlot, WorkerView};
use crate::upstream::Connector;
use bytes::Bytes;

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum Event<T> {
    Stream(T),
    Drain,
    Tick,
    Closed,
}

/// Per-connection state shared with its stream tasks.
#[derive(Default)]
pub(crate) struct Activity {
    /// Streams in flight.
    pub open: Cell<usize>,
    /// When the last stream ended (or the connection started).
    pub last: Cell<Option<Instant>>,
    /// The streams' route and idle clocks, swept by the connection task.
    pub clocks: clock::Clocks,
    /// The connection's TLS facts (`None`: plain), for the streams' logs and
    /// `x-forwarded-proto`.
    pub tls: Option<Rc<crate::tls::TlsInfo>>,
    /// The connection's local address (`None` only in a default value).
    pub local: Option<SocketAddr>,
    /// The connection's id for `%CONNECTION_ID%` (0 when its chain does not log).
    pub id: u64,
    /// The heads' buffers its logged streams reuse.
    pub log_buffers: respond::LogBuffers,
    /// What the HTTP filters keep per connection.
    pub filters: crate::http::filter::ConnState,
    /// The connection's accept, until its first stream takes it (`observe::phases`).
    pub accepted: Cell<Option<Instant>>,
}

/// Counts a stream as open for as long as it lives.
pub(crate) struct OpenStream(Rc<Activity>);

impl OpenStream {
    pub fn new(a: Rc<Activity>) -> Self {
        // No clock read: the idle clock runs only while no stream is open, and from
        // when the last one ended.
        a.open.set(a.open.get() + 1);
        OpenStream(a)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let open = self.0.open.get().saturating_sub(1);
        self.0.open.set(open);
        // The poll's clock: the stream ends in its task's last poll.
        self.0.last.set(Some(crate::rt::poll_clock::now()));
        if open == 0 {
            // The connection's idle clock starts now: have its task arm it.
            self.0.clocks.poke();
        }
    }
}

/// Serves an HTTP/2 connection whose first bytes (`prefix`) were already read.
///
/// Besides streams, the connection watches three clocks: the listener's idle timeout
/// (no stream open for that long: GOAWAY and close), the keepalive PING interval (an
/// unanswered PING closes the connection), and the worker's drain (GOAWAY, let open
/// streams finish; the worker wakes the connection through `slot`). The handshake must
/// finish within the idle timeout too. Between deadlines the connection task sleeps
/// without a timer.
pub async fn serve<D: Io + 'static, C: Connector + 'static>(
    down: D,
    prefix: Vec<u8>,
    (peer, local): (SocketAddr, SocketAddr),
    view: Rc<WorkerView<C>>,
    at: ChainRef,
    slot: &ConnSlot,
) {
    let Some(l) = view.hcm(at) else {
        return;
    };
    let s = l.http2;
    let idle = l.idle_timeout;
    let tls_info = down.tls_info();
    let io = TokioIo::new(io::Rewind::new(prefix, down));
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(s.max_concurrent_streams)
        .initial_window_size(s.initial_stream_window_size)
        .initial_connection_window_size(s.initial_connection_window_size)
        .max_header_list_size(l.limits.max_header_bytes as u32);
    let handshake = async { Some(builder.handshake::<_, Bytes>(io).await) };
    let expire = async {
        crate::rt::sleep(idle).await;
        None
    };
    let mut conn = match futures_lite::future::or(handshake, expire).await {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "h2 handshake failed");
            return;
        }
        None => {
            tracing::debug!(peer = %peer, "h2 handshake timed out");
            return;
        }
    };
    let activity = Rc::new(Activity {
        tls: tls_info,
        local: Some(local),
        accepted: Cell::new(slot.accepted.take()),
        // Only a logged connection needs its `%CONNECTION_ID%`, as on HTTP/1.
        id: view
            .access_log(at)
            .map_or(0, |_| crate::observe::stream_info::next_connection_id()),
        ..Activity::default()
    });
    activity.last.set(Some(Instant::now()));
    let ping_failed = Rc::new(Cell::new(false));
    let pings = Rc::new(RefCell::new(conn.ping_pong()));
    let mut next_ping =
        (!s.keepalive_interval.is_zero()).then(|| Instant::now() + s.keepalive_interval);
    let mut draining = false;
    // After an idle GOAWAY, a client that never answers the shutdown PING is cut off.
    let mut close_by: Option<Instant> = None;
    // New streams use the worker's newest view while the chain is unchanged (route and
    // cluster updates apply from the next stream on); the connection's own settings
    // stay those it was accepted under.
    let (mut stream_view, mut stream_at) = (view.clone(), at);
    let mut checked = std::ptr::null();
    loop {
        let accept = async {
            match conn.accept().await {
                Some(r) => Event::Stream(r),
                None => Event::Closed,
            }
        };
        let clocks = async {
            let watch_drain = !draining;
            loop {
                let now = Instant::now();
                // The idle clock runs only while no stream is open (and stops once going
                // away). A clock that is due but not acted on must never be reported
                // again at once: that would spin this loop without yielding to the
                // stream tasks.
                let idle_at = (!draining && activity.open.get() == 0)
                    .then(|| activity.last.get().unwrap_or(now) + idle);
                // Streams' clocks: sweep those that are due, then sleep until the next.
                if activity.clocks.next().is_some_and(|at| now >= at) {
                    activity.clocks.sweep(now);
                }
                let mut wake = activity.clocks.next();
                for at in [idle_at, next_ping, close_by].into_iter().flatten() {
                    if now >= at {
                        return Event::Tick;
                    }
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
                if watch_drain && view.closing(at) {
                    return Event::Drain;
                }
                if ping_failed.get() {
                    return Event::Tick;
                }
                // Until the earliest deadline, or until a stream registers an earlier
                // one, the last stream ends, a PING fails or the worker drains (each
                // pokes the clocks or wakes the slot). No deadline: no timer.
                let poked = std::future::poll_fn(|cx| {
                    if activity.clocks.poll_poked(cx.waker()) {
                        return std::task::Poll::Ready(());
                    }
                    if watch_drain {
                        if view.closing(at) {
                            return std::task::Poll::Ready(());
                        }
                        slot.on_drain(cx.waker());
                    }
                    std::task::Poll::Pending
                });
                match wake {
                    Some(at) => futures_lite::future::or(crate::rt::sleep(at - now), poked).await,
                    None => poked.await,
                }
            }
        };
        match futures_lite::future::or(accept, clocks).await {
            Event::Stream(Ok((req, respond))) => {
                let open = OpenStream::new(activity.clone());
                if let Some((v, a)) = stream_view.newer(stream_at, &mut checked) {
                    stream_view = v;
                    stream_at = a;
                }
                let v = stream_view.clone();
                let at = stream_at;
                // The task holds the stream's arguments only; the stream's future
                // (about 10 KiB) is built where it runs, in a block of the worker's
                // spares (`rt::recycle`): no copy of it into a box at spawn, and the
                // block a stream that ended gave back, still in cache, serves the next.
                crate::rt::spawn_detached(async move {
                    // A panic in one stream resets that stream only (its SendResponse is
                    // dropped); the connection and the worker carry on.
                    let served = crate::rt::recycle::recycled(|| {
                        crate::contain::contain(stream::serve(
                            req,
                            respond,
                            v.clone(),
                            at,
                            peer,
                            &open.0,
                        ))
                    })
                    .await;
                    drop(open);
                    if let Err(panic) = served {
                        if let Some(stats) = v.listener_stats.get(at.listener) {
                            stats.cx_panic.inc();
                        }
                        tracing::error!(
                            listener = %v.listener_name(at),
                            peer = %peer,
                            panic = %panic,
                            "HTTP/2 stream handler panicked: stream reset, connection continues"
                        );
                    }
                });
            }
            Event::Stream(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "h2 connection error");
                break;
            }
            Event::Drain => {
                // GOAWAY: no new streams; the ones in flight finish.
                conn.graceful_shutdown();
                draining = true;
            }
            Event::Tick => {
                if ping_failed.get() {
                    tracing::debug!(peer = %peer, "h2 keepalive PING unanswered: closing");
                    break;
                }
                let now = Instant::now();
                if close_by.is_some_and(|c| now >= c) {
                    break;
                }
                let idle_at = activity.last.get().unwrap_or(now) + idle;
                if activity.open.get() == 0 && now >= idle_at && !draining {
                    conn.graceful_shutdown();
                    draining = true;
                    close_by = Some(now + s.keepalive_timeout);
                }
                if next_ping.is_some_and(|p| now >= p) {
                    next_ping = Some(now + s.keepalive_interval);
                    let handle = pings.borrow_mut().take();
                    if let Some(mut pp) = handle {
                        // One PING in flight at a time: the task hands the handle back.
                        let failed = ping_failed.clone();
                        let back = pings.clone();
                        let activity = activity.clone();
                        let timeout = s.keepalive_timeout;
                        crate::rt::spawn_local(async move {
                            let ping = async { Some(pp.ping(h2::Ping::opaque()).await.is_ok()) };
                            let expire = async {
                                crate::rt::sleep(timeout).await;
                                None
                            };
                            if futures_lite::future::or(ping, expire).await == Some(true) {
                                *back.borrow_mut() = Some(pp);
                            } else {
                                failed.set(true);
                                activity.clocks.poke();
                            }
                        })
                        .detach();
                    }
                }
            }
            Event::Closed => break,
        }
    }
}
