//! The copy of a request body kept for a retry to an HTTP/1.1 upstream (Envoy's retry
//! buffer, bounded by `per_request_buffer_limit_bytes` and the listener's 1 MiB).
//!
//! Sits between the body forwarding (`http/conn/upload.rs` for HTTP/1 clients,
//! `http1::send_body` for HTTP/2 ones) and the upstream socket: while the first try streams
//! the body upstream, every byte the upstream connection accepts is also appended to the
//! copy, as it went on the wire (chunk framing included), so a retry writes the head
//! again and then the copy. A body that outgrows the limit gives the copy up (Envoy's
//! `retry_or_shadow_abandoned`): the try under way goes on, and no retry is made.
//!
//! Only a request with a retry state keeps anything (`Kept::Off` otherwise: no
//! allocation); the copy grows with the body, never past the limit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::AsyncWrite;

use crate::observe::stats::Counter;

/// The request body's copy for a retry.
#[derive(Debug, Default)]
pub(crate) enum Kept {
    /// The request has no retry state: nothing is kept.
    #[default]
    Off,
    /// The body as written upstream so far; `taken` body bytes of at most `limit`.
    Recording {
        copy: Vec<u8>,
        limit: usize,
        taken: usize,
    },
    /// The whole body, as the first try sent it: a retry writes it again.
    Whole(Vec<u8>),
    /// The body outgrew the limit: no retry can replay it.
    Abandoned,
}

impl Kept {
    /// A copy of at most `limit` bytes; `None`: no retry state, nothing kept.
    pub(crate) fn new(limit: Option<usize>) -> Kept {
        match limit {
            Some(limit) => Kept::Recording {
                copy: Vec::new(),
                limit,
                taken: 0,
            },
            None => Kept::Off,
        }
    }

    /// The whole body, once the first try sent all of it within the limit.
    pub(crate) fn whole(&self) -> Option<&[u8]> {
        match self {
            Kept::Whole(b) => Some(b),
            _ => None,
        }
    }

    /// The body went upstream whole: the copy is complete.
    pub(crate) fn finish(&mut self) {
        if let Kept::Recording { copy, .. } = self {
            *self = Kept::Whole(std::mem::take(copy));
        }
    }

    /// Counts `n` more body bytes; past the limit the copy is dropped and counted in
    /// `abandoned` (once): Envoy gives up the retry as the body outgrows its buffer.
    fn take(&mut self, n: usize, abandoned: &Counter) {
        if let Kept::Recording { limit, taken, .. } = self {
            if taken.saturating_add(n) > *limit {
                tracing::debug!(
                    limit = *limit,
                    "request body exceeds the retry buffer limit: no retry"
                );
                abandoned.inc();
                *self = Kept::Abandoned;
            } else {
                *taken += n;
            }
        }
    }

    /// Appends `bytes` the upstream accepted, while the copy is kept.
    fn store(&mut self, bytes: &[u8]) {
        if let Kept::Recording { copy, .. } = self {
            copy.extend_from_slice(bytes);
        }
    }
}

/// A writer to the upstream that records what it accepts into a `Kept`.
pub(crate) struct Recording<'k, W> {
    pub(crate) inner: W,
    pub(crate) kept: &'k mut Kept,
    pub(crate) abandoned: &'k Counter,
    /// The writer's caller counts the body bytes (`payload`), so that framing it adds
    /// (chunk sizes) is not held against the limit; otherwise every byte written counts
    /// (an HTTP/1 body passed on as it came).
    pub(crate) by_payload: bool,
}

impl<W> Recording<'_, W> {
    /// `n` body bytes are about to be written (with `by_payload`).
    pub(crate) fn payload(&mut self, n: usize) {
        self.kept.take(n, self.abandoned);
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Recording<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if !this.by_payload {
                this.kept.take(n, this.abandoned);
            }
            this.kept.store(buf.get(..n).unwrap_or(buf));
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::AsyncWriteExt;

    #[test]
    fn the_copy_is_what_was_written_up_to_the_limit() {
        let abandoned = Counter::default();
        let mut kept = Kept::new(Some(8));
        let mut sink = Vec::new();
        futures_lite::future::block_on(async {
            let mut w = Recording {
                inner: &mut sink,
                kept: &mut kept,
                abandoned: &abandoned,
                by_payload: false,
            };
            w.write_all(b"abcd").await.unwrap();
            w.write_all(b"efgh").await.unwrap();
        });
        kept.finish();
        assert_eq!(kept.whole(), Some(&b"abcdefgh"[..]));
        assert_eq!(abandoned.get(), 0);

        let mut kept = Kept::new(Some(8));
        futures_lite::future::block_on(async {
            let mut w = Recording {
                inner: &mut sink,
                kept: &mut kept,
                abandoned: &abandoned,
                by_payload: false,
            };
            w.write_all(b"abcdefgh").await.unwrap();
            w.write_all(b"i").await.unwrap();
            w.write_all(b"j").await.unwrap();
        });
        kept.finish();
        assert!(kept.whole().is_none(), "one byte over: no retry");
        assert_eq!(abandoned.get(), 1, "counted once");

        let mut off = Kept::new(None);
        off.take(1, &abandoned);
        off.store(b"x");
        off.finish();
        assert!(off.whole().is_none());

        // Counted by the caller: the framing around the body is kept, not counted.
        let mut kept = Kept::new(Some(4));
        futures_lite::future::block_on(async {
            let mut w = Recording {
                inner: &mut sink,
                kept: &mut kept,
                abandoned: &abandoned,
                by_payload: true,
            };
            w.payload(4);
            w.write_all(b"4\r\nabcd\r\n0\r\n\r\n").await.unwrap();
        });
        kept.finish();
        assert_eq!(kept.whole(), Some(&b"4\r\nabcd\r\n0\r\n\r\n"[..]));
    }
}
