//! Streams a message body from one side to the other without buffering it whole.
//!
//! Bytes are forwarded from the connection's read buffer as they arrive. Content-Length
//! bodies are passed through; chunked bodies are validated by the decoder and forwarded
//! verbatim (or with the framing stripped for an HTTP/1.0 client); close-delimited
//! bodies run to end of stream.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use futures_lite::io::{AsyncWrite, AsyncWriteExt};

use super::buf::ReadBuf;
use super::h1::chunked::{ChunkedDecoder, Piece};
use super::h1::head::BodyKind;
use super::io::{is_timeout, Io};
use crate::upstream::request::clock::Progress;

/// Largest chunked trailer section accepted.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Read-buffer size for a connection once it streams a large body: fewer, larger
/// reads and writes. Grown once per connection, kept for its life.
pub const LARGE_BODY_BUF: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The source closed before the body ended.
    Eof,
    /// Reading the source failed.
    Read,
    /// Reading the source ran past the deadline or idle timeout.
    Timeout,
    /// Writing the destination failed.
    Write,
    /// The chunked framing was invalid.
    Framing,
    /// The body is larger than the caller's limit.
    TooLarge,
}

/// Bodies up to this size go out in the same write as their head, copied behind it in
/// the connection's out buffer: one send per message instead of two. Larger ones are
/// streamed from the read buffer (a copy would cost more than the send it saves, and
/// would grow the out buffer of every connection that carried one).
pub const INLINE_BODY_BYTES: usize = 4 * 1024;

/// How a chunked body's framing goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunks {
    /// As it came, its trailer section included.
    Verbatim,
    /// As it came, but without its trailer fields: the last chunk and the final empty
    /// line only (Envoy's HTTP/1 codec, which ignores trailers unless both sides'
    /// `http_protocol_options.enable_trailers`).
    NoTrailers,
    /// Stripped: the payload alone (an HTTP/1.0 client, an HTTP/2 peer, a sink).
    Strip,
}

impl Chunks {
    /// `strip`: the framing goes; else `trailers` says whether the trailer fields stay.
    pub fn new(strip: bool, trailers: bool) -> Chunks {
        match (strip, trailers) {
            (true, _) => Chunks::Strip,
            (false, true) => Chunks::Verbatim,
            (false, false) => Chunks::NoTrailers,
        }
    }

    pub fn strip(self) -> bool {
        self == Chunks::Strip
    }
}

/// The length of the whole body of `kind` at the front of `data`, when all of it is
/// there, it is at most `max` bytes, and it is forwarded as it came (nothing to strip,
/// and no trailer field to drop); `None` otherwise, and the caller streams it with
/// `forward` (which also reports a chunked framing error: none is decided here).
pub fn whole_body(kind: BodyKind, chunks: Chunks, data: &[u8], max: usize) -> Option<usize> {
    match kind {
        BodyKind::Empty => Some(0),
        BodyKind::Length(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= max && n <= data.len()),
        BodyKind::Chunked if !chunks.strip() => {
            let mut dec = ChunkedDecoder::new(MAX_TRAILER_BYTES);
            let window = data.get(..max.min(data.len())).unwrap_or_default();
            let mut rest = window;
            while !dec.is_done() {
                let (Piece::Framing(n) | Piece::Data(n)) = dec.next(rest).ok()?;
                if n == 0 {
                    // Out of input before the last chunk: not all of it is here.
                    return None;
                }
                rest = rest.get(n..)?;
            }
            if chunks == Chunks::NoTrailers && dec.has_fields() {
                // Trailer fields to drop: `forward` writes the body without them.
                return None;
            }
            Some(window.len() - rest.len())
        }
        BodyKind::Chunked | BodyKind::UntilClose => None,
    }
}

/// Writes one chunk of a chunked body to `dst` (never an empty one: that is the last
/// chunk): its size line, its data and the CRLF after it, in one write when the data is
/// at most `INLINE_BODY_BYTES` (assembled in `scratch`), else in three. `last`: the body
/// ends with this chunk and has no trailers, so the last chunk (`0`) and the final CRLF
/// go in the same write.
pub async fn write_chunk<W: AsyncWrite + Unpin>(
    dst: &mut W,
    scratch: &mut Vec<u8>,
    data: &[u8],
    last: bool,
) -> std::io::Result<()> {
    use std::io::Write as _;
    scratch.clear();
    if !data.is_empty() {
        let _ = write!(scratch, "{:x}\r\n", data.len());
        if data.len() <= INLINE_BODY_BYTES {
            scratch.extend_from_slice(data);
        } else {
            dst.write_all(scratch).await?;
            dst.write_all(data).await?;
            scratch.clear();
        }
        scratch.extend_from_slice(b"\r\n");
    }
    if last {
        scratch.extend_from_slice(b"0\r\n\r\n");
    }
    dst.write_all(scratch).await
}

/// Appends the last chunk of a chunked body with `trailers` as its trailer section,
/// and the final empty line.
pub fn last_chunk_with(out: &mut Vec<u8>, trailers: &http::HeaderMap) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Reads once into `buf`. With a `clock` (the request's route and stream idle clocks),
/// the read is bounded by the time left on it, and bytes read push the idle clock back.
pub async fn fill_from<R: Io>(
    src: &mut R,
    buf: &mut ReadBuf,
    clock: Option<&Progress>,
) -> Result<usize, BodyError> {
    if let Some(left) = clock.and_then(Progress::time_left) {
        if left.is_zero() {
            return Err(BodyError::Timeout);
        }
        src.set_read_timeout(Some(left));
    }
    match buf.fill(src).await {
        Ok(n) => {
            if let Some(c) = clock {
                c.touch();
            }
            Ok(n)
        }
        Err(e) if is_timeout(&e) => Err(BodyError::Timeout),
        Err(_) => Err(BodyError::Read),
    }
}

/// Copies a body of `kind` from `src` (starting with what is already in `buf`) to `dst`.
/// `chunks` says what becomes of chunked framing. `limit` refuses bodies larger than
/// that. `clock` bounds every read (`fill_from`).
/// Returns the number of bytes read from the source.
pub async fn forward<R: Io, W: AsyncWrite + Unpin>(
    src: &mut R,
    buf: &mut ReadBuf,
    dst: &mut W,
    kind: BodyKind,
    chunks: Chunks,
    clock: Option<&Progress>,
    limit: Option<u64>,
) -> Result<u64, BodyError> {
    forward_with_trailers(src, buf, dst, kind, chunks, clock, limit, None).await
}

/// Like `forward`; with `Chunks::Strip`, a chunked body's trailer section (the raw field
/// lines and the final empty line) is appended to `trailers` instead of being dropped.
#[allow(clippy::too_many_arguments)]
pub async fn forward_with_trailers<R: Io, W: AsyncWrite + Unpin>(
    src: &mut R,
    buf: &mut ReadBuf,
    dst: &mut W,
    kind: BodyKind,
    chunks: Chunks,
    clock: Option<&Progress>,
    limit: Option<u64>,
    mut trailers: Option<&mut Vec<u8>>,
) -> Result<u64, BodyError> {
    let mut total: u64 = 0;
    let strip = chunks.strip();
    let large = match kind {
        BodyKind::Length(n) => n > buf.capacity() as u64,
        BodyKind::Chunked | BodyKind::UntilClose => true,
        BodyKind::Empty => false,
    };
    if large && buf.capacity() < LARGE_BODY_BUF && limit.is_none() {
        buf.grow_to(LARGE_BODY_BUF);
    }
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(mut left) => {
            if limit.is_some_and(|m| left > m) {
                return Err(BodyError::TooLarge);
            }
            while left > 0 {
                if buf.is_empty() && fill_from(src, buf, clock).await? == 0 {
                    return Err(BodyError::Eof);
                }
                let data = buf.data();
                let run = data
                    .get(..usize::try_from(left).unwrap_or(usize::MAX))
                    .unwrap_or(data);
                dst.write_all(run).await.map_err(|_| BodyError::Write)?;
                let take = run.len();
                buf.consume(take);
                left -= take as u64;
                total += take as u64;
            }
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(MAX_TRAILER_BYTES);
            while !dec.is_done() {
                if buf.is_empty() && fill_from(src, buf, clock).await? == 0 {
                    return Err(BodyError::Eof);
                }
                let data = buf.data();
                // `rest` is the undecoded tail of `data`; each piece is split off its front.
                let mut rest = data;
                // Framing kept: the decoded bytes go in one write, up to where trailer
                // fields to drop begin (then only what `without_fields` keeps of them).
                let mut kept_end = None;
                let mut kept_tail: &[u8] = b"";
                while !rest.is_empty() && !dec.is_done() {
                    let in_trailers = dec.in_trailers();
                    let piece = dec.next(rest).map_err(|_| BodyError::Framing)?;
                    let (Piece::Framing(n) | Piece::Data(n)) = piece;
                    let (run, tail) = rest.split_at_checked(n).ok_or(BodyError::Framing)?;
                    match piece {
                        Piece::Framing(_) if !in_trailers => {}
                        Piece::Framing(_) if strip => {
                            if let Some(t) = trailers.as_deref_mut() {
                                t.extend_from_slice(run);
                            }
                        }
                        Piece::Framing(_) => {
                            if chunks == Chunks::NoTrailers && dec.has_fields() {
                                // The trailer section is the last piece of this read.
                                kept_end = Some(data.len() - rest.len());
                                kept_tail = dec.without_fields(run);
                            }
                        }
                        Piece::Data(_) => {
                            if strip {
                                dst.write_all(run).await.map_err(|_| BodyError::Write)?;
                            }
                        }
                    }
                    rest = tail;
                }
                let pos = data.len() - rest.len();
                if !strip {
                    let end = kept_end.unwrap_or(pos);
                    let (decoded, _) = data.split_at_checked(end).ok_or(BodyError::Framing)?;
                    if !decoded.is_empty() {
                        dst.write_all(decoded).await.map_err(|_| BodyError::Write)?;
                    }
                    if !kept_tail.is_empty() {
                        dst.write_all(kept_tail)
                            .await
                            .map_err(|_| BodyError::Write)?;
                    }
                }
                buf.consume(pos);
                total += pos as u64;
                if limit.is_some_and(|m| total > m) {
                    return Err(BodyError::TooLarge);
                }
            }
        }
        BodyKind::UntilClose => loop {
            if buf.is_empty() && fill_from(src, buf, clock).await? == 0 {
                break;
            }
            dst.write_all(buf.data())
                .await
                .map_err(|_| BodyError::Write)?;
            total += buf.len() as u64;
            let n = buf.len();
            buf.consume(n);
        },
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_body_is_found_only_when_all_of_it_is_there() {
        let max = INLINE_BODY_BYTES;
        assert_eq!(
            whole_body(BodyKind::Empty, Chunks::Verbatim, b"next", max),
            Some(0)
        );
        assert_eq!(
            whole_body(BodyKind::Length(3), Chunks::Verbatim, b"abcGET", max),
            Some(3)
        );
        assert_eq!(
            whole_body(BodyKind::Length(7), Chunks::Verbatim, b"abc", max),
            None
        );
        assert_eq!(
            whole_body(BodyKind::Length(3), Chunks::Verbatim, b"abc", 2),
            None
        );
        assert_eq!(
            whole_body(BodyKind::Length(u64::MAX), Chunks::Verbatim, b"abc", max),
            None
        );
        let body: &[u8] = b"3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
        let chunked = [body, b"GET / HTTP/1.1\r\n"].concat();
        let len = body.len();
        assert_eq!(
            whole_body(BodyKind::Chunked, Chunks::Verbatim, &chunked, max),
            Some(len)
        );
        assert_eq!(
            whole_body(BodyKind::Chunked, Chunks::Strip, &chunked, max),
            None,
            "stripped"
        );
        assert_eq!(
            whole_body(BodyKind::Chunked, Chunks::Verbatim, &chunked, len - 1),
            None
        );
        for cut in 0..len {
            let part = body.get(..cut).unwrap();
            assert_eq!(
                whole_body(BodyKind::Chunked, Chunks::Verbatim, part, max),
                None,
                "{cut}"
            );
        }
        assert_eq!(
            whole_body(BodyKind::Chunked, Chunks::Verbatim, b"zz\r\n", max),
            None
        );
        // Without trailer fields to drop, a body goes as it came in either mode.
        assert_eq!(
            whole_body(BodyKind::Chunked, Chunks::NoTrailers, &chunked, max),
            None,
            "trailer fields to drop"
        );
        let bare: &[u8] = b"3\r\nabc\r\n0\r\n\r\nGET";
        assert_eq!(
            whole_body(BodyKind::Chunked, Chunks::NoTrailers, bare, max),
            Some(bare.len() - 3)
        );
        assert_eq!(
            whole_body(BodyKind::UntilClose, Chunks::Verbatim, b"abc", max),
            None
        );
    }

    /// What `forward` writes of `input` (a chunked body and the next request), read in
    /// reads of at most `step` bytes.
    fn forwarded(input: &[u8], step: usize, chunks: Chunks) -> Vec<u8> {
        struct Reads<'a>(&'a [u8], usize);
        impl futures_lite::io::AsyncRead for Reads<'_> {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                out: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let n = self.1.min(out.len()).min(self.0.len());
                let (now, rest) = self.0.split_at(n);
                for (o, b) in out.iter_mut().zip(now) {
                    *o = *b;
                }
                self.0 = rest;
                std::task::Poll::Ready(Ok(n))
            }
        }
        impl AsyncWrite for Reads<'_> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                b: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::task::Poll::Ready(Ok(b.len()))
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
        }
        impl Io for Reads<'_> {
            fn set_read_timeout(&self, _: Option<std::time::Duration>) {}
            fn set_write_timeout(&self, _: Option<std::time::Duration>) {}
        }
        let mut src = Reads(input, step);
        let mut buf = ReadBuf::new(64);
        let mut out = Vec::new();
        let fwd = forward(
            &mut src,
            &mut buf,
            &mut out,
            BodyKind::Chunked,
            chunks,
            None,
            None,
        );
        futures_lite::future::block_on(fwd).unwrap();
        out
    }

    #[test]
    fn trailer_fields_go_or_stay_as_chunks_says() {
        let body: &[u8] = b"3\r\nabc\r\n0\r\nx-t: 1\r\nx-u: 2\r\n\r\n";
        for step in 1..body.len() + 1 {
            assert_eq!(forwarded(body, step, Chunks::Verbatim), body, "{step}");
            assert_eq!(
                forwarded(body, step, Chunks::NoTrailers),
                b"3\r\nabc\r\n0\r\n\r\n",
                "{step}"
            );
            assert_eq!(forwarded(body, step, Chunks::Strip), b"abc", "{step}");
        }
    }

    #[test]
    fn chunks_are_framed_in_one_write_when_small() {
        let write = |data: &[u8], last: bool| {
            let mut out = Vec::new();
            let mut scratch = Vec::new();
            futures_lite::future::block_on(write_chunk(&mut out, &mut scratch, data, last))
                .unwrap();
            out
        };
        assert_eq!(write(b"hello", false), b"5\r\nhello\r\n");
        assert_eq!(write(b"hello", true), b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(write(b"", true), b"0\r\n\r\n");
        assert_eq!(write(b"", false), b"");
        let big = vec![b'x'; INLINE_BODY_BYTES + 1];
        let framed = write(&big, true);
        assert!(framed.starts_with(b"1001\r\nxx"));
        assert!(framed.ends_with(b"xx\r\n0\r\n\r\n"));
        assert_eq!(framed.len(), 6 + big.len() + 2 + 5);
    }
}
