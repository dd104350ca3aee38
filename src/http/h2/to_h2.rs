//! An HTTP/2 stream proxied to an HTTP/2 upstream over the per-core multiplexed
//! connection: headers, DATA and trailers pass through, in both directions at once (so
//! gRPC streaming calls work), with flow-control capacity released to the sender only
//! as the receiver takes the data.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::Response;

use super::clock::Progress;
use super::reply::{expired, fail, filter_reply, reject, Done};
use super::to_h1::{expiry_failure, Request};
use crate::http::failure::Failure;
use crate::http::filter::{Chain, Status};
use crate::http::flags::ResponseFlag;
use crate::http::h1::head::HeadError;
use crate::http::h1::response;
use crate::http::hop::Message;
use crate::http::view::WorkerView;
use crate::upstream::cluster::ClusterState;
use crate::upstream::request::tee::TeeTx;
use crate::upstream::request::{self, http2, RetryPolicy};
use crate::upstream::Connector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpError {
    Read,
    Write,
    /// The response-body hook answered (after the head went out).
    Filtered,
}

/// Moves DATA and trailers from one stream to another; the sender's window reopens only
/// as the receiver accepts the bytes. `moved` hears of every byte passed on. `hook`:
/// the chain whose response-body hook sees each frame first (`None` for request bodies
/// and for chains without the hook). `tee`: a mirrored request body's shadows, which
/// get each frame (and the trailers) as it goes on.
async fn pump(
    from: &mut RecvStream,
    to: &mut SendStream<Bytes>,
    moved: impl Fn(u64),
    hook: Option<&Chain<'_>>,
    tee: Option<&TeeTx>,
) -> Result<u64, PumpError> {
    let mut total = 0u64;
    let mut ended = false;
    while let Some(chunk) = from.data().await {
        let mut chunk = chunk.map_err(|_| PumpError::Read)?;
        let n = chunk.len();
        if let Some(t) = tee {
            t.push_bytes(chunk.clone());
        }
        if let Some(chain) = hook {
            ended = from.is_end_stream();
            if chain.on_response_data(&chunk, ended).await != Status::Continue {
                return Err(PumpError::Filtered);
            }
        }
        while !chunk.is_empty() {
            let cap = super::io::send_capacity(to, chunk.len())
                .await
                .ok_or(PumpError::Write)?;
            let part = chunk.split_to(cap.min(chunk.len()));
            let len = part.len() as u64;
            to.send_data(part, false).map_err(|_| PumpError::Write)?;
            moved(len);
        }
        let _ = from.flow_control().release_capacity(n);
        total += n as u64;
    }
    let trailers = from.trailers().await.map_err(|_| PumpError::Read)?;
    if let Some(t) = tee {
        t.finish(trailers.as_ref());
    }
    if let Some(chain) = hook.filter(|_| !ended) {
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
    mut body: Bytes,
    trailers: Option<http::HeaderMap>,
    to: &mut SendStream<Bytes>,
) -> Result<u64, PumpError> {
    let total = body.len() as u64;
    while !body.is_empty() {
        let cap = super::io::send_capacity(to, body.len())
            .await
            .ok_or(PumpError::Write)?;
        let part = body.split_to(cap.min(body.len()));
        to.send_data(part, false).map_err(|_| PumpError::Write)?;
    }
    match trailers {
        Some(t) => to.send_trailers(t).map_err(|_| PumpError::Write)?,
        None => to
            .send_data(Bytes::new(), true)
            .map_err(|_| PumpError::Write)?,
    }
    Ok(total)
}

pub(crate) async fn proxy<C: Connector>(
    r: Request<'_>,
    respond: &mut SendResponse<Bytes>,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    progress: &Progress,
) -> Done
where
    C::Conn: 'static,
{
    let grpc = r.grpc;
    let response_edits = r.edits.response;
    let picked = match request::pick(cs, r.hash) {
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
                request::count_failure(&cs.stats, f);
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
    mut r: Request<'_>,
    respond: &mut SendResponse<Bytes>,
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
    let failed = |respond: &mut SendResponse<Bytes>, f| {
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
    let held = r.held.take();
    let held_trailers = r.held_trailers.take();
    let tee = r.tee.take();
    let end = r.body.is_end_stream() && held.is_none();
    let mut open = request::H2Open {
        req: Some(req),
        end,
    };
    let (mut ep, mut again) = (ep, None);
    let (response, mut up_send) = match request::run(
        &request::Http2,
        RetryPolicy::NONE,
        None,
        cs,
        &mut ep,
        &mut again,
        &*view.connector,
        progress,
        std::time::Duration::ZERO,
        &mut open,
    )
    .await
    {
        Ok((_, stream)) => stream,
        Err(f) => return fail(respond, grpc, f, response_edits),
    };
    // Request body upstream and response downstream run together (streaming calls).
    let upload = async {
        if end {
            return Ok(0);
        }
        let result = match held {
            Some(b) => send_held(b, held_trailers, &mut up_send).await,
            None => {
                let moved = |n| progress.received(n);
                pump(&mut r.body, &mut up_send, moved, None, tee.as_ref()).await
            }
        };
        match result {
            Ok(_) => progress.request_done(),
            Err(_) => up_send.send_reset(h2::Reason::CANCEL),
        }
        result
    };
    let download = async {
        let resp = match response.await {
            Ok(resp) => resp,
            Err(_) => {
                request::outlier_failure(cs, ep, Failure::ConnectionTermination);
                return failed(respond, Failure::ConnectionTermination);
            }
        };
        let (parts, mut body) = resp.into_parts();
        let status = parts.status.as_u16();
        // The h2 crate accepts any three-digit :status (and consumes 1xx itself).
        // (Dropping the body resets the upstream stream.)
        if !response::valid_status(status) {
            return failed(respond, Failure::ProtocolError);
        }
        request::count_response(cs, ep, status);
        if r.edits.chain.hooks().response_head {
            if let Status::Respond(reply) = r.edits.chain.on_response_head(status).await {
                // A filter answers instead; dropping `body` resets the upstream stream.
                return filter_reply(respond, grpc, &reply, response_edits);
            }
        }
        let mut out = Response::new(());
        *out.status_mut() = parts.status;
        http2::copy_end_to_end(&parts.headers, out.headers_mut(), Message::Response);
        if let Some(m) = r.edits.response.stamp.phases.as_mut() {
            m.set_upstream(progress.phase_marks());
        }
        r.edits.response.apply_to_map(out.headers_mut());
        let end = body.is_end_stream();
        let mut done = Done {
            status,
            flag: ResponseFlag::None,
            bytes_received: 0,
            bytes_sent: 0,
            upstream: None,
        };
        let mut down_send = match respond.send_response(out, end) {
            Ok(s) => s,
            Err(_) => {
                done.flag = ResponseFlag::DownstreamConnectionTermination;
                return done;
            }
        };
        progress.head_sent(status);
        if !end {
            let chain = &r.edits.chain;
            let hook = chain.hooks().response_data.then_some(chain);
            match pump(&mut body, &mut down_send, |n| progress.sent(n), hook, None).await {
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
