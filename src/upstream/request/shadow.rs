//! Request mirroring: Envoy's `request_mirror_policies` (its router's shadowing and
//! `ShadowWriterImpl`). Off the client's path entirely.
//!
//! ```text
//!  connection manager (http/conn/prepare.rs, http/h2/stream.rs): the route resolved
//!  to a cluster with mirror policies that fire (router/action.rs `Target::shadows`)
//!     │  the request as it goes upstream (`request_from_h1` / `request_from_h2`: the
//!     │  filter chain's and the route's edits applied) and its body: whole when it is
//!     │  at hand, else teed from the primary's as it streams (`tee.rs`)
//!     ▼
//!  send: Host / :authority suffixed `-shadow` (before any port), then a local task on
//!        this worker's executor, fire and forget (bounded per core: MAX_IN_FLIGHT)
//!     ▼
//!  pick (mirror cluster's LB) ─► run (the attempt loop: pool or new connection, or the
//!  multiplexed HTTP/2 connection) ─► response head counted on the mirror cluster,
//!  its body read and dropped ─► the connection back to the pool
//! ```
//!
//! As Envoy's async client, `send` marks the shadow `x-envoy-internal: true` and
//! appends the node's address to its `x-forwarded-for` (`node_address`).
//!
//! The shadow is bounded by the route timeout (Envoy sets the async request's timeout to
//! the route's); its response, failure or timeout never reaches the client, whose
//! request goes on at once. Shadows are counted on the mirror cluster as Envoy counts
//! them (`upstream_rq_total`, `upstream_rq_<class>`, `upstream_rq_timeout`,
//! `upstream_cx_connect_fail`), plus `rq_shadow` (sent), `rq_shadow_failed` (no
//! response: connect failure, reset, timeout, malformed response) and
//! `rq_shadow_dropped` (not sent: too many in flight on this core) and
//! `rq_shadow_abandoned` (reset: it fell behind the teed body past the tee's bound).
//!
//! A teed body goes to an HTTP/1 shadow with the request's declared Content-Length, or
//! chunked (no trailers: Envoy's HTTP/1 encoder drops them by default), and to an
//! HTTP/2 shadow as DATA as flow control allows, then its trailers. A teed shadow is not
//! tried again once it has taken from the tee.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::clock::Progress;
use super::http1::{parse_head, Head, Parsed};
use super::tee::{Next, TeeRx};
use super::{count_failure, pick, run, Attempt, Exchange, Http1, Http2, RetryPolicy};
use super::{H2Open, Tried};
use crate::config::circuit::Priority;
use crate::config::UpstreamProtocol;
use crate::http::failure::Failure;
use crate::http::h1::chunked::{ChunkedDecoder, Piece};
use crate::http::h1::head::BodyKind;
use crate::http::io::Io;
use crate::upstream::cluster::ClusterState;
use crate::upstream::Connector;

/// Shadows in flight per core; more are dropped (`rq_shadow_dropped`).
pub(crate) const MAX_IN_FLIGHT: usize = 1024;

/// Largest shadow response head read (the proxy's own default header limit is lower).
const MAX_HEAD: usize = 64 * 1024;

thread_local! {
    /// Per core: every worker is one thread, and a shadow never leaves its worker.
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// Counts a shadow in flight while it lives.
struct InFlight;

impl InFlight {
    fn take() -> Option<InFlight> {
        IN_FLIGHT.with(|n| {
            (n.get() < MAX_IN_FLIGHT).then(|| {
                n.set(n.get() + 1);
                InFlight
            })
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// The shadow's Host: `-shadow` appended to the host, before any port
/// (`a.example:8080` -> `a.example-shadow:8080`; a bracketed IPv6 literal keeps its
/// port too), as Envoy's shadow writer does.
pub(crate) fn shadow_host(authority: &str) -> String {
    let port_at = if authority.starts_with('[') {
        authority.rfind("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    match port_at.and_then(|i| authority.split_at_checked(i)) {
        Some((host, port)) => format!("{host}-shadow{port}"),
        None => format!("{authority}-shadow"),
    }
}

/// One shadow to send: the request as it went upstream, with its body.
pub(crate) struct Shadow {
    pub req: http::Request<()>,
    /// The body when it was at hand whole (none, or held by the filter chain).
    pub body: Bytes,
    /// The trailers of a held HTTP/2 body.
    pub trailers: Option<http::HeaderMap>,
    /// The body teed from the primary's as it streams (`tee.rs`), instead of `body`.
    pub stream: Option<TeeRx>,
    /// The route timeout (zero: none).
    pub timeout: Duration,
    /// The client spoke HTTP/2 (for a cluster with `protocol: downstream`).
    pub client_h2: bool,
}

/// Sends `s` to the mirror cluster `cs` from a task of its own: returns at once.
/// `suffix`: append `-shadow` to the Host; `host`: a Host of its own instead.
pub(crate) fn send<K: Connector + 'static>(
    cs: Rc<ClusterState<K::Conn>>,
    connector: Rc<K>,
    mut s: Shadow,
    suffix: bool,
    host: Option<&str>,
) {
    let Some(slot) = InFlight::take() else {
        cs.stats.rq_shadow_dropped.inc();
        return;
    };
    let new_host = match host {
        Some(h) => Some(h.to_string()),
        None if suffix => s.req.uri().authority().map(|a| shadow_host(a.as_str())),
        None => None,
    };
    if let Some(h) = new_host {
        set_authority(&mut s.req, &h);
    }
    // Envoy sends shadows through its async client, which marks them internal and
    // appends the node's address to x-forwarded-for.
    s.req
        .headers_mut()
        .insert("x-envoy-internal", http::HeaderValue::from_static("true"));
    append_node_address(s.req.headers_mut());
    cs.stats.rq_shadow.inc();
    // A teed shadow that falls behind is abandoned by the tee (and counted there):
    // dropping its exchange resets its upstream request.
    let watch = s.stream.as_ref().map(TeeRx::watch);
    crate::rt::spawn_local(async move {
        let _slot = slot;
        let work = async {
            let run = async {
                if exchange(&cs, &*connector, s).await.is_err() {
                    cs.stats.rq_shadow_failed.inc();
                }
            };
            // The abort is polled first: a shadow the primary cancelled (client gone,
            // local reply, early answer) or the tee abandoned ends here, not as a
            // failed try that would count against the mirror endpoint (its 5xx and
            // reset counters, `rq_shadow_failed`, outlier detection).
            match &watch {
                Some(w) => futures_lite::future::or(w.aborted(), run).await,
                None => run.await,
            }
        };
        if let Err(p) = crate::contain::contain(work).await {
            tracing::error!(cluster = %cs.name, panic = %p, "shadow request panicked");
        }
    })
    .detach();
}

thread_local! {
    /// The node's address (`node_address`), found once per worker.
    static NODE_ADDRESS: Cell<Option<IpAddr>> = const { Cell::new(None) };
}

/// The address Envoy's async client appends to a shadow's `x-forwarded-for` (its
/// `local_info` address, `Network::Utility::getLocalAddress(v4)`): the first IPv4
/// address of the host's interfaces that is not a loopback one, in `getifaddrs` order,
/// else `127.0.0.1`.
fn node_address() -> IpAddr {
    NODE_ADDRESS.with(|c| {
        if let Some(a) = c.get() {
            return a;
        }
        let a = first_non_loopback_v4().map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4);
        c.set(Some(a));
        a
    })
}

fn first_non_loopback_v4() -> Option<Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we own into `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*at };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr of its family.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() {
                    found = Some(ip);
                    break;
                }
            }
        }
        at = ifa.ifa_next;
    }
    // SAFETY: the list from getifaddrs above, freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// Appends the node's address to the request's `x-forwarded-for` (one field, its
/// values joined by `,`, as Envoy's `appendXff`).
fn append_node_address(h: &mut http::HeaderMap) {
    let node = node_address().to_string();
    let mut joined = Vec::new();
    for v in h.get_all("x-forwarded-for") {
        joined.extend_from_slice(v.as_bytes());
        joined.push(b',');
    }
    joined.extend_from_slice(node.as_bytes());
    if let Ok(v) = http::HeaderValue::from_bytes(&joined) {
        h.insert("x-forwarded-for", v);
    }
}

fn set_authority(req: &mut http::Request<()>, host: &str) {
    let Ok(a) = http::uri::Authority::try_from(host) else {
        return;
    };
    let mut parts = req.uri().clone().into_parts();
    parts.authority = Some(a);
    if parts.scheme.is_none() {
        parts.scheme = Some(http::uri::Scheme::HTTP);
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// Sends the shadow and reads its response (dropped), under the route timeout. `Err`:
/// no response (counted on the cluster as the proxy counts a failed request).
async fn exchange<K: Connector>(
    cs: &ClusterState<K::Conn>,
    connector: &K,
    s: Shadow,
) -> Result<(), Failure> {
    let h2 = match cs.cfg.protocol {
        UpstreamProtocol::Http1 => false,
        UpstreamProtocol::Http2 => true,
        UpstreamProtocol::Downstream => s.client_h2,
    };
    let timeout = s.timeout;
    let work = async {
        if h2 {
            via_h2(cs, connector, s).await
        } else {
            via_h1(cs, connector, s).await
        }
    };
    if timeout.is_zero() {
        return work.await;
    }
    futures_lite::future::or(work, async {
        crate::rt::sleep(timeout).await;
        count_failure(&cs.stats, Failure::RouteTimeout);
        Err(Failure::RouteTimeout)
    })
    .await
}

/// The HTTP/1.1 request: request line, Host from the authority, the fields as they
/// went upstream, a Content-Length for the body.
fn encode_h1(s: &Shadow) -> Vec<u8> {
    let req = &s.req;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = req.uri().authority().map_or("", |a| a.as_str());
    let mut out = Vec::with_capacity(512 + s.body.len());
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in req.headers() {
        if name == http::header::CONTENT_LENGTH || name == http::header::HOST {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let declared = req.headers().get(http::header::CONTENT_LENGTH);
    if s.stream.is_some() {
        // The body streams: with the length the request declared, else chunked.
        match declared {
            Some(n) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(n.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
    } else if !s.body.is_empty() || declared.is_some() {
        out.extend_from_slice(format!("content-length: {}\r\n", s.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&s.body);
    out
}

/// One try of an HTTP/1.1 shadow: write it whole (a teed body as it comes), read until
/// the final response head.
struct H1Try<'a> {
    bytes: &'a [u8],
    /// The teed body, chunked or not, and whether a try has taken from it (it cannot go
    /// again then).
    stream: Option<(&'a TeeRx, bool)>,
    streamed: bool,
    is_head: bool,
    deadline: Option<Instant>,
    buf: Vec<u8>,
}

/// Writes the teed body to an HTTP/1.1 shadow: its chunks as they come (`chunked`: in
/// chunk framing, then the last chunk; trailers are not sent on HTTP/1, as Envoy's
/// encoder by default). `Err`: the write failed or the shadow was abandoned.
async fn write_stream<C: Io>(conn: &mut C, rx: &TeeRx, chunked: bool) -> Result<(), ()> {
    // The chunk framing, written with `body::write_chunk` (one write for a small chunk).
    let mut framing = Vec::with_capacity(64);
    loop {
        match rx.next().await {
            Next::Chunk(c) if chunked => {
                crate::http::body::write_chunk(conn, &mut framing, &c, false)
                    .await
                    .map_err(|_| ())?;
            }
            Next::Chunk(c) => conn.write_all(&c).await.map_err(|_| ())?,
            Next::End(_) => {
                if chunked {
                    crate::http::body::write_chunk(conn, &mut framing, &[], true)
                        .await
                        .map_err(|_| ())?;
                }
                return Ok(());
            }
            Next::Aborted => return Err(()),
        }
    }
}

impl<C: Io> Exchange<C> for H1Try<'_> {
    type Head = Head;

    async fn try_once(&mut self, conn: &mut C, _at: Attempt<'_, '_>) -> Result<Head, Tried> {
        // A pooled connection keeps the timeouts of its last request.
        let left = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        conn.set_read_timeout(left);
        conn.set_write_timeout(left);
        self.buf.clear();
        if self.streamed {
            // The teed body was taken by a try that failed: it cannot go again.
            return Err(Tried::fatal(Failure::ConnectionTermination));
        }
        if conn.write_all(self.bytes).await.is_err() {
            return Err(Tried::failed(Failure::ConnectionTermination, true, true));
        }
        if let Some((rx, chunked)) = self.stream {
            self.streamed = true;
            if write_stream(conn, rx, chunked).await.is_err() {
                return Err(Tried::fatal(Failure::ConnectionTermination));
            }
        }
        let mut chunk = [0u8; 4096];
        loop {
            let n = match conn.read(&mut chunk).await {
                Ok(n) if n > 0 => n,
                // The socket timeout is the time left of the route timeout.
                Err(e) if crate::http::io::is_timeout(&e) => {
                    return Err(Tried::fatal(Failure::RouteTimeout))
                }
                _ => {
                    let untouched = self.buf.is_empty();
                    return Err(Tried::failed(
                        Failure::ConnectionTermination,
                        untouched,
                        true,
                    ));
                }
            };
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
            loop {
                match parse_head(&self.buf, self.is_head) {
                    Ok(Some(Parsed::Interim(len))) => {
                        self.buf.drain(..len.min(self.buf.len()));
                    }
                    Ok(Some(Parsed::Final(h))) => return Ok(h),
                    Ok(None) if self.buf.len() > MAX_HEAD => {
                        return Err(Tried::fatal(Failure::ProtocolError))
                    }
                    Ok(None) => break,
                    Err(_) => return Err(Tried::fatal(Failure::ProtocolError)),
                }
            }
        }
    }
}

async fn via_h1<K: Connector>(
    cs: &ClusterState<K::Conn>,
    connector: &K,
    s: Shadow,
) -> Result<(), Failure> {
    // A mirrored request counts against the mirror cluster's circuit breakers, as
    // Envoy's shadow goes through its router and pool (at DEFAULT: Envoy's async client
    // routes at the default priority).
    let picked = pick(cs, None, Priority::Default)?;
    let progress = Progress::new(s.timeout, Duration::ZERO);
    progress.request_done();
    let bytes = encode_h1(&s);
    let chunked = !s.req.headers().contains_key(http::header::CONTENT_LENGTH);
    let mut x = H1Try {
        bytes: &bytes,
        stream: s.stream.as_ref().map(|rx| (rx, chunked)),
        streamed: false,
        is_head: s.req.method() == http::Method::HEAD,
        deadline: progress.deadline(),
        buf: Vec::new(),
    };
    let mut ep = picked.ep;
    let mut again = None;
    let stale = RetryPolicy::STALE_CONNECTION;
    let (mut conn, head) = run(
        &Http1, stale, None, cs, &mut ep, &mut again, connector, &progress, s.timeout, &mut x,
    )
    .await?;
    super::count_response(cs, ep, head.response.status().as_u16());
    let rest = x.buf.get(head.len..).unwrap_or_default().to_vec();
    // The response body is read and dropped; the connection goes back to the pool when
    // it is in step (Envoy's async client discards a shadow's response body too).
    match drain(&mut conn, head.body, rest).await {
        Ok(true) if head.reuse => cs.put(ep, conn),
        Ok(_) => {}
        Err(f) => {
            crate::upstream::request::count_late(&cs.stats, f);
        }
    }
    drop(again);
    drop(picked);
    Ok(())
}

/// Reads a response body of `kind` (starting with `have`) and drops it. `Ok(true)`: the
/// body ended exactly, with nothing after it.
async fn drain<C: Io>(conn: &mut C, kind: BodyKind, mut have: Vec<u8>) -> Result<bool, Failure> {
    let mut chunk = [0u8; 8192];
    let lost = Failure::ConnectionTermination;
    match kind {
        BodyKind::Empty => Ok(have.is_empty()),
        BodyKind::Length(n) => {
            let mut left = n;
            let mut extra = false;
            let first = have.len() as u64;
            if first >= left {
                extra = first > left;
                left = 0;
            } else {
                left -= first;
            }
            while left > 0 {
                match conn.read(&mut chunk).await {
                    Ok(k) if k > 0 => {
                        let k = k as u64;
                        extra |= k > left;
                        left = left.saturating_sub(k);
                    }
                    _ => return Err(lost),
                }
            }
            Ok(!extra)
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(16 * 1024);
            loop {
                let mut at = 0;
                while !dec.is_done() {
                    let Some(rest) = have.get(at..).filter(|r| !r.is_empty()) else {
                        break;
                    };
                    let (Piece::Framing(n) | Piece::Data(n)) =
                        dec.next(rest).map_err(|_| Failure::ProtocolError)?;
                    at += n;
                }
                if dec.is_done() {
                    return Ok(at == have.len());
                }
                have.clear();
                match conn.read(&mut chunk).await {
                    Ok(k) if k > 0 => have.extend_from_slice(chunk.get(..k).unwrap_or_default()),
                    _ => return Err(lost),
                }
            }
        }
        BodyKind::UntilClose => {
            while matches!(conn.read(&mut chunk).await, Ok(k) if k > 0) {}
            Ok(false)
        }
    }
}

async fn via_h2<K: Connector>(
    cs: &ClusterState<K::Conn>,
    connector: &K,
    s: Shadow,
) -> Result<(), Failure> {
    // A mirrored request counts against the mirror cluster's circuit breakers, as
    // Envoy's shadow goes through its router and pool.
    let picked = pick(cs, None, Priority::Default)?;
    let progress = Progress::new(s.timeout, Duration::ZERO);
    progress.request_done();
    let mut req = s.req;
    let streams = s.stream.is_some();
    if !s.body.is_empty() {
        req.headers_mut()
            .insert(http::header::CONTENT_LENGTH, s.body.len().into());
    }
    let mut x = H2Open {
        req: Some(req),
        end: s.body.is_empty() && s.trailers.is_none() && !streams,
    };
    let mut ep = picked.ep;
    let mut again = None;
    let none = RetryPolicy::NONE;
    let (_send, (response, mut stream)) = run(
        &Http2, none, None, cs, &mut ep, &mut again, connector, &progress, s.timeout, &mut x,
    )
    .await?;
    let lost = |f: Failure| {
        count_failure(&cs.stats, f);
        f
    };
    if let Some(rx) = &s.stream {
        if h2_stream(rx, &mut stream).await.is_err() {
            stream.send_reset(h2::Reason::CANCEL);
            return Err(lost(Failure::ConnectionTermination));
        }
    } else if !s.body.is_empty() || s.trailers.is_some() {
        let end = s.trailers.is_none();
        stream
            .send_data(s.body, end)
            .map_err(|_| lost(Failure::ConnectionTermination))?;
        if let Some(t) = s.trailers {
            stream
                .send_trailers(t)
                .map_err(|_| lost(Failure::ConnectionTermination))?;
        }
    }
    let response = response.await.map_err(|_| {
        super::outlier_failure(cs, ep, Failure::ConnectionTermination);
        lost(Failure::ConnectionTermination)
    })?;
    super::count_response(cs, ep, response.status().as_u16());
    let mut body = response.into_body();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    drop(again);
    drop(picked);
    Ok(())
}

/// Sends the teed body on an HTTP/2 shadow stream as flow control allows, then its
/// trailers or END_STREAM. `Err`: the stream failed or the shadow was abandoned.
async fn h2_stream(rx: &TeeRx, to: &mut h2::SendStream<Bytes>) -> Result<(), ()> {
    loop {
        match rx.next().await {
            Next::Chunk(mut c) => {
                while !c.is_empty() {
                    let cap = crate::http::h2::io::send_capacity(to, c.len())
                        .await
                        .ok_or(())?;
                    let part = c.split_to(cap.min(c.len()));
                    to.send_data(part, false).map_err(|_| ())?;
                }
            }
            Next::End(Some(t)) => return to.send_trailers(t).map_err(|_| ()),
            Next::End(None) => return to.send_data(Bytes::new(), true).map_err(|_| ()),
            Next::Aborted => return Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shadow_host;

    #[test]
    fn the_node_address_goes_last_in_x_forwarded_for() {
        let node = super::node_address().to_string();
        assert!(!node.is_empty());
        let mut h = http::HeaderMap::new();
        super::append_node_address(&mut h);
        assert_eq!(h.get("x-forwarded-for").unwrap(), node.as_str());
        let mut h = http::HeaderMap::new();
        h.append("x-forwarded-for", "10.0.0.1,10.0.0.2".parse().unwrap());
        super::append_node_address(&mut h);
        let want = format!("10.0.0.1,10.0.0.2,{node}");
        assert_eq!(h.get("x-forwarded-for").unwrap(), want.as_str());
    }

    #[test]
    fn the_suffix_goes_before_the_port() {
        assert_eq!(shadow_host("a.com"), "a.com-shadow");
        assert_eq!(shadow_host("a.com:8080"), "a.com-shadow:8080");
        assert_eq!(shadow_host("127.0.0.1:80"), "127.0.0.1-shadow:80");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(shadow_host("[::1]"), "[::1]-shadow");
    }
}
