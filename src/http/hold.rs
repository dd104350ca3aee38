//! The request body read through the filter chain's body hook before the upstream
//! request starts (`filter::Chain::on_request_data`), for a stream whose chain has that
//! hook (the buffer filter, ext_proc's `BUFFERED` body mode, and its `STREAMED` one when
//! the trailers are sent too or another filter holds the body (else that body streams:
//! `request_stream.rs`), ext_authz's `with_request_body`). Both connection managers call it after the request-head
//! hooks and before the router's upstream request: HTTP/1 (`conn/held.rs`) with the
//! connection's read buffer, HTTP/2 (`h2/stream.rs`) with the stream's DATA frames.
//!
//! Filters see the body as it arrived, without framing: on HTTP/1 each chunk is a slice
//! of the connection's read buffer (a chunked body's decoded payload, cut where the
//! decoder found the chunk boundaries), on HTTP/2 each DATA frame's bytes; then one
//! end-of-stream call (with an empty chunk on HTTP/1, as Envoy's HTTP/1 codec delivers
//! it; with the last frame on HTTP/2). The body is held whole and then goes upstream
//! with a Content-Length. Chains without the hook never come here: their bodies stream
//! from the read buffer as before, without a copy.
//!
//! Trailers. An HTTP/2 request's trailers (trailing HEADERS) end its body: the chain
//! sees them (`Chain::on_request_trailers`, Envoy's `decodeTrailers`) instead of an
//! end-of-stream data call, and they are held with the body and go upstream after it:
//! to an HTTP/2 upstream as trailing HEADERS; to an HTTP/1 upstream not at all, since
//! the held body goes with a Content-Length, and HTTP/1 carries trailers only after a
//! chunked body (as Envoy's HTTP/1 encoder, which drops trailers on a Content-Length
//! body). HTTP/1 chunked trailers of a held body are dropped, as Envoy's HTTP/1 codec
//! ignores request trailers by default (`enable_trailers` off): the chain never sees them.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::{Bytes, BytesMut};
use h2::RecvStream;

use super::body::{fill_from, BodyError};
use super::buf::ReadBuf;
use super::filter::{Chain, DataStatus, LocalReply, Status};
use super::h1::chunked::{ChunkedDecoder, Piece};
use super::h1::head::BodyKind;
use super::io::Io;
use crate::upstream::request::clock::Progress;

/// Largest chunked trailer section accepted (as `body.rs`).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// How reading a request body through the chain ended.
pub(crate) enum Held<B> {
    /// The whole body, held.
    Body(B),
    /// A filter answered.
    Reply(LocalReply),
    /// The client failed, closed, timed out or sent malformed chunked framing.
    Failed(BodyError),
}

/// Feeds one chunk to the chain and holds it. `None`: go on.
async fn feed(chain: &Chain<'_>, chunk: &[u8], out: &mut Vec<u8>) -> Option<LocalReply> {
    match chain.on_request_data(chunk, false, out.len() as u64).await {
        DataStatus::Respond(r) => Some(r),
        DataStatus::Continue | DataStatus::StopAndBuffer => {
            out.extend_from_slice(chunk);
            None
        }
    }
}

/// Reads an HTTP/1 request body of `kind` from `src` (starting with what is in `buf`)
/// through the chain. Reads are bounded by `src`'s read timeout (the listener's idle
/// timeout). `read` counts the bytes taken from `buf`, framing included.
pub(crate) async fn h1<R: Io>(
    chain: &Chain<'_>,
    src: &mut R,
    buf: &mut ReadBuf,
    kind: BodyKind,
    read: &mut u64,
    ended: &mut bool,
) -> Held<Vec<u8>> {
    let mut out = Vec::new();
    match kind {
        BodyKind::Empty | BodyKind::UntilClose => {}
        BodyKind::Length(mut left) => {
            while left > 0 {
                if buf.is_empty() {
                    match fill_from(src, buf, None).await {
                        Ok(0) => return Held::Failed(BodyError::Eof),
                        Ok(_) => {}
                        Err(e) => return Held::Failed(e),
                    }
                }
                let data = buf.data();
                let run = data
                    .get(..usize::try_from(left).unwrap_or(usize::MAX))
                    .unwrap_or(data);
                if let Some(r) = feed(chain, run, &mut out).await {
                    return Held::Reply(r);
                }
                let n = run.len();
                buf.consume(n);
                *read += n as u64;
                left -= n as u64;
            }
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(MAX_TRAILER_BYTES);
            while !dec.is_done() {
                if buf.is_empty() {
                    match fill_from(src, buf, None).await {
                        Ok(0) => return Held::Failed(BodyError::Eof),
                        Ok(_) => {}
                        Err(e) => return Held::Failed(e),
                    }
                }
                // Pieces are cut off the front of the buffer one at a time: a data
                // piece is handed to the chain as a slice of the read buffer.
                loop {
                    let data = buf.data();
                    if data.is_empty() || dec.is_done() {
                        break;
                    }
                    let piece = match dec.next(data) {
                        Ok(p) => p,
                        Err(_) => return Held::Failed(BodyError::Framing),
                    };
                    let (Piece::Framing(n) | Piece::Data(n)) = piece;
                    let Some(run) = data.get(..n) else {
                        return Held::Failed(BodyError::Framing);
                    };
                    if let Piece::Data(_) = piece {
                        if let Some(r) = feed(chain, run, &mut out).await {
                            return Held::Reply(r);
                        }
                    }
                    buf.consume(n);
                    *read += n as u64;
                }
            }
        }
    }
    // The body is read whole: an answer now leaves the connection in step.
    *ended = true;
    match chain.on_request_data(&[], true, out.len() as u64).await {
        DataStatus::Respond(r) => Held::Reply(r),
        // A filter that rewrote the body (ext_proc) has the one to send.
        DataStatus::Continue | DataStatus::StopAndBuffer => {
            Held::Body(chain.request_body_override().unwrap_or(out))
        }
    }
}

/// A held HTTP/2 request body and its trailers, if it had any.
pub(crate) type HeldH2 = (Bytes, Option<http::HeaderMap>);

/// Reads an HTTP/2 request body (its DATA frames, releasing flow-control capacity as
/// each is held, so the client keeps sending) and its trailers through the chain.
pub(crate) async fn h2(
    chain: &Chain<'_>,
    body: &mut RecvStream,
    progress: &Progress,
) -> Held<HeldH2> {
    let mut out = BytesMut::new();
    let mut ended = false;
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            return Held::Failed(BodyError::Read);
        };
        progress.received(chunk.len() as u64);
        // END_STREAM on this frame (and no trailers to come).
        ended = body.is_end_stream();
        match chain.on_request_data(&chunk, ended, out.len() as u64).await {
            DataStatus::Respond(r) => return Held::Reply(r),
            DataStatus::Continue | DataStatus::StopAndBuffer => out.extend_from_slice(&chunk),
        }
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let mut trailers = None;
    if !ended {
        // Trailers or an empty END_STREAM frame ended the body.
        trailers = match body.trailers().await {
            Ok(t) => t,
            Err(_) => return Held::Failed(BodyError::Read),
        };
        match &mut trailers {
            // The trailers end the stream: the chain sees them, not an end-of-stream
            // data call (Envoy's filter manager calls `decodeTrailers` alone).
            Some(t) => {
                // A filter may change them (ext_proc's `request_trailer_mode: SEND`).
                if chain.hooks().request_trailers {
                    if let Status::Respond(r) = chain.on_request_trailers(t).await {
                        return Held::Reply(r);
                    }
                }
            }
            None => {
                let held = out.len() as u64;
                if let DataStatus::Respond(r) = chain.on_request_data(&[], true, held).await {
                    return Held::Reply(r);
                }
            }
        }
    }
    let body = match chain.request_body_override() {
        Some(b) => Bytes::from(b),
        None => out.freeze(),
    };
    Held::Body((body, trailers))
}
