//! The network RBAC filter (Envoy's `envoy.filters.network.rbac`): a chain's network
//! filter that runs before its terminal filter (TCP proxy or HTTP connection manager)
//! and closes a connection its rules deny. The policy engine is `crate::rbac`; over a
//! connection it sees no request, so header and path rules match as against Envoy's
//! empty header map (a missing header, no path).
//!
//! Configured natively as a chain's (or a single-chain listener's) `network_filters`
//! entry `rbac: {rules, shadow_rules, stat_prefix, shadow_rules_stat_prefix,
//! enforcement_type}` (Envoy's fields). Counters: `<stat_prefix>.rbac.allowed`,
//! `denied`, `shadow_allowed`, `shadow_denied`, as Envoy names them.
//!
//! When it decides: Envoy's filter decides on the connection's first bytes from the
//! client (`ONE_TIME_ON_FIRST_BYTE`, or on every read with `CONTINUOUS`). What it
//! matches (addresses, SNI, the peer certificate) is known once the connection and its
//! TLS handshake are done and does not change, so Outrigger decides then, before the
//! terminal filter starts: a denied connection is closed before the TCP proxy connects
//! upstream, and an allowed server-first protocol is not held until the client speaks.
//! A connection that never sends a byte is therefore decided (and counted) here where
//! Envoy would not count it.

use std::rc::Rc;

use crate::observe::stats::Counter;
use crate::rbac::{self, Conn, Counters, Input, Rules};

/// A network filter before a chain's terminal.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkFilter {
    Rbac(NetworkRbac),
    /// Decided by `listener::ext_authz` (it waits for its service), in the chain's
    /// order after the RBAC filters before it.
    ExtAuthz(Box<super::ext_authz::NetworkExtAuthz>),
}

/// `enforcement_type`: both decide once here (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    OneTime,
    Continuous,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkRbac {
    pub name: String,
    pub rules: Rules,
    pub counters: Counters,
    pub enforcement: Enforcement,
}

/// Runs the chain's RBAC network filters over a new connection; `false`: close it.
pub fn allowed(filters: &[NetworkFilter], conn: Conn<'_>, counters: &[Rc<Counter>]) -> bool {
    let input = Input { conn, http: None };
    filters.iter().all(|f| match f {
        NetworkFilter::ExtAuthz(_) => true,
        NetworkFilter::Rbac(r) => {
            let inc = |i: usize| {
                if let Some(c) = counters.get(i) {
                    c.inc();
                }
            };
            match rbac::evaluate(&r.rules, &r.counters, &input, inc) {
                Some(d) if !d.allowed => {
                    tracing::debug!(
                        peer = %conn.peer,
                        details = %rbac::denial_details(d.policy),
                        "network rbac: enforced denied, closing"
                    );
                    false
                }
                _ => true,
            }
        }
    })
}
