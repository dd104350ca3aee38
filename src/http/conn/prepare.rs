//! Reading one HTTP/1 request head into a plan: parse (`h1::request`), route, run the
//! listener's HTTP filter chain, decide the action, and write the upstream request head
//! (or build the HTTP/2 request) with the chain's edits. `conn.rs` then carries it out.

use crate::config::{HttpConnectionManager, UpstreamProtocol};
use crate::observe::stream_info::StreamInfo;
use crate::observe::trace;
use crate::upstream::request::retry::{Headers, RetryState};
use crate::upstream::{original_dst, Connector};

use super::super::filter::{self, StreamEdits};
use super::super::h1::encode::{self, Forward, UpstreamRequest};
use super::super::h1::head::{self, BodyKind, HeadError};
use super::super::h1::request;
use super::super::own_headers;
use super::super::router::{self, timeouts, Decision};
use super::super::view::WorkerView;
use super::{Action, Plan};

/// Parses the request head in `data` (`h1::request`), routes it, runs the listener's
/// filter chain and decides what to do. `Ok(None)` means the head is not complete yet.
/// For a proxied request the upstream head, with the chain's edits, is written into
/// `wbuf`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn prepare<'v, C: Connector>(
    data: &[u8],
    l: &'v HttpConnectionManager,
    view: &'v WorkerView<C>,
    wbuf: &mut Vec<u8>,
    (facts, ip, state, peer_port): (crate::rbac::Conn<'_>, &[u8], &filter::ConnState, u16),
    rec: Option<&mut StreamInfo>,
    (store, req_store): (
        &'v filter::set_headers::SetHeaders,
        &'v filter::set_headers::SetHeaders,
    ),
) -> Result<Option<Plan<'v>>, HeadError> {
    // Lent, not on the stack: the parsed headers stay borrowed across the chain's
    // awaits, and stack slots would be 8 KiB of every connection's future.
    let mut slots = crate::http::h1::slots::Lent::take();
    let Some(mut req) = request::parse(data, &l.limits, slots.slots())? else {
        return Ok(None);
    };
    // The `parse` phase ends here (`observe::phases`).
    let started = std::time::Instant::now();
    let parsed_at = Some(started);
    if req.minor == 0 {
        // Envoy's codec: HTTP/1.0 only if accepted, and a Host-less one gets the
        // configured default authority (for routing and upstream).
        if !l.own.accept_http_10 {
            return Err(HeadError::UpgradeRequired);
        }
        if let (true, Some(h)) = (req.authority.is_empty(), &l.own.default_host_for_http_10) {
            req.authority = h.as_bytes();
            req.target_authority = Some(h);
        }
    }
    let headers = req.headers;
    view.hooks
        .on_request(req.path.split('?').next().unwrap_or_default());
    let mut rec = rec;
    if let Some(rec) = rec.as_deref_mut() {
        rec.method.push_str(req.method);
        rec.path.push_str(req.path);
        rec.authority
            .push_str(std::str::from_utf8(req.authority).unwrap_or(""));
        if !req.is_connect() {
            if let Some(ua) = headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("user-agent"))
            {
                rec.user_agent
                    .push_str(std::str::from_utf8(ua.value).unwrap_or(""));
            }
        }
        rec.protocol = req.protocol();
    }
    let Some(table) = view.snapshot.route_tables.get(l.route_table) else {
        return Err(HeadError::NotImplemented("no route table"));
    };
    // The connection manager may strip the Host's port before routing (Envoy's
    // strip_any_host_port / strip_matching_host_port); the upstream then gets it so.
    let authority = if req.is_connect() {
        req.authority
    } else {
        router::strip_port(req.authority, l.strip_port)
    };
    let stripped = (authority.len() != req.authority.len())
        .then(|| std::str::from_utf8(authority).ok())
        .flatten();
    let view_req = router::Request {
        method: req.method,
        authority,
        path: req.path,
        scheme: "http",
        headers,
    };
    let route = if req.is_connect() {
        router::select_connect(table, &view_req)
    } else {
        router::select(table, &view_req)
    };
    // The filter chain runs on every routed or unrouted request; the router is last.
    let has_xfcc = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case(crate::http::xfcc::XFCC));
    let xff = || {
        headers
            .iter()
            .filter(|h| head::classify(h.name) == head::Special::XForwardedFor)
            .map(|h| h.value)
    };
    let internal = own_headers::is_internal(&l.own, &l.forwarding, facts.peer, xff());
    let mut edits = own_headers::stream_edits(&l.own, &l.forwarding, facts.tls, has_xfcc, internal);
    edits.store = Some(store);
    edits.request_store = Some(req_store);
    // Tracing: the span starts with the request head; its context goes upstream in
    // the request's stamp (`observe::trace`).
    let mut span = None;
    if let Some(t) = &l.tracing {
        let r = trace::Request {
            method: req.method,
            scheme: if facts.tls.is_some() { "https" } else { "http" },
            authority: req.authority,
            path: req.path,
            protocol: req.protocol(),
            peer: facts.peer,
            trusted: !l.own.sanitize_envoy_headers || internal,
            generates_request_id: false,
        };
        let header = |n: &str| {
            headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(n))
                .map(|h| h.value)
        };
        let r = trace::Request {
            generates_request_id: own_headers::generates_request_id(
                &l.own,
                &l.forwarding,
                header(crate::http::stamp::REQUEST_ID).is_some(),
                internal,
            ),
            ..r
        };
        let (out, s) = trace::start(t, &r, header);
        edits.request.stamp.trace = Some(out);
        span = s;
    }
    crate::http::xfcc::set(
        &l.forwarding,
        facts.tls,
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(crate::http::xfcc::XFCC))
            .map(|h| h.value),
        req_store,
        &mut edits.request,
    );
    let ctx = filter::RequestCtx {
        req: &view_req,
        conn: facts,
        forwarding: &l.forwarding,
        counters: &view.counters,
        state,
        grpc: Some(view),
        peer_port,
        protocol: req.protocol(),
        upstream: Some(view),
        body: req.framing.body != BodyKind::Empty && req.upgrade().is_none() && !req.is_connect(),
        stream_idle_timeout: l.stream_idle_timeout,
    };
    // The request's random value (Envoy's): the weighted cluster the filters see is the
    // one the router takes.
    let draw = router::random();
    let route_filters = route.map(|r| filter::RouteFilters {
        cluster: router::entry_cluster(r, draw),
        ..r.filters.view()
    });
    let status = filter::on_request_head(&l.http_filters, route_filters, &mut edits, &ctx).await;
    edits.chain.set_upstream(view);
    let (peer, tls) = (facts.peer, facts.tls.is_some());
    own_headers::finish_response_edits(&l.own, &mut edits);
    let decision = match status {
        filter::Status::Respond(reply) => {
            let mut p = plan(&req, l, Action::Filtered(reply), edits);
            p.parsed_at = parsed_at;
            p.route_name = route.and_then(|r| r.name.as_ref());
            p.span = span;
            return Ok(Some(p));
        }
        filter::Status::Continue => route.map(|r| router::resolve(table, r, &view_req, draw)),
    };
    let mut mirror = None;
    let mut upstream_duration = None;
    let mut priority = Default::default();
    // The cluster's `enable_trailers` (`Plan::up_trailers`).
    let mut up_trailers = false;
    let action = match decision {
        None => Action::NoRoute,
        // CONNECT goes to a route that allows it: a TCP tunnel to the cluster.
        Some(Decision::Forward(t)) if req.is_connect() => Action::Connect { cluster: t.cluster },
        Some(_) if req.is_connect() => Action::NoRoute,
        Some(Decision::Direct(d, location)) => Action::Direct(d, location),
        Some(Decision::Redirect { status, location }) => Action::Redirect { status, location },
        Some(Decision::ClusterNotFound { status }) => Action::ClusterNotFound(status),
        Some(Decision::Forward(t)) => 'route: {
            priority = t.priority;
            let framing = req.framing;
            // An upgrade passes only when the route allows its protocol and the
            // handshake carries no body. Any other upgrade request is refused (Envoy:
            // 403, upgrade_failed), never forwarded with the upgrade silently stripped.
            let upgrade = req.upgrade();
            if upgrade.is_some_and(|v| {
                framing.body != BodyKind::Empty
                    || !head::tokens(v).next().is_some_and(|p| {
                        t.upgrades
                            .iter()
                            .any(|u| p.eq_ignore_ascii_case(u.as_bytes()))
                    })
            }) {
                break 'route Action::UpgradeRefused;
            }
            let mut fwd = super::super::forwarding::decide(&l.forwarding, peer, xff());
            fwd.tls = tls;
            if let Some(r) = rec {
                // The client address the log reports (Envoy's downstream remote address).
                r.log.client = fwd.client;
            }
            if let (Some(s), Some(c)) = (span.as_deref_mut(), view.clusters.get(t.cluster)) {
                s.set_cluster(&c.cfg.name);
            }
            let honoured = Honoured {
                headers,
                edits: &edits.request,
            };
            // The route timeout, the stream's duration limit and the grpc-timeout that
            // goes upstream (`router::timeouts`).
            let grpc = is_grpc(headers);
            let grpc_timeout = headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(GRPC_TIMEOUT))
                .and_then(|h| timeouts::parse_grpc_timeout(h.value));
            let decided = timeouts::decide(
                t.timeout,
                &t.stream,
                l.max_stream_duration,
                grpc,
                grpc_timeout,
            );
            let timeout =
                crate::upstream::request::retry::timeout_header(&honoured).unwrap_or(decided.route);
            own_headers::proxied(&l.own, &l.forwarding, timeout, fwd.client, &mut edits);
            if grpc {
                edits.request.stamp.grpc_timeout = decided.grpc_timeout(timeout);
            }
            let ends_at = decided.duration.map(|d| started + d);
            let mut retry = RetryState::new(
                t.retries,
                &Honoured {
                    headers,
                    edits: &edits.request,
                },
                t.retries
                    .retries_request(|m| router::header_matches(m, &view_req)),
            );
            if let Some(r) = retry.as_mut() {
                // A per-try timeout is what the upstream may expect (Envoy's router).
                let expected = r.expect(timeout, decided.router_writes_grpc_timeout());
                let stamp = &mut edits.request.stamp;
                own_headers::expect_instead(
                    &l.own,
                    timeout,
                    expected,
                    grpc.then_some(&decided),
                    stamp,
                );
                r.route = route
                    .and_then(|r| r.stats)
                    .and_then(|i| view.route_stats.get(i))
                    .map(|s| &**s);
            }
            if crate::upstream::request::retry::carries_consumed(headers) {
                // The router consumes the retry headers (read above): they do not go
                // upstream, as in Envoy.
                upstream_duration =
                    crate::upstream::request::retry::stream_duration_header(&Honoured {
                        headers,
                        edits: &edits.request,
                    });
                edits.request = edits.request.then(&l.own.consumed_plan);
            }
            // A route without hash policies (nearly all) skips the cluster lookup.
            let hashing = !t.hash_policy.is_empty()
                && view
                    .clusters
                    .get(t.cluster)
                    .is_some_and(|c| c.cfg.lb_policy.hashing());
            let hash = match hashing {
                true => {
                    let conn = router::hash::Conn {
                        remote: router::hash::remote(
                            fwd.client,
                            std::net::SocketAddr::new(peer, peer_port),
                        ),
                        local: facts.local,
                    };
                    let h = router::hash::compute(t.hash_policy, &view_req, conn, Some(store));
                    // A generated cookie's Set-Cookie rides in the response's edits.
                    if !store.is_empty() {
                        edits.response.set = Some(store);
                    }
                    h
                }
                _ => None,
            };
            if let Some(r) = retry.as_mut() {
                r.hash = hash;
            }
            if retry.as_ref().is_some_and(|r| r.attempt_count_request) {
                edits.request.stamp.attempt_count = Some(1);
            }
            let to_h2 = view
                .clusters
                .get(t.cluster)
                .is_some_and(|c| c.cfg.protocol == UpstreamProtocol::Http2);
            let path = t.path.as_deref().unwrap_or(req.path);
            let host = t.host.or(stripped);
            if !t.shadows.is_empty() && upgrade.is_none() {
                // The shadow is the request as it goes upstream, in HTTP/2's form
                // (`http::mirror`); a head that has no such form is not mirrored.
                let rewrite = crate::upstream::request::http2::Rewrite {
                    path,
                    authority: host.map_or(req.authority, str::as_bytes),
                    original_path: t.path.is_some().then_some(req.path),
                    original_host: t.host.filter(|_| t.record_host).map(|_| authority),
                };
                mirror = crate::upstream::request::http2::request_from_h1(
                    &req,
                    &rewrite,
                    fwd,
                    edits.request,
                )
                .map(|r| {
                    Box::new(crate::http::mirror::Mirror {
                        req: r,
                        to: t.shadows,
                        timeout: t.timeout,
                        client_h2: false,
                    })
                });
            }
            let h2 = if to_h2 {
                // Built from the parsed head: never encoded as HTTP/1.1 and parsed again.
                let rewrite = crate::upstream::request::http2::Rewrite {
                    path,
                    authority: host.map_or(req.authority, str::as_bytes),
                    original_path: t.path.is_some().then_some(req.path),
                    original_host: t.host.filter(|_| t.record_host).map(|_| authority),
                };
                match crate::upstream::request::http2::request_from_h1(
                    &req,
                    &rewrite,
                    fwd,
                    edits.request,
                ) {
                    Some(r) => Some(Box::new(r)),
                    None => {
                        return Err(HeadError::BadRequest(
                            "request not valid for an HTTP/2 upstream",
                        ))
                    }
                }
            } else {
                wbuf.clear();
                encode::write_request(
                    wbuf,
                    &UpstreamRequest {
                        method: req.method,
                        path,
                        authority: host.or(req.target_authority),
                        headers,
                        has_connection_header: framing.has_connection_header,
                        forward: Forward {
                            append: fwd.append.map(|_| ip),
                            overwrite_proto: fwd.overwrite_proto,
                            scheme: fwd.scheme(),
                        },
                        upgrade,
                        edits: edits.request,
                        original_path: t.path.is_some().then_some(req.path),
                        original_host: t.host.filter(|_| t.record_host).map(|_| authority),
                    },
                );
                None
            };
            if let Some(m) = mirror.as_deref_mut() {
                // A request id the proxy made for the primary is the shadow's too.
                let id = match &h2 {
                    Some(r) => r.headers().get(REQUEST_ID).map(|v| v.as_bytes()),
                    None => written_request_id(wbuf),
                };
                if let Some(v) = id.and_then(|v| http::HeaderValue::from_bytes(v).ok()) {
                    m.req.headers_mut().insert(REQUEST_ID, v);
                }
            }
            up_trailers = view
                .clusters
                .get(t.cluster)
                .is_some_and(|c| c.cfg.h1_trailers);
            // An original_dst cluster's destination (`None` for other clusters).
            let dst = view.clusters.get(t.cluster).and_then(|c| {
                let header = |n: &str| {
                    let mut named = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(n));
                    named.next().map(|h| h.value)
                };
                original_dst::destination(&c.cfg, header, facts.local, |a| view.is_own_listener(a))
            });
            Action::Proxy {
                cluster: t.cluster,
                dst,
                timeout,
                ends_at,
                upgrade: upgrade.is_some(),
                h2,
                auto_host: t.auto_host,
                retry,
                hash,
            }
        }
    };
    let mut p = plan(&req, l, action, edits);
    p.parsed_at = parsed_at;
    p.mirror = mirror;
    p.upstream_duration = upstream_duration;
    p.priority = priority;
    p.up_trailers = up_trailers;
    p.span = span;
    p.route_name = route.and_then(|r| r.name.as_ref());
    p.route_stats = route.and_then(|r| r.stats);
    Ok(Some(p))
}

const REQUEST_ID: &str = crate::http::stamp::REQUEST_ID;
const GRPC_TIMEOUT: &str = crate::http::stamp::GRPC_TIMEOUT;

/// Whether a request is gRPC (its `content-type`, as Envoy's `isGrpcRequestHeaders`).
fn is_grpc(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-type")
            && crate::http::grpc_local::is_grpc_content_type(h.value)
    })
}

/// The last `x-request-id` value of an upstream head the HTTP/1 encoder wrote (the one
/// the proxy's stamp adds comes after the client's fields).
fn written_request_id(head: &[u8]) -> Option<&[u8]> {
    const FIELD: &[u8] = b"\r\nx-request-id: ";
    let at = head.windows(FIELD.len()).rposition(|w| w == FIELD)? + FIELD.len();
    let rest = head.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    rest.get(..end)
}

/// The plan for a parsed request.
fn plan<'v>(
    req: &request::RequestHead<'_, '_>,
    l: &'v HttpConnectionManager,
    action: Action<'v>,
    edits: StreamEdits<'v>,
) -> Plan<'v> {
    Plan {
        head_len: req.head_len,
        minor: req.minor,
        is_head: req.is_head(),
        idempotent: req.idempotent(),
        grpc: is_grpc(req.headers),
        framing: req.framing,
        action,
        idle_timeout: l.idle_timeout,
        stream_idle_timeout: l.stream_idle_timeout,
        response_edits: edits.response,
        span: None,
        parsed_at: None,
        route_name: None,
        route_stats: None,
        life: None,
        chain: edits.chain,
        codec_edits: own_headers::codec_reply_edits(&l.own),
        internal: edits.request.stamp.internal,
        mirror: None,
        tee: None,
        upstream_duration: None,
        priority: Default::default(),
        down_trailers: l.own.h1_trailers,
        up_trailers: false,
    }
}

/// The request headers the router honours: those the connection manager's sanitizing
/// (`sanitize_envoy_headers`) leaves in place.
struct Honoured<'h, 'b, 'e> {
    headers: &'h [httparse::Header<'b>],
    edits: &'e crate::http::filter::headers::Edits<'e>,
}

impl Headers for Honoured<'_, '_, '_> {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        // A sanitized name is not searched for at all.
        let kept = self.edits.keeps(name);
        let headers = if kept { self.headers } else { &[] };
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}
