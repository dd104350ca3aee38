//! The HTTP/2 stream's adapter to an HTTP/1.1 upstream through the attempt loop
//! (`upstream::request`): the HTTP/1.1 codec for HTTP/2-shaped messages
//! (`upstream::request::h1`) writes the request line, Host and end-to-end headers and
//! frames the DATA as a Content-Length or chunked body (request trailers as chunked
//! trailers); the response comes back as HEADERS and DATA with flow control applied
//! both ways, its chunked trailers as an HTTP/2 trailers frame.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use super::respond::Respond;
use bytes::Bytes;
use futures_lite::io::AsyncWriteExt;
use h2::RecvStream;

use super::clock::{Expiry, Progress};
use super::io::{Counted, DataSink};
use super::reply::{expired, fail, filter_reply, Done};
use crate::http::body::{self, BodyError, Chunks};
use crate::http::body_hooks::{self, Stopped};
use crate::http::buf::ReadBuf;
use crate::http::failure::Failure;
use crate::http::filter::{Status, StreamEdits};
use crate::http::flags::ResponseFlag;
use crate::http::forwarding::Decision;
use crate::http::h1::head::BodyKind;
use crate::http::h1::response::{BadResponse, MAX_RESPONSE_HEAD_BYTES};
use crate::http::io::Io;
use crate::http::request_stream;
use crate::http::view::WorkerView;
use crate::upstream::cluster::ClusterState;
use crate::upstream::request::replay::{Kept, Loss, OnLoss, Recording};
use crate::upstream::request::retry::RetryState;
use crate::upstream::request::{self, hedge, http1, Attempt, Exchange, RetryPolicy, Tried};
use crate::upstream::Connector;

pub(crate) struct Request<'a> {
    pub parts: &'a http::request::Parts,
    pub body: RecvStream,
    /// The client's body is known to have ended (`ended`).
    pub ended: std::cell::Cell<bool>,
    /// The request body, read whole through the filter chain (`http/hold.rs`): it goes
    /// instead of `body` (which has ended), with the Content-Length set in `parts`.
    pub held: Option<Bytes>,
    /// The held body's trailers: an HTTP/2 upstream gets them after it; an HTTP/1 one
    /// does not (a Content-Length body carries none; Envoy's HTTP/1 encoder drops them).
    pub held_trailers: Option<http::HeaderMap>,
    /// The shadows' tee (`http::mirror`) for a mirrored body that streams: each chunk
    /// goes to it as it goes upstream.
    pub tee: Option<crate::upstream::request::tee::TeeTx>,
    pub authority: &'a str,
    pub path: &'a str,
    /// What the forwarding policy decided for this request.
    pub forwarding: Decision,
    pub grpc: bool,
    /// The listener's `max_headers`, which also bounds response trailers.
    pub max_headers: usize,
    /// Header edits of the filter chain and the route, for the request sent upstream and
    /// the response sent back.
    pub edits: StreamEdits<'a>,
    /// The retry state, when the route has a retry policy or the request asks for
    /// retries.
    pub retry: Option<RetryState<'a>>,
    /// The route clock's length (zero: none).
    pub route_timeout: std::time::Duration,
    /// The request's hash for a ring hash or Maglev cluster (`router::hash`).
    pub hash: Option<u64>,
}

impl Request<'_> {
    /// Whether the client's body has ended. h2 answers under its connection's lock, and
    /// a body that ended stays ended: once it has, the answer is kept.
    pub fn ended(&self) -> bool {
        self.ended.get() || {
            let e = self.body.is_end_stream();
            self.ended.set(e);
            e
        }
    }
}

pub(crate) async fn proxy<C: Connector>(
    r: &mut Request<'_>,
    respond: &mut Respond,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    progress: &Progress,
) -> Done {
    let picked = match request::pick(cs, r.hash, progress.priority()) {
        Ok(p) => p,
        Err(f) => return fail(respond, r.grpc, f, r.edits.response),
    };
    // The buffer is lent for this exchange and comes back however the exchange ends.
    let mut ubuf = view.bufs.take();
    // Dropping the exchange on expiry closes its upstream connection: a stuck stream
    // never keeps one.
    let mut ep = picked.ep;
    let work = exchange(r, respond, view, cs, &mut ep, &mut ubuf, progress);
    let result = progress.run(work).await;
    view.bufs.put(ubuf);
    let upstream = cs
        .cfg
        .endpoints
        .get(ep)
        .map_or(picked.endpoint.addr, |e| e.addr);
    let mut done = match result {
        Ok(d) => d,
        Err(e) => {
            let f = expiry_failure(e, progress);
            if progress.status() == 0 {
                request::count_expired(&cs.stats, e, f);
                request::outlier_failure(cs, ep, f);
            } else {
                request::count_late(&cs.stats, f);
            }
            expired(respond, r.grpc, progress, e, r.edits.response)
        }
    };
    done.upstream = Some(upstream);
    done
}

/// The failure an expired clock stands for.
pub(super) fn expiry_failure(e: Expiry, progress: &Progress) -> Failure {
    progress.failure(e)
}

/// The HTTP/2 stream's side of one try on an HTTP/1.1 connection (`request::run`).
struct ToH1<'x, 'a> {
    r: &'x mut Request<'a>,
    ubuf: &'x mut ReadBuf,
    /// The request head, and the body's first DATA frame behind it once taken.
    head: &'x mut Vec<u8>,
    /// The body goes chunked (`Chunks::Strip`: with a Content-Length), its trailers
    /// only with the cluster's `enable_trailers`.
    chunks: Chunks,
    /// The first DATA frame was looked for (taken into `head` if it was here).
    first_taken: bool,
    /// Body bytes that went into `head`, and whether the body ended with them.
    in_head: (u64, bool),
    is_head: bool,
    /// Idempotent and without a body: may be sent again after a stale connection.
    replayable: bool,
    progress: &'x Progress,
    stats: &'x crate::observe::stats::ClusterStats,
    /// The streamed body's copy for a retry (`request::replay`), and how many body
    /// bytes the first try took from the client.
    kept: Kept,
    streamed: u64,
    /// The whole request as hedged tries send it (`request::hedge`), for a route that
    /// hedges: filled once the request can go again; and its body's length.
    hedge: Option<hedge::Copy<Vec<u8>>>,
    hedge_body: u64,
    /// The body streams through the chain, which rewrites it (`request_stream`).
    rewrite: bool,
}

impl ToH1<'_, '_> {
    /// Fills the hedged tries' copy of the request (a route that hedges), as a try
    /// sends it: the head (with the first DATA frame, if it went there), the body the
    /// chain held, and the streamed body's copy.
    fn fill_hedge(&mut self, ended: bool) {
        let Some(copy) = &self.hedge else {
            return;
        };
        let mut c = copy.borrow_mut();
        let v = c.get_or_insert_with(Vec::new);
        v.clear();
        v.extend_from_slice(self.head);
        let mut body = self.in_head.0;
        if let Some(held) = &self.r.held {
            v.extend_from_slice(held);
            body += held.len() as u64;
        }
        if !ended {
            if let Some(kept) = self.kept.whole() {
                v.extend_from_slice(kept);
                body += self.streamed;
            }
        }
        self.hedge_body = body;
    }

    /// A first DATA frame that is already here goes up with the head, in one write.
    async fn take_first(&mut self) -> Result<(), ()> {
        if !self.first_taken && !self.r.ended() {
            self.first_taken = true;
            let (body, chunked) = (&mut self.r.body, !self.chunks.strip());
            let tee = self.r.tee.as_ref();
            match http1::take_ready_data(self.head, body, chunked, self.progress, tee).await {
                Ok(Some(taken)) => {
                    self.in_head = taken;
                    if taken.1 {
                        self.progress.request_done();
                    }
                }
                Ok(None) => {}
                Err(_) => return Err(()),
            }
        }
        Ok(())
    }

    /// The request can go again as it was: no body, the body the chain held, a body
    /// that went whole into the head, or one whose copy was kept whole. (A body that
    /// streamed up has ended too once it is sent: without a whole copy it cannot go
    /// again, whether or not its first bytes were ready when the head went.)
    fn resendable(&self) -> bool {
        self.kept.whole().is_some()
            || !self.first_taken_partial()
                && (self.r.held.is_some()
                    || self.in_head.1
                    || self.r.ended() && self.in_head.0 == 0 && self.streamed == 0)
    }

    fn first_taken_partial(&self) -> bool {
        self.first_taken && !self.in_head.1 && self.in_head.0 > 0
    }
}

/// What a try on an HTTP/1.1 connection ended with.
enum Got {
    /// A final response head; this many request body bytes went upstream.
    Head(http1::Head, u64),
    /// The client reset or failed its stream while its body was going up.
    ClientGone,
    /// A filter answered while the body streamed through the chain (`request_stream`).
    Replied(crate::http::filter::LocalReply),
}

impl<U: Io> Exchange<U> for ToH1<'_, '_> {
    type Head = Got;

    fn resendable(&self) -> Option<bool> {
        Some(ToH1::resendable(self))
    }

    fn hedge_copy(&self) -> Option<hedge::Copy<Vec<u8>>> {
        self.hedge.clone()
    }

    fn adopt(&mut self, mut buf: ReadBuf) -> Result<Got, Tried> {
        // The hedged try's response takes this try's place, its final head at the
        // front (`hedge_try` skipped the interim ones); its buffer goes back to the
        // worker's pool in the end instead of the one it replaces.
        std::mem::swap(self.ubuf, &mut buf);
        match http1::parse_head(self.ubuf.data(), self.is_head) {
            Ok(Some(http1::Parsed::Final(h))) => Ok(Got::Head(h, self.hedge_body)),
            _ => Err(Tried::fatal(Failure::ProtocolError)),
        }
    }

    async fn try_once(&mut self, up: &mut U, at: Attempt<'_, '_>) -> Result<Got, Tried> {
        // The stream's clocks bound the whole exchange (the connection's sweep drops
        // it when one runs out); no socket timeout of a pooled connection's past use.
        up.set_read_timeout(None);
        up.set_write_timeout(None);
        self.progress.touch();
        self.ubuf.consume(self.ubuf.len());
        if self.take_first().await.is_err() {
            return Ok(Got::ClientGone);
        }
        let mut resend = self.resendable();
        let lost =
            |replayable, resend| Tried::failed(Failure::ConnectionTermination, replayable, resend);
        at.restamp().apply_h1(self.head);
        // Nothing of the request body was taken yet, or what was is in `head`: the
        // head can go again.
        if up.write_all(self.head).await.is_err() {
            return Err(lost(true, resend));
        }
        self.progress.touch();
        let (mut received, ended) = self.in_head;
        if let Some(held) = &self.r.held {
            // The body the filter chain held (`http/hold.rs`), after the head.
            if up.write_all(held).await.is_err() {
                return Err(lost(false, resend));
            }
            received += held.len() as u64;
        }
        if ended {
            self.progress.request_done();
        } else if let Some(copy) = self.kept.whole() {
            // A retry: the body the first try streamed goes again from its copy.
            if up.write_all(copy).await.is_err() {
                return Err(lost(false, resend));
            }
            received += self.streamed;
        } else if !self.r.ended() {
            let (body, tee) = (&mut self.r.body, self.r.tee.as_ref());
            let chain = &self.r.edits.chain;
            // An upstream that goes away mid-body (a write fails) asks the retry policy
            // at once, while a copy of the body is kept (`replay::OnLoss`).
            let stats = self.stats;
            let decide = || at.retry_loss(stats);
            let on_loss = OnLoss::new(&decide);
            let watch_loss = at.retry.is_some() && self.kept.live();
            let mut rec = Recording {
                inner: &mut *up,
                kept: &mut self.kept,
                abandoned: &self.stats.retry_or_shadow_abandoned,
                by_payload: true,
                on_loss: watch_loss.then_some(&on_loss),
            };
            // A body the chain rewrites as it streams goes piece by piece, chunked.
            // Boxed: its future (1.3 KiB) would otherwise size every try's, and with
            // it every stream's, though only an ext_proc STREAMED chain takes it.
            let sent = match self.rewrite {
                true => {
                    let keep = self.chunks == Chunks::Verbatim;
                    let rewritten =
                        request_stream::h2_to_h1(&mut rec, chain, body, self.progress, tee, keep);
                    Box::pin(rewritten).await
                }
                false => http1::send_body(&mut rec, body, self.chunks, self.progress, tee)
                    .await
                    .map_err(Stopped::Body),
            };
            match (sent, on_loss.state()) {
                (Err(Stopped::Reply(r)), _) => return Ok(Got::Replied(r)),
                // Retried: the rest of the body went into the copy, which the retry sends.
                (Ok(n), Loss::Detached) => {
                    self.streamed = n;
                    self.kept.finish();
                    return Err(Tried::lost_mid_body(true, false));
                }
                // It outgrew the copy while the retry waited: Envoy's 507.
                (Err(Stopped::Body(BodyError::Write)), Loss::Detached) => {
                    return Err(Tried::lost_mid_body(true, true))
                }
                (Ok(n), _) => {
                    received += n;
                    self.streamed = n;
                    // Within the limit, the body can go again from its copy.
                    self.kept.finish();
                    resend = self.resendable();
                }
                (Err(Stopped::Body(BodyError::Write)), Loss::Refused) => {
                    return Err(Tried::lost_mid_body(false, false))
                }
                (Err(Stopped::Body(BodyError::Write)), _) => return Err(lost(false, resend)),
                (Err(_), _) => return Ok(Got::ClientGone),
            }
        }
        // A body that ended without a frame going through the paths above (an empty
        // END_STREAM that came after routing, during the connect): the shadows' copies
        // end here too, or the unfinished tee would abort them. (A tee that is already
        // finished ignores this.)
        if let Some(t) = self.r.tee.as_ref().filter(|_| self.r.ended()) {
            t.finish(None);
        }
        if resend {
            // Complete and at hand: hedged tries send this.
            self.fill_hedge(ended);
        }
        loop {
            if !self.ubuf.is_empty() {
                match http1::parse_head(self.ubuf.data(), self.is_head) {
                    Ok(Some(http1::Parsed::Interim(n))) => {
                        self.ubuf.consume(n);
                        continue;
                    }
                    Ok(Some(http1::Parsed::Final(h))) => {
                        let status = h.response.status().as_u16();
                        if at.retry_response(status, h.response.headers(), resend, self.stats) {
                            return Err(Tried::retry_response());
                        }
                        return Ok(Got::Head(h, received));
                    }
                    Ok(None) => {
                        // `parse` refuses a head past the limit, so a buffer that grows
                        // to one byte beyond it always finds out.
                        if self.ubuf.is_full() {
                            self.ubuf.grow(MAX_RESPONSE_HEAD_BYTES + 1);
                        }
                    }
                    Err(BadResponse(why)) => {
                        tracing::debug!(reason = why, "invalid upstream response");
                        return Err(Tried::failed(Failure::ProtocolError, false, resend));
                    }
                }
            }
            match body::fill_from(up, self.ubuf, None).await {
                Ok(n) if n > 0 => self.progress.touch(),
                _ => return Err(lost(self.replayable && self.ubuf.is_empty(), resend)),
            }
        }
    }
}

/// Sends the request on a pooled or new connection (`request::run`, which retries a
/// stale pooled one), streams the response back, and pools the connection again if it
/// is still in step.
async fn exchange<C: Connector>(
    r: &mut Request<'_>,
    respond: &mut Respond,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    ep: &mut usize,
    ubuf: &mut ReadBuf,
    progress: &Progress,
) -> Done {
    // From the worker's pool: a head rarely outgrows it, and one that does goes back
    // to the allocator.
    let mut head = view.bufs.lend_vec();
    let chunked = http1::request_head(
        &mut head,
        r.parts,
        r.authority,
        r.path,
        r.forwarding,
        r.edits.request,
        r.ended(),
    );
    respond.keep_request_h1(&head);
    let is_head = r.parts.method == http::Method::HEAD;
    let replayable = r.parts.method.is_idempotent() && r.ended();
    // (Its first frame is not taken into the head: it goes through the chain first.)
    let rewrite = r.edits.chain.hooks().request_stream && r.held.is_none();
    let (grpc, response_edits, max_headers) = (r.grpc, r.edits.response, r.max_headers);
    let route_timeout = r.route_timeout;
    let retry = r.retry.take();
    let retry = retry.as_ref();
    let mut x = ToH1 {
        r,
        ubuf,
        head: &mut head,
        chunks: Chunks::new(!chunked, cs.cfg.h1_trailers),
        first_taken: rewrite,
        in_head: (0, false),
        is_head,
        replayable,
        progress,
        stats: &cs.stats,
        kept: Kept::new(retry.map(|r| r.buffer_limit())),
        streamed: 0,
        hedge: retry.filter(|r| r.hedging()).map(|_| hedge::copy()),
        hedge_body: 0,
        rewrite,
    };
    if retry.is_some() {
        // A first frame that ends the body makes the request whole and resendable;
        // the per-try clocks then apply from the first try (Envoy).
        if x.take_first().await.is_err() {
            return Done {
                status: 0,
                flag: ResponseFlag::DownstreamConnectionTermination,
                bytes_received: 0,
                bytes_sent: 0,
                upstream: None,
                grpc_status: None,
            };
        }
        // The copy for a retry holds what follows the first frame, which went into
        // the head: the limit is the body's as a whole.
        let first = usize::try_from(x.in_head.0).unwrap_or(usize::MAX);
        x.kept = Kept::new(retry.map(|r| r.buffer_limit().saturating_sub(first)));
    }
    let mut again = None;
    let tried = request::run(
        &request::Http1,
        RetryPolicy::STALE_CONNECTION,
        retry,
        cs,
        ep,
        &mut again,
        &*view.connector,
        progress,
        route_timeout,
        &mut x,
    )
    .await;
    let ubuf = x.ubuf;
    let (mut up, h, received) = match tried {
        Ok((up, Got::Head(h, received))) => (up, h, received),
        Ok((_, Got::Replied(reply))) => {
            // The upstream request is dropped with its connection, cut mid-body.
            let mut d = super::reply::filter_reply(respond, grpc, &reply, response_edits);
            d.bytes_received = progress.bytes_received();
            return d;
        }
        Ok((_, Got::ClientGone)) => {
            return Done {
                status: 0,
                flag: ResponseFlag::DownstreamConnectionTermination,
                bytes_received: 0,
                bytes_sent: 0,
                upstream: None,
                grpc_status: None,
            }
        }
        Err(f) => {
            let retried = retry.is_some_and(|r| r.retried());
            let mut d = super::reply::fail_retried(respond, grpc, f, response_edits, retried);
            d.bytes_received = progress.bytes_received();
            return d;
        }
    };
    // By reference: the edits are 784 bytes, and a copy held across the response's
    // awaits would grow the stream's future by as much.
    let edits = &mut x.r.edits;
    if let Some(r) = retry.filter(|r| r.attempt_count_response) {
        edits.response.stamp.attempt_count = Some(r.attempt());
    }
    let retry_flag = retry.map_or(ResponseFlag::None, |r| r.response_flag());
    let status = h.response.status().as_u16();
    cs.outlier(*ep, crate::upstream::outlier::Outcome::Status(status));
    let (done, reuse) = respond_with(
        h,
        received,
        respond,
        &mut up,
        ubuf,
        (grpc, edits),
        max_headers,
        cs,
        progress,
    )
    .await;
    if reuse && up.reusable(cs.cfg.pool.max_requests_per_connection) {
        cs.put(*ep, up);
    }
    let mut done = done;
    if done.flag == ResponseFlag::None {
        done.flag = retry_flag;
    }
    done
}

/// Sends the response head to the client and streams the body after it. Returns how
/// the stream ended and whether the upstream connection is still in step.
#[allow(clippy::too_many_arguments)]
async fn respond_with<U: Io, K>(
    mut h: http1::Head,
    received: u64,
    respond: &mut Respond,
    up: &mut U,
    ubuf: &mut ReadBuf,
    (grpc, edits): (bool, &mut StreamEdits<'_>),
    max_headers: usize,
    cs: &ClusterState<K>,
    progress: &Progress,
) -> (Done, bool) {
    ubuf.consume(h.len);
    if let Some(m) = edits.response.stamp.phases.as_mut() {
        m.set_upstream(progress.phase_marks());
    }
    let status = h.response.status().as_u16();
    request::count_status(&cs.stats, status);
    if edits.chain.hooks().response_head {
        let s = edits
            .chain
            .on_response_head(status, h.response.headers())
            .await;
        if let Status::Respond(reply) = s {
            // A filter answers instead; the upstream connection, mid-response, goes.
            return (filter_reply(respond, grpc, &reply, edits.response), false);
        }
    }
    // The upstream's chunked trailers go to the client only with the cluster's
    // `enable_trailers` (Envoy's HTTP/1 codec drops them otherwise).
    let keep_trailers = cs.cfg.h1_trailers;
    let hooks = edits.chain.hooks();
    if hooks.response_body || hooks.response_stream {
        // Head and whole body held for the chain (`held.rs`), or the body rewritten by
        // the chain as it streams (`streamed.rs`).
        let e = (grpc, &*edits);
        let (stats, limits) = (&cs.stats, (max_headers, keep_trailers));
        // Boxed, as the rare paths they are (1.8 KiB each inline).
        let (mut done, reuse) = if hooks.response_body {
            Box::pin(super::held::from_h1(
                h, respond, up, ubuf, e, limits, stats, progress,
            ))
            .await
        } else {
            let streamed =
                super::streamed::from_h1(h, respond, up, ubuf, e, limits, stats, progress);
            Box::pin(streamed).await
        };
        done.bytes_received = received;
        return (done, reuse);
    }
    // After the hook: a filter's response plan (ext_proc) and its per-stream response
    // edits (wasm, in the store) are read as they apply.
    edits.response.apply_to_map(h.response.headers_mut());
    let end = h.body == BodyKind::Empty;
    // A gRPC status in the head (trailers-only); chunked trailers may replace it below.
    let head_grpc = if grpc {
        super::reply::grpc_status(h.response.headers())
    } else {
        None
    };
    let mut send = match respond.send_response(h.response, end) {
        Ok(s) => s,
        Err(_) => {
            let d = Done {
                status,
                flag: ResponseFlag::DownstreamConnectionTermination,
                bytes_received: received,
                bytes_sent: 0,
                upstream: None,
                grpc_status: None,
            };
            return (d, false);
        }
    };
    progress.head_sent(status);
    let mut done = Done {
        status,
        flag: ResponseFlag::None,
        bytes_received: received,
        bytes_sent: 0,
        upstream: None,
        grpc_status: head_grpc,
    };
    let hooked = edits.chain.hooks().response_data;
    if let (false, false, Some(whole)) = (end, hooked, h.whole_body.take()) {
        // The body came whole with the head (`Head::whole_body`): one DATA frame that
        // ends the stream, from the head's copy, without the body's forwarding loop.
        let n = whole.len();
        ubuf.consume(n);
        if send.send_data(whole, true).is_ok() {
            progress.sent(n as u64);
            done.bytes_sent = n as u64;
        } else {
            send.send_reset(h2::Reason::INTERNAL_ERROR);
            done.flag = ResponseFlag::DownstreamConnectionTermination;
        }
    } else if !end {
        let mut raw_trailers = Vec::new();
        // A Content-Length body the chain leaves alone ends with its last DATA frame.
        let inner = match h.body {
            BodyKind::Length(n) if !hooked => DataSink::ending_after(&mut send, n),
            _ => DataSink::new(&mut send),
        };
        let sink = &mut Counted { inner, progress };
        let result = if hooked {
            let hooked = body_hooks::forward(
                &mut edits.chain,
                up,
                ubuf,
                sink,
                h.body,
                Chunks::Strip,
                None,
                keep_trailers.then_some(&mut raw_trailers),
            )
            .await;
            match hooked {
                Ok(n) => Ok(n),
                Err(Stopped::Body(e)) => Err(e),
                Err(Stopped::Reply(_)) => {
                    // A filter answered after the head went out: reset (Envoy).
                    send.send_reset(h2::Reason::INTERNAL_ERROR);
                    return (done, false);
                }
            }
        } else {
            body::forward_with_trailers(
                up,
                ubuf,
                sink,
                h.body,
                Chunks::Strip,
                None,
                None,
                keep_trailers.then_some(&mut raw_trailers),
            )
            .await
        };
        match result {
            // The last DATA frame ended the stream already.
            Ok(n) if sink.inner.ended() => done.bytes_sent = n,
            Ok(n) => {
                done.bytes_sent = n;
                let t = (raw_trailers.as_slice(), max_headers);
                super::reply::end_stream(&mut send, respond, t, grpc, &mut done, &cs.stats);
            }
            Err(BodyError::Write) => {
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                done.flag = ResponseFlag::DownstreamConnectionTermination;
            }
            Err(_) => {
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                request::count_late(&cs.stats, Failure::ConnectionTermination);
                done.flag = ResponseFlag::UpstreamConnectionTermination;
            }
        }
    }
    let reuse = done.flag == ResponseFlag::None && h.reuse && ubuf.is_empty();
    (done, reuse)
}
