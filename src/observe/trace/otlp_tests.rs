//! The hand-written encoding against the opentelemetry-proto crate's prost types.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::super::{ActiveSpan, Collector, CustomTag, Propagation, SpanKind, Tracing};
use super::{encode, encode_after, nanos};

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// The same request built as the crate's prost tree.
fn reference(service_name: &str, spans: &[Box<ActiveSpan>]) -> ExportTraceServiceRequest {
    let span = |f: &ActiveSpan| Span {
        trace_id: f.trace_id.to_vec(),
        span_id: f.span_id.to_vec(),
        parent_span_id: f.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: f.name.to_string(),
        kind: match f.tracing.kind {
            SpanKind::Server => span::SpanKind::Server as i32,
            SpanKind::Client => span::SpanKind::Client as i32,
        },
        start_time_unix_nano: nanos(f.start),
        end_time_unix_nano: nanos(f.end),
        attributes: f.attributes().map(|(k, v)| kv(k, &v)).collect(),
        ..Span::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service_name)],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: spans.iter().map(|s| span(s)).collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// A span of `kind` with `tags` (each a custom tag of its tracing config, which puts a
/// standard tag's name in its standard slot).
fn finished(
    i: u8,
    parent: bool,
    kind: SpanKind,
    tags: &[(&'static str, String)],
) -> Box<ActiveSpan> {
    let tracing = Arc::new(Tracing {
        kind,
        random_sampling: 10_000,
        client_sampling: 10_000,
        overall_sampling: 10_000,
        propagation: Propagation::default(),
        custom_tags: tags
            .iter()
            .map(|(k, v)| CustomTag::Literal {
                tag: (*k).into(),
                value: v.clone(),
            })
            .collect(),
        max_path_tag_length: 256,
        node_id: String::new(),
        zone: String::new(),
        collector: Arc::new(Collector {
            addr: "127.0.0.1:4318".parse().expect("an address"),
            authority: "collector".into(),
            path: "/v1/traces".into(),
            grpc: false,
            service_name: "proxy".into(),
            batch_spans: 5,
            flush_interval: Duration::from_secs(5),
            queue_spans: 1024,
        }),
    });
    let mut span = ActiveSpan::blank(&tracing).reuse(
        &tracing,
        [i; 16],
        [i.wrapping_add(1); 8],
        parent.then_some([7; 8]),
    );
    span.start = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789 + u64::from(i));
    for (n, (_, v)) in tags.iter().enumerate() {
        span.put_custom(n, v.as_bytes());
    }
    span.end = SystemTime::now();
    span
}

#[test]
fn the_bytes_are_the_crates_own_encoding() {
    let long = "v".repeat(300);
    let spans = vec![
        finished(1, false, SpanKind::Server, &[]),
        finished(
            2,
            true,
            SpanKind::Client,
            &[
                ("http.method", "GET".into()),
                ("component", "proxy".into()),
                ("empty", String::new()),
                ("upstream_cluster.name", long.clone()),
                ("", "no key".into()),
            ],
        ),
        finished(
            3,
            true,
            SpanKind::Server,
            &[("guid:x-request-id", "x".repeat(40))],
        ),
    ];
    let (first, rest) = spans.split_at(1);
    for (service, spans) in [
        ("proxy", spans.as_slice()),
        ("", first),
        (long.as_str(), rest),
        ("none", &[][..]),
    ] {
        let mut ours = vec![1, 2, 3];
        encode(service, spans, &mut ours);
        let theirs = reference(service, spans).encode_to_vec();
        assert_eq!(ours, theirs, "service {service:?}, {} spans", spans.len());
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).expect("decodes");
        assert_eq!(decoded, reference(service, spans));
        // Behind a prefix (the exporter's HTTP head or gRPC framing), appended to what
        // the buffer held, the same bytes follow; the prefix is told their length.
        let mut prefixed = b"kept".to_vec();
        let mut lens = vec![7; 9];
        encode_after(service, spans, &mut lens, &mut prefixed, |n, out| {
            out.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
        });
        let (kept, rest) = prefixed.split_at(4);
        let (len, body) = rest.split_at(4);
        assert_eq!(kept, b"kept");
        assert_eq!(
            u32::from_be_bytes(len.try_into().unwrap()) as usize,
            theirs.len()
        );
        assert_eq!(body, theirs.as_slice());
        assert_eq!(lens.len(), spans.len());
    }
}

/// A record given back by the exporter and started again (`ActiveSpan::reuse`) under
/// another config encodes as a new span would: nothing of the earlier span is left.
#[test]
fn a_reused_record_encodes_as_a_new_one() {
    let mut old = finished(
        4,
        true,
        SpanKind::Client,
        &[("env", "old".into()), ("zone", "z".repeat(500))],
    );
    old.name = "egress old".into();
    let fresh = finished(5, false, SpanKind::Server, &[("team", "new".into())]);
    let mut reused = old.reuse(&fresh.tracing, fresh.trace_id, fresh.span_id, None);
    reused.start = fresh.start;
    reused.put_custom(0, b"new");
    reused.end = fresh.end;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    encode("proxy", &[reused], &mut ours);
    encode("proxy", &[fresh], &mut theirs);
    assert_eq!(ours, theirs);
}
