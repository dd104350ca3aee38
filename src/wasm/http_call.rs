//! `proxy_http_call`: a module asks for an HTTP call to a named cluster. The call is
//! checked and queued here (the host function cannot wait); `calls.rs` sends it over
//! the worker's HTTP/1.1 pool for the cluster and delivers the answer with
//! `proxy_on_http_call_response`, as Envoy's `Context::httpCall` does: a timeout below
//! 0, an unknown cluster, or headers without `:method`, `:path` and `:authority`
//! answer `BadArgument`; the body gets a `content-length`; 0 ms is no timeout.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::abi::{read, read_str, write, BAD_ARGUMENT, INVALID_MEMORY_ACCESS, OK};
use super::host::{Host, OutCall};
use super::host_headers::{decode_pairs, HeaderMap};

/// Headers of the module's request that the host writes itself.
const FRAMING: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
];

/// The HTTP/1.1 request head for the module's `pairs`, or `None` when a required
/// pseudo-header is missing or a header cannot be written.
pub fn head(
    pairs: &[(String, String)],
    body_len: usize,
    timeout: Option<Duration>,
) -> Option<Vec<u8>> {
    let pseudo = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let (method, path, authority) = (pseudo(":method")?, pseudo(":path")?, pseudo(":authority")?);
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !token(method) || !token(path) || !HeaderMap::editable("host", authority) {
        return None;
    }
    let mut h = Vec::with_capacity(128);
    for part in [method, " ", path, " HTTP/1.1\r\nhost: ", authority, "\r\n"] {
        h.extend_from_slice(part.as_bytes());
    }
    h.extend_from_slice(format!("content-length: {body_len}\r\n").as_bytes());
    // What Envoy's async client adds to a call.
    h.extend_from_slice(b"x-envoy-internal: true\r\n");
    if let Some(t) = timeout {
        h.extend_from_slice(
            format!("x-envoy-expected-rq-timeout-ms: {}\r\n", t.as_millis()).as_bytes(),
        );
    }
    for (n, v) in pairs {
        let n = n.to_ascii_lowercase();
        if n.starts_with(':') || FRAMING.contains(&n.as_str()) {
            continue;
        }
        if !HeaderMap::editable(&n, v) {
            return None;
        }
        for part in [n.as_str(), ": ", v.as_str(), "\r\n"] {
            h.extend_from_slice(part.as_bytes());
        }
    }
    h.extend_from_slice(b"\r\n");
    Some(h)
}

#[allow(clippy::too_many_arguments)]
fn http_call(
    c: &mut Caller<'_, Host>,
    up: (i32, i32),
    hd: (i32, i32),
    body: (i32, i32),
    _trailers: (i32, i32),
    timeout_ms: i32,
    token_ptr: i32,
) -> i32 {
    let (Some(cluster), Some(h), Some(body)) = (
        read_str(c, up.0, up.1),
        read(c, hd.0, hd.1),
        read(c, body.0, body.1),
    ) else {
        return INVALID_MEMORY_ACCESS;
    };
    if timeout_ms < 0 {
        return BAD_ARGUMENT;
    }
    let Some(pairs) = decode_pairs(&h) else {
        return BAD_ARGUMENT;
    };
    let known = c
        .data()
        .upstreams
        .as_ref()
        .and_then(|newest| newest())
        .and_then(|u| u.cluster_index(&cluster))
        .is_some();
    if !known {
        return BAD_ARGUMENT;
    }
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64));
    let Some(head) = head(&pairs, body.len(), timeout) else {
        return BAD_ARGUMENT;
    };
    let h = c.data_mut();
    let token = h.next_token;
    h.next_token = h.next_token.checked_add(1).unwrap_or(1);
    h.outgoing.push(OutCall {
        token,
        cluster,
        head,
        body,
        timeout,
    });
    if !write(c, token_ptr, &token.to_le_bytes()) {
        c.data_mut().outgoing.pop();
        return INVALID_MEMORY_ACCESS;
    }
    OK
}

/// Defines `proxy_http_call`.
pub fn define(l: &mut Linker<Host>) {
    let _ = l.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Caller<'_, Host>,
         up: i32,
         ups: i32,
         hp: i32,
         hs: i32,
         bp: i32,
         bs: i32,
         tp: i32,
         ts: i32,
         timeout: i32,
         token: i32|
         -> i32 {
            http_call(
                &mut c,
                (up, ups),
                (hp, hs),
                (bp, bs),
                (tp, ts),
                timeout,
                token,
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn head_needs_the_pseudo_headers_and_clean_values() {
        let ok = p(&[
            (":method", "GET"),
            (":path", "/a?b"),
            (":authority", "auth"),
            ("x-k", "v"),
        ]);
        let h = String::from_utf8(head(&ok, 0, Some(Duration::from_millis(250))).unwrap()).unwrap();
        assert!(
            h.starts_with("GET /a?b HTTP/1.1\r\nhost: auth\r\ncontent-length: 0\r\n"),
            "{h}"
        );
        assert!(h.contains("x-envoy-expected-rq-timeout-ms: 250\r\n"));
        assert!(h.ends_with("x-k: v\r\n\r\n"), "{h}");
        assert!(head(&p(&[(":method", "GET"), (":path", "/")]), 0, None).is_none());
        let bad = p(&[
            (":method", "GET"),
            (":path", "/"),
            (":authority", "a"),
            ("x", "v\r\nevil: 1"),
        ]);
        assert!(head(&bad, 0, None).is_none());
        let bad_path = p(&[(":method", "GET"), (":path", "/ x"), (":authority", "a")]);
        assert!(head(&bad_path, 0, None).is_none());
    }
}
