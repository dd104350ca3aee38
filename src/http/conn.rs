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
//! codec; this file reads, routes and answers locally; `exchange` proxies a request to
//! an upstream, `connect` runs CONNECT and the tunnels after an upgrade.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::io::AsyncWriteExt;

use crate::config::{DirectResponse, HttpConnectionManager, UpstreamProtocol};
use crate::observe::stream_info::{self, StreamInfo};
use crate::upstream::Connector;

use super::body;
use super::buf::ReadBuf;
use super::failure::Failure;
use super::filter::headers::Edits;
use super::filter::{self, LocalReply, StreamEdits};
use super::flags::ResponseFlag;
use super::h1::encode::{self, Forward, UpstreamRequest};
use super::h1::head::{self, BodyKind, Framing, HeadError};
use super::h1::request;
use super::io::Io;
use super::own_headers;
use super::router::{self, Decision};
use super::view::{ChainRef, ConnSlot, WorkerView};

mod connect;
mod exchange;
mod held;
mod upload;

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
        timeout: Duration,
        /// The request asks for an upgrade the route allows.
        upgrade: bool,
        /// For an HTTP/2 cluster, the request built from the head (`h1_to_h2`); for an
        /// HTTP/1 cluster `None`, and the upstream head is in `wbuf`. Boxed: only that
        /// path (which allocates its header map anyway) pays for its size.
        h2: Option<Box<http::Request<()>>>,
        /// `auto_host_rewrite`: the upstream request's Host becomes the picked endpoint's
        /// hostname (`encode::set_host`, or the HTTP/2 request's authority), if it has one.
        auto_host: bool,
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
    rbuf: ReadBuf,
    ubuf: ReadBuf,
    wbuf: Vec<u8>,
    ip: [u8; 48],
    ip_len: usize,
    rec: StreamInfo,
    logging: bool,
    /// The connection is closing while the client may still be sending the request
    /// (a body that was cut or not read): close gently, see `linger`.
    linger: bool,
}

/// Serves one HTTP/1 downstream connection until it closes. `rbuf` holds what the
/// listener layer already read of it (the protocol sniff, listener filters).
pub async fn serve<D: Io + 'static, C: Connector + 'static>(
    mut down: D,
    rbuf: ReadBuf,
    peer: SocketAddr,
    view: Rc<WorkerView<C>>,
    at: ChainRef,
    slot: Rc<ConnSlot>,
) {
    // Connection counts (total, active) are kept by the listener layer; the accept loop
    // contains a panic in here to this connection.
    let Some(l) = view.hcm(at) else {
        return;
    };
    down.set_read_timeout(Some(l.idle_timeout));
    down.set_write_timeout(Some(l.idle_timeout));
    let mut ip = [0u8; 48];
    let ip_len = {
        use std::io::Write;
        let mut cur = std::io::Cursor::new(&mut ip[..]);
        let _ = write!(cur, "{}", peer.ip());
        cur.position() as usize
    };
    let mut conn = Conn {
        peer,
        rbuf,
        ubuf: ReadBuf::new(0),
        wbuf: Vec::with_capacity(1024),
        ip,
        ip_len,
        rec: StreamInfo {
            tls: down.tls_info(),
            ..StreamInfo::default()
        },
        logging: view.access_log(at).is_some(),
        linger: false,
    };
    let (mut view, mut at) = (view, at);
    let mut moving = Moving {
        checked: std::ptr::null(),
        to: None,
    };
    while conn
        .serve_one(&mut down, &view, at, &slot, &mut moving)
        .await
    {
        // A route or cluster update applies from the next request on: serve_one stops
        // when the first bytes of a request arrive and a newer view keeps this chain.
        if let Some((v, a)) = moving.to.take() {
            conn.logging = v.access_log(a).is_some();
            view = v;
            at = a;
        }
    }
    let _ = down.close().await;
    if conn.linger {
        linger(&mut down, &mut conn.rbuf).await;
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

/// Parses the request head in `data` (`h1::request`), routes it, runs the listener's
/// filter chain and decides what to do. `Ok(None)` means the head is not complete yet.
/// For a proxied request the upstream head, with the chain's edits, is written into
/// `wbuf`.
#[allow(clippy::too_many_arguments)]
async fn prepare<'v, C: Connector>(
    data: &[u8],
    l: &'v HttpConnectionManager,
    view: &'v WorkerView<C>,
    wbuf: &mut Vec<u8>,
    peer: std::net::IpAddr,
    ip: &[u8],
    tls: bool,
    rec: Option<&mut StreamInfo>,
) -> Result<Option<Plan<'v>>, HeadError> {
    let mut slots = request::header_slots();
    let Some(mut req) = request::parse(data, &l.limits, &mut slots)? else {
        return Ok(None);
    };
    if req.minor == 0 {
        // Envoy's codec: HTTP/1.0 only if accepted, and a Host-less one gets the
        // configured default authority (for routing and upstream).
        if !l.own.accept_http_10 {
            return Err(HeadError::UpgradeRequired);
        }
        if let (true, Some(h)) = (req.authority.is_empty(), &l.own.default_host_for_http_10) {
            req.authority = h.as_bytes();
            req.target_authority = Some(h);
        }
    }
    let headers = req.headers;
    view.hooks
        .on_request(req.path.split('?').next().unwrap_or_default());
    if let Some(rec) = rec {
        rec.method.push_str(req.method);
        rec.path.push_str(req.path);
        rec.authority
            .push_str(std::str::from_utf8(req.authority).unwrap_or(""));
        if !req.is_connect() {
            if let Some(ua) = headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("user-agent"))
            {
                rec.user_agent
                    .push_str(std::str::from_utf8(ua.value).unwrap_or(""));
            }
        }
        rec.protocol = req.protocol();
    }
    let Some(table) = view.snapshot.route_tables.get(l.route_table) else {
        return Err(HeadError::NotImplemented("no route table"));
    };
    // The connection manager may strip the Host's port before routing (Envoy's
    // strip_any_host_port / strip_matching_host_port); the upstream then gets it so.
    let authority = if req.is_connect() {
        req.authority
    } else {
        router::strip_port(req.authority, l.strip_port)
    };
    let stripped = (authority.len() != req.authority.len())
        .then(|| std::str::from_utf8(authority).ok())
        .flatten();
    let view_req = router::Request {
        method: req.method,
        authority,
        path: req.path,
        scheme: "http",
        headers,
    };
    let route = if req.is_connect() {
        router::select_connect(table, &view_req)
    } else {
        router::select(table, &view_req)
    };
    // The filter chain runs on every routed or unrouted request; the router is last.
    let mut edits = own_headers::stream_edits(&l.own);
    let status =
        filter::on_request_head(&l.http_filters, route.map(|r| r.filters.view()), &mut edits).await;
    own_headers::finish_response_edits(&l.own, &mut edits);
    let decision = match status {
        filter::Status::Respond(reply) => {
            return Ok(Some(plan(&req, l, Action::Filtered(reply), edits)));
        }
        filter::Status::Continue => route.map(|r| router::resolve(table, r, &view_req)),
    };
    let action = match decision {
        None => Action::NoRoute,
        // CONNECT goes to a route that allows it: a TCP tunnel to the cluster.
        Some(Decision::Forward(t)) if req.is_connect() => Action::Connect { cluster: t.cluster },
        Some(_) if req.is_connect() => Action::NoRoute,
        Some(Decision::Direct(d, location)) => Action::Direct(d, location),
        Some(Decision::Redirect { status, location }) => Action::Redirect { status, location },
        Some(Decision::ClusterNotFound { status }) => Action::ClusterNotFound(status),
        Some(Decision::Forward(t)) => 'route: {
            let framing = req.framing;
            // An upgrade passes only when the route allows its protocol and the
            // handshake carries no body. Any other upgrade request is refused (Envoy:
            // 403, upgrade_failed), never forwarded with the upgrade silently stripped.
            let upgrade = req.upgrade();
            if upgrade.is_some_and(|v| {
                framing.body != BodyKind::Empty
                    || !head::tokens(v).next().is_some_and(|p| {
                        t.upgrades
                            .iter()
                            .any(|u| p.eq_ignore_ascii_case(u.as_bytes()))
                    })
            }) {
                break 'route Action::UpgradeRefused;
            }
            let mut fwd = super::forwarding::decide(
                &l.forwarding,
                peer,
                headers
                    .iter()
                    .filter(|h| head::classify(h.name) == head::Special::XForwardedFor)
                    .map(|h| h.value),
            );
            fwd.tls = tls;
            own_headers::proxied(&l.own, &l.forwarding, t.timeout, fwd.client, &mut edits);
            let to_h2 = view
                .clusters
                .get(t.cluster)
                .is_some_and(|c| c.cfg.protocol == UpstreamProtocol::Http2);
            let path = t.path.as_deref().unwrap_or(req.path);
            let host = t.host.or(stripped);
            let h2 = if to_h2 {
                // Built from the parsed head: never encoded as HTTP/1.1 and parsed again.
                let rewrite = crate::upstream::request::http2::Rewrite {
                    path,
                    authority: host.map_or(req.authority, str::as_bytes),
                    original_path: t.path.is_some().then_some(req.path),
                    original_host: t.host.map(|_| authority),
                };
                match crate::upstream::request::http2::request_from_h1(
                    &req,
                    &rewrite,
                    fwd,
                    edits.request,
                ) {
                    Some(r) => Some(Box::new(r)),
                    None => {
                        return Err(HeadError::BadRequest(
                            "request not valid for an HTTP/2 upstream",
                        ))
                    }
                }
            } else {
                wbuf.clear();
                encode::write_request(
                    wbuf,
                    &UpstreamRequest {
                        method: req.method,
                        path,
                        authority: host.or(req.target_authority),
                        headers,
                        has_connection_header: framing.has_connection_header,
                        forward: Forward {
                            append: fwd.append.map(|_| ip),
                            overwrite_proto: fwd.overwrite_proto,
                            scheme: fwd.scheme(),
                        },
                        upgrade,
                        edits: edits.request,
                        original_path: t.path.is_some().then_some(req.path),
                        original_host: t.host.map(|_| authority),
                    },
                );
                None
            };
            Action::Proxy {
                cluster: t.cluster,
                timeout: t.timeout,
                upgrade: upgrade.is_some(),
                h2,
                auto_host: t.auto_host,
            }
        }
    };
    Ok(Some(plan(&req, l, action, edits)))
}

/// The plan for a parsed request.
fn plan<'v>(
    req: &request::RequestHead<'_, '_>,
    l: &'v HttpConnectionManager,
    action: Action<'v>,
    edits: StreamEdits<'v>,
) -> Plan<'v> {
    Plan {
        head_len: req.head_len,
        minor: req.minor,
        is_head: req.is_head(),
        idempotent: req.idempotent(),
        framing: req.framing,
        action,
        idle_timeout: l.idle_timeout,
        stream_idle_timeout: l.stream_idle_timeout,
        response_edits: edits.response,
        chain: edits.chain,
        codec_edits: own_headers::codec_reply_edits(&l.own),
    }
}

/// A connection's move to a newer config view between requests.
struct Moving<C: Connector> {
    /// The newest view already found not to keep this chain.
    checked: *const WorkerView<C>,
    /// Set by `serve_one`: the view (and chain) to serve the request just begun under.
    to: Option<(Rc<WorkerView<C>>, ChainRef)>,
}

impl Conn {
    /// Serves one request. Returns true to keep the connection for the next one (or,
    /// with `moving.to` set, to serve the request just begun under a newer view).
    async fn serve_one<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &Rc<WorkerView<C>>,
        at: ChainRef,
        slot: &ConnSlot,
        moving: &mut Moving<C>,
    ) -> bool {
        let Some(l) = view.hcm(at) else {
            return false;
        };
        if self.logging {
            self.rec.clear();
        } else {
            self.rec.reset_counts();
        }
        let limit = l.limits.max_request_line_bytes + l.limits.max_header_bytes + 4;
        // request_headers_timeout: the head must be complete this long after its first
        // byte. Reads are bounded by whichever comes first, it or the idle timeout.
        let mut head_deadline: Option<Instant> = None;
        let mut plan = loop {
            if !self.rbuf.is_empty() {
                // Kept on the record across requests, logged or not.
                let tls = self.rec.tls.is_some();
                let rec = if self.logging {
                    Some(&mut self.rec)
                } else {
                    None
                };
                let ip = self.ip.get(..self.ip_len).unwrap_or_default();
                let peer = self.peer.ip();
                let (data, wbuf) = (self.rbuf.data(), &mut self.wbuf);
                match prepare(data, l, view, wbuf, peer, ip, tls, rec).await {
                    Ok(Some(plan)) => break plan,
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
            } else if view.draining.get() {
                return false;
            }
            // Part of a head is already here (read by the listener layer, or
            // pipelined): its clock runs from now at the latest.
            if head_deadline.is_none()
                && !self.rbuf.is_empty()
                && !l.request_headers_timeout.is_zero()
            {
                head_deadline = Some(Instant::now() + l.request_headers_timeout);
            }
            if let Some(d) = head_deadline {
                down.set_read_timeout(Some(
                    d.saturating_duration_since(Instant::now())
                        .min(l.idle_timeout),
                ));
            }
            let between = self.rbuf.is_empty();
            slot.idle.set(between);
            let read = self.rbuf.fill(down).await;
            slot.idle.set(false);
            if between && matches!(read, Ok(n) if n > 0) {
                if let Some(to) = view.newer(at, &mut moving.checked) {
                    moving.to = Some(to);
                    return true;
                }
            }
            match read {
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
            if head_deadline.is_none() && !l.request_headers_timeout.is_zero() {
                head_deadline = Some(Instant::now() + l.request_headers_timeout);
            }
        };
        if head_deadline.is_some() {
            down.set_read_timeout(Some(l.idle_timeout));
        }
        let start = Instant::now();
        if self.logging {
            self.rec.start = Some(SystemTime::now());
        }
        self.rbuf.consume(plan.head_len);
        self.rec.bytes_received = plan.head_len as u64;
        let mut h2_request = match &mut plan.action {
            Action::Proxy { h2, .. } => h2.take(),
            _ => None,
        };
        // A request-body hook reads the body first; it stands in for `rbuf` (held.rs).
        let own_rbuf = self.hold(down, &mut plan, h2_request.as_deref_mut()).await;
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
                cluster, timeout, ..
            } => {
                self.proxy(down, view, &plan, cluster, timeout, h2_request)
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
        self.rec.duration = start.elapsed();
        plan.chain.on_complete(&filter::StreamEnd {
            status: outcome.status,
            flag: outcome.flag,
            bytes_received: self.rec.bytes_received,
            bytes_sent: self.rec.bytes_sent,
        });
        self.complete(view, at);
        outcome.keep_alive && !view.draining.get()
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
            self.rec.start = Some(SystemTime::now());
            // Envoy logs its codec's protocol for a request the codec refused (an
            // HTTP/1.0 one refused with 426 included).
            self.rec.protocol = "HTTP/1.1";
        }
        self.complete(view, at);
    }

    /// Feeds the finished request's record to the listener's stats and access log.
    fn complete<C: Connector>(&self, view: &WorkerView<C>, at: ChainRef) {
        let log = view.access_log(at);
        if let Some(stats) = view.listener_stats.get(at.listener) {
            stream_info::complete(stats, log, &self.rec, self.peer, stream_info::Kind::Request);
        }
    }

    /// Sends a locally generated response (see `local_with`).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn local<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
        flag: ResponseFlag,
    ) -> Outcome {
        let reply = LocalBody {
            content_type,
            location: None,
            body,
        };
        self.local_with(down, view, plan, status, reply, flag).await
    }

    /// Sends a locally generated response, first reading and discarding a small request
    /// body so the connection stays in step; anything else closes the connection.
    pub(super) async fn local_with<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        status: u16,
        reply: LocalBody<'_>,
        flag: ResponseFlag,
    ) -> Outcome {
        let LocalBody {
            content_type,
            location,
            body,
        } = reply;
        let mut close = !plan.framing.keep_alive || view.draining.get();
        if plan.framing.body != BodyKind::Empty {
            if plan.framing.expect_continue {
                close = true;
            } else {
                let mut sink = futures_lite::io::sink();
                match body::forward(
                    down,
                    &mut self.rbuf,
                    &mut sink,
                    plan.framing.body,
                    true,
                    None,
                    Some(DISCARD_LIMIT),
                )
                .await
                {
                    Ok(n) => self.rec.bytes_received += n,
                    Err(_) => close = true,
                }
            }
            // Whatever of the body was not read is still coming.
            self.linger |= close;
        }
        self.wbuf.clear();
        encode::write_local_reply_at(
            &mut self.wbuf,
            status,
            content_type,
            location,
            body,
            close,
            plan.is_head,
            plan.response_edits,
        );
        let keep_alive = down.write_all(&self.wbuf).await.is_ok() && !close;
        self.rec.bytes_sent = self.wbuf.len() as u64;
        Outcome {
            status,
            flag,
            keep_alive,
        }
    }

    /// Answers a failure from the shared table (`http::failure`): its status, flag and
    /// Envoy's text.
    pub(super) async fn fail_locally<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        f: Failure,
    ) -> Outcome {
        self.local(
            down,
            view,
            plan,
            f.status(),
            None,
            f.body().as_bytes(),
            f.flag(),
        )
        .await
    }

    /// Sends a local reply with `connection: close` at once, without reading anything
    /// more of the request; the connection closes after it.
    pub(super) async fn reply_and_close<D: Io>(
        &mut self,
        down: &mut D,
        plan: &Plan<'_>,
        status: u16,
        msg: &[u8],
        flag: ResponseFlag,
    ) -> Outcome {
        self.linger = true;
        self.wbuf.clear();
        encode::write_local_reply(
            &mut self.wbuf,
            status,
            None,
            msg,
            true,
            plan.is_head,
            plan.response_edits,
        );
        let _ = down.write_all(&self.wbuf).await;
        self.rec.bytes_sent = self.wbuf.len() as u64;
        Outcome {
            status,
            flag,
            keep_alive: false,
        }
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
