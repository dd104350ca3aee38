//! The upstream's HTTP/1 response head on the HTTP/1 client path (`exchange.rs`):
//! parsed by `h1::response`, judged by the retry policy, and re-encoded for the client
//! into the write buffer.

use super::super::filter::ctx::H1Fields;
use super::super::filter::headers::Edits;
use super::super::h1::encode::{self, DownFraming, DownstreamResponse};
use super::super::h1::head::BodyKind;
use super::super::h1::response::{self, Asked, BadResponse, Kind};
use super::{Action, Plan};

/// A parsed upstream response head.
pub(super) enum Response {
    /// A 1xx interim response of this many bytes, to skip.
    Interim(usize),
    /// `101 Switching Protocols` to an upgrade we asked for: the head is this long, and
    /// the connection becomes a tunnel.
    Upgraded(usize),
    /// A final response the retry policy retries: nothing was written.
    Retry,
    Final {
        head_len: usize,
        status: u16,
        body: BodyKind,
        strip: bool,
        close_down: bool,
        reuse_up: bool,
    },
}

/// What the request asked for that changes how its response is read.
pub(super) fn asked(plan: &Plan<'_>) -> Asked {
    Asked {
        head: plan.is_head,
        upgrade: matches!(plan.action, Action::Proxy { upgrade: true, .. }),
    }
}

/// Parses the upstream response head in `data` (`h1::response`); on success the
/// downstream head is in `wbuf`. `Err` is a malformed response. `must_close`: the
/// downstream connection closes after this response whatever the headers say
/// (draining, or a request body that was cut).
pub(super) fn prepare_response(
    data: &[u8],
    plan: &Plan<'_>,
    must_close: bool,
    wbuf: &mut Vec<u8>,
    edits: Edits<'_>,
    retry: impl FnOnce(u16, &[httparse::Header<'_>]) -> bool,
) -> Result<Option<Response>, BadResponse> {
    let mut slots = response::header_slots();
    let Some(resp) = response::parse(data, asked(plan), &mut slots)? else {
        return Ok(None);
    };
    let (body, f) = match resp.kind {
        Kind::Interim => return Ok(Some(Response::Interim(resp.head_len))),
        Kind::Upgraded { upgrade } => {
            wbuf.clear();
            encode::write_switching_protocols(
                wbuf,
                resp.reason,
                resp.headers,
                upgrade,
                // Envoy sends no x-envoy-upstream-service-time on a 101.
                plan.response_edits.local_reply(),
            );
            return Ok(Some(Response::Upgraded(resp.head_len)));
        }
        Kind::Final { body, framing } => (body, framing),
    };
    if retry(resp.status, resp.headers) {
        return Ok(Some(Response::Retry));
    }
    if plan.chain.hooks().response_head {
        plan.chain.before_response_head(resp.status);
    }
    let (_, strip, close_down) = encode_final(
        &resp,
        f.has_connection_header,
        body,
        plan,
        must_close,
        wbuf,
        edits,
    );
    Ok(Some(Response::Final {
        head_len: resp.head_len,
        status: resp.status,
        body,
        strip,
        close_down,
        reuse_up: f.keep_alive && body != BodyKind::UntilClose,
    }))
}

/// Encodes a final response head for the client into `wbuf`, framed for a body of
/// `body`'s kind: the framing, whether chunked framing is stripped, and whether the
/// client connection closes after it.
pub(super) fn encode_final(
    resp: &response::ResponseHead<'_, '_>,
    has_connection_header: bool,
    body: BodyKind,
    plan: &Plan<'_>,
    must_close: bool,
    wbuf: &mut Vec<u8>,
    edits: Edits<'_>,
) -> (DownFraming, bool, bool) {
    let (framing, strip) = response::down_framing(body, plan.minor);
    let close_down = !plan.framing.keep_alive || must_close || framing == DownFraming::Close;
    wbuf.clear();
    encode::write_response(
        wbuf,
        &DownstreamResponse {
            status: resp.status,
            reason: resp.reason,
            headers: resp.headers,
            has_connection_header,
            framing,
            close: close_down,
            http10_keep_alive: plan.minor == 0 && !close_down,
            upgrade: None,
            edits,
        },
    );
    (framing, strip, close_down)
}

impl super::Conn {
    /// The chain's response-head hook for an HTTP/1 upstream's head (still at the front
    /// of the upstream buffer, already encoded for the client in the write buffer):
    /// the filters see its fields, and when one made a plan for the response (ext_proc's
    /// header mutations) the head is encoded again with it. `Some`: a filter answers.
    pub(super) async fn response_head_hook(
        &mut self,
        plan: &Plan<'_>,
        status: u16,
        close_down: bool,
        edits: Edits<'_>,
    ) -> Option<super::super::filter::LocalReply> {
        {
            let mut slots = response::header_slots();
            let Ok(Some(resp)) = response::parse(self.ubuf.data(), asked(plan), &mut slots) else {
                return None;
            };
            if let super::super::filter::Status::Respond(r) = plan
                .chain
                .on_response_head(status, &H1Fields(resp.headers))
                .await
            {
                return Some(r);
            }
        }
        if edits.dynamic.is_some_and(|d| d.get().is_some()) || plan.chain.late_response_head() {
            let data = self.ubuf.data();
            let _ = prepare_response(data, plan, close_down, &mut self.wbuf, edits, |_, _| false);
        }
        None
    }
}
