//! The connection managers' side of request mirroring (Envoy's
//! `request_mirror_policies`): both keep the request as it goes upstream when its route
//! has mirror policies that fire (`router::Target::shadows`) and hand the shadows to
//! `upstream::request::shadow` before the primary's request starts (`launch`). Routes
//! without mirror policies pay one branch: `Target::shadows` is an empty `Vec`.
//!
//! What is mirrored: the method, path and fields the upstream request carries (the
//! filter chain's and the route's edits, the forwarding headers, a rewritten path or
//! Host), with the Host suffixed `-shadow`, and the body. A body at hand whole (none,
//! or one the buffer filter held, with an HTTP/2 request's trailers) goes to each shadow
//! as is. Any other body is teed (`upstream::request::tee`): `launch` returns the
//! sender, and the primary's body path pushes each chunk to it as the chunk goes
//! upstream, then the end (with an HTTP/2 request's trailers). The primary never waits
//! for a shadow; one that falls behind past the tee's bound is reset and counted.
//! Upgrades and CONNECT are never mirrored (as Envoy).

use std::time::Duration;

use bytes::Bytes;

use super::h1::chunked::{ChunkedDecoder, Piece};
use super::h1::head::BodyKind;
use crate::config::MirrorPolicy;
use crate::upstream::request::shadow::{self, Shadow};
use crate::upstream::request::tee::{TeeTx, BOUND};
use crate::upstream::Connector;

use super::view::WorkerView;

/// A request to mirror, kept until its body is known.
pub(crate) struct Mirror<'v> {
    /// The request as it goes upstream (HTTP/2 form; the Host is `:authority`).
    pub req: http::Request<()>,
    pub to: Vec<(usize, &'v MirrorPolicy)>,
    /// The route timeout: it bounds each shadow.
    pub timeout: Duration,
    pub client_h2: bool,
}

/// The body the shadows get.
pub(crate) enum MirrorBody {
    /// At hand whole (empty: no body), with the trailers of a held HTTP/2 body.
    Whole(Bytes, Option<http::HeaderMap>),
    /// It streams to the primary: teed to the shadows as it goes.
    Teed,
}

/// Sends the shadows of `m`. For a teed body, returns the tee the primary's body path
/// feeds (`None` when no shadow was sent).
pub(crate) fn launch<C: Connector>(
    view: &WorkerView<C>,
    m: Mirror<'_>,
    body: MirrorBody,
) -> Option<TeeTx> {
    let Mirror {
        req,
        to,
        timeout,
        client_h2,
    } = m;
    let last = to.len().saturating_sub(1);
    let mut req = Some(req);
    let mut tee = match body {
        MirrorBody::Teed => Some(TeeTx::new(BOUND)),
        MirrorBody::Whole(..) => None,
    };
    for (i, (cluster, policy)) in to.into_iter().enumerate() {
        let Some(cs) = view.clusters.get(cluster) else {
            continue;
        };
        // The last shadow takes the request; the others a copy.
        let r = if i == last {
            req.take()
        } else {
            req.as_ref().map(copy)
        };
        let Some(r) = r else { continue };
        let (whole, trailers) = match &body {
            MirrorBody::Whole(b, t) => (b.clone(), t.clone()),
            MirrorBody::Teed => (Bytes::new(), None),
        };
        let s = Shadow {
            req: r,
            body: whole,
            trailers,
            stream: tee.as_mut().map(|t| t.shadow(cs.stats.clone())),
            timeout,
            client_h2,
        };
        shadow::send(
            cs.clone(),
            view.connector.clone(),
            s,
            policy.host_suffix,
            policy.host.as_deref(),
        );
    }
    tee.filter(TeeTx::is_live)
}

/// `http::Request` is not `Clone`; its head is.
fn copy(r: &http::Request<()>) -> http::Request<()> {
    let mut out = http::Request::new(());
    *out.method_mut() = r.method().clone();
    *out.uri_mut() = r.uri().clone();
    *out.version_mut() = r.version();
    *out.headers_mut() = r.headers().clone();
    out
}

/// The tee as a body observer (`http::body_hooks`): an HTTP/1 client's body, decoded,
/// chunk by chunk as it goes upstream, then its end.
pub(crate) struct TeeObserver<'t>(pub &'t TeeTx);

impl super::body_hooks::Observer for TeeObserver<'_> {
    async fn data(&mut self, chunk: &[u8], end_stream: bool) -> super::filter::Status {
        self.0.push(chunk);
        if end_stream {
            self.0.finish(None);
        }
        super::filter::Status::Continue
    }
}

/// Tees an HTTP/1 body of `kind` that is all in `raw` (framing included: a chunked
/// body's is decoded here; its trailers are not sent, as Envoy ignores HTTP/1 request
/// trailers by default).
pub(crate) fn tee_whole(tee: &TeeTx, kind: BodyKind, raw: &[u8]) {
    match kind {
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(usize::MAX);
            let mut rest = raw;
            while !dec.is_done() && !rest.is_empty() {
                let Ok(piece) = dec.next(rest) else {
                    // Not a whole chunked body: the shadows get no end and reset.
                    return;
                };
                let (Piece::Framing(n) | Piece::Data(n)) = piece;
                let Some((run, tail)) = rest.split_at_checked(n) else {
                    return;
                };
                if let Piece::Data(_) = piece {
                    tee.push(run);
                }
                rest = tail;
            }
            if !dec.is_done() {
                return;
            }
        }
        _ => tee.push(raw),
    }
    tee.finish(None);
}
