//! An HTTP/1 upstream's response held whole for the chain's response-body hook
//! (`filter::Chain::on_response_body`: ext_proc's `BUFFERED` response body mode) on the
//! HTTP/1 client path (`exchange.rs`), the counterpart of the request body held by
//! `held.rs`. Only streams whose chain asked for it on the request head come here;
//! others stream the response as before, without a copy.
//!
//! The head stays unsent: it is copied out of the upstream buffer, the body is read
//! (decoded, through `body_hooks::forward` into a sink) up to the buffer limit, the
//! chain sees it and may replace it or answer instead, and then head and body are
//! encoded together into the write buffer: with the upstream's Content-Length where the
//! chain keeps it, else chunked (or close-delimited for an HTTP/1.0 client), as Envoy's
//! HTTP/1 codec frames a body without a length.

use super::super::body_hooks::{self, Stopped};
use super::super::body_stream;
use super::super::filter::headers::Edits;
use super::super::filter::{LocalReply, Status};
use super::super::h1::encode::DownFraming;
use super::super::h1::head::BodyKind;
use super::super::h1::response::{self, Kind};
use super::super::held_body::Collect;
use super::super::io::Io;
use super::response_head::{asked, encode_final};
use super::Plan;
use crate::http::body::{BodyError, Chunks};
use crate::upstream::request::clock::Progress;

/// How holding the response ended.
pub(super) enum Held {
    /// Head and body are in the write buffer; the head is out of the upstream buffer.
    /// `close`: the client connection closes after it.
    Ready { close: bool },
    /// A filter (or the buffer limit) answers instead.
    Reply(LocalReply),
    /// The upstream failed mid-body: nothing went to the client.
    Failed(BodyError),
}

/// The parts of the upstream's response head the hold needs.
pub(super) struct HeldHead {
    pub head_len: usize,
    pub body: BodyKind,
    /// The client connection closes after this response (as first decided).
    pub close_down: bool,
}

impl super::Conn {
    /// Copies the upstream's response head (`n` bytes at the front of the upstream
    /// buffer) out of it, for a response whose head waits for its body.
    pub(super) fn take_head(&mut self, n: usize) -> Vec<u8> {
        let head = self.ubuf.data().get(..n).unwrap_or_default().to_vec();
        self.ubuf.consume(n);
        head
    }

    /// Holds the response whose head is at the front of the upstream buffer (see the
    /// module doc).
    pub(super) async fn hold_response<U: Io>(
        &mut self,
        up: &mut U,
        plan: &Plan<'_>,
        h: HeldHead,
        edits: Edits<'_>,
        progress: &Progress,
    ) -> Held {
        let head = self.take_head(h.head_len);
        let mut body = Collect::new(&plan.chain);
        if h.body != BodyKind::Empty {
            let mut sink = futures_lite::io::sink();
            let read = body_hooks::forward(
                &mut body,
                up,
                &mut self.ubuf,
                &mut sink,
                h.body,
                Chunks::Strip,
                Some(progress),
                None,
            )
            .await;
            match read {
                Ok(_) => {}
                Err(Stopped::Reply(r)) => return Held::Reply(r),
                Err(Stopped::Body(e)) => return Held::Failed(e),
            }
        }
        let mut body = body.body;
        let length = match h.body {
            BodyKind::Length(n) => Some(n),
            _ => None,
        };
        let held = (h.body != BodyKind::Empty).then_some(&mut body);
        let o = plan.chain.on_response_body(held, length, false).await;
        if let Status::Respond(r) = o.status {
            return Held::Reply(r);
        }
        // Without its Content-Length the body goes chunked (or until the close).
        let kind = match h.body {
            BodyKind::Length(_) if !o.keep_length => BodyKind::Chunked,
            k => k,
        };
        let mut slots = response::header_slots();
        let Ok(Some(resp)) = response::parse(&head, asked(plan), &mut slots) else {
            return Held::Failed(BodyError::Framing);
        };
        let Kind::Final { framing: f, .. } = resp.kind else {
            return Held::Failed(BodyError::Framing);
        };
        let (framing, _, close) = encode_final(
            &resp,
            f.has_connection_header,
            kind,
            plan,
            h.close_down,
            &mut self.wbuf,
            edits,
        );
        match framing {
            DownFraming::Chunked => {
                body_stream::chunk(&mut self.wbuf, &body);
                self.wbuf.extend_from_slice(b"0\r\n\r\n");
            }
            DownFraming::AsIs | DownFraming::Close => self.wbuf.extend_from_slice(&body),
            DownFraming::None => {}
        }
        Held::Ready { close }
    }
}
