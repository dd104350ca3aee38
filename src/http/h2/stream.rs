//! One HTTP/2 request stream: route it, answer locally or proxy it, count and log it.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::clock::{Expiry, Progress};
use crate::config::{ListenerKind, RouteAction, UpstreamProtocol};
use crate::http::failure::Failure;
use crate::http::filter::headers::Edits;
use crate::http::filter::{self, Status, StreamEdits};
use crate::http::flags::ResponseFlag;
use crate::http::forwarding;
use crate::http::h1::head::HeadError;
use crate::http::router;
use crate::http::view::WorkerView;
use crate::observe::access_log::LogRecord;
use crate::observe::stats::{class_index, ClusterStats, EndpointStats};
use crate::upstream::cluster::ClusterState;
use crate::upstream::Connector;

/// How a stream ended, for stats and the access log.
pub(crate) struct Done {
    pub status: u16,
    pub flag: ResponseFlag,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream: Option<SocketAddr>,
}

pub(crate) fn is_grpc(h: &HeaderMap) -> bool {
    h.get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status for a local reply with this HTTP status (gRPC's HTTP mapping, with a
/// route timeout reported as DEADLINE_EXCEEDED).
fn grpc_status(status: u16, flag: ResponseFlag) -> u8 {
    match (status, flag) {
        (_, ResponseFlag::UpstreamTimeout) => 4,
        (400, _) => 13,
        (401, _) => 16,
        (403, _) => 7,
        (404, _) => 12,
        (429 | 502 | 503 | 504, _) => 14,
        _ => 2,
    }
}

/// `grpc-timeout` (RFC: 1-8 digits and a unit H M S m u n) as a duration.
pub(crate) fn grpc_timeout(h: &HeaderMap) -> Option<Duration> {
    let v = h.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    // `to_str` succeeded, so every byte is visible ASCII and any split is on a boundary.
    let (num, unit) = v.split_at_checked(v.len() - 1)?;
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Counts a response with `status` in its class for the cluster.
pub(crate) fn count_class(stats: &ClusterStats, status: u16) {
    if let Some(c) = stats.rq_class.get(class_index(status)) {
        c.inc();
    }
}

/// The endpoint `ep` of a cluster: its config and counters (`None` cannot happen for an
/// index the cluster's load balancer picked).
pub(crate) fn endpoint<C>(
    cs: &ClusterState<C>,
    ep: usize,
) -> Option<(&crate::config::Endpoint, &EndpointStats)> {
    Some((cs.cfg.endpoints.get(ep)?, cs.endpoints.get(ep)?))
}

/// Answers a stream that failed before its response head went out, with the status,
/// flag and text of the one failure table (`http::failure`).
/// `edits`: the response edits of the route and the filter chain, which Envoy applies to
/// its own replies too.
pub(crate) fn fail(
    respond: &mut SendResponse<Bytes>,
    grpc: bool,
    f: Failure,
    edits: Edits<'_>,
) -> Done {
    local(
        respond,
        grpc,
        f.status(),
        None,
        &Bytes::from_static(f.body().as_bytes()),
        f.flag(),
        edits,
    )
}

/// Ends a stream whose route or idle clock ran out: the local reply (504 `UT`; 408 `SI`
/// while the request is still arriving, 504 `SI` once it arrived whole) if no response
/// head went out yet, else a RST_STREAM.
pub(crate) fn expired(
    respond: &mut SendResponse<Bytes>,
    grpc: bool,
    progress: &Progress,
    e: Expiry,
    edits: Edits<'_>,
) -> Done {
    let failure = match e {
        Expiry::Route => Failure::RouteTimeout,
        Expiry::Idle => Failure::StreamIdle {
            request_complete: progress.request_complete(),
        },
    };
    let flag = failure.flag();
    let status = progress.status();
    if status == 0 {
        let mut d = fail(respond, grpc, failure, edits);
        d.bytes_received = progress.bytes_received();
        return d;
    }
    respond.send_reset(h2::Reason::INTERNAL_ERROR);
    Done {
        status,
        flag,
        bytes_received: progress.bytes_received(),
        bytes_sent: progress.bytes_sent(),
        upstream: None,
    }
}

/// Answers a malformed request (`DPE`) with the rule it broke.
pub(crate) fn reject(respond: &mut SendResponse<Bytes>, grpc: bool, e: HeadError) -> Done {
    local(
        respond,
        grpc,
        e.status(),
        None,
        &Bytes::from_static(e.reason().as_bytes()),
        ResponseFlag::DownstreamProtocolError,
        Edits::none(),
    )
}

/// Sends a locally generated response; for gRPC requests a trailers-only response with
/// `grpc-status` and `grpc-message`. `edits` are the response header edits of the
/// stream's filter chain and route (direct responses and filter replies carry them).
pub(crate) fn local(
    respond: &mut SendResponse<Bytes>,
    grpc: bool,
    status: u16,
    content_type: Option<&str>,
    body: &Bytes,
    flag: ResponseFlag,
    edits: Edits<'_>,
) -> Done {
    let mut done = Done {
        status,
        flag,
        bytes_received: 0,
        bytes_sent: 0,
        upstream: None,
    };
    let mut resp = Response::new(());
    if grpc && status >= 400 {
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from(u16::from(grpc_status(status, flag))),
        );
        let msg = String::from_utf8_lossy(body)
            .trim()
            .replace(['\r', '\n'], " ");
        if let Ok(v) = HeaderValue::from_str(&msg) {
            h.insert("grpc-message", v);
        }
        done.status = 200;
        edits.apply_to_map(resp.headers_mut());
        if respond.send_response(resp, true).is_err() {
            done.flag = ResponseFlag::DownstreamConnectionTermination;
        }
        return done;
    }
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !body.is_empty() {
        let ct = HeaderValue::from_str(content_type.unwrap_or("text/plain"))
            .unwrap_or(HeaderValue::from_static("text/plain"));
        resp.headers_mut().insert(http::header::CONTENT_TYPE, ct);
    }
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    edits.apply_to_map(resp.headers_mut());
    match respond.send_response(resp, body.is_empty()) {
        Ok(mut s) => {
            if !body.is_empty() {
                // A local body is small; the initial window always fits it.
                s.reserve_capacity(body.len());
                if s.send_data(body.clone(), true).is_err() {
                    done.flag = ResponseFlag::DownstreamConnectionTermination;
                }
            }
            done.bytes_sent = body.len() as u64;
        }
        Err(_) => done.flag = ResponseFlag::DownstreamConnectionTermination,
    }
    done
}

pub(crate) async fn serve<C: Connector>(
    req: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    view: Rc<WorkerView<C>>,
    listener: usize,
    peer: SocketAddr,
) {
    let start = Instant::now();
    let started = SystemTime::now();
    // The worker hands this module only its own HTTP listeners' connections.
    let (Some(l), Some(stats)) = (
        view.snapshot.listeners.get(listener),
        view.listener_stats.get(listener),
    ) else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    };
    let ListenerKind::Http { route_table } = l.kind else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    };
    let (parts, body) = req.into_parts();
    let grpc = is_grpc(&parts.headers);
    // A refused head is still logged, with what it carried.
    let (authority, path, is_connect, refused) = match super::request::check(&parts, &l.limits) {
        Ok(c) => (c.authority, c.path, c.connect, None),
        Err(e) => (
            parts
                .uri
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            parts.uri.path().to_string(),
            false,
            Some(e),
        ),
    };
    view.hooks.on_request(parts.uri.path());
    let lookup: Vec<httparse::Header<'_>> = parts
        .headers
        .iter()
        .map(|(n, v)| httparse::Header {
            name: n.as_str(),
            value: v.as_bytes(),
        })
        .collect();
    let table = view.snapshot.route_tables.get(route_table);
    let route = if refused.is_some() {
        None
    } else if is_connect {
        // CONNECT carries only :authority (host:port); the route must allow `connect`.
        table.and_then(|t| router::select_connect(t, authority.as_bytes(), &lookup))
    } else {
        table.and_then(|t| router::select(t, authority.as_bytes(), &path, &lookup))
    };
    drop(lookup);
    let action = route.map(|r| &r.action);
    // The filter chain runs on every well-formed head, routed or not (a malformed one
    // was refused by the codec's rules before any filter sees it).
    let mut edits = StreamEdits::default();
    // `Some`: a filter answered the request itself.
    let filter_reply = if refused.is_some() {
        None
    } else {
        let route_filters = route.map(|r| r.filters.view());
        match filter::on_request_head(&l.http_filters, route_filters, &mut edits).await {
            Status::Continue => None,
            Status::Respond(reply) => Some(reply),
        }
    };
    let mut cluster_name = None;
    let done = match (refused, filter_reply, action) {
        (Some(e), _, _) => reject(&mut respond, grpc, e),
        (None, Some(reply), _) => local(
            &mut respond,
            grpc,
            reply.status,
            None,
            &Bytes::from_static(reply.body.as_bytes()),
            reply.flag,
            edits.response,
        ),
        (None, None, None) => fail(&mut respond, grpc, Failure::NoRoute, edits.response),
        (None, None, Some(RouteAction::Cluster { cluster, .. })) if is_connect => 'tunnel: {
            let Some(cs) = view.clusters.get(*cluster) else {
                break 'tunnel fail(
                    &mut respond,
                    grpc,
                    Failure::NoHealthyUpstream,
                    edits.response,
                );
            };
            cluster_name = Some(cs.name.clone());
            // Tunnels are bounded by the idle timeout alone, as on HTTP/1.1.
            let progress = Progress::new(start, Duration::ZERO, l.idle_timeout);
            super::connect::tunnel(body, &mut respond, &view, cs, &progress, edits.response).await
        }
        (None, None, Some(RouteAction::Direct(d))) => local(
            &mut respond,
            grpc,
            d.status,
            d.content_type.as_deref(),
            &d.body,
            ResponseFlag::None,
            edits.response,
        ),
        (
            None,
            None,
            Some(RouteAction::Cluster {
                cluster, timeout, ..
            }),
        ) => 'proxy: {
            // Route indices are resolved against the same snapshot the view was built from.
            let Some(cs) = view.clusters.get(*cluster) else {
                break 'proxy fail(
                    &mut respond,
                    grpc,
                    Failure::NoHealthyUpstream,
                    edits.response,
                );
            };
            cluster_name = Some(cs.name.clone());
            let mut timeout = *timeout;
            if let Some(g) = grpc.then(|| grpc_timeout(&parts.headers)).flatten() {
                if timeout.is_zero() || g < timeout {
                    timeout = g;
                }
            }
            // Who the client is and what to add to x-forwarded-*: one policy for every
            // path (the incoming XFF values, in order, may span several fields).
            let xff: Vec<&[u8]> = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            let fwd = forwarding::decide(&l.forwarding, peer.ip(), xff.iter().copied());
            let progress = Progress::new(start, timeout, l.stream_idle_timeout);
            if body.is_end_stream() {
                // END_STREAM came with the headers: the request is already whole.
                progress.request_done();
            }
            let req = super::to_h1::Request {
                parts: &parts,
                body,
                authority: &authority,
                path: &path,
                forwarding: fwd,
                grpc,
                max_headers: l.limits.max_headers,
                edits,
            };
            match cs.cfg.protocol {
                UpstreamProtocol::Http1 => {
                    super::to_h1::proxy(req, &mut respond, &view, cs, &progress).await
                }
                UpstreamProtocol::Http2 | UpstreamProtocol::Downstream => {
                    super::to_h2::proxy(req, &mut respond, &view, cs, &progress).await
                }
            }
        }
    };
    let elapsed = start.elapsed();
    stats.bytes_received.add(done.bytes_received);
    stats.bytes_sent.add(done.bytes_sent);
    stats.request_done(done.status, done.flag, elapsed.as_micros() as u64);
    if let Some(sink) = view.access_logs.get(listener).and_then(Option::as_ref) {
        let rec = LogRecord {
            start: Some(started),
            method: parts.method.as_str().to_string(),
            path,
            authority,
            user_agent: parts
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            protocol: "HTTP/2",
            status: done.status,
            flag: Some(done.flag),
            bytes_received: done.bytes_received,
            bytes_sent: done.bytes_sent,
            duration: elapsed,
            upstream: done.upstream,
            cluster: cluster_name,
        };
        sink.log(&rec, peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                "grpc-timeout",
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
            grpc_timeout(&h)
        };
        assert_eq!(t("200m"), Some(Duration::from_millis(200)));
        assert_eq!(t("1S"), Some(Duration::from_secs(1)));
        assert_eq!(t("123456789S"), None);
        assert_eq!(t("S"), None);
        assert_eq!(t("5x"), None);
        assert_eq!(t("é"), None);
    }
}
