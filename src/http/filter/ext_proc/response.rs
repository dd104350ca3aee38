//! The response-body hook of ext_proc: a `BUFFERED` response body mode holds the
//! upstream's response (head and whole body) until the processor answered for it, as
//! Envoy's filter holds the response headers while it buffers the body
//! (`processor_state.cc`): the head can still change then, and the processor may still
//! answer with an immediate response instead.
//!
//! Envoy's Content-Length rules: with the response headers sent to the processor the
//! upstream's Content-Length stays, and a body mutation whose length differs from it is
//! refused with a `500` ("mismatch between content length and the length of the
//! mutated body"); with the headers skipped the Content-Length is removed (Envoy's
//! `shouldRemoveContentLength`), and the client gets the body chunked (HTTP/1.1) or
//! delimited by the close (HTTP/1.0). The mutations of the headers' answer and of the
//! body's answer together become the response's plan; with the headers skipped, Envoy
//! holds no headers to mutate and drops the body answer's header mutations, and so
//! does this hook.
//!
//! A `STREAMED` response body streams (`stream.rs`), except when another filter (a
//! wasm module's response body) holds the whole response: then it is held too, on the
//! same paths, but each piece goes to the processor as it comes from the upstream (`on_response_chunk`, called by
//! `Chain::on_held_response_data`), in messages of about 16 KiB, the last with
//! `end_of_stream` (none with it when trailers end the body, as in Envoy); what the
//! processor made of each piece (its body mutation, else the piece) is gathered and
//! replaces the held body at its end. The Content-Length is removed, as Envoy removes
//! it for `STREAMED` (`shouldRemoveContentLength`): an HTTP/1 client gets the body
//! chunked. The first body answer's header mutations apply (with the response headers
//! sent to the processor), as Envoy applies them while it still holds the head, which
//! it does when the body came during the headers' round trip (Envoy 1.40, checked in
//! tests/ext_proc_parity.rs); later answers' are dropped. Held so, the client gets
//! nothing before the body's end, a body over `MAX_BUFFERED_BODY` is a `500`, and an
//! immediate response to a piece replaces the response (docs/envoy-api.md).

use std::borrow::Cow;

use envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Req;
use envoy_types::pb::envoy::service::ext_proc::v3::HttpBody;

use super::run::{state, Answer, Phase, State};
use super::stream;
use super::{BodyMode, HeaderMode, MAX_BUFFERED_BODY};
use crate::http::filter::set_headers::SetHeaders;
use crate::http::filter::status::{LocalReply, Status};
use crate::http::flags::ResponseFlag;

/// What the response-body hook decided.
#[derive(Debug)]
pub struct BodyOutcome {
    pub status: Status,
    /// The response keeps its Content-Length (false: the body goes out without one).
    pub keep_length: bool,
}

impl BodyOutcome {
    const GO_ON: BodyOutcome = BodyOutcome {
        status: Status::Continue,
        keep_length: true,
    };
}

/// Envoy's answer when a mutated body does not match the kept Content-Length.
fn mismatch() -> Status {
    Status::Respond(LocalReply {
        status: 500,
        body: Cow::Borrowed(""),
        flag: ResponseFlag::None,
    })
}

/// The held response's body (`None`: the response has none, and nothing is sent for
/// it, as Envoy sends no body message after headers that end the stream, nor for an
/// HTTP/2 response whose trailers came with no DATA before them), with the upstream's
/// Content-Length. `trailers`: the body ended with trailers, not with the stream, and
/// the message says `end_of_stream: false` (Envoy sends the buffered body when the
/// trailers arrive). The body is replaced in place by what the processor made of it.
pub async fn on_response_body(
    store: Option<&SetHeaders>,
    body: Option<&mut Vec<u8>>,
    length: Option<u64>,
    trailers: bool,
) -> BodyOutcome {
    let Some(s) = state(store) else {
        return BodyOutcome::GO_ON;
    };
    let m = s.mode.get();
    if m.response_body == BodyMode::Streamed {
        // The pieces went as they came; the body is what the processor made of them,
        // and the pieces that came after the stream ended (closed by the processor,
        // failed open), as they came.
        if let Some(body) = body {
            *body = std::mem::take(&mut *s.response_out.borrow_mut());
        }
        finish(s);
        return BodyOutcome {
            status: Status::Continue,
            keep_length: false,
        };
    }
    if !s.live() || m.response_body == BodyMode::None {
        finish(s);
        return BodyOutcome::GO_ON;
    }
    let keep_length = m.response_headers == HeaderMode::Send;
    let Some(body) = body else {
        finish(s);
        return BodyOutcome {
            status: Status::Continue,
            keep_length,
        };
    };
    let msg = Req::ResponseBody(HttpBody {
        body: body.clone(),
        end_of_stream: !trailers,
        ..Default::default()
    });
    let status = match s.exchange(msg, Phase::ResponseBody).await {
        Answer::Common(r, _) => {
            // Envoy applies them to the held headers; skipped headers were not held,
            // and the mutations are dropped.
            if keep_length {
                stream::keep_ops(s, &r);
            }
            match r.body_mutation.map(|b| b.mutation) {
                None => Status::Continue,
                Some(m) => {
                    // Envoy compares the mutation's `body` (empty when it clears).
                    let new_len = match &m {
                        Some(Mutation::Body(b)) => b.len(),
                        _ => 0,
                    };
                    if keep_length && length.is_some_and(|n| n != new_len as u64) {
                        s.close();
                        mismatch()
                    } else {
                        match m {
                            Some(Mutation::Body(b)) => *body = b,
                            Some(Mutation::ClearBody(true)) => body.clear(),
                            _ => {}
                        }
                        Status::Continue
                    }
                }
            }
        }
        Answer::Immediate(i) => s.immediate(i),
        Answer::Closed => Status::Continue,
        Answer::Failed(why) => s.fail(why),
    };
    if let Status::Respond(_) = status {
        // A local reply has headers of its own (an immediate response's set its plan).
        *s.response_ops.borrow_mut() = Default::default();
    }
    finish(s);
    BodyOutcome {
        status,
        keep_length,
    }
}

/// The least a `STREAMED` response body message carries before the body's end: the
/// pieces (a chunked body's chunks, HTTP/2 DATA frames) are gathered to this size, so
/// a small body is one message with `end_of_stream`, as Envoy's codecs hand over a
/// body that came in one read, and a large one goes in pieces of about this size.
const PIECE: usize = 16 * 1024;

/// One piece of a held response body (`end`: the last call; `trailers`: trailers ended
/// the body, and no message says `end_of_stream`). In `STREAMED` mode the pieces go to
/// the processor gathered up to `PIECE`, the rest at the end.
pub async fn on_response_chunk(
    store: Option<&SetHeaders>,
    chunk: &[u8],
    end: bool,
    trailers: bool,
) -> Status {
    let Some(s) = state(store) else {
        return Status::Continue;
    };
    if s.mode.get().response_body != BodyMode::Streamed {
        return Status::Continue;
    }
    let mut piece = std::mem::take(&mut *s.response_pending.borrow_mut());
    piece.extend_from_slice(chunk);
    if !end {
        if piece.len() >= PIECE {
            return send_piece(s, piece, false).await;
        }
        *s.response_pending.borrow_mut() = piece;
        return Status::Continue;
    }
    if piece.is_empty() && trailers {
        // The last data went already, or none came before the trailers: Envoy sends
        // no body message for the trailers.
        return Status::Continue;
    }
    send_piece(s, piece, !trailers).await
}

/// Sends one piece of a held `STREAMED` response body and appends what the processor
/// made of it to the body the client gets. The first answer's header mutations apply,
/// as Envoy still holds the head then (the body came during the headers' round trip).
async fn send_piece(s: &State, piece: Vec<u8>, eos: bool) -> Status {
    let first = !s.response_piece_answered.replace(true);
    let mut out = Vec::new();
    let status = stream::process_piece(s, &piece, eos, first, &mut out).await;
    s.response_out.borrow_mut().extend_from_slice(&out);
    status
}

/// Processing of the response's head and body is over: its mutations become its plan,
/// and the stream ends (unless the trailers are still to be sent).
fn finish(s: &State) {
    stream::seal(s);
    stream::done(s);
}

/// Whether a held response body of `len` bytes is over the buffer limit (the caller
/// answers `500`, Envoy's `response_payload_too_large`).
pub fn too_large(len: usize) -> bool {
    len > MAX_BUFFERED_BODY
}

/// The answer to a held response body over the limit (`too_large`), or one whose
/// upstream failed while it was read: Envoy's `500`, nothing having gone out yet.
pub const TOO_LARGE: LocalReply = LocalReply {
    status: 500,
    body: Cow::Borrowed(""),
    flag: ResponseFlag::None,
};
