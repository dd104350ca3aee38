//! Head serialisation: the request head sent upstream and the response head sent
//! downstream. Unchanged headers are copied byte for byte in their original order;
//! hop-by-hop headers are dropped (`http::hop` decides which) and the proxy's own
//! headers are appended.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use super::head::{classify, Special};
use crate::http::filter::headers::Edits;
use crate::http::flags::ResponseFlag;
use crate::http::grpc_local;
use crate::http::hop::{self, Fate, Message, Nominated};

/// What the forwarding policy (`http::forwarding`) decided for `x-forwarded-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward<'a> {
    /// Append this address (text form) to `x-forwarded-for`; `None` passes XFF unchanged.
    pub append: Option<&'a [u8]>,
    /// Replace an incoming `x-forwarded-proto`; otherwise it is kept (and the scheme is
    /// written only when there is none).
    pub overwrite_proto: bool,
    /// The scheme written: `https` on a TLS connection, else `http`.
    pub scheme: &'static str,
}

impl<'a> Forward<'a> {
    /// The sidecar default: append the peer, set the scheme.
    pub fn append(ip: &'a [u8]) -> Forward<'a> {
        Forward {
            append: Some(ip),
            overwrite_proto: true,
            scheme: "http",
        }
    }
}

/// True if the message's own headers include `name`.
fn has_header(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers.iter().any(|h| h.name.eq_ignore_ascii_case(name))
}

/// Appends the decimal form of `n` without allocating.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    // u64::MAX has 20 digits. Filled from the end; `used` counts the digits written.
    let mut tmp = [0u8; 20];
    let mut used = 0;
    for slot in tmp.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        used += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if let Some((_, digits)) = tmp.split_at_checked(tmp.len() - used) {
        out.extend_from_slice(digits);
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What the proxy needs to write a request head upstream.
pub struct UpstreamRequest<'a, 'h> {
    pub method: &'a str,
    /// Origin-form path and query.
    pub path: &'a str,
    /// Replaces the Host header (absolute-form targets).
    pub authority: Option<&'a str>,
    pub headers: &'a [httparse::Header<'h>],
    pub has_connection_header: bool,
    /// `x-forwarded-for` / `-proto` handling.
    pub forward: Forward<'a>,
    /// Pass this `Upgrade` value through (an upgrade the route allows).
    pub upgrade: Option<&'a [u8]>,
    /// Header edits of the filter chain and the route.
    pub edits: Edits<'a>,
    /// The route rewrote the path: the client's path, for `x-envoy-original-path`.
    pub original_path: Option<&'a str>,
    /// The route rewrote the Host: the client's, for `x-envoy-original-host`.
    pub original_host: Option<&'a [u8]>,
}

/// Envoy sets these when it rewrites; a client's own copy is replaced, not passed on.
fn replaced_by_rewrite(r: &UpstreamRequest<'_, '_>, name: &str) -> bool {
    (r.original_path.is_some() && name.eq_ignore_ascii_case("x-envoy-original-path"))
        || (r.original_host.is_some() && name.eq_ignore_ascii_case("x-envoy-original-host"))
}

/// Writes an HTTP/1.1 request head for the upstream.
pub fn write_request(out: &mut Vec<u8>, r: &UpstreamRequest<'_, '_>) {
    out.extend_from_slice(r.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(r.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(a) = r.authority {
        header(out, b"host", a.as_bytes());
    }
    let edited = !r.edits.is_empty();
    let keeps = |name: &str| !edited || r.edits.keeps(name);
    let rewritten = r.original_path.is_some() || r.original_host.is_some();
    let mut content_length_written = false;
    let mut xff_seen = false;
    let mut xfp_seen = false;
    let named = Nominated::of(r.headers, r.has_connection_header);
    for h in r.headers {
        let special = classify(h.name);
        match special {
            // Replaced by the absolute-form target's authority, written above.
            Special::Host if r.authority.is_some() => {}
            Special::ContentLength => {
                if !content_length_written {
                    content_length_written = true;
                    header(out, h.name.as_bytes(), h.value);
                }
            }
            // Hop-by-hop, but this hop frames the body as it came: chunked.
            Special::TransferEncoding => header(out, b"transfer-encoding", b"chunked"),
            // The proxy answers `100-continue` itself.
            Special::Expect => {}
            Special::XForwardedProto => {
                xfp_seen = true;
                if !r.forward.overwrite_proto && keeps(h.name) {
                    header(out, h.name.as_bytes(), h.value);
                }
            }
            Special::XForwardedFor => {
                xff_seen = true;
                // Not appending: the header passes as it came.
                if r.forward.append.is_none() && keeps(h.name) {
                    header(out, h.name.as_bytes(), h.value);
                }
            }
            _ => match hop::fate(special, h.name, h.value, Message::Request, named) {
                Fate::Forward if rewritten && replaced_by_rewrite(r, h.name) => {}
                Fate::Forward if keeps(h.name) => header(out, h.name.as_bytes(), h.value),
                Fate::TeTrailers => header(out, b"te", b"trailers"),
                Fate::Forward | Fate::Drop => {}
            },
        }
    }
    if let Some(ip) = r.forward.append.filter(|_| keeps("x-forwarded-for")) {
        out.extend_from_slice(b"x-forwarded-for: ");
        if xff_seen {
            for h in r
                .headers
                .iter()
                .filter(|h| classify(h.name) == Special::XForwardedFor)
            {
                out.extend_from_slice(h.value);
                out.extend_from_slice(b",");
            }
        }
        out.extend_from_slice(ip);
        out.extend_from_slice(b"\r\n");
    }
    if (r.forward.overwrite_proto || !xfp_seen) && keeps("x-forwarded-proto") {
        out.extend_from_slice(b"x-forwarded-proto: ");
        out.extend_from_slice(r.forward.scheme.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if edited {
        // The proxy's forwarding headers count as present, as in Envoy, where they are
        // set before the route's edits run.
        r.edits.for_each_added(
            |n| {
                has_header(r.headers, n)
                    || n.eq_ignore_ascii_case("x-forwarded-proto")
                    || (n.eq_ignore_ascii_case("x-forwarded-for") && r.forward.append.is_some())
            },
            |n, v| header(out, n.as_bytes(), v.as_bytes()),
        );
    }
    if let Some(p) = r.original_path {
        header(out, b"x-envoy-original-path", p.as_bytes());
    }
    if let Some(h) = r.original_host {
        header(out, b"x-envoy-original-host", h);
    }
    if let Some(u) = r.upgrade {
        header(out, b"upgrade", u);
        header(out, b"connection", b"upgrade");
    }
    out.extend_from_slice(b"\r\n");
}

/// Sets the Host of the request head in `head` (written by `write_request`) to `host`,
/// keeping the old one in `x-envoy-original-host`: Envoy's `auto_host_rewrite`, applied
/// once the endpoint is picked. Allocates a new head; only that route option uses it.
pub fn set_host(head: &mut Vec<u8>, host: &str) {
    let Some(line_end) = head.windows(2).position(|w| w == b"\r\n") else {
        return;
    };
    let mut out = Vec::with_capacity(head.len() + 2 * host.len() + 32);
    let mut old = None;
    let mut pos = line_end + 2;
    out.extend_from_slice(head.get(..pos).unwrap_or_default());
    while let Some(n) = head
        .get(pos..)
        .and_then(|rest| rest.windows(2).position(|w| w == b"\r\n"))
    {
        let line = head.get(pos..pos + n).unwrap_or_default();
        pos += n + 2;
        if line.is_empty() {
            break;
        }
        match line.split_at_checked(5) {
            Some((name, value)) if name.eq_ignore_ascii_case(b"host:") && old.is_none() => {
                old = Some(value.trim_ascii().to_vec());
            }
            _ => {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"host: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(old) = old {
        out.extend_from_slice(b"x-envoy-original-host: ");
        out.extend_from_slice(&old);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    // Anything after the head (none today) stays.
    out.extend_from_slice(head.get(pos..).unwrap_or_default());
    *head = out;
}

/// How the response body is framed towards the downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownFraming {
    /// Forward the upstream's Content-Length (or no body at all).
    AsIs,
    /// Chunked, forwarded from a chunked upstream response.
    Chunked,
    /// No length: the body ends when the connection closes.
    Close,
    /// No body and no framing header at all: `101 Switching Protocols`, after which the
    /// bytes belong to the new protocol (RFC 9110 sections 8.6, 15.2).
    None,
}

/// What the proxy needs to write a response head downstream.
pub struct DownstreamResponse<'a, 'h> {
    pub status: u16,
    pub reason: &'a str,
    pub headers: &'a [httparse::Header<'h>],
    pub has_connection_header: bool,
    pub framing: DownFraming,
    /// Close the downstream connection after this response.
    pub close: bool,
    /// The client spoke HTTP/1.0 and asked for keep-alive.
    pub http10_keep_alive: bool,
    /// A `101 Switching Protocols` to this protocol: pass Upgrade and Connection on.
    pub upgrade: Option<&'a [u8]>,
    /// Header edits of the route and the filter chain.
    pub edits: Edits<'a>,
}

pub fn write_response(out: &mut Vec<u8>, r: &DownstreamResponse<'_, '_>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(r.status));
    out.push(b' ');
    out.extend_from_slice(r.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let edited = !r.edits.is_empty();
    let mut content_length_written = false;
    let named = Nominated::of(r.headers, r.has_connection_header);
    for h in r.headers {
        let special = classify(h.name);
        match special {
            Special::ContentLength => {
                if !content_length_written && r.framing == DownFraming::AsIs {
                    content_length_written = true;
                    header(out, h.name.as_bytes(), h.value);
                }
            }
            _ => {
                if hop::fate(special, h.name, h.value, Message::Response, named) == Fate::Forward
                    && (!edited || r.edits.keeps(h.name))
                {
                    header(out, h.name.as_bytes(), h.value);
                }
            }
        }
    }
    if edited {
        r.edits.for_each_added(
            |n| has_header(r.headers, n),
            |n, v| header(out, n.as_bytes(), v.as_bytes()),
        );
    }
    if r.framing == DownFraming::Chunked {
        header(out, b"transfer-encoding", b"chunked");
    }
    if let Some(u) = r.upgrade {
        header(out, b"upgrade", u);
        header(out, b"connection", b"upgrade");
    } else if r.close {
        header(out, b"connection", b"close");
    } else if r.http10_keep_alive {
        header(out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the `101 Switching Protocols` head for an upgrade the route allowed: the
/// upstream's end-to-end headers, `Upgrade: <protocol>` and `Connection: upgrade`, and
/// no Content-Length or Transfer-Encoding; with the response `edits` (as Envoy, which
/// treats the 101 as any upstream response head).
pub fn write_switching_protocols(
    out: &mut Vec<u8>,
    reason: &str,
    headers: &[httparse::Header<'_>],
    protocol: &[u8],
    edits: Edits<'_>,
) {
    write_response(
        out,
        &DownstreamResponse {
            status: 101,
            reason,
            headers,
            has_connection_header: true,
            framing: DownFraming::None,
            close: false,
            http10_keep_alive: false,
            upgrade: Some(protocol),
            edits,
        },
    );
}

pub use super::head::reason;

/// Writes a complete local reply (head and body).
pub fn write_local_reply(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    close: bool,
    head_only: bool,
    edits: Edits<'_>,
) {
    write_local_reply_at(
        out,
        (status, ResponseFlag::None),
        content_type,
        None,
        body,
        close,
        head_only,
        edits,
    );
}

/// Writes a complete local reply (head and body), with a `location` header if given
/// (redirects; 201 and 3xx direct responses, as Envoy).
#[allow(clippy::too_many_arguments)]
pub fn write_local_reply_at(
    out: &mut Vec<u8>,
    reply: (u16, ResponseFlag),
    content_type: Option<&str>,
    location: Option<&str>,
    body: &[u8],
    close: bool,
    head_only: bool,
    edits: Edits<'_>,
) {
    let (status, flag) = reply;
    // The proxy's own reply: no upstream service time.
    let edits = edits.local_reply();
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(l) = location {
        header(out, b"location", l.as_bytes());
    }
    overloaded(out, flag);
    out.extend_from_slice(b"content-length: ");
    push_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    let has_type = !body.is_empty();
    if has_type && (edits.is_empty() || edits.keeps("content-type")) {
        header(
            out,
            b"content-type",
            content_type.unwrap_or("text/plain").as_bytes(),
        );
    }
    if !edits.is_empty() {
        edits.for_each_added(
            |n| has_type && n.eq_ignore_ascii_case("content-type"),
            |n, v| header(out, n.as_bytes(), v.as_bytes()),
        );
    }
    if close {
        header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Envoy's router marks a reply to a request a circuit breaker refused.
fn overloaded(out: &mut Vec<u8>, flag: ResponseFlag) {
    if flag == ResponseFlag::UpstreamOverflow {
        header(out, b"x-envoy-overloaded", b"true");
    }
}

/// How a local reply is framed: for a gRPC request (Envoy's gRPC form, whatever the
/// status), for a HEAD request (no body), and whether the connection closes after it.
#[derive(Debug, Clone, Copy)]
pub struct ReplyForm {
    pub grpc: bool,
    pub head_only: bool,
    pub close: bool,
}

/// Writes a complete local reply in the request's form, the one writer of the HTTP/1
/// connection manager's replies: for a gRPC request Envoy's gRPC form
/// ([`write_grpc_local_reply`]), otherwise [`write_local_reply_at`]. Returns the
/// status that went on the wire (200 for the gRPC form).
pub fn write_reply(
    out: &mut Vec<u8>,
    form: ReplyForm,
    reply: (u16, ResponseFlag),
    content_type: Option<&str>,
    location: Option<&str>,
    body: &[u8],
    edits: Edits<'_>,
) -> u16 {
    let ReplyForm {
        grpc,
        head_only,
        close,
    } = form;
    if grpc {
        write_grpc_local_reply(out, reply, location, body, close, head_only, edits);
        200
    } else {
        write_local_reply_at(
            out,
            reply,
            content_type,
            location,
            body,
            close,
            head_only,
            edits,
        );
        reply.0
    }
}

/// Writes a local reply to a gRPC request in Envoy's form (`http::grpc_local`): 200,
/// `application/grpc`, the status in `grpc-status`, the body in `grpc-message` (not
/// for HEAD, as Envoy), and no body.
fn write_grpc_local_reply(
    out: &mut Vec<u8>,
    reply: (u16, ResponseFlag),
    location: Option<&str>,
    body: &[u8],
    close: bool,
    head_only: bool,
    edits: Edits<'_>,
) {
    let (status, flag) = reply;
    let edits = edits.local_reply();
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    if edits.is_empty() || edits.keeps("content-type") {
        header(out, b"content-type", b"application/grpc");
    }
    // A filter may set the status itself (the fault filter's `grpc_status` abort).
    if edits.keeps("grpc-status") {
        out.extend_from_slice(b"grpc-status: ");
        let g = edits.stamp.grpc_status;
        push_u64(
            out,
            u64::from(g.unwrap_or_else(|| grpc_local::status(status))),
        );
        out.extend_from_slice(b"\r\n");
    }
    let message = grpc_local::message(body).filter(|_| !head_only);
    if let Some(m) = &message {
        header(out, b"grpc-message", m.as_bytes());
    }
    if let Some(l) = location {
        header(out, b"location", l.as_bytes());
    }
    overloaded(out, flag);
    out.extend_from_slice(b"content-length: 0\r\n");
    if !edits.is_empty() {
        let has = |n: &str| {
            n.eq_ignore_ascii_case("content-type")
                || n.eq_ignore_ascii_case("grpc-status")
                || (message.is_some() && n.eq_ignore_ascii_case("grpc-message"))
                || (location.is_some() && n.eq_ignore_ascii_case("location"))
        };
        edits.for_each_added(has, |n, v| header(out, n.as_bytes(), v.as_bytes()));
    }
    if close {
        header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_drops_hop_by_hop_and_adds_forwarding() {
        let hs = [
            httparse::Header {
                name: "Host",
                value: b"a.example",
            },
            httparse::Header {
                name: "Connection",
                value: b"keep-alive, X-Secret",
            },
            httparse::Header {
                name: "X-Secret",
                value: b"1",
            },
            httparse::Header {
                name: "TE",
                value: b"trailers, deflate",
            },
            httparse::Header {
                name: "Keep-Alive",
                value: b"timeout=5",
            },
            httparse::Header {
                name: "X-Forwarded-For",
                value: b"10.0.0.1",
            },
            httparse::Header {
                name: "X-Forwarded-Proto",
                value: b"https",
            },
            httparse::Header {
                name: "Accept",
                value: b"*/*",
            },
        ];
        let mut out = Vec::new();
        write_request(
            &mut out,
            &UpstreamRequest {
                method: "GET",
                path: "/p?q",
                authority: None,
                headers: &hs,
                has_connection_header: true,
                forward: Forward::append(b"127.0.0.1"),
                edits: Edits::none(),
                upgrade: None,
                original_path: None,
                original_host: None,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p?q HTTP/1.1\r\nHost: a.example\r\nte: trailers\r\nAccept: */*\r\n\
             x-forwarded-for: 10.0.0.1,127.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
        );
    }

    #[test]
    fn set_host_replaces_host_and_keeps_the_original() {
        let mut head = b"GET / HTTP/1.1\r\nHost: a.example\r\nx-y: 1\r\n\r\n".to_vec();
        set_host(&mut head, "svc.internal");
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET / HTTP/1.1\r\nx-y: 1\r\nhost: svc.internal\r\n\
             x-envoy-original-host: a.example\r\n\r\n"
        );
        let mut bad = b"no line end".to_vec();
        set_host(&mut bad, "h");
        assert_eq!(bad, b"no line end");
    }

    #[test]
    fn response_sets_framing_and_connection() {
        let hs = [
            httparse::Header {
                name: "Transfer-Encoding",
                value: b"chunked",
            },
            httparse::Header {
                name: "Connection",
                value: b"keep-alive",
            },
            httparse::Header {
                name: "Server",
                value: b"x",
            },
        ];
        let mut out = Vec::new();
        write_response(
            &mut out,
            &DownstreamResponse {
                status: 200,
                reason: "OK",
                headers: &hs,
                has_connection_header: true,
                framing: DownFraming::Chunked,
                close: true,
                http10_keep_alive: false,
                upgrade: None,
                edits: Edits::none(),
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let mut up = Vec::new();
        let hs101 = [
            httparse::Header {
                name: "Upgrade",
                value: b"websocket",
            },
            httparse::Header {
                name: "Content-Length",
                value: b"0",
            },
            httparse::Header {
                name: "Sec-WebSocket-Accept",
                value: b"k",
            },
        ];
        write_switching_protocols(
            &mut up,
            "Switching Protocols",
            &hs101,
            b"websocket",
            Edits::none(),
        );
        assert_eq!(
            String::from_utf8(up).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: k\r\n\
             upgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
        let mut n = Vec::new();
        push_u64(&mut n, 1234567890);
        assert_eq!(n, b"1234567890");
    }
}
