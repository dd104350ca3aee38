//! An HTTP/2 upstream's response to an HTTP/1 client held whole for the chain's
//! response-body hook (ext_proc's `BUFFERED` response body mode), the `h1_to_h2.rs`
//! counterpart of `conn/held_response.rs`: the head stays unsent while the DATA and
//! trailers are read (`held_body::read_h2`), the chain sees the body and may replace it
//! or answer instead, then head and body go out in one write. With the upstream's
//! Content-Length kept by the chain the body goes as it is; without one it goes
//! chunked, or until the close for an HTTP/1.0 client, as Envoy's HTTP/1 codec frames
//! a body without a length. The trailers end the body for the processor (its message
//! says `end_of_stream: false`) but are not sent on: Envoy's HTTP/1 codec drops
//! response trailers unless `enable_trailers`, as the streaming path does
//! (`h1_to_h2_body.rs`). The access log still sees them
//! (`%TRAILER(..)%`), as Envoy's does.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::io::Write as _;

use futures_lite::io::AsyncWriteExt;

use super::filter::ext_proc::response::TOO_LARGE;
use super::filter::headers::Edits;
use super::filter::{Chain, LocalReply, Status};
use super::flags::ResponseFlag;
use super::h1::encode::DownFraming;
use super::held_body::{self, ReadError};
use super::io::Io;
use crate::upstream::request::clock::Progress;

/// What the exchange knew when the response head came.
pub(super) struct Came {
    pub parts: http::response::Parts,
    pub body: h2::RecvStream,
    /// The response's flag when it goes out (a retriable one after the retries ran out).
    pub flag: ResponseFlag,
}

/// The HTTP/1 client's facts the response head needs.
pub(super) struct Client<'a> {
    pub minor: u8,
    pub keep_alive: bool,
    /// The response is the connection's last (asked when the head goes out).
    pub draining: &'a dyn Fn() -> bool,
    /// The request body was cut: the connection closes after the response.
    pub cut: bool,
}

/// How holding the response ended (`h1_to_h2.rs` makes its result of it).
pub(super) enum Held {
    /// The response went out (or the client went away while it did:
    /// `DownstreamConnectionTermination`).
    Sent {
        status: u16,
        flag: ResponseFlag,
        keep_alive: bool,
        bytes_sent: u64,
        /// The upstream's trailers (not sent on), for the access log's `%TRAILER%`.
        trailers: Option<http::HeaderMap>,
        /// The head got a `content-length: 0` of the proxy's own.
        added_length: bool,
    },
    /// Nothing went out: a filter (or the buffer limit) answers instead.
    Reply(LocalReply),
    /// The upstream failed while the body was read; nothing went out.
    Failed,
}

/// Holds the response, lets the chain see its body, and writes it to `down`.
pub(super) async fn respond<D: Io>(
    down: &mut D,
    out: &mut Vec<u8>,
    c: Came,
    client: Client<'_>,
    chain: &Chain<'_>,
    edits: Edits<'_>,
    progress: &Progress,
) -> Held {
    let Came {
        parts,
        mut body,
        flag,
    } = c;
    let status = parts.status.as_u16();
    let had_body = !body.is_end_stream();
    let (mut data, mut trailers) = if had_body {
        match held_body::read_h2(&mut body, chain).await {
            Ok(t) => t,
            Err(ReadError::TooLarge) => return Held::Reply(TOO_LARGE),
            Err(ReadError::Reply(r)) => return Held::Reply(r),
            Err(ReadError::Read) => return Held::Failed,
        }
    } else {
        (Vec::new(), None)
    };
    let length = held_body::content_length(&parts.headers);
    let has_trailers = trailers.is_some();
    let held = held_body::for_hook(&mut data, had_body, has_trailers);
    let o = chain.on_response_body(held, length, has_trailers).await;
    if let Status::Respond(rep) = o.status {
        return Held::Reply(rep);
    }
    // The chain sees the trailers after the body, though an HTTP/1 client does not
    // get them (Envoy's filters see them, its HTTP/1 codec drops them).
    if let (Some(t), true) = (trailers.as_mut(), chain.hooks().response_trailers) {
        if let Status::Respond(rep) = chain.on_response_trailers(t).await {
            return Held::Reply(rep);
        }
    }
    let framing = if (o.keep_length && length.is_some()) || !had_body {
        DownFraming::AsIs
    } else if client.minor >= 1 {
        DownFraming::Chunked
    } else {
        DownFraming::Close
    };
    let close =
        !client.keep_alive || (client.draining)() || framing == DownFraming::Close || client.cut;
    super::h1_to_h2_head::write_h1_head(
        out,
        &parts,
        (framing, close),
        client.minor,
        edits,
        progress,
    );
    let added_length = !had_body && length.is_none() && status != 204 && status != 304;
    if added_length {
        // An empty HTTP/2 body without a length: say so, or an HTTP/1 client waits.
        // The head ends in the blank line; put the header before it.
        out.truncate(out.len().saturating_sub(2));
        out.extend_from_slice(b"content-length: 0\r\n\r\n");
    }
    let head_len = out.len() as u64;
    match framing {
        DownFraming::Chunked => {
            if !data.is_empty() {
                let _ = write!(out, "{:x}\r\n", data.len());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
            }
            // The trailers are not encoded: Envoy's HTTP/1 codec drops response
            // trailers (no `enable_trailers`), and so does this hold.
            out.extend_from_slice(b"0\r\n\r\n");
        }
        DownFraming::AsIs | DownFraming::Close => out.extend_from_slice(&data),
        DownFraming::None => {}
    }
    let bytes_sent = head_len + data.len() as u64;
    progress.head_sent(status);
    progress.sent(bytes_sent);
    if down.write_all(out).await.is_err() {
        return Held::Sent {
            status,
            flag: ResponseFlag::DownstreamConnectionTermination,
            keep_alive: false,
            bytes_sent,
            trailers,
            added_length,
        };
    }
    Held::Sent {
        status,
        flag,
        keep_alive: !close,
        bytes_sent,
        trailers,
        added_length,
    }
}
