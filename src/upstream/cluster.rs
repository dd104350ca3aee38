//! The per-core state of one cluster: its config, load balancer, pool and counters.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Cluster;
use crate::observe::stats::{ClusterStats, EndpointReport, EndpointStats};

use super::lb::Lb;
use super::pool::Pool;

pub(crate) struct ClusterState<C> {
    pub cfg: Arc<Cluster>,
    pub name: Arc<str>,
    pub lb: RefCell<Lb>,
    pub pool: Pool<C>,
    /// HTTP/2 connections, for `protocol: http2` (and `downstream` with HTTP/2 clients).
    pub h2: super::h2conn::H2Conns,
    pub stats: Rc<ClusterStats>,
    pub endpoints: Vec<EndpointStats>,
}

impl<C: 'static> ClusterState<C> {
    pub fn new(cfg: Arc<Cluster>, stats: Rc<ClusterStats>, seed: u64) -> Self {
        ClusterState {
            lb: RefCell::new(Lb::new(cfg.lb_policy, &cfg.endpoints, seed)),
            pool: Pool::new(
                cfg.endpoints.len(),
                cfg.pool.max_idle_per_endpoint,
                cfg.pool.idle_timeout,
            ),
            endpoints: cfg
                .endpoints
                .iter()
                .map(|_| EndpointStats::default())
                .collect(),
            h2: super::h2conn::H2Conns::new(cfg.endpoints.len()),
            name: Arc::from(cfg.name.as_str()),
            cfg,
            stats,
        }
    }

    /// Takes over the idle connections of `old` (the previous version of this cluster on
    /// this core) to the endpoints both versions have, when nothing but the endpoints
    /// changed: removing an endpoint closes only that endpoint's pooled connections.
    pub fn adopt(&self, old: &ClusterState<C>) {
        let same_but_endpoints = Cluster {
            endpoints: Vec::new(),
            ..(*old.cfg).clone()
        } == Cluster {
            endpoints: Vec::new(),
            ..(*self.cfg).clone()
        };
        if !same_but_endpoints {
            return;
        }
        for (to, e) in self.cfg.endpoints.iter().enumerate() {
            if let Some(from) = old.cfg.endpoints.iter().position(|o| o.addr == e.addr) {
                self.pool.adopt(&old.pool, from, to);
                self.h2.adopt(&old.h2, from, to);
            }
        }
    }

    /// A ready HTTP/2 handle to endpoint `ep` (opening the connection if needed), with
    /// the connection counters kept.
    pub async fn h2_ready<K: super::Connector<Conn = C>>(
        &self,
        ep: usize,
        connector: &K,
    ) -> std::io::Result<h2::client::SendRequest<bytes::Bytes>> {
        let addr = self.cfg.endpoints[ep].addr;
        match self.h2.ready(ep, connector, &self.cfg, addr).await {
            Ok((s, opened)) => {
                if opened {
                    self.stats.cx_total.inc();
                    self.endpoints[ep].cx_total.inc();
                } else {
                    self.stats.cx_reused.inc();
                }
                Ok(s)
            }
            Err(e) => {
                tracing::debug!(upstream = %addr, error = %e, "upstream h2 connect failed");
                self.stats.cx_connect_fail.inc();
                self.endpoints[ep].cx_connect_fail.inc();
                Err(e)
            }
        }
    }

    /// Counts a request for this cluster and picks its endpoint. `None` means the cluster
    /// has no endpoint; that is counted as a no-healthy-upstream 5xx.
    pub fn start_request(&self) -> Option<usize> {
        self.stats.rq_total.inc();
        let Some(ep) = self.pick() else {
            self.stats.rq_no_healthy.inc();
            self.stats.rq_class[4].inc();
            return None;
        };
        self.endpoints[ep].rq_total.inc();
        Some(ep)
    }

    /// Picks an endpoint with the cluster's load-balancing policy.
    pub fn pick(&self) -> Option<usize> {
        self.lb
            .borrow_mut()
            .pick(|i| self.endpoints.get(i).map_or(0, |e| e.rq_active.get()))
    }

    pub fn endpoint_reports(&self) -> Vec<EndpointReport> {
        self.cfg
            .endpoints
            .iter()
            .zip(&self.endpoints)
            .enumerate()
            .map(|(i, (e, s))| EndpointReport {
                address: e.addr.to_string(),
                weight: e.weight,
                rq_total: s.rq_total.get(),
                rq_active: s.rq_active.get(),
                cx_total: s.cx_total.get(),
                cx_connect_fail: s.cx_connect_fail.get(),
                cx_idle: self.pool.idle_count(i) as u64,
            })
            .collect()
    }
}
