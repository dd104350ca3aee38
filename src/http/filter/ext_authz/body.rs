//! `with_request_body`: the check waits for the request body (Envoy's `decodeData` /
//! `decodeTrailers` of the ext_authz filter). On the request head of a request whose
//! body follows, on a route that forwards, the filter builds its check request (the
//! head's part: everything but the body) and keeps it in the stream's store
//! ([`Pending`]); the stream then holds its body (`http/hold.rs`) and hands it to the
//! filter chunk by chunk. The check goes out:
//!
//! - when the body ends (the end-of-stream call, or the HTTP/2 trailers), with the
//!   whole body, at most `max_request_bytes` of it;
//! - with `allow_partial_message`, as soon as `max_request_bytes` are buffered, with
//!   those bytes (the rest is still held, and goes upstream with the rest);
//! - without it, a body chunk that does not end the stream and takes the buffered bytes
//!   past `max_request_bytes` is answered with `413 Payload Too Large` (Envoy's decoder
//!   buffer limit), and the service is not asked.
//!
//! The check carries the body in `attributes.request.http.body` (`raw_body` with
//! `pack_as_bytes`) and `x-envoy-auth-partial-body: true|false` (whether bytes were
//! left out) among the headers; the plain-HTTP service gets the body as the request's
//! body and the same header. A request without a body is checked on its head, without
//! either (Envoy sends neither).
//!
//! The answer is applied as on the head, except that the upstream request's head may be
//! written already (HTTP/1 writes it before reading the body): the request mutations
//! go into the pending check's own store, which the connection managers apply to the
//! upstream head once the body is held ([`crate::http::filter::Chain::late_request_headers`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

use super::{check, Answer, ExtAuthzFilter, PerRoute, Service};
use crate::http::filter::buffer::TOO_LARGE;
use crate::http::filter::ctx::RequestCtx;
use crate::http::filter::set_headers::SetHeaders;
use crate::http::filter::status::{DataStatus, Status};
use crate::observe::stats::Counter;
use crate::upstream::grpc_call::Upstreams;

/// Envoy's `BufferSettings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodySettings {
    /// Most body bytes in the check (more than 0).
    pub max_request_bytes: u64,
    pub allow_partial_message: bool,
    pub pack_as_bytes: bool,
}

/// The check request as built on the head.
enum Prepared {
    Grpc(Box<CheckRequest>),
    /// The request head for the plain-HTTP service, without its length.
    Http(Vec<u8>),
}

/// One request's check, waiting for its body; kept in the stream's store
/// (`SetHeaders::ext_authz`), so it ends with the request.
pub struct Pending {
    /// The filter it belongs to (its address: a chain may hold two ext_authz filters;
    /// only the first with a body waits for it).
    owner: usize,
    prepared: RefCell<Option<Prepared>>,
    /// The request's headers as they came (lower-case names), for the mutations that
    /// depend on them (add-if-absent, overwrite-if-exists, the joined append).
    incoming: Vec<(String, String)>,
    /// The first `max_request_bytes` of the body.
    body: RefCell<Vec<u8>>,
    /// Body bytes seen so far.
    seen: Cell<u64>,
    /// The filter's counters, by their index in the worker's (`ctx.counters`).
    counters: Vec<(usize, Rc<Counter>)>,
    /// The upstream request's mutations from the answer.
    late: SetHeaders,
}

/// Puts off `f`'s check of this request until its body is held. `false`: it cannot
/// (the store holds another filter's pending check); the caller checks at once.
pub(super) fn defer(
    f: &ExtAuthzFilter,
    ctx: &RequestCtx<'_>,
    per_route: Option<&PerRoute>,
    store: &SetHeaders,
) -> bool {
    if store.ext_authz.get().is_some() {
        return false;
    }
    let prepared = match &f.service {
        Service::Grpc { .. } => Prepared::Grpc(Box::new(check::request(
            ctx,
            f.allowed_headers.as_deref(),
            per_route,
        ))),
        Service::Http(h) => Prepared::Http(h.head(ctx, f.allowed_headers.as_deref())),
    };
    let c = &f.counters;
    let counters = [c.ok, c.denied, c.error, c.failure_mode_allowed]
        .into_iter()
        .filter_map(|i| ctx.counters.get(i).map(|rc| (i, rc.clone())))
        .collect();
    let pending = Pending {
        owner: f as *const ExtAuthzFilter as usize,
        prepared: RefCell::new(Some(prepared)),
        incoming: ctx
            .req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: RefCell::new(Vec::new()),
        seen: Cell::new(0),
        counters,
        late: SetHeaders::default(),
    };
    store.ext_authz.set(Box::new(pending)).is_ok()
}

/// The pending check in `store`, if it is `f`'s.
fn pending<'s>(f: &ExtAuthzFilter, store: Option<&'s SetHeaders>) -> Option<&'s Pending> {
    let p = store?.ext_authz.get()?.downcast_ref::<Pending>()?;
    (p.owner == f as *const ExtAuthzFilter as usize).then_some(p)
}

/// The upstream request's mutations a check on the body made, for the connection
/// managers to apply to the upstream head (`None`: none).
pub fn late_request_headers(store: Option<&SetHeaders>) -> Option<&SetHeaders> {
    let p = store?.ext_authz.get()?.downcast_ref::<Pending>()?;
    (!p.late.is_empty()).then_some(&p.late)
}

impl ExtAuthzFilter {
    /// One chunk of the request body (`buffered`: the bytes held before it).
    pub async fn on_request_data(
        &self,
        store: Option<&SetHeaders>,
        up: Option<&dyn Upstreams>,
        chunk: &[u8],
        end_stream: bool,
        buffered: u64,
    ) -> DataStatus {
        let (Some(p), Some(settings)) = (pending(self, store), self.body) else {
            return DataStatus::Continue;
        };
        if p.prepared.try_borrow().map_or(true, |c| c.is_none()) {
            // Checked already.
            return DataStatus::Continue;
        }
        let max = settings.max_request_bytes;
        let total = buffered.saturating_add(chunk.len() as u64);
        if !settings.allow_partial_message && !end_stream && total > max {
            return DataStatus::Respond(TOO_LARGE);
        }
        p.seen.set(total);
        if let Ok(mut b) = p.body.try_borrow_mut() {
            let room = usize::try_from(max)
                .unwrap_or(usize::MAX)
                .saturating_sub(b.len());
            b.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or(chunk));
        }
        if end_stream || (settings.allow_partial_message && total >= max) {
            return match self.check_body(p, store, up, settings).await {
                Status::Continue => DataStatus::Continue,
                Status::Respond(r) => DataStatus::Respond(r),
            };
        }
        DataStatus::StopAndBuffer
    }

    /// The request's trailers end its body: the check goes out if it has not.
    pub async fn on_request_trailers(
        &self,
        store: Option<&SetHeaders>,
        up: Option<&dyn Upstreams>,
    ) -> Status {
        match (pending(self, store), self.body) {
            (Some(p), Some(settings)) => self.check_body(p, store, up, settings).await,
            _ => Status::Continue,
        }
    }

    /// Sends the pending check with the body buffered so far, and applies the answer.
    async fn check_body(
        &self,
        p: &Pending,
        store: Option<&SetHeaders>,
        up: Option<&dyn Upstreams>,
        settings: BodySettings,
    ) -> Status {
        let Some(prepared) = p.prepared.try_borrow_mut().ok().and_then(|mut c| c.take()) else {
            return Status::Continue;
        };
        let body = p.body.take();
        let partial = p.seen.get() > body.len() as u64;
        let answer = match (up, prepared, &self.service) {
            (None, _, _) => Answer::Error,
            (Some(up), Prepared::Grpc(mut req), Service::Grpc { cluster, timeout }) => {
                check::add_body(&mut req, &body, partial, settings.pack_as_bytes);
                check::call(up, *cluster, *timeout, &req).await
            }
            (Some(up), Prepared::Http(head), Service::Http(h)) => {
                h.call(up, head, Some((&body, partial))).await
            }
            _ => Answer::Error,
        };
        let inc = |i: usize| {
            if let Some((_, c)) = p.counters.iter().find(|(at, _)| *at == i) {
                c.inc();
            }
        };
        let values = |name: &str| -> Vec<String> {
            p.incoming
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let (status, _, _) = self.settle(answer, &inc, &values, Some(&p.late), store);
        status
    }
}

/// Writes `late`'s edits into an HTTP/1 request head (`head`: the head, ending with its
/// blank line): a set or removed name loses its fields, a set or added value becomes a
/// field before the blank line.
pub fn edit_h1_head(head: &mut Vec<u8>, late: &SetHeaders) {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    // The fields, after the request line.
    let Some(first) = head.windows(2).position(|w| w == b"\r\n") else {
        return;
    };
    let mut lines: Vec<Vec<u8>> = head
        .get(first + 2..end + 2)
        .unwrap_or_default()
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    late.for_each_edit(|name, value, replaces| {
        if replaces {
            lines.retain(|l| {
                let n = l.split(|b| *b == b':').next().unwrap_or_default();
                !n.eq_ignore_ascii_case(name.as_bytes())
            });
        }
        if let Some(v) = value {
            lines.push(format!("{name}: {v}\r\n").into_bytes());
        }
    });
    let mut out = Vec::with_capacity(head.len() + 64);
    out.extend_from_slice(head.get(..first + 2).unwrap_or_default());
    for l in &lines {
        out.extend_from_slice(l);
    }
    out.extend_from_slice(head.get(end + 2..).unwrap_or_default());
    *head = out;
}
