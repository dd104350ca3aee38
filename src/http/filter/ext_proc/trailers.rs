//! Trailers to the processor (Envoy's `request_trailer_mode` / `response_trailer_mode`
//! `SEND`; `DEFAULT` is `SKIP`). An HTTP/2 request's trailers and an HTTP/2 upstream
//! response's go to the processor in a `request_trailers` / `response_trailers`
//! message, after the body's message when the body is processed too (Envoy sends a
//! buffered body when the trailers arrive, then the trailers once the body is
//! answered); the answer's header mutation is applied to the trailers, by the same
//! rules as a header mutation (`mutate.rs`). An immediate response answers the client:
//! the request's trailers are held with its body (`http/hold.rs`), so nothing went
//! upstream; after a response head that went out, the caller resets the client's
//! stream (or closes its connection), as Envoy does. A message without trailers is
//! never sent: an HTTP/1 message has none for the processor (Envoy's HTTP/1 codec drops
//! them by default), nor has one that ended without them.

use envoy_types::pb::envoy::config::core::v3::HeaderMap as PbHeaderMap;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Req;
use envoy_types::pb::envoy::service::ext_proc::v3::HttpTrailers;

use super::run::{header_value, state, Answer, Phase, State};
use super::HeaderMode;
use crate::http::filter::headers::{Edits, HeaderPlan};
use crate::http::filter::set_headers::SetHeaders;
use crate::http::filter::status::Status;

/// The request's trailers ended its body (after its body message, if any).
pub async fn on_request_trailers(
    store: Option<&SetHeaders>,
    trailers: &mut http::HeaderMap,
) -> Status {
    let Some(s) = state(store) else {
        return Status::Continue;
    };
    // The body's message first (a buffered body, a streamed body's last piece).
    if let Status::Respond(r) = super::run::on_request_trailers(store).await {
        return Status::Respond(r);
    }
    s.request_done();
    if !s.live() || s.mode.get().request_trailers != HeaderMode::Send {
        s.finish_if_done();
        return Status::Continue;
    }
    let msg = Req::RequestTrailers(message(trailers));
    let status = send(s, msg, Phase::RequestTrailers, trailers).await;
    if status == Status::Continue {
        s.finish_if_done();
    }
    status
}

/// An HTTP/2 upstream response's trailers, before they go to the client.
pub async fn on_response_trailers(
    store: Option<&SetHeaders>,
    trailers: &mut http::HeaderMap,
) -> Status {
    let Some(s) = state(store) else {
        return Status::Continue;
    };
    if !s.live() || s.mode.get().response_trailers != HeaderMode::Send {
        return Status::Continue;
    }
    let msg = Req::ResponseTrailers(message(trailers));
    let status = send(s, msg, Phase::ResponseTrailers, trailers).await;
    // Nothing is sent after the response's trailers.
    s.close();
    status
}

fn message(trailers: &http::HeaderMap) -> HttpTrailers {
    let headers = trailers
        .iter()
        .map(|(n, v)| header_value(n.as_str().as_bytes(), v.as_bytes()))
        .collect();
    HttpTrailers {
        trailers: Some(PbHeaderMap { headers }),
    }
}

/// Sends the trailers and applies the answer's mutation to them.
async fn send(s: &State, msg: Req, phase: Phase, trailers: &mut http::HeaderMap) -> Status {
    match s.exchange(msg, phase).await {
        Answer::Common(r, _) => {
            let ops = s.ops(&r);
            if !ops.is_empty() {
                let plan = HeaderPlan::compile([&ops]);
                Edits::none().then(&plan).apply_to_map(trailers);
            }
            Status::Continue
        }
        Answer::Immediate(i) => s.immediate(i),
        Answer::Closed => Status::Continue,
        Answer::Failed(why) => s.fail(why),
    }
}
