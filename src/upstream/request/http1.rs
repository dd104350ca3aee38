//! The HTTP/1.1 upstream codec: how a connection is obtained (`Http1`: the per-core
//! keep-alive pool, or a new connection), and the message pieces for requests that
//! arrive as HTTP/2 (`http::request::Parts` and DATA frames): the request head, the
//! body framed by Content-Length or chunked, the response head parsed into an
//! `http::Response`, chunked trailers into a header map.
//!
//! HTTP/1 clients need none of the translation: their head is re-encoded with the edits
//! applied while writing (`http/h1/encode.rs`) and their body forwarded from the
//! connection's read buffer, without a copy (`http/body.rs`, `http/conn/upload.rs`).
//! Response heads are parsed by `http::h1::response::parse` on both paths, the parser
//! the fuzz driver runs.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::io::Write as _;
use std::time::Instant;

use futures_lite::io::AsyncWriteExt;
use h2::RecvStream;
use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::clock::Progress;
use super::replay::Recording;
use super::tee::TeeTx;
use super::{Tried, UpstreamCodec};
use crate::config::MAX_HEADERS_CAP;
use crate::http::body::BodyError;
use crate::http::buf::ReadBuf;
use crate::http::failure::Failure;
use crate::http::filter::headers::Edits;
use crate::http::forwarding::Decision;
use crate::http::h1::head::BodyKind;
use crate::http::h1::response::{self, Asked, BadResponse, Kind};
use crate::http::hop::{self, Fate, Message, Nominated, Special};
use crate::upstream::cluster::ClusterState;
use crate::upstream::counted::{Connecting, Counted};
use crate::upstream::Connector;

/// HTTP/1.1 upstreams: a keep-alive connection from the per-core pool, or a new one.
pub(crate) struct Http1;

impl<K: Connector> UpstreamCodec<K> for Http1 {
    type Conn = Counted<K::Conn>;

    fn hedges(&self) -> bool {
        true
    }

    async fn hedge_try(
        &self,
        up: &mut Counted<K::Conn>,
        request: &Vec<u8>,
        progress: &Progress,
    ) -> Result<ReadBuf, Tried> {
        super::http1_hedge::hedge_try(up, request, progress).await
    }

    async fn obtain(
        &self,
        cs: &ClusterState<K::Conn>,
        ep: usize,
        connector: &K,
        progress: &super::clock::Progress,
    ) -> Result<(Counted<K::Conn>, bool), Failure> {
        let deadline = progress.deadline();
        let stats = &cs.stats;
        // The route's priority: its breakers, and its pools (Envoy's pool per priority).
        let priority = progress.priority();
        let breakers = cs.cfg.breakers.at(priority);
        let pool = &cs.pools(priority).pool;
        let live = pool.live();
        // Held from the moment no idle connection is at hand until one is.
        let mut pending = None;
        let forced = loop {
            // An idle connection the upstream closed, or wrote to, is never used.
            while let Some(mut c) = pool.take(ep) {
                if crate::http::io::idle_is_clean(&mut c).await {
                    use_once(&mut c, cs);
                    stats.cx_reused.inc();
                    progress.note_upstream(&c);
                    return Ok((c, true));
                }
            }
            // No connection to the endpoint on this core: the request needs a new pool,
            // within `max_connection_pools`; past it Envoy's router answers 503 "no
            // healthy upstream" (UH), with `upstream_cx_pool_overflow` counted.
            if pending.is_none() && live.open(ep) == 0 && !breakers.can_open_pool() {
                stats.cx_pool_overflow.inc();
                return Err(Failure::NoHealthyUpstream);
            }
            // No idle connection: the request is pending, within the circuit breakers'
            // `max_pending_requests` (Envoy's pool queues it), until one is at hand.
            if pending.is_none() {
                let Some(p) = breakers.try_pending() else {
                    stats.rq_pending_overflow.inc();
                    return Err(Failure::Overflow);
                };
                pending = Some(p);
            }
            if breakers.open_cx(cs.host_cx(ep)) {
                break false;
            }
            // At `max_connections` the request waits for a connection of this core's
            // pool to the endpoint to come back or close (Envoy's pool); a pool with
            // none opens one anyway, or its requests would wait for nothing.
            stats.cx_overflow.inc();
            if live.open(ep) == 0 {
                breakers.force_cx(cs.host_cx(ep));
                break true;
            }
            let waited = match deadline {
                None => {
                    live.wait(ep).await;
                    true
                }
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    futures_lite::future::or(
                        async {
                            live.wait(ep).await;
                            true
                        },
                        async {
                            crate::rt::sleep(left).await;
                            false
                        },
                    )
                    .await
                }
            };
            if !waited {
                return Err(Failure::RouteTimeout);
            }
        };
        tracing::trace!(forced, "opening an upstream connection");
        // The slot taken above is the new connection's from here; `Counted` gives it
        // back when the connection closes.
        let slot = Connecting::new(breakers, priority, live, ep, cs.host_cx(ep).clone());
        let (Some(endpoint), Some(es)) = (cs.cfg.endpoints.get(ep), cs.endpoints.get(ep)) else {
            return Err(Failure::NoHealthyUpstream);
        };
        let timeout = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(cs.cfg.connect_timeout),
            None => cs.cfg.connect_timeout,
        };
        let started = Instant::now();
        // Boxed: a connect (with its TLS handshake) is a fraction of the requests, and
        // inline its future would size every request's future, which an HTTP/2 stream
        // copies whole when it starts.
        let connected = Box::pin(connector.connect_to(&cs.cfg, endpoint.addr, timeout)).await;
        drop(pending);
        match connected {
            Ok(c) => {
                progress.connected(started);
                stats.cx_total.inc();
                es.cx_total.inc();
                let mut c = slot.connected(c);
                use_once(&mut c, cs);
                progress.note_upstream(&c);
                Ok((c, false))
            }
            Err(e) => {
                tracing::debug!(upstream = %endpoint.addr, error = %e, "upstream connect failed");
                progress.connect_failed(&e);
                stats.cx_connect_fail.inc();
                es.cx_connect_fail.inc();
                // A connect cut short by the route deadline is the route timeout.
                Err(if deadline.is_some_and(|d| Instant::now() >= d) {
                    Failure::RouteTimeout
                } else {
                    Failure::ConnectFailure
                })
            }
        }
    }
}

/// Writes the HTTP/1.1 request head; returns whether the body is sent chunked.
///
/// The request edits apply to the message as the proxy would send it otherwise: the
/// client's end-to-end headers and the forwarding headers. Headers they drop are skipped
/// as they are written, the ones they add follow; nothing is looked up without edits.
/// `ends`: the request has no body (END_STREAM came with its HEADERS).
pub(crate) fn request_head(
    out: &mut Vec<u8>,
    p: &http::request::Parts,
    authority: &str,
    path: &str,
    fwd: Decision,
    edits: Edits<'_>,
    ends: bool,
) -> bool {
    let edited = !edits.is_empty();
    // Plain copies, no formatting machinery: this runs once per proxied HTTP/2 request.
    out.extend_from_slice(p.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    // What the fields below are asked about afterwards, noted on the one walk over the
    // map instead of a hashed lookup each.
    let (mut has_length, mut has_xff, mut has_xfp) = (false, false, false);
    for (name, value) in &p.headers {
        let n = name.as_str();
        let special = hop::classify(n);
        match special {
            Special::ContentLength => has_length = true,
            Special::XForwardedFor => has_xff = true,
            Special::XForwardedProto => has_xfp = true,
            _ => {}
        }
        match special {
            _ if edited && !edits.keeps(n) => {}
            // Rewritten below; otherwise they pass as they came.
            Special::XForwardedFor if fwd.append.is_some() => {}
            Special::XForwardedProto if fwd.overwrite_proto => {}
            // The authority is written above, from `:authority` (or the one Host).
            Special::Host => {}
            // An HTTP/2 request names nothing in a Connection header: it has none.
            _ => match hop::fate(
                special,
                n,
                value.as_bytes(),
                Message::Request,
                Nominated::NONE,
            ) {
                Fate::Forward => {
                    out.extend_from_slice(n.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Fate::TeTrailers => out.extend_from_slice(b"te: trailers\r\n"),
                Fate::Drop => {}
            },
        }
    }
    let chunked = !ends && !has_length;
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    let incoming_xff = if has_xff { Some(&p.headers) } else { None };
    write_forwarding(out, incoming_xff, fwd, has_xfp, |n| {
        !edited || edits.keeps(n)
    });
    if edited {
        // Presence as the edits see it: after the forwarding headers were set.
        let has = |n: &str| match n {
            "x-forwarded-for" => has_xff || fwd.append.is_some(),
            "x-forwarded-proto" => true,
            n => p.headers.contains_key(n),
        };
        edits.for_each_added(has, |name, value| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        });
    }
    out.extend_from_slice(b"\r\n");
    chunked
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// The forwarding headers the policy (`http::forwarding`) decided, as the HTTP/1.1
/// encoder writes them: with an address to append, every incoming `x-forwarded-for`
/// value in order, joined by "," (as Envoy joins them), then the address, on one line; `x-forwarded-proto:
/// http` when it is overwritten or the client sent none. Incoming values the policy
/// keeps were written with the other headers. `keep` says whether the request's edits
/// leave a header in place. `incoming`: the request's headers when it has an
/// `x-forwarded-for` (`None` spares the lookup).
fn write_forwarding(
    out: &mut Vec<u8>,
    incoming: Option<&http::HeaderMap>,
    fwd: Decision,
    has_xfp: bool,
    keep: impl Fn(&str) -> bool,
) {
    if let Some(ip) = fwd.append.filter(|_| keep(X_FORWARDED_FOR)) {
        out.extend_from_slice(b"x-forwarded-for: ");
        for v in incoming
            .into_iter()
            .flat_map(|h| h.get_all(X_FORWARDED_FOR))
        {
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b",");
        }
        push_ip(out, ip);
        out.extend_from_slice(b"\r\n");
    }
    if (fwd.overwrite_proto || !has_xfp) && keep(X_FORWARDED_PROTO) {
        out.extend_from_slice(b"x-forwarded-proto: ");
        out.extend_from_slice(fwd.scheme().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the text form of `ip` (as `Display` writes it); IPv4, the common case, without
/// the formatting machinery.
fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    let std::net::IpAddr::V4(v4) = ip else {
        let _ = write!(out, "{ip}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// The request body's first DATA frame, if it is already here (never waits): appended
/// to `out`, the request head, in the body's framing, so that head and body go upstream
/// in one write. Returns the bytes taken and whether the body ended with them (for a
/// chunked body the last chunk is then in `out` too); `None` when no frame is here yet
/// or the stream has no more DATA (`send_body` takes it from there). `Err`: the
/// client's stream failed.
pub(crate) async fn take_ready_data(
    out: &mut Vec<u8>,
    body: &mut RecvStream,
    chunked: bool,
    progress: &Progress,
    tee: Option<&TeeTx>,
) -> Result<Option<(u64, bool)>, BodyError> {
    let ready = std::future::poll_fn(|cx| std::task::Poll::Ready(body.poll_data(cx))).await;
    let chunk = match ready {
        std::task::Poll::Ready(Some(Ok(chunk))) => chunk,
        std::task::Poll::Ready(Some(Err(_))) => return Err(BodyError::Read),
        std::task::Poll::Ready(None) | std::task::Poll::Pending => return Ok(None),
    };
    let n = chunk.len();
    // A stream that ended with this frame has no trailers to wait for.
    let ended = body.is_end_stream();
    if let Some(t) = tee {
        t.push_bytes(chunk.clone());
        if ended {
            t.finish(None);
        }
    }
    if chunked {
        if n > 0 {
            let _ = write!(out, "{n:x}\r\n");
            out.extend_from_slice(&chunk);
            out.extend_from_slice(b"\r\n");
        }
        if ended {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    } else {
        out.extend_from_slice(&chunk);
    }
    let _ = body.flow_control().release_capacity(n);
    progress.touch();
    progress.received(n as u64);
    Ok(Some((n as u64, ended)))
}

/// Streams the request body: DATA frames as they arrive, flow-control capacity released
/// once each is written upstream; `up` keeps a copy for a retry (`replay`), counting
/// the body bytes without their chunk framing. `chunks`: chunked, with the trailers
/// (`Verbatim`) or without them (`NoTrailers`, Envoy's HTTP/1 encoder without
/// `enable_trailers`), or as it is (`Strip`: a Content-Length body).
pub(crate) async fn send_body<U: futures_lite::io::AsyncWrite + Unpin>(
    up: &mut Recording<'_, U>,
    body: &mut RecvStream,
    chunks: crate::http::body::Chunks,
    progress: &Progress,
    tee: Option<&TeeTx>,
) -> Result<u64, BodyError> {
    let chunked = !chunks.strip();
    let mut total = 0u64;
    let mut framing = Vec::with_capacity(64);
    // The last chunk went out with the data before it: no trailers follow.
    let mut ended = false;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|_| BodyError::Read)?;
        let n = chunk.len();
        progress.touch();
        if let Some(t) = tee {
            t.push_bytes(chunk.clone());
        }
        up.payload(n);
        if chunked {
            // A stream that ended with this DATA frame has no trailers to wait for.
            ended = body.is_end_stream();
            crate::http::body::write_chunk(up, &mut framing, &chunk, ended)
                .await
                .map_err(|_| BodyError::Write)?;
        } else {
            up.write_all(&chunk).await.map_err(|_| BodyError::Write)?;
        }
        let _ = body.flow_control().release_capacity(n);
        progress.received(n as u64);
        total += n as u64;
    }
    // No more DATA: the client ended the stream (with trailers, if any, received).
    progress.request_done();
    if tee.is_some() && !chunked {
        // The shadows get the trailers too (an HTTP/1 upstream of a Content-Length body
        // does not); a chunked body reads them below.
        let trailers = body.trailers().await.map_err(|_| BodyError::Read)?;
        if let Some(t) = tee {
            t.finish(trailers.as_ref());
        }
    }
    if chunked && !ended {
        let trailers = body.trailers().await.map_err(|_| BodyError::Read)?;
        if let Some(t) = tee {
            t.finish(trailers.as_ref());
        }
        progress.touch();
        framing.clear();
        let sent = trailers.filter(|_| chunks == crate::http::body::Chunks::Verbatim);
        crate::http::body::last_chunk_with(&mut framing, &sent.unwrap_or_default());
        up.write_all(&framing).await.map_err(|_| BodyError::Write)?;
    }
    if let Some(t) = tee {
        // A body that ended with a DATA frame (END_STREAM): no trailers.
        t.finish(None);
    }
    Ok(total)
}

pub(crate) struct Head {
    pub len: usize,
    pub response: Response<()>,
    pub body: BodyKind,
    /// The connection stays in step for another request after this response.
    pub reuse: bool,
    /// A `Content-Length` body of at most `WHOLE_BODY_MAX` bytes that arrived whole
    /// with the head: its bytes in the head's copy (no copy of its own). They are
    /// still in the buffer after the head too, for whoever reads the body there.
    pub whole_body: Option<bytes::Bytes>,
}

/// The largest body `parse_head` copies with the head (`Head::whole_body`): one DATA
/// frame at HTTP/2's default frame size.
const WHOLE_BODY_MAX: u64 = 16 * 1024;

pub(crate) enum Parsed {
    /// A 1xx interim response of this many bytes, skipped.
    Interim(usize),
    Final(Head),
}

/// Parses an upstream response head into an HTTP/2 response. `Ok(None)`: need more.
///
/// The head is parsed by `h1::response::parse`, the parser the HTTP/1 path and the fuzz
/// driver run, so status range, framing and interim responses are decided in one place;
/// nothing here asks for an upgrade, so a `101` is refused there.
pub(crate) fn parse_head(data: &[u8], is_head: bool) -> Result<Option<Parsed>, BadResponse> {
    let mut slots = response::header_slots();
    let asked = Asked {
        head: is_head,
        upgrade: false,
    };
    let Some(resp) = response::parse(data, asked, &mut slots)? else {
        return Ok(None);
    };
    let (body, f) = match resp.kind {
        Kind::Interim => return Ok(Some(Parsed::Interim(resp.head_len))),
        // `parse` only accepts a 101 that was asked for.
        Kind::Upgraded { .. } => return Err(BadResponse("unsolicited 101")),
        Kind::Final { body, framing } => (body, framing),
    };
    let status = resp.status;
    let len = resp.head_len;
    let mut out = Response::new(());
    *out.status_mut() =
        StatusCode::from_u16(status).map_err(|_| BadResponse("status code out of range"))?;
    let h = out.headers_mut();
    let named = Nominated::of(resp.headers, f.has_connection_header);
    // The values share one copy of the head, where each was a copy of its own (an
    // allocation per header per HTTP/2 stream); a small body already here shares it too.
    let body_end = match body {
        BodyKind::Length(n) if n > 0 && n <= WHOLE_BODY_MAX => usize::try_from(n)
            .ok()
            .and_then(|n| len.checked_add(n))
            .filter(|end| *end <= data.len()),
        _ => None,
    };
    let copied = data.get(..body_end.unwrap_or(len)).unwrap_or(data);
    let head = bytes::Bytes::copy_from_slice(copied);
    for x in resp.headers.iter() {
        let special = hop::classify(x.name);
        if hop::fate(special, x.name, x.value, Message::Response, named) != Fate::Forward {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(x.name.as_bytes()),
            HeaderValue::from_maybe_shared(within(&head, data, x.value)),
        ) else {
            return Err(BadResponse("not a valid HTTP/2 field"));
        };
        h.append(name, value);
    }
    Ok(Some(Parsed::Final(Head {
        len,
        response: out,
        body,
        reuse: f.keep_alive && body != BodyKind::UntilClose,
        // `head` holds `..end` whole (`copied`); checked again so that no slicing can
        // panic whatever the parse said.
        whole_body: body_end
            .filter(|end| len <= *end && *end <= head.len())
            .map(|end| head.slice(len..end)),
    })))
}

/// `part`, a slice of `data`, as the same bytes of `copy` (a copy of `data`'s start),
/// without copying them again; a part outside the copy is copied.
fn within(copy: &bytes::Bytes, data: &[u8], part: &[u8]) -> bytes::Bytes {
    let at = (part.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
    match at.checked_add(part.len()) {
        Some(end) if at <= end && end <= copy.len() => copy.slice(at..end),
        _ => bytes::Bytes::copy_from_slice(part),
    }
}

/// Parses a raw chunked trailer section (field lines and the final empty line) into a
/// header map; `Ok(None)` if it has no fields. More than `max` fields, or a field that
/// is not a valid HTTP/2 field, is `Err`: the response cannot be passed on whole.
/// Connection-specific fields are dropped as they are from response heads.
pub(crate) fn trailer_map(raw: &[u8], max: usize) -> Result<Option<http::HeaderMap>, ()> {
    if raw.is_empty() {
        // Not a chunked body: there was no trailer section at all.
        return Ok(None);
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
    let slots = slots.get_mut(..max.min(MAX_HEADERS_CAP)).ok_or(())?;
    let fields = match httparse::parse_headers(raw, slots) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        // Too many fields, a malformed line, or a section cut short.
        _ => return Err(()),
    };
    let mut map = http::HeaderMap::new();
    for f in fields.iter() {
        let special = hop::classify(f.name);
        // Host names where a request goes; it is never a trailer (RFC 9110 section 6.5.1).
        if special == Special::Host
            || hop::fate(special, f.name, f.value, Message::Response, Nominated::NONE)
                != Fate::Forward
        {
            continue;
        }
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(f.name.as_bytes()),
            HeaderValue::from_bytes(f.value),
        ) else {
            return Err(());
        };
        map.append(n, v);
    }
    Ok((!map.is_empty()).then_some(map))
}

/// Counts a request sent on `c`; the one that uses up the cluster's
/// `max_requests_per_connection` counts the connection in `upstream_cx_max_requests`
/// (Envoy counts it when that request is attached; the connection closes after it).
fn use_once<C, D>(c: &mut Counted<C>, cs: &ClusterState<D>) {
    c.use_once();
    if !c.reusable(cs.cfg.pool.max_requests_per_connection) {
        cs.stats.cx_max_requests.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_ip_writes_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.9",
            "192.168.10.99",
            "255.255.255.255",
            "::1",
            "2001:db8::17",
            "::ffff:10.0.0.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }

    #[test]
    fn header_values_come_whole_from_the_shared_copy_of_the_head() {
        let raw = b"HTTP/1.1 200 OK\r\nserver: nginx\r\nx-empty:\r\nx-b: two words\r\n\
                    content-length: 0\r\n\r\nNEXT";
        let Ok(Some(Parsed::Final(h))) = parse_head(raw, false) else {
            panic!("a final head");
        };
        let got = h.response.headers();
        assert_eq!(got["server"], "nginx");
        assert_eq!(got["x-empty"], "");
        assert_eq!(got["x-b"], "two words");
        assert_eq!(got["content-length"], "0");
        assert_eq!(h.len, raw.len() - 4);
        // A part outside the copy is copied, not cut from it.
        let copy = bytes::Bytes::from_static(b"abc");
        assert_eq!(within(&copy, b"abc", b"zz"), &b"zz"[..]);
        assert_eq!(within(&copy, b"abcdef", &b"abcdef"[2..5]), &b"cde"[..]);
    }

    #[test]
    fn statuses_outside_1xx_to_5xx_are_invalid() {
        let head = |code: &str| format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
        for bad in ["000", "099", "600", "999"] {
            assert!(parse_head(head(bad).as_bytes(), false).is_err(), "{bad}");
        }
        for good in ["100", "200", "599"] {
            assert!(
                matches!(parse_head(head(good).as_bytes(), false), Ok(Some(_))),
                "{good}"
            );
        }
    }

    #[test]
    fn heads_are_decided_as_on_the_http1_path() {
        // What `h1::response::parse` decides (incomplete, refused, interim, final with
        // this body) is what this path does with the same bytes.
        let heads: [&[u8]; 12] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.0 204 No Content\r\nContent-Length: 7\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
            b"HTTP/1.1 600 X\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b",
            b"HTLP/1.1 200 OK\r\n\r\n",
        ];
        for raw in heads {
            for is_head in [false, true] {
                let mut slots = response::header_slots();
                let asked = Asked {
                    head: is_head,
                    upgrade: false,
                };
                let h1 = response::parse(raw, asked, &mut slots).map(|r| {
                    r.map(|h| match h.kind {
                        Kind::Final { body, .. } => Some((h.head_len, body)),
                        _ => None,
                    })
                });
                let h2 = parse_head(raw, is_head).map(|r| {
                    r.map(|p| match p {
                        Parsed::Final(h) => Some((h.len, h.body)),
                        Parsed::Interim(_) => None,
                    })
                });
                let shown = String::from_utf8_lossy(raw);
                assert_eq!(h1.is_err(), h2.is_err(), "{shown}");
                assert_eq!(h1.ok(), h2.ok(), "{shown}");
            }
        }
        let mut slots = response::header_slots();
        let named = b"HTTP/1.1 200 OK\r\nConnection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nX-End: 2\r\n\r\n";
        let plain = Asked {
            head: false,
            upgrade: false,
        };
        assert!(response::parse(named, plain, &mut slots).is_ok());
        let Ok(Some(Parsed::Final(h))) = parse_head(named, false) else {
            panic!("a final head");
        };
        let names: Vec<&str> = h.response.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-end"]);
    }

    #[test]
    fn a_small_body_that_came_with_the_head_rides_in_its_copy() {
        let whole = |raw: &[u8]| match parse_head(raw, false) {
            Ok(Some(Parsed::Final(h))) => h.whole_body,
            _ => panic!("a final head"),
        };
        let got = whole(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT");
        assert_eq!(got.as_deref(), Some(&b"hello"[..]));
        // Not all here yet, framed otherwise, empty, or larger than one frame: none.
        assert_eq!(
            whole(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhell"),
            None
        );
        assert_eq!(
            whole(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            None
        );
        assert_eq!(whole(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), None);
        let mut big = b"HTTP/1.1 200 OK\r\nContent-Length: 16385\r\n\r\n".to_vec();
        big.resize(big.len() + 16385, b'x');
        assert_eq!(whole(&big), None);
        // A HEAD request's response has no body, whatever its Content-Length says.
        let head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true);
        assert!(matches!(head, Ok(Some(Parsed::Final(h))) if h.whole_body.is_none()));
    }

    #[test]
    fn trailers_up_to_the_limit_pass_and_more_are_an_error() {
        let section = |n: usize| {
            let mut raw = Vec::new();
            for i in 0..n {
                raw.extend_from_slice(format!("X-T{i}: v{i}\r\n").as_bytes());
            }
            raw.extend_from_slice(b"\r\n");
            raw
        };
        let t = trailer_map(&section(40), 100).unwrap().unwrap();
        assert_eq!(t.len(), 40);
        assert_eq!(t.get("x-t39").unwrap(), "v39");
        assert!(trailer_map(&section(40), 40).unwrap().is_some());
        assert_eq!(trailer_map(&section(41), 40), Err(()));
        assert_eq!(trailer_map(&section(0), 40), Ok(None));
        assert_eq!(trailer_map(b"", 40), Ok(None));
        assert_eq!(trailer_map(b"bad line\r\n\r\n", 40), Err(()));
        let hop = trailer_map(b"connection: x\r\nx-a: 1\r\n\r\n", 40)
            .unwrap()
            .unwrap();
        assert_eq!(hop.len(), 1);
    }

    #[test]
    fn forwarding_headers_match_the_http1_encoder() {
        let req = http::Request::builder()
            .method("GET")
            .uri("http://a.example/p")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-for", "10.0.0.2, 10.0.0.3")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let write = |append: Option<&str>, overwrite_proto: bool, has_xfp: bool| {
            let fwd = Decision {
                append: append.map(|a| a.parse().unwrap()),
                overwrite_proto,
                client: None,
                tls: false,
            };
            let mut out = Vec::new();
            write_forwarding(&mut out, Some(&parts.headers), fwd, has_xfp, |_| true);
            String::from_utf8(out).unwrap()
        };
        // Incoming values the policy keeps are written with the other headers.
        assert_eq!(write(None, false, true), "");
        assert_eq!(write(None, false, false), "x-forwarded-proto: http\r\n");
        assert_eq!(
            write(Some("127.0.0.1"), true, true),
            "x-forwarded-for: 10.0.0.1,10.0.0.2, 10.0.0.3,127.0.0.1\r\nx-forwarded-proto: http\r\n"
        );
    }
}
