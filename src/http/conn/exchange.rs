//! The HTTP/1 connection manager's upstream side: one proxied request, from picking an
//! endpoint to the last byte of the response.
//!
//! ```text
//! begin_upstream (UH) ─► HTTP/2 cluster: h1_to_h2
//!                    └─► pooled or new connection (UF, UT) ─► send head [retry once on
//!                        a stale pooled conn] ─► [100 Continue] ─► stream request body
//!                        ─► read response head (h1::response; UC, UT, UPE) ─► send it
//!                        ─► stream response body ─► pool the connection or drop it
//! ```
//!
//! A failure before a response head was sent becomes a local reply (`upstream_failed`).

use std::time::{Duration, Instant};

use futures_lite::io::AsyncWriteExt;

use crate::config::UpstreamProtocol;
use crate::upstream::Connector;

use super::super::body::{self, BodyError};
use super::super::buf::ReadBuf;
use super::super::failure::Failure;
use super::super::filter::headers::Edits;
use super::super::flags::ResponseFlag;
use super::super::h1::encode::{self, DownFraming, DownstreamResponse};
use super::super::h1::head::{BodyKind, HeadError};
use super::super::h1::response::{self, Asked, BadResponse, Kind, MAX_RESPONSE_HEAD_BYTES};
use super::super::io::Io;
use super::super::view::WorkerView;
use super::upload::{upload, Upload};
use super::{Action, Conn, Outcome, Plan};

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

/// What the request asked for that changes how its response is read.
fn asked(plan: &Plan<'_>) -> Asked {
    Asked {
        head: plan.is_head,
        upgrade: matches!(plan.action, Action::Proxy { upgrade: true, .. }),
    }
}

/// Parses the upstream response head in `data` (`h1::response`); on success the
/// downstream head is in `wbuf`. `Err` is a malformed response. `must_close`: the
/// downstream connection closes after this response whatever the headers say
/// (draining, or a request body that was cut).
fn prepare_response(
    data: &[u8],
    plan: &Plan<'_>,
    must_close: bool,
    wbuf: &mut Vec<u8>,
) -> Result<Option<Response>, BadResponse> {
    let mut slots = response::header_slots();
    let Some(resp) = response::parse(data, asked(plan), &mut slots)? else {
        return Ok(None);
    };
    let (body, f) = match resp.kind {
        Kind::Interim => return Ok(Some(Response::Interim(resp.head_len))),
        Kind::Upgraded { upgrade } => {
            wbuf.clear();
            encode::write_switching_protocols(wbuf, resp.reason, resp.headers, upgrade);
            return Ok(Some(Response::Upgraded(resp.head_len)));
        }
        Kind::Final { body, framing } => (body, framing),
    };
    let (framing, strip) = response::down_framing(body, plan.minor);
    let close_down = !plan.framing.keep_alive || must_close || framing == DownFraming::Close;
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
            edits: plan.response_edits,
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
pub(super) struct Active<'a>(pub(super) &'a crate::observe::stats::Counter);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Conn {
    /// Proxies one request to `cluster` and streams the response back.
    pub(super) async fn proxy<D: Io, C: Connector>(
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
        if let (
            Action::Proxy {
                auto_host: true, ..
            },
            Some(h),
        ) = (&plan.action, &endpoint.hostname)
        {
            encode::set_host(&mut self.wbuf, h);
        }
        let es = &cs.endpoints[ep];
        es.rq_active.inc();
        let _active = Active(&es.rq_active);
        let deadline = (!timeout.is_zero()).then(|| start + timeout);
        if cs.cfg.protocol == UpstreamProtocol::Http2 {
            // The upstream head moves out of `wbuf` while the response head is written.
            let head = std::mem::take(&mut self.wbuf);
            let r = super::super::h1_to_h2::H1Request {
                head: &head,
                body: plan.framing.body,
                minor: plan.minor,
                keep_alive: plan.framing.keep_alive,
                expect_continue: plan.framing.expect_continue,
                draining: view.draining.get(),
                response_edits: plan.response_edits,
            };
            let mut out = Vec::new();
            let res = super::super::h1_to_h2::exchange(
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
            // A response forwarded before the body was all sent: close gently.
            self.linger |= res.body_cut;
            self.rec.bytes_received += res.bytes_received;
            self.rec.bytes_sent = res.bytes_sent;
            if res.status >= 400 && res.bytes_sent == 0 && res.flag != ResponseFlag::None {
                // Nothing was sent yet: answer locally like the HTTP/1 path does.
                let msg: &[u8] = match Failure::from_upstream_flag(res.flag) {
                    Some(f) => f.body().as_bytes(),
                    None if res.flag == ResponseFlag::DownstreamProtocolError => b"bad request",
                    None => Failure::ConnectionTermination.body().as_bytes(),
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
        // The upstream answered or went away before the whole request body was sent.
        let mut body_cut = false;
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
                            let f = if deadline.is_some_and(|d| Instant::now() >= d) {
                                Failure::RouteTimeout
                            } else {
                                Failure::ConnectFailure
                            };
                            return self.fail_locally(down, view, plan, f).await;
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
                match upload(
                    down,
                    &mut self.rbuf,
                    &mut up,
                    &mut self.ubuf,
                    plan.framing.body,
                    asked(plan),
                )
                .await
                {
                    Upload::Done(n) => self.rec.bytes_received += n,
                    // Read what the upstream said (or find it gone) below.
                    Upload::Cut => {
                        body_cut = true;
                        self.linger = true;
                    }
                    Upload::Framing => {
                        self.linger = true;
                        let e = HeadError::BadRequest("malformed chunked body");
                        self.wbuf.clear();
                        encode::write_local_reply(
                            &mut self.wbuf,
                            400,
                            None,
                            e.reason().as_bytes(),
                            true,
                            false,
                            Edits::none(),
                        );
                        let _ = down.write_all(&self.wbuf).await;
                        return self.finish_error(
                            view,
                            cluster,
                            400,
                            ResponseFlag::DownstreamProtocolError,
                        );
                    }
                    Upload::DownTimeout => {
                        return self.finish_error(
                            view,
                            cluster,
                            0,
                            ResponseFlag::DownstreamIdleTimeout,
                        );
                    }
                    Upload::DownClosed => {
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
                        view.draining.get() || body_cut,
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
                // The wait for the head is bounded by the route deadline and by the
                // stream idle timeout, whichever comes first.
                let idle_at = (!plan.stream_idle_timeout.is_zero())
                    .then(|| Instant::now() + plan.stream_idle_timeout);
                let wait = match (deadline, idle_at) {
                    (Some(d), Some(i)) => Some(d.min(i)),
                    (d, i) => d.or(i),
                };
                match body::fill_from(&mut up, &mut self.ubuf, wait).await {
                    Ok(n) if n > 0 => {}
                    Err(BodyError::Timeout) if deadline.is_none_or(|d| Instant::now() < d) => {
                        // The request was sent whole: Envoy answers 504 `stream timeout`.
                        let f = Failure::StreamIdle {
                            request_complete: true,
                        };
                        stats.rq_class[4].inc();
                        return self
                            .reply_and_close(down, plan, f.status(), f.body().as_bytes(), f.flag())
                            .await;
                    }
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
        if deadline.is_none() && !plan.stream_idle_timeout.is_zero() {
            // No route timeout: each read of the response body is bounded by the stream
            // idle timeout instead (with a route timeout, the deadline bounds them all).
            up.set_read_timeout(Some(plan.stream_idle_timeout));
        }
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
                // After a cut request body the upstream connection is out of step.
                if reuse_up && !body_cut && self.ubuf.is_empty() {
                    cs.pool.put(ep, up);
                }
                ResponseFlag::None
            }
            Err(BodyError::Write) => ResponseFlag::DownstreamConnectionTermination,
            Err(BodyError::Timeout) if deadline.is_none() => ResponseFlag::StreamIdleTimeout,
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
    pub(super) async fn begin_upstream<D: Io, C: Connector>(
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
            None => Err(self
                .fail_locally(down, view, plan, Failure::NoHealthyUpstream)
                .await),
        }
    }

    /// The upstream failed before a response head was sent downstream: answer locally.
    /// `body_touched`: forwarding of the request body has begun (it may be half read, or
    /// all of it may be gone), so it cannot be read again to keep the connection in step.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upstream_failed<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        cluster: usize,
        flag: ResponseFlag,
        body_touched: bool,
    ) -> Outcome {
        let f = Failure::from_upstream_flag(flag).unwrap_or(Failure::ConnectionTermination);
        let (status, msg) = (f.status(), f.body().as_bytes());
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
}
