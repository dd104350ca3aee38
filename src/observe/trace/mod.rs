//! Distributed tracing, as Envoy's HTTP connection manager does it with the
//! OpenTelemetry tracer: a span per request, its context propagated to the upstream,
//! finished spans exported over OTLP from a thread of their own.
//!
//! Where it sits on the request path: after the request head is parsed and before the
//! filter chain runs, a connection manager with tracing calls [`start`], which reads the
//! parent context (`context.rs`), decides sampling and returns the [`Outgoing`] context
//! that the upstream request's `http::stamp::Stamp` writes (`traceparent`, B3). A
//! sampled request also gets an [`ActiveSpan`] (one allocation, only when sampled), which
//! the connection manager finishes when the stream ends ([`finish`]); the finished span
//! goes to the exporter thread through the worker's lock-free queue (`export.rs`), which
//! builds and sends the OTLP messages (`otlp.rs`). An unsampled request costs the
//! header look-ups and a random number; a connection manager without tracing, one
//! branch.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub mod context;
pub mod export;
mod otlp;
mod span;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use self::context::{Outgoing, Propagation, SpanContext};
use self::span::{num, shown, tag, utf8, Tags};
use crate::http::flags::ResponseFlag;
use crate::http::stamp::REQUEST_ID;

/// Envoy's `x-client-trace-id`: a client asks for its request to be traced.
pub const CLIENT_TRACE_ID: &str = "x-client-trace-id";
/// Envoy's `x-envoy-force-trace`: trace this request (honoured from trusted peers).
pub const FORCE_TRACE: &str = "x-envoy-force-trace";

/// A connection manager's tracing (Envoy's HCM `tracing` with the OpenTelemetry
/// provider).
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// Server spans for inbound traffic, client spans for outbound (Envoy: the
    /// listener's `traffic_direction`).
    pub kind: SpanKind,
    /// Sampling, in hundredths of a percent (0..=10000), as Envoy's fractional
    /// percents: `random_sampling`, `client_sampling`, `overall_sampling`.
    pub random_sampling: u32,
    pub client_sampling: u32,
    pub overall_sampling: u32,
    pub propagation: Propagation,
    /// Tags added to every span (Envoy's `custom_tags`).
    pub custom_tags: Vec<CustomTag>,
    /// A custom tag is named like a tag the proxy sets, or like another custom tag
    /// (`tags_clash`): a span then looks its tags up, so a later value replaces an
    /// earlier one.
    pub tag_clash: bool,
    /// `http.url`'s path is cut to this many bytes (Envoy's `max_path_tag_length`).
    pub max_path_tag_length: usize,
    /// The node's id and zone, tagged on every span (Envoy's `node_id`, `zone`).
    pub node_id: String,
    pub zone: String,
    pub collector: Arc<Collector>,
}

/// Where and how finished spans are exported.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Collector {
    /// The collector's address (resolved when the config is built).
    pub addr: SocketAddr,
    /// The `Host` of the export requests.
    pub authority: String,
    /// OTLP/HTTP's path (`/v1/traces`); unused over gRPC.
    pub path: String,
    /// OTLP over HTTP/1.1 (protobuf) or over gRPC (HTTP/2).
    pub grpc: bool,
    /// The resource's `service.name`.
    pub service_name: String,
    /// A batch is sent when it holds this many spans...
    pub batch_spans: usize,
    /// ... or this long after its first span.
    pub flush_interval: Duration,
    /// Each worker's queue to the exporter holds this many spans; a span that finds it
    /// full is dropped and counted.
    pub queue_spans: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Server,
    Client,
}

impl SpanKind {
    /// Envoy's operation name, the span's name without a route decorator.
    pub fn operation(self) -> &'static str {
        match self {
            SpanKind::Server => "ingress",
            SpanKind::Client => "egress",
        }
    }
}

/// Envoy's `custom_tags`: a literal, or a request header's value (with a default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomTag {
    Literal {
        tag: String,
        value: String,
    },
    RequestHeader {
        tag: String,
        name: String,
        default: Option<String>,
    },
}

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
    let span = sampled_span(
        t,
        r,
        &header,
        &trace_id,
        &span_id,
        parent.as_ref(),
        &request_id,
    );
    (out, Some(span))
}

/// A sampled request's span, with the tags known at its start. Apart from `start`, so
/// that an unsampled request runs none of this code.
#[inline(never)]
fn sampled_span<'h>(
    t: &Arc<Tracing>,
    r: &Request<'_>,
    header: &impl Fn(&str) -> Option<&'h [u8]>,
    trace_id: &[u8; 16],
    span_id: &[u8; 8],
    parent: Option<&SpanContext>,
    request_id: &Option<[u8; 36]>,
) -> Box<ActiveSpan> {
    let authority = utf8(r.authority);
    let name: &[&[u8]] = match t.kind {
        SpanKind::Server => &[b"ingress"],
        // Envoy names an egress span after the host too.
        SpanKind::Client => &[b"egress ", &authority],
    };
    let writer = otlp::SpanWriter::new(
        trace_id,
        span_id,
        parent.map(|p| &p.span_id),
        t.kind == SpanKind::Client,
        name,
        SystemTime::now(),
    );
    let mut span = Box::new(ActiveSpan {
        collector: t.collector.clone(),
        trace_id: *trace_id,
        tags: Tags::new(writer, t.tag_clash),
    });
    let tags = &mut span.tags;
    if let Some(id) = request_id
        .as_ref()
        .map(|id| id.as_slice())
        .or_else(|| header(REQUEST_ID))
    {
        tags.tag_with(tag::REQUEST_ID, &[&utf8(id)]);
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
    let path = path.get(..cut).unwrap_or_default();
    tags.tag_with(
        tag::URL,
        &[r.scheme.as_bytes(), b"://", &authority, path.as_bytes()],
    );
    tags.tag(tag::METHOD, r.method);
    for (k, h) in [
        (
            tag::DOWNSTREAM_CLUSTER,
            "x-envoy-downstream-service-cluster",
        ),
        (tag::USER_AGENT, "user-agent"),
    ] {
        tags.tag_with(k, &[&utf8(header(h).unwrap_or(b"-"))]);
    }
    tags.tag(tag::PROTOCOL, r.protocol);
    tags.tag_with(tag::PEER_ADDRESS, &[shown(&r.peer, &mut [0; 64])]);
    if let Some(id) = header(CLIENT_TRACE_ID) {
        tags.tag_with(tag::CLIENT_TRACE_ID, &[&utf8(id)]);
    }
    tags.tag(tag::NODE_ID, &t.node_id);
    tags.tag(tag::ZONE, &t.zone);
    for c in &t.custom_tags {
        match c {
            CustomTag::Literal { tag, value } => {
                tags.tag(tag, value);
            }
            CustomTag::RequestHeader { tag, name, default } => {
                if let Some(v) = header(name) {
                    tags.tag_with(tag, &[&utf8(v)]);
                } else if let Some(d) = default {
                    tags.tag(tag, d);
                }
            }
        }
    }
    span
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
        match header(REQUEST_ID) {
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

/// A sampled request's span while the request runs.
pub struct ActiveSpan {
    collector: Arc<Collector>,
    trace_id: [u8; 16],
    tags: Tags,
}

impl ActiveSpan {
    /// The span's trace id (the access log's `%TRACE_ID%`).
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The upstream cluster the route chose (Envoy's `upstream_cluster` and
    /// `upstream_cluster.name` tags).
    pub fn set_cluster(&mut self, name: &str) {
        self.tags.set_cluster(name);
    }
}

/// Whether a span of these custom tags can set a key twice: a custom tag named like
/// one the proxy sets, or like another custom tag.
pub fn tags_clash(custom: &[CustomTag]) -> bool {
    custom.iter().enumerate().any(|(i, c)| {
        tag::ALL.contains(&c.tag())
            || custom
                .iter()
                .skip(i + 1)
                .any(|other| other.tag() == c.tag())
    })
}

impl CustomTag {
    /// The tag's key.
    pub fn tag(&self) -> &str {
        match self {
            CustomTag::Literal { tag, .. } | CustomTag::RequestHeader { tag, .. } => tag,
        }
    }
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
pub fn finish(mut span: ActiveSpan, end: &End) {
    span.tags
        .tag_with(tag::REQUEST_SIZE, &[num(end.bytes_received, &mut [0; 20])]);
    span.tags
        .tag_with(tag::RESPONSE_SIZE, &[num(end.bytes_sent, &mut [0; 20])]);
    span.tags.tag(tag::COMPONENT, "proxy");
    span.tags.tag_with(
        tag::STATUS_CODE,
        &[num(u64::from(end.status), &mut [0; 20])],
    );
    // Envoy's `toShortString`: `-`, `UF`, `URX,UC`.
    let mut set = end.flags.iter().flatten().map(|f| f.as_str().as_bytes());
    match (set.next(), set.next(), set.next()) {
        (None, _, _) => span.tags.tag(tag::RESPONSE_FLAGS, "-"),
        (Some(a), None, _) => span.tags.tag_with(tag::RESPONSE_FLAGS, &[a]),
        (Some(a), Some(b), None) => span.tags.tag_with(tag::RESPONSE_FLAGS, &[a, b",", b]),
        (Some(a), Some(b), Some(c)) => span
            .tags
            .tag_with(tag::RESPONSE_FLAGS, &[a, b",", b, b",", c]),
    };
    if end.status == 0 || end.status >= 500 {
        span.tags.tag(tag::ERROR, "true");
    }
    if let Some(a) = end.upstream {
        span.tags
            .tag_with(tag::UPSTREAM_ADDRESS, &[shown(&a, &mut [0; 64])]);
    }
    // The span was written on this worker as the request ran, so its bytes are in this
    // core's cache; the exporter only copies them.
    let bytes = span.tags.finish();
    export::submit(export::Encoded {
        collector: span.collector,
        bytes,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
            tag_clash: false,
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

    /// The span's fields and attributes, decoded from its bytes.
    fn decoded(span: ActiveSpan) -> opentelemetry_proto::tonic::trace::v1::Span {
        use opentelemetry_proto::tonic::trace::v1::ScopeSpans;
        use prost::Message;
        let bytes = span.tags.finish();
        let scope = ScopeSpans::decode(bytes.as_ref()).expect("a span field");
        scope.spans.into_iter().next().expect("one span")
    }

    fn attributes(s: &opentelemetry_proto::tonic::trace::v1::Span) -> Vec<(String, String)> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        s.attributes
            .iter()
            .map(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(v)) => (kv.key.clone(), v.clone()),
                    other => panic!("{}: {other:?}", kv.key),
                },
            )
            .collect()
    }

    /// The tags as Envoy sets them; the URL's path is cut at `max_path_tag_length` on a
    /// character boundary; a second route decision replaces the cluster's tags.
    #[test]
    fn a_span_carries_envoys_tags() {
        let t = Arc::new(Tracing {
            max_path_tag_length: 4,
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
        span.set_cluster("first");
        span.set_cluster("backend");
        let s = decoded(*span);
        assert_eq!(s.name, "ingress");
        assert_eq!(s.kind, 2);
        assert!(s.start_time_unix_nano > 0 && s.end_time_unix_nano >= s.start_time_unix_nano);
        let a = attributes(&s);
        let get = |k: &str| a.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("http.url"), Some("http://h/ab"));
        assert_eq!(get("http.method"), Some("GET"));
        assert_eq!(get("user_agent"), Some("curl"));
        assert_eq!(get("downstream_cluster"), Some("-"));
        assert_eq!(get("peer.address"), Some("127.0.0.1"));
        assert_eq!(get("upstream_cluster"), Some("backend"));
        assert_eq!(get("upstream_cluster.name"), Some("backend"));
        assert_eq!(get("guid:x-request-id").map(str::len), Some(36));
        assert_eq!(
            a.iter()
                .filter(|(k, _)| k.starts_with("upstream_cluster"))
                .count(),
            2
        );
    }

    /// Envoy's `setTag`: a custom tag named like one the proxy sets replaces its value
    /// in place, and a later one replaces it in turn; long values (two-byte lengths)
    /// move the tags after them.
    #[test]
    fn a_clashing_tag_replaces_the_earlier_value() {
        let long = "u".repeat(300);
        let custom_tags = vec![
            CustomTag::Literal {
                tag: "user_agent".into(),
                value: "again".into(),
            },
            CustomTag::Literal {
                tag: "extra".into(),
                value: long.clone(),
            },
            CustomTag::Literal {
                tag: "extra".into(),
                value: "short".into(),
            },
            CustomTag::Literal {
                tag: "component".into(),
                value: "mine".into(),
            },
        ];
        assert!(tags_clash(&custom_tags));
        assert!(!tags_clash(custom_tags.get(1..2).unwrap_or_default()));
        let t = Arc::new(Tracing {
            tag_clash: tags_clash(&custom_tags),
            custom_tags,
            ..(*tracing(10_000, 10_000)).clone()
        });
        let r = Request {
            method: "BREW",
            ..REQ
        };
        let ua = format!("agent-{long}");
        let (_, span) = start(&t, &r, |n: &str| {
            (n == "user-agent").then_some(ua.as_bytes())
        });
        let mut span = span.expect("sampled");
        span.set_cluster(&long);
        span.set_cluster("backend");
        for (k, v) in [
            ("request_size", "12"),
            ("response_size", "1099511627776"),
            ("http.status_code", "503"),
            ("error", "true"),
            ("upstream_address", "127.0.0.2:80"),
        ] {
            span.tags.tag_with(k, &[v.as_bytes()]);
        }
        span.tags.tag(tag::COMPONENT, "proxy");
        span.tags.tag(
            tag::RESPONSE_FLAGS,
            ResponseFlag::UpstreamRetryLimitExceeded.as_str(),
        );
        let a = attributes(&decoded(*span));
        let keys: Vec<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
        let get = |k: &str| a.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("user_agent"), Some("again"));
        assert_eq!(get("extra"), Some("short"));
        assert_eq!(get("component"), Some("proxy"));
        assert_eq!(get("http.method"), Some("BREW"));
        assert_eq!(get("upstream_cluster"), Some("backend"));
        assert_eq!(get("response_flags"), Some("URX"));
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
        // In place: user_agent where the proxy set it, before the protocol.
        let at = |k: &str| keys.iter().position(|n| *n == k);
        assert!(at("user_agent") < at("http.protocol"));
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
            decoded(*span.expect("sampled")).parent_span_id,
            [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
    }
}
