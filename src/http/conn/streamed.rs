//! An HTTP/1 upstream's response whose body the chain rewrites as it streams
//! (`response_stream`: ext_proc's `STREAMED` response body mode; `http/body_stream.rs`)
//! on the HTTP/1 client path (`exchange.rs`). The head is copied out of the upstream
//! buffer and encoded without its Content-Length (chunked to an HTTP/1.1 client,
//! close-delimited to HTTP/1.0; a HEAD's response says chunked, as Envoy's) once the
//! chain has seen a piece that came with it, or when the upstream is first waited for;
//! each piece then goes out as a chunk as the chain made it. A filter that answers before the head went out replaces the
//! response; after it, the connection closes (Envoy).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use futures_lite::io::AsyncWriteExt;

use super::super::body_hooks::Stopped;
use super::super::body_stream::{self, Pieces};
use super::super::filter::headers::Edits;
use super::super::filter::{Chain, LocalReply, Status};
use super::super::h1::encode::DownFraming;
use super::super::h1::head::BodyKind;
use super::super::h1::response::{self, Kind};
use super::super::io::Io;
use super::held_response::HeldHead;
use super::response_head::{asked, encode_final};
use super::Plan;
use crate::http::body::BodyError;
use crate::observe::stream_info::StreamInfo;
use crate::upstream::request::clock::Progress;

/// How a streamed response ended.
pub(super) enum Streamed {
    /// The whole body went out; `close`: the client connection closes after it.
    Done { close: bool, sent: u64 },
    /// A filter answered before the head went out: the answer replaces the response.
    Reply(LocalReply),
    /// It stopped: before the head went out (`false`: nothing was sent), or after it
    /// (the client connection closes). `None`: a filter answered after the head.
    Cut {
        head_out: bool,
        error: Option<BodyError>,
        sent: u64,
    },
}

/// The client's side: the upstream's head until it is encoded, then the framing.
struct ToClient<'a, 'p, D> {
    plan: &'a Plan<'p>,
    edits: Edits<'a>,
    /// The upstream's head, until it is encoded.
    head: Option<Vec<u8>>,
    kind: BodyKind,
    /// The request was a HEAD.
    head_request: bool,
    framing: Option<DownFraming>,
    /// The client connection closes after this response (as first decided, then as
    /// the head's encoding decided).
    close: bool,
    wbuf: &'a mut Vec<u8>,
    frame: Vec<u8>,
    /// What the chain made of the current piece (reused).
    out: Vec<u8>,
    down: &'a mut D,
    /// The access log's record, when the connection logs.
    rec: Option<&'a mut StreamInfo>,
    progress: &'a Progress,
    status: u16,
    sent: u64,
}

impl<D: Io> ToClient<'_, '_, D> {
    /// Encodes the head into the write buffer if it is still held: its plan sealed, the
    /// edits applied, without its Content-Length.
    fn encode_head(&mut self) -> Result<(), Stopped> {
        let Some(head) = self.head.take() else {
            return Ok(());
        };
        self.plan.chain.seal_response_head();
        let mut slots = response::header_slots();
        let resp = match response::parse(&head, asked(self.plan), &mut slots) {
            Ok(Some(r)) => r,
            _ => return Err(Stopped::Body(BodyError::Framing)),
        };
        let Kind::Final { framing: f, .. } = resp.kind else {
            return Err(Stopped::Body(BodyError::Framing));
        };
        let kind = match (self.kind, f.body) {
            (BodyKind::Length(_), _) => BodyKind::Chunked,
            // A HEAD response declares the body a GET would get: without its length,
            // Envoy's codec says chunked (and sends no body).
            (BodyKind::Empty, BodyKind::Length(_) | BodyKind::Chunked) if self.head_request => {
                BodyKind::Chunked
            }
            (k, _) => k,
        };
        let (framing, _, close) = encode_final(
            &resp,
            f.has_connection_header,
            kind,
            self.plan,
            self.close,
            self.wbuf,
            self.edits,
        );
        self.framing = Some(framing);
        self.close = close;
        if let Some(rec) = self.rec.as_deref_mut() {
            rec.upstream_head_out(self.wbuf);
        }
        self.progress.head_sent(self.status);
        Ok(())
    }

    /// Writes the head (if it was just encoded) and `data` in the client's framing
    /// (`end`: the body's last chunk follows).
    async fn write(&mut self, data: &[u8], end: bool) -> Result<(), Stopped> {
        let fresh = self.head.is_some();
        self.encode_head()?;
        let buf = if fresh {
            &mut *self.wbuf
        } else {
            self.frame.clear();
            &mut self.frame
        };
        match self.framing {
            // The response to a HEAD carries no body, whatever its framing says.
            _ if self.head_request => {}
            Some(DownFraming::Chunked) => {
                body_stream::chunk(buf, data);
                if end {
                    buf.extend_from_slice(b"0\r\n\r\n");
                }
            }
            Some(DownFraming::AsIs | DownFraming::Close) => buf.extend_from_slice(data),
            Some(DownFraming::None) | None => {}
        }
        if buf.is_empty() {
            return Ok(());
        }
        let n = buf.len() as u64;
        let w = self.down.write_all(buf).await;
        w.map_err(|_| Stopped::Body(BodyError::Write))?;
        self.sent += n;
        Ok(())
    }
}

impl<D: Io> Pieces for ToClient<'_, '_, D> {
    fn head_held(&self) -> bool {
        self.head.is_some()
    }

    async fn idle(&mut self) -> Result<(), Stopped> {
        if self.head.is_some() {
            self.write(&[], false).await?;
        }
        Ok(())
    }

    async fn piece(&mut self, data: &[u8], end: bool) -> Result<(), Stopped> {
        let chain: &Chain<'_> = &self.plan.chain;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let head_out = self.head.is_none();
        let mut status = chain.on_response_piece(data, end, head_out, &mut out).await;
        if status == Status::Continue && chain.hooks().response_data {
            status = chain.on_response_data(&out, end).await;
        }
        let written = match status {
            Status::Respond(r) => Err(Stopped::Reply(r)),
            Status::Continue => self.write(&out, end).await,
        };
        self.out = out;
        written
    }
}

impl super::Conn {
    /// Streams the response whose head is at the front of the upstream buffer through
    /// the chain to the client (see the module doc).
    pub(super) async fn stream_response<U: Io, D: Io>(
        &mut self,
        down: &mut D,
        up: &mut U,
        plan: &Plan<'_>,
        h: HeldHead,
        edits: Edits<'_>,
        (status, progress): (u16, &Progress),
    ) -> Streamed {
        let head = self.take_head(h.head_len);
        let mut client = ToClient {
            plan,
            edits,
            head: Some(head),
            kind: h.body,
            head_request: asked(plan).head,
            framing: None,
            close: h.close_down,
            wbuf: &mut self.wbuf,
            frame: Vec::new(),
            out: Vec::new(),
            down,
            rec: self.logging.then_some(&mut self.rec),
            progress,
            status,
            sent: 0,
        };
        let streamed = match h.body {
            // No body, no piece: the head alone.
            BodyKind::Empty => client.write(&[], true).await.map(|()| 0),
            kind => {
                body_stream::stream(&mut client, up, &mut self.ubuf, kind, Some(progress), None)
                    .await
                    .and_then(|n| match client.head.is_some() {
                        true => Err(Stopped::Body(BodyError::Framing)),
                        false => Ok(n),
                    })
            }
        };
        let head_out = client.head.is_none();
        let (close, sent) = (client.close, client.sent);
        match streamed {
            Ok(_) => Streamed::Done { close, sent },
            Err(Stopped::Reply(r)) if !head_out => Streamed::Reply(r),
            Err(Stopped::Reply(_)) => Streamed::Cut {
                head_out,
                error: None,
                sent,
            },
            Err(Stopped::Body(e)) => Streamed::Cut {
                head_out,
                error: Some(e),
                sent,
            },
        }
    }
}
