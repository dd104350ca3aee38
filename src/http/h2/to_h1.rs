//! An HTTP/2 stream proxied to an HTTP/1.1 upstream: pseudo-headers become the request
//! line and Host, hop-by-hop headers are dropped, DATA frames become a Content-Length
//! or chunked body (request trailers are sent as chunked trailers), and the response
//! comes back as HEADERS and DATA with flow control applied both ways.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::io::Write as _;

use bytes::Bytes;
use futures_lite::io::AsyncWriteExt;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::clock::{Expiry, Progress};
use super::io::{Counted, DataSink};
use super::reply::{expired, fail, Done};
use crate::config::MAX_HEADERS_CAP;
use crate::http::body::{self, BodyError};
use crate::http::buf::ReadBuf;
use crate::http::failure::Failure;
use crate::http::filter::StreamEdits;
use crate::http::flags::ResponseFlag;
use crate::http::forwarding::Decision;
use crate::http::h1::head::BodyKind;
use crate::http::h1::response::{self, Asked, BadResponse, Kind, MAX_RESPONSE_HEAD_BYTES};
use crate::http::hop::{self, Fate, Message, Nominated, Special};
use crate::http::io::Io;
use crate::http::view::WorkerView;
use crate::upstream::cluster::ClusterState;
use crate::upstream::request::{self, Exchange, RetryPolicy, Tried};
use crate::upstream::Connector;

pub(crate) struct Request<'a> {
    pub parts: &'a http::request::Parts,
    pub body: RecvStream,
    pub authority: &'a str,
    pub path: &'a str,
    /// What the forwarding policy decided for this request.
    pub forwarding: Decision,
    pub grpc: bool,
    /// The listener's `max_headers`, which also bounds response trailers.
    pub max_headers: usize,
    /// Header edits of the filter chain and the route, for the request sent upstream and
    /// the response sent back.
    pub edits: StreamEdits<'a>,
}

/// Writes the HTTP/1.1 request head; returns whether the body is sent chunked.
///
/// The request edits apply to the message as the proxy would send it otherwise: the
/// client's end-to-end headers and the forwarding headers. Headers they drop are skipped
/// as they are written, the ones they add follow; nothing is looked up without edits.
fn request_head(out: &mut Vec<u8>, r: &Request<'_>) -> bool {
    let p = r.parts;
    let fwd = r.forwarding;
    let edits = r.edits.request;
    let edited = !edits.is_empty();
    let _ = write!(
        out,
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        p.method, r.path, r.authority
    );
    for (name, value) in &p.headers {
        let n = name.as_str();
        let special = hop::classify(n);
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
    let chunked = !r.body.is_end_stream() && !p.headers.contains_key(http::header::CONTENT_LENGTH);
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    let has_xff = p.headers.contains_key(X_FORWARDED_FOR);
    let has_xfp = p.headers.contains_key(X_FORWARDED_PROTO);
    write_forwarding(out, &p.headers, fwd, has_xfp, |n| !edited || edits.keeps(n));
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
/// leave a header in place.
fn write_forwarding(
    out: &mut Vec<u8>,
    headers: &http::HeaderMap,
    fwd: Decision,
    has_xfp: bool,
    keep: impl Fn(&str) -> bool,
) {
    if let Some(ip) = fwd.append.filter(|_| keep(X_FORWARDED_FOR)) {
        out.extend_from_slice(b"x-forwarded-for: ");
        for v in headers.get_all(X_FORWARDED_FOR) {
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b",");
        }
        let _ = write!(out, "{ip}\r\n");
    }
    if (fwd.overwrite_proto || !has_xfp) && keep(X_FORWARDED_PROTO) {
        out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    }
}

/// Streams the request body: DATA frames as they arrive, flow-control capacity released
/// once each is written upstream.
async fn send_body<U: Io>(
    up: &mut U,
    body: &mut RecvStream,
    chunked: bool,
    progress: &Progress,
) -> Result<u64, BodyError> {
    let mut total = 0u64;
    let mut framing = Vec::with_capacity(32);
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|_| BodyError::Read)?;
        let n = chunk.len();
        progress.touch();
        if chunked && n > 0 {
            framing.clear();
            let _ = write!(framing, "{n:x}\r\n");
            up.write_all(&framing).await.map_err(|_| BodyError::Write)?;
        }
        up.write_all(&chunk).await.map_err(|_| BodyError::Write)?;
        if chunked && n > 0 {
            up.write_all(b"\r\n").await.map_err(|_| BodyError::Write)?;
        }
        let _ = body.flow_control().release_capacity(n);
        progress.received(n as u64);
        total += n as u64;
    }
    // No more DATA: the client ended the stream (with trailers, if any, received).
    progress.request_done();
    if chunked {
        let trailers = body.trailers().await.map_err(|_| BodyError::Read)?;
        progress.touch();
        framing.clear();
        framing.extend_from_slice(b"0\r\n");
        for (name, value) in trailers.iter().flatten() {
            framing.extend_from_slice(name.as_str().as_bytes());
            framing.extend_from_slice(b": ");
            framing.extend_from_slice(value.as_bytes());
            framing.extend_from_slice(b"\r\n");
        }
        framing.extend_from_slice(b"\r\n");
        up.write_all(&framing).await.map_err(|_| BodyError::Write)?;
    }
    Ok(total)
}

struct Head {
    len: usize,
    response: Response<()>,
    body: BodyKind,
    reuse: bool,
}

enum Parsed {
    /// A 1xx interim response of this many bytes, skipped.
    Interim(usize),
    Final(Head),
}

/// Parses an upstream response head into an HTTP/2 response. `Ok(None)`: need more.
///
/// The head is parsed by `h1::response::parse`, the parser the HTTP/1 path and the fuzz
/// driver run, so status range, framing and interim responses are decided in one place;
/// nothing here asks for an upgrade, so a `101` is refused there.
fn parse_head(data: &[u8], is_head: bool) -> Result<Option<Parsed>, BadResponse> {
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
    for x in resp.headers.iter() {
        let special = hop::classify(x.name);
        if hop::fate(special, x.name, x.value, Message::Response, named) != Fate::Forward {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(x.name.as_bytes()),
            HeaderValue::from_bytes(x.value),
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
    })))
}

/// Parses a raw chunked trailer section (field lines and the final empty line) into a
/// header map; `Ok(None)` if it has no fields. More than `max` fields, or a field that
/// is not a valid HTTP/2 field, is `Err`: the response cannot be passed on whole.
/// Connection-specific fields are dropped as they are from response heads.
fn trailer_map(raw: &[u8], max: usize) -> Result<Option<http::HeaderMap>, ()> {
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

pub(crate) async fn proxy<C: Connector>(
    mut r: Request<'_>,
    respond: &mut SendResponse<Bytes>,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    progress: &Progress,
) -> Done {
    let Some(picked) = request::pick(cs) else {
        return fail(
            respond,
            r.grpc,
            Failure::NoHealthyUpstream,
            r.edits.response,
        );
    };
    // The buffer is lent for this exchange and comes back however the exchange ends.
    let mut ubuf = view.bufs.take();
    // Dropping the exchange on expiry closes its upstream connection: a stuck stream
    // never keeps one.
    let work = exchange(&mut r, respond, view, cs, picked.ep, &mut ubuf, progress);
    let result = progress.run(work).await;
    view.bufs.put(ubuf);
    let mut done = match result {
        Ok(d) => d,
        Err(e) => {
            let f = expiry_failure(e, progress);
            if progress.status() == 0 {
                request::count_failure(&cs.stats, f);
            } else {
                request::count_late(&cs.stats, f);
            }
            expired(respond, r.grpc, progress, e, r.edits.response)
        }
    };
    done.upstream = Some(picked.endpoint.addr);
    done
}

/// The failure an expired clock stands for.
pub(super) fn expiry_failure(e: Expiry, progress: &Progress) -> Failure {
    match e {
        Expiry::Route => Failure::RouteTimeout,
        Expiry::Idle => Failure::StreamIdle {
            request_complete: progress.request_complete(),
        },
    }
}

/// The HTTP/2 stream's side of one try on an HTTP/1.1 connection (`request::run`).
struct ToH1<'x, 'a> {
    r: &'x mut Request<'a>,
    ubuf: &'x mut ReadBuf,
    head: &'x [u8],
    chunked: bool,
    is_head: bool,
    /// Idempotent and without a body: may be sent again after a stale connection.
    replayable: bool,
    progress: &'x Progress,
}

/// What a try on an HTTP/1.1 connection ended with.
enum Got {
    /// A final response head; this many request body bytes went upstream.
    Head(Head, u64),
    /// The client reset or failed its stream while its body was going up.
    ClientGone,
}

impl<U: Io> Exchange<U> for ToH1<'_, '_> {
    type Head = Got;

    async fn try_once(&mut self, up: &mut U, _reused: bool) -> Result<Got, Tried> {
        // The stream's clocks bound the whole exchange (the connection's sweep drops
        // it when one runs out); no socket timeout of a pooled connection's past use.
        up.set_read_timeout(None);
        up.set_write_timeout(None);
        self.progress.touch();
        self.ubuf.consume(self.ubuf.len());
        let lost = |replayable| Tried {
            failure: Failure::ConnectionTermination,
            replayable,
        };
        // Nothing of the request body was taken yet: the head can go again.
        if up.write_all(self.head).await.is_err() {
            return Err(lost(true));
        }
        self.progress.touch();
        let mut received = 0;
        if !self.r.body.is_end_stream() {
            match send_body(up, &mut self.r.body, self.chunked, self.progress).await {
                Ok(n) => received = n,
                Err(BodyError::Write) => return Err(lost(false)),
                Err(_) => return Ok(Got::ClientGone),
            }
        }
        loop {
            if !self.ubuf.is_empty() {
                match parse_head(self.ubuf.data(), self.is_head) {
                    Ok(Some(Parsed::Interim(n))) => {
                        self.ubuf.consume(n);
                        continue;
                    }
                    Ok(Some(Parsed::Final(h))) => return Ok(Got::Head(h, received)),
                    Ok(None) => {
                        // `parse` refuses a head past the limit, so a buffer that grows
                        // to one byte beyond it always finds out.
                        if self.ubuf.is_full() {
                            self.ubuf.grow(MAX_RESPONSE_HEAD_BYTES + 1);
                        }
                    }
                    Err(BadResponse(why)) => {
                        tracing::debug!(reason = why, "invalid upstream response");
                        return Err(Tried::fatal(Failure::ProtocolError));
                    }
                }
            }
            match body::fill_from(up, self.ubuf, None).await {
                Ok(n) if n > 0 => self.progress.touch(),
                _ => return Err(lost(self.replayable && self.ubuf.is_empty())),
            }
        }
    }
}

/// Sends the request on a pooled or new connection (`request::run`, which retries a
/// stale pooled one), streams the response back, and pools the connection again if it
/// is still in step.
async fn exchange<C: Connector>(
    r: &mut Request<'_>,
    respond: &mut SendResponse<Bytes>,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    ep: usize,
    ubuf: &mut ReadBuf,
    progress: &Progress,
) -> Done {
    let mut head = Vec::with_capacity(512);
    let chunked = request_head(&mut head, r);
    let is_head = r.parts.method == http::Method::HEAD;
    let replayable = r.parts.method.is_idempotent() && r.body.is_end_stream();
    let (grpc, response_edits, max_headers) = (r.grpc, r.edits.response, r.max_headers);
    let mut x = ToH1 {
        r,
        ubuf,
        head: &head,
        chunked,
        is_head,
        replayable,
        progress,
    };
    let tried = request::run(
        &request::Http1,
        RetryPolicy::STALE_CONNECTION,
        cs,
        ep,
        &*view.connector,
        || progress.deadline(),
        &mut x,
    )
    .await;
    let ubuf = x.ubuf;
    let (mut up, h, received) = match tried {
        Ok((up, Got::Head(h, received))) => (up, h, received),
        Ok((_, Got::ClientGone)) => {
            return Done {
                status: 0,
                flag: ResponseFlag::DownstreamConnectionTermination,
                bytes_received: 0,
                bytes_sent: 0,
                upstream: None,
            }
        }
        Err(f) => {
            let mut d = fail(respond, grpc, f, response_edits);
            d.bytes_received = progress.bytes_received();
            return d;
        }
    };
    let (done, reuse) = respond_with(
        h,
        received,
        respond,
        &mut up,
        ubuf,
        response_edits,
        max_headers,
        cs,
        progress,
    )
    .await;
    if reuse {
        cs.pool.put(ep, up);
    }
    done
}

/// Sends the response head to the client and streams the body after it. Returns how
/// the stream ended and whether the upstream connection is still in step.
#[allow(clippy::too_many_arguments)]
async fn respond_with<U: Io, K>(
    mut h: Head,
    received: u64,
    respond: &mut SendResponse<Bytes>,
    up: &mut U,
    ubuf: &mut ReadBuf,
    response_edits: crate::http::filter::headers::Edits<'_>,
    max_headers: usize,
    cs: &ClusterState<K>,
    progress: &Progress,
) -> (Done, bool) {
    ubuf.consume(h.len);
    response_edits.apply_to_map(h.response.headers_mut());
    let status = h.response.status().as_u16();
    request::count_status(&cs.stats, status);
    let end = h.body == BodyKind::Empty;
    let mut send = match respond.send_response(h.response, end) {
        Ok(s) => s,
        Err(_) => {
            let d = Done {
                status,
                flag: ResponseFlag::DownstreamConnectionTermination,
                bytes_received: received,
                bytes_sent: 0,
                upstream: None,
            };
            return (d, false);
        }
    };
    progress.head_sent(status);
    let mut done = Done {
        status,
        flag: ResponseFlag::None,
        bytes_received: received,
        bytes_sent: 0,
        upstream: None,
    };
    if !end {
        let mut raw_trailers = Vec::new();
        let sink = &mut Counted {
            inner: DataSink { stream: &mut send },
            progress,
        };
        let result = body::forward_with_trailers(
            up,
            ubuf,
            sink,
            h.body,
            true,
            None,
            None,
            Some(&mut raw_trailers),
        )
        .await;
        match result {
            Ok(n) => {
                done.bytes_sent = n;
                // Chunked trailers become an HTTP/2 trailers frame.
                let sent = match trailer_map(&raw_trailers, max_headers) {
                    Ok(Some(t)) => send.send_trailers(t),
                    Ok(None) => send.send_data(Bytes::new(), true),
                    Err(()) => {
                        // Never end the stream cleanly with trailers missing.
                        send.send_reset(h2::Reason::INTERNAL_ERROR);
                        request::count_late(&cs.stats, Failure::ProtocolError);
                        done.flag = ResponseFlag::UpstreamProtocolError;
                        Ok(())
                    }
                };
                if sent.is_err() {
                    done.flag = ResponseFlag::DownstreamConnectionTermination;
                }
            }
            Err(BodyError::Write) => {
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                done.flag = ResponseFlag::DownstreamConnectionTermination;
            }
            Err(_) => {
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                request::count_late(&cs.stats, Failure::ConnectionTermination);
                done.flag = ResponseFlag::UpstreamConnectionTermination;
            }
        }
    }
    let reuse = done.flag == ResponseFlag::None && h.reuse && ubuf.is_empty();
    (done, reuse)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            };
            let mut out = Vec::new();
            write_forwarding(&mut out, &parts.headers, fwd, has_xfp, |_| true);
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
