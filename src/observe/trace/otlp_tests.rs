//! The hand-written encoding against the opentelemetry-proto crate's prost types.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::super::{Collector, Finished, SpanKind, Val};
use super::{encode, nanos, span_bytes};

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
fn reference(service_name: &str, spans: &[Finished]) -> ExportTraceServiceRequest {
    let span = |f: &Finished| Span {
        trace_id: f.trace_id.to_vec(),
        span_id: f.span_id.to_vec(),
        parent_span_id: f.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: f.name.to_string(),
        kind: match f.kind {
            SpanKind::Server => span::SpanKind::Server as i32,
            SpanKind::Client => span::SpanKind::Client as i32,
        },
        start_time_unix_nano: nanos(f.start),
        end_time_unix_nano: nanos(f.end),
        attributes: f.attributes().map(|(k, v)| kv(k, v)).collect(),
        ..Span::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service_name)],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: spans.iter().map(span).collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn finished(i: u8, parent: bool, kind: SpanKind, tags: &[(&'static str, String)]) -> Finished {
    Finished {
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
        kind,
        trace_id: [i; 16],
        span_id: [i.wrapping_add(1); 8],
        parent: parent.then_some([7; 8]),
        name: Cow::Borrowed("ingress"),
        start: UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789 + u64::from(i)),
        end: SystemTime::now(),
        text: tags.iter().map(|(_, v)| v.as_str()).collect(),
        tags: tags
            .iter()
            .scan(0u32, |at, (k, v)| {
                let start = *at;
                *at += v.len() as u32;
                Some((Cow::Borrowed(*k), Val::Text(start, *at)))
            })
            .collect(),
    }
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
    // A borrowed value among the span's own ones.
    let mut spans = spans;
    if let Some(s) = spans.get_mut(1) {
        s.tags
            .insert(1, (Cow::Borrowed("component"), Val::Static("proxy")));
    }
    let (first, rest) = spans.split_at(1);
    for (service, spans) in [
        ("proxy", spans.as_slice()),
        ("", first),
        (long.as_str(), rest),
        ("none", &[][..]),
    ] {
        let mut ours = vec![1, 2, 3];
        let encoded: Vec<Vec<u8>> = spans.iter().map(span_bytes).collect();
        encode(service, &encoded, &mut ours);
        let theirs = reference(service, spans).encode_to_vec();
        assert_eq!(ours, theirs, "service {service:?}, {} spans", spans.len());
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).expect("decodes");
        assert_eq!(decoded, reference(service, spans));
    }
}
