//! The copy of a request body kept for a retry (Envoy's retry buffer, bounded by
//! `per_request_buffer_limit_bytes` and the listener's 1 MiB).
//!
//! To an HTTP/1.1 upstream it sits between the body forwarding (`http/conn/upload.rs`
//! for HTTP/1 clients, `http1::send_body` for HTTP/2 ones) and the upstream socket; to
//! an HTTP/2 upstream between the body forwarding and the stream (`http/h1_to_h2.rs`
//! writes the payload through `Recording`, `http/h2/to_h2_retry.rs` records each DATA
//! frame with `Kept::record`). While the first try streams
//! the body upstream, every byte the upstream connection accepts is also appended to the
//! copy, as it went on the wire (chunk framing included), so a retry writes the head
//! again and then the copy. A body that outgrows the limit gives the copy up (Envoy's
//! `retry_or_shadow_abandoned`): the try under way goes on, and no retry is made.
//!
//! When the upstream goes away while the body is still being sent (it closes or resets
//! before any response), the try is retried as Envoy's router retries it: the retry is
//! decided at once (`OnLoss`), and the rest of the body is read from the client into
//! the copy alone (Envoy buffers it while the retry waits for its back-off); the retry
//! then sends the whole copy. A body that outgrows the limit while the retry waits is
//! Envoy's `507` (`Failure::RetryBufferOverflow`).
//!
//! Only a request with a retry state keeps anything (`Kept::Off` otherwise: no
//! allocation); the copy grows with the body, never past the limit.

use std::cell::Cell;
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

    /// Keeps `bytes` of the body that a frame-based path (an HTTP/2 upstream) sends as
    /// they are, counted against the limit (past it, `abandoned` counts the request).
    pub(crate) fn record(&mut self, bytes: &[u8], abandoned: &Counter) {
        self.take(bytes.len(), abandoned);
        self.store(bytes);
    }

    /// The copy is still being kept (within the limit, not finished).
    pub(crate) fn live(&self) -> bool {
        matches!(self, Kept::Recording { .. })
    }
}

/// Where a try that lost its upstream mid-body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// The upstream is there (as far as is known).
    Live,
    /// The upstream went away and a retry was decided: the rest of the body goes into
    /// the copy only.
    Detached,
    /// The upstream went away and the retry policy decided against a retry (counted),
    /// or the copy outgrew its limit first: no retry can be made.
    Refused,
}

/// What a try does when its upstream goes away while the body is still being sent: ask
/// the retry policy once (`decide`, which counts the decision), and if it retries, take
/// the rest of the body into the copy (`Loss::Detached`).
pub(crate) struct OnLoss<'a> {
    decide: &'a dyn Fn() -> bool,
    state: Cell<Loss>,
}

impl<'a> OnLoss<'a> {
    pub(crate) fn new(decide: &'a dyn Fn() -> bool) -> OnLoss<'a> {
        OnLoss {
            decide,
            state: Cell::new(Loss::Live),
        }
    }

    pub(crate) fn state(&self) -> Loss {
        self.state.get()
    }

    /// The copy was given up (past its limit) before the upstream went away, or the
    /// upstream has answered: a loss now is not retried, and nothing is asked (Envoy
    /// drops the retry state).
    pub(crate) fn give_up(&self) {
        if self.state.get() == Loss::Live {
            self.state.set(Loss::Refused);
        }
    }

    /// The upstream is gone: decides once whether the try is retried (not after the
    /// copy was given up: a body already past the limit is not retried, as Envoy's).
    /// `true`: detached, the rest of the body goes into the copy.
    pub(crate) fn lost(&self) -> bool {
        if self.state.get() == Loss::Live {
            let retry = (self.decide)();
            self.state
                .set(if retry { Loss::Detached } else { Loss::Refused });
        }
        self.state.get() == Loss::Detached
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
    /// What a failed write does (`None`: it fails the body, as without a retry state).
    pub(crate) on_loss: Option<&'k OnLoss<'k>>,
}

impl<W> Recording<'_, W> {
    /// `n` body bytes are about to be written (with `by_payload`).
    pub(crate) fn payload(&mut self, n: usize) {
        self.kept.take(n, self.abandoned);
        self.check_live();
    }

    /// Tells `on_loss` when the copy is given up.
    fn check_live(&self) {
        if let Some(l) = self.on_loss.filter(|_| !self.kept.live()) {
            l.give_up();
        }
    }

    fn detached(&self) -> bool {
        self.on_loss.is_some_and(|l| l.state() == Loss::Detached)
    }

    /// Takes `buf` into the copy alone (the upstream is gone, a retry waits for it);
    /// past the limit the body fails: the retry cannot be made (Envoy's 507).
    fn swallow(&mut self, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !self.by_payload {
            self.kept.take(buf.len(), self.abandoned);
        }
        if !self.kept.live() {
            return Poll::Ready(Err(io::Error::other("retry buffer limit exceeded")));
        }
        self.kept.store(buf);
        Poll::Ready(Ok(buf.len()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Recording<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.detached() {
            return this.swallow(buf);
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        match r {
            Poll::Ready(Ok(n)) => {
                if !this.by_payload {
                    this.kept.take(n, this.abandoned);
                    this.check_live();
                }
                this.kept.store(buf.get(..n).unwrap_or(buf));
            }
            // The upstream is gone mid-body: retried, the rest goes into the copy. (A
            // write that timed out is a clock's, not a reset.)
            Poll::Ready(Err(ref e))
                if !crate::http::io::is_timeout(e) && this.on_loss.is_some_and(OnLoss::lost) =>
            {
                return this.swallow(buf);
            }
            _ => {}
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.detached() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.detached() {
            return Poll::Ready(Ok(()));
        }
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
                on_loss: None,
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
                on_loss: None,
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
                on_loss: None,
            };
            w.payload(4);
            w.write_all(b"4\r\nabcd\r\n0\r\n\r\n").await.unwrap();
        });
        kept.finish();
        assert_eq!(kept.whole(), Some(&b"4\r\nabcd\r\n0\r\n\r\n"[..]));
    }

    /// A writer that takes `room` bytes, then fails as a closed connection does.
    struct Closing {
        room: usize,
        got: Vec<u8>,
    }

    impl AsyncWrite for Closing {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.room);
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_retried_loss_takes_the_rest_of_the_body_into_the_copy() {
        let abandoned = Counter::default();
        let asked = Cell::new(0);
        let yes = || {
            asked.set(asked.get() + 1);
            true
        };
        let loss = OnLoss::new(&yes);
        let mut kept = Kept::new(Some(16));
        let mut up = Closing {
            room: 3,
            got: Vec::new(),
        };
        futures_lite::future::block_on(async {
            let mut w = Recording {
                inner: &mut up,
                kept: &mut kept,
                abandoned: &abandoned,
                by_payload: false,
                on_loss: Some(&loss),
            };
            w.write_all(b"abcdef").await.unwrap();
            w.write_all(b"ghij").await.unwrap();
        });
        assert_eq!(up.got, b"abc", "the upstream took three bytes");
        assert_eq!(loss.state(), Loss::Detached);
        assert_eq!(asked.get(), 1, "decided once");
        kept.finish();
        assert_eq!(kept.whole(), Some(&b"abcdefghij"[..]));

        // Past the limit while the retry waits: the body fails.
        let loss = OnLoss::new(&yes);
        let mut kept = Kept::new(Some(8));
        let failed = futures_lite::future::block_on(async {
            let mut w = Recording {
                inner: Closing {
                    room: 0,
                    got: Vec::new(),
                },
                kept: &mut kept,
                abandoned: &abandoned,
                by_payload: false,
                on_loss: Some(&loss),
            };
            w.write_all(b"abcdef").await.unwrap();
            w.write_all(b"ghi").await.is_err()
        });
        assert!(failed);
        assert_eq!(abandoned.get(), 1);

        // Not retried: the write fails as it would without a retry state.
        let no = || false;
        let loss = OnLoss::new(&no);
        let mut kept = Kept::new(Some(8));
        let failed = futures_lite::future::block_on(async {
            let mut w = Recording {
                inner: Closing {
                    room: 0,
                    got: Vec::new(),
                },
                kept: &mut kept,
                abandoned: &abandoned,
                by_payload: false,
                on_loss: Some(&loss),
            };
            w.write_all(b"a").await.is_err()
        });
        assert!(failed);
        assert_eq!(loss.state(), Loss::Refused);
    }
}
