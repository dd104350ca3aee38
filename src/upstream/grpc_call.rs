//! One unary gRPC call from a worker (Envoy's `AsyncClient::send` for a unary method):
//! a request message on a stream of the worker's per-core HTTP/2 connection to the
//! cluster (`upstream/h2conn.rs`, through [`Upstreams`]), bounded by a deadline, and the
//! response message decoded with prost. The ext_authz filter calls
//! `envoy.service.auth.v3.Authorization/Check` through it; any filter that calls a gRPC
//! service per request can.
//!
//! Also the `grpc-timeout` header value the gRPC clients share (the message framing
//! is `http::grpc_frame`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use prost::Message;

use crate::http::grpc_frame::{encode_frame, one_message};

/// Most bytes of one response message a unary call takes (Envoy's async client has no
/// lower limit; an authorization answer is small).
pub const MAX_RESPONSE: usize = 4 << 20;

/// How a filter on a worker reaches the worker's upstream clusters without naming the
/// connector type: the worker's view implements it (`http/view.rs`). Everything stays on
/// the worker: the per-core connection pools, no lock, no cross-core message.
pub trait Upstreams {
    /// A handle ready for a new HTTP/2 stream to an endpoint of cluster `cluster` (an
    /// index into the snapshot's clusters), picked by the cluster's load balancer, on
    /// this worker's multiplexed connection to it (opened on first use), and the
    /// cluster's name for `:authority`. `Err`: no endpoint, or the connect failed.
    fn h2_stream(
        &self,
        cluster: usize,
    ) -> BoxFuture<'_, std::io::Result<(SendRequest<Bytes>, &str)>>;

    /// One HTTP/1.1 exchange with an endpoint of `cluster` over a connection of this
    /// worker's pool for it (kept for reuse when the response allows): `head` is the
    /// whole request head and `body` its body. Answers the response's status, headers
    /// and body (at most `max_body` bytes).
    fn h1_exchange<'a>(
        &'a self,
        cluster: usize,
        head: Vec<u8>,
        body: &'a [u8],
        max_body: usize,
    ) -> BoxFuture<'a, std::io::Result<H1Response>>;

    /// The index of the cluster named `name` in this view's snapshot.
    fn cluster_index(&self, name: &str) -> Option<usize> {
        let _ = name;
        None
    }

    /// This worker's stats of the cluster named `name` (`None`: no such cluster), for a
    /// filter that counts in the scope of the request's cluster (ext_authz's
    /// `cluster.<name>.ext_authz.*`).
    fn cluster_stats(&self, name: &str) -> Option<&crate::observe::stats::ClusterStats> {
        let _ = name;
        None
    }

    /// A handle on the worker's newest view, for calls made outside a request (a wasm
    /// plugin's HTTP calls, which may outlive the request or come from its timer).
    /// `None` where there is none (unit tests).
    fn newest(&self) -> Option<Newest> {
        None
    }
}

/// The worker's newest view of its clusters, when asked (`None`: the worker is gone).
pub type Newest = std::rc::Rc<dyn Fn() -> Option<std::rc::Rc<dyn Upstreams>>>;

/// A boxed future of a call on a worker (not `Send`: it stays there). One box per call,
/// which already allocates its messages.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// An HTTP/1.1 response read by [`Upstreams::h1_exchange`].
#[derive(Debug, Default)]
pub struct H1Response {
    pub status: u16,
    /// In arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a call did not produce a response message.
#[derive(Debug)]
pub enum CallError {
    /// No stream could be opened (no endpoint, connect failure, overflow).
    Connect(std::io::Error),
    /// The stream was reset or the connection went away.
    Stream(h2::Error),
    /// The deadline passed.
    Timeout,
    /// A non-200 HTTP status, a non-gRPC content type or a malformed message.
    Protocol(String),
    /// The server answered a gRPC status other than OK.
    Status(u32),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "connect: {e}"),
            CallError::Stream(e) => write!(f, "stream: {e}"),
            CallError::Timeout => f.write_str("timeout"),
            CallError::Protocol(m) => f.write_str(m),
            CallError::Status(s) => write!(f, "grpc-status {s}"),
        }
    }
}

/// Calls `path` (`/package.Service/Method`) on cluster `cluster` with `msg`, within
/// `timeout` (the whole call: the stream's opening too; `grpc-timeout` tells the server).
pub async fn unary<Req: Message, Resp: Message + Default>(
    up: &dyn Upstreams,
    cluster: usize,
    path: &str,
    timeout: Duration,
    msg: &Req,
) -> Result<Resp, CallError> {
    let call = async {
        let (send, authority) = up.h2_stream(cluster).await.map_err(CallError::Connect)?;
        call(send, authority, path, timeout, msg).await
    };
    let deadline = async {
        crate::rt::sleep(timeout).await;
        Err(CallError::Timeout)
    };
    futures_lite::future::or(call, deadline).await
}

async fn call<Req: Message, Resp: Message + Default>(
    mut send: SendRequest<Bytes>,
    authority: &str,
    path: &str,
    timeout: Duration,
    msg: &Req,
) -> Result<Resp, CallError> {
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", grpc_timeout(timeout))
        .body(())
        .map_err(|e| CallError::Protocol(format!("request: {e}")))?;
    let (response, mut stream) = send.send_request(req, false).map_err(CallError::Stream)?;
    stream
        .send_data(encode_frame(msg), true)
        .map_err(CallError::Stream)?;
    let response = response.await.map_err(CallError::Stream)?;
    if response.status() != http::StatusCode::OK {
        return Err(CallError::Protocol(format!(
            "HTTP status {}",
            response.status()
        )));
    }
    let grpc_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !grpc_type {
        return Err(CallError::Protocol("not a gRPC content type".into()));
    }
    // Trailers-only: the status is in the head.
    if let Some(s) = status(response.headers()) {
        if s != 0 {
            return Err(CallError::Status(s));
        }
    }
    let mut body = response.into_body();
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(CallError::Stream)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if buf.len() + chunk.len() > MAX_RESPONSE + 5 {
            return Err(CallError::Protocol("response message too large".into()));
        }
        buf.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.map_err(CallError::Stream)?;
    match trailers.as_ref().and_then(status) {
        Some(0) => {}
        Some(s) => return Err(CallError::Status(s)),
        None => return Err(CallError::Protocol("no grpc-status".into())),
    }
    let frame = one_message(&buf)
        .ok_or_else(|| CallError::Protocol("not one uncompressed message".into()))?;
    Resp::decode(frame).map_err(|e| CallError::Protocol(format!("decode: {e}")))
}

/// `grpc-status` as a number (`None`: absent or not a number).
fn status(h: &http::HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// A `grpc-timeout` value: milliseconds, or a coarser unit once the number would pass
/// the eight digits gRPC allows (as Envoy's `toGrpcTimeout`).
pub fn grpc_timeout(d: Duration) -> String {
    let mut n = d.as_millis();
    for (unit, next) in [('m', 1000), ('S', 60), ('M', 60)] {
        if n < 100_000_000 {
            return format!("{n}{unit}");
        }
        n /= next;
    }
    format!("{}H", n.min(99_999_999))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(grpc_timeout(Duration::from_secs(1)), "1000m");
        assert_eq!(grpc_timeout(Duration::from_millis(250)), "250m");
        assert_eq!(grpc_timeout(Duration::from_secs(200_000)), "200000S");
    }
}
