//! The headers the connection manager and the router write themselves, as Envoy does by
//! default: `date` on every response sent downstream (when the upstream sent none),
//! `x-envoy-upstream-service-time` on proxied responses, and on upstream requests
//! `x-request-id`, `x-envoy-expected-rq-timeout-ms` and `x-envoy-external-address`.
//! (`server` and the sanitizing of incoming `x-envoy-*` headers are static, so they are
//! ordinary `HeaderPlan`s compiled per connection manager: `config::OwnHeaders`.)
//!
//! A `Stamp` (`http::stamp`) says which of these one message gets; this file decides it
//! from the connection manager's `config::OwnHeaders` and the stream's route.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::{Forwarding, OwnHeaders};
use crate::http::filter::headers::Edits;
use crate::http::filter::StreamEdits;
use crate::http::stamp::{RequestId, Stamp};
use crate::http::xfcc;
use crate::tls::TlsInfo;

/// A stream's edits before its filter chain runs: the sanitizing removals go first, so
/// a filter or route may still add what they remove (as in Envoy, where the connection
/// manager sanitizes before the filters run).
/// The sanitizing plan keeps or removes `x-forwarded-client-cert` as the connection
/// manager's `forward_client_cert_details` says for this connection (`http::xfcc`),
/// for a request that carries one (`has_xfcc`); one that does not gets the plan
/// without the removal, so that on a listener that sanitizes nothing else its edits
/// stay empty and the encoders keep their fast path.
/// `internal`: the client is internal (`forwarding::is_internal`).
pub fn stream_edits<'c>(
    own: &'c OwnHeaders,
    fwd: &Forwarding,
    tls: Option<&TlsInfo>,
    has_xfcc: bool,
    internal: bool,
) -> StreamEdits<'c> {
    let mut e = StreamEdits::default();
    let plan = match own.internal.as_deref().filter(|_| internal) {
        _ if has_xfcc => xfcc::request_plan(own, fwd, tls, internal),
        Some(i) => &i.plan_keeping_xfcc,
        None => &own.request_plan_keeping_xfcc,
    };
    e.request = e.request.then(plan);
    e.request.stamp.internal = internal && own.internal.is_some();
    e
}

/// Whether the request's client is internal (`forwarding::is_internal`); false at
/// once, with nothing scanned, when the connection manager has no internal addresses.
pub fn is_internal<'a, I>(own: &OwnHeaders, fwd: &Forwarding, peer: IpAddr, xff: I) -> bool
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    own.internal
        .as_deref()
        .is_some_and(|i| crate::http::forwarding::is_internal(fwd, &i.cidrs, peer, xff))
}

/// After the filter chain and the route: `server` applies last (Envoy sets it when it
/// encodes the response, after every filter), and `date`.
pub fn finish_response_edits<'c>(own: &'c OwnHeaders, e: &mut StreamEdits<'c>) {
    e.response = e.response.then(&own.response_plan);
    e.response.stamp.date = own.date;
}

/// The router's `x-envoy-expected-rq-timeout-ms`: the timeout the upstream may expect
/// (zero: none, no header), unless the connection manager suppresses Envoy's headers.
pub fn expect(own: &OwnHeaders, timeout: Duration, s: &mut Stamp) {
    if own.envoy_headers {
        s.expected_timeout_ms =
            (!timeout.is_zero()).then(|| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
    }
}

/// A retry policy's per-try timeout as what the upstream may expect in place of the
/// route timeout `route` (`expected`, from `RetryState::expect`): the stamp's
/// `x-envoy-expected-rq-timeout-ms`, and the router's `grpc-timeout` (`grpc`: the
/// request's decided timeouts, for a gRPC request). Nothing when they are the same.
pub fn expect_instead(
    own: &OwnHeaders,
    route: Duration,
    expected: Duration,
    grpc: Option<&crate::http::router::timeouts::Decided>,
    s: &mut Stamp,
) {
    if expected == route {
        return;
    }
    expect(own, expected, s);
    if let Some(d) = grpc {
        s.grpc_timeout = d.grpc_timeout(expected);
    }
}

/// A request going to an upstream with a route `timeout` (zero: none), whose client
/// the forwarding policy found to be `client`: its request id, the router's headers
/// and the edge request's external address.
pub fn proxied(
    own: &OwnHeaders,
    fwd: &Forwarding,
    timeout: Duration,
    client: Option<IpAddr>,
    e: &mut StreamEdits<'_>,
) {
    // An edge request: from an external client (with no internal addresses configured,
    // Envoy 1.40's default, every client) to a `use_remote_address` listener.
    let edge = fwd.use_remote_address && !e.request.stamp.internal;
    let s = &mut e.request.stamp;
    s.request_id = match (
        own.generate_request_id,
        edge && !own.preserve_external_request_id,
    ) {
        (false, _) => RequestId::Off,
        (true, true) => RequestId::Always,
        (true, false) => RequestId::IfAbsent,
    };
    if own.envoy_headers {
        expect(own, timeout, s);
        e.response.stamp.service_since = Some(Instant::now());
    }
    if own.phases_header {
        // Filled in by the upstream side when the response head goes.
        e.response.stamp.phases = Some(crate::observe::phases::Marks::default());
    }
    if own.sanitize_envoy_headers && edge {
        s.external_address = client;
    }
}

/// Whether a proxied request gets a fresh `x-request-id` (as [`proxied`] decides it),
/// given whether it came with one: tracing reads its decision from that id.
pub fn generates_request_id(
    own: &OwnHeaders,
    fwd: &Forwarding,
    has_one: bool,
    internal: bool,
) -> bool {
    let edge = fwd.use_remote_address && !internal;
    own.generate_request_id && (!has_one || (edge && !own.preserve_external_request_id))
}

/// The edits of a reply the codec makes (a malformed request, HTTP/1.0 refused, a
/// request head timeout): `server` and `date` only.
pub fn codec_reply_edits(own: &OwnHeaders) -> Edits<'_> {
    let mut e = Edits::none().then(&own.response_plan);
    e.stamp.date = own.date;
    e
}
