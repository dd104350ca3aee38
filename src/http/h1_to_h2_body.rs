//! An HTTP/2 upstream's response body to an HTTP/1 client, after its head went out
//! (`h1_to_h2.rs`): each DATA frame as a chunk (or as it is, for a body with a length
//! or until the close), the stream's end as the last chunk, with the trailers only
//! when the listener's `enable_trailers` is on (Envoy's HTTP/1 codec drops them
//! otherwise; the log and the chain see them either way). The
//! chain's response-body hook sees each frame first; on a `response_stream` stream
//! (ext_proc's `STREAMED` response body mode, `body_stream.rs`) each frame goes through
//! the chain and what it made of it goes out in its place, the end coming alone in a
//! message of its own.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::Bytes;
use futures_lite::io::AsyncWriteExt;
use h2::RecvStream;

use super::body;
use super::body_stream::H2Reader;
use super::failure::Failure;
use super::filter::{Chain, Status};
use super::flags::ResponseFlag;
use super::io::Io;
use crate::observe::stats::ClusterStats;
use crate::upstream::request;
use crate::upstream::request::clock::Progress;

/// How the response went, as far as the body's sending tells.
pub(super) struct Tail {
    pub flag: ResponseFlag,
    pub keep_alive: bool,
    pub bytes_sent: u64,
    /// The upstream's trailers, when the log prints them.
    pub trailers: Option<http::HeaderMap>,
}

/// What the body's sending starts from.
pub(super) struct Body<'a, 'c> {
    pub chain: &'a Chain<'c>,
    pub chunked: bool,
    /// The last chunk went out with the head already.
    pub ended: bool,
    /// The log prints the trailers.
    pub keep_trailers: bool,
    /// The trailers follow a chunked body to the client (`enable_trailers`).
    pub send_trailers: bool,
    /// A first DATA frame read already and not written yet (on a `response_stream`
    /// stream, what the chain made of it: `body_stream::first_h2_piece`).
    pub first: Option<std::result::Result<Bytes, h2::Error>>,
    /// On a `response_stream` stream: the rest of the body's reader...
    pub reader: Option<H2Reader>,
    /// ... and whether the first piece ended the body.
    pub piece_end: bool,
}

/// Sends the rest of the body and its end (the trailers are read for the log and the
/// chain, and sent with `send_trailers`); `res` hears how it ended.
pub(super) async fn send<D: Io>(
    down: &mut D,
    up_body: &mut RecvStream,
    b: Body<'_, '_>,
    res: &mut Tail,
    stats: &ClusterStats,
    progress: &Progress,
) {
    let Body {
        chain,
        chunked,
        mut ended,
        keep_trailers,
        send_trailers,
        mut first,
        mut reader,
        mut piece_end,
    } = b;
    let mut line = Vec::with_capacity(64);
    // The response-body hook saw the end of the stream.
    let mut seen_end = false;
    let rewrite = reader.is_some();
    while !ended {
        let next = match (first.take(), reader.as_mut()) {
            (Some(chunk), _) => Some((chunk, !rewrite, piece_end)),
            (None, Some(r)) => r.next(up_body, true).await.map(|(c, e)| (c, true, e)),
            (None, None) => up_body.data().await.map(|c| (c, true, false)),
        };
        let Some((chunk, fresh, end)) = next else {
            break;
        };
        let Ok(mut chunk) = chunk else {
            request::count_late(stats, Failure::ConnectionTermination);
            res.flag = ResponseFlag::UpstreamConnectionTermination;
            res.keep_alive = false;
            return;
        };
        let n = if fresh { chunk.len() } else { 0 };
        if rewrite && fresh {
            piece_end = end;
            let mut out = Vec::new();
            if chain.on_response_piece(&chunk, end, true, &mut out).await != Status::Continue {
                // A filter answered after the head went out: close the connection.
                res.keep_alive = false;
                return;
            }
            chunk = Bytes::from(out);
        }
        if chain.hooks().response_data {
            seen_end = up_body.is_end_stream();
            if chain.on_response_data(&chunk, seen_end).await != Status::Continue {
                // A filter answered after the head went out: close the connection
                // (Envoy); dropping `up_body` resets the upstream stream.
                res.keep_alive = false;
                return;
            }
        }
        let ok = if chunked {
            // A stream that ended with this DATA frame has no trailers to wait for: the
            // last chunk goes in the same write (not while a frame read ahead waits).
            ended = up_body.is_end_stream() && !reader.as_ref().is_some_and(|r| r.holds());
            body::write_chunk(down, &mut line, &chunk, ended)
                .await
                .is_ok()
        } else {
            down.write_all(&chunk).await.is_ok()
        };
        if !ok {
            res.flag = ResponseFlag::DownstreamConnectionTermination;
            res.keep_alive = false;
            return;
        }
        let _ = up_body.flow_control().release_capacity(n);
        res.bytes_sent += chunk.len() as u64;
        progress.sent(chunk.len() as u64);
    }
    if chain.hooks().response_data
        && !seen_end
        && chain.on_response_data(&[], true).await != Status::Continue
    {
        res.keep_alive = false;
        return;
    }
    // The DATA frames are all read, so trailers, if any, are already here. They go to
    // the HTTP/1 client after a chunked body with `enable_trailers` only (Envoy's
    // HTTP/1 codec drops them otherwise, and after a body with a length always), but
    // the log prints them and the chain sees them.
    let hooked = chain.hooks().response_trailers;
    let send_trailers = send_trailers && chunked;
    let mut trailers = None;
    if !ended && (keep_trailers || hooked || rewrite || send_trailers) {
        trailers = up_body.trailers().await.ok().flatten();
    }
    if rewrite && !piece_end && trailers.is_none() {
        // The end came alone: its own message, and what it gives before the end.
        let mut out = Vec::new();
        if chain.on_response_piece(&[], true, true, &mut out).await != Status::Continue {
            res.keep_alive = false;
            return;
        }
        if !out.is_empty() {
            let w = match chunked {
                true => body::write_chunk(down, &mut line, &out, false).await,
                false => down.write_all(&out).await,
            };
            if w.is_err() {
                res.flag = ResponseFlag::DownstreamConnectionTermination;
                res.keep_alive = false;
                return;
            }
            res.bytes_sent += out.len() as u64;
        }
    }
    if let (Some(t), true) = (trailers.as_mut(), hooked) {
        if chain.on_response_trailers(t).await != Status::Continue {
            // A filter answered after the head went out: close the connection.
            res.keep_alive = false;
            return;
        }
    }
    if chunked && !ended {
        line.clear();
        match trailers.as_ref().filter(|_| send_trailers) {
            Some(t) => body::last_chunk_with(&mut line, t),
            None => line.extend_from_slice(b"0\r\n\r\n"),
        }
        if down.write_all(&line).await.is_err() {
            res.flag = ResponseFlag::DownstreamConnectionTermination;
            res.keep_alive = false;
        }
    }
    res.trailers = trailers.filter(|_| keep_trailers);
}
