//! An HTTP/2 client's request body to an HTTP/2 upstream, rewritten by the filter chain
//! as it streams (`request_stream`: ext_proc's `STREAMED` request body mode;
//! `http/request_stream.rs`): each DATA frame goes through the chain and what the chain
//! made of it goes upstream, under the upstream stream's flow control, before the
//! client's window for it reopens. The trailers follow the body, as on the plain path.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::Bytes;
use h2::{RecvStream, SendStream};

use super::clock::Progress;
use super::io::send_all;
use crate::http::body::BodyError;
use crate::http::body_hooks::Stopped;
use crate::http::filter::Chain;
use crate::http::request_stream::H2Pieces;
use crate::upstream::request::tee::TeeTx;

/// Streams `from`'s body through `chain` to `to`, then its end (trailers, or an empty
/// END_STREAM frame), reading on with `pieces` (where a try under a retry policy left
/// off: `to_h2_retry.rs`). Returns the client's body bytes taken.
pub(super) async fn rewritten(
    (from, to): (&mut RecvStream, &mut SendStream<Bytes>),
    (chain, mut pieces): (&Chain<'_>, H2Pieces),
    progress: &Progress,
    tee: Option<&TeeTx>,
) -> Result<u64, Stopped> {
    let write = |()| Stopped::Body(BodyError::Write);
    let mut total = 0u64;
    while let Some(p) = pieces.next(chain, from, tee).await? {
        send_all(to, p.out, &|_| progress.touch())
            .await
            .map_err(write)?;
        let _ = from.flow_control().release_capacity(p.taken);
        progress.received(p.taken as u64);
        total += p.taken as u64;
    }
    let mut trailers = None;
    if !pieces.ended() {
        trailers = from
            .trailers()
            .await
            .map_err(|_| Stopped::Body(BodyError::Read))?;
        let last = pieces.finish(chain, trailers.is_some(), tee).await?;
        send_all(to, last, &|_| progress.touch())
            .await
            .map_err(write)?;
    }
    if let Some(t) = tee {
        t.finish(trailers.as_ref());
    }
    match trailers {
        Some(t) => to.send_trailers(t),
        None => to.send_data(Bytes::new(), true),
    }
    .map_err(|_| Stopped::Body(BodyError::Write))?;
    Ok(total)
}
