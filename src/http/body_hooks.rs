//! An HTTP/1 upstream's response body through the filter chain's response-body hook
//! (`filter::Chain::on_response_data`), for chains that have it. Chains without it never
//! come here: `body::forward` moves their bytes with no per-chunk call.
//!
//! Used by the two paths whose upstream speaks HTTP/1 (`conn/exchange.rs` to an HTTP/1
//! client, `h2/to_h1.rs` to an HTTP/2 client); the HTTP/2-upstream paths call the hook
//! on each DATA frame in their own loops (`h1_to_h2.rs`, `h2/to_h2.rs`). Filters see the
//! payload, never the framing: each chunk is a slice of the upstream read buffer (a
//! chunked body's decoded data), then an end-of-stream call (with the last run of a
//! Content-Length body, else with an empty chunk). The bytes themselves go on as
//! `body::forward` sends them (chunk framing verbatim, or stripped), each after the
//! chain let its chunk through.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use futures_lite::io::{AsyncWrite, AsyncWriteExt};

use super::body::{fill_from, BodyError, Chunks};
use super::buf::ReadBuf;
use super::filter::{Chain, LocalReply, Status};
use super::h1::chunked::{ChunkedDecoder, Piece};
use super::h1::head::BodyKind;
use super::io::Io;
use crate::upstream::request::clock::Progress;

/// Largest chunked trailer section accepted (as `body.rs`).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Whatever sees the body chunk by chunk: the filter chain, or a test's recorder.
pub(crate) trait Observer {
    async fn data(&mut self, chunk: &[u8], end_stream: bool) -> Status;
}

impl Observer for Chain<'_> {
    async fn data(&mut self, chunk: &[u8], end_stream: bool) -> Status {
        self.on_response_data(chunk, end_stream).await
    }
}

/// Why a hooked body did not go through whole.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stopped {
    Body(BodyError),
    /// A filter answered after the head went out: the caller resets or closes.
    Reply(LocalReply),
}

impl From<BodyError> for Stopped {
    fn from(e: BodyError) -> Self {
        Stopped::Body(e)
    }
}

async fn see<O: Observer>(obs: &mut O, chunk: &[u8], end: bool) -> Result<(), Stopped> {
    match obs.data(chunk, end).await {
        Status::Continue => Ok(()),
        Status::Respond(r) => Err(Stopped::Reply(r)),
    }
}

async fn read_more<R: Io>(
    src: &mut R,
    buf: &mut ReadBuf,
    clock: Option<&Progress>,
) -> Result<usize, BodyError> {
    fill_from(src, buf, clock).await
}

/// `body::forward_with_trailers` with each chunk shown to `obs` before it goes on.
/// Returns the number of bytes read from the source.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward<O: Observer, R: Io, W: AsyncWrite + Unpin>(
    obs: &mut O,
    src: &mut R,
    buf: &mut ReadBuf,
    dst: &mut W,
    kind: BodyKind,
    chunks: Chunks,
    clock: Option<&Progress>,
    mut trailers: Option<&mut Vec<u8>>,
) -> Result<u64, Stopped> {
    let strip = chunks.strip();
    let write = |e: std::io::Error| {
        let _ = e;
        Stopped::Body(BodyError::Write)
    };
    let mut total = 0u64;
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(mut left) => {
            while left > 0 {
                if buf.is_empty() && read_more(src, buf, clock).await? == 0 {
                    return Err(BodyError::Eof.into());
                }
                let data = buf.data();
                let run = data
                    .get(..usize::try_from(left).unwrap_or(usize::MAX))
                    .unwrap_or(data);
                let take = run.len();
                see(obs, run, take as u64 == left).await?;
                dst.write_all(run).await.map_err(write)?;
                buf.consume(take);
                left -= take as u64;
                total += take as u64;
            }
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(MAX_TRAILER_BYTES);
            while !dec.is_done() {
                if buf.is_empty() && read_more(src, buf, clock).await? == 0 {
                    return Err(BodyError::Eof.into());
                }
                // One piece at a time off the front of the buffer, each written (or
                // dropped, for stripped framing) after the chain saw its data.
                loop {
                    let data = buf.data();
                    if data.is_empty() || dec.is_done() {
                        break;
                    }
                    let in_trailers = dec.in_trailers();
                    let piece = dec.next(data).map_err(|_| BodyError::Framing)?;
                    let (Piece::Framing(n) | Piece::Data(n)) = piece;
                    let run = data.get(..n).ok_or(BodyError::Framing)?;
                    match piece {
                        Piece::Data(_) => {
                            see(obs, run, false).await?;
                            dst.write_all(run).await.map_err(write)?;
                        }
                        Piece::Framing(_) if strip => {
                            if let (true, Some(t)) = (in_trailers, trailers.as_deref_mut()) {
                                t.extend_from_slice(run);
                            }
                        }
                        Piece::Framing(_) if in_trailers && chunks == Chunks::NoTrailers => {
                            let kept = dec.without_fields(run);
                            dst.write_all(kept).await.map_err(write)?;
                        }
                        Piece::Framing(_) => dst.write_all(run).await.map_err(write)?,
                    }
                    buf.consume(n);
                    total += n as u64;
                }
            }
            see(obs, &[], true).await?;
        }
        BodyKind::UntilClose => {
            loop {
                if buf.is_empty() && read_more(src, buf, clock).await? == 0 {
                    break;
                }
                let data = buf.data();
                see(obs, data, false).await?;
                dst.write_all(data).await.map_err(write)?;
                let n = data.len();
                buf.consume(n);
                total += n as u64;
            }
            see(obs, &[], true).await?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use futures_lite::io::{AsyncRead, AsyncWrite};

    use super::*;
    use crate::http::flags::ResponseFlag;

    /// An upstream that has sent `data` and then closes.
    struct Source(Vec<u8>);

    impl AsyncRead for Source {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = self.0.len().min(buf.len());
            let rest = self.0.split_off(n);
            buf.get_mut(..n)
                .unwrap()
                .copy_from_slice(&std::mem::replace(&mut self.0, rest));
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Source {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Io for Source {
        fn set_read_timeout(&self, _: Option<Duration>) {}
        fn set_write_timeout(&self, _: Option<Duration>) {}
    }

    /// Records what it sees; answers once it has seen `stop_after` bytes.
    struct Recorder {
        seen: Vec<(Vec<u8>, bool)>,
        stop_after: usize,
    }

    impl Observer for Recorder {
        async fn data(&mut self, chunk: &[u8], end_stream: bool) -> Status {
            self.seen.push((chunk.to_vec(), end_stream));
            let total: usize = self.seen.iter().map(|(c, _)| c.len()).sum();
            if total > self.stop_after {
                return Status::Respond(LocalReply {
                    status: 500,
                    body: std::borrow::Cow::Borrowed("stop"),
                    flag: ResponseFlag::None,
                });
            }
            Status::Continue
        }
    }

    fn run(
        wire: &[u8],
        kind: BodyKind,
        strip: bool,
        stop_after: usize,
    ) -> (Recorder, Vec<u8>, Result<u64, Stopped>) {
        let mut rec = Recorder {
            seen: Vec::new(),
            stop_after,
        };
        let mut src = Source(wire.to_vec());
        let mut buf = ReadBuf::new(8);
        let mut out = Vec::new();
        let r = futures_lite::future::block_on(forward(
            &mut rec,
            &mut src,
            &mut buf,
            &mut out,
            kind,
            Chunks::new(strip, true),
            None,
            None,
        ));
        (rec, out, r)
    }

    #[test]
    fn filters_see_payload_and_the_bytes_go_on_unchanged() {
        let wire = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (rec, out, r) = run(wire, BodyKind::Chunked, false, usize::MAX);
        assert_eq!(r, Ok(wire.len() as u64));
        assert_eq!(out, wire.to_vec(), "framing forwarded verbatim");
        let data: Vec<u8> = rec.seen.iter().flat_map(|(c, _)| c.clone()).collect();
        assert_eq!(data, b"abcde", "filters see the decoded payload only");
        assert_eq!(rec.seen.last(), Some(&(Vec::new(), true)));

        let (_, out, _) = run(wire, BodyKind::Chunked, true, usize::MAX);
        assert_eq!(out, b"abcde");

        let (rec, out, r) = run(b"0123456789", BodyKind::Length(10), false, usize::MAX);
        assert_eq!((r, out), (Ok(10), b"0123456789".to_vec()));
        assert!(rec.seen.last().is_some_and(|(_, end)| *end));
        assert_eq!(rec.seen.iter().filter(|(_, end)| *end).count(), 1);
    }

    #[test]
    fn a_filter_that_answers_stops_the_body_before_its_chunk() {
        let (_, out, r) = run(b"0123456789abcdef", BodyKind::Length(16), false, 9);
        assert!(
            matches!(r, Err(Stopped::Reply(ref l)) if l.status == 500),
            "{r:?}"
        );
        // The buffer holds 8 bytes at a time: the first run went, the second did not.
        assert_eq!(out, b"01234567");
    }
}
