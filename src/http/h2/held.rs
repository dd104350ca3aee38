//! An HTTP/2 client's response held whole for the chain's response-body hook (ext_proc's
//! `BUFFERED` response body mode), from an HTTP/1 upstream (`to_h1.rs`) or an HTTP/2
//! one (`to_h2.rs`): the head stays unsent while the body (and an HTTP/2 upstream's
//! trailers) is read, the chain sees the body and may replace it or answer instead,
//! then head, body and trailers go out. The shared pieces and the Content-Length rules
//! are in `http/held_body.rs`.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use h2::RecvStream;
use http::Response;

use super::reply::{fail, filter_reply, Done};
use super::respond::Respond;
use crate::http::body::Chunks;
use crate::http::body_hooks::{self, Stopped};
use crate::http::buf::ReadBuf;
use crate::http::failure::Failure;
use crate::http::filter::ext_proc::response::TOO_LARGE;
use crate::http::filter::{Status, StreamEdits};
use crate::http::flags::ResponseFlag;
use crate::http::h1::head::BodyKind;
use crate::http::held_body::{self, Collect, ReadError};
use crate::http::hop::Message;
use crate::http::io::Io;
use crate::observe::stats::ClusterStats;
use crate::upstream::request::{self, http1, http2};

use super::clock::Progress;

/// The upstream failed mid-body while the response was held. Envoy's router had
/// handed the head on, so the client's stream is reset (the HTTP/1 path closes).
fn cut(respond: &mut Respond, stats: &ClusterStats, status: u16) -> Done {
    request::count_late(stats, Failure::ConnectionTermination);
    respond.send_reset(h2::Reason::INTERNAL_ERROR);
    Done {
        status,
        flag: ResponseFlag::UpstreamConnectionTermination,
        bytes_received: 0,
        bytes_sent: 0,
        upstream: None,
        grpc_status: None,
    }
}

/// Sends the held response: head (without its Content-Length unless kept, with the
/// response edits applied), then body and trailers.
async fn send(
    respond: &mut Respond,
    mut head: Response<()>,
    (body, trailers, had_body): (Vec<u8>, Option<http::HeaderMap>, bool),
    keep_length: bool,
    edits: &StreamEdits<'_>,
    progress: &Progress,
    grpc: bool,
) -> Done {
    let status = head.status().as_u16();
    if !keep_length {
        head.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    edits.response.apply_to_map(head.headers_mut());
    let mut done = Done {
        status,
        flag: ResponseFlag::None,
        bytes_received: 0,
        bytes_sent: 0,
        upstream: None,
        grpc_status: None,
    };
    if grpc {
        done.grpc_status = trailers
            .as_ref()
            .and_then(super::reply::grpc_status)
            .or_else(|| super::reply::grpc_status(head.headers()));
    }
    let end = !had_body && trailers.is_none();
    let Ok(mut stream) = respond.send_response(head, end) else {
        done.flag = ResponseFlag::DownstreamConnectionTermination;
        return done;
    };
    progress.head_sent(status);
    if let Some(t) = &trailers {
        respond.keep_trailers(t);
    }
    if !end {
        let n = body.len() as u64;
        match held_body::send_h2(&mut stream, body, trailers).await {
            Ok(n) => done.bytes_sent = n,
            Err(()) => done.flag = ResponseFlag::DownstreamConnectionTermination,
        }
        progress.sent(n);
    }
    done
}

/// Holds an HTTP/1 upstream's response (head parsed into `h`, its bytes consumed from
/// `ubuf`) for the chain. Returns how the stream ended and whether the upstream
/// connection is still in step. Chunked trailers are forwarded as an HTTP/2 trailers
/// frame with the cluster's `enable_trailers` (`keep_trailers`; else dropped, as
/// Envoy's HTTP/1 codec does), but never shown to the chain (its body message ends
/// the stream).
#[allow(clippy::too_many_arguments)]
pub(super) async fn from_h1<U: Io>(
    h: http1::Head,
    respond: &mut Respond,
    up: &mut U,
    ubuf: &mut ReadBuf,
    (grpc, edits): (bool, &StreamEdits<'_>),
    (max_headers, keep_trailers): (usize, bool),
    stats: &ClusterStats,
    progress: &Progress,
) -> (Done, bool) {
    let status = h.response.status().as_u16();
    let mut body = Collect::new(&edits.chain);
    let mut raw_trailers = Vec::new();
    if h.body != BodyKind::Empty {
        let mut sink = futures_lite::io::sink();
        let read = body_hooks::forward(
            &mut body,
            up,
            ubuf,
            &mut sink,
            h.body,
            Chunks::Strip,
            None,
            keep_trailers.then_some(&mut raw_trailers),
        )
        .await;
        match read {
            Ok(_) => {}
            Err(Stopped::Reply(r)) => {
                return (filter_reply(respond, grpc, &r, edits.response), false)
            }
            Err(Stopped::Body(_)) => return (cut(respond, stats, status), false),
        }
    }
    let Ok(trailers) = http1::trailer_map(&raw_trailers, max_headers) else {
        request::count_late(stats, Failure::ProtocolError);
        return (
            fail(respond, grpc, Failure::ProtocolError, edits.response),
            false,
        );
    };
    let had_body = h.body != BodyKind::Empty;
    let length = match h.body {
        BodyKind::Length(n) => Some(n),
        _ => None,
    };
    let mut body = body.body;
    let held = held_body::for_hook(&mut body, had_body, false);
    let o = edits.chain.on_response_body(held, length, false).await;
    if let Status::Respond(r) = o.status {
        return (filter_reply(respond, grpc, &r, edits.response), false);
    }
    let reuse = h.reuse && ubuf.is_empty();
    let (parts, ()) = h.response.into_parts();
    let head = Response::from_parts(parts, ());
    let parts = (body, trailers, had_body);
    let done = send(respond, head, parts, o.keep_length, edits, progress, grpc).await;
    let reuse = reuse && done.flag == ResponseFlag::None;
    (done, reuse)
}

/// Holds an HTTP/2 upstream's response (`parts`, `body`) for the chain, then sends it.
pub(super) async fn from_h2(
    parts: http::response::Parts,
    mut body: RecvStream,
    respond: &mut Respond,
    (grpc, edits): (bool, &StreamEdits<'_>),
    stats: &ClusterStats,
    progress: &Progress,
) -> Done {
    let status = parts.status.as_u16();
    let had_body = !body.is_end_stream();
    let (mut data, mut trailers) = if had_body {
        match held_body::read_h2(&mut body, &edits.chain).await {
            Ok(t) => t,
            Err(ReadError::TooLarge) => {
                return filter_reply(respond, grpc, &TOO_LARGE, edits.response)
            }
            Err(ReadError::Reply(r)) => return filter_reply(respond, grpc, &r, edits.response),
            Err(ReadError::Read) => return cut(respond, stats, status),
        }
    } else {
        (Vec::new(), None)
    };
    let length = held_body::content_length(&parts.headers);
    let has_trailers = trailers.is_some();
    let held = held_body::for_hook(&mut data, had_body, has_trailers);
    let o = edits
        .chain
        .on_response_body(held, length, has_trailers)
        .await;
    if let Status::Respond(r) = o.status {
        return filter_reply(respond, grpc, &r, edits.response);
    }
    // The trailers after the body, as Envoy sends them once the body is answered.
    if let (Some(t), true) = (trailers.as_mut(), edits.chain.hooks().response_trailers) {
        if let Status::Respond(r) = edits.chain.on_response_trailers(t).await {
            return filter_reply(respond, grpc, &r, edits.response);
        }
    }
    let mut head = Response::new(());
    *head.status_mut() = parts.status;
    http2::copy_end_to_end(&parts.headers, head.headers_mut(), Message::Response);
    let parts = (data, trailers, had_body);
    send(respond, head, parts, o.keep_length, edits, progress, grpc).await
}
