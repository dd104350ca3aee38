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
/// `strip` removes chunked framing. `limit` refuses bodies larger than that. `clock`
/// bounds every read (`fill_from`).
/// Returns the number of bytes read from the source.
pub async fn forward<R: Io, W: AsyncWrite + Unpin>(
    src: &mut R,
    buf: &mut ReadBuf,
    dst: &mut W,
    kind: BodyKind,
    strip: bool,
    clock: Option<&Progress>,
    limit: Option<u64>,
) -> Result<u64, BodyError> {
    forward_with_trailers(src, buf, dst, kind, strip, clock, limit, None).await
}

/// Like `forward`; with `strip`, a chunked body's trailer section (the raw field lines
/// and the final empty line) is appended to `trailers` instead of being dropped.
#[allow(clippy::too_many_arguments)]
pub async fn forward_with_trailers<R: Io, W: AsyncWrite + Unpin>(
    src: &mut R,
    buf: &mut ReadBuf,
    dst: &mut W,
    kind: BodyKind,
    strip: bool,
    clock: Option<&Progress>,
    limit: Option<u64>,
    mut trailers: Option<&mut Vec<u8>>,
) -> Result<u64, BodyError> {
    let mut total: u64 = 0;
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
                while !rest.is_empty() && !dec.is_done() {
                    let in_trailers = dec.in_trailers();
                    let piece = dec.next(rest).map_err(|_| BodyError::Framing)?;
                    let (Piece::Framing(n) | Piece::Data(n)) = piece;
                    let (run, tail) = rest.split_at_checked(n).ok_or(BodyError::Framing)?;
                    match piece {
                        Piece::Framing(_) => {
                            if let (true, true, Some(t)) =
                                (strip, in_trailers, trailers.as_deref_mut())
                            {
                                t.extend_from_slice(run);
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
                    let (decoded, _) = data.split_at_checked(pos).ok_or(BodyError::Framing)?;
                    dst.write_all(decoded).await.map_err(|_| BodyError::Write)?;
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
