//! Finished spans -> OTLP's `ExportTraceServiceRequest` (the opentelemetry-proto
//! crate's prost types), on the exporter thread. Envoy's tracer sends one resource with
//! `service.name` and one scope holding the spans, attributes as strings.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::{Finished, SpanKind};

fn kv(key: String, value: String) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn span(f: Finished) -> Span {
    Span {
        trace_id: f.trace_id.to_vec(),
        span_id: f.span_id.to_vec(),
        parent_span_id: f.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: f.name.into_owned(),
        kind: match f.kind {
            SpanKind::Server => span::SpanKind::Server as i32,
            SpanKind::Client => span::SpanKind::Client as i32,
        },
        start_time_unix_nano: nanos(f.start),
        end_time_unix_nano: nanos(f.end),
        attributes: f
            .tags
            .into_iter()
            .map(|(k, v)| kv(k.into_owned(), v))
            .collect(),
        ..Span::default()
    }
}

/// One export request's body: the spans of one collector, under its service name.
pub fn encode(service_name: &str, spans: Vec<Finished>) -> Vec<u8> {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name".into(), service_name.into())],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: spans.into_iter().map(span).collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    req.encode_to_vec()
}
