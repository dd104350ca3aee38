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
//! path reuses the connection's buffers and allocates nothing per request.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::io::AsyncWriteExt;

use crate::config::{DirectResponse, Listener, ListenerKind, RouteAction, UpstreamProtocol};
use crate::observe::access_log::LogRecord;
use crate::upstream::Connector;

use super::body::{self, BodyError};
use super::buf::ReadBuf;
use super::flags::ResponseFlag;
use super::h1::encode::{self, DownFraming, DownstreamResponse, UpstreamRequest};
use super::h1::head::{self, BodyKind, Framing, HeadError, Special};
use super::h1::request;
use super::h1::response::{self, Asked, BadResponse, Kind, MAX_RESPONSE_HEAD_BYTES};
use super::io::Io;
use super::router;
use super::view::{ConnSlot, WorkerView};

/// Initial read-buffer size. It grows up to the header limit for a large head, and to
/// `body::LARGE_BODY_BUF` once the connection streams a large body.
const READ_BUF_BYTES: usize = 8 * 1024;
/// A local reply reads and discards a request body up to this size to keep the
/// connection usable; larger bodies close the connection instead.
const DISCARD_LIMIT: u64 = 1 << 20;

/// The local reply to a malformed upstream response (502 UPE), in Envoy's words.
const UPE_BODY: &[u8] =
    b"upstream connect error or disconnect/reset before headers. reset reason: protocol error";

/// What to do with a parsed request.
enum Action<'v> {
    NoRoute,
    Direct(&'v DirectResponse),
    Proxy {
        cluster: usize,
        timeout: Duration,
        /// The request asks for an upgrade the route allows.
        upgrade: bool,
    },
    /// CONNECT on a route that allows it: a TCP tunnel to the cluster.
    Connect {
        cluster: usize,
    },
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
}

/// How a request ended, for stats and the decision to keep the connection.
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
    rec: LogRecord,
    logging: bool,
}

/// Serves one downstream connection until it closes.
pub async fn serve<D: Io + 'static, C: Connector + 'static>(
    mut down: D,
    peer: SocketAddr,
    view: Rc<WorkerView<C>>,
    listener: usize,
    slot: Rc<ConnSlot>,
) {
    let stats = view.listener_stats[listener].clone();
    stats.cx_total.inc();
    stats.cx_active.inc();
    let l = &view.snapshot.listeners[listener];
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
        rbuf: ReadBuf::new(READ_BUF_BYTES),
        ubuf: ReadBuf::new(0),
        wbuf: Vec::with_capacity(1024),
        ip,
        ip_len,
        rec: LogRecord::default(),
        logging: view.access_logs[listener].is_some(),
    };
    // HTTP/2 with prior knowledge starts with the connection preface; anything else is
    // HTTP/1. Read just enough to tell.
    let mut h2 = false;
    loop {
        let d = conn.rbuf.data();
        if d.len() >= super::h2::PREFACE.len() {
            h2 = d.starts_with(super::h2::PREFACE);
            break;
        }
        if !super::h2::PREFACE.starts_with(d) {
            break;
        }
        slot.idle.set(d.is_empty());
        let read = conn.rbuf.fill(&mut down).await;
        slot.idle.set(false);
        if !matches!(read, Ok(n) if n > 0) {
            stats.cx_active.dec();
            return;
        }
    }
    if h2 {
        let prefix = conn.rbuf.data().to_vec();
        drop(conn);
        // An HTTP/2 connection may rightly read nothing for long (a server-streaming
        // call): the h2 side keeps its own idle clock, counting only streamless time.
        down.set_read_timeout(None);
        super::h2::serve(down, prefix, peer, view.clone(), listener).await;
    } else {
        while conn.serve_one(&mut down, &view, listener, &slot).await {}
        let _ = down.close().await;
    }
    stats.cx_active.dec();
}

/// Parses the request head in `data` (`h1::request`) and decides what to do. `Ok(None)`
/// means the head is not complete yet. For a proxied request the upstream head is
/// written into `wbuf`.
fn prepare<'v, C: Connector>(
    data: &[u8],
    l: &Listener,
    view: &'v WorkerView<C>,
    wbuf: &mut Vec<u8>,
    ip: &[u8],
    rec: Option<&mut LogRecord>,
) -> Result<Option<Plan<'v>>, HeadError> {
    let mut slots = request::header_slots();
    let Some(req) = request::parse(data, &l.limits, &mut slots)? else {
        return Ok(None);
    };
    let headers = req.headers;
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
    // The worker only hands HTTP listeners' connections to this module.
    let ListenerKind::Http { route_table } = l.kind else {
        return Err(HeadError::NotImplemented("not an HTTP listener"));
    };
    let table = &view.snapshot.route_tables[route_table];
    let action = if req.is_connect() {
        // CONNECT goes to a route that allows it: a TCP tunnel to the cluster.
        match router::select_connect(table, req.authority, headers).map(|r| &r.action) {
            Some(RouteAction::Cluster { cluster, .. }) => Action::Connect { cluster: *cluster },
            _ => Action::NoRoute,
        }
    } else {
        match router::select(table, req.authority, req.path, headers).map(|r| &r.action) {
            None => Action::NoRoute,
            Some(RouteAction::Direct(d)) => Action::Direct(d),
            Some(RouteAction::Cluster {
                cluster,
                timeout,
                upgrades,
            }) => {
                let framing = req.framing;
                // Pass an upgrade through only when the route allows its protocol and
                // the handshake carries no body.
                let upgrade = headers
                    .iter()
                    .find(|h| head::classify(h.name) == Special::Upgrade)
                    .map(|h| head::trim(h.value))
                    .filter(|v| {
                        framing.connection_upgrade
                            && framing.body == BodyKind::Empty
                            && head::tokens(v).next().is_some_and(|p| {
                                upgrades
                                    .iter()
                                    .any(|u| p.eq_ignore_ascii_case(u.as_bytes()))
                            })
                    });
                wbuf.clear();
                encode::write_request(
                    wbuf,
                    &UpstreamRequest {
                        method: req.method,
                        path: req.path,
                        authority: req.target_authority,
                        headers,
                        has_connection_header: framing.has_connection_header,
                        client_ip: ip,
                        upgrade,
                    },
                );
                Action::Proxy {
                    cluster: *cluster,
                    timeout: *timeout,
                    upgrade: upgrade.is_some(),
                }
            }
        }
    };
    Ok(Some(Plan {
        head_len: req.head_len,
        minor: req.minor,
        is_head: req.is_head(),
        idempotent: req.idempotent(),
        framing: req.framing,
        action,
        idle_timeout: l.idle_timeout,
    }))
}

/// A parsed upstream response head.
enum Response {
    /// A 1xx interim response of this many bytes, to skip.
    Interim(usize),
    /// `101 Switching Protocols` to an upgrade we asked for: the head is this long, and
    /// the connection becomes a tunnel.
    Upgraded(usize),
    Final {
        head_len: usize,
        status: u16,
        body: BodyKind,
        strip: bool,
        close_down: bool,
        reuse_up: bool,
    },
}

/// Parses the upstream response head in `data` (`h1::response`); on success the
/// downstream head is in `wbuf`. `Err` is a malformed response.
fn prepare_response(
    data: &[u8],
    plan: &Plan<'_>,
    draining: bool,
    wbuf: &mut Vec<u8>,
) -> Result<Option<Response>, BadResponse> {
    let mut slots = response::header_slots();
    let asked = Asked {
        head: plan.is_head,
        upgrade: matches!(plan.action, Action::Proxy { upgrade: true, .. }),
    };
    let Some(resp) = response::parse(data, asked, &mut slots)? else {
        return Ok(None);
    };
    let (body, f) = match resp.kind {
        Kind::Interim => return Ok(Some(Response::Interim(resp.head_len))),
        Kind::Upgraded { upgrade } => {
            wbuf.clear();
            encode::write_response(
                wbuf,
                &DownstreamResponse {
                    status: resp.status,
                    reason: resp.reason,
                    headers: resp.headers,
                    has_connection_header: true,
                    framing: DownFraming::Chunked,
                    close: false,
                    http10_keep_alive: false,
                    upgrade: Some(upgrade),
                },
            );
            return Ok(Some(Response::Upgraded(resp.head_len)));
        }
        Kind::Final { body, framing } => (body, framing),
    };
    let (framing, strip) = response::down_framing(body, plan.minor);
    let close_down = !plan.framing.keep_alive || draining || framing == DownFraming::Close;
    wbuf.clear();
    encode::write_response(
        wbuf,
        &DownstreamResponse {
            status: resp.status,
            reason: resp.reason,
            headers: resp.headers,
            has_connection_header: f.has_connection_header,
            framing,
            close: close_down,
            http10_keep_alive: plan.minor == 0 && !close_down,
            upgrade: None,
        },
    );
    Ok(Some(Response::Final {
        head_len: resp.head_len,
        status: resp.status,
        body,
        strip,
        close_down,
        reuse_up: f.keep_alive && body != BodyKind::UntilClose,
    }))
}

/// Decrements an endpoint's in-flight count however the exchange ends.
struct Active<'a>(&'a crate::observe::stats::Counter);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Conn {
    /// Serves one request. Returns true to keep the connection for the next one.
    async fn serve_one<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &Rc<WorkerView<C>>,
        listener: usize,
        slot: &ConnSlot,
    ) -> bool {
        let l = &view.snapshot.listeners[listener];
        let stats = &view.listener_stats[listener];
        if self.logging {
            self.rec.clear();
        }
        let limit = l.limits.max_request_line_bytes + l.limits.max_header_bytes + 4;
        let plan = loop {
            if !self.rbuf.is_empty() {
                let rec = if self.logging {
                    Some(&mut self.rec)
                } else {
                    None
                };
                let ip = self.ip.get(..self.ip_len).unwrap_or_default();
                match prepare(self.rbuf.data(), l, view, &mut self.wbuf, ip, rec) {
                    Ok(Some(plan)) => break plan,
                    Ok(None) => {
                        if self.rbuf.is_full() && !self.rbuf.grow(limit) {
                            self.reject(down, HeadError::HeadersTooLarge, view, listener)
                                .await;
                            return false;
                        }
                    }
                    Err(e) => {
                        self.reject(down, e, view, listener).await;
                        return false;
                    }
                }
            } else if view.draining.get() {
                return false;
            }
            slot.idle.set(self.rbuf.is_empty());
            let read = self.rbuf.fill(down).await;
            slot.idle.set(false);
            match read {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        };
        let start = Instant::now();
        if self.logging {
            self.rec.start = Some(SystemTime::now());
        }
        self.rbuf.consume(plan.head_len);
        stats.bytes_received.add(plan.head_len as u64);
        self.rec.bytes_received = plan.head_len as u64;
        self.rec.bytes_sent = 0;
        let outcome = match plan.action {
            Action::NoRoute => {
                self.local(down, view, &plan, 404, None, b"", ResponseFlag::NoRoute)
                    .await
            }
            Action::Direct(d) => {
                self.local(
                    down,
                    view,
                    &plan,
                    d.status,
                    d.content_type.as_deref(),
                    &d.body,
                    ResponseFlag::None,
                )
                .await
            }
            Action::Proxy {
                cluster, timeout, ..
            } => self.proxy(down, view, &plan, cluster, timeout, start).await,
            Action::Connect { cluster } => self.connect(down, view, &plan, cluster).await,
        };
        let elapsed = start.elapsed();
        stats
            .bytes_received
            .add(self.rec.bytes_received - plan.head_len as u64);
        stats.bytes_sent.add(self.rec.bytes_sent);
        stats.request_done(outcome.status, outcome.flag, elapsed.as_micros() as u64);
        if let Some(sink) = &view.access_logs[listener] {
            self.rec.status = outcome.status;
            self.rec.flag = Some(outcome.flag);
            self.rec.duration = elapsed;
            sink.log(&self.rec, self.peer);
        }
        outcome.keep_alive && !view.draining.get()
    }

    /// Answers a malformed request and closes: an ambiguous message is never forwarded.
    async fn reject<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        e: HeadError,
        view: &WorkerView<C>,
        listener: usize,
    ) {
        let stats = &view.listener_stats[listener];
        tracing::debug!(peer = %self.peer, reason = e.reason(), "refusing request");
        self.wbuf.clear();
        encode::write_local_reply(
            &mut self.wbuf,
            e.status(),
            None,
            e.reason().as_bytes(),
            true,
            false,
        );
        let _ = down.write_all(&self.wbuf).await;
        stats.request_done(e.status(), ResponseFlag::DownstreamProtocolError, 0);
        if let Some(sink) = &view.access_logs[listener] {
            self.rec.status = e.status();
            self.rec.flag = Some(ResponseFlag::DownstreamProtocolError);
            self.rec.start = Some(SystemTime::now());
            sink.log(&self.rec, self.peer);
        }
    }

    /// Sends a locally generated response, first reading and discarding a small request
    /// body so the connection stays in step; anything else closes the connection.
    #[allow(clippy::too_many_arguments)]
    async fn local<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
        flag: ResponseFlag,
    ) -> Outcome {
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
        }
        self.wbuf.clear();
        encode::write_local_reply(
            &mut self.wbuf,
            status,
            content_type,
            body,
            close,
            plan.is_head,
        );
        let keep_alive = down.write_all(&self.wbuf).await.is_ok() && !close;
        self.rec.bytes_sent = self.wbuf.len() as u64;
        Outcome {
            status,
            flag,
            keep_alive,
        }
    }

    /// Proxies one request to `cluster` and streams the response back.
    async fn proxy<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        cluster: usize,
        timeout: Duration,
        start: Instant,
    ) -> Outcome {
        // The upstream buffer is borrowed from the worker only for this exchange.
        self.ubuf = view.bufs.take();
        let outcome = self
            .exchange(down, view, plan, cluster, timeout, start)
            .await;
        view.bufs
            .put(std::mem::replace(&mut self.ubuf, ReadBuf::new(0)));
        outcome
    }

    async fn exchange<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        cluster: usize,
        timeout: Duration,
        start: Instant,
    ) -> Outcome {
        let cs = &view.clusters[cluster];
        let stats = &cs.stats;
        let ep = match self.begin_upstream(down, view, plan, cluster).await {
            Ok(ep) => ep,
            Err(uh) => return uh,
        };
        let endpoint = &cs.cfg.endpoints[ep];
        let es = &cs.endpoints[ep];
        es.rq_active.inc();
        let _active = Active(&es.rq_active);
        let deadline = (!timeout.is_zero()).then(|| start + timeout);
        if cs.cfg.protocol == UpstreamProtocol::Http2 {
            // The upstream head moves out of `wbuf` while the response head is written.
            let head = std::mem::take(&mut self.wbuf);
            let r = super::h1_to_h2::H1Request {
                head: &head,
                body: plan.framing.body,
                minor: plan.minor,
                keep_alive: plan.framing.keep_alive,
                expect_continue: plan.framing.expect_continue,
                draining: view.draining.get(),
            };
            let mut out = Vec::new();
            let res = super::h1_to_h2::exchange(
                down,
                &mut self.rbuf,
                &mut out,
                r,
                view,
                cs,
                ep,
                deadline,
            )
            .await;
            self.wbuf = head;
            self.rec.bytes_received += res.bytes_received;
            self.rec.bytes_sent = res.bytes_sent;
            if res.status >= 400 && res.bytes_sent == 0 && res.flag != ResponseFlag::None {
                // Nothing was sent yet: answer locally like the HTTP/1 path does.
                let msg: &[u8] = match res.flag {
                    ResponseFlag::UpstreamTimeout => b"upstream request timeout",
                    ResponseFlag::UpstreamConnectFailure => b"upstream connect error",
                    ResponseFlag::DownstreamProtocolError => b"bad request",
                    ResponseFlag::UpstreamProtocolError => UPE_BODY,
                    _ => b"upstream connect error or disconnect/reset before headers",
                };
                stats.rq_class[4].inc();
                // The request body may be half read: answer and close, without
                // trying to read the rest of it.
                return self
                    .reply_and_close(down, plan, res.status, msg, res.flag)
                    .await;
            }
            return Outcome {
                status: res.status,
                flag: res.flag,
                keep_alive: res.keep_alive,
            };
        }
        let remaining = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // An idempotent request without a body is retried once when a pooled connection
        // turns out to have been closed by the upstream before it answered.
        let retryable = plan.idempotent && plan.framing.body == BodyKind::Empty;
        // Past the head write, a request with a body has had its body read (some or all).
        let has_body = plan.framing.body != BodyKind::Empty;
        let mut attempt = 0;
        let (mut up, response) = 'attempt: loop {
            attempt += 1;
            let pooled = std::iter::from_fn(|| cs.pool.take(ep)).find(|c| c.idle_is_clean());
            let (mut up, reused) = match pooled {
                Some(c) => {
                    stats.cx_reused.inc();
                    (c, true)
                }
                None => {
                    let connect_timeout = match remaining() {
                        Some(r) => r.min(cs.cfg.connect_timeout),
                        None => cs.cfg.connect_timeout,
                    };
                    match view.connector.connect(endpoint.addr, connect_timeout).await {
                        Ok(c) => {
                            stats.cx_total.inc();
                            es.cx_total.inc();
                            (c, false)
                        }
                        Err(e) => {
                            tracing::debug!(upstream = %endpoint.addr, error = %e, "upstream connect failed");
                            stats.cx_connect_fail.inc();
                            es.cx_connect_fail.inc();
                            stats.rq_class[4].inc();
                            let (status, flag, msg): (u16, _, &[u8]) =
                                if deadline.is_some_and(|d| Instant::now() >= d) {
                                    (
                                        504,
                                        ResponseFlag::UpstreamTimeout,
                                        b"upstream request timeout",
                                    )
                                } else {
                                    (
                                        503,
                                        ResponseFlag::UpstreamConnectFailure,
                                        b"upstream connect error",
                                    )
                                };
                            return self.local(down, view, plan, status, None, msg, flag).await;
                        }
                    }
                }
            };
            up.set_read_timeout(remaining());
            up.set_write_timeout(remaining());
            self.ubuf.consume(self.ubuf.len());
            if up.write_all(&self.wbuf).await.is_err() {
                if reused && attempt == 1 {
                    continue 'attempt;
                }
                return self
                    .upstream_failed(
                        down,
                        view,
                        plan,
                        cluster,
                        ResponseFlag::UpstreamConnectionTermination,
                        false,
                    )
                    .await;
            }
            if plan.framing.body != BodyKind::Empty {
                if plan.framing.expect_continue
                    && down
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .await
                        .is_err()
                {
                    return self.finish_error(
                        view,
                        cluster,
                        0,
                        ResponseFlag::DownstreamConnectionTermination,
                    );
                }
                match body::forward(
                    down,
                    &mut self.rbuf,
                    &mut up,
                    plan.framing.body,
                    false,
                    None,
                    None,
                )
                .await
                {
                    Ok(n) => self.rec.bytes_received += n,
                    Err(BodyError::Write) => {
                        return self
                            .upstream_failed(
                                down,
                                view,
                                plan,
                                cluster,
                                ResponseFlag::UpstreamConnectionTermination,
                                has_body,
                            )
                            .await;
                    }
                    Err(BodyError::Framing) => {
                        let e = HeadError::BadRequest("malformed chunked body");
                        self.wbuf.clear();
                        encode::write_local_reply(
                            &mut self.wbuf,
                            400,
                            None,
                            e.reason().as_bytes(),
                            true,
                            false,
                        );
                        let _ = down.write_all(&self.wbuf).await;
                        return self.finish_error(
                            view,
                            cluster,
                            400,
                            ResponseFlag::DownstreamProtocolError,
                        );
                    }
                    Err(BodyError::Timeout) => {
                        return self.finish_error(
                            view,
                            cluster,
                            0,
                            ResponseFlag::DownstreamIdleTimeout,
                        );
                    }
                    Err(_) => {
                        return self.finish_error(
                            view,
                            cluster,
                            0,
                            ResponseFlag::DownstreamConnectionTermination,
                        )
                    }
                }
            }
            // Read the response head, skipping interim (1xx) responses.
            loop {
                if !self.ubuf.is_empty() {
                    match prepare_response(
                        self.ubuf.data(),
                        plan,
                        view.draining.get(),
                        &mut self.wbuf,
                    ) {
                        Ok(Some(Response::Interim(n))) => {
                            self.ubuf.consume(n);
                            continue;
                        }
                        Ok(Some(r)) => break 'attempt (up, r),
                        Ok(None) => {
                            // prepare_response refuses a head past the limit, so a buffer
                            // that grows to one byte beyond it always finds out.
                            if self.ubuf.is_full() {
                                self.ubuf.grow(MAX_RESPONSE_HEAD_BYTES + 1);
                            }
                        }
                        Err(BadResponse(why)) => {
                            tracing::debug!(upstream = %endpoint.addr, reason = why, "invalid upstream response");
                            stats.rq_protocol_error.inc();
                            return self
                                .upstream_failed(
                                    down,
                                    view,
                                    plan,
                                    cluster,
                                    ResponseFlag::UpstreamProtocolError,
                                    has_body,
                                )
                                .await;
                        }
                    }
                }
                match body::fill_from(&mut up, &mut self.ubuf, deadline).await {
                    Ok(n) if n > 0 => {}
                    Err(BodyError::Timeout) => {
                        stats.rq_timeout.inc();
                        return self
                            .upstream_failed(
                                down,
                                view,
                                plan,
                                cluster,
                                ResponseFlag::UpstreamTimeout,
                                has_body,
                            )
                            .await;
                    }
                    _ => {
                        if reused && retryable && attempt == 1 && self.ubuf.is_empty() {
                            // `wbuf` still holds the upstream request head: it is only
                            // overwritten once a response head has been parsed.
                            continue 'attempt;
                        }
                        stats.rq_reset.inc();
                        return self
                            .upstream_failed(
                                down,
                                view,
                                plan,
                                cluster,
                                ResponseFlag::UpstreamConnectionTermination,
                                has_body,
                            )
                            .await;
                    }
                }
            }
        };
        let (head_len, status, resp_body, strip, close_down, reuse_up) = match response {
            Response::Final {
                head_len,
                status,
                body,
                strip,
                close_down,
                reuse_up,
            } => (head_len, status, body, strip, close_down, reuse_up),
            Response::Upgraded(head_len) => {
                stats.rq_class[0].inc();
                return self
                    .tunnel(down, up, head_len, plan.idle_timeout, 101)
                    .await;
            }
            // Interim responses are consumed while reading the head; none reaches here.
            Response::Interim(_) => {
                return self.finish_error(view, cluster, 0, ResponseFlag::UpstreamProtocolError)
            }
        };
        self.ubuf.consume(head_len);
        stats.rq_class[crate::observe::stats::class_index(status)].inc();
        if down.write_all(&self.wbuf).await.is_err() {
            return Outcome {
                status,
                flag: ResponseFlag::DownstreamConnectionTermination,
                keep_alive: false,
            };
        }
        let mut sent = self.wbuf.len() as u64;
        let result = body::forward(
            &mut up,
            &mut self.ubuf,
            down,
            resp_body,
            strip,
            deadline,
            None,
        )
        .await;
        let flag = match result {
            Ok(n) => {
                sent += n;
                if reuse_up && self.ubuf.is_empty() {
                    cs.pool.put(ep, up);
                }
                ResponseFlag::None
            }
            Err(BodyError::Write) => ResponseFlag::DownstreamConnectionTermination,
            Err(BodyError::Timeout) => {
                stats.rq_timeout.inc();
                ResponseFlag::UpstreamTimeout
            }
            Err(_) => {
                stats.rq_reset.inc();
                ResponseFlag::UpstreamConnectionTermination
            }
        };
        self.rec.bytes_sent = sent;
        Outcome {
            status,
            flag,
            keep_alive: flag == ResponseFlag::None && !close_down,
        }
    }

    /// Counts the request for `cluster` and picks its endpoint (noting both for the
    /// access log), or answers `503 UH` when the cluster has none.
    async fn begin_upstream<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        cluster: usize,
    ) -> Result<usize, Outcome> {
        let cs = &view.clusters[cluster];
        if self.logging {
            self.rec.cluster = Some(cs.name.clone());
        }
        match cs.start_request() {
            Some(ep) => {
                if self.logging {
                    self.rec.upstream = Some(cs.cfg.endpoints[ep].addr);
                }
                Ok(ep)
            }
            None => {
                let msg = b"no healthy upstream";
                Err(self
                    .local(
                        down,
                        view,
                        plan,
                        503,
                        None,
                        msg,
                        ResponseFlag::NoHealthyUpstream,
                    )
                    .await)
            }
        }
    }

    /// CONNECT: open a TCP connection to an endpoint of the cluster, answer 200, then
    /// carry bytes both ways until both sides close.
    async fn connect<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        cluster: usize,
    ) -> Outcome {
        let cs = &view.clusters[cluster];
        let ep = match self.begin_upstream(down, view, plan, cluster).await {
            Ok(ep) => ep,
            Err(uh) => return uh,
        };
        let endpoint = &cs.cfg.endpoints[ep];
        let es = &cs.endpoints[ep];
        let up = match view
            .connector
            .connect(endpoint.addr, cs.cfg.connect_timeout)
            .await
        {
            Ok(u) => u,
            Err(_) => {
                cs.stats.cx_connect_fail.inc();
                es.cx_connect_fail.inc();
                cs.stats.rq_class[4].inc();
                return self
                    .local(
                        down,
                        view,
                        plan,
                        503,
                        None,
                        b"upstream connect error",
                        ResponseFlag::UpstreamConnectFailure,
                    )
                    .await;
            }
        };
        cs.stats.cx_total.inc();
        es.cx_total.inc();
        cs.stats.rq_class[1].inc();
        es.rq_active.inc();
        let _active = Active(&es.rq_active);
        self.wbuf.clear();
        self.wbuf
            .extend_from_slice(b"HTTP/1.1 200 Connection Established\r\n\r\n");
        self.tunnel(down, up, 0, plan.idle_timeout, 200).await
    }

    /// Turns the connection into a tunnel (after a `101 Switching Protocols`, or a
    /// CONNECT's `200`): send the head in `wbuf` on (dropping `head_len` bytes of upstream
    /// head from `ubuf`), pass on bytes that already arrived behind the heads, then copy
    /// both ways until both sides are done. The connection is not reused afterwards.
    async fn tunnel<D: Io, U: Io>(
        &mut self,
        down: &mut D,
        mut up: U,
        head_len: usize,
        idle: Duration,
        status: u16,
    ) -> Outcome {
        let closed = |flag| Outcome {
            status,
            flag,
            keep_alive: false,
        };
        self.ubuf.consume(head_len);
        if down.write_all(&self.wbuf).await.is_err() {
            return closed(ResponseFlag::DownstreamConnectionTermination);
        }
        self.rec.bytes_sent = self.wbuf.len() as u64;
        // Bytes that arrived with the heads belong to the new protocol already.
        if !self.ubuf.is_empty() && down.write_all(self.ubuf.data()).await.is_err() {
            return closed(ResponseFlag::DownstreamConnectionTermination);
        }
        if !self.rbuf.is_empty() && up.write_all(self.rbuf.data()).await.is_err() {
            return closed(ResponseFlag::UpstreamConnectionTermination);
        }
        self.rec.bytes_sent += self.ubuf.len() as u64;
        self.rec.bytes_received += self.rbuf.len() as u64;
        let (n, m) = (self.ubuf.len(), self.rbuf.len());
        self.ubuf.consume(n);
        self.rbuf.consume(m);
        let (Ok(mut down2), Ok(mut up2)) = (down.try_clone(), up.try_clone()) else {
            return closed(ResponseFlag::UpstreamConnectionTermination);
        };
        let t = crate::tunnel::run(down, &mut down2, &mut up, &mut up2, idle).await;
        self.rec.bytes_received += t.bytes_a_to_b;
        self.rec.bytes_sent += t.bytes_b_to_a;
        closed(crate::tunnel::flag_for(t))
    }

    /// The upstream failed before a response head was sent downstream: answer locally.
    /// `body_touched`: forwarding of the request body has begun (it may be half read, or
    /// all of it may be gone), so it cannot be read again to keep the connection in step.
    #[allow(clippy::too_many_arguments)]
    async fn upstream_failed<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        cluster: usize,
        flag: ResponseFlag,
        body_touched: bool,
    ) -> Outcome {
        let (status, msg): (u16, &[u8]) = match flag {
            ResponseFlag::UpstreamTimeout => (504, b"upstream request timeout"),
            ResponseFlag::UpstreamProtocolError => (502, UPE_BODY),
            _ => (
                503,
                b"upstream connect error or disconnect/reset before headers",
            ),
        };
        view.clusters[cluster].stats.rq_class[4].inc();
        if body_touched {
            return self.reply_and_close(down, plan, status, msg, flag).await;
        }
        let mut o = self.local(down, view, plan, status, None, msg, flag).await;
        // Reading the body to discard it may have failed half way; never keep a
        // connection whose request had a body.
        if plan.framing.body != BodyKind::Empty {
            o.keep_alive = false;
        }
        o
    }

    /// Sends a local reply with `connection: close` at once, without reading anything
    /// more of the request; the connection closes after it.
    async fn reply_and_close<D: Io>(
        &mut self,
        down: &mut D,
        plan: &Plan<'_>,
        status: u16,
        msg: &[u8],
        flag: ResponseFlag,
    ) -> Outcome {
        self.wbuf.clear();
        encode::write_local_reply(&mut self.wbuf, status, None, msg, true, plan.is_head);
        let _ = down.write_all(&self.wbuf).await;
        self.rec.bytes_sent = self.wbuf.len() as u64;
        Outcome {
            status,
            flag,
            keep_alive: false,
        }
    }

    /// A request that ended without a response the client can use: close the connection.
    fn finish_error<C: Connector>(
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
