//! The HTTP/2 upstream codec: how a stream is obtained (`Http2`: a slot on the per-core
//! multiplexed connection to the endpoint), how one try opens it (`H2Open`), and the
//! request built in HTTP/2's shape from either client protocol: from an HTTP/1.1 head
//! as parsed (`request_from_h1`; it is never encoded as HTTP/1.1 and parsed again) or
//! from an HTTP/2 client's request (`request_from_h2`). Both drop this hop's fields, set
//! the forwarding headers the policy decided and apply the filter chain's and the
//! route's request edits to the map, so every path to an HTTP/2 upstream sends the same
//! fields.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::io::Write as _;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue, Response, Uri};

use super::hedge::{Copy, Hedgeable, Judge};
use super::{Attempt, Exchange, Tried, UpstreamCodec};
use crate::http::failure::Failure;
use crate::http::filter::headers::Edits;
use crate::http::forwarding::Decision;
use crate::http::h1::request::RequestHead;
use crate::http::hop::{self, Fate, Message, Nominated, Special};
use crate::http::restamp::Restamp;
use crate::upstream::cluster::ClusterState;
use crate::upstream::Connector;

/// HTTP/2 upstreams: a ready handle on the per-core multiplexed connection to the
/// endpoint (opened on first use, replaced when it failed).
pub(crate) struct Http2;

impl<K: Connector> UpstreamCodec<K> for Http2
where
    K::Conn: 'static,
{
    type Conn = SendRequest<Bytes>;

    fn hedges(&self) -> bool {
        true
    }

    /// A hedged try on a stream of its own: the request's head, then its body and
    /// trailers (while an early answer is watched), and the final response head (h2
    /// skips interim ones).
    async fn hedge_try(
        &self,
        send: &mut SendRequest<Bytes>,
        request: &H2Request,
        progress: &super::clock::Progress,
    ) -> Result<Hedged, Tried> {
        let end = request.body.is_none() && request.trailers.is_none();
        let (response, mut up) = send
            .send_request(request.head.clone(), end)
            .map_err(|_| Tried::failed(Failure::ConnectionTermination, false, true))?;
        futures_lite::pin!(response);
        let answer = if end {
            response.await
        } else {
            let body = request.body.clone().unwrap_or_default();
            let upload = async {
                let _ =
                    crate::http::h2::io::send_whole(body, request.trailers.clone(), &mut up).await;
                None
            };
            let early = async { Some(response.as_mut().await) };
            match futures_lite::future::or(upload, early).await {
                Some(a) => a,
                None => response.await,
            }
        };
        let resp = answer.map_err(|e| stream_failure(&e, true))?;
        if !crate::http::h1::response::valid_status(resp.status().as_u16()) {
            return Err(Tried::failed(Failure::ProtocolError, false, true));
        }
        progress.touch();
        Ok((resp, up))
    }

    async fn obtain(
        &self,
        cs: &ClusterState<K::Conn>,
        ep: usize,
        connector: &K,
        progress: &super::clock::Progress,
    ) -> Result<(SendRequest<Bytes>, bool), Failure> {
        // `h2_ready` keeps the connection counters; a stream slot on a live
        // connection counts as a reused connection.
        let started = std::time::Instant::now();
        match cs.h2_ready(ep, connector, progress.priority()).await {
            Ok((s, (local, tls), opened)) => {
                // A connection this try opened: its time is the `upstream_connect`
                // phase, not the upstream's (`observe::phases`), as on HTTP/1.
                if opened {
                    progress.connected(started);
                }
                progress.note_shared_upstream(local, &tls);
                Ok((s, false))
            }
            Err(e) if crate::upstream::h2conn::PendingOverflow::is(&e) => Err(Failure::Overflow),
            Err(e) if crate::upstream::h2conn::PoolOverflow::is(&e) => {
                Err(Failure::NoHealthyUpstream)
            }
            Err(e) => {
                progress.connect_failed(&e);
                Err(Failure::ConnectFailure)
            }
        }
    }
}

/// A request as a hedged try sends it to an HTTP/2 upstream: its head, and its body and
/// trailers (`None`: the head ends the stream).
#[derive(Clone)]
pub(crate) struct H2Request {
    pub head: http::Request<()>,
    pub body: Option<Bytes>,
    pub trailers: Option<HeaderMap>,
}

impl H2Request {
    /// The copy of a request whose body (if any) was read whole.
    pub fn new(head: &http::Request<()>, body: Option<Bytes>, trailers: Option<HeaderMap>) -> Self {
        H2Request {
            head: head.clone(),
            body: body.filter(|b| !b.is_empty()),
            trailers,
        }
    }
}

/// A hedged try that got its final response head: the head (with the response body's
/// stream) and the request's stream, kept open until the exchange ends.
pub(crate) type Hedged = (Response<RecvStream>, SendStream<Bytes>);

/// On HTTP/2 a hedged try sends the request's parts on a stream of its own, and a try
/// that won holds the response head and the request stream.
impl Hedgeable for SendRequest<Bytes> {
    type Request = H2Request;
    type Won = Hedged;

    fn stamped(copy: &H2Request, restamp: &Restamp) -> H2Request {
        let mut request = copy.clone();
        restamp.apply_map(request.head.headers_mut());
        request
    }

    fn judge<J: Judge>(won: &Hedged, judge: J) -> Option<J::Out> {
        Some(judge.judge(won.0.status().as_u16(), won.0.headers()))
    }
}

/// Fills `copy` (if the request hedges) with the request as it went up.
pub(crate) fn fill_hedge(
    copy: &Option<Copy<H2Request>>,
    head: &http::Request<()>,
    body: Option<Bytes>,
    trailers: Option<HeaderMap>,
) {
    if let Some(c) = copy {
        *c.borrow_mut() = Some(H2Request::new(head, body, trailers));
    }
}

/// The try of an HTTP/2 upstream: open a stream on the multiplexed connection with the
/// request head. The response head is awaited by the adapter, concurrently with the
/// request body (streaming calls, early answers).
pub(crate) struct H2Open {
    pub req: Option<http::Request<()>>,
    /// The request has no body (END_STREAM on the head).
    pub end: bool,
}

impl Exchange<SendRequest<Bytes>> for H2Open {
    type Head = (ResponseFuture, SendStream<Bytes>);

    async fn try_once(
        &mut self,
        send: &mut SendRequest<Bytes>,
        _at: Attempt<'_, '_>,
    ) -> Result<Self::Head, Tried> {
        let lost = Tried::fatal(Failure::ConnectionTermination);
        let req = self.req.take().ok_or(lost)?;
        send.send_request(req, self.end).map_err(|_| lost)
    }
}

/// How a try failed when the HTTP/2 upstream's response head did not come: h2 refused
/// what the upstream sent (a malformed head: the upstream's protocol error); the
/// upstream refused the stream (RST_STREAM REFUSED_STREAM, or a GOAWAY that left it
/// unprocessed, which Envoy's codec also reports as a refused stream); or any other
/// reset or loss of the connection. `resend`: the request can go again as it was.
pub(crate) fn stream_failure(e: &h2::Error, resend: bool) -> Tried {
    if e.is_library() && e.reason() == Some(h2::Reason::PROTOCOL_ERROR) {
        return Tried::failed(Failure::ProtocolError, false, resend);
    }
    let refused = e.is_remote()
        && (e.is_go_away() || (e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)));
    if refused {
        return Tried::refused(resend);
    }
    Tried::failed(Failure::ConnectionTermination, false, resend)
}

/// The HTTP/2 request for a parsed HTTP/1.1 request head (`h1::request`), built by the
/// connection manager in place of the HTTP/1.1 upstream head: `:authority` from the
/// absolute-form target or Host, the end-to-end headers as the HTTP/1 encoder would pass
/// them (this hop's own dropped, including what `Connection` names; `te: trailers`
/// kept), the forwarding headers the policy decided, then the filter chain's and the
/// route's request edits, which see the request as it would go out (as on the
/// HTTP/2-to-HTTP/2 path, `request_from_h2`). `None`: the head cannot be an HTTP/2 request (no authority,
/// or a field HTTP/2 refuses).
pub(crate) fn request_from_h1(
    head: &RequestHead<'_, '_>,
    rw: &Rewrite<'_>,
    fwd: Decision,
    edits: Edits<'_>,
) -> Option<http::Request<()>> {
    let authority = std::str::from_utf8(rw.authority)
        .ok()
        .filter(|a| !a.is_empty())?;
    let uri = Uri::builder()
        .scheme(h1_scheme(head, fwd))
        .authority(authority)
        .path_and_query(rw.path)
        .build()
        .ok()?;
    let mut out = http::Request::new(());
    *out.method_mut() = http::Method::from_bytes(head.method.as_bytes()).ok()?;
    *out.uri_mut() = uri;
    let map = out.headers_mut();
    let named = Nominated::of(head.headers, head.framing.has_connection_header);
    let mut content_length = false;
    for h in head.headers.iter() {
        // A rewrite's own record of the client's path or Host replaces the client's.
        if (rw.original_path.is_some() && h.name.eq_ignore_ascii_case("x-envoy-original-path"))
            || (rw.original_host.is_some() && h.name.eq_ignore_ascii_case("x-envoy-original-host"))
        {
            continue;
        }
        let special = hop::classify(h.name);
        let value = match special {
            // The authority travels as `:authority`.
            Special::Host => continue,
            // Checked equal by the parser when repeated: one is enough.
            Special::ContentLength if content_length => continue,
            Special::ContentLength => {
                content_length = true;
                h.value
            }
            // HTTP/2 frames the body itself, and the proxy answers `100-continue`.
            Special::TransferEncoding | Special::Expect => continue,
            // Rewritten below; otherwise they pass as they came.
            Special::XForwardedFor if fwd.append.is_some() => continue,
            Special::XForwardedProto if fwd.overwrite_proto => continue,
            _ => match hop::fate(special, h.name, h.value, Message::Request, named) {
                Fate::Forward => h.value,
                Fate::TeTrailers => b"trailers",
                Fate::Drop => continue,
            },
        };
        map.append(
            HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(value).ok()?,
        );
    }
    if let Some(ip) = fwd.append {
        // Every incoming value in order, joined by "," (as Envoy), then the address.
        let mut xff = Vec::with_capacity(64);
        for h in head
            .headers
            .iter()
            .filter(|h| hop::classify(h.name) == Special::XForwardedFor)
        {
            xff.extend_from_slice(h.value);
            xff.push(b',');
        }
        let _ = write!(xff, "{ip}");
        map.insert("x-forwarded-for", HeaderValue::from_bytes(&xff).ok()?);
    }
    if fwd.overwrite_proto || !map.contains_key("x-forwarded-proto") {
        map.insert("x-forwarded-proto", HeaderValue::from_static(fwd.scheme()));
    }
    if let Some(p) = rw.original_path {
        map.insert("x-envoy-original-path", HeaderValue::from_str(p).ok()?);
    }
    if let Some(h) = rw.original_host {
        map.insert("x-envoy-original-host", HeaderValue::from_bytes(h).ok()?);
    }
    edits.apply_to_map(map);
    Some(out)
}

/// `http` or `https` when `v` is one of them (any case), as Envoy's `schemeIsValid`.
fn valid_scheme(v: &[u8]) -> Option<&'static str> {
    if v.eq_ignore_ascii_case(b"https") {
        Some("https")
    } else if v.eq_ignore_ascii_case(b"http") {
        Some("http")
    } else {
        None
    }
}

/// The `:scheme` an HTTP/1 request goes upstream with, as Envoy's connection manager
/// sets it: the `x-forwarded-proto` the request keeps (a trusted hop's, not
/// overwritten) when it is `http` or `https`, else the connection's own scheme. The
/// upstream's transport plays no part (Envoy's default, no
/// `scheme_header_transformation`).
fn h1_scheme(head: &RequestHead<'_, '_>, fwd: Decision) -> &'static str {
    let kept = (!fwd.overwrite_proto)
        .then(|| {
            head.headers
                .iter()
                .find(|h| hop::classify(h.name) == Special::XForwardedProto)
        })
        .flatten();
    kept.and_then(|h| valid_scheme(h.value))
        .unwrap_or(fwd.scheme())
}

/// The `:scheme` an HTTP/2 request goes upstream with: the client's own, which Envoy
/// trusts and passes on, when it is `http` or `https`; else the connection's.
fn h2_scheme(parts: &http::request::Parts, fwd: Decision) -> &'static str {
    parts
        .uri
        .scheme_str()
        .and_then(|s| valid_scheme(s.as_bytes()))
        .unwrap_or(fwd.scheme())
}

/// `auto_host_rewrite` on a request already built: the authority becomes `host`, and
/// the client's goes in `x-envoy-original-host` (as `h1::encode::set_host` does).
pub(crate) fn set_authority(req: &mut http::Request<()>, host: &str) {
    let Ok(authority) = http::uri::Authority::try_from(host) else {
        return;
    };
    let mut parts = req.uri().clone().into_parts();
    let old = parts.authority.replace(authority);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
        if let Some(v) = old.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
            req.headers_mut().insert("x-envoy-original-host", v);
        }
    }
}

/// The route's rewrites of an HTTP/1 request going to an HTTP/2 upstream: the path and
/// authority it goes with, and the client's originals when they were rewritten.
pub(crate) struct Rewrite<'a> {
    pub path: &'a str,
    pub authority: &'a [u8],
    pub original_path: Option<&'a str>,
    pub original_host: Option<&'a [u8]>,
}

/// The HTTP/2 request for an HTTP/2 client's request (`parts`, with the `authority` and
/// `path` the connection manager checked): the end-to-end fields, the forwarding
/// headers the policy decided, then the request edits, which see the request as it
/// would go out. `None`: no valid request target.
pub(crate) fn request_from_h2(
    parts: &http::request::Parts,
    authority: &str,
    path: &str,
    fwd: Decision,
    edits: Edits<'_>,
) -> Option<http::Request<()>> {
    let uri = Uri::builder()
        .scheme(h2_scheme(parts, fwd))
        .authority(authority)
        .path_and_query(path)
        .build()
        .or_else(|_| Uri::builder().path_and_query(path).build())
        .ok()?;
    let mut req = http::Request::new(());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    copy_end_to_end(&parts.headers, req.headers_mut(), Message::Request);
    set_forwarding(req.headers_mut(), &parts.headers, fwd);
    edits.apply_to_map(req.headers_mut());
    Some(req)
}

/// Copies the fields of a `msg` that pass to the next hop (`http::hop`). Host does not:
/// on HTTP/2 the authority travels as `:authority`, and a Host field in a response
/// means nothing.
pub(crate) fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap, msg: Message) {
    for (name, value) in from {
        let n = name.as_str();
        let special = hop::classify(n);
        if special == Special::Host {
            continue;
        }
        // HTTP/2 has no Connection header: nothing is named by one.
        match hop::fate(special, n, value.as_bytes(), msg, Nominated::NONE) {
            Fate::Forward => {
                to.append(name.clone(), value.clone());
            }
            Fate::TeTrailers => {
                to.append(http::header::TE, HeaderValue::from_static("trailers"));
            }
            Fate::Drop => {}
        }
    }
}

/// Sets the forwarding headers the policy (`http::forwarding`) decided on a request
/// whose end-to-end headers (incoming `x-forwarded-*` included) were already copied:
/// with an address to append, every incoming `x-forwarded-for` value in order, joined by
/// "," (as Envoy), then the address, as one value; `x-forwarded-proto: http` in place of the
/// client's when it is overwritten, else only where the client sent none.
fn set_forwarding(to: &mut HeaderMap, from: &HeaderMap, fwd: Decision) {
    if let Some(ip) = fwd.append {
        let mut xff = Vec::with_capacity(64);
        for v in from.get_all("x-forwarded-for") {
            xff.extend_from_slice(v.as_bytes());
            xff.extend_from_slice(b",");
        }
        let _ = write!(xff, "{ip}");
        // Incoming values are valid field values, and so is their join.
        if let Ok(v) = HeaderValue::from_bytes(&xff) {
            to.insert("x-forwarded-for", v);
        }
    }
    if fwd.overwrite_proto || !to.contains_key("x-forwarded-proto") {
        to.insert("x-forwarded-proto", HeaderValue::from_static(fwd.scheme()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::request;

    fn decision(append: Option<&str>, overwrite_proto: bool) -> Decision {
        Decision {
            append: append.map(|a| a.parse().unwrap()),
            overwrite_proto,
            client: None,
            tls: false,
        }
    }

    #[test]
    fn forwarding_follows_the_decision() {
        let mut from = HeaderMap::new();
        from.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        from.append(
            "x-forwarded-for",
            HeaderValue::from_static("10.0.0.2, 10.0.0.3"),
        );
        from.append("x-forwarded-proto", HeaderValue::from_static("https"));
        let forwarded = |d: Decision| {
            let mut to = HeaderMap::new();
            copy_end_to_end(&from, &mut to, Message::Request);
            set_forwarding(&mut to, &from, d);
            let all = |n: &str| -> Vec<String> {
                to.get_all(n)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_string())
                    .collect()
            };
            (all("x-forwarded-for"), all("x-forwarded-proto"))
        };
        // Appended: every value kept, in order, as one; the proto overwritten.
        let (xff, xfp) = forwarded(decision(Some("127.0.0.1"), true));
        assert_eq!(xff, ["10.0.0.1,10.0.0.2, 10.0.0.3,127.0.0.1"]);
        assert_eq!(xfp, ["http"]);
        // Nothing appended: XFF unchanged; the incoming proto kept.
        let (xff, xfp) = forwarded(decision(None, false));
        assert_eq!(xff, ["10.0.0.1", "10.0.0.2, 10.0.0.3"]);
        assert_eq!(xfp, ["https"]);

        let mut to = HeaderMap::new();
        set_forwarding(&mut to, &HeaderMap::new(), decision(Some("::1"), false));
        assert_eq!(to.get("x-forwarded-for").unwrap(), "::1");
        assert_eq!(to.get("x-forwarded-proto").unwrap(), "http");
    }

    #[test]
    fn the_h2_request_is_built_from_the_parsed_head() {
        let raw = b"POST /p?q=1 HTTP/1.1\r\nHost: a.example\r\nConnection: x-hop\r\nX-Hop: 1\r\nTE: trailers, gzip\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nContent-Length: 2\r\nExpect: 100-continue\r\nX-End: 2\r\n\r\n";
        let mut slots = request::header_slots();
        let head = request::parse(raw, &Default::default(), &mut slots)
            .unwrap()
            .unwrap();
        let fwd = Decision {
            append: Some("127.0.0.1".parse().unwrap()),
            overwrite_proto: true,
            client: None,
            tls: false,
        };
        let rw = Rewrite {
            path: head.path,
            authority: head.authority,
            original_path: None,
            original_host: None,
        };
        let req = request_from_h1(&head, &rw, fwd, Edits::none()).unwrap();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().to_string(), "http://a.example/p?q=1");
        let h = req.headers();
        let mut names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-length",
                "te",
                "x-end",
                "x-forwarded-for",
                "x-forwarded-proto"
            ]
        );
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1,127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        // `:scheme` is Envoy's: the connection's when the incoming proto is overwritten,
        // a kept incoming `https` otherwise.
        let kept = Decision {
            overwrite_proto: false,
            ..fwd
        };
        let req = request_from_h1(&head, &rw, kept, Edits::none()).unwrap();
        assert_eq!(req.uri().scheme_str(), Some("https"));
        let tls = Decision { tls: true, ..fwd };
        let req = request_from_h1(&head, &rw, tls, Edits::none()).unwrap();
        assert_eq!(req.uri().scheme_str(), Some("https"));
    }

    #[test]
    fn an_http2_clients_scheme_goes_upstream() {
        let parts = |uri: &str| {
            http::Request::builder()
                .uri(uri)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let plain = decision(None, true);
        let https = parts("https://a.example/p");
        let req = request_from_h2(&https, "a.example", "/p", plain, Edits::none()).unwrap();
        assert_eq!(req.uri().scheme_str(), Some("https"));
        let http = parts("http://a.example/p");
        let tls = Decision { tls: true, ..plain };
        let req = request_from_h2(&http, "a.example", "/p", tls, Edits::none()).unwrap();
        assert_eq!(req.uri().scheme_str(), Some("http"));
        // No scheme (CONNECT-like): the connection's.
        let none = parts("/p");
        let req = request_from_h2(&none, "a.example", "/p", tls, Edits::none()).unwrap();
        assert_eq!(req.uri().scheme_str(), Some("https"));
    }
}
