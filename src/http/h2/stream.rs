//! One HTTP/2 request stream: route it, answer locally or proxy it, count and log it.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::borrow::Cow;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;

use super::clock::Progress;
use crate::config::UpstreamProtocol;
use crate::http::failure::Failure;
use crate::http::filter::{self, Status};
use crate::http::flags::ResponseFlag;
use crate::http::forwarding;
use crate::http::own_headers;
use crate::http::router::{self, timeouts, Decision, Target};
use crate::http::view::{ChainRef, WorkerView};
use crate::observe::phases::Marks;
use crate::observe::stream_info::{self, StreamInfo};
use crate::observe::trace;
use crate::upstream::{original_dst, Connector};

use super::reply::{self, expired, fail, grpc_timeout, local, local_at, reject, Done};
use crate::http::hold::{self, Held};
use crate::http::mirror;
use crate::upstream::request::retry::RetryState;

pub(crate) async fn serve<C: Connector>(
    req: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    view: Rc<WorkerView<C>>,
    at: ChainRef,
    peer: SocketAddr,
    conn: &super::Activity,
) {
    let start = Instant::now();
    // The response head and trailers are copied as they go out only when the log
    // prints them.
    let mut respond =
        super::respond::Respond::new(respond, view.response_wants(at), &conn.log_buffers);
    // The worker hands this module only its own HTTP listeners' connections.
    let (Some(l), Some(stats)) = (view.hcm(at), view.listener_stats.get(at.listener)) else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    };
    let route_table = l.route_table;
    let (parts, mut body) = req.into_parts();
    // END_STREAM with the head: the request was whole at once (`%REQUEST_DURATION%` 0).
    let whole_at_head = body.is_end_stream();
    // The fields asked for by name below, from one pass over the names.
    let carried = super::request::Carried::of(&parts.headers);
    let grpc = carried.grpc;
    // A refused head is still logged, with what it carried.
    let (authority, path, is_connect, refused) =
        match super::request::check(&parts, &l.limits, carried.host) {
            Ok(c) => (c.authority, c.path, c.connect, None),
            Err(e) => (
                Cow::Borrowed(parts.uri.authority().map_or("", |a| a.as_str())),
                Cow::Borrowed(parts.uri.path()),
                false,
                Some(e),
            ),
        };
    // The self-time marks (`observe::phases`): the h2 codec decoded the head; its
    // checks are this stream's `parse` phase.
    let mut marks = Marks {
        accepted: conn.accepted.take(),
        parse_start: Some(start),
        parsed: Some(Instant::now()),
        ..Marks::default()
    };
    // The connection manager may strip the port before routing (Envoy's
    // strip_any_host_port / strip_matching_host_port); the upstream then gets it so.
    let stripped = !is_connect
        && router::strip_port(authority.as_bytes(), l.strip_port).len() != authority.len();
    // Still borrowed from the head when it was: the port is cut off its end.
    let authority = match authority {
        Cow::Borrowed(a) if stripped => {
            String::from_utf8_lossy(router::strip_port(a.as_bytes(), l.strip_port))
        }
        Cow::Owned(a) if stripped => Cow::Owned(
            String::from_utf8_lossy(router::strip_port(a.as_bytes(), l.strip_port)).into_owned(),
        ),
        a => a,
    };
    view.hooks.on_request(parts.uri.path());
    // The router's and the filters' view of the headers, in slots lent for the head
    // (no allocation per stream). They hold every field of a head that is routed: `check`
    // refused one with more than `max_headers` (at most `MAX_HEADERS_CAP`, the slots'
    // number), and a refused head is neither routed nor filtered.
    let mut slots = crate::http::h1::slots::Lent::take();
    let lookup = slots.fill(parts.headers.iter().map(|(n, v)| httparse::Header {
        name: n.as_str(),
        value: v.as_bytes(),
    }));
    let table = view.snapshot.route_tables.get(route_table);
    let view_req = router::Request {
        method: parts.method.as_str(),
        authority: authority.as_bytes(),
        path: &path,
        scheme: "http",
        headers: lookup,
    };
    let route = match table {
        _ if refused.is_some() => None,
        // CONNECT carries only :authority (host:port); the route must allow `connect`.
        Some(t) if is_connect => router::select_connect(t, &view_req),
        Some(t) => router::select(t, &view_req),
        None => None,
    };
    // The filter chain runs on every well-formed head, routed or not (a malformed one
    // was refused by the codec's rules before any filter sees it).
    // Response headers the filters set for this request (empty: no allocation).
    let store = filter::set_headers::SetHeaders::default();
    let req_store = filter::set_headers::SetHeaders::default();
    let has_xfcc = carried.xfcc;
    // Only a connection manager with internal addresses scans x-forwarded-for here.
    let internal = l.own.internal.is_some() && {
        let xff: Vec<&[u8]> =
            super::request::values_if(carried.xff, &parts.headers, "x-forwarded-for").collect();
        own_headers::is_internal(&l.own, &l.forwarding, peer.ip(), xff.iter().copied())
    };
    let tls = conn.tls.as_deref();
    let mut edits = own_headers::stream_edits(&l.own, &l.forwarding, tls, has_xfcc, internal);
    edits.store = Some(&store);
    edits.request_store = Some(&req_store);
    // The request's random value (Envoy's): the weighted cluster the filters see is the
    // one the router takes.
    let draw = router::random();
    // Tracing: the span starts with the request head; its context goes upstream in
    // the request's stamp (`observe::trace`).
    let mut span = None;
    if let (Some(t), None) = (&l.tracing, &refused) {
        let r = trace::Request {
            method: parts.method.as_str(),
            scheme: if conn.tls.is_some() { "https" } else { "http" },
            authority: authority.as_bytes(),
            path: &path,
            protocol: "HTTP/2",
            peer: peer.ip(),
            trusted: !l.own.sanitize_envoy_headers || internal,
            generates_request_id: own_headers::generates_request_id(
                &l.own,
                &l.forwarding,
                carried.request_id,
                internal,
            ),
        };
        let (out, s) = trace::start(t, &r, |n| parts.headers.get(n).map(|v| v.as_bytes()));
        edits.request.stamp.trace = Some(out);
        span = s;
    }
    crate::http::xfcc::set(
        &l.forwarding,
        conn.tls.as_deref(),
        super::request::values_if(carried.xfcc, &parts.headers, &crate::http::xfcc::XFCC_NAME),
        &req_store,
        &mut edits.request,
    );
    // `Some`: a filter answered the request itself.
    let filter_reply = if refused.is_some() {
        None
    } else {
        let route_filters = route.map(|r| filter::RouteFilters {
            cluster: router::entry_cluster(r, draw),
            ..r.filters.view()
        });
        let ctx = filter::RequestCtx {
            req: &view_req,
            conn: crate::rbac::Conn {
                peer: peer.ip(),
                local: conn.local.unwrap_or(peer),
                tls: conn.tls.as_deref(),
            },
            forwarding: &l.forwarding,
            counters: &view.counters,
            state: &conn.filters,
            grpc: Some(&*view),
            peer_port: peer.port(),
            protocol: "HTTP/2",
            upstream: Some(&*view),
            body: !whole_at_head && parts.method != http::Method::CONNECT,
            stream_idle_timeout: l.stream_idle_timeout,
        };
        match filter::on_request_head(&l.http_filters, route_filters, &mut edits, &ctx).await {
            Status::Continue => None,
            Status::Respond(reply) => Some(reply),
        }
    };
    own_headers::finish_response_edits(&l.own, &mut edits);
    // Copied out for the completion hook: the edits move into the proxied request.
    let mut chain = edits.chain;
    chain.set_upstream(&*view);
    let decision = match (table, route) {
        (Some(t), Some(r)) if filter_reply.is_none() => {
            Some(router::resolve(t, r, &view_req, draw))
        }
        _ => None,
    };
    // The request's hash for a hashing cluster, while the router's view of the head
    // is at hand.
    let hash = match &decision {
        Some(Decision::Forward(t)) if !is_connect => view.clusters.get(t.cluster).and_then(|c| {
            if !c.cfg.lb_policy.hashing() || t.hash_policy.is_empty() {
                return None;
            }
            let xff = view_req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
                .map(|h| h.value);
            let client = forwarding::decide(&l.forwarding, peer.ip(), xff).client;
            let conn = router::hash::Conn {
                remote: router::hash::remote(client, peer),
                local: conn.local.unwrap_or(peer),
            };
            router::hash::compute(t.hash_policy, &view_req, conn, Some(&store))
        }),
        _ => None,
    };
    // Whether the route's `retriable_request_headers` (if any) let this request be
    // retried, also read while the router's view of the head is at hand.
    let retriable_request = match &decision {
        Some(Decision::Forward(t)) => t
            .retries
            .retries_request(|m| router::header_matches(m, &view_req)),
        _ => true,
    };
    // A generated cookie's Set-Cookie rides in the response's edits.
    if !store.is_empty() {
        edits.response.set = Some(&store);
    }
    drop(slots);
    let decided_at = Instant::now();
    marks.decided = Some(decided_at);
    let mut upstream_marks = None;
    let mut request_done_at = None;
    let mut upstream_facts = (None, None, None);
    let mut retry_flag = None;
    let mut route_timeout = false;
    // What the log prints, or Istio reads, of the upstream connection: only that is read.
    let wants = view.upstream_wants(at);
    let mut upstream_cluster = None;
    // The route's stats (`observe::route_stats`), charged once the router picked a
    // cluster for the stream.
    let route_stats = route
        .and_then(|r| r.stats)
        .and_then(|i| view.route_stats.get(i))
        .map(|s| &**s);
    let mut charged_route = None;
    let mut cluster_name = None;
    // Envoy's `%RESPONSE_CODE_DETAILS%` of a route's own answer.
    let direct = matches!(
        &decision,
        Some(Decision::Direct(..) | Decision::Redirect { .. })
    );
    let done = match (refused, filter_reply, decision) {
        (Some(e), _, _) => reject(&mut respond, grpc, e),
        (None, Some(reply), _) => local(
            &mut respond,
            grpc,
            reply.status,
            None,
            &reply.body_bytes(),
            reply.flag,
            edits.response,
        ),
        (None, None, None) => fail(&mut respond, grpc, Failure::NoRoute, edits.response),
        (None, None, Some(Decision::Forward(t))) if is_connect => 'tunnel: {
            let Some(cs) = view.clusters.get(t.cluster) else {
                break 'tunnel fail(
                    &mut respond,
                    grpc,
                    Failure::NoHealthyUpstream,
                    edits.response,
                );
            };
            cluster_name = Some(cs.name.clone());
            charged_route = route_stats;
            // Tunnels are bounded by the idle timeout alone, as on HTTP/1.1.
            let progress =
                Rc::new(Progress::new(Duration::ZERO, l.idle_timeout).recording_upstream(wants));
            let _clock = conn.clocks.register(&progress);
            // Boxed, as the rare path it is (the stream's future is copied whole at
            // spawn, whatever path the stream then takes).
            let done = Box::pin(super::connect::tunnel(
                body,
                &mut respond,
                &view,
                cs,
                &progress,
                edits.response,
            ))
            .await;
            upstream_facts = (
                progress.upstream_local(),
                progress.transport_failure(),
                progress.upstream_tls(),
            );
            retry_flag = progress.retry_flag();
            done
        }
        (None, None, Some(Decision::Direct(d, location))) => local_at(
            &mut respond,
            grpc,
            d.status,
            d.content_type.as_deref(),
            location.as_deref(),
            &d.body,
            ResponseFlag::None,
            edits.response,
        ),
        (None, None, Some(Decision::Redirect { status, location })) => local_at(
            &mut respond,
            grpc,
            status,
            None,
            Some(&location),
            &Bytes::new(),
            ResponseFlag::None,
            edits.response,
        ),
        (None, None, Some(Decision::ClusterNotFound { status })) => {
            let f = Failure::ClusterNotFound { status };
            fail(&mut respond, grpc, f, edits.response)
        }
        (None, None, Some(Decision::Forward(t))) => 'proxy: {
            // Route indices are resolved against the same snapshot the view was built
            // from; an original_dst cluster then gives the state for this request's
            // destination (`upstream::original_dst`).
            let routed = view.clusters.get(t.cluster);
            let dst = routed.zip(conn.local).and_then(|(c, local)| {
                let header = |n: &str| parts.headers.get(n).map(|v| v.as_bytes());
                original_dst::destination(&c.cfg, header, local, |a| view.is_own_listener(a))
            });
            let Some(cs) = routed.map(|c| c.for_request(dst)) else {
                break 'proxy fail(
                    &mut respond,
                    grpc,
                    Failure::NoHealthyUpstream,
                    edits.response,
                );
            };
            let cs = &cs;
            cluster_name = Some(cs.name.clone());
            upstream_cluster = Some(t.cluster);
            charged_route = route_stats;
            if let Some(s) = span.as_deref_mut() {
                s.set_cluster(&cs.cfg.name);
            }
            // The route timeout, the stream's duration limit and the grpc-timeout that
            // goes upstream (`router::timeouts`).
            let decided = timeouts::decide(
                t.timeout,
                &t.stream,
                l.max_stream_duration,
                grpc,
                carried
                    .grpc_timeout
                    .then(|| grpc_timeout(&parts.headers))
                    .flatten(),
            );
            let mut timeout = decided.route;
            // Who the client is and what to add to x-forwarded-*: one policy for every
            // path (the incoming XFF values, in order, may span several fields).
            let xff: Vec<&[u8]> =
                super::request::values_if(carried.xff, &parts.headers, "x-forwarded-for").collect();
            let mut fwd = forwarding::decide(&l.forwarding, peer.ip(), xff.iter().copied());
            fwd.tls = conn.tls.is_some();
            drop(xff);
            // The route's rewrites: the upstream gets the new path and Host, and the
            // client's in x-envoy-original-path / -host, as Envoy sends them.
            // auto_host_rewrite: the endpoint is picked later, by the upstream side, so
            // here the Host is the hostname every endpoint of the cluster shares (the
            // HTTP/1 path uses the picked endpoint's own; see docs/configuration.md).
            let auto = t
                .auto_host
                .then(|| shared_hostname(&cs.cfg.endpoints))
                .flatten();
            let host = t.host.or(auto);
            let mut up_parts = None;
            if t.path.is_some() || host.is_some() || stripped {
                let mut p = parts.clone();
                let record = t.record_host || (t.host.is_none() && auto.is_some());
                rewrite_headers(
                    &mut p.headers,
                    &t,
                    host.is_some(),
                    record,
                    &path,
                    &authority,
                );
                if stripped {
                    // The authority travels without its port; a Host field would not.
                    p.headers.remove(http::header::HOST);
                }
                up_parts = Some(p);
            }
            let honoured = super::request::Honoured {
                headers: &parts.headers,
                edits: &edits.request,
                consumed: carried.consumed,
            };
            if let Some(h) = crate::upstream::request::retry::timeout_header(&honoured) {
                timeout = h;
            }
            own_headers::proxied(&l.own, &l.forwarding, timeout, fwd.client, &mut edits);
            if grpc {
                edits.request.stamp.grpc_timeout = decided.grpc_timeout(timeout);
            }
            if let Some(m) = edits.response.stamp.phases.as_mut() {
                *m = marks;
            }
            let honoured = super::request::Honoured {
                headers: &parts.headers,
                edits: &edits.request,
                consumed: carried.consumed,
            };
            let retry = RetryState::new(t.retries, &honoured, retriable_request).map(|mut r| {
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
                r.hash = hash;
                r.route = route_stats;
                r
            });
            let mut upstream_duration = None;
            if carried.consumed {
                // The router consumes the retry headers (read above): they do not go
                // upstream, as in Envoy.
                upstream_duration = crate::upstream::request::retry::stream_duration_header(
                    &super::request::Honoured {
                        headers: &parts.headers,
                        edits: &edits.request,
                        consumed: carried.consumed,
                    },
                );
                edits.request = edits.request.then(&l.own.consumed_plan);
            }
            if retry.as_ref().is_some_and(|r| r.attempt_count_request) {
                edits.request.stamp.attempt_count = Some(1);
            }
            // The stream's clocks start from the routing decision's clock read (one
            // read, where three calls in a row each made their own).
            let progress = Rc::new(
                Progress::new_at(timeout, l.stream_idle_timeout, decided_at)
                    .ending_at(decided.duration.map(|d| start + d))
                    .upstream_duration(upstream_duration)
                    .at_priority(t.priority)
                    .recording_upstream(wants),
            );
            // h2 answers `is_end_stream` under its connection's lock: a body that
            // ended stays ended, so the answer is asked for once it can have changed.
            let ended = whole_at_head || body.is_end_stream();
            if ended {
                // END_STREAM came with the headers: the request is already whole.
                progress.request_done_at(decided_at);
            }
            let _clock = conn.clocks.register_at(&progress, decided_at);
            // A chain with a request-body hook reads the body before anything goes
            // upstream (`http/hold.rs`), under the stream's clocks; the held body goes
            // with a Content-Length.
            let mut held = None;
            let mirrored = !t.shadows.is_empty();
            let mut held_trailers = None;
            if chain.holds_request_body() && !ended {
                match progress.run(hold::h2(&chain, &mut body, &progress)).await {
                    Ok(Held::Body((b, trailers))) => {
                        held_trailers = trailers;
                        // On the head that goes upstream (the route's rewrite, if any, or
                        // a copy of the client's: `authority` and `path` borrow that one).
                        let up = up_parts.get_or_insert_with(|| parts.clone());
                        up.headers.insert(
                            http::header::CONTENT_LENGTH,
                            http::HeaderValue::from(b.len()),
                        );
                        // A check on the body (ext_authz) edits the request's head.
                        if let Some(late) = chain.late_request_headers() {
                            late.apply_to_map(&mut up.headers);
                        }
                        progress.request_done();
                        held = Some(b);
                    }
                    Ok(Held::Reply(reply)) => {
                        let mut d = reply::filter_reply(&mut respond, grpc, &reply, edits.response);
                        d.bytes_received = progress.bytes_received();
                        break 'proxy d;
                    }
                    Ok(Held::Failed(_)) => {
                        respond.send_reset(h2::Reason::CANCEL);
                        break 'proxy Done {
                            status: 0,
                            flag: ResponseFlag::DownstreamConnectionTermination,
                            bytes_received: progress.bytes_received(),
                            bytes_sent: 0,
                            upstream: None,
                            grpc_status: None,
                        };
                    }
                    Err(e) => {
                        break 'proxy expired(&mut respond, grpc, &progress, e, edits.response)
                    }
                }
            }
            if chain.hooks().request_stream && !ended {
                // The chain rewrites the body as it streams (`http/request_stream.rs`):
                // its length is not known ahead, as in Envoy.
                let up = up_parts.get_or_insert_with(|| parts.clone());
                up.headers.remove(http::header::CONTENT_LENGTH);
            }
            let mut tee = None;
            if mirrored {
                let up = up_parts.as_ref().unwrap_or(&parts);
                // `up` is read here only: the shadow is built before the primary's
                // request, which then takes the shadow's request id.
                let upstream_path = t.path.as_deref().unwrap_or(&path);
                let shadow = crate::upstream::request::http2::request_from_h2(
                    up,
                    host.unwrap_or(&authority),
                    upstream_path,
                    fwd,
                    edits.request,
                );
                if let Some(r) = shadow {
                    // The primary carries the request id the shadow got (Envoy's shadow
                    // is a copy of the primary's headers).
                    if let Some(id) = r.headers().get(crate::http::stamp::REQUEST_ID) {
                        let up = up_parts.get_or_insert_with(|| parts.clone());
                        up.headers
                            .insert(crate::http::stamp::REQUEST_ID, id.clone());
                        edits.request.stamp.request_id = crate::http::stamp::RequestId::Off;
                    }
                    let m = mirror::Mirror {
                        req: r,
                        to: t.shadows,
                        timeout,
                        client_h2: true,
                    };
                    // A body at hand goes whole; one that streams is teed as it goes
                    // to the primary (`http::mirror`).
                    let body = match &held {
                        Some(b) => mirror::MirrorBody::Whole(b.clone(), held_trailers.clone()),
                        None if ended => mirror::MirrorBody::Whole(Bytes::new(), None),
                        None => mirror::MirrorBody::Teed,
                    };
                    tee = mirror::launch(&view, m, body);
                }
            }
            // Lent to the exchange, not moved into it: a request moved into an async
            // fn stays in its future twice (the argument and the local it becomes),
            // and every byte of the stream's future is copied when the stream starts.
            let mut req = super::to_h1::Request {
                parts: up_parts.as_ref().unwrap_or(&parts),
                body,
                ended: std::cell::Cell::new(ended),
                held,
                held_trailers,
                tee,
                authority: host.unwrap_or(&authority),
                path: t.path.as_deref().unwrap_or(&path),
                forwarding: fwd,
                grpc,
                max_headers: l.limits.max_headers,
                edits,
                retry,
                route_timeout: timeout,
                hash,
            };
            let done = match cs.cfg.protocol {
                UpstreamProtocol::Http1 => {
                    super::to_h1::proxy(&mut req, &mut respond, &view, cs, &progress).await
                }
                // Boxed: its future is the largest of the stream's states, and held
                // inline it would size (and be copied with) every stream's future,
                // those to an HTTP/1.1 upstream included.
                UpstreamProtocol::Http2 | UpstreamProtocol::Downstream => {
                    Box::pin(super::to_h2::proxy(
                        &mut req,
                        &mut respond,
                        &view,
                        cs,
                        &progress,
                    ))
                    .await
                }
            };
            upstream_marks = Some(progress.phase_marks());
            request_done_at = progress.completed_at();
            // Read only for a stream that ended `UT` (the check may read the clock).
            route_timeout =
                done.flag == ResponseFlag::UpstreamTimeout && progress.route_timed_out();
            upstream_facts = (
                progress.upstream_local(),
                progress.transport_failure(),
                progress.upstream_tls(),
            );
            retry_flag = progress.retry_flag();
            done
        }
    };
    if let Some(u) = upstream_marks {
        marks.set_upstream(u);
    }
    chain.on_complete(&filter::StreamEnd {
        status: done.status,
        flag: done.flag,
        bytes_received: done.bytes_received,
        bytes_sent: done.bytes_sent,
    });
    let trace_id = span.as_deref().map(|s| s.trace_id());
    if let Some(span) = span {
        let end = trace::End {
            status: done.status,
            flags: crate::observe::stream_info::ordered_flags(
                chain.flag(),
                retry_flag,
                Some(done.flag),
            ),
            bytes_received: done.bytes_received,
            bytes_sent: done.bytes_sent,
            upstream: done.upstream,
        };
        trace::finish(span, &end);
    }
    let log = view.access_log(at);
    let end = Instant::now();
    let mut info = StreamInfo {
        protocol: "HTTP/2",
        status: done.status,
        flag: Some(done.flag),
        filter_flag: chain.flag(),
        retry_flag,
        bytes_received: done.bytes_received,
        bytes_sent: done.bytes_sent,
        duration: end.saturating_duration_since(start),
        upstream: done.upstream,
        tls: conn.tls.clone(),
        grpc,
        grpc_status: done.grpc_status.filter(|_| grpc),
        phases: marks.times(Some(end)),
        ..StreamInfo::default()
    };
    if let Some(c) = upstream_cluster.and_then(|i| view.clusters.get(i)) {
        c.stats.rq_time.record(info.duration, &info.phases);
    }
    if let Some(r) = charged_route {
        r.charge(&crate::observe::route_stats::Ended {
            status: info.status,
            flag: info.flag,
            route_timeout,
            duration: info.duration,
            phases: &info.phases,
        });
    }
    let istio = view.istio(at);
    info.upstream_tls = upstream_facts.2;
    if log.is_some() {
        // The wall-clock start only the log prints (`%START_TIME%`), taken back from
        // the stream's duration: one clock read fewer on every stream that is not logged.
        info.start = SystemTime::now().checked_sub(info.duration);
        info.method = parts.method.as_str().to_string();
        info.path = path.into_owned();
        info.authority = authority.into_owned();
        info.user_agent = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        info.cluster = cluster_name;
        info.log.local = conn.local;
        info.log.connection_id = conn.id;
        let since_start = |t: Instant| t.saturating_duration_since(start);
        info.log.request_done = request_done_at
            .map(since_start)
            .or(whole_at_head.then_some(Duration::ZERO));
        // The upstream's response head went to the client (`Progress::head_sent`).
        info.log.response_began = upstream_marks.and_then(|m| m.2).map(since_start);
        if direct {
            info.log.details = "direct_response";
        }
        respond.into_log(&mut info.log);
        info.log
            .note_route(route.and_then(|r| r.name.as_ref()), trace_id);
        (info.log.upstream_local, info.log.transport_failure) =
            (upstream_facts.0, upstream_facts.1);
        if info.log.request_head.is_empty() {
            // It did not go upstream: the head as it came, with the x-request-id the
            // connection manager made for it even so (Envoy logs it), as on HTTP/1.
            let head = &mut info.log.request_head;
            stream_info::keep_header_map(head, &parts.headers);
            let id = crate::http::stamp::REQUEST_ID;
            let has = parts.headers.contains_key(id);
            if !has && own_headers::generates_request_id(&l.own, &l.forwarding, has, internal) {
                stream_info::LogFacts::add_header(head, id, &crate::http::stamp::uuid_v4());
            }
        }
    } else if istio.is_some() {
        // Istio's labels read the Host and the cluster.
        info.authority = authority.into_owned();
        info.cluster = cluster_name;
    }
    let istio = istio.map(|i| (i, info.cluster.as_deref().unwrap_or("")));
    stream_info::complete(stats, log, istio, &info, peer, stream_info::Kind::Request);
    if log.is_some() {
        conn.log_buffers.recycle(&mut info.log);
    }
}

/// The upstream request's headers after the route's rewrites: the client's path and
/// Host go in `x-envoy-original-path` / `x-envoy-original-host` (replacing any the
/// client sent; the Host only when `record_host`), and a Host field gives way to the
/// new authority.
fn rewrite_headers(
    h: &mut http::HeaderMap,
    t: &Target<'_>,
    new_host: bool,
    record_host: bool,
    path: &str,
    authority: &str,
) {
    if t.path.is_some() {
        if let Ok(v) = http::HeaderValue::from_str(path) {
            h.insert("x-envoy-original-path", v);
        }
    }
    if new_host {
        h.remove(http::header::HOST);
    }
    if record_host {
        if let Ok(v) = http::HeaderValue::from_str(authority) {
            h.insert("x-envoy-original-host", v);
        }
    }
}

/// The hostname every endpoint has, if they all have the same one.
fn shared_hostname(endpoints: &[crate::config::Endpoint]) -> Option<&str> {
    let first = endpoints.first()?.hostname.as_deref()?;
    endpoints
        .iter()
        .all(|e| e.hostname.as_deref() == Some(first))
        .then_some(first)
}
