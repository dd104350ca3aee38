//! What the HTTP filters may read of a request and its connection on the request-head
//! hook, and what they keep per connection. Its own module so that each filter's file
//! can name it without depending on the chain (`filter/mod.rs`) that runs it. Both
//! connection managers make one `RequestCtx` per request; the `ConnState` lives with the
//! downstream connection (`http/conn.rs`, `http/h2`).

use std::net::IpAddr;

use bytes::Bytes;
use h2::client::SendRequest;
use std::rc::Rc;

use super::local_ratelimit::bucket::PerConnection;
use crate::config::Forwarding;
use crate::http::router::Request;
use crate::observe::stats::Counter;

/// What filters may read of a request and its connection, for the request-head hook.
#[derive(Clone, Copy)]
pub struct RequestCtx<'a> {
    /// The head as the router saw it (after the connection manager's port stripping).
    pub req: &'a Request<'a>,
    pub conn: crate::rbac::Conn<'a>,
    /// The connection manager's `x-forwarded-for` trust (Envoy's remote address).
    pub forwarding: &'a Forwarding,
    /// The worker's named counters (`Snapshot::counters`).
    pub counters: &'a [Rc<Counter>],
    /// What the filters keep for this request's downstream connection.
    pub state: &'a ConnState,
    /// The worker's HTTP/2 upstream connections, for filters that call a gRPC service
    /// per request (ext_proc). `None` in unit tests.
    pub grpc: Option<&'a dyn GrpcChannels>,
    /// The downstream peer's port (its address is `conn.peer`).
    pub peer_port: u16,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// The worker's upstream clusters, for filters that call a service (ext_authz);
    /// `None` in unit tests.
    pub upstream: Option<&'a dyn crate::upstream::grpc_call::Upstreams>,
    /// A request body follows the head (HTTP/1: its framing says so and it is no
    /// upgrade; HTTP/2: no END_STREAM on the head).
    pub body: bool,
    /// The listener's `stream_idle_timeout` (zero: none): what bounds a filter's wait
    /// that moves no byte (a wasm filter's paused stream).
    pub stream_idle_timeout: std::time::Duration,
}

/// A ready stream slot on the worker's per-core HTTP/2 connection to a cluster (an
/// endpoint picked by the cluster's load balancer; `upstream/h2conn.rs`), for filters
/// that open a gRPC stream per request. Type-erased so that the filters need not be
/// generic over the connector; the one box per call is the price of that.
pub trait GrpcChannels {
    /// `None`: the cluster has no endpoint, or the connection could not be made.
    fn ready(&self, cluster: usize) -> LocalBoxFuture<'_, Option<SendRequest<Bytes>>>;
}

/// A boxed future of the worker's own executor (no `Send`).
pub type LocalBoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

impl RequestCtx<'_> {
    /// Envoy's downstream remote address: the client the connection manager trusts
    /// after `x-forwarded-for` (`use_remote_address`, `xff_num_trusted_hops`), else the
    /// peer. Computed on demand (it scans the request's `x-forwarded-for`).
    pub fn remote(&self) -> IpAddr {
        let peer = self.conn.peer;
        let xff = self
            .req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
            .map(|h| h.value);
        crate::http::forwarding::decide(self.forwarding, peer, xff)
            .client
            .unwrap_or(peer)
    }
}

/// What the chain's filters keep per downstream connection (Envoy's connection filter
/// state): made empty with the connection; a filter allocates in it only when it needs
/// to.
#[derive(Default)]
pub struct ConnState {
    /// The local rate limit's per-connection buckets
    /// (`local_rate_limit_per_downstream_connection`).
    pub local_ratelimit: PerConnection,
}

/// A message head's fields as the response-head hook sees them, whichever codec read
/// it (an `http::HeaderMap`, or the HTTP/1 parser's header slice).
pub trait HeadFields {
    fn each(&self, f: &mut dyn FnMut(&[u8], &[u8]));
}

impl HeadFields for http::HeaderMap {
    fn each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (n, v) in self {
            f(n.as_str().as_bytes(), v.as_bytes());
        }
    }
}

/// The HTTP/1 parser's fields as [`HeadFields`].
pub struct H1Fields<'a, 'b>(pub &'a [httparse::Header<'b>]);

impl HeadFields for H1Fields<'_, '_> {
    fn each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for h in self.0 {
            f(h.name.as_bytes(), h.value);
        }
    }
}
