//! Distributed tracing, as Envoy's HTTP connection manager does it with the
//! OpenTelemetry tracer: a span per request, its context propagated to the upstream,
//! finished spans exported over OTLP from a thread of their own.
//!
//! Where it sits on the request path: after the request head is parsed and before the
//! filter chain runs, a connection manager with tracing calls [`start`], which reads the
//! parent context (`context.rs`), decides sampling and returns the [`Outgoing`] context
//! that the upstream request's `http::stamp::Stamp` writes (`traceparent`, B3). A
//! sampled request also gets an [`ActiveSpan`] (`span.rs`: a record and its text),
//! which the connection manager finishes when the stream ends ([`finish`]): the worker
//! hands the record to the exporter thread through its lock-free queue (`export.rs`),
//! which encodes it (`otlp.rs`), sends it in an OTLP request and gives the record back
//! for a later span. An unsampled request costs the
//! header look-ups and a random number; a connection manager without tracing, one
//! branch.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub mod context;
pub mod export;
mod model;
mod otlp;
mod span;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

pub use self::context::{Outgoing, Propagation, SpanContext};
pub use self::model::{Collector, CustomTag, SpanKind, Tracing};
pub use self::span::{ActiveSpan, Key};
use crate::http::flags::ResponseFlag;

/// Envoy's `x-client-trace-id`: a client asks for its request to be traced.
pub const CLIENT_TRACE_ID: &str = "x-client-trace-id";
/// Envoy's `x-envoy-force-trace`: trace this request (honoured from trusted peers).
pub const FORCE_TRACE: &str = "x-envoy-force-trace";

/// The request facts a span is started from.
pub struct Request<'r> {
    pub method: &'r str,
    pub scheme: &'r str,
    pub authority: &'r [u8],
    pub path: &'r str,
    pub protocol: &'static str,
    pub peer: IpAddr,
    /// `x-envoy-*` control headers from this peer are honoured (`x-envoy-force-trace`):
    /// the proxy does not strip them.
    pub trusted: bool,
    /// The proxy writes a fresh `x-request-id` upstream (Envoy's `generate_request_id`
    /// for a request without one, or an edge request's); otherwise the request keeps
    /// the one it came with, if any.
    pub generates_request_id: bool,
}

/// How Envoy's connection manager marks a request for tracing. Envoy keeps it in the
/// request's UUID `x-request-id` (the character at offset 14), so that the next hop
/// keeps the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TraceStatus {
    NoTrace,
    Sampled,
    Client,
    Forced,
}

impl TraceStatus {
    /// Envoy's UUID request-id extension's marks.
    fn mark(self) -> u8 {
        match self {
            TraceStatus::NoTrace => b'4',
            TraceStatus::Sampled => b'9',
            TraceStatus::Forced => b'a',
            TraceStatus::Client => b'b',
        }
    }

    fn of_mark(c: u8) -> TraceStatus {
        match c {
            b'9' => TraceStatus::Sampled,
            b'a' => TraceStatus::Forced,
            b'b' => TraceStatus::Client,
            _ => TraceStatus::NoTrace,
        }
    }
}

/// The length of a UUID request id; another id carries no trace decision.
const UUID_LEN: usize = 36;

/// Starts a request's span: the context the upstream request carries, and the span to
/// finish when the stream ends (`None`: not sampled, nothing to export).
pub fn start<'h>(
    t: &Arc<Tracing>,
    r: &Request<'_>,
    header: impl Fn(&str) -> Option<&'h [u8]>,
) -> (Outgoing, Option<Box<ActiveSpan>>) {
    let parent = context::extract(t.propagation, &header);
    let status = decide(t, r, &header);
    // Envoy 1.40's OpenTelemetry tracer: the connection manager's decision, and the
    // parent's sampled flag when there is a parent (either one off: not sampled).
    let sampled = status != TraceStatus::NoTrace && parent.and_then(|p| p.sampled).unwrap_or(true);
    let trace_id = parent.map_or_else(|| fastrand::u128(1..).to_be_bytes(), |p| p.trace_id);
    let span_id = fastrand::u64(1..).to_be_bytes();
    // Envoy's connection manager makes the request id before routing: a local reply's
    // span has it, and every upstream try and shadow carries the same one.
    let request_id = r.generates_request_id.then(|| {
        let mut id = crate::http::stamp::uuid_v4();
        if let Some(c) = id.get_mut(14) {
            *c = status.mark();
        }
        id
    });
    let out = Outgoing {
        trace_id,
        span_id,
        sampled,
        propagation: t.propagation,
        request_id_status: status.mark(),
        request_id,
    };
    if !sampled {
        return (out, None);
    }
    let parent_id = parent.map(|p| p.span_id);
    let mut span = export::spare()
        .unwrap_or_else(|| ActiveSpan::blank(t))
        .reuse(t, trace_id, span_id, parent_id);
    if t.kind == SpanKind::Client {
        // Envoy names an egress span after the host too.
        span.name = Cow::Owned(format!("egress {}", String::from_utf8_lossy(r.authority)));
    }
    if let Some(id) = &request_id {
        span.put_lossy(Key::RequestId, id);
    } else if let Some(id) = header(crate::http::stamp::REQUEST_ID) {
        span.put_lossy(Key::RequestId, id);
    }
    let path = header("x-envoy-original-path")
        .and_then(|p| std::str::from_utf8(p).ok())
        .unwrap_or(r.path);
    let cut = path
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|end| *end <= t.max_path_tag_length)
        .last()
        .unwrap_or(0);
    let at = span.mark();
    let text = span.text();
    text.push_str(r.scheme);
    text.push_str("://");
    span::push_lossy(text, r.authority);
    text.push_str(path.get(..cut).unwrap_or_default());
    span.close(Key::HttpUrl, at);
    span.put(Key::HttpMethod, r.method);
    for (k, h) in [
        (Key::DownstreamCluster, "x-envoy-downstream-service-cluster"),
        (Key::UserAgent, "user-agent"),
    ] {
        span.put_lossy(k, header(h).unwrap_or(b"-"));
    }
    span.put(Key::HttpProtocol, r.protocol);
    span.put_addr(Key::PeerAddress, span::Addr::Ip(r.peer));
    if let Some(id) = header(CLIENT_TRACE_ID) {
        span.put_lossy(Key::ClientTraceId, id);
    }
    span.put(Key::NodeId, &t.node_id);
    span.put(Key::Zone, &t.zone);
    for (i, c) in t.custom_tags.iter().enumerate() {
        match c {
            CustomTag::Literal { value, .. } => span.put_custom(i, value.as_bytes()),
            CustomTag::RequestHeader { name, default, .. } => {
                if let Some(v) = header(name).or(default.as_deref().map(str::as_bytes)) {
                    span.put_custom(i, v);
                }
            }
        }
    }
    (out, Some(span))
}

/// Envoy's connection manager's decision (`mutateTracingRequestHeader`). It needs a
/// UUID request id: a fresh one the proxy writes, or the request's own, whose mark an
/// earlier hop may have set (kept then). Otherwise: a client's `x-client-trace-id`
/// under `client_sampling`, a trusted `x-envoy-force-trace`, else `random_sampling`;
/// `overall_sampling` then caps all but a forced trace. A request whose id is not a
/// UUID (or that has none) is not traced, as in Envoy.
fn decide<'h>(
    t: &Tracing,
    r: &Request<'_>,
    header: impl Fn(&str) -> Option<&'h [u8]>,
) -> TraceStatus {
    let earlier = if r.generates_request_id {
        TraceStatus::NoTrace
    } else {
        match header(crate::http::stamp::REQUEST_ID) {
            Some(id) if id.len() == UUID_LEN => {
                TraceStatus::of_mark(id.get(14).copied().unwrap_or(b'4'))
            }
            _ => return TraceStatus::NoTrace,
        }
    };
    // Envoy rolls on the request id's first bits; a fresh roll has the same odds.
    let roll = fastrand::u32(..10_000);
    let status = if earlier != TraceStatus::NoTrace {
        earlier
    } else if header(CLIENT_TRACE_ID).is_some() && fastrand::u32(..10_000) < t.client_sampling {
        TraceStatus::Client
    } else if r.trusted && header(FORCE_TRACE).is_some() {
        TraceStatus::Forced
    } else if roll < t.random_sampling {
        TraceStatus::Sampled
    } else {
        TraceStatus::NoTrace
    };
    if status != TraceStatus::Forced && roll >= t.overall_sampling {
        return TraceStatus::NoTrace;
    }
    status
}

/// How the stream ended, for the span's last tags.
pub struct End {
    pub status: u16,
    /// The stream's flags in the order they were set (`stream_info::ordered_flags`).
    pub flags: [Option<ResponseFlag>; 3],
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream: Option<SocketAddr>,
}

/// Finishes a sampled span (Envoy's `finalizeDownstreamSpan`) and hands it to the
/// exporter thread; a full queue drops it and counts it.
pub fn finish(mut span: Box<ActiveSpan>, end: &End) {
    span.put_u64(Key::RequestSize, end.bytes_received);
    span.put_u64(Key::ResponseSize, end.bytes_sent);
    span.put(Key::Component, "proxy");
    span.put_u64(Key::HttpStatusCode, u64::from(end.status));
    // Envoy's `toShortString`: `-`, `UF`, `URX,UC`.
    let at = span.mark();
    let mut set = end.flags.iter().flatten();
    match set.next() {
        None => span.text().push('-'),
        Some(f) => {
            let text = span.text();
            text.push_str(f.as_str());
            for f in set {
                text.push(',');
                text.push_str(f.as_str());
            }
        }
    }
    span.close(Key::ResponseFlags, at);
    if end.status == 0 || end.status >= 500 {
        span.put(Key::Error, "true");
    }
    if let Some(a) = end.upstream {
        span.put_addr(Key::UpstreamAddress, span::Addr::Socket(a));
    }
    span.end = SystemTime::now();
    export::submit(span);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tracing(random: u32, overall: u32) -> Arc<Tracing> {
        Arc::new(Tracing {
            kind: SpanKind::Server,
            random_sampling: random,
            client_sampling: 10_000,
            overall_sampling: overall,
            propagation: Propagation {
                w3c: true,
                ..Propagation::default()
            },
            custom_tags: vec![],
            max_path_tag_length: 256,
            node_id: "n".into(),
            zone: String::new(),
            collector: Arc::new(Collector {
                addr: ([127, 0, 0, 1], 1).into(),
                authority: "c".into(),
                path: "/v1/traces".into(),
                grpc: false,
                service_name: "s".into(),
                batch_spans: 1,
                flush_interval: Duration::from_secs(1),
                queue_spans: 1,
            }),
        })
    }

    const REQ: Request<'static> = Request {
        method: "GET",
        scheme: "http",
        authority: b"h",
        path: "/p",
        protocol: "HTTP/1.1",
        peer: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        trusted: true,
        generates_request_id: true,
    };

    /// The span's values live in its text; a tag set again takes the new value; the
    /// URL's path is cut at `max_path_tag_length` on a character boundary; a custom tag
    /// with a standard tag's name takes its slot.
    #[test]
    fn tags_point_into_the_spans_text() {
        let t = Arc::new(Tracing {
            max_path_tag_length: 4,
            custom_tags: vec![
                CustomTag::Literal {
                    tag: "env".into(),
                    value: "test".into(),
                },
                CustomTag::RequestHeader {
                    tag: "zone".into(),
                    name: "x-zone".into(),
                    default: Some("z0".into()),
                },
            ],
            ..(*tracing(10_000, 10_000)).clone()
        });
        let r = Request {
            path: "/ab\u{e9}/x",
            ..REQ
        };
        let (_, span) = start(&t, &r, |n: &str| {
            (n == "user-agent").then_some(&b"curl"[..])
        });
        let mut span = span.expect("sampled");
        span.set_cluster("backend");
        span.put(Key::UserAgent, "again");
        let get = |k: &str| {
            span.attributes()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(get("http.url").as_deref(), Some("http://h/ab"));
        assert_eq!(get("http.method").as_deref(), Some("GET"));
        assert_eq!(get("user_agent").as_deref(), Some("again"));
        assert_eq!(get("downstream_cluster").as_deref(), Some("-"));
        assert_eq!(get("peer.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(get("upstream_cluster.name").as_deref(), Some("backend"));
        assert_eq!(get("env").as_deref(), Some("test"));
        assert_eq!(get("zone").as_deref(), Some("z0"));
        assert_eq!(
            span.attributes()
                .filter(|(k, _)| *k == "user_agent")
                .count(),
            1
        );
        assert_eq!(span.attributes().filter(|(k, _)| *k == "zone").count(), 1);
    }

    #[test]
    fn sampling_follows_envoy() {
        let none = |_: &str| None;
        assert!(start(&tracing(0, 10_000), &REQ, none).1.is_none());
        assert!(start(&tracing(10_000, 10_000), &REQ, none).1.is_some());
        assert!(start(&tracing(10_000, 0), &REQ, none).1.is_none());
        let force = |n: &str| (n == FORCE_TRACE).then_some(&b"1"[..]);
        assert!(start(&tracing(0, 0), &REQ, force).1.is_some());
        let untrusted = Request {
            trusted: false,
            ..REQ
        };
        assert!(start(&tracing(0, 10_000), &untrusted, force).1.is_none());
        let client = |n: &str| (n == CLIENT_TRACE_ID).then_some(&b"c"[..]);
        assert!(start(&tracing(0, 10_000), &REQ, client).1.is_some());
        // A parent's flag and the decision must both say yes (Envoy 1.40).
        let parent = |v: &'static [u8]| move |n: &str| (n == "traceparent").then_some(v);
        let off = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let on = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (out, span) = start(&tracing(10_000, 10_000), &REQ, parent(off));
        assert!(span.is_none() && !out.sampled);
        assert_eq!(out.trace_id[0], 0x4b);
        assert!(start(&tracing(0, 10_000), &REQ, parent(on)).1.is_none());
        // A kept request id: its mark decides; a non-UUID id is never traced.
        let kept = Request {
            generates_request_id: false,
            ..REQ
        };
        let rid = |v: &'static [u8]| move |n: &str| (n == "x-request-id").then_some(v);
        let marked = b"6e48c46f-55bb-9fc5-95b1-9799ce99f1bb";
        let (out, span) = start(&tracing(0, 10_000), &kept, rid(marked));
        assert!(span.is_some() && out.request_id_status == b'9');
        assert!(start(&tracing(10_000, 10_000), &kept, rid(b"rid"))
            .1
            .is_none());
        assert!(start(&tracing(10_000, 10_000), &kept, |_: &str| None)
            .1
            .is_none());
        let (out, span) = start(&tracing(10_000, 10_000), &REQ, parent(on));
        assert!(out.sampled);
        assert_eq!(
            span.unwrap().parent,
            Some([0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
    }
}
