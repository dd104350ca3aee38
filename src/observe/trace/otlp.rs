//! Spans -> the bytes of OTLP's `ExportTraceServiceRequest`. Envoy's tracer sends one
//! resource with `service.name` and one scope holding the spans, attributes as strings.
//!
//! A span is written in its wire form by the worker that runs its request
//! (`SpanWriter`): each tag's value goes once, as it is known, into the bytes the
//! exporter will send. The exporter thread, reading spans tens of milliseconds later
//! from another core, spent most of its time waiting for their cache lines when it
//! encoded them (docs/tracing.md); it now only wraps the spans of one collector in the
//! request's outer messages (`encode`), a sequential copy.
//!
//! The bytes are written with prost's wire helpers, not through the
//! opentelemetry-proto crate's prost tree: that cost a `String` per attribute key and
//! value (made, then freed), and prost computes a nested message's length again at
//! every level it is nested in (docs/tracing.md). The crate's types stay the
//! reference: the tests encode the same spans through them and compare the bytes, and
//! decode ours with them.

use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::encoding::{decode_varint, encode_key, encode_varint, encoded_len_varint, WireType};

// Field numbers (opentelemetry/proto/**.proto). Every one is below 16, so every key is
// one byte.
const REQUEST_RESOURCE_SPANS: u32 = 1;
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
const RESOURCE_ATTRIBUTES: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START: u32 = 7;
const SPAN_END: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const KEY_VALUE_KEY: u32 = 1;
const KEY_VALUE_VALUE: u32 = 2;
const ANY_VALUE_STRING: u32 = 1;
/// `KeyValue.key`'s key byte (field 1, length-delimited).
const KEY_VALUE_KEY_BYTE: u8 = (KEY_VALUE_KEY << 3) as u8 | 2;
// `Span.SpanKind`.
const KIND_SERVER: u64 = 2;
const KIND_CLIENT: u64 = 3;

pub(super) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A length-delimited field of `n` bytes, key and length included.
fn delimited(n: usize) -> usize {
    1 + encoded_len_varint(n as u64) + n
}

/// `AnyValue { string_value }`: a oneof member, written even when empty.
fn any_value_len(value: &str) -> usize {
    delimited(value.len())
}

fn key_value_len(key: &str, value: &str) -> usize {
    let key = if key.is_empty() {
        0
    } else {
        delimited(key.len())
    };
    key + delimited(any_value_len(value))
}

fn put_header(field: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

/// A string or bytes field, left out when empty (proto3's default).
fn put_bytes(field: u32, b: &[u8], out: &mut Vec<u8>) {
    if !b.is_empty() {
        put_header(field, b.len(), out);
        out.extend_from_slice(b);
    }
}

/// The length of `parts` side by side.
fn parts_len(parts: &[&[u8]]) -> usize {
    parts.iter().map(|p| p.len()).sum()
}

/// A finished span's first two words: the field that holds it (`ScopeSpans.spans`,
/// field 2) and a length of at most five varint bytes (a span under 4 GiB).
const FRONT: usize = 1 + 5;
/// What a span's encoding usually takes (ids, times, some twenty attributes with the
/// URL and addresses): enough that it is allocated once.
const SPAN_BYTES: usize = 1024;

/// A span being written straight into its OTLP encoding, as the bytes of a
/// `ScopeSpans.spans` field that `encode` puts side by side. The worker writes each
/// attribute's value once, where the exporter will send it: no tag list, no text
/// buffer and no second pass to encode them.
/// The span's own fields come first, as prost orders them: the end time's field is
/// written at the start with a zero value, and `finish` fills it in.
pub struct SpanWriter {
    out: Vec<u8>,
    /// Where the end time's eight bytes are.
    end_at: usize,
}

/// A span's encoding: `bytes[from..]`.
pub struct SpanBytes {
    bytes: Vec<u8>,
    from: usize,
}

impl AsRef<[u8]> for SpanBytes {
    fn as_ref(&self) -> &[u8] {
        self.bytes.get(self.from..).unwrap_or_default()
    }
}

impl SpanWriter {
    /// A span's own fields; its name is `name`'s parts side by side; a `CLIENT` span
    /// or a `SERVER` one. (This module knows nothing of the tracing config above it.)
    pub fn new(
        trace_id: &[u8; 16],
        span_id: &[u8; 8],
        parent: Option<&[u8; 8]>,
        client: bool,
        name: &[&[u8]],
        start: SystemTime,
    ) -> SpanWriter {
        let mut out = Vec::with_capacity(SPAN_BYTES);
        out.resize(FRONT, 0);
        put_bytes(SPAN_TRACE_ID, trace_id, &mut out);
        put_bytes(SPAN_SPAN_ID, span_id, &mut out);
        if let Some(p) = parent {
            put_bytes(SPAN_PARENT_SPAN_ID, p, &mut out);
        }
        let n = parts_len(name);
        if n > 0 {
            put_header(SPAN_NAME, n, &mut out);
            for p in name {
                out.extend_from_slice(p);
            }
        }
        encode_key(SPAN_KIND, WireType::Varint, &mut out);
        encode_varint(if client { KIND_CLIENT } else { KIND_SERVER }, &mut out);
        let ns = nanos(start);
        if ns != 0 {
            encode_key(SPAN_START, WireType::SixtyFourBit, &mut out);
            out.extend_from_slice(&ns.to_le_bytes());
        }
        encode_key(SPAN_END, WireType::SixtyFourBit, &mut out);
        let end_at = out.len();
        out.extend_from_slice(&[0; 8]);
        SpanWriter { out, end_at }
    }

    /// Appends an attribute (`Span.attributes`: a `KeyValue` with a string value)
    /// whose value is `value`'s parts side by side; where it is in the span's bytes.
    /// One function for every tag, not inlined: at a few thousand requests a second
    /// each span is written with cold caches, and the code's size costs more than its
    /// instructions (a tag writer generic over its value made `trace::start` 19 KiB).
    #[inline(never)]
    pub fn attr(&mut self, key: &str, value: &[&[u8]]) -> Range<usize> {
        let at = self.out.len();
        let n = parts_len(value);
        let any = delimited(n);
        let key_len = if key.is_empty() {
            0
        } else {
            delimited(key.len())
        };
        put_header(SPAN_ATTRIBUTES, key_len + delimited(any), &mut self.out);
        put_bytes(KEY_VALUE_KEY, key.as_bytes(), &mut self.out);
        put_header(KEY_VALUE_VALUE, any, &mut self.out);
        put_header(ANY_VALUE_STRING, n, &mut self.out);
        for p in value {
            self.out.extend_from_slice(p);
        }
        at..self.out.len()
    }

    /// Takes out the bytes at `r` (an attribute `attr` wrote); the bytes after it move
    /// back by its length.
    pub fn remove(&mut self, r: Range<usize>) {
        self.out.drain(r);
    }

    /// Moves the last attribute, at `last` (to the end), into the place of the one at
    /// `r`, which it replaces.
    pub fn replace(&mut self, r: Range<usize>, last: Range<usize>) {
        let new: Vec<u8> = self.out.drain(last).collect();
        self.out.splice(r, new);
    }

    /// The key of the attribute at `r`.
    pub fn key_of(&self, r: Range<usize>) -> Option<&[u8]> {
        let mut b = self.out.get(r)?.get(1..)?;
        decode_varint(&mut b).ok()?; // the `KeyValue`'s length
        if b.first() != Some(&KEY_VALUE_KEY_BYTE) {
            return Some(b""); // an empty key is left out
        }
        b = b.get(1..)?;
        let n = usize::try_from(decode_varint(&mut b).ok()?).ok()?;
        b.get(..n)
    }

    /// The span's bytes, with its end time.
    pub fn finish(mut self, end: SystemTime) -> SpanBytes {
        let ns = nanos(end);
        if ns == 0 {
            // Before 1970: left out, as prost leaves a zero out.
            self.out.drain(self.end_at - 1..self.end_at + 8);
        } else if let Some(b) = self.out.get_mut(self.end_at..self.end_at + 8) {
            b.copy_from_slice(&ns.to_le_bytes());
        }
        let mut head = Vec::with_capacity(FRONT);
        put_header(SCOPE_SPANS_SPANS, self.out.len() - FRONT, &mut head);
        let from = FRONT - head.len();
        if let Some(b) = self.out.get_mut(from..FRONT) {
            b.copy_from_slice(&head);
        }
        SpanBytes {
            bytes: self.out,
            from,
        }
    }
}

/// One export request's body, written into `out` (cleared first): the spans of one
/// collector (each as a `SpanWriter` made it), under its service name.
pub fn encode<S: AsRef<[u8]>>(service_name: &str, spans: &[S], out: &mut Vec<u8>) {
    out.clear();
    let scope: usize = spans.iter().map(|s| s.as_ref().len()).sum();
    let service = key_value_len("service.name", service_name);
    let resource = delimited(service);
    let resource_spans = delimited(resource) + delimited(scope);
    out.reserve(delimited(resource_spans));
    put_header(REQUEST_RESOURCE_SPANS, resource_spans, out);
    put_header(RESOURCE_SPANS_RESOURCE, resource, out);
    // `Resource.attributes` is field 1, where a span's are field 9: same shape.
    put_header(RESOURCE_ATTRIBUTES, service, out);
    put_bytes(KEY_VALUE_KEY, b"service.name", out);
    put_header(KEY_VALUE_VALUE, any_value_len(service_name), out);
    put_header(ANY_VALUE_STRING, service_name.len(), out);
    out.extend_from_slice(service_name.as_bytes());
    put_header(RESOURCE_SPANS_SCOPE_SPANS, scope, out);
    for s in spans {
        out.extend_from_slice(s.as_ref());
    }
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;
