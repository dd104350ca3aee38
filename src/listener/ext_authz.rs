//! The network ext_authz filter (Envoy's `envoy.filters.network.ext_authz`): one
//! `Check` per connection, before the chain's terminal filter (a TCP proxy, or an HTTP
//! connection manager), over gRPC on the worker's own HTTP/2 connection to the
//! service's cluster (`upstream::grpc_call`). The `CheckRequest` carries the
//! connection's source and destination (addresses, and on mutual TLS the principals,
//! as the HTTP filter's do) and no HTTP request. A denial closes the connection; an
//! error (service down, timeout) closes it too unless `failure_mode_allow`.
//!
//! When it decides: Envoy's filter calls the service on the connection's first bytes
//! from the client. What it sends is known once the connection (and its TLS handshake)
//! is done, so Outrigger calls at once, as the network RBAC filter decides, before the
//! terminal filter starts: a denied connection is closed before the TCP proxy connects
//! upstream.
//!
//! Counters, as Envoy names them: `ext_authz.<stat_prefix>.total`, `ok`, `denied`,
//! `error`, `failure_mode_allowed`, `cx_closed`, `disabled` (Envoy counts it when
//! `filter_enabled_metadata` does not match; that field is refused, so it stays 0),
//! and the gauge `active` (checks in flight).

use std::rc::Rc;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};

use crate::http::filter::ext_authz::{check, Answer};
use crate::observe::stats::Counter;
use crate::upstream::grpc_call::Upstreams;

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkExtAuthz {
    pub name: String,
    /// The service's HTTP/2 cluster (an index into the snapshot's clusters).
    pub cluster: usize,
    pub timeout: Duration,
    pub failure_mode_allow: bool,
    pub counters: NetCounters,
}

/// Indices into the worker's named counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetCounters {
    pub total: usize,
    pub ok: usize,
    pub denied: usize,
    pub error: usize,
    pub failure_mode_allowed: usize,
    pub cx_closed: usize,
    pub disabled: usize,
    /// A gauge: checks in flight.
    pub active: usize,
}

impl NetworkExtAuthz {
    /// Checks one new connection; `false`: close it.
    pub async fn allowed(
        &self,
        conn: crate::rbac::Conn<'_>,
        peer_port: u16,
        up: &dyn Upstreams,
        counters: &[Rc<Counter>],
    ) -> bool {
        let inc = |i: usize| {
            if let Some(c) = counters.get(i) {
                c.inc();
            }
        };
        inc(self.counters.total);
        let (source, destination) = check::peers(conn, peer_port);
        let req = CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(source),
                destination: Some(destination),
                ..AttributeContext::default()
            }),
        };
        let active = counters.get(self.counters.active);
        if let Some(a) = active {
            a.inc();
        }
        // Down again however the call ends (a closed connection drops it mid-call).
        let _in_flight = InFlight(active);
        match check::call(up, self.cluster, self.timeout, &req).await {
            Answer::Ok(_) => {
                inc(self.counters.ok);
                true
            }
            Answer::Denied { .. } => {
                inc(self.counters.denied);
                inc(self.counters.cx_closed);
                tracing::debug!(peer = %conn.peer, filter = %self.name, "network ext_authz: denied, closing");
                false
            }
            Answer::Error => {
                inc(self.counters.error);
                if self.failure_mode_allow {
                    inc(self.counters.failure_mode_allowed);
                    return true;
                }
                inc(self.counters.cx_closed);
                false
            }
        }
    }
}

/// Decrements the `active` gauge when dropped.
struct InFlight<'a>(Option<&'a Rc<Counter>>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(a) = self.0 {
            a.dec();
        }
    }
}
