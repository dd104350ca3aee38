//! The hand-written encoding against the opentelemetry-proto crate's prost types.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::super::SpanKind;
use super::{encode, nanos, SpanBytes, SpanWriter};

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// A span's inputs, from which both encodings are made.
struct Input {
    kind: SpanKind,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    start: SystemTime,
    end: SystemTime,
    tags: Vec<(String, String)>,
}

/// The same request built as the crate's prost tree.
fn reference(service_name: &str, spans: &[Input]) -> ExportTraceServiceRequest {
    let span = |f: &Input| Span {
        trace_id: f.trace_id.to_vec(),
        span_id: f.span_id.to_vec(),
        parent_span_id: f.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: f.name.clone(),
        kind: match f.kind {
            SpanKind::Server => span::SpanKind::Server as i32,
            SpanKind::Client => span::SpanKind::Client as i32,
        },
        start_time_unix_nano: nanos(f.start),
        end_time_unix_nano: nanos(f.end),
        attributes: f.tags.iter().map(|(k, v)| kv(k, v)).collect(),
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

/// The span as the worker writes it.
fn written(f: &Input) -> SpanBytes {
    let mut w = SpanWriter::new(
        &f.trace_id,
        &f.span_id,
        f.parent.as_ref(),
        f.kind == SpanKind::Client,
        &[f.name.as_bytes()],
        f.start,
    );
    for (k, v) in &f.tags {
        let r = w.attr(k, &[v.as_bytes()]);
        assert_eq!(w.key_of(r), Some(k.as_bytes()));
    }
    w.finish(f.end)
}

fn input(i: u8, parent: bool, kind: SpanKind, name: &str, tags: &[(&str, String)]) -> Input {
    Input {
        kind,
        trace_id: [i; 16],
        span_id: [i.wrapping_add(1); 8],
        parent: parent.then_some([7; 8]),
        name: name.into(),
        start: UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789 + u64::from(i)),
        end: SystemTime::now(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

#[test]
fn the_bytes_are_the_crates_own_encoding() {
    let long = "v".repeat(300);
    let huge = "w".repeat(20_000);
    let spans = vec![
        input(1, false, SpanKind::Server, "ingress", &[]),
        input(
            2,
            true,
            SpanKind::Client,
            &format!("egress {long}"),
            &[
                ("http.method", "GET".into()),
                ("component", "proxy".into()),
                ("empty", String::new()),
                ("upstream_cluster.name", long.clone()),
                ("", "no key".into()),
                (&long, "a long key".into()),
                ("user_agent", huge.clone()),
            ],
        ),
        input(
            3,
            true,
            SpanKind::Server,
            "",
            &[("guid:x-request-id", "x".repeat(40))],
        ),
        Input {
            start: UNIX_EPOCH,
            end: UNIX_EPOCH,
            ..input(4, false, SpanKind::Server, "ingress", &[("a", "b".into())])
        },
    ];
    let (first, rest) = spans.split_at(1);
    for (service, spans) in [
        ("proxy", spans.as_slice()),
        ("", first),
        (long.as_str(), rest),
        ("none", &[][..]),
    ] {
        let mut ours = vec![1, 2, 3];
        let encoded: Vec<SpanBytes> = spans.iter().map(written).collect();
        encode(service, &encoded, &mut ours);
        let theirs = reference(service, spans).encode_to_vec();
        assert_eq!(ours, theirs, "service {service:?}, {} spans", spans.len());
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).expect("decodes");
        assert_eq!(decoded, reference(service, spans));
    }
}
