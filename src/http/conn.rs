//! The HTTP connection manager for one downstream connection.
//!
//! ```text
//! read head ─► prepare (parse, check framing, route, write upstream head) ─► act:
//!    NoRoute / Direct ─► local reply
//!    Proxy ─► pick endpoint ─► pooled or new upstream conn ─► send head (+100-continue)
//!          ─► stream request body ─► read response head ─► send response head
//!          ─► stream response body ─► return upstream conn to the pool
//! ─► stats, access log ─► next request (keep-alive, pipelining) or close
//! ```
//!
//! Every accepted request gets a response or a closed connection. The plain keep-alive
//! path reuses the connection's buffers: this code allocates nothing per request
//! (`alloc_tests`, on in-memory streams; the executor's socket sources are not counted).
//!
//! The listener layer (`crate::listener`) chose this connection manager and its HTTP/1
//! codec; this file reads and routes, `local_reply` answers locally, `exchange` proxies
//! a request to an HTTP/1.1 upstream and `via_http2` to an HTTP/2 one, `connect` runs
//! CONNECT and the tunnels after an upgrade, `record` keeps the finished request's
//! record for the stats and the access log.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::io::AsyncWriteExt;

use crate::config::DirectResponse;
use crate::observe::phases::Marks;
use crate::observe::stream_info::{self, LogFacts, StreamInfo, UpstreamWants};
use crate::upstream::Connector;

use super::buf::ReadBuf;
use super::failure::Failure;
use super::filter::headers::Edits;
use super::filter::{self, LocalReply};
use super::flags::ResponseFlag;
use super::h1::encode;
use super::h1::head::{Framing, HeadError};
use super::io::Io;
use super::own_headers;
use super::view::{ChainRef, ConnSlot, WorkerView};

mod connect;
mod exchange;
mod failed;
mod held;
mod held_response;
mod local_reply;
mod prepare;
mod record;
mod response_head;
mod streamed;
mod upload;
mod via_http2;

/// Initial read-buffer size. It grows up to the header limit for a large head, and to
/// `body::LARGE_BODY_BUF` once the connection streams a large body.
pub(crate) const READ_BUF_BYTES: usize = 8 * 1024;
/// A local reply reads and discards a request body up to this size to keep the
/// connection usable; larger bodies close the connection instead.
const DISCARD_LIMIT: u64 = 1 << 20;
/// How long, and how many bytes, a closing connection keeps reading a request it no
/// longer serves (see `linger`).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 4 << 20;

/// What to do with a parsed request.
enum Action<'v> {
    NoRoute,
    /// A direct response; with a `location` for a 201 or 3xx (as Envoy).
    Direct(&'v DirectResponse, Option<String>),
    /// A route's `redirect`.
    Redirect {
        status: u16,
        location: String,
    },
    /// `cluster_header` named no cluster: `NC` with this status (503 by default).
    ClusterNotFound(u16),
    Proxy {
        cluster: usize,
        /// For an original_dst cluster, where the request goes (`upstream::original_dst`).
        dst: Option<SocketAddr>,
        timeout: Duration,
        /// When the stream's duration limit runs out (`router::timeouts`).
        ends_at: Option<std::time::Instant>,
        /// The request asks for an upgrade the route allows.
        upgrade: bool,
        /// For an HTTP/2 cluster, the request built from the head (`h1_to_h2`); for an
        /// HTTP/1 cluster `None`, and the upstream head is in `wbuf`. Boxed: only that
        /// path (which allocates its header map anyway) pays for its size.
        h2: Option<Box<http::Request<()>>>,
        /// `auto_host_rewrite`: the upstream request's Host becomes the picked endpoint's
        /// hostname (`encode::set_host`, or the HTTP/2 request's authority), if it has one.
        auto_host: bool,
        /// The request's retry state, when its route has a retry policy or its headers
        /// ask for retries (`upstream::request::retry`).
        retry: Option<crate::upstream::request::retry::RetryState<'v>>,
        /// The request's hash for a ring hash or Maglev cluster (`router::hash`).
        hash: Option<u64>,
    },
    /// CONNECT on a route that allows it: a TCP tunnel to the cluster.
    Connect {
        cluster: usize,
    },
    /// An upgrade request to a route that does not allow its protocol: 403.
    UpgradeRefused,
    /// A filter answered the request itself.
    Filtered(LocalReply),
    /// Answered, or the client went, while the body went through the chain (held.rs).
    Held(Outcome),
}

/// What a local reply carries besides its status.
pub(super) struct LocalBody<'a> {
    content_type: Option<&'a str>,
    /// A `location` header (redirects, and 201/3xx direct responses).
    location: Option<&'a str>,
    body: &'a [u8],
}

/// The outcome of parsing a complete request head.
struct Plan<'v> {
    head_len: usize,
    minor: u8,
    is_head: bool,
    /// Safe to send again if the first try never reached the upstream's application.
    idempotent: bool,
    /// A gRPC request: local replies take the gRPC form (`http::grpc_local`).
    grpc: bool,
    framing: Framing,
    action: Action<'v>,
    /// The listener's idle timeout (tunnels after an upgrade use it).
    idle_timeout: Duration,
    /// The listener's stream idle timeout (zero: none).
    stream_idle_timeout: Duration,
    /// Edits for the response head (the route's, then the filters').
    response_edits: Edits<'v>,
    /// The stream's filter chain, for the hooks after the request head.
    chain: filter::Chain<'v>,
    /// Edits for a reply to a request that went wrong in the codec (the connection
    /// manager's own `server` and `date`, no route's).
    codec_edits: Edits<'v>,
    /// The request's shadows (`http::mirror`), sent once its body is known; `None` for
    /// a route without mirror policies that fire.
    mirror: Option<Box<super::mirror::Mirror<'v>>>,
    /// The shadows' tee (`upstream::request::tee`) of a mirrored body that streams: the
    /// body's paths upstream push each chunk to it.
    tee: Option<crate::upstream::request::tee::TeeTx>,
    /// The request's span when tracing sampled it (`observe::trace`), finished with
    /// the stream.
    span: Option<Box<crate::observe::trace::ActiveSpan>>,
    /// When the head was parsed (the `parse` phase ends, `filters` begins).
    parsed_at: Option<Instant>,
    /// The matched route's name, for the access log.
    route_name: Option<&'v std::sync::Arc<str>>,
    /// The matched route's stats, when it keeps them (`observe::route_stats`).
    route_stats: Option<usize>,
    /// The life of the connection's chain: closing once an update changed it.
    life: Option<&'v crate::http::view::ChainLife>,
    /// The client is internal (`http::forwarding::is_internal`).
    internal: bool,
    /// Each try's duration bound, when the request sets it
    /// (`x-envoy-upstream-stream-duration-ms`; `upstream::request::bound`). Here, not
    /// in `Action::Proxy`, whose size every request's action has.
    upstream_duration: Option<Duration>,
    /// The route's priority (its cluster's breakers and pools).
    priority: crate::config::circuit::Priority,
    /// The listener's `enable_trailers`: this HTTP/1 client's trailers are read and
    /// trailers are written to it (to and from an HTTP/2 upstream, this alone decides).
    down_trailers: bool,
    /// The route's cluster's `enable_trailers`: between an HTTP/1 client and an
    /// HTTP/1 upstream trailers pass only when both are on (`chunks`), both ways, as
    /// Envoy's HTTP/1 codecs do.
    up_trailers: bool,
}

/// How a request ended, for stats and the decision to keep the connection.
#[derive(Clone, Copy)]
struct Outcome {
    status: u16,
    flag: ResponseFlag,
    keep_alive: bool,
}

/// State kept for the life of one downstream connection and reused by every request.
struct Conn {
    peer: SocketAddr,
    /// The connection's local address, and its TLS facts (what filters read of the
    /// connection).
    local: SocketAddr,
    tls: Option<Rc<crate::tls::TlsInfo>>,
    rbuf: ReadBuf,
    ubuf: ReadBuf,
    wbuf: Vec<u8>,
    ip: [u8; 48],
    ip_len: usize,
    rec: StreamInfo,
    logging: bool,
    /// What the record keeps of the upstream connection (`WorkerView::upstream_wants`).
    upstream: UpstreamWants,
    /// The log prints a trailer (`%TRAILER(..)%`): an HTTP/2 upstream's trailers are
    /// kept for it (an HTTP/1 upstream's chunked trailers pass through unparsed and
    /// are not logged, as Envoy's codec without `enable_trailers` does not see them).
    log_trailers: bool,
    /// The chain counts Istio's metrics: the record keeps the Host (and the cluster's
    /// index, not its name: no shared `Arc` is touched per request).
    istio: bool,
    /// The connection's `%CONNECTION_ID%`.
    id: u64,
    /// The connection is closing while the client may still be sending the request
    /// (a body that was cut or not read): close gently, see `linger`.
    linger: bool,
    /// What the HTTP filters keep per connection.
    filters: filter::ConnState,
    /// The current request's self-time marks (`observe::phases`).
    marks: Marks,
}

/// Serves one HTTP/1 downstream connection until it closes. `rbuf` holds what the
/// listener layer already read of it (the protocol sniff, listener filters).
///
/// The connection's state is set up before the future is built, and the future uses it
/// where it was captured: an `async fn` would hold its arguments twice (as arguments,
/// and as the locals they become) for the connection's life.
pub fn serve<D: Io + 'static, C: Connector + 'static>(
    mut down: D,
    rbuf: ReadBuf,
    (peer, local): (SocketAddr, SocketAddr),
    view: Rc<WorkerView<C>>,
    at: ChainRef,
    slot: Rc<ConnSlot>,
) -> impl std::future::Future<Output = ()> {
    // Connection counts (total, active) are kept by the listener layer; the accept loop
    // contains a panic in here to this connection.
    let mut conn = view.hcm(at).map(|l| {
        down.set_read_timeout(Some(l.idle_timeout));
        down.set_write_timeout(Some(l.idle_timeout));
        Conn::new(&down, rbuf, (peer, local), &view, at)
    });
    // The newest view already found not to keep this chain (`WorkerView::newer`).
    let mut checked: *const WorkerView<C> = std::ptr::null();
    let (mut view, mut at) = (view, at);
    async move {
        let Some(conn) = conn.as_mut() else {
            return;
        };
        loop {
            if conn.rbuf.is_empty() {
                if !conn.wait_request(&mut down, &view, at, &slot).await {
                    break;
                }
                // A route or cluster update applies from the next request on: the wait
                // ends when the first bytes of a request arrive, and a newer view that
                // keeps this chain serves it.
                if let Some((v, a)) = view.newer(at, &mut checked) {
                    conn.logging = v.access_log(a).is_some();
                    conn.upstream = v.upstream_wants(a);
                    conn.log_trailers = v.response_wants(a).trailers;
                    conn.istio = v.istio(a).is_some();
                    view = v;
                    at = a;
                }
            }
            // The request's state lives in memory the worker lends while it runs, so an
            // idle connection's task holds only `Conn` (`rt::recycle`, issue 12).
            let (c, d, v, s) = (&mut *conn, &mut down, &view, &*slot);
            if !crate::rt::recycle::recycled(move || c.serve_one(d, v, at, s)).await {
                break;
            }
        }
        let _ = down.close().await;
        if conn.linger {
            linger(&mut down, &mut conn.rbuf).await;
        }
    }
}

impl Conn {
    /// A connection's state before its first request.
    fn new<D: Io, C: Connector>(
        down: &D,
        rbuf: ReadBuf,
        (peer, local): (SocketAddr, SocketAddr),
        view: &WorkerView<C>,
        at: ChainRef,
    ) -> Conn {
        let mut ip = [0u8; 48];
        let ip_len = {
            use std::io::Write;
            let mut cur = std::io::Cursor::new(&mut ip[..]);
            let _ = write!(cur, "{}", peer.ip());
            cur.position() as usize
        };
        Conn {
            peer,
            local,
            tls: down.tls_info(),
            rbuf,
            ubuf: ReadBuf::new(0),
            wbuf: Vec::with_capacity(super::buf::WRITE_BUF_BYTES),
            ip,
            ip_len,
            rec: StreamInfo {
                tls: down.tls_info(),
                ..StreamInfo::default()
            },
            logging: view.access_log(at).is_some(),
            upstream: view.upstream_wants(at),
            log_trailers: view.response_wants(at).trailers,
            istio: view.istio(at).is_some(),
            // Only a logged connection needs its `%CONNECTION_ID%`.
            id: view
                .access_log(at)
                .map_or(0, |_| stream_info::next_connection_id()),
            linger: false,
            filters: filter::ConnState::default(),
            marks: Marks::default(),
        }
    }
}

/// After the last response and a write shutdown, reads and drops what the client still
/// sends, until it closes, for at most `LINGER` and `LINGER_BYTES`. Closing a socket
/// with unread bytes makes the kernel reset the connection, and a reset can destroy
/// the response before the client has read it (Envoy's delayed close does the same).
async fn linger<D: Io>(down: &mut D, rbuf: &mut ReadBuf) {
    let end = Instant::now() + LINGER;
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        down.set_read_timeout(Some(left));
        let n = rbuf.len();
        rbuf.consume(n);
        match rbuf.fill(down).await {
            Ok(n) if n > 0 => dropped += n,
            _ => break,
        }
    }
}

impl<'v> Plan<'v> {
    /// What becomes of an HTTP/1 body's chunk framing between this client and an
    /// HTTP/1 upstream (`strip`: an HTTP/1.0 client's response).
    fn chunks(&self, strip: bool) -> super::body::Chunks {
        super::body::Chunks::new(strip, self.down_trailers && self.up_trailers)
    }

    /// The response is the connection's last (`connection: close`): the worker drains,
    /// or an update changed the connection's chain (`runtime/chain_drain.rs`).
    fn closing<C: Connector>(&self, view: &WorkerView<C>) -> bool {
        view.draining.get() || self.life.is_some_and(|l| l.closing.get())
    }

    /// The request's retry state, when it is proxied and has one.
    fn retry(&self) -> Option<&crate::upstream::request::retry::RetryState<'v>> {
        match &self.action {
            Action::Proxy { retry, .. } => retry.as_ref(),
            _ => None,
        }
    }
}

impl Conn {
    /// Waits between requests for the next one's first bytes. False: close (the
    /// client closed or went silent past the idle timeout, the worker drains, or an
    /// update changed this chain). The read and write buffers go back to the worker's
    /// pool while nothing has arrived (an idle keep-alive connection holds no buffer of
    /// its own, issue 12), and are taken again once a read would not wait.
    async fn wait_request<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        at: ChainRef,
        slot: &ConnSlot,
    ) -> bool {
        // Idle on a chain an update changed: close (a new connection still has its
        // first request served, with `connection: close`).
        if view.draining.get() || (slot.accepted.get().is_none() && view.closing(at)) {
            return false;
        }
        view.bufs
            .put(std::mem::replace(&mut self.rbuf, ReadBuf::new(0)));
        view.bufs.put_vec(std::mem::take(&mut self.wbuf));
        slot.idle.set(true);
        let ready = super::io::read_ready(down).await;
        self.rbuf = view.bufs.take();
        self.wbuf = view.bufs.take_vec();
        let came = ready.is_ok() && matches!(self.rbuf.fill(down).await, Ok(n) if n > 0);
        slot.idle.set(false);
        came
    }

    /// Serves one request whose first bytes are in `rbuf`. Returns true to keep the
    /// connection for the next one.
    async fn serve_one<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &Rc<WorkerView<C>>,
        at: ChainRef,
        slot: &ConnSlot,
    ) -> bool {
        let Some(l) = view.hcm(at) else {
            return false;
        };
        if self.logging || self.istio {
            self.rec.clear();
        } else {
            self.rec.reset_counts();
        }
        self.marks = Marks {
            accepted: slot.accepted.take(),
            ..Marks::default()
        };
        let limit = l.limits.max_request_line_bytes + l.limits.max_header_bytes + 4;
        // Response headers the filters set for this request (empty: no allocation).
        let store = filter::set_headers::SetHeaders::default();
        // Request headers the connection manager sets per request (XFCC).
        let req_store = filter::set_headers::SetHeaders::default();
        // request_headers_timeout: the head must be complete this long after its first
        // byte. Reads are bounded by whichever comes first, it or the idle timeout.
        let mut head_deadline: Option<Instant> = None;
        let mut plan = loop {
            self.marks.parse_start = Some(Instant::now());
            let facts = crate::rbac::Conn {
                peer: self.peer.ip(),
                local: self.local,
                tls: self.tls.as_deref(),
            };
            let rec = if self.logging || self.istio {
                Some(&mut self.rec)
            } else {
                None
            };
            let ip = self.ip.get(..self.ip_len).unwrap_or_default();
            let (data, wbuf) = (self.rbuf.data(), &mut self.wbuf);
            let conn = (facts, ip, &self.filters, self.peer.port());
            let stores = (&store, &req_store);
            match prepare::prepare(data, l, view, wbuf, conn, rec, stores).await {
                Ok(Some(mut plan)) => {
                    plan.life = view.life(at).map(|l| &**l);
                    break plan;
                }
                Ok(None) => {
                    if self.rbuf.is_full() && !self.rbuf.grow(limit) {
                        self.reject(down, HeadError::HeadersTooLarge, view, at)
                            .await;
                        return false;
                    }
                }
                Err(e) => {
                    self.reject(down, e, view, at).await;
                    return false;
                }
            }
            // Part of a head is already here (`rbuf` is never empty here: the wait
            // between requests ended with bytes, or the listener layer or a pipelined
            // request left them): its clock runs from now at the latest.
            if head_deadline.is_none() && !l.request_headers_timeout.is_zero() {
                head_deadline = Some(Instant::now() + l.request_headers_timeout);
            }
            if let Some(d) = head_deadline {
                down.set_read_timeout(Some(
                    d.saturating_duration_since(Instant::now())
                        .min(l.idle_timeout),
                ));
            }
            match self.rbuf.fill(down).await {
                Err(e)
                    if super::io::is_timeout(&e)
                        && head_deadline.is_some_and(|d| Instant::now() >= d) =>
                {
                    self.head_timed_out(down, view, at).await;
                    return false;
                }
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        };
        if head_deadline.is_some() {
            down.set_read_timeout(Some(l.idle_timeout));
        }
        let start = Instant::now();
        self.marks.parsed = plan.parsed_at;
        self.marks.decided = Some(start);
        if self.logging {
            self.rec.start = Some(SystemTime::now());
            self.keep_request_head(&plan, l);
        }
        self.rbuf.consume(plan.head_len);
        self.rec.bytes_received = plan.head_len as u64;
        let mut h2_request = match &mut plan.action {
            Action::Proxy { h2, .. } => h2.take(),
            _ => None,
        };
        // A request-body hook reads the body first; it stands in for `rbuf` (held.rs).
        let own_rbuf = self.hold(down, &mut plan, h2_request.as_deref_mut()).await;
        if let Some(m) = plan.mirror.take() {
            plan.tee = self.mirror(view, &plan, *m, own_rbuf.is_some());
        }
        let outcome = match plan.action {
            Action::NoRoute => self.fail_locally(down, view, &plan, Failure::NoRoute).await,
            Action::Direct(d, ref location) => {
                let reply = LocalBody {
                    content_type: d.content_type.as_deref(),
                    location: location.as_deref(),
                    body: &d.body,
                };
                self.local_with(down, view, &plan, d.status, reply, ResponseFlag::None)
                    .await
            }
            Action::Redirect {
                status,
                ref location,
            } => {
                let reply = LocalBody {
                    content_type: None,
                    location: Some(location),
                    body: b"",
                };
                self.local_with(down, view, &plan, status, reply, ResponseFlag::None)
                    .await
            }
            Action::ClusterNotFound(status) => {
                let f = Failure::ClusterNotFound { status };
                self.fail_locally(down, view, &plan, f).await
            }
            Action::Proxy {
                cluster,
                dst,
                timeout,
                ends_at,
                ..
            } => {
                self.rec.cluster_index = Some(cluster);
                self.rec.route_stats = plan.route_stats;
                let clocks = (timeout, ends_at, plan.upstream_duration);
                self.proxy(down, view, &plan, (cluster, dst), clocks, h2_request)
                    .await
            }
            Action::Connect { cluster } => self.connect(down, view, &plan, cluster).await,
            Action::UpgradeRefused => {
                tracing::debug!(peer = %self.peer, "upgrade not allowed on this route");
                self.fail_locally(down, view, &plan, Failure::UpgradeRejected)
                    .await
            }
            Action::Held(o) => o,
            Action::Filtered(ref reply) => {
                self.local(
                    down,
                    view,
                    &plan,
                    reply.status,
                    None,
                    reply.body.as_bytes(),
                    reply.flag,
                )
                .await
            }
        };
        if let Some(own) = own_rbuf {
            self.rbuf = own;
        }
        self.rec.status = outcome.status;
        self.rec.flag = Some(outcome.flag);
        // Istio's `request_protocol` (its `grpc_response_status` is known on HTTP/2
        // downstreams only).
        self.rec.grpc = plan.grpc;
        self.rec.filter_flag = plan.chain.flag();
        let end = Instant::now();
        self.rec.duration = end.saturating_duration_since(start);
        self.rec.phases = self.marks.times(Some(end));
        if self.logging && self.rec.log.request_done.is_none() {
            // A request body was read (or cut) by now.
            self.rec.log.request_done = Some(self.rec.duration);
        }
        plan.chain.on_complete(&filter::StreamEnd {
            status: outcome.status,
            flag: outcome.flag,
            bytes_received: self.rec.bytes_received,
            bytes_sent: self.rec.bytes_sent,
        });
        if self.logging {
            let trace = plan.span.as_deref().map(|s| s.trace_id());
            self.rec.log.note_route(plan.route_name, trace);
        }
        if let Some(span) = plan.span.take() {
            let end = crate::observe::trace::End {
                status: outcome.status,
                flags: self.rec.flags(),
                bytes_received: self.rec.bytes_received,
                bytes_sent: self.rec.bytes_sent,
                upstream: self.rec.upstream,
            };
            crate::observe::trace::finish(span, &end);
        }
        self.complete(view, at);
        outcome.keep_alive && !view.closing(at)
    }

    /// The request head did not arrive within `request_headers_timeout`: 408 and close
    /// (Envoy: `request header timeout`, counted by status, no response flag).
    async fn head_timed_out<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        at: ChainRef,
    ) {
        tracing::debug!(peer = %self.peer, "request head timed out");
        let f = Failure::RequestHeadersTimeout;
        self.refuse(down, view, at, f.status(), f.flag(), f.body())
            .await;
    }

    /// Answers a malformed request and closes: an ambiguous message is never forwarded.
    async fn reject<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        e: HeadError,
        view: &WorkerView<C>,
        at: ChainRef,
    ) {
        tracing::debug!(peer = %self.peer, detail = e.detail(), "refusing request");
        // The refused request may have a body on its way.
        self.linger = true;
        let flag = ResponseFlag::DownstreamProtocolError;
        self.refuse(down, view, at, e.status(), flag, e.body())
            .await;
    }

    /// Answers a request whose head never became a usable request, closes, and records it.
    async fn refuse<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        at: ChainRef,
        status: u16,
        flag: ResponseFlag,
        body: &str,
    ) {
        self.wbuf.clear();
        let edits = view
            .hcm(at)
            .map_or(Edits::none(), |l| own_headers::codec_reply_edits(&l.own));
        encode::write_local_reply(
            &mut self.wbuf,
            status,
            None,
            body.as_bytes(),
            true,
            false,
            edits,
        );
        let _ = down.write_all(&self.wbuf).await;
        self.rec.status = status;
        self.rec.flag = Some(flag);
        self.rec.bytes_sent = self.wbuf.len() as u64;
        if self.logging {
            self.rec.log.head_out =
                LogFacts::keep_head(&mut self.rec.log.response_head, &self.wbuf);
            self.rec.start = Some(SystemTime::now());
            // Envoy logs its codec's protocol for a request the codec refused (an
            // HTTP/1.0 one refused with 426 included).
            self.rec.protocol = "HTTP/1.1";
        }
        self.complete(view, at);
    }

    /// A request that ended without a response the client can use: close the connection.
    pub(super) fn finish_error<C: Connector>(
        &mut self,
        view: &WorkerView<C>,
        cluster: usize,
        status: u16,
        flag: ResponseFlag,
    ) -> Outcome {
        if status >= 400 {
            view.clusters[cluster].stats.rq_class[crate::observe::stats::class_index(status)].inc();
        }
        Outcome {
            status,
            flag,
            keep_alive: false,
        }
    }
}
