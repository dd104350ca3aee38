//! Trace-context propagation: reading a parent span context from a request's headers
//! (W3C `traceparent`, B3 multi-header `x-b3-*`, B3 single-header `b3`) and the values
//! the proxy writes on the upstream request. Runs on the request head of a connection
//! manager with tracing configured; nothing here allocates (values are formatted into
//! stack buffers by `http::stamp`).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub const TRACEPARENT: &str = "traceparent";
pub const B3: &str = "b3";
pub const B3_TRACE_ID: &str = "x-b3-traceid";
pub const B3_SPAN_ID: &str = "x-b3-spanid";
pub const B3_PARENT_SPAN_ID: &str = "x-b3-parentspanid";
pub const B3_SAMPLED: &str = "x-b3-sampled";
pub const B3_FLAGS: &str = "x-b3-flags";

/// Which header formats carry the context, read and written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Propagation {
    /// W3C trace-context `traceparent` (and `tracestate`, passed through untouched).
    pub w3c: bool,
    /// B3 multi-header: `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`.
    pub b3: bool,
    /// B3 single-header: `b3: {trace}-{span}-{sampled}`.
    pub b3_single: bool,
}

/// A span's identity as it travels between processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The sender's sampling decision (`None`: B3 without one, the receiver decides).
    pub sampled: Option<bool>,
}

/// What the upstream request carries: the proxy's span as the parent of the next hop.
/// Rides in the request's `http::stamp::Stamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    pub propagation: Propagation,
    /// The character an `x-request-id` the proxy generates carries at offset 14: the
    /// trace decision, as Envoy's UUID request ids keep it.
    pub request_id_status: u8,
    /// The `x-request-id` the proxy made for this request when it makes one (Envoy's
    /// connection manager makes it before routing): the span's guid and the id every
    /// upstream try and shadow carries are this one value.
    pub request_id: Option<[u8; 36]>,
}

impl Outgoing {
    /// True if the incoming header `name` is replaced by one this context writes.
    pub fn replaces(&self, name: &str) -> bool {
        let p = self.propagation;
        (p.w3c && name.eq_ignore_ascii_case(TRACEPARENT))
            || (p.b3_single && name.eq_ignore_ascii_case(B3))
            || (p.b3
                && [
                    B3_TRACE_ID,
                    B3_SPAN_ID,
                    B3_PARENT_SPAN_ID,
                    B3_SAMPLED,
                    B3_FLAGS,
                ]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n)))
    }

    /// Calls `emit` with each header this context writes.
    pub fn for_each(&self, mut emit: impl FnMut(&str, &str)) {
        let p = self.propagation;
        let mut trace = [0u8; 32];
        let mut span = [0u8; 16];
        let trace = hex(&self.trace_id, &mut trace);
        let span = hex(&self.span_id, &mut span);
        let flag = if self.sampled { "1" } else { "0" };
        if p.w3c {
            let mut b = [0u8; 55];
            let v = join(&mut b, &["00-", trace, "-", span, "-0", flag]);
            emit(TRACEPARENT, v);
        }
        if p.b3 {
            emit(B3_TRACE_ID, trace);
            emit(B3_SPAN_ID, span);
            emit(B3_SAMPLED, flag);
        }
        if p.b3_single {
            let mut b = [0u8; 51];
            let v = join(&mut b, &[trace, "-", span, "-", flag]);
            emit(B3, v);
        }
    }
}

/// The parent context of a request, from the first configured format that has one
/// (W3C, then B3 single, then B3 multi). `get` returns a header's value by name.
pub fn extract<'h>(p: Propagation, get: impl Fn(&str) -> Option<&'h [u8]>) -> Option<SpanContext> {
    if p.w3c {
        if let Some(c) = get(TRACEPARENT).and_then(traceparent) {
            return Some(c);
        }
    }
    if p.b3_single {
        if let Some(c) = get(B3).and_then(b3_single) {
            return Some(c);
        }
    }
    if p.b3 {
        let trace_id = get(B3_TRACE_ID).and_then(b3_trace_id)?;
        let span_id = get(B3_SPAN_ID).and_then(span_id)?;
        let debug = get(B3_FLAGS).is_some_and(|f| f == b"1");
        let sampled = if debug {
            Some(true)
        } else {
            get(B3_SAMPLED).and_then(b3_sampled)
        };
        return Some(SpanContext {
            trace_id,
            span_id,
            sampled,
        });
    }
    None
}

/// W3C `traceparent`: `version-traceid-spanid-flags`; version `ff` and all-zero ids are
/// invalid; a later version may append fields after a `-`.
pub fn traceparent(v: &[u8]) -> Option<SpanContext> {
    let v = v.trim_ascii();
    let (head, rest) = v.split_at_checked(55)?;
    let mut parts = head.split(|b| *b == b'-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version.len() != 2 || flags.len() != 2 {
        return None;
    }
    let version = byte(version)?;
    if version == 0xff
        || (version == 0 && !rest.is_empty())
        || (!rest.is_empty() && rest.first() != Some(&b'-'))
    {
        return None;
    }
    let trace_id = ids::<16>(trace)?;
    let span_id = ids::<8>(span)?;
    let flags = byte(flags)?;
    Some(SpanContext {
        trace_id,
        span_id,
        sampled: Some(flags & 1 == 1),
    })
}

/// B3 single header: `{traceid}-{spanid}[-{sampled}[-{parentspanid}]]`. The
/// sampling-only form (`0`, `1`, `d`) carries no context.
pub fn b3_single(v: &[u8]) -> Option<SpanContext> {
    let mut parts = v.trim_ascii().split(|b| *b == b'-');
    let trace_id = b3_trace_id(parts.next()?)?;
    let span_id = span_id(parts.next()?)?;
    let sampled = match parts.next() {
        None => None,
        Some(s) => Some(b3_sampled(s)?),
    };
    Some(SpanContext {
        trace_id,
        span_id,
        sampled,
    })
}

fn b3_sampled(s: &[u8]) -> Option<bool> {
    match s {
        b"1" | b"d" | b"true" => Some(true),
        b"0" | b"false" => Some(false),
        _ => None,
    }
}

/// A B3 trace id: 32 hex digits, or 16 (the high half is then zero).
fn b3_trace_id(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() == 16 {
        let low = ids::<8>(s)?;
        let mut t = [0u8; 16];
        t.get_mut(8..)?.copy_from_slice(&low);
        Some(t)
    } else {
        ids::<16>(s)
    }
}

fn span_id(s: &[u8]) -> Option<[u8; 8]> {
    ids::<8>(s)
}

/// `N` bytes from `2N` lowercase-or-uppercase hex digits, not all zero.
fn ids<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = byte(pair)?;
    }
    (out != [0u8; N]).then_some(out)
}

fn byte(pair: &[u8]) -> Option<u8> {
    match pair {
        [h, l] => Some(nibble(*h)? << 4 | nibble(*l)?),
        _ => None,
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lowercase hex of `bytes` into `out` (twice as long).
pub fn hex<'b>(bytes: &[u8], out: &'b mut [u8]) -> &'b str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        if let [h, l] = pair {
            *h = DIGITS.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            *l = DIGITS.get(usize::from(b & 15)).copied().unwrap_or(b'0');
        }
    }
    std::str::from_utf8(out).unwrap_or_default()
}

/// `parts` one after the other into `out` (sized for them), as a str.
fn join<'b>(out: &'b mut [u8], parts: &[&str]) -> &'b str {
    let mut n = 0;
    for p in parts {
        if let Some(dst) = out.get_mut(n..n + p.len()) {
            dst.copy_from_slice(p.as_bytes());
            n += p.len();
        }
    }
    std::str::from_utf8(out.get(..n).unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    const TP: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips() {
        let c = traceparent(TP).unwrap();
        assert_eq!(c.sampled, Some(true));
        let out = Outgoing {
            trace_id: c.trace_id,
            span_id: c.span_id,
            sampled: true,
            propagation: Propagation {
                w3c: true,
                b3: true,
                b3_single: true,
            },
            request_id_status: b'9',
            request_id: None,
        };
        let mut seen = Vec::new();
        out.for_each(|n, v| seen.push((n.to_string(), v.to_string())));
        assert_eq!(
            seen[0],
            (
                "traceparent".into(),
                std::str::from_utf8(TP).unwrap().into()
            )
        );
        assert_eq!(seen[1].1, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(seen[2].1, "00f067aa0ba902b7");
        assert_eq!(
            seen[4].1,
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"
        );
        assert!(out.replaces("TraceParent") && out.replaces("x-b3-parentspanid"));
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            &b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-011",
            b"00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            b"",
            "00-4bf92f3577b34da6a3ce929d0e0e4é36-00f067aa0ba902b7-01".as_bytes(),
        ] {
            assert_eq!(traceparent(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        // A later version may carry more fields.
        let v = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        assert_eq!(traceparent(v).unwrap().sampled, Some(false));
    }

    #[test]
    fn b3_forms() {
        let all = Propagation {
            w3c: false,
            b3: true,
            b3_single: true,
        };
        let single = |v: &'static [u8]| move |n: &str| (n == B3).then_some(v);
        let c = extract(all, single(b"a3ce929d0e0e4736-00f067aa0ba902b7-d")).unwrap();
        assert_eq!(c.trace_id[..8], [0; 8]);
        assert_eq!(c.sampled, Some(true));
        assert_eq!(extract(all, single(b"1")), None);
        let multi = |n: &str| match n {
            B3_TRACE_ID => Some(&b"4bf92f3577b34da6a3ce929d0e0e4736"[..]),
            B3_SPAN_ID => Some(&b"00f067aa0ba902b7"[..]),
            _ => None,
        };
        let c = extract(all, multi).unwrap();
        assert_eq!(c.sampled, None);
        assert_eq!(c.span_id, [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    }
}
