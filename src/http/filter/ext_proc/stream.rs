//! ext_proc's `STREAMED` response body mode, streamed: each piece of the upstream's
//! response body goes to the processor as it comes (one message per upstream read of an
//! HTTP/1 body, per DATA frame of an HTTP/2 one, as Envoy sends one per `encodeData`),
//! and what the processor made of it goes on to the client before the next piece is
//! read. Nothing is held beyond the piece in flight, so a body of any size, and a
//! stream that never ends (a gRPC server stream), pass.
//!
//! The head goes out once the response headers' answer is in (its mutations apply),
//! except when a piece of the body is already at hand then (it came with the head):
//! that piece is processed first and its answer's header mutations apply too, as Envoy
//! holds the head while the body that came during the headers' round trip is processed
//! (`Chain::seal_response_head` makes the plan before the head is encoded). The
//! Content-Length is removed (Envoy's `shouldRemoveContentLength` for `STREAMED`): an
//! HTTP/1.1 client gets the body chunked. A message says `end_of_stream` with the piece
//! that ends the body (an empty one when the end came alone); none does when trailers
//! end it, as in Envoy. An immediate response, or a failure without
//! `failure_mode_allow`, before the head went out replaces the response; after it, the
//! caller resets the client's stream (HTTP/2) or closes its connection (HTTP/1), as
//! Envoy does. With `failure_mode_allow`, or once the processor closed the stream, the
//! rest goes as it came.
//!
//! When another filter holds the whole response (a wasm module's response body), the
//! pieces go to the processor as it is read instead (`response.rs`).
//!
//! The `STREAMED` request body likewise ([`on_request_piece`]): once the request
//! headers' answer is in, the upstream request starts without a Content-Length, and
//! each piece of the client's body (one read of an HTTP/1 body, one DATA frame of an
//! HTTP/2 one) goes to the processor and what it made of it upstream before the next
//! is read (an HTTP/1 client's end alone after its last data, as Envoy's HTTP/1 codec
//! hands it over: `request_stream.rs`). Header mutations in its answers are not
//! applied (the head went). An
//! immediate response, or a failure without `failure_mode_allow`, ends the upstream
//! request and answers the client.

use envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Req;
use envoy_types::pb::envoy::service::ext_proc::v3::{CommonResponse, HttpBody};

use super::run::{state, Answer, Phase, State};
use super::{BodyMode, HeaderMode};
use crate::http::filter::headers::HeaderPlan;
use crate::http::filter::set_headers::SetHeaders;
use crate::http::filter::status::Status;

/// One piece of the response body (`end`: it ends the body; `head_out`: the response
/// head went out already). What goes to the client in its place is appended to `out`.
pub async fn on_response_piece(
    store: Option<&SetHeaders>,
    chunk: &[u8],
    end: bool,
    head_out: bool,
    out: &mut Vec<u8>,
) -> Status {
    let Some(s) = state(store).filter(|s| s.mode.get().response_body == BodyMode::Streamed) else {
        out.extend_from_slice(chunk);
        return Status::Continue;
    };
    // An answer's header mutations apply while the head is held (it came with the
    // body); they are dropped once it went out.
    let status = process_piece(s, chunk, end, !head_out, out).await;
    if end && status == Status::Continue {
        done(s);
    }
    status
}

/// Sends one piece of a `STREAMED` response body and appends what the processor made of
/// it to `out` (the piece as it came once the stream is over: closed by the processor,
/// failed open). `head_held`: the answer's header mutations apply to the head (with the
/// response headers sent to the processor; with them skipped Envoy holds no headers and
/// drops them). A local reply (an immediate response, a failure without
/// `failure_mode_allow`) ends the processing; it has headers of its own.
pub(super) async fn process_piece(
    s: &State,
    piece: &[u8],
    eos: bool,
    head_held: bool,
    out: &mut Vec<u8>,
) -> Status {
    if !s.live() {
        out.extend_from_slice(piece);
        return Status::Continue;
    }
    let msg = Req::ResponseBody(HttpBody {
        body: piece.to_vec(),
        end_of_stream: eos,
        ..Default::default()
    });
    let answer = s.exchange(msg, Phase::ResponseBody).await;
    let keep = head_held && s.mode.get().response_headers == HeaderMode::Send;
    let status = piece_answer(s, answer, piece, out, |r| {
        if keep {
            keep_ops(s, r);
        }
    });
    if let Status::Respond(_) = status {
        *s.response_ops.borrow_mut() = Default::default();
        done(s);
    }
    status
}

/// One piece of a `STREAMED` request body (`end`: it ends the body). What goes upstream
/// in its place is appended to `out`.
pub async fn on_request_piece(
    store: Option<&SetHeaders>,
    piece: &[u8],
    end: bool,
    out: &mut Vec<u8>,
) -> Status {
    let Some(s) = state(store).filter(|s| s.live()) else {
        out.extend_from_slice(piece);
        return Status::Continue;
    };
    let msg = Req::RequestBody(HttpBody {
        body: piece.to_vec(),
        end_of_stream: end,
        ..Default::default()
    });
    // (Header mutations in a request body's answer are not applied: the head went.)
    let answer = s.exchange(msg, Phase::RequestBody).await;
    let status = piece_answer(s, answer, piece, out, |_| {});
    if end {
        end_request(store);
    }
    status
}

/// The request body ended (with its last piece, or with trailers the processor is not
/// sent): the stream closes unless the response is still to be processed.
pub fn end_request(store: Option<&SetHeaders>) {
    if let Some(s) = state(store) {
        s.request_done();
        s.finish_if_done();
    }
}

/// What the processor's answer to a streamed piece makes of it, appended to `out`: its
/// body mutation (`common` sees the rest of the answer first), or the piece as it came
/// once the stream is over (closed by the processor, failed open). A local reply (an
/// immediate response, a failure without `failure_mode_allow`) ends the processing.
fn piece_answer(
    s: &State,
    answer: Answer,
    piece: &[u8],
    out: &mut Vec<u8>,
    common: impl FnOnce(&CommonResponse),
) -> Status {
    match answer {
        Answer::Common(r, _) => {
            common(&r);
            match r.body_mutation.and_then(|b| b.mutation) {
                Some(Mutation::Body(b)) => out.extend_from_slice(&b),
                Some(Mutation::ClearBody(true)) => {}
                _ => out.extend_from_slice(piece),
            }
            Status::Continue
        }
        Answer::Immediate(i) => s.immediate(i),
        Answer::Closed => {
            out.extend_from_slice(piece);
            Status::Continue
        }
        Answer::Failed(why) => {
            let st = s.fail(why);
            if st == Status::Continue {
                out.extend_from_slice(piece);
            }
            st
        }
    }
}

/// Adds an answer's header mutations (those the rules allow) to the held head's.
pub(super) fn keep_ops(s: &State, r: &CommonResponse) {
    let ops = s.ops(r);
    let mut all = s.response_ops.borrow_mut();
    all.add.extend(ops.add);
    all.remove.extend(ops.remove);
}

/// The response head is about to be encoded: the header mutations gathered for it (the
/// headers' answer, and the answer to a piece that came with the head) become its plan.
pub fn seal_head(store: Option<&SetHeaders>) {
    if let Some(s) = state(store).filter(|s| s.mode.get().response_body == BodyMode::Streamed) {
        seal(s);
    }
}

/// The head's gathered mutations become the response's plan.
pub(super) fn seal(s: &State) {
    let ops = std::mem::take(&mut *s.response_ops.borrow_mut());
    if !ops.is_empty() {
        let _ = s.response_plan.set(HeaderPlan::compile([&ops]));
    }
}

/// The body was processed: the stream ends, unless the trailers are still to be sent
/// (`trailers.rs` closes it then).
pub(super) fn done(s: &State) {
    if s.mode.get().response_trailers != HeaderMode::Send && !s.wants_body() {
        s.close();
    }
}
