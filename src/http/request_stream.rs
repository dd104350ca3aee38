//! A request body on its way upstream, piece by piece through the filter chain when
//! the chain rewrites it as it streams (`Hooks::request_stream`: ext_proc's `STREAMED`
//! request body mode), shared by the four protocol paths.
//!
//! - [`forward_h1`]: an HTTP/1 client's body to an HTTP/1 upstream (`conn/upload.rs`,
//!   re-framed chunked) or to an HTTP/2 one (`h1_to_h2.rs`, the payload alone): as it
//!   came, shown to the shadows' tee on its way, or rewritten: one piece per client
//!   read (`body_stream::stream`, as Envoy's HTTP/1 codec hands over what one read
//!   decoded) through `Chain::on_request_piece`, what the chain made of it upstream
//!   (and to the tee: Envoy's router, which mirrors, sees the body after the filters).
//!   The end goes through the chain alone after the last data, except with the body at
//!   hand when the headers' answer came, as Envoy sends them (`body_stream::stream`).
//! - [`H2Pieces`]: an HTTP/2 client's DATA frames (`upstream/request/http1.rs` to an
//!   HTTP/1 upstream, `h2/to_h2.rs` to an HTTP/2 one), each through the chain, with an
//!   empty END_STREAM frame at hand counted with the frame before it.
//!
//! The upstream request went without a Content-Length (Envoy removes it for `STREAMED`
//! bodies): an HTTP/1 upstream gets the body chunked. A filter that answers stops the
//! body (`Stopped::Reply`): the caller drops the upstream request and answers the
//! client.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::Bytes;
use futures_lite::io::{AsyncWrite, AsyncWriteExt};
use h2::RecvStream;

use super::body::{self, BodyError};
use super::body_hooks::{self, Stopped};
use super::body_stream::{self, H2Reader, Pieces};
use super::buf::ReadBuf;
use super::filter::{Chain, Status};
use super::h1::head::BodyKind;
use super::io::Io;
use super::mirror::TeeObserver;
use crate::upstream::request::clock::Progress;
use crate::upstream::request::replay::Recording;
use crate::upstream::request::tee::TeeTx;

/// How an HTTP/1 client's body goes upstream.
#[derive(Clone, Copy)]
pub(crate) enum Via<'a, 'c> {
    /// As it came.
    Plain,
    /// As it came, each chunk to the shadows' tee too.
    Teed(&'a TeeTx),
    /// Through the chain piece by piece (and what it made of each to the tee).
    Rewritten(&'a Chain<'c>, Option<&'a TeeTx>),
}

impl<'a, 'c> Via<'a, 'c> {
    /// The way for a stream with this chain and tee: `rewrite` when its body streams
    /// through the chain.
    pub(crate) fn new(chain: &'a Chain<'c>, tee: Option<&'a TeeTx>, rewrite: bool) -> Self {
        match (rewrite, tee) {
            (true, _) => Via::Rewritten(chain, tee),
            (false, Some(t)) => Via::Teed(t),
            (false, None) => Via::Plain,
        }
    }

    /// The body goes on as it came (no filter takes it piece by piece).
    pub(crate) fn as_it_came(&self) -> bool {
        !matches!(self, Via::Rewritten(..))
    }
}

/// Forwards an HTTP/1 client's body of `kind` from `src` (starting with `buf`) to
/// `dst` as `via` says. `Chunks::Strip`: `dst` takes the payload alone (an HTTP/2
/// upstream's DATA); else a body as it came keeps its framing (its trailer fields as
/// `chunks` says), and a rewritten one is chunked (without trailers). With `trailers`
/// (a body whose framing is stripped), its chunked trailer section goes there.
/// Returns the bytes read from the client, framing included.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward_h1<R: Io, W: AsyncWrite + Unpin>(
    via: Via<'_, '_>,
    src: &mut R,
    buf: &mut ReadBuf,
    dst: &mut W,
    kind: BodyKind,
    chunks: body::Chunks,
    clock: Option<&Progress>,
    trailers: Option<&mut Vec<u8>>,
) -> Result<u64, Stopped> {
    match via {
        Via::Plain => {
            body::forward_with_trailers(src, buf, dst, kind, chunks, clock, None, trailers)
                .await
                .map_err(Stopped::Body)
        }
        Via::Teed(t) => {
            let obs = &mut TeeObserver(t);
            body_hooks::forward(obs, src, buf, dst, kind, chunks, clock, trailers).await
        }
        Via::Rewritten(chain, tee) => {
            let mut sink = Upstream {
                chain,
                dst,
                tee,
                chunked: !chunks.strip(),
                out: Vec::new(),
                framed: Vec::new(),
            };
            body_stream::stream(&mut sink, src, buf, kind, clock, trailers).await
        }
    }
}

/// What the chain makes of each piece of an HTTP/1 client's body, written upstream.
struct Upstream<'a, 'c, W> {
    chain: &'a Chain<'c>,
    dst: &'a mut W,
    tee: Option<&'a TeeTx>,
    chunked: bool,
    out: Vec<u8>,
    /// Chunk framing's scratch.
    framed: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Pieces for Upstream<'_, '_, W> {
    fn head_held(&self) -> bool {
        false
    }

    async fn idle(&mut self) -> Result<(), Stopped> {
        Ok(())
    }

    async fn piece(&mut self, data: &[u8], end: bool) -> Result<(), Stopped> {
        self.out.clear();
        if let Status::Respond(r) = self.chain.on_request_piece(data, end, &mut self.out).await {
            return Err(Stopped::Reply(r));
        }
        if let Some(t) = self.tee {
            t.push(&self.out);
            if end {
                t.finish(None);
            }
        }
        let written = if self.chunked {
            body::write_chunk(self.dst, &mut self.framed, &self.out, end).await
        } else {
            self.dst.write_all(&self.out).await
        };
        written.map_err(|_| Stopped::Body(BodyError::Write))
    }
}

/// An HTTP/2 client's body through the chain, one DATA frame at a time.
#[derive(Default)]
pub(crate) struct H2Pieces {
    reader: H2Reader,
    /// The last piece said the body ended (no empty end message is due).
    ended: bool,
}

/// One piece of an HTTP/2 client's body, as the chain made it.
pub(crate) struct H2Piece {
    /// What goes upstream in the frame's place.
    pub out: Bytes,
    /// The client's bytes it stands for (flow-control capacity to release).
    pub taken: usize,
    /// The body ends with it (no trailers follow).
    pub end: bool,
}

impl H2Pieces {
    /// The next DATA frame as the client sent it, and whether the body ends with it
    /// (`None`: the DATA is over; trailers may follow). Nothing is processed yet: the
    /// caller may race this read with the response.
    pub(crate) async fn read(
        &mut self,
        from: &mut RecvStream,
    ) -> Option<Result<(Bytes, bool), Stopped>> {
        let (data, end) = self.reader.next(from, true).await?;
        Some(
            data.map(|d| (d, end))
                .map_err(|_| Stopped::Body(BodyError::Read)),
        )
    }

    /// A frame `read` took, through the chain: what goes upstream in its place (also
    /// to `tee`).
    pub(crate) async fn process(
        &mut self,
        chain: &Chain<'_>,
        data: &[u8],
        end: bool,
        tee: Option<&TeeTx>,
    ) -> Result<Bytes, Stopped> {
        let mut out = Vec::new();
        if let Status::Respond(r) = chain.on_request_piece(data, end, &mut out).await {
            return Err(Stopped::Reply(r));
        }
        self.ended = end;
        let out = Bytes::from(out);
        if let Some(t) = tee {
            t.push_bytes(out.clone());
        }
        Ok(out)
    }

    /// The next piece, read and processed (`Ok(None)`: the DATA is over; trailers may
    /// follow, see [`H2Pieces::finish`]).
    pub(crate) async fn next(
        &mut self,
        chain: &Chain<'_>,
        from: &mut RecvStream,
        tee: Option<&TeeTx>,
    ) -> Result<Option<H2Piece>, Stopped> {
        let Some(read) = self.read(from).await else {
            return Ok(None);
        };
        let (data, end) = read?;
        let out = self.process(chain, &data, end, tee).await?;
        Ok(Some(H2Piece {
            out,
            taken: data.len(),
            end,
        }))
    }

    /// Whether the last piece ended the body (no trailers or end message follow).
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// The DATA is over, with these trailers (if any): an end that came alone (an
    /// empty END_STREAM frame not at hand with the last data) is its own message, whose
    /// answer goes upstream before the end (returned, and to `tee`); trailers end the
    /// body without one (the processor is not sent them), as Envoy.
    pub(crate) async fn finish(
        &mut self,
        chain: &Chain<'_>,
        trailers: bool,
        tee: Option<&TeeTx>,
    ) -> Result<Bytes, Stopped> {
        if self.ended {
            return Ok(Bytes::new());
        }
        if trailers {
            self.ended = true;
            chain.end_request_stream();
            return Ok(Bytes::new());
        }
        self.process(chain, &[], true, tee).await
    }
}

/// Streams an HTTP/2 client's body to an HTTP/1 upstream, chunked, each DATA frame
/// through the chain and what it made of it upstream (`up` keeps a copy for a retry,
/// counting the payload), flow-control capacity released as each goes. The trailers
/// follow the last chunk with `keep_trailers` (the cluster's `enable_trailers`), as on
/// the plain path (`request::http1::send_body`). Returns the client's body bytes taken.
pub(crate) async fn h2_to_h1<U: AsyncWrite + Unpin>(
    up: &mut Recording<'_, U>,
    chain: &Chain<'_>,
    body: &mut RecvStream,
    progress: &Progress,
    tee: Option<&TeeTx>,
    keep_trailers: bool,
) -> Result<u64, Stopped> {
    let write = |_| Stopped::Body(BodyError::Write);
    let mut pieces = H2Pieces::default();
    let mut framing = Vec::with_capacity(64);
    let mut total = 0u64;
    while let Some(p) = pieces.next(chain, body, tee).await? {
        progress.touch();
        up.payload(p.out.len());
        body::write_chunk(up, &mut framing, &p.out, p.end)
            .await
            .map_err(write)?;
        let _ = body.flow_control().release_capacity(p.taken);
        progress.received(p.taken as u64);
        total += p.taken as u64;
    }
    progress.request_done();
    let mut trailers = None;
    if !pieces.ended() {
        trailers = body
            .trailers()
            .await
            .map_err(|_| Stopped::Body(BodyError::Read))?;
        let last = pieces.finish(chain, trailers.is_some(), tee).await?;
        progress.touch();
        up.payload(last.len());
        let sent = trailers.as_ref().filter(|_| keep_trailers);
        body::write_chunk(up, &mut framing, &last, sent.is_none())
            .await
            .map_err(write)?;
        if let Some(t) = sent {
            framing.clear();
            body::last_chunk_with(&mut framing, t);
            up.write_all(&framing).await.map_err(write)?;
        }
    }
    if let Some(t) = tee {
        t.finish(trailers.as_ref());
    }
    Ok(total)
}
