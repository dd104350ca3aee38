//! A response body held whole for the chain's response-body hook
//! (`filter::Chain::on_response_body`: ext_proc's `BUFFERED` response body mode (and
//! `STREAMED` when a wasm module holds the body too), a wasm module's `proxy_on_response_body`), the
//! pieces the four protocol paths share: gathering an HTTP/1 upstream's decoded body
//! (`Collect`, through `body_hooks::forward`) or an HTTP/2 upstream's DATA and trailers
//! (`read_h2`), and sending the held body and trailers on an HTTP/2 client's stream
//! (`send_h2`). Each piece is shown to the chain as it arrives
//! (`Chain::on_held_response_data`: ext_proc's `STREAMED` mode sends it to the
//! processor then). Only streams whose chain asked for the hook on the request head
//! come here; others stream the response without a copy.
//!
//! Content-Length, on every path as on the HTTP/1 one (`conn/held_response.rs`): the
//! upstream's stays when the chain keeps it (the hook refused a body of another
//! length), else it is removed, and an HTTP/1 client then gets the body chunked.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http::HeaderMap;

use super::body_hooks::Observer;
use super::filter::ext_proc::response::{too_large, TOO_LARGE};
use super::filter::{Chain, LocalReply, Status};

/// Gathers the decoded body, each piece shown to `chain` as it comes; past the buffer
/// limit it answers `500`, as Envoy's filter manager does when a response it buffers
/// overflows before its head went out.
pub(crate) struct Collect<'a, 'c> {
    pub body: Vec<u8>,
    pub chain: Option<&'a Chain<'c>>,
}

impl<'a, 'c> Collect<'a, 'c> {
    pub(crate) fn new(chain: &'a Chain<'c>) -> Self {
        Collect {
            body: Vec::new(),
            chain: Some(chain),
        }
    }
}

impl Observer for Collect<'_, '_> {
    async fn data(&mut self, chunk: &[u8], end: bool) -> Status {
        if too_large(self.body.len() + chunk.len()) {
            return Status::Respond(TOO_LARGE);
        }
        if let Some(chain) = self.chain {
            // An HTTP/1 upstream's trailers are not the processor's (module doc of
            // `filter::ext_proc::response`): its body ends with the stream.
            if let Status::Respond(r) = chain.on_held_response_data(chunk, end, false).await {
                return Status::Respond(r);
            }
        }
        self.body.extend_from_slice(chunk);
        Status::Continue
    }
}

/// Why an HTTP/2 upstream's body could not be held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Over the buffer limit: the caller answers `TOO_LARGE`.
    TooLarge,
    /// The upstream stream failed (reset, connection gone).
    Read,
    /// A filter answered a piece of the body (`Chain::on_held_response_data`).
    Reply(LocalReply),
}

/// An HTTP/2 upstream response's whole body and its trailers, the flow-control window
/// reopened as each frame is taken (the upstream would otherwise stall at the window),
/// each frame shown to `chain` as it comes (the last with the end of the stream, or
/// an empty end call: with `trailers` when trailers ended the body).
pub(crate) async fn read_h2(
    body: &mut RecvStream,
    chain: &Chain<'_>,
) -> Result<(Vec<u8>, Option<HeaderMap>), ReadError> {
    let mut all = Vec::new();
    let mut ended = false;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|_| ReadError::Read)?;
        let n = chunk.len();
        if too_large(all.len() + n) {
            return Err(ReadError::TooLarge);
        }
        ended = body.is_end_stream();
        if let Status::Respond(r) = chain.on_held_response_data(&chunk, ended, false).await {
            return Err(ReadError::Reply(r));
        }
        all.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(n);
    }
    let trailers = body.trailers().await.map_err(|_| ReadError::Read)?;
    if !ended {
        let t = trailers.is_some();
        if let Status::Respond(r) = chain.on_held_response_data(&[], true, t).await {
            return Err(ReadError::Reply(r));
        }
    }
    Ok((all, trailers))
}

/// A header map's Content-Length, when it has one valid value.
pub(crate) fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// What goes to the hook for a held body: `None` when there is none to send a message
/// for (the head ended the stream, or trailers came with no data before them: Envoy
/// then has no buffered body), else the body.
pub(crate) fn for_hook(body: &mut Vec<u8>, had_body: bool, trailers: bool) -> Option<&mut Vec<u8>> {
    (had_body && !(trailers && body.is_empty())).then_some(body)
}

/// Sends a held body on a client's HTTP/2 stream as flow control allows, then ends the
/// stream with the trailers, if any. Returns the body bytes sent, or `Err` when the
/// client went away.
pub(crate) async fn send_h2(
    to: &mut SendStream<Bytes>,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
) -> Result<u64, ()> {
    let mut body = Bytes::from(body);
    let total = body.len() as u64;
    while !body.is_empty() {
        let cap = super::h2::io::send_capacity(to, body.len())
            .await
            .ok_or(())?;
        let part = body.split_to(cap.min(body.len()));
        to.send_data(part, false).map_err(|_| ())?;
    }
    match trailers {
        Some(t) => to.send_trailers(t).map_err(|_| ())?,
        None => to.send_data(Bytes::new(), true).map_err(|_| ())?,
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_gets_a_body_unless_there_is_none_to_send() {
        let mut b = b"abc".to_vec();
        assert!(for_hook(&mut b, true, false).is_some());
        assert!(for_hook(&mut b, true, true).is_some());
        assert!(for_hook(&mut b, false, false).is_none());
        let mut empty = Vec::new();
        // An empty body that ended the stream is sent (as Envoy's end-of-stream data).
        assert!(for_hook(&mut empty, true, false).is_some());
        // Trailers with no data before them: Envoy has no buffered body to send.
        assert!(for_hook(&mut empty, true, true).is_none());
    }

    #[test]
    fn content_length_is_read_when_valid() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h), None);
        h.insert(http::header::CONTENT_LENGTH, "12".parse().unwrap());
        assert_eq!(content_length(&h), Some(12));
        h.insert(http::header::CONTENT_LENGTH, "x".parse().unwrap());
        assert_eq!(content_length(&h), None);
    }

    #[test]
    fn collect_answers_500_past_the_limit() {
        let mut c = Collect {
            body: Vec::new(),
            chain: None,
        };
        let big = vec![0u8; crate::http::filter::ext_proc::MAX_BUFFERED_BODY];
        let ok = futures_lite::future::block_on(c.data(&big, false));
        assert_eq!(ok, Status::Continue);
        let over = futures_lite::future::block_on(c.data(b"x", true));
        assert_eq!(over, Status::Respond(TOO_LARGE));
    }
}
