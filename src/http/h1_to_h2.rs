//! An HTTP/1.1 request proxied to an HTTP/2 upstream (`protocol: http2` clusters).
//!
//! The connection manager builds the HTTP/2 request from the parsed head
//! (`upstream::request::http2::request_from_h1`: hop-by-hop headers removed, forwarding headers and the filter chain's
//! edits applied; the head is never encoded and parsed again), the body is streamed as
//! DATA frames, and the response is written
//! back as an HTTP/1.1 head with a Content-Length or chunked body (without the upstream's
//! trailers, which Envoy's HTTP/1 codec drops: `h1_to_h2_body.rs`).
//! The response is watched while the body goes up: a response that comes first is
//! forwarded and cuts the request body (as `conn/upload.rs` does for HTTP/1 upstreams),
//! and the client's connection then closes, unless the rest of a small body went up
//! first (`early_answer`). Under a retry policy a request
//! body that streams up is kept (`upstream::request::replay`, up to
//! `per_request_buffer_limit_bytes`) and a retried try sends the copy, as the HTTP/1.1
//! cluster path does; a stream reset while the body is still being sent asks the retry
//! policy at once, and a retry reads the rest of the body into the copy
//! (`replay::OnLoss`).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::io::Write as _;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::AsyncWriteExt;

use super::body::{self, BodyError, Chunks};
use super::body_hooks::Stopped;
use super::buf::ReadBuf;
use super::early_answer;
use super::failure::Failure;
use super::filter::{Chain, LocalReply, Status};
use super::flags::ResponseFlag;
use super::h1::encode::DownFraming;
use super::h1::head::BodyKind;
use super::h1::response;
use super::h2::io::DataSink;
use super::io::Io;
use super::request_stream::{forward_h1, Via};
use super::view::WorkerView;
use crate::upstream::cluster::ClusterState;
use crate::upstream::request::clock::Progress;
use crate::upstream::request::http1::trailer_map;
use crate::upstream::request::http2::{H2Request, Hedged};
use crate::upstream::request::replay::{Kept, Loss, OnLoss, Recording};
use crate::upstream::request::retry::RetryState;
use crate::upstream::request::{self, hedge, Attempt, Exchange, RetryPolicy, Tried};
use crate::upstream::Connector;

/// The request facts this needs from the HTTP/1 connection manager.
pub(crate) struct H1Request<'a> {
    pub body: BodyKind,
    pub minor: u8,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// The response is the connection's last (the worker drains, or an update changed
    /// the chain), asked when the response head goes out.
    pub draining: &'a dyn Fn() -> bool,
    /// The client connection's idle timeout, its read timeout outside the body.
    pub idle_timeout: std::time::Duration,
    /// Edits for the response head (the route's and the filter chain's).
    pub response_edits: crate::http::filter::headers::Edits<'a>,
    /// The stream's filter chain, for the response-head hook.
    pub chain: Chain<'a>,
    /// The shadows' tee (`http::mirror`) of a mirrored body: each chunk goes to it as
    /// it goes upstream.
    pub tee: Option<&'a crate::upstream::request::tee::TeeTx>,
    /// The body streams through the chain, which rewrites it (`request_stream`).
    pub rewrite: bool,
    /// The request's retry state (`upstream::request::retry`), if any.
    pub retry: Option<&'a RetryState<'a>>,
    /// The route clock's length (zero: none), which bounds the per-try timeout.
    pub route_timeout: Duration,
    /// The access log prints a trailer: the upstream's trailers come back in the
    /// result (`Result::trailers`).
    pub keep_trailers: bool,
    /// The listener's `enable_trailers`: the client's chunked trailers go upstream as
    /// trailing HEADERS, and the upstream's trailers are written to the client after a
    /// chunked body (Envoy's HTTP/1 codec drops them both ways otherwise).
    pub h1_trailers: bool,
}

pub(crate) struct Result {
    /// Nothing went to the client yet: answer locally with this failure (counted).
    pub failed: Option<Failure>,
    /// Nothing went to the client yet: a filter answers the response head with this.
    pub reply: Option<LocalReply>,
    pub status: u16,
    pub flag: ResponseFlag,
    pub keep_alive: bool,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// The response was forwarded before the whole request body was sent: the client
    /// may still be sending it, so the connection manager closes gently (`conn::linger`).
    pub body_cut: bool,
    /// `failed` came after retries (Envoy's local reply then says so).
    pub retried: bool,
    /// The upstream's response trailers, when `H1Request::keep_trailers` (the h2
    /// crate's own map, moved here: nothing is copied for a log that does not print
    /// them). Envoy's access log sees an HTTP/2 upstream's trailers whatever the
    /// client's protocol.
    pub trailers: Option<http::HeaderMap>,
    /// The head got a `content-length: 0` the upstream did not send (an empty HTTP/2
    /// body without a length), which Envoy's codec adds and its log does not show.
    pub added_length: bool,
    /// A clock cut the response after its head: the log's details are its.
    pub cut: Option<Failure>,
}

/// The upstream failed before a response head went to the client.
fn upstream_failed(f: Failure) -> Result {
    let mut r = failed(f.status(), f.flag());
    r.failed = Some(f);
    r
}

fn failed(status: u16, flag: ResponseFlag) -> Result {
    Result {
        failed: None,
        reply: None,
        status,
        flag,
        keep_alive: false,
        bytes_received: 0,
        bytes_sent: 0,
        body_cut: false,
        retried: false,
        trailers: None,
        added_length: false,
        cut: None,
    }
}

/// What happened first while the request body went upstream.
enum First {
    /// The body ended (or failed) first.
    Body(std::result::Result<u64, Stopped>),
    /// The upstream's response head (or its failure) came first.
    Answer(std::result::Result<http::Response<h2::RecvStream>, h2::Error>),
    /// The stream went away mid-body and the retry policy retries it: the rest of the
    /// body went into the copy alone (or outgrew it).
    Lost(std::result::Result<u64, Stopped>),
}

/// Whether a stream failure is a plain reset (what `OnLoss` retries mid-body), not a
/// refused stream or a protocol error, which keep their own paths.
fn plain_reset(e: &h2::Error) -> bool {
    let t = request::http2::stream_failure(e, false);
    !t.refused && t.failure == Failure::ConnectionTermination
}

/// A response head from an HTTP/2 upstream, with what happened to the request body.
struct Answered {
    response: http::Response<h2::RecvStream>,
    /// The request stream, kept open until the exchange ends.
    up_send: h2::SendStream<Bytes>,
    /// Request body bytes sent.
    received: u64,
    /// The upstream answered (or stopped taking the body) before the whole request body
    /// was sent: the rest of it is neither sent nor read as a next request.
    cut: bool,
}

/// What a try ended with.
enum Got {
    Head(Answered),
    /// The client went away or sent a malformed body.
    Ended(Result),
}

/// The HTTP/1 client's side of one try on the multiplexed connection
/// (`request::run`): open the stream, send the body while watching for an early
/// answer, wait for the response head.
struct ToH2<'x, D> {
    down: &'x mut D,
    rbuf: &'x mut ReadBuf,
    req: Option<http::Request<()>>,
    r: &'x H1Request<'x>,
    progress: &'x Progress,
    stats: &'x crate::observe::stats::ClusterStats,
    /// A small Content-Length body that was whole in the read buffer, taken under a
    /// retry policy: each try sends it again.
    inline: Option<Bytes>,
    /// A body that streams: its copy for a retry (`request::replay`), whole once the
    /// first try sent all of it within the limit.
    kept: Kept,
    /// The request as hedged tries send it, when the route hedges (`request::hedge`):
    /// filled once the request can go again as it was.
    hedge: Option<hedge::Copy<H2Request>>,
    /// The client's chunked trailers (`H1Request::h1_trailers`), read with the body by
    /// the first try: every try ends its stream with them.
    trailers: Option<http::HeaderMap>,
}

impl<D> ToH2<'_, D> {
    /// The request can go again as it was: no body, the small body taken whole, or a
    /// streamed body kept whole.
    fn can_resend(&self) -> bool {
        self.r.body == BodyKind::Empty || self.inline.is_some() || self.kept.whole().is_some()
    }

    /// The request's body as it can go again: `Some(None)` for no body, `None` while
    /// it cannot.
    fn body_copy(&self) -> Option<Option<Bytes>> {
        if let Some(b) = &self.inline {
            Some(Some(b.clone()))
        } else if let Some(k) = self.kept.whole() {
            Some(Some(Bytes::copy_from_slice(k)))
        } else {
            (self.r.body == BodyKind::Empty).then_some(None)
        }
    }

    /// Fills the hedged tries' copy once the request can go again as it was (a route
    /// that hedges).
    fn fill_hedge(&self) {
        if self.hedge.is_none() {
            return;
        }
        if let (Some(req), Some(body)) = (&self.req, self.body_copy()) {
            request::http2::fill_hedge(&self.hedge, req, body, self.trailers.clone());
        }
    }
}

impl<D: Io> Exchange<h2::client::SendRequest<Bytes>> for ToH2<'_, D> {
    type Head = Got;

    fn hedge_copy(&self) -> Option<hedge::Copy<H2Request>> {
        self.hedge.clone()
    }

    fn adopt(&mut self, (response, up_send): Hedged) -> std::result::Result<Got, Tried> {
        // The hedged try sent the whole request (its copy).
        let received = self
            .hedge
            .as_ref()
            .and_then(|c| c.borrow().as_ref()?.body.as_ref().map(|b| b.len() as u64))
            .unwrap_or(0);
        Ok(Got::Head(Answered {
            response,
            up_send,
            received,
            cut: false,
        }))
    }

    fn resendable(&self) -> Option<bool> {
        Some(self.can_resend())
    }

    async fn try_once(
        &mut self,
        send: &mut h2::client::SendRequest<Bytes>,
        at: Attempt<'_, '_>,
    ) -> std::result::Result<Got, Tried> {
        let (r, progress) = (self.r, self.progress);
        let end = r.body == BodyKind::Empty;
        // Without a body, with the small body taken whole (`inline`), or with a
        // streamed body's copy kept whole, the request can go again as it was.
        let mut resend = self.can_resend();
        let replay = self.kept.whole().is_some();
        let lost = Tried::fatal(Failure::ConnectionTermination);
        // Under a retry policy each try sends a copy (a retry needs the request again).
        let mut req = match at.retry {
            Some(_) => self.req.clone().ok_or(lost)?,
            None => self.req.take().ok_or(lost)?,
        };
        at.restamp().apply_map(req.headers_mut());
        let (response, mut up_send) = send
            .send_request(req, end)
            .map_err(|_| Tried::failed(Failure::ConnectionTermination, false, resend))?;
        let mut received = 0;
        let mut cut = false;
        futures_lite::pin!(response);
        let mut answer = None;
        let mut loss_refused = false;
        if let Some(b) = &self.inline {
            // Within the stream's initial window (4 KiB at most): queued at once. A
            // stream the upstream already ended: what it answered decides.
            received = b.len() as u64;
            cut = up_send.send_data(b.clone(), true).is_err();
        } else if !end {
            if r.expect_continue
                && !replay
                && self
                    .down
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
            {
                let dc = failed(0, ResponseFlag::DownstreamConnectionTermination);
                return Ok(Got::Ended(dc));
            }
            // The response is watched while the body goes up: an upstream may answer
            // early (a 413) and then stop reading, which would leave the body stuck on
            // flow control, or reset the stream (RFC 9113 section 8.1), which fails the
            // body. A reset while the body is still being sent asks the retry policy at
            // once (Envoy's reset), while a copy of the body is kept.
            let stats = self.stats;
            let decide = || at.retry_loss(stats);
            let on_loss = OnLoss::new(&decide);
            let watch_loss = at.retry.is_some() && self.kept.live() && !replay;
            // The client's trailer section, when its trailers go upstream.
            let mut raw_trailers = Vec::new();
            // An early answer the body was finished after (`early_answer`).
            let mut early = None;
            // A mirrored body goes to the shadows' tee chunk by chunk as it goes.
            let via = Via::new(&r.chain, r.tee, r.rewrite);
            let first = {
                let sink = &mut DataSink::new(&mut up_send);
                // Client reads are bounded by the clocks and push the idle clock back.
                let (down, rbuf) = (&mut *self.down, &mut *self.rbuf);
                // The payload goes up as it is read, and into the copy for a retry; a
                // retry sends the copy instead.
                let kept = &mut self.kept;
                let upload = async {
                    if let Some(copy) = kept.whole() {
                        return sink
                            .write_all(copy)
                            .await
                            .map(|()| copy.len() as u64)
                            .map_err(|_| Stopped::Body(BodyError::Write));
                    }
                    let rec = &mut Recording {
                        inner: sink,
                        kept,
                        abandoned: &stats.retry_or_shadow_abandoned,
                        // Only the payload is written (the chunk framing is stripped).
                        by_payload: false,
                        on_loss: watch_loss.then_some(&on_loss),
                    };
                    let t = r.h1_trailers.then_some(&mut raw_trailers);
                    forward_h1(
                        via,
                        down,
                        rbuf,
                        rec,
                        r.body,
                        Chunks::Strip,
                        Some(progress),
                        t,
                    )
                    .await
                };
                futures_lite::pin!(upload);
                // The body is polled first: a body that completes with this poll counts
                // as sent.
                let first =
                    futures_lite::future::or(async { First::Body(upload.as_mut().await) }, async {
                        First::Answer(response.as_mut().await)
                    })
                    .await;
                if let First::Answer(Err(e)) = &first {
                    if watch_loss && plain_reset(e) {
                        on_loss.lost();
                    }
                }
                // Retried mid-body (on the reset, or on a write that failed): the rest of
                // the body goes into the copy alone; the upstream is not listened to.
                match first {
                    First::Body(r) if on_loss.state() == Loss::Detached => First::Lost(r),
                    _ if on_loss.state() == Loss::Detached => First::Lost(upload.as_mut().await),
                    // An early answer to a small body: its rest goes first, and if it all
                    // goes the try goes on as if the answer had come after it.
                    First::Answer(Ok(a)) if early_answer::finishable(r.body, via) => {
                        let loss = watch_loss.then_some(&on_loss);
                        match early_answer::finish(upload.as_mut(), loss).await {
                            Some(n) => {
                                early = Some(a);
                                First::Body(Ok(n))
                            }
                            None => First::Answer(Ok(a)),
                        }
                    }
                    f => f,
                }
            };
            loss_refused = on_loss.state() == Loss::Refused;
            match first {
                First::Body(Ok(n)) => {
                    received = n;
                    if !replay {
                        progress.received(n);
                        // Fields past Envoy's default header count are not sent.
                        self.trailers = trailer_map(&raw_trailers, 100).ok().flatten();
                        // Within the limit, the body can go again from its copy.
                        self.kept.finish();
                        resend = self.can_resend();
                        self.fill_hedge();
                    }
                    // The request is complete: the route clock starts (Envoy).
                    progress.request_done();
                    // A stream the upstream already ended: what it answered decides.
                    cut = match &self.trailers {
                        Some(t) => up_send.send_trailers(t.clone()).is_err(),
                        None => up_send.send_data(Bytes::new(), true).is_err(),
                    };
                }
                // A filter answered the streaming body: the upstream stream is reset
                // (its handle dropped), the client answered and closed.
                First::Body(Err(Stopped::Reply(reply)))
                | First::Lost(Err(Stopped::Reply(reply))) => {
                    let mut res = failed(reply.status, reply.flag);
                    res.reply = Some(reply);
                    res.body_cut = true;
                    return Ok(Got::Ended(res));
                }
                // The upstream stopped taking the body: what it said, if anything, decides.
                First::Body(Err(Stopped::Body(BodyError::Write))) => cut = true,
                First::Body(Err(Stopped::Body(BodyError::Framing))) => {
                    let dpe = failed(400, ResponseFlag::DownstreamProtocolError);
                    return Ok(Got::Ended(dpe));
                }
                First::Body(Err(_)) => {
                    let dc = failed(0, ResponseFlag::DownstreamConnectionTermination);
                    return Ok(Got::Ended(dc));
                }
                First::Lost(Ok(n)) => {
                    progress.received(n);
                    self.kept.finish();
                    self.fill_hedge();
                    progress.request_done();
                    return Err(Tried::lost_mid_body(true, false));
                }
                // Past the limit while the retry waited: Envoy's 507.
                First::Lost(Err(Stopped::Body(BodyError::Write))) => {
                    return Err(Tried::lost_mid_body(true, true))
                }
                First::Lost(Err(Stopped::Body(BodyError::Framing))) => {
                    let dpe = failed(400, ResponseFlag::DownstreamProtocolError);
                    return Ok(Got::Ended(dpe));
                }
                First::Lost(Err(_)) => {
                    let dc = failed(0, ResponseFlag::DownstreamConnectionTermination);
                    return Ok(Got::Ended(dc));
                }
                First::Answer(a) => {
                    cut = true;
                    answer = Some(a);
                }
            }
            if let Some(a) = early {
                answer = Some(Ok(a));
            }
        }
        let answer = match answer {
            Some(a) => a,
            None => response.await,
        };
        // Reset mid-body after the retry policy said no (or the copy was given up): it
        // is not asked again.
        if let Err(e) = &answer {
            if loss_refused && plain_reset(e) {
                return Err(Tried::lost_mid_body(false, false));
            }
        }
        // h2 itself refusing what the upstream sent (a malformed head, such as a
        // :status that is not three digits from 100) is the upstream's protocol error;
        // a refused stream or a reset is retried as the policy says.
        let response = answer.map_err(|e| request::http2::stream_failure(&e, resend))?;
        // `http::StatusCode` admits 100..=999 (the h2 crate has consumed any 1xx itself).
        let status = response.status().as_u16();
        if !response::valid_status(status) {
            return Err(Tried::failed(Failure::ProtocolError, false, resend));
        }
        if at.retry_response(status, response.headers(), resend && !cut, self.stats) {
            return Err(Tried::retry_response());
        }
        Ok(Got::Head(Answered {
            response,
            up_send,
            received,
            cut,
        }))
    }
}

/// Under a retry policy, a Content-Length body of at most `body::INLINE_BODY_BYTES` that
/// is whole in the read buffer (and no `100 Continue` is due): taken, so that every try
/// can send it (as the HTTP/1.1 cluster path keeps it behind the head). The request is
/// then complete.
fn take_inline(rbuf: &mut ReadBuf, r: &H1Request<'_>, progress: &Progress) -> Option<Bytes> {
    if r.retry.is_none() || r.expect_continue || r.rewrite || !matches!(r.body, BodyKind::Length(_))
    {
        return None;
    }
    let data = rbuf.data();
    let n = body::whole_body(r.body, Chunks::Strip, data, body::INLINE_BODY_BYTES)?;
    let whole = Bytes::copy_from_slice(data.get(..n)?);
    if let Some(tee) = r.tee {
        crate::http::mirror::tee_whole(tee, r.body, &whole);
    }
    rbuf.consume(n);
    progress.received(n as u64);
    progress.request_done();
    Some(whole)
}

/// Sends the request to endpoint `ep` of cluster `cs` over HTTP/2 and streams the
/// response back to the HTTP/1.1 client, under the request's clocks (`progress`; the
/// client connection has no sweeping task, so the exchange keeps one timer).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange<D: Io, C: Connector>(
    down: &mut D,
    rbuf: &mut ReadBuf,
    out: &mut Vec<u8>,
    req: http::Request<()>,
    r: H1Request<'_>,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    ep: usize,
    progress: &Progress,
) -> Result {
    let idle_timeout = r.idle_timeout;
    let work = exchange_inner(down, rbuf, out, req, r, view, cs, ep, progress);
    let res = match progress.run_timed(work).await {
        Ok(res) => res,
        Err(e) => {
            let f = progress.failure(e);
            if progress.status() == 0 {
                request::count_expired(&cs.stats, e, f);
                request::outlier_failure(cs, ep, f);
                let mut res = upstream_failed(f);
                res.bytes_received = progress.bytes_received();
                res
            } else {
                // The head went out: the client connection closes mid-body.
                request::count_late(&cs.stats, f);
                Result {
                    failed: None,
                    reply: None,
                    status: progress.status(),
                    flag: f.flag(),
                    keep_alive: false,
                    bytes_received: progress.bytes_received(),
                    bytes_sent: progress.bytes_sent(),
                    body_cut: false,
                    retried: false,
                    trailers: None,
                    added_length: false,
                    cut: Some(f),
                }
            }
        }
    };
    // The body upload bounded the client's reads by the clocks.
    down.set_read_timeout(Some(idle_timeout));
    res
}

#[allow(clippy::too_many_arguments)]
async fn exchange_inner<D: Io, C: Connector>(
    down: &mut D,
    rbuf: &mut ReadBuf,
    out: &mut Vec<u8>,
    req: http::Request<()>,
    r: H1Request<'_>,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    ep: usize,
    progress: &Progress,
) -> Result {
    let stats = &cs.stats;
    let inline = take_inline(rbuf, &r, progress);
    let mut x = ToH2 {
        down: &mut *down,
        rbuf,
        req: Some(req),
        r: &r,
        progress,
        stats,
        inline,
        kept: Kept::new(r.retry.map(|a| a.buffer_limit())),
        hedge: r.retry.filter(|a| a.hedging()).map(|_| hedge::copy()),
        trailers: None,
    };
    // No body, or one taken whole: hedged tries can send it from the start.
    x.fill_hedge();
    let (mut ep, mut again) = (ep, None);
    let retry = r.retry;
    let tried = request::run(
        &request::Http2,
        RetryPolicy::NONE,
        retry,
        cs,
        &mut ep,
        &mut again,
        &*view.connector,
        progress,
        r.route_timeout,
        &mut x,
    )
    .await;
    // `_up_send` lives to the end: after a cut body the upstream stream is still open on
    // this side, and dropping its handles when this returns resets it (CANCEL), so the
    // upstream stops waiting.
    let (mut parts, mut up_body, _up_send, received, cut) = match tried {
        Ok((_, Got::Head(h))) => {
            let (parts, body) = h.response.into_parts();
            (parts, body, h.up_send, h.received, h.cut)
        }
        Ok((_, Got::Ended(res))) => return res,
        Err(f) => {
            let mut res = upstream_failed(f);
            res.retried = retry.is_some_and(|a| a.retried());
            return res;
        }
    };
    let mut response_edits = r.response_edits;
    if let Some(a) = retry.filter(|a| a.attempt_count_response) {
        response_edits.stamp.attempt_count = Some(a.attempt());
    }
    let status = parts.status.as_u16();
    request::count_response(cs, ep, status);
    if r.chain.hooks().response_head {
        if let Status::Respond(reply) = r.chain.on_response_head(status, &parts.headers).await {
            let mut res = failed(reply.status, reply.flag);
            res.reply = Some(reply);
            res.body_cut = cut;
            return res;
        }
    }
    if r.chain.hooks().response_body {
        // Head, whole body and trailers held for the chain.
        use super::h1_to_h2_held::{respond, Came, Client, Held};
        let c = Came {
            parts,
            body: up_body,
            flag: retry.map_or(ResponseFlag::None, |a| a.response_flag()),
        };
        let client = Client {
            minor: r.minor,
            keep_alive: r.keep_alive,
            draining: r.draining,
            cut,
        };
        let held = respond(down, out, c, client, &r.chain, response_edits, progress).await;
        let mut res = match held {
            Held::Sent {
                status,
                flag,
                keep_alive,
                bytes_sent,
                trailers,
                added_length,
            } => {
                let mut res = failed(status, flag);
                (res.keep_alive, res.bytes_sent) = (keep_alive, bytes_sent);
                res.trailers = trailers.filter(|_| r.keep_trailers);
                res.added_length = added_length;
                res
            }
            Held::Reply(reply) => {
                let mut res = failed(reply.status, reply.flag);
                res.reply = Some(reply);
                res
            }
            Held::Failed => upstream_failed(Failure::ConnectionTermination),
        };
        (res.bytes_received, res.body_cut) = (received, cut);
        return res;
    }
    // The body rewritten by the chain as it streams: no length (Envoy removes it); a
    // piece that came with the head goes through the chain before it.
    let (mut first, mut reader, mut piece_end) = (None, None, false);
    let rewritten = r.chain.hooks().response_stream;
    if rewritten {
        parts.headers.remove(http::header::CONTENT_LENGTH);
        match super::body_stream::first_h2_piece(&mut up_body, &r.chain).await {
            Ok(f) => {
                first = (!f.out.is_empty()).then_some(Ok(f.out));
                (reader, piece_end) = (Some(f.reader), f.ended);
            }
            Err(reply) => {
                let mut res = failed(reply.status, reply.flag);
                (res.reply, res.body_cut) = (Some(reply), cut);
                return res;
            }
        }
        r.chain.seal_response_head();
    }
    let has_length = parts.headers.contains_key(http::header::CONTENT_LENGTH);
    let held = reader.as_ref().is_some_and(|r| r.holds());
    let no_body = up_body.is_end_stream() && !has_length && first.is_none() && !held;
    let framing = if has_length || no_body {
        DownFraming::AsIs
    } else if r.minor >= 1 {
        DownFraming::Chunked
    } else {
        DownFraming::Close
    };
    let close = !r.keep_alive || (r.draining)() || framing == DownFraming::Close || cut;
    super::h1_to_h2_head::write_h1_head(
        out,
        &parts,
        (framing, close),
        r.minor,
        response_edits,
        progress,
    );
    let added_length = no_body && status != 204 && status != 304 && framing == DownFraming::AsIs;
    if added_length {
        // An empty HTTP/2 body without a length: say so, or an HTTP/1 client waits.
        // The head ends in the blank line; put the header before it.
        out.truncate(out.len().saturating_sub(2));
        out.extend_from_slice(b"content-length: 0\r\n\r\n");
    }
    let head_len = out.len() as u64;
    let chunked = framing == DownFraming::Chunked;
    // The last chunk went out with the data before it: no trailers follow.
    let mut ended = false;
    // A first DATA frame that is already here (never waited for) goes out with the head,
    // in one write, when it is small; otherwise it is written after the head below.
    if !rewritten {
        first = match std::future::poll_fn(|cx| Poll::Ready(up_body.poll_data(cx))).await {
            Poll::Ready(Some(chunk)) => Some(chunk),
            Poll::Ready(None) | Poll::Pending => None,
        };
    }
    let mut inline = 0;
    if let Some(Ok(chunk)) = first
        .as_ref()
        // A chain with the response-body hook sees every frame first (the loop below).
        .filter(|_| !r.chain.hooks().response_data && !rewritten)
        .filter(|c| c.as_ref().is_ok_and(|c| c.len() <= body::INLINE_BODY_BYTES))
    {
        inline = chunk.len();
        if chunked {
            ended = up_body.is_end_stream();
            if inline > 0 {
                let _ = write!(out, "{inline:x}\r\n");
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            if ended {
                out.extend_from_slice(b"0\r\n\r\n");
            }
        } else {
            out.extend_from_slice(chunk);
        }
        let _ = up_body.flow_control().release_capacity(inline);
        first = None;
    }
    let mut res = Result {
        failed: None,
        reply: None,
        status,
        // A retriable response that goes to the client because the retries ran out.
        flag: retry.map_or(ResponseFlag::None, |a| a.response_flag()),
        keep_alive: !close,
        bytes_received: received,
        bytes_sent: head_len + inline as u64,
        body_cut: cut,
        retried: false,
        trailers: None,
        added_length,
        cut: None,
    };
    // From here on a clock that runs out can only close the connection.
    progress.head_sent(status);
    progress.sent(head_len + inline as u64);
    if down.write_all(out).await.is_err() {
        res.flag = ResponseFlag::DownstreamConnectionTermination;
        res.keep_alive = false;
        return res;
    }
    let b = super::h1_to_h2_body::Body {
        chain: &r.chain,
        chunked,
        ended,
        keep_trailers: r.keep_trailers,
        send_trailers: r.h1_trailers,
        first,
        reader,
        piece_end,
    };
    let mut tail = super::h1_to_h2_body::Tail {
        flag: res.flag,
        keep_alive: res.keep_alive,
        bytes_sent: res.bytes_sent,
        trailers: None,
    };
    super::h1_to_h2_body::send(down, &mut up_body, b, &mut tail, stats, progress).await;
    (res.flag, res.keep_alive) = (tail.flag, tail.keep_alive);
    (res.bytes_sent, res.trailers) = (tail.bytes_sent, tail.trailers);
    res
}
