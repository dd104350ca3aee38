//! The request-head pass of the chain: each filter's request-head hook in order (a
//! route's `per_filter_config` may disable a filter or give it its own settings), then
//! the router's header edits; what the pass decided becomes the stream's [`Chain`] for
//! the later hooks.

use super::ext_proc::{self, ExtProcOverride};
use super::headers::{HeaderPlan, MAX_HEADER_MUTATION_FILTERS};
use super::{Chain, FilterKind, FilterOverride, Hooks, HttpFilter, RequestCtx, RouteFilters};
use super::{Status, StreamEdits};
use crate::http::flags::ResponseFlag;
use crate::http::router::EntryCluster;

/// Runs the chain's request-head hooks, then the router's header edits. `route` is the
/// matched route (`None`: no route; filters still run, the router then answers 404).
/// A filter that answers ends the chain: the filters after it do not run.
pub async fn on_request_head<'c>(
    chain: &'c [HttpFilter],
    route: Option<RouteFilters<'c>>,
    edits: &mut StreamEdits<'c>,
    ctx: &RequestCtx<'_>,
) -> Status {
    let mut status = Status::Continue;
    let mut response_filters: [Option<&'c HeaderPlan>; MAX_HEADER_MUTATION_FILTERS] =
        [None; MAX_HEADER_MUTATION_FILTERS];
    let mut n = 0;
    let mut hooks = Hooks::NONE;
    let mut flag = None;
    for f in chain {
        let ov = route.and_then(|r| r.override_for(&f.name));
        if matches!(ov, Some(FilterOverride::Disabled)) {
            continue;
        }
        hooks = hooks.or(f.kind.hooks());
        match &f.kind {
            FilterKind::HeaderMutation(own) => {
                let m = match ov {
                    Some(FilterOverride::HeaderMutation(m)) => m,
                    _ => own,
                };
                edits.request = edits.request.then(&m.request);
                if let Some(slot) = response_filters.get_mut(n) {
                    *slot = Some(&m.response);
                    n += 1;
                }
            }
            // Its decisions are on the body (`Chain::on_request_data`).
            FilterKind::Buffer(_) => {}
            FilterKind::Rbac(own) => {
                let rules = match ov {
                    Some(FilterOverride::Rbac(r)) => r,
                    _ => &own.rules,
                };
                if let Status::Respond(r) = own.on_request_head(rules, ctx) {
                    status = Status::Respond(r);
                    break;
                }
            }
            FilterKind::LocalRateLimit(own) => {
                let l = match ov {
                    Some(FilterOverride::LocalRateLimit(l)) => l,
                    _ => own,
                };
                let limits = route.map(|r| r.rate_limits);
                let cluster = route.map_or(EntryCluster::None, |r| r.cluster);
                let s = l.0.on_request_head(
                    ctx,
                    limits,
                    cluster,
                    &mut edits.request,
                    &mut edits.response,
                );
                if let Status::Respond(_) = s {
                    // Later filters do not run; the edits gathered so far still apply.
                    status = s;
                    break;
                }
            }
            FilterKind::Fault(own) => {
                let s = match ov {
                    Some(FilterOverride::Fault(s)) => s,
                    _ => &own.settings,
                };
                let cluster = route.map_or(EntryCluster::None, |r| r.cluster);
                let o = own.on_request_head(s, ctx, cluster, edits.store).await;
                if o.delayed {
                    flag = Some(ResponseFlag::DelayInjected);
                }
                if o.throttled {
                    hooks.response_data = true;
                }
                if let Status::Respond(r) = o.status {
                    if edits.store.is_some_and(|s| !s.is_empty()) {
                        edits.response.set = edits.store;
                    }
                    status = Status::Respond(r);
                    break;
                }
            }
            FilterKind::ExtProc(own) => {
                let mode = match ov {
                    Some(FilterOverride::ExtProc(ExtProcOverride { mode: Some(m) })) => *m,
                    _ => own.mode,
                };
                let h = ext_proc::run::on_request_head(
                    own,
                    mode,
                    ctx,
                    edits.store,
                    &mut edits.request,
                    &mut edits.response,
                )
                .await;
                hooks.request_data |= h.request_body;
                hooks.request_trailers |= h.request_body || h.request_trailers;
                hooks.request_stream |= h.request_stream;
                hooks.response_head |= h.response_head;
                hooks.response_body |= h.response_body;
                hooks.response_stream |= h.response_stream;
                hooks.response_trailers |= h.response_trailers;
                if let Status::Respond(r) = h.status {
                    status = Status::Respond(r);
                    break;
                }
            }
            FilterKind::ExtAuthz(own) => {
                // Envoy checks only a routed request.
                if route.is_none() {
                    continue;
                }
                let per_route = match ov {
                    Some(FilterOverride::ExtAuthz(p)) => Some(&**p),
                    _ => None,
                };
                let forwards = route.is_some_and(|r| r.forwards);
                let cluster = route.map_or(EntryCluster::None, |r| r.cluster);
                let head = own
                    .on_request_head(
                        ctx,
                        per_route,
                        edits.request_store,
                        edits.store,
                        forwards,
                        cluster,
                    )
                    .await;
                // A check put off until the body is held (`ext_authz/body.rs`).
                hooks.request_data |= head.deferred;
                hooks.request_trailers |= head.deferred;
                if head.set.0 {
                    edits.request.set = edits.request_store;
                }
                if head.set.1 {
                    edits.response.set = edits.store;
                }
                if let Status::Respond(r) = head.status {
                    status = Status::Respond(r);
                    break;
                }
            }
            FilterKind::Cors(own) => {
                // Envoy's filter acts only with a policy, on a route that forwards.
                let (Some(FilterOverride::Cors(p)), Some(store), true) =
                    (ov, edits.store, route.is_some_and(|r| r.forwards))
                else {
                    continue;
                };
                let (s, set) = own.on_request_head(p, ctx, store);
                if set {
                    edits.response.set = Some(store);
                }
                if let Status::Respond(r) = s {
                    status = Status::Respond(r);
                    break;
                }
            }
            FilterKind::Wasm(w) => {
                let s = w
                    .on_request_head(ctx, edits.store, edits.request_store)
                    .await;
                // Its body callbacks, if the module has them.
                hooks.request_data |= w.0.request_body && ctx.body;
                hooks.response_body |= w.0.response_body;
                // Its trailer callbacks (an HTTP/2 request's trailers come after a body).
                hooks.request_trailers |= w.0.request_trailers && ctx.body;
                hooks.response_trailers |= w.0.response_trailers;
                if edits.request_store.is_some_and(|s| !s.is_empty()) {
                    edits.request.set = edits.request_store;
                }
                // Its response edits and local-response headers.
                if edits.store.is_some() {
                    edits.response.set = edits.store;
                }
                if let Status::Respond(r) = s {
                    status = Status::Respond(r);
                    break;
                }
            }
        }
    }
    // The router: the route's own edits apply after the filters' on the request, and
    // before them on the response (filters see the response after the router).
    if let Some(r) = route {
        edits.request = edits.request.then(r.request_headers);
        edits.response = edits.response.then(r.response_headers);
    }
    for plan in response_filters.iter().take(n).rev().flatten() {
        edits.response = edits.response.then(plan);
    }
    if hooks.request_stream && (hooks.request_data || hooks.request_trailers) {
        // Another filter holds the request body (the buffer filter, a wasm module,
        // ext_authz with the body): ext_proc's `STREAMED` pieces go to the processor as
        // the hold reads them (`http/hold.rs`), and the held body as it made them goes.
        hooks.request_stream = false;
        hooks.request_data = true;
        hooks.request_trailers = true;
    }
    if hooks.response_body && hooks.response_stream {
        // Another filter (wasm) holds the whole response: ext_proc's pieces go to the
        // processor as it is read, and its answers replace the held body
        // (`ext_proc/response.rs`).
        hooks.response_stream = false;
    }
    edits.chain = Chain {
        filters: chain,
        overrides: route.map_or(&[], |r| r.overrides),
        hooks,
        flag,
        store: edits.store,
        upstream: None,
    };
    status
}
