//! `with_request_body`: the check waits for the request body (Envoy's `decodeData` /
//! `decodeTrailers` of the ext_authz filter). On the request head of a request whose
//! body follows, on a route that forwards, the filter builds its check request (the
//! head's part: everything but the body) and keeps it in the stream's store
//! ([`Pending`]); the stream then holds its body (`http/hold.rs`) and hands it to the
//! filter chunk by chunk. A later ext_authz filter of the chain waits too (Envoy runs
//! it once the earlier one continues): its check goes out after the earlier ones', with
//! the body when it has body settings of its own, else without. The check goes out:
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

/// The checks of one request waiting for its body, in the chain's order; kept in the
/// stream's store (`SetHeaders::ext_authz`), so they end with the request.
pub struct Pendings {
    list: RefCell<Vec<Rc<Pending>>>,
    /// The upstream request's mutations from the answers.
    late: SetHeaders,
}

/// One filter's check waiting for the request body.
pub struct Pending {
    /// The filter it belongs to (its address: a chain may hold several ext_authz
    /// filters).
    owner: usize,
    /// How much of the body the check carries (`None`: none).
    settings: Option<BodySettings>,
    /// The check waits for the body (its `settings` say until when); else it goes out
    /// as soon as the earlier filters' did, with the body read by then (Envoy's filter
    /// without buffering still sends what the stream buffered for an earlier one).
    waits: bool,
    prepared: RefCell<Option<Prepared>>,
    /// The request's headers as they came (lower-case names), for the mutations that
    /// depend on them (add-if-absent, overwrite-if-exists, the joined append).
    incoming: Vec<(String, String)>,
    /// The first `max_request_bytes` of the body.
    body: RefCell<Vec<u8>>,
    /// Body bytes seen so far.
    seen: Cell<u64>,
    /// The request's `content-length`: the chunk that completes it is not answered
    /// `413` (Envoy's HTTP/1 codec passes the last bytes with the end of the message,
    /// which its buffer limit lets through).
    declared: Option<u64>,
    /// The check went out.
    done: Cell<bool>,
    /// The filter's counters, by their index in the worker's (`ctx.counters`).
    counters: Vec<(usize, Rc<Counter>)>,
    /// The cluster the request's route names, for the cluster-scope counters.
    cluster: Option<String>,
}

/// The pending checks in `store`, if any.
fn pendings(store: Option<&SetHeaders>) -> Option<&Pendings> {
    store?.ext_authz.get()?.downcast_ref::<Pendings>()
}

/// Whether an earlier filter's check of this request waits for its body.
pub(super) fn waiting(store: &SetHeaders) -> bool {
    pendings(Some(store)).is_some_and(|p| p.list.try_borrow().is_ok_and(|l| !l.is_empty()))
}

/// Puts off `f`'s check of this request until its body is held (with `settings`, or
/// without the body). `false`: it cannot (the store holds another kind of state); the
/// caller checks at once.
pub(super) fn defer(
    f: &ExtAuthzFilter,
    ctx: &RequestCtx<'_>,
    per_route: Option<&PerRoute>,
    store: &SetHeaders,
    settings: Option<BodySettings>,
    waits: bool,
    cluster: Option<&str>,
) -> bool {
    if store.ext_authz.get().is_none() {
        let _ = store.ext_authz.set(Box::new(Pendings {
            list: RefCell::new(Vec::new()),
            late: SetHeaders::default(),
        }));
    }
    let Some(all) = pendings(Some(store)) else {
        return false;
    };
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
        settings,
        waits,
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
        declared: ctx
            .req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok()),
        done: Cell::new(false),
        counters,
        cluster: cluster.map(str::to_string),
    };
    let Ok(mut list) = all.list.try_borrow_mut() else {
        return false;
    };
    list.push(Rc::new(pending));
    true
}

/// `f`'s pending check in `store`, and whether every earlier filter's went out.
fn pending(f: &ExtAuthzFilter, store: Option<&SetHeaders>) -> Option<(Rc<Pending>, bool)> {
    let list = pendings(store)?.list.try_borrow().ok()?;
    let at = list
        .iter()
        .position(|p| p.owner == f as *const ExtAuthzFilter as usize)?;
    let earlier_done = list.iter().take(at).all(|p| p.done.get());
    Some((list.get(at)?.clone(), earlier_done))
}

/// The upstream request's mutations a check on the body made, for the connection
/// managers to apply to the upstream head (`None`: none).
pub fn late_request_headers(store: Option<&SetHeaders>) -> Option<&SetHeaders> {
    let p = pendings(store)?;
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
        let Some((p, earlier_done)) = pending(self, store) else {
            return DataStatus::Continue;
        };
        if p.done.get() {
            return DataStatus::Continue;
        }
        let total = buffered.saturating_add(chunk.len() as u64);
        p.seen.set(total);
        let complete = end_stream || p.declared == Some(total);
        let ready = match p.settings {
            None => true,
            Some(settings) => {
                let max = settings.max_request_bytes;
                if p.waits && !settings.allow_partial_message && !complete && total > max {
                    return DataStatus::Respond(TOO_LARGE);
                }
                if let Ok(mut b) = p.body.try_borrow_mut() {
                    let room = usize::try_from(max)
                        .unwrap_or(usize::MAX)
                        .saturating_sub(b.len());
                    b.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or(chunk));
                }
                !p.waits || end_stream || (settings.allow_partial_message && total >= max)
            }
        };
        if (ready || end_stream) && earlier_done {
            return match self.check_body(&p, store, up).await {
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
        match pending(self, store) {
            Some((p, _)) if !p.done.get() => self.check_body(&p, store, up).await,
            _ => Status::Continue,
        }
    }

    /// Sends the pending check with the body buffered so far, and applies the answer.
    async fn check_body(
        &self,
        p: &Pending,
        store: Option<&SetHeaders>,
        up: Option<&dyn Upstreams>,
    ) -> Status {
        p.done.set(true);
        let Some(prepared) = p.prepared.try_borrow_mut().ok().and_then(|mut c| c.take()) else {
            return Status::Continue;
        };
        let body = p.body.take();
        let seen = p.seen.get();
        let partial = seen > body.len() as u64;
        let answer = match (up, prepared, &self.service) {
            (None, _, _) => Answer::Error,
            (Some(up), Prepared::Grpc(mut req), Service::Grpc { cluster, timeout }) => {
                check::set_size(&mut req, seen);
                if let Some(s) = p.settings {
                    check::add_body(&mut req, &body, partial, s.pack_as_bytes);
                }
                check::call(up, *cluster, *timeout, &req).await
            }
            (Some(up), Prepared::Http(head), Service::Http(h)) => {
                let with = p.settings.map(|_| (&body[..], partial));
                h.call(up, head, with).await
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
        let stats = match (up, &p.cluster) {
            (Some(up), Some(c)) => up.cluster_stats(c),
            _ => None,
        };
        let late = pendings(store).map(|all| &all.late);
        let (status, _, _) = self.settle(answer, &inc, stats, &values, late, store);
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
