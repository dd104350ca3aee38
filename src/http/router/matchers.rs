//! Route matchers over one request: path, headers (pseudo-headers included), query
//! parameters, gRPC, runtime fraction; Envoy's semantics (`RouteEntryImplBase::
//! matchRoute`, `HeaderUtility::matchHeaders`, `ConfigUtility::matchQueryParams`).
//! Nothing here allocates.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::Cell;

use crate::config::{
    Fraction, HeaderMatch, HeaderMatchKind, PathMatch, QueryParameterMatch, Route, StringMatch,
    StringMatchKind,
};

/// What the router looks at in a request; both codecs build one.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The Host (HTTP/1) or `:authority` (HTTP/2), as the client sent it.
    pub authority: &'a [u8],
    /// Path and query.
    pub path: &'a str,
    /// `http` (TLS is a later issue).
    pub scheme: &'a str,
    /// The request's header fields (pseudo-headers excluded).
    pub headers: &'a [httparse::Header<'a>],
}

impl<'a> Request<'a> {
    /// The path without its query (and fragment).
    pub fn path_only(&self) -> &'a str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        self.path.get(..end).unwrap_or(self.path)
    }

    /// The query, without the `?` (and any fragment).
    pub fn query(&self) -> &'a str {
        let q = self.path.split_once('?').map_or("", |(_, q)| q);
        q.split_once('#').map_or(q, |(q, _)| q)
    }

    /// Whether the request is gRPC (Envoy's `isGrpcRequestHeaders`).
    pub fn is_grpc(&self) -> bool {
        self.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("content-type")
                && crate::http::grpc_local::is_grpc_content_type(h.value)
        })
    }
}

fn starts_with_ci(s: &[u8], p: &[u8]) -> bool {
    s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p))
}

fn ends_with_ci(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len()
        && s.get(s.len() - p.len()..)
            .is_some_and(|t| t.eq_ignore_ascii_case(p))
}

fn contains(s: &[u8], needle: &[u8], ignore_case: bool) -> bool {
    needle.is_empty()
        || s.windows(needle.len()).any(|w| {
            if ignore_case {
                w.eq_ignore_ascii_case(needle)
            } else {
                w == needle
            }
        })
}

/// Envoy's `StringMatcher` on `v`. `ignore_case` values were stored lower-case.
pub fn string_matches(m: &StringMatch, v: &[u8]) -> bool {
    let ic = m.ignore_case;
    match &m.kind {
        StringMatchKind::Exact(e) if ic => v.eq_ignore_ascii_case(e.as_bytes()),
        StringMatchKind::Exact(e) => v == e.as_bytes(),
        StringMatchKind::Prefix(p) if ic => starts_with_ci(v, p.as_bytes()),
        StringMatchKind::Prefix(p) => v.starts_with(p.as_bytes()),
        StringMatchKind::Suffix(p) if ic => ends_with_ci(v, p.as_bytes()),
        StringMatchKind::Suffix(p) => v.ends_with(p.as_bytes()),
        StringMatchKind::Contains(p) => contains(v, p.as_bytes(), ic),
        StringMatchKind::Regex(r) => std::str::from_utf8(v).is_ok_and(|s| r.is_match(s)),
    }
}

/// Whether the path (query removed) matches.
pub fn path_matches(m: &PathMatch, path: &str) -> bool {
    let p = path.as_bytes();
    match m {
        PathMatch::Exact { path, ignore_case } if *ignore_case => {
            p.eq_ignore_ascii_case(path.as_bytes())
        }
        PathMatch::Exact { path: e, .. } => p == e.as_bytes(),
        PathMatch::Prefix {
            prefix,
            ignore_case,
        } => prefix_matches(p, prefix.as_bytes(), *ignore_case),
        PathMatch::SeparatedPrefix {
            prefix,
            ignore_case,
        } => {
            prefix_matches(p, prefix.as_bytes(), *ignore_case)
                && matches!(p.get(prefix.len()), None | Some(b'/'))
        }
        PathMatch::Regex(r) => r.is_match(path),
    }
}

fn prefix_matches(p: &[u8], prefix: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        starts_with_ci(p, prefix)
    } else {
        p.starts_with(prefix)
    }
}

/// The values of header `name` (lower-case) in `req`, one per field: pseudo-headers
/// from the request line, `host` as the authority (Envoy keeps Host as `:authority`).
fn header_values<'r>(req: &'r Request<'r>, name: &'r str) -> impl Iterator<Item = &'r [u8]> {
    let pseudo = match name {
        ":method" => Some(req.method.as_bytes()),
        ":authority" | "host" => Some(req.authority),
        ":path" => Some(req.path.as_bytes()),
        ":scheme" => Some(req.scheme.as_bytes()),
        _ => None,
    };
    let fields = req
        .headers
        .iter()
        .filter(move |h| pseudo.is_none() && h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value);
    pseudo.into_iter().chain(fields)
}

/// Envoy's `HeaderMatcher`, as Envoy 1.40 applies it: a header sent as several fields
/// matches if one of them does; a missing header fails every matcher but
/// `present_match`, inverted or not, unless `treat_missing_header_as_empty`.
pub fn header_matches(m: &HeaderMatch, req: &Request<'_>) -> bool {
    header_matches_values(m, header_values(req, &m.name))
}

/// A header matcher over the values of its header in any message (the request's, or a
/// response's for `retriable_headers`).
pub fn header_matches_values<'v>(m: &HeaderMatch, values: impl Iterator<Item = &'v [u8]>) -> bool {
    let specific = |value: &[u8]| match &m.kind {
        HeaderMatchKind::Present(_) => true,
        HeaderMatchKind::Range { start, end } => std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .is_some_and(|n| *start <= n && n < *end),
        HeaderMatchKind::String(s) => string_matches(s, value),
    };
    let mut values = values.peekable();
    let present = values.peek().is_some();
    if let HeaderMatchKind::Present(want) = m.kind {
        return (present == want) != m.invert;
    }
    let hit = if present {
        values.any(specific)
    } else if m.treat_missing_as_empty {
        specific(b"")
    } else {
        return false;
    };
    hit != m.invert
}

/// Envoy's `QueryParameterMatcher`: the first parameter named `m.name` decides.
pub fn query_matches(m: &QueryParameterMatch, query: &str) -> bool {
    let first = query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == m.name).then_some(v)
    });
    match (first, &m.value) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(v), Some(s)) => string_matches(s, v.as_bytes()),
    }
}

thread_local! {
    /// Per-thread xorshift state (no atomics on the request path); seeded once per
    /// thread from its address and the clock.
    static RANDOM: Cell<u64> = const { Cell::new(0) };
}

/// A random number for runtime fractions and weighted clusters.
pub fn random() -> u64 {
    RANDOM.with(|c| {
        let mut x = c.get();
        if x == 0 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            x = (t ^ (c as *const Cell<u64> as u64)) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        x
    })
}

fn fraction_hit(f: Fraction, random: u64) -> bool {
    random % u64::from(f.denominator) < u64::from(f.numerator)
}

/// Every matcher of `r` but the path, in Envoy's order (runtime fraction, gRPC,
/// headers, query parameters). `rand` is drawn once per request, when first needed.
pub fn route_matches(r: &Route, req: &Request<'_>, rand: &mut Option<u64>) -> bool {
    if let Some(f) = r.runtime_fraction {
        if !fraction_hit(f, *rand.get_or_insert_with(random)) {
            return false;
        }
    }
    if r.grpc && !req.is_grpc() {
        return false;
    }
    if !r.headers.iter().all(|m| header_matches(m, req)) {
        return false;
    }
    r.query_parameters.is_empty() || {
        let q = req.query();
        r.query_parameters.iter().all(|m| query_matches(m, q))
    }
}
