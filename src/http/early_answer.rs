//! An upstream that answers while the client's request body is still on its way (a
//! server that replies after the head, as nginx's `return 200` does, or a `413`).
//!
//! Envoy forwards the body while it relays the response, and the connections stay in
//! use when the body was all taken in by the time the response ended: for a body of a
//! few kilobytes sent at once, nearly always. This proxy's HTTP/1 exchange answers once
//! its upload has ended, so an early answer would cut the body and with it the client's
//! connection (and an HTTP/1 upstream's) after every such request. Instead the rest of
//! a small body of known length is forwarded first, for a short while: if it all goes,
//! the exchange goes on as if the answer had come after it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::body_hooks::Stopped;
use super::h1::head::BodyKind;
use super::request_stream::Via;
use crate::upstream::request::replay::OnLoss;

/// The largest declared body (Content-Length) whose rest is still forwarded after an
/// early answer: Envoy's default per-connection buffer limit, the body Envoy would take
/// in from the client without waiting for the upstream.
const FINISH_LIMIT: u64 = 1 << 20;

/// How long the rest of such a body may take before it is cut after all: the longest an
/// early answer waits for a client that has stopped sending (or an upstream that has
/// stopped reading).
const FINISH_WITHIN: Duration = Duration::from_millis(100);

/// Whether a request body of `kind`, going up `via`, is finished after an early answer:
/// small enough, and passed on as it came. A body a filter takes piece by piece (ext_proc
/// STREAMED) waits for a round trip to its processor per piece: finishing it would hold
/// the answer for all of them (at 1k uploads of 16 KiB a second through a processor,
/// that lost a tenth of the rate and put the p99 at 0.4-0.6 s), so it is cut as before.
pub(crate) fn finishable(kind: BodyKind, via: Via<'_, '_>) -> bool {
    via.as_it_came() && matches!(kind, BodyKind::Length(n) if n <= FINISH_LIMIT)
}

/// Forwards the rest of the body (`forward`) after the upstream answered, for up to
/// `FINISH_WITHIN`: the bytes read from the client if it all went, else `None` (the body
/// is cut, whatever stopped it: the client, its framing, a filter, the upstream). The
/// answer is in: losing the upstream now is not retried (`OnLoss::give_up`).
pub(crate) async fn finish<F: Future<Output = Result<u64, Stopped>>>(
    forward: Pin<&mut F>,
    on_loss: Option<&OnLoss<'_>>,
) -> Option<u64> {
    if let Some(l) = on_loss {
        l.give_up();
    }
    let within = async {
        crate::rt::sleep(FINISH_WITHIN).await;
        None
    };
    let done = async { forward.await.ok() };
    futures_lite::future::or(done, within).await
}
