//! An HTTP/2 client's response from an HTTP/1 upstream (`to_h1.rs`) whose body the chain
//! rewrites as it streams (`response_stream`: ext_proc's `STREAMED` response body
//! mode; `http/body_stream.rs`): the head goes without its Content-Length, once the
//! chain has seen a piece that came with it or when the upstream is first waited for;
//! each piece then goes out as DATA as the chain made it, and chunked trailers as an
//! HTTP/2 trailers frame. A filter that answers before the head went out replaces the
//! response; after it, the client's stream is reset (Envoy).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::Bytes;
use h2::SendStream;
use http::Response;

use super::clock::Progress;
use super::io::send_all;
use super::reply::{filter_reply, Done};
use super::respond::Respond;
use crate::http::body::BodyError;
use crate::http::body_hooks::Stopped;
use crate::http::body_stream::{self, Pieces};
use crate::http::buf::ReadBuf;
use crate::http::failure::Failure;
use crate::http::filter::{Status, StreamEdits};
use crate::http::flags::ResponseFlag;
use crate::http::h1::head::BodyKind;
use crate::http::io::Io;
use crate::observe::stats::ClusterStats;
use crate::upstream::request::{self, http1};

/// The client's side of a streamed response: the head until it goes, then its stream.
struct ToClient<'a, 'c> {
    edits: &'a StreamEdits<'c>,
    head: Option<Response<()>>,
    respond: &'a mut Respond,
    send: Option<SendStream<Bytes>>,
    progress: &'a Progress,
    sent: u64,
}

impl ToClient<'_, '_> {
    /// Sends the head if it is still held: its plan sealed, the edits applied.
    fn head_out(&mut self) -> Result<(), Stopped> {
        if let Some(mut head) = self.head.take() {
            self.edits.chain.seal_response_head();
            self.edits.response.apply_to_map(head.headers_mut());
            let status = head.status().as_u16();
            let s = self
                .respond
                .send_response(head, false)
                .map_err(|_| Stopped::Body(BodyError::Write))?;
            self.progress.head_sent(status);
            self.send = Some(s);
        }
        Ok(())
    }
}

impl Pieces for ToClient<'_, '_> {
    fn head_held(&self) -> bool {
        self.head.is_some()
    }

    async fn idle(&mut self) -> Result<(), Stopped> {
        self.head_out()
    }

    async fn piece(&mut self, data: &[u8], end: bool) -> Result<(), Stopped> {
        let chain = &self.edits.chain;
        let mut out = Vec::new();
        let head_out = self.send.is_some();
        if let Status::Respond(r) = chain.on_response_piece(data, end, head_out, &mut out).await {
            return Err(Stopped::Reply(r));
        }
        if chain.hooks().response_data {
            if let Status::Respond(r) = chain.on_response_data(&out, end).await {
                return Err(Stopped::Reply(r));
            }
        }
        self.head_out()?;
        if let Some(s) = self.send.as_mut() {
            let n = out.len() as u64;
            let progress = self.progress;
            send_all(s, Bytes::from(out), &|n| progress.sent(n))
                .await
                .map_err(|()| Stopped::Body(BodyError::Write))?;
            self.sent += n;
        }
        Ok(())
    }
}

/// Streams an HTTP/1 upstream's response (head parsed into `h`, its bytes consumed from
/// `ubuf`) through the chain to the client. Returns how the stream ended and whether
/// the upstream connection is still in step.
#[allow(clippy::too_many_arguments)]
pub(super) async fn from_h1<U: Io>(
    mut h: http1::Head,
    respond: &mut Respond,
    up: &mut U,
    ubuf: &mut ReadBuf,
    (grpc, edits): (bool, &StreamEdits<'_>),
    (max_headers, keep_trailers): (usize, bool),
    stats: &ClusterStats,
    progress: &Progress,
) -> (Done, bool) {
    let status = h.response.status().as_u16();
    h.response
        .headers_mut()
        .remove(http::header::CONTENT_LENGTH);
    let mut done = Done {
        status,
        flag: ResponseFlag::None,
        bytes_received: 0,
        bytes_sent: 0,
        upstream: None,
        grpc_status: None,
    };
    if grpc {
        done.grpc_status = super::reply::grpc_status(h.response.headers());
    }
    let (parts, ()) = h.response.into_parts();
    let mut client = ToClient {
        edits,
        head: Some(Response::from_parts(parts, ())),
        respond,
        send: None,
        progress,
        sent: 0,
    };
    if h.body == BodyKind::Empty {
        // No body, no piece: the head ends the stream.
        let Some(mut head) = client.head.take() else {
            return (done, false);
        };
        edits.chain.seal_response_head();
        edits.response.apply_to_map(head.headers_mut());
        if client.respond.send_response(head, true).is_err() {
            done.flag = ResponseFlag::DownstreamConnectionTermination;
        }
        progress.head_sent(status);
        return (done, h.reuse && ubuf.is_empty());
    }
    let mut raw_trailers = Vec::new();
    // The chunked trailers go on with the cluster's `enable_trailers` only (Envoy).
    let trailers = keep_trailers.then_some(&mut raw_trailers);
    let streamed = body_stream::stream(&mut client, up, ubuf, h.body, None, trailers).await;
    let streamed = streamed.and_then(|n| client.head_out().map(|()| n));
    let ToClient { send, sent, .. } = client;
    done.bytes_sent = sent;
    let mut send = match (streamed, send) {
        (Ok(_), Some(send)) => send,
        (Err(Stopped::Reply(r)), None) => {
            return (filter_reply(respond, grpc, &r, edits.response), false);
        }
        (Err(Stopped::Body(e)), None) if e != BodyError::Write => {
            // The upstream failed before anything went out.
            request::count_late(stats, Failure::ConnectionTermination);
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            done.flag = ResponseFlag::UpstreamConnectionTermination;
            return (done, false);
        }
        (Err(e), Some(mut send)) => {
            send.send_reset(h2::Reason::INTERNAL_ERROR);
            match e {
                // A filter answered after the head went out: reset (Envoy).
                Stopped::Reply(_) => {}
                Stopped::Body(BodyError::Write) => {
                    done.flag = ResponseFlag::DownstreamConnectionTermination
                }
                Stopped::Body(_) => {
                    request::count_late(stats, Failure::ConnectionTermination);
                    done.flag = ResponseFlag::UpstreamConnectionTermination;
                }
            }
            return (done, false);
        }
        (_, None) => {
            done.flag = ResponseFlag::DownstreamConnectionTermination;
            return (done, false);
        }
    };
    // Chunked trailers become an HTTP/2 trailers frame.
    let t = (raw_trailers.as_slice(), max_headers);
    super::reply::end_stream(&mut send, respond, t, grpc, &mut done, stats);
    let reuse = done.flag == ResponseFlag::None && h.reuse && ubuf.is_empty();
    (done, reuse)
}
