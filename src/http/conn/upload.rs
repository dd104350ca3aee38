//! The request body on its way to an HTTP/1 upstream, while the upstream is watched.
//!
//! An upstream may answer before it has read the whole body (a `413`, a `401`) or close
//! the connection half way. Body forwarding alone would not notice: it would wait for
//! the client's next bytes, or block writing to an upstream that stopped reading. So
//! the body is forwarded while the upstream socket is read in the same task; the first
//! upstream bytes that make up a final response head (or its close or failure) end the
//! upload, and the connection manager answers from what it read.
//!
//! An early answer that keeps its connection does not end the upload at once when the
//! rest of the body is small: it is forwarded first, for a short while
//! (`early_answer`), and then both connections stay usable. A larger body, a chunked
//! one, a client that stalls, or an upstream that stops reading still ends the upload
//! (`Cut`).
//!
//! Both sides share the one upstream stream through a `RefCell`, each borrow lasting one
//! poll, so there is no second socket handle and no allocation.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::super::body::{BodyError, Chunks};
use super::super::body_hooks::Stopped;
use super::super::buf::ReadBuf;
use super::super::early_answer;
use super::super::filter::LocalReply;
use super::super::h1::head::BodyKind;
use super::super::h1::response::{self, Asked, Kind, MAX_RESPONSE_HEAD_BYTES};
use super::super::io::Io;
use super::super::request_stream::{self, Via};
use crate::observe::stats::Counter;
use crate::upstream::request::replay::{Kept, Loss, OnLoss, Recording};

/// How an upload ended.
pub(super) enum Upload {
    /// The whole body went upstream; this many bytes were read from the client.
    Done(u64),
    /// The upstream answered, closed or failed before the whole body was sent (what it
    /// sent is in the upstream buffer). The request body is cut: neither connection can
    /// carry another request. (How much of it was read is not known.)
    Cut,
    /// The client's chunked framing was invalid.
    Framing,
    /// The client sent nothing for its idle timeout.
    DownTimeout,
    /// The client closed or failed.
    DownClosed,
    /// The upstream went away before it answered, the retry policy retries, and the
    /// rest of the body (this many bytes read from the client in all) went into the
    /// copy for the retry (`replay::OnLoss`).
    Lost(u64),
    /// As `Lost`, but the body outgrew the copy's limit first: no retry (Envoy's 507).
    Overflow,
    /// A filter answered while the body streamed through the chain
    /// (`request_stream`): the upstream request is cut, the client gets this.
    Replied(LocalReply),
}

/// One upstream stream lent to the body writer and the response watcher in turn.
struct Shared<'c, 'u, U>(&'c RefCell<&'u mut U>);

fn busy() -> io::Error {
    io::Error::other("upstream stream already borrowed")
}

impl<U: Io> AsyncWrite for Shared<'_, '_, U> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.try_borrow_mut() {
            Ok(mut up) => Pin::new(&mut **up).poll_write(cx, buf),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.try_borrow_mut() {
            Ok(mut up) => Pin::new(&mut **up).poll_flush(cx),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.try_borrow_mut() {
            Ok(mut up) => Pin::new(&mut **up).poll_close(cx),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }
}

impl<U: Io> AsyncRead for Shared<'_, '_, U> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.try_borrow_mut() {
            Ok(mut up) => Pin::new(&mut **up).poll_read(cx, buf),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }
}

/// What the watcher saw.
enum Step {
    Body(Result<u64, Stopped>),
    /// Upstream bytes arrived (`true`), or it closed or failed (`false`).
    Upstream(bool),
}

/// How a body that went into the copy alone (the upstream gone, a retry decided) ended.
fn detached_end(r: Result<u64, Stopped>) -> Upload {
    match r {
        Ok(n) => Upload::Lost(n),
        Err(Stopped::Reply(r)) => Upload::Replied(r),
        // Only the copy can refuse a write now: it is past its limit.
        Err(Stopped::Body(BodyError::Write)) => Upload::Overflow,
        Err(Stopped::Body(e)) => client_end(e),
    }
}

/// The client's side of the body failed.
fn client_end(e: BodyError) -> Upload {
    match e {
        BodyError::Framing => Upload::Framing,
        BodyError::Timeout => Upload::DownTimeout,
        _ => Upload::DownClosed,
    }
}

/// Forwards a request body of `kind` from `down` (starting with `rbuf`) to `up` (its
/// chunk framing as `chunks` says), while
/// reading whatever `up` sends into `ubuf`. Interim (1xx) responses are skipped; any
/// other upstream answer, or its close, ends the upload early (`Cut`), unless the rest
/// of a small body goes first (`early_answer`: then `Done`). What the
/// upstream accepts is also kept in `kept` for a retry (`request/replay.rs`), up to its
/// limit (past it, `abandoned` counts the request). With `on_loss` (a request with a
/// retry state), an upstream that goes away before any response byte asks for a
/// retry, and the rest of the body is read into the copy (`Lost`, `Overflow`). `via`:
/// the body as it came (to the shadows' tee too), or rewritten by the chain.
#[allow(clippy::too_many_arguments)]
pub(super) async fn upload<D: Io, U: Io>(
    down: &mut D,
    rbuf: &mut ReadBuf,
    up: &mut U,
    ubuf: &mut ReadBuf,
    (kind, chunks): (BodyKind, Chunks),
    asked: Asked,
    via: Via<'_, '_>,
    kept: &mut Kept,
    abandoned: &Counter,
    on_loss: Option<&OnLoss<'_>>,
) -> Upload {
    // The route deadline applies to the wait for the response, after the body; while
    // the client still sends, the upstream may rightly be silent.
    up.set_read_timeout(None);
    let cell = RefCell::new(up);
    let mut writer = Recording {
        inner: Shared(&cell),
        kept,
        abandoned,
        // The body passes as it came: its framing counts too (a few bytes a chunk).
        by_payload: false,
        on_loss,
    };
    let mut reader = Shared(&cell);
    let forward =
        request_stream::forward_h1(via, down, rbuf, &mut writer, kind, chunks, None, None);
    futures_lite::pin!(forward);
    let detached = || on_loss.is_some_and(|l| l.state() == Loss::Detached);
    loop {
        if detached() {
            // The upstream is gone and a retry waits: the rest of the body goes into
            // the copy alone; what the upstream may still say is not read.
            return detached_end(forward.as_mut().await);
        }
        // The body is polled first: a body that completes with this poll counts as sent.
        let step = futures_lite::future::or(async { Step::Body(forward.as_mut().await) }, async {
            if ubuf.is_full() && !ubuf.grow(MAX_RESPONSE_HEAD_BYTES + 1) {
                // A head this large is refused when it is parsed.
                return Step::Upstream(true);
            }
            Step::Upstream(matches!(ubuf.fill(&mut reader).await, Ok(n) if n > 0))
        })
        .await;
        match step {
            // A write failed and the retry was decided on it: the body went into the
            // copy (or outgrew it); the upstream is not listened to any more.
            Step::Body(r) if detached() => return detached_end(r),
            Step::Upstream(_) if detached() => continue,
            Step::Body(Ok(n)) => return Upload::Done(n),
            Step::Body(Err(Stopped::Reply(r))) => return Upload::Replied(r),
            // The upstream stopped taking the body: what it said, if anything, decides.
            Step::Body(Err(Stopped::Body(BodyError::Write))) => return Upload::Cut,
            Step::Body(Err(Stopped::Body(e))) => return client_end(e),
            // Gone before a byte of response, mid-body: retried if the policy says so.
            Step::Upstream(false) if ubuf.is_empty() && on_loss.is_some_and(OnLoss::lost) => {
                continue
            }
            Step::Upstream(false) => return Upload::Cut,
            Step::Upstream(true) => {
                // Skip complete interim responses; a final head (or garbage, or one too
                // large) ends the upload, a small body first (`early_answer`); a partial
                // head waits for more.
                loop {
                    let mut slots = response::header_slots();
                    match response::parse(ubuf.data(), asked, &mut slots) {
                        Ok(Some(h)) if h.kind == Kind::Interim => {
                            let n = h.head_len;
                            ubuf.consume(n);
                        }
                        Ok(None) => break,
                        Ok(Some(h))
                            if keeps_connection(h.kind) && early_answer::finishable(kind, via) =>
                        {
                            return match early_answer::finish(forward.as_mut(), on_loss).await {
                                Some(n) => Upload::Done(n),
                                None => Upload::Cut,
                            };
                        }
                        Ok(Some(_)) | Err(_) => return Upload::Cut,
                    }
                }
            }
        }
    }
}

/// Whether a final answer keeps the upstream connection: one that closes it gains
/// nothing from the rest of the body.
fn keeps_connection(response: Kind<'_>) -> bool {
    matches!(response, Kind::Final { framing, .. } if framing.keep_alive)
}
