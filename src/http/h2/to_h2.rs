//! An HTTP/2 stream proxied to an HTTP/2 upstream over the per-core multiplexed
//! connection: headers, DATA and trailers pass through, in both directions at once (so
//! gRPC streaming calls work), with flow-control capacity released to the sender only
//! as the receiver takes the data. Under a retry policy a request whole at hand (no
//! body, or one the filter chain held) is sent whole by each try and its response head
//! judged before it goes on (`Whole`), so a retried try sends it again; a body that
//! streams is kept for a retry as it goes (`to_h2_retry.rs`).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use super::respond::Respond;
use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::Response;

use super::clock::Progress;
use super::io::send_all;
use super::reply::{expired, fail, filter_reply, reject, Done};
use super::to_h1::{expiry_failure, Request};
use crate::http::body::BodyError;
use crate::http::body_hooks::Stopped;
use crate::http::body_stream::{first_h2_piece, First, H2Reader};
use crate::http::failure::Failure;
use crate::http::filter::{Chain, LocalReply, Status};
use crate::http::flags::ResponseFlag;
use crate::http::h1::head::HeadError;
use crate::http::h1::response;
use crate::http::hop::Message;
use crate::http::view::WorkerView;
use crate::observe::stats::ClusterStats;
use crate::upstream::cluster::ClusterState;
use crate::upstream::request::tee::TeeTx;
use crate::upstream::request::{self, hedge, http2, Attempt, Exchange, RetryPolicy, Tried};
use crate::upstream::Connector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpError {
    Read,
    Write,
    /// The response-body hook answered (after the head went out).
    Filtered,
}

/// How a rewritten request body stopped, as the pump's error; a filter's answer is
/// kept for the response side (`replied`).
fn pump_error(e: Stopped, replied: &std::cell::RefCell<Option<LocalReply>>) -> PumpError {
    match e {
        Stopped::Reply(reply) => {
            *replied.borrow_mut() = Some(reply);
            PumpError::Filtered
        }
        Stopped::Body(BodyError::Write) => PumpError::Write,
        Stopped::Body(_) => PumpError::Read,
    }
}

/// Moves DATA and trailers from one stream to another; the sender's window reopens only
/// as the receiver accepts the bytes. `moved` hears of every byte passed on. `hook`:
/// the chain whose response-body hook sees each frame first (or rewrites it, read by
/// the `H2Reader` given with it: `response_stream`) and whose response-trailers hook
/// sees the trailers, as its hooks say (`None` for request bodies and for chains
/// without any). `tee`: a mirrored request body's shadows, which
/// get each frame (and the trailers) as it goes on. `grpc_status`: where a gRPC
/// response's trailers leave their `grpc-status`; `keep`: where they are copied for the
/// access log (`respond::Respond::trailer_copy`).
async fn pump(
    from: &mut RecvStream,
    to: &mut SendStream<Bytes>,
    moved: impl Fn(u64),
    hook: Option<(&Chain<'_>, H2Reader)>,
    tee: Option<&TeeTx>,
    grpc_status: Option<&mut Option<u16>>,
    keep: Option<&mut Vec<u8>>,
) -> Result<u64, PumpError> {
    let (hook, reader) = match hook {
        Some((chain, reader)) => (Some(chain), Some(reader)),
        None => (None, None),
    };
    let mut total = 0u64;
    let mut ended = false;
    // The body rewritten as it streams: read with the end at hand counted with a frame.
    let rewrite = hook.filter(|c| c.hooks().response_stream);
    let mut reader = rewrite.map(|_| reader.unwrap_or_default());
    let mut piece_end = false;
    loop {
        let next = match reader.as_mut() {
            Some(r) => r.next(from, true).await,
            None => from.data().await.map(|c| (c, false)),
        };
        let Some((chunk, end)) = next else {
            break;
        };
        let mut chunk = chunk.map_err(|_| PumpError::Read)?;
        let n = chunk.len();
        if let Some(t) = tee {
            t.push_bytes(chunk.clone());
        }
        if let Some(chain) = rewrite {
            // What the chain made of the piece goes on in its place.
            piece_end = end;
            let mut out = Vec::new();
            if chain.on_response_piece(&chunk, end, true, &mut out).await != Status::Continue {
                return Err(PumpError::Filtered);
            }
            chunk = Bytes::from(out);
        }
        if let Some(chain) = hook.filter(|c| c.hooks().response_data) {
            ended = from.is_end_stream();
            if chain.on_response_data(&chunk, ended).await != Status::Continue {
                return Err(PumpError::Filtered);
            }
        }
        send_all(to, chunk, &moved)
            .await
            .map_err(|()| PumpError::Write)?;
        let _ = from.flow_control().release_capacity(n);
        total += n as u64;
    }
    let mut trailers = from.trailers().await.map_err(|_| PumpError::Read)?;
    if let (Some(chain), Some(t)) = (hook, trailers.as_mut()) {
        if chain.hooks().response_trailers
            && chain.on_response_trailers(t).await != Status::Continue
        {
            return Err(PumpError::Filtered);
        }
    }
    if let (Some(out), Some(t)) = (grpc_status, &trailers) {
        *out = super::reply::grpc_status(t);
    }
    if let (Some(into), Some(t)) = (keep, &trailers) {
        crate::observe::stream_info::keep_header_map(into, t);
    }
    if let Some(t) = tee {
        t.finish(trailers.as_ref());
    }
    if let Some(chain) = rewrite.filter(|_| !piece_end && trailers.is_none()) {
        // The end came alone: its own message; what it gives goes before the end.
        let mut out = Vec::new();
        if chain.on_response_piece(&[], true, true, &mut out).await != Status::Continue {
            return Err(PumpError::Filtered);
        }
        send_all(to, Bytes::from(out), &moved)
            .await
            .map_err(|()| PumpError::Write)?;
    }
    if let Some(chain) = hook.filter(|c| !ended && c.hooks().response_data) {
        if chain.on_response_data(&[], true).await != Status::Continue {
            return Err(PumpError::Filtered);
        }
    }
    match trailers {
        Some(t) => to.send_trailers(t).map_err(|_| PumpError::Write)?,
        None => to
            .send_data(Bytes::new(), true)
            .map_err(|_| PumpError::Write)?,
    }
    Ok(total)
}

/// Sends a request body held whole by the filter chain (`http/hold.rs`), as flow
/// control allows, and ends the stream: with its trailers (trailing HEADERS), if it had
/// any.
async fn send_held(
    body: Bytes,
    trailers: Option<http::HeaderMap>,
    to: &mut SendStream<Bytes>,
) -> Result<u64, PumpError> {
    let total = send_bytes(body, to).await?;
    match trailers {
        Some(t) => to.send_trailers(t).map_err(|_| PumpError::Write)?,
        None => to
            .send_data(Bytes::new(), true)
            .map_err(|_| PumpError::Write)?,
    }
    Ok(total)
}

/// The response head of the try that answered: still to come (the body streams while
/// it is awaited), or already here (a request sent whole, `Whole`).
enum Head {
    Waiting(ResponseFuture),
    Got(Response<RecvStream>),
}

/// One try of a request whole at hand (`request::run`): open the stream, send the held
/// body (if any) while watching for an early answer, and wait for the response head,
/// which the retry policy judges. Each try sends a copy of `req`, with its attempt
/// number when the upstream is told it.
struct Whole<'x> {
    req: &'x http::Request<()>,
    body: Option<(Bytes, Option<http::HeaderMap>)>,
    stats: &'x ClusterStats,
    /// The request as hedged tries send it, when the route hedges (`request::hedge`).
    hedge: Option<hedge::Copy<http2::H2Request>>,
}

impl Exchange<SendRequest<Bytes>> for Whole<'_> {
    type Head = (Response<RecvStream>, SendStream<Bytes>);

    fn hedge_copy(&self) -> Option<hedge::Copy<http2::H2Request>> {
        self.hedge.clone()
    }

    fn adopt(&mut self, won: http2::Hedged) -> Result<Self::Head, Tried> {
        Ok(won)
    }

    async fn try_once(
        &mut self,
        send: &mut SendRequest<Bytes>,
        at: Attempt<'_, '_>,
    ) -> Result<Self::Head, Tried> {
        let mut req = self.req.clone();
        at.restamp().apply_map(req.headers_mut());
        // Nothing went out: the request can go again as it was.
        let (response, mut up_send) = send
            .send_request(req, self.body.is_none())
            .map_err(|_| Tried::failed(Failure::ConnectionTermination, false, true))?;
        futures_lite::pin!(response);
        let answer = match &self.body {
            None => response.await,
            Some((b, t)) => {
                // An upstream may answer before it takes the whole body.
                let upload = async {
                    let _ = send_held(b.clone(), t.clone(), &mut up_send).await;
                    None
                };
                let early = async { Some(response.as_mut().await) };
                match futures_lite::future::or(upload, early).await {
                    Some(a) => a,
                    None => response.await,
                }
            }
        };
        let resp = answer.map_err(|e| http2::stream_failure(&e, true))?;
        let status = resp.status().as_u16();
        if !response::valid_status(status) {
            return Err(Tried::failed(Failure::ProtocolError, false, true));
        }
        if at.retry_response(status, resp.headers(), true, self.stats) {
            return Err(Tried::retry_response());
        }
        Ok((resp, up_send))
    }
}

/// Sends `body` as flow control allows, without ending the stream.
async fn send_bytes(body: Bytes, to: &mut SendStream<Bytes>) -> Result<u64, PumpError> {
    let total = body.len() as u64;
    send_all(to, body, &|_| {})
        .await
        .map_err(|()| PumpError::Write)?;
    Ok(total)
}

/// The client's first DATA frame, when it is already here (never waited for): the
/// frame, and whether it ended the stream. It goes to the shadows' tee as it is taken.
async fn take_first(
    body: &mut RecvStream,
    progress: &Progress,
    tee: Option<&TeeTx>,
) -> Result<Option<(Bytes, bool)>, ()> {
    let ready = std::future::poll_fn(|cx| std::task::Poll::Ready(body.poll_data(cx))).await;
    let chunk = match ready {
        std::task::Poll::Ready(Some(Ok(chunk))) => chunk,
        std::task::Poll::Ready(Some(Err(_))) => return Err(()),
        std::task::Poll::Ready(None) | std::task::Poll::Pending => return Ok(None),
    };
    let n = chunk.len();
    let ended = body.is_end_stream();
    if let Some(t) = tee {
        t.push_bytes(chunk.clone());
        if ended {
            t.finish(None);
        }
    }
    let _ = body.flow_control().release_capacity(n);
    progress.touch();
    progress.received(n as u64);
    if ended {
        progress.request_done();
    }
    Ok(Some((chunk, ended)))
}

pub(crate) async fn proxy<C: Connector>(
    r: &mut Request<'_>,
    respond: &mut Respond,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    progress: &Progress,
) -> Done
where
    C::Conn: 'static,
{
    let grpc = r.grpc;
    let response_edits = r.edits.response;
    let picked = match request::pick(cs, r.hash, progress.priority()) {
        Ok(p) => p,
        Err(f) => return fail(respond, grpc, f, response_edits),
    };
    // Dropping the exchange on expiry resets the upstream stream.
    let mut done = match progress
        .run(exchange(r, respond, view, cs, picked.ep, progress))
        .await
    {
        Ok(d) => d,
        Err(e) => {
            let f = expiry_failure(e, progress);
            if progress.status() == 0 {
                request::count_expired(&cs.stats, e, f);
                request::outlier_failure(cs, picked.ep, f);
            } else {
                request::count_late(&cs.stats, f);
            }
            expired(respond, grpc, progress, e, response_edits)
        }
    };
    done.upstream = Some(picked.endpoint.addr);
    done
}

async fn exchange<C: Connector>(
    r: &mut Request<'_>,
    respond: &mut Respond,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    ep: usize,
    progress: &Progress,
) -> Done
where
    C::Conn: 'static,
{
    let stats = &cs.stats;
    let grpc = r.grpc;
    let response_edits = r.edits.response;
    let failed = |respond: &mut Respond, f| {
        request::count_failure(stats, f);
        fail(respond, grpc, f, response_edits)
    };
    // The request as it would go out: end-to-end and forwarding headers, then edits.
    let Some(req) =
        http2::request_from_h2(r.parts, r.authority, r.path, r.forwarding, r.edits.request)
    else {
        return reject(
            respond,
            grpc,
            HeadError::BadRequest("invalid request target"),
        );
    };
    respond.keep_request_h2(req.headers());
    let mut held = r.held.take();
    let mut held_trailers = r.held_trailers.take();
    let tee = r.tee.take();
    let end = r.ended() && held.is_none();
    let retry = r.retry.take();
    let retry = retry.as_ref();
    // A body whose first DATA frame is here and ends the stream is whole at hand too;
    // a first frame that does not end it goes first, ahead of the rest.
    let mut first = None;
    // A body the chain rewrites as it streams (`request_stream`) goes frame by frame
    // through it after the stream is open, and is not kept for a retry.
    let rewrite = r.edits.chain.hooks().request_stream && !end && held.is_none();
    if retry.is_some() && !end && held.is_none() && !rewrite {
        match take_first(&mut r.body, progress, tee.as_ref()).await {
            Ok(Some((chunk, true))) => held = Some(chunk),
            Ok(Some((chunk, false))) => first = Some(chunk),
            Ok(None) => {}
            Err(()) => {
                respond.send_reset(h2::Reason::CANCEL);
                return Done {
                    status: 0,
                    flag: ResponseFlag::DownstreamConnectionTermination,
                    bytes_received: progress.bytes_received(),
                    bytes_sent: 0,
                    upstream: None,
                    grpc_status: None,
                };
            }
        }
    }
    let (mut ep, mut again) = (ep, None);
    // A request whole at hand (no body, or the body the chain held) under a retry
    // policy is sent whole by each try, which waits for the response head: a retried
    // try sends it again. A body that streams under a retry policy is kept as it goes
    // up, and a retry sends the copy (`Streamed`). Without a policy the body streams
    // once, after the stream is open.
    let whole = retry.is_some() && (end || held.is_some());
    let streamed = retry.is_some() && !whole;
    let whole_len = held.as_ref().map_or(0, |b| b.len() as u64);
    // What a streamed try left for the pump: the bytes it took, whether it sent the
    // whole body, and the rest of the frame it stopped in.
    let mut streamed_left = (0u64, false, None, Default::default());
    // A filter's answer to the rewritten body, for the client (`rewrite`).
    let replied = std::cell::RefCell::new(None);
    let chain = r.edits.chain;
    let tried = if whole {
        let hedge = retry.filter(|r| r.hedging()).map(|_| hedge::copy());
        let body = held.take().map(|b| (b, held_trailers.take()));
        let (b, t) = body.clone().unzip();
        http2::fill_hedge(&hedge, &req, b, t.flatten());
        let mut x = Whole {
            req: &req,
            body,
            stats,
            hedge,
        };
        request::run(
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
        .await
        .map(|(_, (resp, send))| (Head::Got(resp), send))
    } else if let Some(r_state) = retry.filter(|_| streamed) {
        let mut x = super::to_h2_retry::Streamed {
            req: &req,
            body: &mut r.body,
            first: first.take(),
            tee: tee.as_ref(),
            progress,
            stats,
            kept: crate::upstream::request::replay::Kept::new(Some(r_state.buffer_limit())),
            trailers: None,
            taken: 0,
            sent: false,
            pending: None,
            hedge: r_state.hedging().then(hedge::copy),
            rewrite: rewrite.then_some(chain),
            pieces: Default::default(),
            replied: None,
        };
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
        streamed_left = (
            x.taken,
            x.sent,
            x.pending.take(),
            std::mem::take(&mut x.pieces),
        );
        *replied.borrow_mut() = x.replied.take();
        match tried {
            Ok((_, Some((resp, send)))) => Ok((Head::Got(resp), send)),
            // The client's stream failed while its body was read, or a filter answered
            // it.
            Ok((_, None)) => {
                if let Some(reply) = replied.take() {
                    return filter_reply(respond, grpc, &reply, response_edits);
                }
                respond.send_reset(h2::Reason::CANCEL);
                return Done {
                    status: 0,
                    flag: ResponseFlag::DownstreamConnectionTermination,
                    bytes_received: progress.bytes_received(),
                    bytes_sent: 0,
                    upstream: None,
                    grpc_status: None,
                };
            }
            Err(f) => Err(f),
        }
    } else {
        let mut open = request::H2Open {
            req: Some(req),
            end,
        };
        request::run(
            &request::Http2,
            RetryPolicy::NONE,
            retry,
            cs,
            &mut ep,
            &mut again,
            &*view.connector,
            progress,
            r.route_timeout,
            &mut open,
        )
        .await
        .map(|(_, (resp, send))| (Head::Waiting(resp), send))
    };
    let (response, mut up_send) = match tried {
        Ok(stream) => stream,
        Err(f) => {
            let retried = retry.is_some_and(|r| r.retried());
            return super::reply::fail_retried(respond, grpc, f, response_edits, retried);
        }
    };
    if let Some(a) = retry.filter(|a| a.attempt_count_response) {
        r.edits.response.stamp.attempt_count = Some(a.attempt());
    }
    // A retriable response that goes to the client because the retries ran out.
    let retry_flag = retry.map_or(ResponseFlag::None, |a| a.response_flag());
    // Request body upstream and response downstream run together (streaming calls).
    let upload = async {
        if whole {
            // Sent whole by the try that answered.
            return Ok(whole_len);
        }
        if streamed {
            // The try that answered took the body as far as the head came; the rest
            // goes on from there.
            let (taken, sent, pending, pieces) = streamed_left;
            if sent {
                return Ok(taken);
            }
            let ahead = match pending {
                Some(rest) => send_bytes(rest, &mut up_send).await,
                None => Ok(0),
            };
            let moved = |n| progress.received(n);
            let result = match ahead {
                Ok(_) if rewrite => {
                    let body = (&mut r.body, &mut up_send);
                    super::upload::rewritten(body, (&chain, pieces), progress, tee.as_ref())
                        .await
                        .map(|m| m + taken)
                        .map_err(|e| pump_error(e, &replied))
                }
                Ok(_) => pump(
                    &mut r.body,
                    &mut up_send,
                    moved,
                    None,
                    tee.as_ref(),
                    None,
                    None,
                )
                .await
                .map(|m| m + taken),
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => progress.request_done(),
                Err(_) => up_send.send_reset(h2::Reason::CANCEL),
            }
            return result;
        }
        if end {
            return Ok(0);
        }
        let result = match held {
            Some(b) => send_held(b, held_trailers, &mut up_send).await,
            None if rewrite => {
                let (body, pieces) = ((&mut r.body, &mut up_send), Default::default());
                super::upload::rewritten(body, (&chain, pieces), progress, tee.as_ref())
                    .await
                    .map_err(|e| pump_error(e, &replied))
            }
            None => {
                let moved = |n| progress.received(n);
                let ahead = match first {
                    Some(chunk) => send_bytes(chunk, &mut up_send).await,
                    None => Ok(0),
                };
                match ahead {
                    Ok(n) => pump(
                        &mut r.body,
                        &mut up_send,
                        moved,
                        None,
                        tee.as_ref(),
                        None,
                        None,
                    )
                    .await
                    .map(|m| m + n),
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(_) => progress.request_done(),
            Err(_) => up_send.send_reset(h2::Reason::CANCEL),
        }
        result
    };
    let download = async {
        let resp = match response {
            Head::Got(resp) => resp,
            Head::Waiting(f) => match f.await {
                Ok(resp) => resp,
                Err(_) => {
                    if let Some(reply) = replied.take() {
                        // The upload reset the stream: a filter answered its body.
                        return filter_reply(respond, grpc, &reply, response_edits);
                    }
                    request::outlier_failure(cs, ep, Failure::ConnectionTermination);
                    return failed(respond, Failure::ConnectionTermination);
                }
            },
        };
        let (parts, mut body) = resp.into_parts();
        let status = parts.status.as_u16();
        // The h2 crate accepts any three-digit :status (and consumes 1xx itself).
        // (Dropping the body resets the upstream stream.)
        if !response::valid_status(status) {
            return failed(respond, Failure::ProtocolError);
        }
        if !whole && !streamed {
            // The response after a retry (one that followed a connect failure) ends
            // the retries: counted as their success, as Envoy counts it.
            if let Some(a) = retry {
                let breakers = cs.cfg.breakers.at(progress.priority());
                a.on_response(status, &parts.headers, false, stats, breakers);
            }
        }
        request::count_response(cs, ep, status);
        if r.edits.chain.hooks().response_head {
            if let Status::Respond(reply) =
                r.edits.chain.on_response_head(status, &parts.headers).await
            {
                // A filter answers instead; dropping `body` resets the upstream stream.
                return filter_reply(respond, grpc, &reply, response_edits);
            }
        }
        if r.edits.chain.hooks().response_body {
            // Head, whole body and trailers held for the chain (`held.rs`).
            if let Some(m) = r.edits.response.stamp.phases.as_mut() {
                m.set_upstream(progress.phase_marks());
            }
            let e = (grpc, &r.edits);
            let mut done = super::held::from_h2(parts, body, respond, e, stats, progress).await;
            if done.flag == ResponseFlag::None {
                done.flag = retry_flag;
            }
            return done;
        }
        let mut out = Response::new(());
        *out.status_mut() = parts.status;
        http2::copy_end_to_end(&parts.headers, out.headers_mut(), Message::Response);
        if let Some(m) = r.edits.response.stamp.phases.as_mut() {
            m.set_upstream(progress.phase_marks());
        }
        let mut first = First::default();
        if r.edits.chain.hooks().response_stream {
            // The body is rewritten as it streams: no length (Envoy removes it); a
            // piece that came with the head goes through the chain before it.
            out.headers_mut().remove(http::header::CONTENT_LENGTH);
            match first_h2_piece(&mut body, &r.edits.chain).await {
                Ok(f) => first = f,
                Err(reply) => return filter_reply(respond, grpc, &reply, response_edits),
            }
            r.edits.chain.seal_response_head();
        }
        r.edits.response.apply_to_map(out.headers_mut());
        let end = body.is_end_stream() && first.out.is_empty() && !first.reader.holds();
        let mut done = Done {
            status,
            flag: retry_flag,
            bytes_received: 0,
            bytes_sent: 0,
            upstream: None,
            grpc_status: None,
        };
        if grpc && end {
            // Trailers-only: the status is in the head.
            done.grpc_status = super::reply::grpc_status(&parts.headers);
        }
        let mut down_send = match respond.send_response(out, end) {
            Ok(s) => s,
            Err(_) => {
                done.flag = ResponseFlag::DownstreamConnectionTermination;
                return done;
            }
        };
        progress.head_sent(status);
        if !first.out.is_empty() {
            let out = std::mem::take(&mut first.out);
            let sent = send_all(&mut down_send, out, &|n| progress.sent(n))
                .await
                .map_err(|()| PumpError::Write);
            let ended = sent.and_then(|_| match first.ended {
                true => down_send
                    .send_data(Bytes::new(), true)
                    .map_err(|_| PumpError::Write),
                false => Ok(()),
            });
            if ended.is_err() {
                done.flag = ResponseFlag::DownstreamConnectionTermination;
                return done;
            }
        }
        if !end && !first.ended {
            let chain = &r.edits.chain;
            let hooks = chain.hooks();
            let hook = (hooks.response_data || hooks.response_trailers || hooks.response_stream)
                .then_some((chain, std::mem::take(&mut first.reader)));
            let status_out = grpc.then_some(&mut done.grpc_status);
            let pumped = pump(
                &mut body,
                &mut down_send,
                |n| progress.sent(n),
                hook,
                None,
                status_out,
                respond.trailer_copy(),
            );
            match pumped.await {
                Ok(n) => done.bytes_sent = n,
                Err(PumpError::Read) => {
                    request::count_late(stats, Failure::ConnectionTermination);
                    down_send.send_reset(h2::Reason::INTERNAL_ERROR);
                    done.flag = ResponseFlag::UpstreamConnectionTermination;
                }
                Err(PumpError::Write) => done.flag = ResponseFlag::DownstreamConnectionTermination,
                // A filter answered after the head went out: reset (Envoy).
                Err(PumpError::Filtered) => down_send.send_reset(h2::Reason::INTERNAL_ERROR),
            }
        }
        done
    };
    let (sent, mut done) = futures_lite::future::zip(upload, download).await;
    match sent {
        Ok(n) => done.bytes_received = n,
        Err(_) if done.flag == ResponseFlag::None => {
            done.flag = ResponseFlag::DownstreamConnectionTermination
        }
        Err(_) => {}
    }
    done
}
