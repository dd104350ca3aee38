//! A response body rewritten piece by piece as it streams (the chain's `response_stream`
//! hook, `Chain::on_response_piece`: ext_proc's `STREAMED` response body mode), shared
//! by the four protocol paths.
//!
//! - [`first_h2_piece`]: an HTTP/2 upstream's DATA already at hand when the head is ready
//!   goes through the chain before the head goes out (`h2/to_h2.rs`, `h1_to_h2.rs`).
//! - [`stream`]: an HTTP/1 body (an upstream's, or a client's: `request_stream.rs`),
//!   decoded, one piece per read (a chunked body's decoded chunks of that read
//!   together, as Envoy's HTTP/1 codec hands over what one read decoded; the end alone
//!   after the last data, as its `onMessageComplete` does, except for the body at hand
//!   before anything was waited for, which Envoy's ext_proc queued during the headers'
//!   round trip and sends in one message with the end), to a
//!   [`Pieces`] sink that writes what the chain made of each (`conn/exchange.rs` to an
//!   HTTP/1 client, `h2/to_h1.rs` to an HTTP/2 one). While the head is held, what the
//!   upstream socket has at hand is read without waiting (body that came during the
//!   headers' round trip goes through the chain before the head, as in Envoy); the
//!   sink hears of each wait for the upstream first (`Pieces::idle`), so a head still
//!   held goes out before it.
//! - [`chunk`]: HTTP/1.1 chunk framing for a piece to an HTTP/1 client.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::Bytes;
use h2::RecvStream;

use super::body::{fill_from, BodyError};
use super::body_hooks::Stopped;
use super::buf::ReadBuf;
use super::filter::{Chain, LocalReply, Status};
use super::h1::chunked::{ChunkedDecoder, Piece};
use super::h1::head::BodyKind;
use super::io::Io;
use crate::upstream::request::clock::Progress;

/// Largest chunked trailer section accepted (as `body.rs`).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// An HTTP/2 upstream's body read for the rewrite, one DATA frame at a time, the end
/// of the stream counted with a frame when it is at hand already (an empty END_STREAM
/// frame right after it), as Envoy's codec hands the end over with the data before it.
#[derive(Default)]
pub(crate) struct H2Reader {
    next: Option<Result<Bytes, h2::Error>>,
}

impl H2Reader {
    /// A frame was read ahead and is still to be taken (the stream may have ended
    /// behind it).
    pub(crate) fn holds(&self) -> bool {
        self.next.is_some()
    }

    /// The next frame and whether the body ends with it (`None`: the DATA is over;
    /// trailers may follow). `wait: false`: only a frame that is at hand.
    pub(crate) async fn next(
        &mut self,
        body: &mut RecvStream,
        wait: bool,
    ) -> Option<(Result<Bytes, h2::Error>, bool)> {
        let cur = match self.next.take() {
            Some(c) => c,
            None if wait => body.data().await?,
            None => futures_lite::future::poll_once(body.data()).await??,
        };
        if cur.is_err() || body.is_end_stream() {
            let end = cur.is_ok() && body.is_end_stream();
            return Some((cur, end));
        }
        match futures_lite::future::poll_once(body.data()).await {
            Some(Some(Ok(n))) if n.is_empty() && body.is_end_stream() => Some((cur, true)),
            Some(Some(n)) => {
                self.next = Some(n);
                Some((cur, false))
            }
            _ => Some((cur, false)),
        }
    }
}

/// What the chain made of an HTTP/2 upstream's first piece, which came with the head.
#[derive(Default)]
pub(crate) struct First {
    pub out: Bytes,
    /// The piece ended the body.
    pub ended: bool,
    /// The rest of the body, to be read on from.
    pub reader: H2Reader,
}

/// The DATA already received when the response head is ready (none: the head goes
/// first), through the chain; its answer's header mutations apply to the head. A filter
/// that answers replaces the response. The caller seals the head's plan after this.
pub(crate) async fn first_h2_piece(
    body: &mut RecvStream,
    chain: &Chain<'_>,
) -> Result<First, LocalReply> {
    let mut first = First::default();
    if body.is_end_stream() {
        return Ok(first);
    }
    let (data, ended) = match first.reader.next(body, false).await {
        None => return Ok(first),
        Some((Ok(data), ended)) => (data, ended),
        Some((Err(e), _)) => {
            // Read on after the head, where it fails the stream.
            first.reader.next = Some(Err(e));
            return Ok(first);
        }
    };
    let _ = body.flow_control().release_capacity(data.len());
    let mut out = Vec::new();
    match chain.on_response_piece(&data, ended, false, &mut out).await {
        Status::Continue => {
            (first.out, first.ended) = (Bytes::from(out), ended);
            Ok(first)
        }
        Status::Respond(r) => Err(r),
    }
}

/// Where the pieces of a streamed HTTP/1 body go.
pub(crate) trait Pieces {
    /// The response head has not gone out yet.
    fn head_held(&self) -> bool;
    /// The upstream is about to be waited for (a held head goes out now).
    async fn idle(&mut self) -> Result<(), Stopped>;
    /// One piece of the body, as the upstream sent it (`end`: it ends the body).
    async fn piece(&mut self, data: &[u8], end: bool) -> Result<(), Stopped>;
}

/// Streams an HTTP/1 upstream's body of `kind` to `sink`, one piece per read (see the
/// module doc). `trailers`: where a chunked body's trailer section goes. Returns the
/// bytes read from the upstream.
pub(crate) async fn stream<P: Pieces, R: Io>(
    sink: &mut P,
    src: &mut R,
    buf: &mut ReadBuf,
    kind: BodyKind,
    clock: Option<&Progress>,
    mut trailers: Option<&mut Vec<u8>>,
) -> Result<u64, Stopped> {
    let mut total = 0u64;
    // No piece went yet, and nothing was waited for: what is at hand (read with the
    // head, or in the socket already) is what Envoy's ext_proc queued during the
    // headers' round trip and sends in one message, the end with it if it came.
    // Afterwards Envoy's HTTP/1 codec hands each read's data over, and the end alone
    // after it (`onMessageComplete`): `emit` splits it off.
    let at_hand = std::cell::Cell::new(true);
    let mut read = async |buf: &mut ReadBuf, sink: &mut P| -> Result<usize, Stopped> {
        if sink.head_held() || at_hand.get() {
            // Body that came during the headers' round trip is at hand in the socket:
            // it goes through the chain first (before a held head), as in Envoy.
            if let Some(n) = futures_lite::future::poll_once(fill_from(src, buf, clock)).await {
                return Ok(n?);
            }
        }
        at_hand.set(false);
        sink.idle().await?;
        Ok(fill_from(src, buf, clock).await?)
    };
    let emit = async |sink: &mut P, data: &[u8], end: bool| -> Result<(), Stopped> {
        let folded = at_hand.replace(false);
        if end && !data.is_empty() && !folded {
            sink.piece(data, false).await?;
            return sink.piece(&[], true).await;
        }
        sink.piece(data, end).await
    };
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(mut left) => {
            while left > 0 {
                if buf.is_empty() && read(buf, sink).await? == 0 {
                    return Err(BodyError::Eof.into());
                }
                let data = buf.data();
                let run = data
                    .get(..usize::try_from(left).unwrap_or(usize::MAX))
                    .unwrap_or(data);
                let take = run.len();
                emit(sink, run, take as u64 == left).await?;
                buf.consume(take);
                left -= take as u64;
                total += take as u64;
            }
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(MAX_TRAILER_BYTES);
            let mut piece = Vec::new();
            while !dec.is_done() {
                if buf.is_empty() && read(buf, sink).await? == 0 {
                    return Err(BodyError::Eof.into());
                }
                loop {
                    let data = buf.data();
                    if data.is_empty() || dec.is_done() {
                        break;
                    }
                    let in_trailers = dec.in_trailers();
                    let p = dec.next(data).map_err(|_| BodyError::Framing)?;
                    let (Piece::Framing(n) | Piece::Data(n)) = p;
                    let run = data.get(..n).ok_or(BodyError::Framing)?;
                    match p {
                        Piece::Data(_) => piece.extend_from_slice(run),
                        Piece::Framing(_) => {
                            if let (true, Some(t)) = (in_trailers, trailers.as_deref_mut()) {
                                t.extend_from_slice(run);
                            }
                        }
                    }
                    buf.consume(n);
                    total += n as u64;
                }
                // What this read decoded, and the end with it if it came.
                if !piece.is_empty() || dec.is_done() {
                    emit(sink, &piece, dec.is_done()).await?;
                    piece.clear();
                }
            }
        }
        BodyKind::UntilClose => loop {
            if buf.is_empty() && read(buf, sink).await? == 0 {
                emit(sink, &[], true).await?;
                break;
            }
            let data = buf.data();
            emit(sink, data, false).await?;
            let n = data.len();
            buf.consume(n);
            total += n as u64;
        },
    }
    Ok(total)
}

/// Appends `data` as one HTTP/1.1 chunk (nothing for an empty piece: an empty chunk
/// would end the body).
pub(crate) fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    use std::io::Write as _;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_framing() {
        let mut out = Vec::new();
        chunk(&mut out, b"");
        chunk(&mut out, &[b'a'; 26]);
        assert_eq!(out, [&b"1a\r\n"[..], &[b'a'; 26], b"\r\n"].concat());
    }
}
