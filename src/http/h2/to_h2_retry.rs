//! An HTTP/2 stream's request body that streams to an HTTP/2 upstream under a retry
//! policy (`to_h2.rs` hands it here): each try of the attempt loop (`request::run`) runs
//! the body and the wait for the response head together, so a retried try can send the
//! body again. The first try sends the DATA frames as they arrive and keeps a copy of
//! them (`request::replay`, up to `per_request_buffer_limit_bytes`) and of the
//! trailers; a retry sends the copy. A response head that comes before the body ends (an
//! early answer, a streaming call) is judged with the body not whole (so it is not
//! retried) and goes on: the rest of the body is pumped by `to_h2.rs` after it, from the
//! frame the try stopped in (`pending`), as Envoy keeps streaming a request body after
//! the response head. A stream the upstream resets while the body is still being sent
//! asks the retry policy at once (`Attempt::retry_loss`, Envoy's reset); a retry then
//! waits for the rest of the body, read into the copy alone (`take_rest`), and past the
//! limit the client gets Envoy's `507`.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::Response;

use super::clock::Progress;
use crate::http::body_hooks::Stopped;
use crate::http::failure::Failure;
use crate::http::filter::{Chain, LocalReply};
use crate::http::h1::response;
use crate::http::request_stream::H2Pieces;
use crate::observe::stats::ClusterStats;
use crate::upstream::request::replay::Kept;
use crate::upstream::request::tee::TeeTx;
use crate::upstream::request::{hedge, http2, Attempt, Exchange, Tried};

/// What a streamed try ended with: the response head and the request stream, or the
/// client's stream failed while its body was read (`None`).
pub(super) type Answered = Option<(Response<RecvStream>, SendStream<Bytes>)>;

/// The tries of a request whose body streams, under a retry policy.
pub(super) struct Streamed<'x> {
    pub req: &'x http::Request<()>,
    pub body: &'x mut RecvStream,
    /// The client's first DATA frame, taken before the tries (it did not end the
    /// stream; it went to the shadows and was counted then).
    pub first: Option<Bytes>,
    pub tee: Option<&'x TeeTx>,
    pub progress: &'x Progress,
    pub stats: &'x ClusterStats,
    /// The body's copy for a retry, and the trailers that ended it.
    pub kept: Kept,
    pub trailers: Option<http::HeaderMap>,
    /// Body bytes taken from the client.
    pub taken: u64,
    /// The whole body went up on the try that answered.
    pub sent: bool,
    /// The unsent rest of the frame the try was in when the head came.
    pub pending: Option<Bytes>,
    /// The request as hedged tries send it, when the route hedges (`request::hedge`):
    /// filled once the body is kept whole.
    pub hedge: Option<hedge::Copy<http2::H2Request>>,
    /// The chain that rewrites the body as it streams (`request_stream`): each frame
    /// goes through it, and the copy keeps what it made; `pieces` reads on where the
    /// try left off.
    pub rewrite: Option<Chain<'x>>,
    pub pieces: H2Pieces,
    /// A filter answered the body (`rewrite`): the client gets this.
    pub replied: Option<LocalReply>,
}

/// What came first while the body went up.
enum Step {
    Frame(Option<Result<Bytes, h2::Error>>),
    /// A frame read for the chain, and whether the body ends with it.
    Piece(Option<Result<(Bytes, bool), Stopped>>),
    Head(Result<Response<RecvStream>, h2::Error>),
}

impl Streamed<'_> {
    /// Sends one frame's `data` as flow control allows, unless the response head comes
    /// first: then the unsent rest is kept in `pending` and the head returned. `Err`:
    /// the upstream stream no longer takes data (what it answered decides).
    async fn send_frame(
        &mut self,
        mut data: Bytes,
        up: &mut SendStream<Bytes>,
        response: &mut std::pin::Pin<&mut h2::client::ResponseFuture>,
    ) -> Result<Option<Result<Response<RecvStream>, h2::Error>>, ()> {
        while !data.is_empty() {
            let want = data.len();
            let got = futures_lite::future::or(
                async { Ok(super::io::send_capacity(up, want).await) },
                async { Err(response.as_mut().await) },
            )
            .await;
            match got {
                Ok(Some(cap)) => {
                    let part = data.split_to(cap.min(data.len()));
                    up.send_data(part, false).map_err(|_| ())?;
                }
                Ok(None) => return Err(()),
                Err(head) => {
                    self.pending = Some(data);
                    return Ok(Some(head));
                }
            }
        }
        Ok(None)
    }
}

impl Exchange<SendRequest<Bytes>> for Streamed<'_> {
    type Head = Answered;

    fn hedge_copy(&self) -> Option<hedge::Copy<http2::H2Request>> {
        self.hedge.clone()
    }

    fn adopt(&mut self, won: http2::Hedged) -> Result<Answered, Tried> {
        // The hedged try sent the whole request (its copy): nothing is left to pump.
        self.sent = true;
        self.pending = None;
        Ok(Some(won))
    }

    fn resendable(&self) -> Option<bool> {
        Some(self.kept.whole().is_some())
    }

    async fn try_once(
        &mut self,
        send: &mut SendRequest<Bytes>,
        at: Attempt<'_, '_>,
    ) -> Result<Answered, Tried> {
        let mut req = self.req.clone();
        at.restamp().apply_map(req.headers_mut());
        let resend = self.kept.whole().is_some();
        let (response, mut up) = send
            .send_request(req, false)
            .map_err(|_| Tried::failed(Failure::ConnectionTermination, false, resend))?;
        futures_lite::pin!(response);
        let answer = if let Some(copy) = self.kept.whole() {
            // A retry: the copy and its trailers, while an early answer is watched.
            let body = Bytes::copy_from_slice(copy);
            let trailers = self.trailers.clone();
            let upload = async {
                let _ = super::io::send_whole(body, trailers, &mut up).await;
                None
            };
            let early = async { Some(response.as_mut().await) };
            match futures_lite::future::or(upload, early).await {
                Some(a) => a,
                None => response.as_mut().await,
            }
        } else {
            match self.first_try(&mut up, &mut response).await {
                Ok(Err(e)) if !self.sent && self.kept.live() && at.retry.is_some() => {
                    let t = http2::stream_failure(&e, false);
                    if t.refused || t.failure != Failure::ConnectionTermination {
                        return Err(t);
                    }
                    // Reset while the body was still being sent: retried as Envoy
                    // retries the reset, with the rest of the body read into the copy.
                    if !at.retry_loss(self.stats) {
                        return Err(Tried::lost_mid_body(false, false));
                    }
                    return match self.take_rest().await {
                        Ok(()) => {
                            let overflowed = self.kept.whole().is_none();
                            Err(Tried::lost_mid_body(true, overflowed))
                        }
                        Err(()) => Ok(None),
                    };
                }
                Ok(a) => a,
                Err(()) => return Ok(None),
            }
        };
        // A head judged retriable is retried only with the whole body at hand.
        let whole = self.sent && self.kept.whole().is_some();
        let resp = answer.map_err(|e| http2::stream_failure(&e, whole))?;
        let status = resp.status().as_u16();
        if !response::valid_status(status) {
            return Err(Tried::failed(Failure::ProtocolError, false, whole));
        }
        if at.retry_response(status, resp.headers(), whole, self.stats) {
            return Err(Tried::retry_response());
        }
        Ok(Some((resp, up)))
    }
}

impl Streamed<'_> {
    /// A frame through the rewriting chain (`rewrite`): what goes in its place. `Err`:
    /// a filter answered (kept in `replied`) or the stream failed.
    async fn process(&mut self, data: &[u8], end: bool) -> Result<Bytes, ()> {
        let Some(chain) = &self.rewrite else {
            return Ok(Bytes::copy_from_slice(data));
        };
        match self.pieces.process(chain, data, end, self.tee).await {
            Ok(out) => Ok(out),
            Err(Stopped::Reply(r)) => {
                self.replied = Some(r);
                Err(())
            }
            Err(Stopped::Body(_)) => Err(()),
        }
    }

    /// The DATA is over: what the rewriting chain makes of the end (nothing without
    /// one, or when the last frame ended the body).
    async fn last_piece(&mut self, trailers: bool) -> Result<Bytes, ()> {
        let Some(chain) = &self.rewrite else {
            return Ok(Bytes::new());
        };
        match self.pieces.finish(chain, trailers, self.tee).await {
            Ok(out) => Ok(out),
            Err(Stopped::Reply(r)) => {
                self.replied = Some(r);
                Err(())
            }
            Err(Stopped::Body(_)) => Err(()),
        }
    }

    /// Fills the hedged tries' copy once the body is kept whole (a route that hedges).
    fn fill_hedge(&self) {
        if let Some(body) = self.kept.whole() {
            let body = Some(Bytes::copy_from_slice(body));
            http2::fill_hedge(&self.hedge, self.req, body, self.trailers.clone());
        }
    }

    /// The upstream stream went away mid-body and a retry waits: the rest of the body
    /// goes into the copy alone, until it ends (the copy is then whole, and the retry
    /// sends all of it) or outgrows the limit (`kept` given up: Envoy's 507). `Err`:
    /// the client's stream failed.
    async fn take_rest(&mut self) -> Result<(), ()> {
        // What the try had taken is in the copy already, the unsent rest of a frame too.
        self.pending = None;
        let stats = self.stats;
        loop {
            let (chunk, n) = if self.rewrite.is_some() {
                match self.pieces.read(self.body).await {
                    None => break,
                    Some(Err(_)) => return Err(()),
                    Some(Ok((data, end))) => (self.process(&data, end).await?, data.len()),
                }
            } else {
                match self.body.data().await {
                    None => break,
                    Some(Err(_)) => return Err(()),
                    Some(Ok(chunk)) => {
                        if let Some(t) = self.tee {
                            t.push_bytes(chunk.clone());
                        }
                        let n = chunk.len();
                        (chunk, n)
                    }
                }
            };
            self.progress.touch();
            self.progress.received(n as u64);
            self.taken += n as u64;
            self.kept.record(&chunk, &stats.retry_or_shadow_abandoned);
            let _ = self.body.flow_control().release_capacity(n);
            if !self.kept.live() {
                return Ok(());
            }
        }
        let trailers = self.body.trailers().await.map_err(|_| ())?;
        let last = self.last_piece(trailers.is_some()).await?;
        self.kept.record(&last, &stats.retry_or_shadow_abandoned);
        if let Some(t) = self.tee {
            t.finish(trailers.as_ref());
        }
        self.progress.request_done();
        self.kept.finish();
        self.trailers = trailers;
        self.sent = true;
        self.fill_hedge();
        Ok(())
    }

    /// The first try: the client's DATA frames go up as they arrive, each into the copy,
    /// until the body ends (then the trailers, and the head is awaited) or the head
    /// comes. `Err`: the client's stream failed.
    async fn first_try(
        &mut self,
        up: &mut SendStream<Bytes>,
        response: &mut std::pin::Pin<&mut h2::client::ResponseFuture>,
    ) -> Result<Result<Response<RecvStream>, h2::Error>, ()> {
        let stats = self.stats;
        let abandoned = &stats.retry_or_shadow_abandoned;
        loop {
            // The frame taken before the tries went to the shadows, was counted and
            // its capacity released then (`pre`).
            let (step, pre) = match self.first.take() {
                Some(chunk) => (Step::Frame(Some(Ok(chunk))), true),
                None => {
                    let (body, pieces) = (&mut *self.body, &mut self.pieces);
                    let rewrite = self.rewrite.is_some();
                    let step = futures_lite::future::or(
                        async {
                            match rewrite {
                                true => Step::Piece(pieces.read(body).await),
                                false => Step::Frame(body.data().await),
                            }
                        },
                        async { Step::Head(response.as_mut().await) },
                    )
                    .await;
                    (step, false)
                }
            };
            let (chunk, n) = match step {
                Step::Head(head) => return Ok(head),
                Step::Frame(Some(Ok(chunk))) => {
                    let n = chunk.len();
                    (chunk, n)
                }
                // A frame for the chain: what it made of it goes in its place (the
                // chain's answer is awaited whole, not raced with the head).
                Step::Piece(Some(Ok((data, end)))) => match self.process(&data, end).await {
                    Ok(out) => (out, data.len()),
                    Err(()) => return Err(()),
                },
                Step::Frame(Some(Err(_))) | Step::Piece(Some(Err(_))) => return Err(()),
                // The body ended: its trailers, if any, end the upstream stream.
                Step::Frame(None) | Step::Piece(None) => break,
            };
            self.progress.touch();
            if !pre {
                if let (Some(t), None) = (self.tee, self.rewrite) {
                    t.push_bytes(chunk.clone());
                }
                self.progress.received(n as u64);
            }
            self.taken += n as u64;
            self.kept.record(&chunk, abandoned);
            let sent = self.send_frame(chunk, up, response).await;
            if !pre {
                let _ = self.body.flow_control().release_capacity(n);
            }
            match sent {
                Ok(None) => {}
                Ok(Some(head)) => return Ok(head),
                // The upstream stopped taking the body: what it answered decides.
                Err(()) => return Ok(response.as_mut().await),
            }
        }
        let trailers = self.body.trailers().await.map_err(|_| ())?;
        let last = self.last_piece(trailers.is_some()).await?;
        if !last.is_empty() {
            self.kept.record(&last, abandoned);
            match self.send_frame(last, up, response).await {
                Ok(None) => {}
                Ok(Some(head)) => return Ok(head),
                Err(()) => return Ok(response.as_mut().await),
            }
        }
        if let Some(t) = self.tee {
            t.finish(trailers.as_ref());
        }
        self.progress.request_done();
        self.kept.finish();
        self.trailers = trailers.clone();
        self.sent = true;
        self.fill_hedge();
        let ended = match trailers {
            Some(t) => up.send_trailers(t),
            None => up.send_data(Bytes::new(), true),
        };
        if ended.is_err() {
            tracing::debug!("the upstream stream ended before the request body");
        }
        Ok(response.as_mut().await)
    }
}
