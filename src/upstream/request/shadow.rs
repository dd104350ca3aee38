//! Request mirroring: Envoy's `request_mirror_policies` (its router's shadowing and
//! `ShadowWriterImpl`). Off the client's path entirely.
//!
//! ```text
//!  connection manager (http/conn/prepare.rs, http/h2/stream.rs): the route resolved
//!  to a cluster with mirror policies that fire (router/action.rs `Target::shadows`)
//!     │  the request as it goes upstream (`request_from_h1` / `request_from_h2`: the
//!     │  filter chain's and the route's edits applied) and its body, held whole
//!     ▼
//!  send: Host / :authority suffixed `-shadow` (before any port), then a local task on
//!        this worker's executor, fire and forget (bounded per core: MAX_IN_FLIGHT)
//!     ▼
//!  pick (mirror cluster's LB) ─► run (the attempt loop: pool or new connection, or the
//!  multiplexed HTTP/2 connection) ─► response head counted on the mirror cluster,
//!  its body read and dropped ─► the connection back to the pool
//! ```
//!
//! The shadow is bounded by the route timeout (Envoy sets the async request's timeout to
//! the route's); its response, failure or timeout never reaches the client, whose
//! request goes on at once. Shadows are counted on the mirror cluster as Envoy counts
//! them (`upstream_rq_total`, `upstream_rq_<class>`, `upstream_rq_timeout`,
//! `upstream_cx_connect_fail`), plus `rq_shadow` (sent), `rq_shadow_failed` (no
//! response: connect failure, reset, timeout, malformed response) and
//! `rq_shadow_dropped` (not sent: too many in flight on this core, or a request body
//! that was not held).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::clock::Progress;
use super::http1::{parse_head, Head, Parsed};
use super::{count_failure, pick, run, Attempt, Exchange, Http1, Http2, RetryPolicy};
use super::{H2Open, Tried};
use crate::config::UpstreamProtocol;
use crate::http::failure::Failure;
use crate::http::h1::chunked::{ChunkedDecoder, Piece};
use crate::http::h1::head::BodyKind;
use crate::http::io::Io;
use crate::upstream::cluster::ClusterState;
use crate::upstream::Connector;

/// A request body is mirrored only when it is held whole before the request goes
/// upstream: a mirrored request whose body declares a length up to this is read whole
/// first (as the buffer filter does); a larger or unframed one goes upstream streaming
/// and is not mirrored (`rq_shadow_dropped`). Envoy's default buffer limit.
pub(crate) const MAX_BODY: u64 = 1 << 20;

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
    pub body: Bytes,
    /// The route timeout (zero: none).
    pub timeout: Duration,
    /// The client spoke HTTP/2 (for a cluster with `protocol: downstream`).
    pub client_h2: bool,
}

/// Counts a shadow the connection manager could not send (its body was not held).
pub(crate) fn dropped<C>(cs: &ClusterState<C>) {
    cs.stats.rq_shadow_dropped.inc();
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
    // Envoy sends shadows through its async client, which marks them internal.
    s.req
        .headers_mut()
        .insert("x-envoy-internal", http::HeaderValue::from_static("true"));
    cs.stats.rq_shadow.inc();
    glommio::spawn_local(async move {
        let _slot = slot;
        let work = async {
            if exchange(&cs, &*connector, s).await.is_err() {
                cs.stats.rq_shadow_failed.inc();
            }
        };
        if let Err(p) = crate::contain::contain(work).await {
            tracing::error!(cluster = %cs.name, panic = %p, "shadow request panicked");
        }
    })
    .detach();
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
        glommio::timer::sleep(timeout).await;
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
    let declared = req.headers().contains_key(http::header::CONTENT_LENGTH);
    if !s.body.is_empty() || declared {
        out.extend_from_slice(format!("content-length: {}\r\n", s.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&s.body);
    out
}

/// One try of an HTTP/1.1 shadow: write it whole, read until the final response head.
struct H1Try<'a> {
    bytes: &'a [u8],
    is_head: bool,
    deadline: Option<Instant>,
    buf: Vec<u8>,
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
        if conn.write_all(self.bytes).await.is_err() {
            return Err(Tried::failed(Failure::ConnectionTermination, true, true));
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
    // Envoy's shadow goes through its router and pool.
    let picked = pick(cs)?;
    let progress = Progress::new(s.timeout, Duration::ZERO);
    progress.request_done();
    let bytes = encode_h1(&s);
    let mut x = H1Try {
        bytes: &bytes,
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
        Ok(true) if head.reuse => cs.pool.put(ep, conn),
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
    let picked = pick(cs)?;
    let progress = Progress::new(s.timeout, Duration::ZERO);
    progress.request_done();
    let mut req = s.req;
    if !s.body.is_empty() {
        req.headers_mut()
            .insert(http::header::CONTENT_LENGTH, s.body.len().into());
    }
    let mut x = H2Open {
        req: Some(req),
        end: s.body.is_empty(),
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
    if !s.body.is_empty() {
        stream
            .send_data(s.body, true)
            .map_err(|_| lost(Failure::ConnectionTermination))?;
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

#[cfg(test)]
mod tests {
    use super::shadow_host;

    #[test]
    fn the_suffix_goes_before_the_port() {
        assert_eq!(shadow_host("a.com"), "a.com-shadow");
        assert_eq!(shadow_host("a.com:8080"), "a.com-shadow:8080");
        assert_eq!(shadow_host("127.0.0.1:80"), "127.0.0.1-shadow:80");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(shadow_host("[::1]"), "[::1]-shadow");
    }
}
