//! The HTTP/1 connection manager's adapter to the upstream request
//! (`upstream::request`): one proxied request, from picking an endpoint to the last
//! byte of the response.
//!
//! ```text
//! request::pick (UH) ─► HTTP/2 cluster: h1_to_h2
//!                   └─► request::run(Http1, Try): pooled or new connection (UF, UT)
//!                       ─► Try: send head ─► [100 Continue] ─► stream request body
//!                          (route clock starts) ─► read response head (h1::response;
//!                          UC, UT, UPE, SI)   [the loop retries a stale pooled conn once]
//!                       ─► send the head ─► stream response body ─► pool the connection
//! ```
//!
//! A failure before a response head was sent becomes a local reply (`upstream_failed`,
//! in `failed.rs`).

use std::time::Duration;

use futures_lite::io::AsyncWriteExt;

use crate::upstream::counted::Counted;
use crate::upstream::request::clock::{Expiry, Progress};
use crate::upstream::request::replay::{Kept, Loss, OnLoss};
use crate::upstream::request::{self, hedge, Attempt, Exchange, RetryPolicy, Tried};
use crate::upstream::Connector;

use super::super::body::{self, BodyError};
use super::super::body_hooks::{self, Stopped};
use super::super::buf::ReadBuf;
use super::super::failure::Failure;
use super::super::filter::headers::Edits;
use super::super::flags::ResponseFlag;
use super::super::h1::encode;
use super::super::h1::head::{BodyKind, HeadError};
use super::super::h1::response::{BadResponse, MAX_RESPONSE_HEAD_BYTES};
use super::super::io::Io;
use super::super::request_stream::Via;
use super::super::view::WorkerView;
use super::held_response::{Held, HeldHead};
use super::response_head::{asked, prepare_response, Response};
use super::streamed::Streamed;
use super::upload::{upload, Upload};
use super::{Action, Conn, Outcome, Plan};

/// Decrements an endpoint's in-flight count however a tunnel ends (`connect`).
pub(super) struct Active<'a>(pub(super) &'a crate::observe::stats::Counter);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How long the client may leave its request body stalled: the stream idle timeout
/// (a `408`, Envoy's) when it is shorter than the connection's idle timeout, which
/// otherwise closes the connection. `true`: it is the stream idle timeout.
fn body_stall(plan: &Plan<'_>) -> (Duration, bool) {
    let si = plan.stream_idle_timeout;
    if !si.is_zero() && si < plan.idle_timeout {
        (si, true)
    } else {
        (plan.idle_timeout, false)
    }
}

/// The failure an expired clock stands for.
fn expiry_failure(progress: &Progress) -> Failure {
    // A socket timeout is only ever set from the clocks; the route's is the one that
    // cannot move.
    progress.failure(progress.expired().unwrap_or(Expiry::Route))
}

/// The HTTP/1 client's side of one try on an HTTP/1.1 connection (`request::run`):
/// send the head, the body (watching for an early answer), read the response head.
struct Try<'x, 'p, D, C: Connector> {
    conn: &'x mut Conn,
    down: &'x mut D,
    view: &'x WorkerView<C>,
    plan: &'x Plan<'p>,
    cluster: usize,
    progress: &'x Progress,
    /// Idempotent and without a body: may be sent again after a stale connection.
    replayable: bool,
    /// Forwarding of the request body has begun: it cannot be read again.
    body_touched: bool,
    /// The whole request body was small and already read: it went into `wbuf` behind
    /// the head, and a retry sends it again from there.
    body_inline: bool,
    /// The upstream answered or went away before the whole request body was sent.
    body_cut: bool,
    /// The streamed request body's copy for a retry (`conn/replay.rs`).
    kept: Kept,
    /// The response head's edits (with `x-envoy-attempt-count` when asked for).
    response_edits: Edits<'p>,
    /// The request as hedged tries send it, when the route hedges (`request::hedge`).
    hedge: Option<hedge::Copy<Vec<u8>>>,
}

impl<D: Io, C: Connector> Try<'_, '_, D, C> {
    /// A small request body that is all here already goes up with the head, in one
    /// write (and a retry sends it again from there); not while a `100 Continue` is due,
    /// which the client waits for.
    fn inline_body(&mut self) {
        let (conn, plan, progress) = (&mut *self.conn, self.plan, self.progress);
        // A small request body that is all here already goes up with the head, in one
        // write; not while a `100 Continue` is due, which the client waits for.
        // (A body the chain rewrites as it streams goes piece by piece.)
        if plan.framing.body != BodyKind::Empty
            && !plan.framing.expect_continue
            && !self.body_inline
            && !super::held::streams(plan)
        {
            let (data, chunks) = (conn.rbuf.data(), plan.chunks(false));
            if let Some(n) =
                body::whole_body(plan.framing.body, chunks, data, body::INLINE_BODY_BYTES)
            {
                let whole = data.get(..n).unwrap_or_default();
                conn.wbuf.extend_from_slice(whole);
                if let Some(tee) = &plan.tee {
                    crate::http::mirror::tee_whole(tee, plan.framing.body, whole);
                }
                conn.rbuf.consume(n);
                self.body_inline = true;
                self.body_touched = true;
                conn.rec.bytes_received += n as u64;
                // The request is complete: the route clock starts (Envoy).
                progress.request_done();
            }
        }
    }
}

/// What a try ended with.
enum Got {
    Response(Response),
    /// The exchange ended without an upstream failure (the client went away or sent a
    /// malformed body), already answered as far as it can be.
    Ended(Outcome),
}

impl<D: Io, C: Connector> Exchange<Counted<C::Conn>> for Try<'_, '_, D, C> {
    type Head = Got;

    fn resendable(&self) -> Option<bool> {
        let empty = self.plan.framing.body == BodyKind::Empty;
        Some(empty || self.body_inline || self.kept.whole().is_some())
    }

    fn hedge_copy(&self) -> Option<hedge::Copy<Vec<u8>>> {
        self.hedge.clone()
    }

    fn adopt(&mut self, mut buf: ReadBuf) -> Result<Got, Tried> {
        // The hedged try's response takes this exchange's place; its buffer goes back
        // to the worker's pool in the end instead of the one it replaces.
        std::mem::swap(&mut self.conn.ubuf, &mut buf);
        let (conn, plan) = (&mut *self.conn, self.plan);
        let must_close = self.plan.closing(self.view) || self.body_cut;
        let mut edits = self.response_edits;
        let up = self.progress.phase_marks();
        edits.stamp.phases = edits.stamp.phases.map(|_| conn.marks.with_upstream(up));
        let never = |_, _: &[httparse::Header<'_>]| false;
        match prepare_response(
            conn.ubuf.data(),
            plan,
            must_close,
            &mut conn.wbuf,
            edits,
            never,
        ) {
            Ok(Some(r @ (Response::Final { .. } | Response::Upgraded(_)))) => Ok(Got::Response(r)),
            _ => Err(Tried::fatal(Failure::ProtocolError)),
        }
    }

    async fn try_once(
        &mut self,
        up: &mut Counted<C::Conn>,
        at: Attempt<'_, '_>,
    ) -> Result<Got, Tried> {
        self.inline_body();
        let (conn, plan, progress) = (&mut *self.conn, self.plan, self.progress);
        let mut resend =
            plan.framing.body == BodyKind::Empty || self.body_inline || self.kept.whole().is_some();
        at.restamp().apply_h1(&mut conn.wbuf);
        if at.retry.is_some_and(|r| r.attempt_count_response) {
            self.response_edits.stamp.attempt_count = at.retry.map(|r| r.attempt());
        }
        if resend {
            // Complete already: hedged tries send this (`request::hedge`).
            request::http1_hedge::fill_hedge(&self.hedge, &conn.wbuf, self.kept.whole());
        }
        // An upstream that goes away mid-body asks the retry policy at once (Envoy's
        // reset), while a copy of the body is kept.
        let view = self.view;
        let stats = &view.clusters[self.cluster].stats;
        let decide = || at.retry_loss(stats);
        let on_loss = OnLoss::new(&decide);
        let watch_loss = at.retry.is_some() && self.kept.live();
        // Every upstream read and write is bounded by the time left on the clocks.
        let left = progress.time_left();
        up.set_read_timeout(left);
        up.set_write_timeout(left);
        conn.ubuf.consume(conn.ubuf.len());
        if up.write_all(&conn.wbuf).await.is_err() {
            // Nothing of the body was read yet, or all of it is in `wbuf`: the request
            // can go again as it was.
            return Err(Tried::failed(Failure::ConnectionTermination, true, resend));
        }
        if let Some(body) = self.kept.whole() {
            // A retry: the body the first try streamed goes again from its copy.
            if up.write_all(body).await.is_err() {
                return Err(Tried::failed(Failure::ConnectionTermination, true, resend));
            }
            progress.touch();
        } else if plan.framing.body != BodyKind::Empty && !self.body_inline {
            self.body_touched = true;
            if plan.framing.expect_continue
                && self
                    .down
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
            {
                let dc = ResponseFlag::DownstreamConnectionTermination;
                return Ok(Got::Ended(conn.finish_error(
                    self.view,
                    self.cluster,
                    0,
                    dc,
                )));
            }
            let (stall, stream_idle) = body_stall(plan);
            self.down.set_read_timeout(Some(stall));
            let sent = upload(
                self.down,
                &mut conn.rbuf,
                up,
                &mut conn.ubuf,
                (plan.framing.body, plan.chunks(false)),
                asked(plan),
                Via::new(&plan.chain, plan.tee.as_ref(), super::held::streams(plan)),
                &mut self.kept,
                &stats.retry_or_shadow_abandoned,
                watch_loss.then_some(&on_loss),
            )
            .await;
            self.down.set_read_timeout(Some(plan.idle_timeout));
            progress.touch();
            match sent {
                Upload::Done(n) => {
                    conn.rec.bytes_received += n;
                    // Within the limit, the body can go again from its copy.
                    self.kept.finish();
                    resend = self.kept.whole().is_some();
                    if resend {
                        request::http1_hedge::fill_hedge(
                            &self.hedge,
                            &conn.wbuf,
                            self.kept.whole(),
                        );
                    }
                    // The request is complete: the route clock starts (Envoy); the
                    // reads below are bounded by it.
                    progress.request_done();
                }
                // The upstream went away mid-body and the retry policy retries: the
                // body was read whole into its copy, which the retry sends.
                Upload::Lost(n) => {
                    conn.rec.bytes_received += n;
                    self.kept.finish();
                    progress.request_done();
                    return Err(Tried::lost_mid_body(true, false));
                }
                // The body outgrew the copy while the retry waited: Envoy's 507.
                Upload::Overflow => {
                    self.body_cut = true;
                    conn.linger = true;
                    return Err(Tried::lost_mid_body(true, true));
                }
                // A filter answered the streaming body: the upstream request is cut,
                // and so is the client's (Envoy closes after a local reply to a
                // request it has not read whole).
                Upload::Replied(r) => {
                    self.body_cut = true;
                    let o = conn
                        .reply_and_close(self.down, plan, r.status, r.body.as_bytes(), r.flag)
                        .await;
                    return Ok(Got::Ended(o));
                }
                // Read what the upstream said (or find it gone) below.
                Upload::Cut => {
                    self.body_cut = true;
                    conn.linger = true;
                }
                Upload::Framing => {
                    conn.linger = true;
                    let e = HeadError::BadRequest("malformed chunked body");
                    conn.wbuf.clear();
                    encode::write_local_reply(
                        &mut conn.wbuf,
                        400,
                        None,
                        e.body().as_bytes(),
                        true,
                        false,
                        plan.codec_edits,
                    );
                    let _ = self.down.write_all(&conn.wbuf).await;
                    let dpe = ResponseFlag::DownstreamProtocolError;
                    return Ok(Got::Ended(conn.finish_error(
                        self.view,
                        self.cluster,
                        400,
                        dpe,
                    )));
                }
                Upload::DownTimeout if stream_idle => {
                    let f = Failure::StreamIdle {
                        request_complete: false,
                    };
                    request::count_status(&self.view.clusters[self.cluster].stats, f.status());
                    let (status, msg) = (f.status(), f.body().as_bytes());
                    let o = conn
                        .reply_and_close(self.down, plan, status, msg, f.flag())
                        .await;
                    return Ok(Got::Ended(o));
                }
                Upload::DownTimeout => {
                    let di = ResponseFlag::DownstreamIdleTimeout;
                    return Ok(Got::Ended(conn.finish_error(
                        self.view,
                        self.cluster,
                        0,
                        di,
                    )));
                }
                Upload::DownClosed => {
                    let dc = ResponseFlag::DownstreamConnectionTermination;
                    return Ok(Got::Ended(conn.finish_error(
                        self.view,
                        self.cluster,
                        0,
                        dc,
                    )));
                }
            }
        }
        // Read the response head, skipping interim (1xx) responses.
        loop {
            if !conn.ubuf.is_empty() {
                let must_close = self.plan.closing(self.view) || self.body_cut;
                let judge = |status, headers: &[httparse::Header<'_>]| {
                    at.retry_response(status, headers, resend && !self.body_cut, stats)
                };
                let mut edits = self.response_edits;
                if let Some(r) = at.retry.filter(|r| r.attempt_count_response) {
                    // The tries started by now, hedged ones included (Envoy).
                    edits.stamp.attempt_count = Some(r.attempt());
                }
                // The debug header: the phases up to now.
                let up = progress.phase_marks();
                edits.stamp.phases = edits.stamp.phases.map(|_| conn.marks.with_upstream(up));
                match prepare_response(
                    conn.ubuf.data(),
                    plan,
                    must_close,
                    &mut conn.wbuf,
                    edits,
                    judge,
                ) {
                    Ok(Some(Response::Retry)) => return Err(Tried::retry_response()),
                    Ok(Some(Response::Interim(n))) => {
                        conn.ubuf.consume(n);
                        continue;
                    }
                    Ok(Some(r)) => return Ok(Got::Response(r)),
                    Ok(None) => {
                        // prepare_response refuses a head past the limit, so a buffer
                        // that grows to one byte beyond it always finds out.
                        if conn.ubuf.is_full() {
                            conn.ubuf.grow(MAX_RESPONSE_HEAD_BYTES + 1);
                        }
                    }
                    Err(BadResponse(why)) => {
                        tracing::debug!(reason = why, "invalid upstream response");
                        return Err(Tried::failed(Failure::ProtocolError, false, resend));
                    }
                }
            }
            match body::fill_from(up, &mut conn.ubuf, Some(progress)).await {
                Ok(n) if n > 0 => {}
                Err(BodyError::Timeout) => return Err(Tried::fatal(expiry_failure(progress))),
                // Gone mid-body after the retry policy said no (or the copy was given
                // up): it is not asked again.
                _ if on_loss.state() == Loss::Refused => {
                    return Err(Tried::lost_mid_body(false, false));
                }
                // `wbuf` still holds the upstream request head for a retry: it is only
                // overwritten once a response head has been parsed.
                _ => {
                    let replayable = self.replayable && conn.ubuf.is_empty();
                    return Err(Tried::failed(
                        Failure::ConnectionTermination,
                        replayable,
                        resend,
                    ));
                }
            }
        }
    }
}

impl Conn {
    /// Proxies one request to `cluster` and streams the response back.
    pub(super) async fn proxy<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        cluster: (usize, Option<std::net::SocketAddr>),
        (timeout, ends_at, upstream_duration): (
            Duration,
            Option<std::time::Instant>,
            Option<Duration>,
        ),
        h2_request: Option<Box<http::Request<()>>>,
    ) -> Outcome {
        // The upstream buffer is borrowed from the worker only for this exchange.
        self.ubuf = view.bufs.take();
        let progress = Progress::new(timeout, plan.stream_idle_timeout)
            .ending_at(ends_at)
            .upstream_duration(upstream_duration)
            .at_priority(plan.priority)
            .recording_upstream(self.upstream);
        let outcome = self
            .exchange(down, view, plan, (cluster, timeout), h2_request, &progress)
            .await;
        view.bufs
            .put(std::mem::replace(&mut self.ubuf, ReadBuf::new(0)));
        self.marks.set_upstream(progress.phase_marks());
        self.rec.retry_flag = progress.retry_flag();
        // Read only for a request that ended `UT` (the check may read the clock).
        self.rec.route_timeout =
            outcome.flag == ResponseFlag::UpstreamTimeout && progress.route_timed_out();
        outcome
    }

    async fn exchange<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        ((cluster, dst), timeout): ((usize, Option<std::net::SocketAddr>), Duration),
        h2_request: Option<Box<http::Request<()>>>,
        progress: &Progress,
    ) -> Outcome {
        // An original_dst cluster's state for `dst` (`upstream::original_dst`).
        let cs = &view.clusters[cluster].for_request(dst);
        if self.logging {
            self.rec.cluster = Some(cs.name.clone());
        }
        let hash = match &plan.action {
            Action::Proxy { hash, .. } => *hash,
            _ => None,
        };
        let picked = match request::pick(cs, hash, progress.priority()) {
            Ok(p) => p,
            Err(f) => return self.fail_locally(down, view, plan, f).await,
        };
        if self.logging {
            self.rec.upstream = Some(picked.endpoint.addr);
        }
        let mut h2_request = h2_request;
        if let (
            Action::Proxy {
                auto_host: true, ..
            },
            Some(host),
        ) = (&plan.action, &picked.endpoint.hostname)
        {
            // auto_host_rewrite: the Host becomes the picked endpoint's hostname.
            match h2_request.as_deref_mut() {
                Some(r) => request::http2::set_authority(r, host),
                None => encode::set_host(&mut self.wbuf, host),
            }
        }
        if plan.framing.body == BodyKind::Empty {
            // The head was the whole request: the route clock starts now.
            progress.request_done();
        }
        let retry = plan.retry();
        if let Some(req) = h2_request {
            let (to, clock, p) = ((&**cs, picked.ep), (timeout, retry), progress);
            // Boxed: an HTTP/2 upstream's exchange would otherwise size every HTTP/1
            // connection's future (9 KiB of each idle connection's memory).
            return Box::pin(self.via_http2(down, view, plan, to, *req, p, clock)).await;
        }
        let mut x = Try {
            conn: self,
            down: &mut *down,
            view,
            plan,
            cluster,
            progress,
            replayable: plan.idempotent && plan.framing.body == BodyKind::Empty,
            body_touched: false,
            body_inline: false,
            body_cut: false,
            kept: Kept::new(retry.map(|r| r.buffer_limit())),
            response_edits: plan.response_edits,
            hedge: retry.filter(|r| r.hedging()).map(|_| hedge::copy()),
        };
        if retry.is_some() {
            // A body that is whole at hand can be sent again; its request is complete,
            // so the per-try clocks apply from the first try (Envoy).
            x.inline_body();
        }
        let (mut ep, mut again) = (picked.ep, None);
        let tried = request::run(
            &request::Http1,
            RetryPolicy::STALE_CONNECTION,
            retry,
            cs,
            &mut ep,
            &mut again,
            &*view.connector,
            progress,
            timeout,
            &mut x,
        )
        .await;
        let (body_touched, body_cut) = (x.body_touched, x.body_cut);
        let response_edits = x.response_edits;
        if self.logging {
            self.rec.upstream = again
                .as_ref()
                .map_or(self.rec.upstream, |p| Some(p.endpoint.addr));
            // `%UPSTREAM_REQUEST_ATTEMPT_COUNT%`: the tries the retry policy made.
            self.rec.log.attempts = retry.map_or(0, |r| r.attempt());
            self.rec.log.transport_failure = progress.transport_failure();
            self.rec.log.upstream_local = progress.upstream_local();
        }
        self.rec.upstream_tls = progress.upstream_tls();
        let (mut up, response) = match tried {
            Ok((up, Got::Response(r))) => (up, r),
            Ok((_, Got::Ended(o))) => return o,
            Err(f) => {
                let retried = retry.is_some_and(|r| r.retried());
                return self
                    .upstream_failed(down, view, plan, f, body_touched, retried)
                    .await;
            }
        };
        // A retriable response that goes to the client because the retries ran out.
        let retry_flag = retry.map_or(ResponseFlag::None, |r| r.response_flag());
        let stats = &cs.stats;
        let (mut head_len, status, mut resp_body, strip, mut close_down, reuse_up) = match response
        {
            Response::Final {
                head_len,
                status,
                body,
                strip,
                close_down,
                reuse_up,
            } => (head_len, status, body, strip, close_down, reuse_up),
            Response::Upgraded(head_len) => {
                request::count_response(cs, ep, 101);
                // The try's bound (the cluster's max_stream_duration) ends the tunnel.
                let bound = progress.streaming_end().map(|at| (at, &*cs.stats));
                return self
                    .tunnel(down, up, head_len, plan.idle_timeout, 101, bound)
                    .await;
            }
            // Interim responses are consumed while reading the head, and retried ones
            // never come back; none reaches here.
            Response::Interim(_) | Response::Retry => {
                return self.finish_error(view, cluster, 0, ResponseFlag::UpstreamProtocolError)
            }
        };
        request::count_response(cs, ep, status);
        if plan.chain.hooks().response_head {
            // Boxed, as the rare path it is (only chains with a response-head hook).
            if let Some(reply) =
                Box::pin(self.response_head_hook(plan, status, close_down, response_edits)).await
            {
                // A filter answers instead; the upstream connection, mid-response, goes.
                let body = reply.body.as_bytes();
                return self
                    .reply_and_close(down, plan, reply.status, body, reply.flag)
                    .await;
            }
        }
        if plan.chain.hooks().response_body {
            // Head and whole body held for the chain, then both in the write buffer.
            let h = HeldHead {
                head_len,
                body: resp_body,
                close_down,
            };
            match self
                .hold_response(&mut up, plan, h, response_edits, progress)
                .await
            {
                Held::Ready { close } => {
                    (head_len, resp_body, close_down) = (0, BodyKind::Empty, close)
                }
                Held::Reply(r) => {
                    let body = r.body.as_bytes();
                    return self
                        .reply_and_close(down, plan, r.status, body, r.flag)
                        .await;
                }
                Held::Failed(e) => {
                    let f = match e {
                        BodyError::Timeout => expiry_failure(progress),
                        _ => Failure::ConnectionTermination,
                    };
                    request::count_late(&cs.stats, f);
                    return self.finish_error(view, cluster, 0, f.flag());
                }
            }
        }
        if plan.chain.hooks().response_stream {
            // The body rewritten by the chain as it streams (`streamed.rs`).
            let h = HeldHead {
                head_len,
                body: resp_body,
                close_down,
            };
            let s =
                self.stream_response(down, &mut up, plan, h, response_edits, (status, progress));
            let (close, sent, flag) = match s.await {
                Streamed::Done { close, sent } => (close, sent, retry_flag),
                Streamed::Reply(r) => {
                    let body = r.body.as_bytes();
                    return self
                        .reply_and_close(down, plan, r.status, body, r.flag)
                        .await;
                }
                Streamed::Cut {
                    head_out: false,
                    error: Some(e),
                    ..
                } => {
                    // Nothing went to the client: answered as a held response's failure.
                    let f = match e {
                        BodyError::Timeout => expiry_failure(progress),
                        _ => Failure::ConnectionTermination,
                    };
                    request::count_late(&cs.stats, f);
                    return self.finish_error(view, cluster, 0, f.flag());
                }
                Streamed::Cut { error, sent, .. } => {
                    let f = match error {
                        None => ResponseFlag::None,
                        Some(BodyError::Write) if progress.expired().is_none() => {
                            ResponseFlag::DownstreamConnectionTermination
                        }
                        Some(e) => {
                            let f = match e {
                                BodyError::Write | BodyError::Timeout => expiry_failure(progress),
                                _ => Failure::ConnectionTermination,
                            };
                            request::count_late(stats, f);
                            f.flag()
                        }
                    };
                    (true, sent, f)
                }
            };
            self.rec.bytes_sent = sent;
            let clean = flag == retry_flag && reuse_up && !body_cut && self.ubuf.is_empty();
            if clean && up.reusable(cs.cfg.pool.max_requests_per_connection) {
                cs.put(ep, up);
            }
            return Outcome {
                status,
                flag,
                keep_alive: !close && flag == retry_flag,
            };
        }
        self.ubuf.consume(head_len);
        if self.logging {
            self.rec.upstream_head_out(&self.wbuf);
        }
        progress.head_sent(status);
        // A small body that is all here already goes out with the head, in one write
        // (unless the chain's response-body hook must see it first).
        let chunks = plan.chunks(strip);
        let resp_body =
            match body::whole_body(resp_body, chunks, self.ubuf.data(), body::INLINE_BODY_BYTES) {
                Some(n) if n > 0 && !plan.chain.hooks().response_data => {
                    let whole = self.ubuf.data().get(..n).unwrap_or_default();
                    self.wbuf.extend_from_slice(whole);
                    self.ubuf.consume(n);
                    BodyKind::Empty
                }
                _ => resp_body,
            };
        if down.write_all(&self.wbuf).await.is_err() {
            return Outcome {
                status,
                flag: ResponseFlag::DownstreamConnectionTermination,
                keep_alive: false,
            };
        }
        let mut sent = self.wbuf.len() as u64;
        // The clocks bound the response body too: each upstream read gets the time
        // left, and so does each write to a client that stops reading.
        let left = progress.time_left();
        if let Some(left) = left {
            down.set_write_timeout(Some(left.min(plan.idle_timeout)));
        }
        let result = if plan.chain.hooks().response_data {
            // Each chunk through the chain first; a filter that answers now, after the
            // head, closes the connection (Envoy).
            let mut chain = plan.chain;
            let hooked = body_hooks::forward(
                &mut chain,
                &mut up,
                &mut self.ubuf,
                down,
                resp_body,
                chunks,
                Some(progress),
                None,
            )
            .await;
            match hooked {
                Ok(n) => Ok(n),
                Err(Stopped::Body(e)) => Err(e),
                Err(Stopped::Reply(_)) => {
                    self.rec.bytes_sent = sent;
                    return Outcome {
                        status,
                        flag: ResponseFlag::None,
                        keep_alive: false,
                    };
                }
            }
        } else {
            body::forward(
                &mut up,
                &mut self.ubuf,
                down,
                resp_body,
                chunks,
                Some(progress),
                None,
            )
            .await
        };
        if left.is_some() {
            down.set_write_timeout(Some(plan.idle_timeout));
        }
        // What cut the response body after its head went out (the connection closes).
        let mut cut = None;
        let mut late = |f: Failure| {
            request::count_late(stats, f);
            cut = Some(f);
            f.flag()
        };
        let flag = match result {
            Ok(n) => {
                sent += n;
                // After a cut request body the upstream connection is out of step.
                if reuse_up
                    && !body_cut
                    && self.ubuf.is_empty()
                    && up.reusable(cs.cfg.pool.max_requests_per_connection)
                {
                    cs.put(ep, up);
                }
                retry_flag
            }
            // A client that stopped reading until a clock ran out.
            Err(BodyError::Write) if progress.expired().is_some() => late(expiry_failure(progress)),
            Err(BodyError::Write) => ResponseFlag::DownstreamConnectionTermination,
            Err(BodyError::Timeout) => late(expiry_failure(progress)),
            Err(_) => late(Failure::ConnectionTermination),
        };
        self.rec.bytes_sent = sent;
        if let Some(d) = cut.and_then(Failure::details).filter(|_| self.logging) {
            self.rec.log.details = d;
        }
        // The whole response went out: the connection stays, whatever the retries'
        // own flag says (`URX`, or `UO` when the breakers refused the retry).
        let clean = cut.is_none() && flag == retry_flag;
        Outcome {
            status,
            flag,
            keep_alive: clean && !close_down,
        }
    }
}
