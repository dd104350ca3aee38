//! How an HTTP/2 stream ends when the proxy answers it itself: local replies (plain
//! and gRPC trailers-only), failures from the shared table, expiry of the stream's
//! clocks, and the record of what happened (`Done`). Used by every HTTP/2 path
//! (`stream`, `to_h1`, `to_h2`, `connect`); it depends on none of them.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use super::clock::{Expiry, Progress};
use super::respond::Respond;
use crate::http::failure::Failure;
use crate::http::filter::headers::Edits;
use crate::http::flags::ResponseFlag;
use crate::http::grpc_local;
use crate::http::h1::head::HeadError;
use crate::observe::stats::{class_index, ClusterStats, EndpointStats};
use crate::upstream::cluster::ClusterState;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use std::net::SocketAddr;
use std::time::Duration;

/// How a stream ended, for stats and the access log.
pub(crate) struct Done {
    pub status: u16,
    pub flag: ResponseFlag,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream: Option<SocketAddr>,
    /// A gRPC request's `grpc-status`: the response's trailers, or its head for a
    /// trailers-only response, or the proxy's own reply's (Istio's
    /// `grpc_response_status`). Only read for gRPC requests.
    pub grpc_status: Option<u16>,
}

/// The `grpc-status` a header map carries (a number; anything else is none).
pub(crate) fn grpc_status(h: &HeaderMap) -> Option<u16> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// `grpc-timeout` as a duration (`router::timeouts::parse_grpc_timeout`).
pub(crate) fn grpc_timeout(h: &HeaderMap) -> Option<Duration> {
    crate::http::router::timeouts::parse_grpc_timeout(h.get("grpc-timeout")?.as_bytes())
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
pub(crate) fn fail(respond: &mut Respond, grpc: bool, f: Failure, edits: Edits<'_>) -> Done {
    fail_retried(respond, grpc, f, edits, false)
}

/// `fail`, with Envoy's text for a failure after retries when `retried`.
pub(crate) fn fail_retried(
    respond: &mut Respond,
    grpc: bool,
    f: Failure,
    edits: Edits<'_>,
    retried: bool,
) -> Done {
    let text = if retried { f.retried_body() } else { f.body() };
    respond.note_details(f.details());
    let mut edits = edits;
    if let Some(g) = f.grpc_status() {
        edits.stamp.grpc_status = Some(g);
    }
    local(
        respond,
        grpc,
        f.status(),
        None,
        &Bytes::from_static(text.as_bytes()),
        f.flag(),
        edits,
    )
}

/// Ends a stream whose route or idle clock ran out: the local reply (504 `UT`; 408 `SI`
/// while the request is still arriving, 504 `SI` once it arrived whole) if no response
/// head went out yet, else a RST_STREAM.
pub(crate) fn expired(
    respond: &mut Respond,
    grpc: bool,
    progress: &Progress,
    e: Expiry,
    edits: Edits<'_>,
) -> Done {
    let failure = progress.failure(e);
    respond.note_details(failure.details());
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
        grpc_status: None,
    }
}

/// Answers with a filter's local reply (`http::filter`), with the response edits.
pub(crate) fn filter_reply(
    respond: &mut Respond,
    grpc: bool,
    reply: &crate::http::filter::LocalReply,
    edits: Edits<'_>,
) -> Done {
    local(
        respond,
        grpc,
        reply.status,
        None,
        &reply.body_bytes(),
        reply.flag,
        edits,
    )
}

/// Answers a malformed request (`DPE`) with the rule it broke.
pub(crate) fn reject(respond: &mut Respond, grpc: bool, e: HeadError) -> Done {
    local(
        respond,
        grpc,
        e.status(),
        None,
        &Bytes::from_static(e.detail().as_bytes()),
        ResponseFlag::DownstreamProtocolError,
        Edits::none(),
    )
}

/// Sends a locally generated response; for gRPC requests a trailers-only response with
/// `grpc-status` and `grpc-message`. `edits` are the response header edits of the
/// stream's filter chain and route (direct responses and filter replies carry them).
pub(crate) fn local(
    respond: &mut Respond,
    grpc: bool,
    status: u16,
    content_type: Option<&str>,
    body: &Bytes,
    flag: ResponseFlag,
    edits: Edits<'_>,
) -> Done {
    local_at(respond, grpc, status, content_type, None, body, flag, edits)
}

/// A local reply with a `location` header (redirects; 201 and 3xx direct responses).
#[allow(clippy::too_many_arguments)]
pub(crate) fn local_at(
    respond: &mut Respond,
    grpc: bool,
    status: u16,
    content_type: Option<&str>,
    location: Option<&str>,
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
        grpc_status: None,
    };
    // The proxy's own reply: no upstream service time.
    let edits = edits.local_reply();
    let mut resp = Response::new(());
    if flag == ResponseFlag::UpstreamOverflow {
        // Envoy's router marks a reply to a request a circuit breaker refused.
        resp.headers_mut()
            .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
    }
    if grpc {
        // Envoy's gRPC form, for every status (`http::grpc_local`).
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        let g = u16::from(
            edits
                .stamp
                .grpc_status
                .unwrap_or_else(|| grpc_local::status(status)),
        );
        h.insert("grpc-status", HeaderValue::from(g));
        done.grpc_status = Some(g);
        if let Some(v) = grpc_local::message(body).and_then(|m| HeaderValue::from_str(&m).ok()) {
            h.insert("grpc-message", v);
        }
        if let Some(v) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
            h.insert(http::header::LOCATION, v);
        }
        done.status = 200;
        edits.apply_to_map(resp.headers_mut());
        if respond.send_local(resp, true, false).is_err() {
            done.flag = ResponseFlag::DownstreamConnectionTermination;
        }
        return done;
    }
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    if !body.is_empty() {
        let ct = HeaderValue::from_str(content_type.unwrap_or("text/plain"))
            .unwrap_or(HeaderValue::from_static("text/plain"));
        resp.headers_mut().insert(http::header::CONTENT_TYPE, ct);
        // Envoy's local reply has a Content-Length only with a body (an empty one ends
        // the stream on the HEADERS frame; HTTP/1 codecs add `content-length: 0`).
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    edits.apply_to_map(resp.headers_mut());
    match respond.send_local(resp, body.is_empty(), body.is_empty()) {
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

/// Ends the client's stream after an HTTP/1 upstream's body: its chunked trailers
/// (`raw`, at most `max_headers`) as an HTTP/2 trailers frame, else an empty
/// END_STREAM DATA frame; trailers that do not parse reset the stream (never ended
/// cleanly with trailers missing).
pub(crate) fn end_stream(
    send: &mut h2::SendStream<Bytes>,
    respond: &mut Respond,
    (raw, max_headers): (&[u8], usize),
    grpc: bool,
    done: &mut Done,
    stats: &ClusterStats,
) {
    let sent = match crate::upstream::request::http1::trailer_map(raw, max_headers) {
        Ok(Some(t)) => {
            if grpc {
                done.grpc_status = grpc_status(&t).or(done.grpc_status);
            }
            respond.keep_trailers(&t);
            send.send_trailers(t)
        }
        Ok(None) => send.send_data(Bytes::new(), true),
        Err(()) => {
            send.send_reset(h2::Reason::INTERNAL_ERROR);
            crate::upstream::request::count_late(stats, Failure::ProtocolError);
            done.flag = ResponseFlag::UpstreamProtocolError;
            Ok(())
        }
    };
    if sent.is_err() {
        done.flag = ResponseFlag::DownstreamConnectionTermination;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

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
