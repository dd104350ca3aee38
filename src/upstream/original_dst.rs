//! HTTP requests to an ORIGINAL_DST cluster (Istio's PassthroughCluster behind an HTTP
//! connection manager): each destination gets, on each core, a cluster state of its own
//! with one endpoint, its own connection pools and endpoint counters, sharing the
//! cluster's stats and circuit breakers.
//!
//! Sits between the router's decision and the upstream request (`http/conn/exchange.rs`,
//! `http/h2/stream.rs`): the request's destination is found when it is routed
//! ([`destination`]), and [`ClusterState::for_request`] turns the routed cluster into
//! the state the request is sent with. Envoy keeps one host per destination in the
//! cluster and removes unused ones every `cleanup_interval` (5 s); here a core keeps up
//! to [`KEPT`] destinations per cluster and forgets those no request holds when that
//! fills up (their idle connections close with them). TCP proxies connect per
//! connection and need none of this (`tcp/mod.rs`).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use super::cluster::ClusterState;
use crate::config::{Cluster, ClusterKind, Endpoint};

/// Destinations a core keeps per cluster before it forgets the unused ones.
const KEPT: usize = 1024;

/// Where a request routed to `cluster` goes when it is an original_dst cluster (`None`
/// for other clusters): Envoy's order, the `original_dst_lb_config` header's
/// `IP:port` if the cluster reads one and it parses (only its first value; an invalid
/// one is skipped as in Envoy), else the connection's original destination `local`.
/// `own(addr)` says an address is one of this proxy's listeners: a connection that was
/// not redirected (its local address is the listener's) has no original destination,
/// and a request is never sent back into the proxy. `None` then: `503 UH`, as Envoy's
/// load balancer finding no host.
pub(crate) fn destination<'h>(
    cluster: &Cluster,
    mut header: impl FnMut(&str) -> Option<&'h [u8]>,
    local: SocketAddr,
    own: impl Fn(SocketAddr) -> bool,
) -> Option<SocketAddr> {
    if cluster.kind != ClusterKind::OriginalDst {
        return None;
    }
    let named = cluster
        .original_dst_header
        .as_deref()
        .and_then(&mut header)
        .and_then(parse_host);
    if named.is_none() && cluster.original_dst_header.is_some() {
        tracing::debug!(cluster = %cluster.name, "original_dst: no valid override header");
    }
    Some(named.unwrap_or(local)).filter(|a| !own(*a))
}

/// Envoy's `parseInternetAddressAndPortNoThrow`: `10.1.2.3:80` or `[fd00::1]:80`.
fn parse_host(v: &[u8]) -> Option<SocketAddr> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

impl<C: 'static> ClusterState<C> {
    /// The state a request to `dst` is sent with: this cluster itself, or for an
    /// original_dst cluster this core's state for `dst`. Without a destination it is
    /// the original_dst cluster itself, which has no endpoint: the pick counts the
    /// request as no-host and answers `503 UH`.
    pub(crate) fn for_request(self: &Rc<Self>, dst: Option<SocketAddr>) -> Rc<Self> {
        let (ClusterKind::OriginalDst, Some(dst)) = (self.cfg.kind, dst) else {
            return self.clone();
        };
        let mut dests = self.dests.borrow_mut();
        if let Some(s) = dests.get(&dst) {
            return s.clone();
        }
        if dests.len() >= KEPT {
            // Only the map holds these: no request is using them.
            dests.retain(|_, s| Rc::strong_count(s) > 1);
        }
        let cfg = Arc::new(Cluster {
            endpoints: vec![Endpoint {
                addr: dst,
                weight: 1,
                hostname: None,
                priority: 0,
                locality: 0,
                health: crate::config::EndpointHealth::Healthy,
            }],
            localities: crate::config::Localities::default(),
            kind: ClusterKind::Static,
            health_checks: Vec::new(),
            outlier: None,
            ..(*self.cfg).clone()
        });
        let s = Rc::new(ClusterState::new(cfg, self.stats.clone(), 0));
        if let Some(a) = self.alarm.get() {
            s.report_use_to(a.clone());
        }
        dests.insert(dst, s.clone());
        s
    }

    /// Closes the idle connections that aged out, this cluster's and its
    /// destinations' (the worker's housekeeping).
    pub(crate) fn evict_expired(&self) {
        self.evict_own();
        for s in self.dests.borrow().values() {
            s.evict_own();
        }
    }

    /// This cluster state's own idle connections: pooled HTTP/1.1 ones that aged out,
    /// HTTP/2 ones with no stream for the idle timeout (`upstream_cx_idle_timeout`).
    fn evict_own(&self) {
        let closed: usize = self
            .pools
            .iter()
            .map(|p| p.pool.evict_expired().1 + p.h2.evict_idle())
            .sum();
        self.stats.cx_idle_timeout.add(closed as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(header: Option<&str>) -> Cluster {
        let s = crate::config::parse_str(&format!(
            "clusters:\n  - {{ name: p, type: original_dst{} }}\n",
            header.map_or(String::new(), |h| format!(
                ", original_dst_lb_config: {{ use_http_header: true, http_header_name: {h} }}"
            ))
        ))
        .unwrap();
        (*s.clusters[0]).clone()
    }

    #[test]
    fn the_header_then_the_original_destination_never_this_proxy() {
        let local: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        let own = |a: SocketAddr| a.port() == 15001;
        let none = |_: &str| None;
        let c = cluster(None);
        assert_eq!(destination(&c, none, local, own), Some(local));
        let hdr = |_: &str| Some(&b"10.9.9.9:80"[..]);
        assert_eq!(
            destination(&c, hdr, local, own),
            Some(local),
            "no header read"
        );
        let c = cluster(Some("X-Dst"));
        assert_eq!(c.original_dst_header.as_deref(), Some("x-dst"));
        let named = |n: &str| (n == "x-dst").then_some(&b"10.9.9.9:80"[..]);
        assert_eq!(
            destination(&c, named, local, own),
            Some("10.9.9.9:80".parse().unwrap())
        );
        let v6 = |_: &str| Some(&b"[fd00::1]:443"[..]);
        assert_eq!(
            destination(&c, v6, local, own),
            Some("[fd00::1]:443".parse().unwrap())
        );
        for bad in [
            &b"10.9.9.9"[..],
            b"fd00::1:80",
            b"\xff:1",
            b"",
            b"host:80",
            b"1.2.3.4:99999",
        ] {
            let h = |_: &str| Some(bad);
            assert_eq!(destination(&c, h, local, own), Some(local), "{bad:?}");
        }
        let loop_back = "127.0.0.1:15001".parse().unwrap();
        assert_eq!(destination(&c, none, loop_back, own), None);
        let to_self = |_: &str| Some(&b"127.0.0.1:15001"[..]);
        assert_eq!(destination(&c, to_self, local, own), None);
    }

    #[test]
    fn a_header_name_needs_use_http_header_and_an_original_dst_cluster() {
        let e = crate::config::parse_str(
            "clusters:\n  - { name: p, type: original_dst, original_dst_lb_config: { http_header_name: x } }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("use_http_header"), "{e}");
        let e = crate::config::parse_str(
            "clusters:\n  - { name: p, endpoints: [], original_dst_lb_config: { use_http_header: true } }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("original_dst cluster only"), "{e}");
        let c = cluster(Some("''"));
        assert_eq!(
            c.original_dst_header.as_deref(),
            Some("x-envoy-original-dst-host")
        );
    }

    #[test]
    fn each_destination_has_its_own_state_sharing_the_cluster_stats() {
        let c = Arc::new(cluster(None));
        let cs: Rc<ClusterState<()>> = Rc::new(ClusterState::new(c, Rc::default(), 0));
        let none = cs.for_request(None);
        assert!(
            Rc::ptr_eq(&none, &cs),
            "no destination: the endpointless cluster"
        );
        assert_eq!(none.start_request(None), None);
        assert_eq!(cs.stats.rq_no_healthy.get(), 1);
        let a = cs.for_request(Some("10.0.0.1:80".parse().unwrap()));
        let b = cs.for_request(Some("10.0.0.1:80".parse().unwrap()));
        assert!(Rc::ptr_eq(&a, &b));
        assert!(Rc::ptr_eq(&a.stats, &cs.stats));
        assert_eq!(a.cfg.endpoints[0].addr, "10.0.0.1:80".parse().unwrap());
        assert_eq!(a.start_request(None), Some(0));
        let other = cs.for_request(Some("10.0.0.2:80".parse().unwrap()));
        assert!(!Rc::ptr_eq(&a, &other));
    }
}
