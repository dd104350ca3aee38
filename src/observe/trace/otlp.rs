//! Finished spans -> the bytes of OTLP's `ExportTraceServiceRequest`. Envoy's tracer
//! sends one resource with `service.name` and one scope holding the spans, attributes as
//! strings.
//!
//! The exporter thread encodes a collector's pending spans in one pass (`encode`), a
//! batch of up to `MAX_EXPORT_SPANS` at a time. The worker only hands its finished span
//! over: at a few thousand requests a second each request runs on a wake-up of its own,
//! its code cold, and the encoding's was the largest part of tracing's cost on the
//! worker (a profile of h1-traced-ab: `otlp::span_bytes` 1.7 of the 3.7 us a traced
//! request added, the same bytes taking a fraction of that in a warm loop; docs/tracing.md).
//!
//! The bytes are written straight from the spans' records: building the
//! opentelemetry-proto crate's prost tree first cost a `String` per attribute key and
//! value (made, then freed), and prost computes a nested message's length again at
//! every level it is nested in; that was most of the exporter's time
//! (docs/tracing.md). Keys and varints are pushed here rather than through prost's
//! `encode_key` / `encode_varint`, which go through `BufMut` a byte at a time and were
//! called four times per attribute: every key here is one byte and nearly every length
//! is. The crate's types stay the reference: the tests encode the same spans through
//! them and compare the bytes, and decode ours with them.

use std::time::{SystemTime, UNIX_EPOCH};

use prost::encoding::encoded_len_varint;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;

use super::model::SpanKind;
use super::span::ActiveSpan;

// Field numbers (opentelemetry/proto/**.proto). Every one is below 16, so every key is
// one byte.
const REQUEST_RESOURCE_SPANS: u8 = 1;
const RESOURCE_SPANS_RESOURCE: u8 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u8 = 2;
const RESOURCE_ATTRIBUTES: u8 = 1;
const SCOPE_SPANS_SPANS: u8 = 2;
const SPAN_TRACE_ID: u8 = 1;
const SPAN_SPAN_ID: u8 = 2;
const SPAN_PARENT_SPAN_ID: u8 = 4;
const SPAN_NAME: u8 = 5;
const SPAN_KIND: u8 = 6;
const SPAN_START: u8 = 7;
const SPAN_END: u8 = 8;
const SPAN_ATTRIBUTES: u8 = 9;
const KEY_VALUE_KEY: u8 = 1;
const KEY_VALUE_VALUE: u8 = 2;
const ANY_VALUE_STRING: u8 = 1;
// `Span.SpanKind`.
const KIND_SERVER: u64 = 2;
const KIND_CLIENT: u64 = 3;

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A length-delimited field of `n` bytes, key and length included.
fn delimited(n: usize) -> usize {
    1 + encoded_len_varint(n as u64) + n
}

/// A string or bytes field, left out when empty (proto3's default).
fn field_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        delimited(n)
    }
}

/// `AnyValue { string_value }`: a oneof member, written even when empty.
fn any_value_len(value: &[u8]) -> usize {
    delimited(value.len())
}

fn key_value_len(key: &str, value: &[u8]) -> usize {
    field_len(key.len()) + delimited(any_value_len(value))
}

fn span_len(f: &ActiveSpan) -> usize {
    let mut n = delimited(f.trace_id.len()) + delimited(f.span_id.len());
    if f.parent.is_some() {
        n += delimited(8);
    }
    n += field_len(f.name.len());
    n += 2; // kind: one key byte, one varint byte
    for t in [f.start, f.end] {
        if nanos(t) != 0 {
            n += 1 + 8;
        }
    }
    for (k, v) in f.attribute_bytes() {
        n += delimited(key_value_len(k, v));
    }
    n
}

/// How far ahead of the span being measured its records are prefetched.
const AHEAD: usize = 8;

/// A field's key: one byte, every field number here being below 16.
fn put_key(field: u8, wire: u8, out: &mut Vec<u8>) {
    out.push((field << 3) | wire);
}

/// A varint, as prost writes it.
fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_header(field: u8, len: usize, out: &mut Vec<u8>) {
    put_key(field, LENGTH_DELIMITED, out);
    put_varint(len as u64, out);
}

fn put_bytes(field: u8, b: &[u8], out: &mut Vec<u8>) {
    if !b.is_empty() {
        put_header(field, b.len(), out);
        out.extend_from_slice(b);
    }
}

fn put_key_value(key: &str, value: &[u8], out: &mut Vec<u8>) {
    put_header(SPAN_ATTRIBUTES, key_value_len(key, value), out);
    put_bytes(KEY_VALUE_KEY, key.as_bytes(), out);
    put_header(KEY_VALUE_VALUE, any_value_len(value), out);
    put_header(ANY_VALUE_STRING, value.len(), out);
    out.extend_from_slice(value);
}

/// One span as a `ScopeSpans.spans` field (key, length `len`, `Span`).
fn put_span(f: &ActiveSpan, len: usize, out: &mut Vec<u8>) {
    put_header(SCOPE_SPANS_SPANS, len, out);
    put_bytes(SPAN_TRACE_ID, &f.trace_id, out);
    put_bytes(SPAN_SPAN_ID, &f.span_id, out);
    if let Some(p) = &f.parent {
        put_bytes(SPAN_PARENT_SPAN_ID, p, out);
    }
    put_bytes(SPAN_NAME, f.name.as_bytes(), out);
    put_key(SPAN_KIND, VARINT, out);
    put_varint(
        match f.tracing.kind {
            SpanKind::Server => KIND_SERVER,
            SpanKind::Client => KIND_CLIENT,
        },
        out,
    );
    for (field, t) in [(SPAN_START, f.start), (SPAN_END, f.end)] {
        let ns = nanos(t);
        if ns != 0 {
            put_key(field, FIXED64, out);
            out.extend_from_slice(&ns.to_le_bytes());
        }
    }
    for (k, v) in f.attribute_bytes() {
        // The same bytes as a `KeyValue` in `Span.attributes` (field 9).
        put_key_value(k, v, out);
    }
}

/// One export request's body, written into `out` (cleared first): the spans of one
/// collector under its service name.
#[cfg(test)]
pub fn encode(service_name: &str, spans: &[Box<ActiveSpan>], out: &mut Vec<u8>) {
    out.clear();
    encode_after(service_name, spans, &mut Vec::new(), out, |_, _| {});
}

/// Appends one export request's body to `out` behind what `prefix` writes, given the
/// body's length: an HTTP head, gRPC's message prefix. The body is written where it is
/// sent from, not copied behind a head made once its length is known (at 20k spans a
/// second that copy, every byte of each export, was a tenth of the exporter's CPU). The
/// spans' lengths are computed once, into `lens` (the caller keeps its allocation), and
/// read again as each span is written.
pub fn encode_after(
    service_name: &str,
    spans: &[Box<ActiveSpan>],
    lens: &mut Vec<usize>,
    out: &mut Vec<u8>,
    prefix: impl FnOnce(usize, &mut Vec<u8>),
) {
    // The lengths read each record, not its text (`ActiveSpan::attribute_bytes`).
    // Records `AHEAD` places on are prefetched, and texts half as far: the misses
    // overlap instead of each stalling the thread in turn, and the writing pass below
    // finds the texts in the cache.
    lens.clear();
    for (i, s) in spans.iter().enumerate() {
        if let Some(r) = spans.get(i + AHEAD) {
            r.prefetch_record();
        }
        if let Some(r) = spans.get(i + AHEAD / 2) {
            r.prefetch_text();
        }
        lens.push(span_len(s));
    }
    let scope: usize = lens.iter().map(|&n| delimited(n)).sum();
    let service = key_value_len("service.name", service_name.as_bytes());
    let resource = delimited(service);
    let resource_spans = delimited(resource) + delimited(scope);
    let len = delimited(resource_spans);
    prefix(len, out);
    out.reserve(len);
    put_header(REQUEST_RESOURCE_SPANS, resource_spans, out);
    put_header(RESOURCE_SPANS_RESOURCE, resource, out);
    // `Resource.attributes` is field 1, where a span's are field 9: same shape.
    put_header(RESOURCE_ATTRIBUTES, service, out);
    put_bytes(KEY_VALUE_KEY, b"service.name", out);
    put_header(KEY_VALUE_VALUE, any_value_len(service_name.as_bytes()), out);
    put_header(ANY_VALUE_STRING, service_name.len(), out);
    out.extend_from_slice(service_name.as_bytes());
    put_header(RESOURCE_SPANS_SCOPE_SPANS, scope, out);
    for (s, &n) in spans.iter().zip(lens.iter()) {
        put_span(s, n, out);
    }
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;
