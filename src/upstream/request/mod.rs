//! The upstream request: one attempt loop for every protocol combination.
//!
//! ```text
//!  downstream adapter (http/conn/exchange.rs, http/h1_to_h2.rs, http/h2/to_h1.rs,
//!  http/h2/to_h2.rs): builds the request in the upstream's protocol
//!     │
//!     ▼  pick            endpoint by the cluster's load balancer (503 UH); in flight
//!     │                  until the `Picked` is dropped
//!     ▼  run             loop {
//!     │     obtain         UpstreamCodec: Http1 = pooled (checked clean) or new
//!     │                    connection (UF; UT when the route clock cut the connect),
//!     │                    Http2 = a stream slot on the per-core multiplexed connection
//!     │     try_once       the adapter's Exchange: send the request on that connection
//!     │                    and read until the response head
//!     │     decide         RetryPolicy: send again on a fresh connection, or fail
//!     │                  }   a final failure is counted here, once (`count_failure`)
//!     ▼
//!  adapter: the response head and body to the client, under the same `clock::Progress`
//! ```
//!
//! Both traits are used with concrete types (no boxing, no `Send`): the codec is
//! `Http1` or `Http2`, the exchange is the adapter's own state, borrowed for the loop.

pub(crate) mod clock;
pub(crate) mod http1;
pub(crate) mod http2;

pub(crate) use http1::Http1;
pub(crate) use http2::{H2Open, Http2};

use std::time::Instant;

use super::cluster::ClusterState;
use super::Connector;
use crate::config::Endpoint;
use crate::http::failure::Failure;
use crate::observe::stats::{class_index, ClusterStats, EndpointStats};

/// An endpoint picked for one request, counted in flight until this is dropped.
pub(crate) struct Picked<'a> {
    pub ep: usize,
    pub endpoint: &'a Endpoint,
    pub stats: &'a EndpointStats,
}

impl Drop for Picked<'_> {
    fn drop(&mut self) {
        self.stats.rq_active.dec();
    }
}

/// Counts a request for the cluster and picks its endpoint with the cluster's load
/// balancer; `None` is `503 UH` (already counted).
pub(crate) fn pick<C: 'static>(cs: &ClusterState<C>) -> Option<Picked<'_>> {
    let ep = cs.start_request()?;
    let (endpoint, stats) = (cs.cfg.endpoints.get(ep)?, cs.endpoints.get(ep)?);
    stats.rq_active.inc();
    Some(Picked {
        ep,
        endpoint,
        stats,
    })
}

/// Counts a request that failed before a response head reached the client, by why it
/// failed: its status class, and the timeout, reset and protocol-error counters.
pub(crate) fn count_failure(stats: &ClusterStats, f: Failure) {
    match f {
        Failure::RouteTimeout => stats.rq_timeout.inc(),
        Failure::ConnectionTermination => stats.rq_reset.inc(),
        Failure::ProtocolError => stats.rq_protocol_error.inc(),
        _ => {}
    }
    count_status(stats, f.status());
}

/// Counts a response status in its class for the cluster.
pub(crate) fn count_status(stats: &ClusterStats, status: u16) {
    if let Some(c) = stats.rq_class.get(class_index(status)) {
        c.inc();
    }
}

/// Counts what went wrong on the upstream side after the response head was forwarded
/// (the client then sees a reset or a closed connection, no local reply).
pub(crate) fn count_late(stats: &ClusterStats, f: Failure) {
    match f {
        Failure::RouteTimeout => stats.rq_timeout.inc(),
        Failure::ConnectionTermination => stats.rq_reset.inc(),
        Failure::ProtocolError => stats.rq_protocol_error.inc(),
        _ => {}
    }
}

/// How a connection to an upstream is obtained, per upstream protocol.
pub(crate) trait UpstreamCodec<K: Connector> {
    /// What a request is sent on: a connection, or a handle to a multiplexed one.
    type Conn;
    /// A connection for one try to endpoint `ep`: `(conn, reused)`. `deadline`: the
    /// route clock, which bounds a new connection's connect too.
    #[allow(async_fn_in_trait)]
    async fn obtain(
        &self,
        cs: &ClusterState<K::Conn>,
        ep: usize,
        connector: &K,
        deadline: Option<Instant>,
    ) -> Result<(Self::Conn, bool), Failure>;
}

/// How one try failed before a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tried {
    pub failure: Failure,
    /// Nothing of a response arrived and the request can be sent again as it was (no
    /// request body was taken from the client, and the method allows it).
    pub replayable: bool,
}

impl Tried {
    pub fn fatal(failure: Failure) -> Tried {
        Tried {
            failure,
            replayable: false,
        }
    }
}

/// When a failed try is sent again. The point where the resilience work (retry_on,
/// num_retries, budgets) plugs in; today it keeps one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    max_retries: u32,
}

impl RetryPolicy {
    /// One retry, on a fresh connection, when a reused keep-alive connection failed
    /// before any response byte and the request can be sent again: the upstream may
    /// have closed the idle connection just as it was taken from the pool.
    pub const STALE_CONNECTION: RetryPolicy = RetryPolicy { max_retries: 1 };
    /// Never again (HTTP/2 upstreams today: a multiplexed connection is not stale in
    /// that way, and a stream that failed is not replayed).
    pub const NONE: RetryPolicy = RetryPolicy { max_retries: 0 };

    /// Whether to try again after `retries` retries, on a connection that was `reused`.
    pub fn retry(&self, retries: u32, reused: bool, t: &Tried) -> bool {
        retries < self.max_retries && reused && t.replayable
    }
}

/// One protocol combination's send and receive on a connection the loop obtained.
pub(crate) trait Exchange<C> {
    /// What the adapter goes on with: the response head, or an end of the exchange
    /// that is no upstream failure (the client went away, sent a malformed body).
    type Head;
    /// Sends the request on `conn` and reads until the response head.
    #[allow(async_fn_in_trait)]
    async fn try_once(&mut self, conn: &mut C, reused: bool) -> Result<Self::Head, Tried>;
}

/// The attempt loop: obtain a connection, try, decide. A final failure is counted for
/// the cluster (`count_failure`) and returned for the adapter to answer.
pub(crate) async fn run<K, U, X>(
    codec: &U,
    policy: RetryPolicy,
    cs: &ClusterState<K::Conn>,
    ep: usize,
    connector: &K,
    deadline: impl Fn() -> Option<Instant>,
    x: &mut X,
) -> Result<(U::Conn, X::Head), Failure>
where
    K: Connector,
    U: UpstreamCodec<K>,
    X: Exchange<U::Conn>,
{
    let mut retries = 0;
    loop {
        let (mut conn, reused) = match codec.obtain(cs, ep, connector, deadline()).await {
            Ok(c) => c,
            Err(f) => {
                count_failure(&cs.stats, f);
                return Err(f);
            }
        };
        match x.try_once(&mut conn, reused).await {
            Ok(head) => return Ok((conn, head)),
            Err(t) if policy.retry(retries, reused, &t) => {
                retries += 1;
                tracing::debug!(failure = ?t.failure, "reused upstream connection failed: retrying");
            }
            Err(t) => {
                count_failure(&cs.stats, t.failure);
                return Err(t.failure);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_replayable_failure_on_a_reused_connection_is_retried_once() {
        let p = RetryPolicy::STALE_CONNECTION;
        let t = Tried {
            failure: Failure::ConnectionTermination,
            replayable: true,
        };
        assert!(p.retry(0, true, &t));
        assert!(!p.retry(1, true, &t), "once");
        assert!(!p.retry(0, false, &t), "a fresh connection is not stale");
        assert!(!p.retry(0, true, &Tried::fatal(Failure::ConnectionTermination)));
        assert!(!RetryPolicy::NONE.retry(0, true, &t));
    }
}
