//! What the HTTP filters may read of a request and its connection on the request-head
//! hook, and what they keep per connection. Its own module so that each filter's file
//! can name it without depending on the chain (`filter/mod.rs`) that runs it. Both
//! connection managers make one `RequestCtx` per request; the `ConnState` lives with the
//! downstream connection (`http/conn.rs`, `http/h2`).

use std::net::IpAddr;
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
    /// The downstream peer's port (its address is `conn.peer`).
    pub peer_port: u16,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// The worker's upstream clusters, for filters that call a service (ext_authz);
    /// `None` in unit tests.
    pub upstream: Option<&'a dyn crate::upstream::grpc_call::Upstreams>,
}

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
