//! HTTP/1: a request body read through the filter chain before the upstream request
//! starts (`http/hold.rs`), for chains with a request-body hook (the buffer filter,
//! ext_proc's body modes, ext_authz's `with_request_body`).
//!
//! The held body then stands in for the connection's read buffer while the request is
//! proxied: the upstream request is framed by its length, and the exchange, its early
//! answers and its local replies read the body from there as they would from the
//! client. The connection's own buffer (with any pipelined request) comes back after.

use futures_lite::io::AsyncWriteExt;

use super::super::buf::ReadBuf;
use super::super::flags::ResponseFlag;
use super::super::h1::head::BodyKind;
use super::super::hold::{self, Held};
use super::super::io::Io;
use super::{Action, Conn, Outcome, Plan};

/// Whether this request's body goes through the chain first: for a chain with a
/// request-body hook. (HTTP/1 request trailers never reach a chain, as Envoy's HTTP/1
/// codec ignores them by default: the trailers hook alone does not hold the body.)
fn wanted(plan: &Plan<'_>) -> bool {
    plan.chain.hooks().request_data
        && plan.framing.body != BodyKind::Empty
        && matches!(plan.action, Action::Proxy { upgrade: false, .. })
}

/// Whether this request's body streams upstream through the chain, piece by piece
/// (`http/request_stream.rs`: ext_proc's `STREAMED` request body).
pub(super) fn streams(plan: &Plan<'_>) -> bool {
    plan.chain.hooks().request_stream
        && plan.framing.body != BodyKind::Empty
        && matches!(plan.action, Action::Proxy { upgrade: false, .. })
}

impl Conn {
    /// For a chain with a request-body hook (one branch for the others): reads the body
    /// through it. Returns the connection's own read buffer, to be put back after the
    /// exchange (the held body stands in for it meanwhile). When the request was
    /// answered, or the client went, `plan.action` becomes `Action::Held` with how.
    pub(super) async fn hold<D: Io>(
        &mut self,
        down: &mut D,
        plan: &mut Plan<'_>,
        h2: Option<&mut http::Request<()>>,
    ) -> Option<ReadBuf> {
        if streams(plan) {
            // The body the chain rewrites as it goes has no length known ahead: the
            // upstream request (and its shadows') goes without one, as Envoy's, and an
            // HTTP/1 upstream gets it chunked.
            match h2 {
                Some(req) => {
                    req.headers_mut().remove(http::header::CONTENT_LENGTH);
                }
                None => to_chunked(&mut self.wbuf),
            }
            if let Some(m) = plan.mirror.as_mut() {
                m.req.headers_mut().remove(http::header::CONTENT_LENGTH);
            }
            return None;
        }
        if !wanted(plan) {
            return None;
        }
        match self.hold_body(down, plan, h2).await {
            Ok(body) => Some(std::mem::replace(&mut self.rbuf, body)),
            Err(Some(o)) => {
                plan.action = Action::Held(o);
                None
            }
            // Answered after the whole body: `plan.action` is the reply.
            Err(None) => None,
        }
    }

    /// Reads the body through the chain. `Ok`: the held body as a read buffer, and the
    /// plan (and the upstream request: the head in `wbuf`, or `h2`) reframed by its
    /// length. `Err(Some)`: the request is answered (a filter's reply before the body
    /// was read whole, `connection: close` as Envoy's) or the client is gone.
    /// `Err(None)`: a filter answered once the body was read whole (an ext_authz
    /// denial): the reply becomes the plan's action, as a filter's on the head, and the
    /// connection stays open as Envoy's does.
    async fn hold_body<D: Io>(
        &mut self,
        down: &mut D,
        plan: &mut Plan<'_>,
        h2: Option<&mut http::Request<()>>,
    ) -> Result<ReadBuf, Option<Outcome>> {
        if plan.framing.expect_continue {
            // The proxy answers `100-continue` itself (Envoy's default), here before
            // the body it asks for.
            if down
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
            {
                return Err(Some(closed(ResponseFlag::DownstreamConnectionTermination)));
            }
            plan.framing.expect_continue = false;
        }
        let (mut read, mut ended) = (0, false);
        let held = hold::h1(
            &plan.chain,
            down,
            &mut self.rbuf,
            plan.framing.body,
            &mut read,
            &mut ended,
        )
        .await;
        if !matches!(held, Held::Body(_)) {
            // A held body is counted as the exchange sends it; one that never goes
            // upstream, as it was read.
            self.rec.bytes_received += read;
        }
        match held {
            Held::Body(body) => {
                let n = body.len() as u64;
                // A check on the body (ext_authz) edits the head written before it.
                let late = plan.chain.late_request_headers();
                match h2 {
                    Some(req) => {
                        req.headers_mut()
                            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
                        if let Some(late) = late {
                            late.apply_to_map(req.headers_mut());
                        }
                    }
                    None => {
                        reframe(&mut self.wbuf, n);
                        if let Some(late) = late {
                            crate::http::filter::ext_authz::body::edit_h1_head(
                                &mut self.wbuf,
                                late,
                            );
                        }
                    }
                }
                plan.framing.body = BodyKind::Length(n);
                Ok(ReadBuf::from_vec(body))
            }
            Held::Reply(r) if ended => {
                plan.framing.body = BodyKind::Empty;
                plan.action = Action::Filtered(r);
                Err(None)
            }
            Held::Reply(r) => {
                // What is left of the body is never read: close (Envoy closes after a
                // local reply to a request it has not read whole, and after its 413).
                let o = self
                    .reply_and_close(down, plan, r.status, r.body.as_bytes(), r.flag)
                    .await;
                Err(Some(o))
            }
            Held::Failed(e) => {
                self.linger = true;
                let flag = match e {
                    super::super::body::BodyError::Timeout => ResponseFlag::DownstreamIdleTimeout,
                    super::super::body::BodyError::Framing => ResponseFlag::DownstreamProtocolError,
                    _ => ResponseFlag::DownstreamConnectionTermination,
                };
                Err(Some(closed(flag)))
            }
        }
    }
}

impl Conn {
    /// Sends the request's shadows (`http::mirror`) before the upstream request: with
    /// the body when it is at hand (none, or held: in `rbuf`), else with a tee the
    /// body's path upstream feeds, which this returns. Nothing is sent for a request a
    /// filter answered while its body was read.
    pub(super) fn mirror<C: crate::upstream::Connector>(
        &self,
        view: &crate::http::view::WorkerView<C>,
        plan: &Plan<'_>,
        m: crate::http::mirror::Mirror<'_>,
        held: bool,
    ) -> Option<crate::upstream::request::tee::TeeTx> {
        use crate::http::mirror::MirrorBody;
        if !matches!(plan.action, Action::Proxy { .. }) {
            return None;
        }
        let body = match plan.framing.body {
            BodyKind::Empty => MirrorBody::Whole(bytes::Bytes::new(), None),
            _ if held => MirrorBody::Whole(bytes::Bytes::copy_from_slice(self.rbuf.data()), None),
            _ => MirrorBody::Teed,
        };
        crate::http::mirror::launch(view, m, body)
    }
}

fn closed(flag: ResponseFlag) -> Outcome {
    Outcome {
        status: 0,
        flag,
        keep_alive: false,
    }
}

/// The upstream head in `wbuf` was written for the client's framing; the body is now
/// held whole: frame it by its length. `h1::encode::write_request` writes a chunked
/// request's framing as exactly `transfer-encoding: chunked`, which becomes a
/// Content-Length; a Content-Length request keeps its field, with the held body's
/// length (a filter may have rewritten the body: ext_proc).
fn reframe(wbuf: &mut Vec<u8>, len: u64) {
    const TE: &[u8] = b"\r\ntransfer-encoding: chunked\r\n";
    let cl = format!("\r\ncontent-length: {len}\r\n");
    if let Some(at) = wbuf.windows(TE.len()).position(|w| w == TE) {
        wbuf.splice(at..at + TE.len(), cl.into_bytes());
        return;
    }
    // Its Content-Length field is replaced.
    if let Some((at, len)) = content_length_field(head_of(wbuf)) {
        wbuf.splice(at..at + len, cl.into_bytes());
    }
}

/// The upstream head in `wbuf` was written for the client's framing; the body now
/// streams rewritten: chunked. A Content-Length field becomes `transfer-encoding:
/// chunked`; a chunked head stays as it is.
fn to_chunked(wbuf: &mut Vec<u8>) {
    if let Some((at, len)) = content_length_field(head_of(wbuf)) {
        wbuf.splice(
            at..at + len,
            b"\r\ntransfer-encoding: chunked\r\n".iter().copied(),
        );
    }
}

/// The head's fields: up to the first empty line, the CRLF that ends the last field
/// included.
fn head_of(wbuf: &[u8]) -> &[u8] {
    let end = wbuf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(wbuf.len(), |e| e + 2);
    wbuf.get(..end).unwrap_or(wbuf)
}

/// Where the head's Content-Length field is (from the CRLF before it to the one after
/// it, both included), whatever its case.
fn content_length_field(head: &[u8]) -> Option<(usize, usize)> {
    const CL: &[u8] = b"\r\ncontent-length:";
    let at = head
        .windows(CL.len())
        .position(|w| w.eq_ignore_ascii_case(CL))?;
    let value = at + CL.len();
    let eol = head.get(value..)?.windows(2).position(|w| w == b"\r\n")?;
    Some((at, CL.len() + eol + 2))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reframes_a_chunked_head() {
        let mut head =
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nx: y\r\n\r\n".to_vec();
        super::reframe(&mut head, 12);
        assert_eq!(
            head,
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 12\r\nx: y\r\n\r\n".to_vec()
        );
        let mut head = b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n".to_vec();
        super::reframe(&mut head, 3);
        assert_eq!(
            head,
            b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n".to_vec()
        );
        // A body a filter rewrote: the field takes its length, whatever its case.
        let mut head = b"POST / HTTP/1.1\r\nContent-Length: 6\r\nx: y\r\n\r\n".to_vec();
        super::reframe(&mut head, 0);
        assert_eq!(
            head,
            b"POST / HTTP/1.1\r\ncontent-length: 0\r\nx: y\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn a_streamed_body_goes_chunked() {
        let mut head = b"POST / HTTP/1.1\r\nhost: a\r\nContent-Length: 6\r\n\r\nbody".to_vec();
        super::to_chunked(&mut head);
        assert_eq!(
            head,
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nbody".to_vec()
        );
        let chunked = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        let mut head = chunked.clone();
        super::to_chunked(&mut head);
        assert_eq!(head, chunked);
    }
}
