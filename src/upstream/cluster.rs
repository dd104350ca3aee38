//! The per-core state of one cluster: its config, load balancer, pool and counters.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::alarm::Alarm;
use crate::config::Cluster;
use crate::health::HealthFlags;
use crate::observe::stats::{ClusterStats, EndpointReport, EndpointStats};

use super::counted::Counted;
use super::lb::Lb;
use super::pool::Pool;

/// One endpoint's requests on this core, for the success-rate and failure-percentage
/// detectors: cumulative, the control executor takes differences per interval.
#[derive(Debug, Default)]
pub(crate) struct RateCounts {
    pub external_total: Cell<u64>,
    pub external_success: Cell<u64>,
    pub local_total: Cell<u64>,
    pub local_success: Cell<u64>,
}

/// One routing priority's connection pools on this core: Envoy keeps a pool per
/// endpoint and priority, so a HIGH route's requests never share a connection (or a
/// `max_connections` slot) with the DEFAULT ones.
pub(crate) struct Pools<C> {
    /// Idle HTTP/1.1 connections, counted for `max_connections` (`counted.rs`).
    pub pool: Pool<Counted<C>>,
    /// HTTP/2 connections, for `protocol: http2` (and `downstream` with HTTP/2 clients).
    pub h2: super::h2conn::H2Conns,
}

impl<C> Pools<C> {
    fn new(cfg: &Cluster) -> Self {
        Pools {
            pool: Pool::new(
                cfg.endpoints.len(),
                cfg.pool.max_idle_per_endpoint,
                cfg.pool.idle_timeout,
            ),
            h2: super::h2conn::H2Conns::new(cfg.endpoints.len(), cfg.pool.idle_timeout),
        }
    }
}

pub(crate) struct ClusterState<C> {
    pub cfg: Arc<Cluster>,
    pub name: Arc<str>,
    pub lb: RefCell<Lb>,
    /// The connection pools of each priority, DEFAULT then HIGH (`pools`).
    pub(super) pools: [Pools<C>; 2],
    pub stats: Rc<ClusterStats>,
    pub endpoints: Vec<EndpointStats>,
    /// Each endpoint's active health-check flags (all healthy without health checks);
    /// the load balancer is rebuilt when they change.
    health: Vec<Cell<HealthFlags>>,
    /// The worker's alarm: rung by the first pick on this core, so the worker tells the
    /// control executor the cluster has traffic (health checks leave
    /// `no_traffic_interval`), and by an outlier event, so it sends the event.
    pub(super) alarm: OnceCell<Rc<Alarm>>,
    /// Outlier detection events (a consecutive run reached its threshold) waiting for
    /// the worker's housekeeping: `(endpoint, kind)`.
    pub(super) outlier_events: RefCell<Vec<(usize, crate::config::outlier::Consecutive)>>,
    /// This core's request counts per endpoint for the interval detectors.
    pub(super) rates: Vec<RateCounts>,
    /// An original_dst cluster's per-destination states on this core, for HTTP
    /// requests (`upstream/original_dst.rs`).
    pub(super) dests: RefCell<std::collections::HashMap<std::net::SocketAddr, Rc<ClusterState<C>>>>,
    /// Each endpoint's process-wide connection count, for the per-host
    /// `max_connections` (counting nothing without one).
    hosts: Vec<crate::config::circuit::HostCx>,
}

impl<C: 'static> ClusterState<C> {
    pub fn new(cfg: Arc<Cluster>, stats: Rc<ClusterStats>, seed: u64) -> Self {
        ClusterState {
            lb: RefCell::new(
                Lb::new(
                    cfg.lb_policy,
                    &cfg.endpoints,
                    &cfg.localities,
                    cfg.healthy_panic_threshold,
                    seed,
                )
                .with_slow_start(cfg.slow_start)
                .with_active_request_bias(cfg.active_request_bias)
                .with_peak_ewma(cfg.peak_ewma),
            ),
            pools: [Pools::new(&cfg), Pools::new(&cfg)],
            endpoints: cfg
                .endpoints
                .iter()
                .map(|_| EndpointStats::default())
                .collect(),
            name: Arc::from(cfg.name.as_str()),
            health: cfg
                .endpoints
                .iter()
                .map(|_| Cell::new(HealthFlags::HEALTHY))
                .collect(),
            alarm: OnceCell::new(),
            outlier_events: RefCell::default(),
            dests: RefCell::default(),
            rates: cfg
                .endpoints
                .iter()
                .map(|_| RateCounts::default())
                .collect(),
            hosts: cfg
                .endpoints
                .iter()
                .map(|e| cfg.breakers.host(e.addr))
                .collect(),
            cfg,
            stats,
        }
    }

    /// Sets every endpoint's health flags (`flags(addr)`, for a cluster with health
    /// checks; `None` for an endpoint the checker has not reported: it starts failed,
    /// as Envoy's hosts of a health-checked cluster), and the outlier ejections
    /// (`ejected(addr)`, for a cluster with outlier detection), and rebuilds the load
    /// balancer.
    pub fn init_health(
        &self,
        flags: impl Fn(std::net::SocketAddr) -> Option<HealthFlags>,
        ejected: impl Fn(std::net::SocketAddr) -> bool,
    ) {
        let checked = !self.cfg.health_checks.is_empty();
        let detected = self.cfg.outlier.is_some();
        if !checked && !detected {
            return;
        }
        for (e, h) in self.cfg.endpoints.iter().zip(&self.health) {
            let mut f = if checked {
                flags(e.addr).unwrap_or(HealthFlags::INITIAL)
            } else {
                HealthFlags::HEALTHY
            };
            f.set(
                HealthFlags::FAILED_OUTLIER_CHECK,
                detected && ejected(e.addr),
            );
            h.set(f);
        }
        self.rebuild_lb();
    }

    /// An endpoint's ejection by outlier detection (Envoy's `FAILED_OUTLIER_CHECK`) set
    /// or cleared by the control executor; `false` if this cluster has no such endpoint
    /// (or no outlier detection).
    pub fn set_ejected(&self, addr: std::net::SocketAddr, ejected: bool) -> bool {
        if self.cfg.outlier.is_none() {
            return false;
        }
        let Some(i) = self.cfg.endpoints.iter().position(|e| e.addr == addr) else {
            return false;
        };
        let Some(h) = self.health.get(i) else {
            return false;
        };
        let mut f = h.get();
        f.set(HealthFlags::FAILED_OUTLIER_CHECK, ejected);
        if h.replace(f).failed() != f.failed() {
            self.rebuild_lb();
        }
        true
    }

    /// One endpoint's new flags from the checker; `false` if this cluster has no such
    /// endpoint (or no health checks).
    pub fn set_health(&self, addr: std::net::SocketAddr, flags: HealthFlags) -> bool {
        if self.cfg.health_checks.is_empty() {
            return false;
        }
        let Some(i) = self.cfg.endpoints.iter().position(|e| e.addr == addr) else {
            return false;
        };
        let Some(h) = self.health.get(i) else {
            return false;
        };
        // The checker's flags never carry the outlier ejection: it stays as it was.
        let mut flags = flags;
        flags.set(
            HealthFlags::FAILED_OUTLIER_CHECK,
            h.get().has(HealthFlags::FAILED_OUTLIER_CHECK),
        );
        if h.replace(flags).failed() != flags.failed() {
            self.rebuild_lb();
        }
        true
    }

    fn rebuild_lb(&self) {
        let failed: Vec<bool> = self.health.iter().map(|h| h.get().failed()).collect();
        self.lb
            .borrow_mut()
            .set_health(&failed, self.cfg.healthy_panic_threshold);
    }

    /// Where the first pick reports the cluster's first traffic; the same alarm sweeps
    /// the pools' idle connections (`Pool::evict_expired`, `h2conn::evict_idle`).
    pub fn report_use_to(&self, alarm: Rc<Alarm>) {
        for p in &self.pools {
            p.pool.sweep_with(alarm.clone());
            p.h2.sweep_with(alarm.clone());
        }
        let _ = self.alarm.set(alarm);
    }

    /// The connection pools of routing priority `p`.
    pub fn pools(&self, p: crate::config::circuit::Priority) -> &Pools<C> {
        let [default, high] = &self.pools;
        match p {
            crate::config::circuit::Priority::Default => default,
            crate::config::circuit::Priority::High => high,
        }
    }

    /// Pools an idle HTTP/1.1 connection in the pools of the priority it was opened
    /// for.
    pub fn put(&self, ep: usize, conn: Counted<C>) {
        self.pools(conn.priority()).pool.put(ep, conn);
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
        // Endpoints both versions have keep their slow start ramp and latency estimate.
        self.lb
            .borrow_mut()
            .adopt_slow_start(&old.lb.borrow(), |i| {
                let addr = self.cfg.endpoints.get(i)?.addr;
                old.cfg.endpoints.iter().position(|o| o.addr == addr)
            });
        for (to, e) in self.cfg.endpoints.iter().enumerate() {
            if let Some(from) = old.cfg.endpoints.iter().position(|o| o.addr == e.addr) {
                for (new, old) in self.pools.iter().zip(&old.pools) {
                    new.pool.adopt(&old.pool, from, to, Counted::rehome);
                    new.h2.adopt(&old.h2, from, to);
                }
            }
        }
    }

    /// Endpoint `ep`'s connection count for the per-host limit.
    pub fn host_cx(&self, ep: usize) -> &crate::config::circuit::HostCx {
        static NONE: crate::config::circuit::HostCx = crate::config::circuit::HostCx::NONE;
        self.hosts.get(ep).unwrap_or(&NONE)
    }

    /// A ready HTTP/2 handle to endpoint `ep` (opening the connection if needed) from
    /// the pools of `priority`, and the connection's local address and TLS facts, with
    /// the connection counters kept.
    pub async fn h2_ready<K: super::Connector<Conn = C>>(
        &self,
        ep: usize,
        connector: &K,
        priority: crate::config::circuit::Priority,
    ) -> std::io::Result<(
        h2::client::SendRequest<bytes::Bytes>,
        super::h2conn::Facts,
        bool,
    )> {
        let addr = self.cfg.endpoints[ep].addr;
        let host = self.host_cx(ep);
        let breakers = self.cfg.breakers.at(priority);
        let h2 = &self.pools(priority).h2;
        match h2
            .ready(ep, connector, &self.cfg, addr, host, breakers)
            .await
        {
            Ok(super::h2conn::Ready {
                send: s,
                local,
                tls,
                opened,
                over,
                maxed,
            }) => {
                if over {
                    self.stats.cx_overflow.inc();
                }
                if maxed {
                    self.stats.cx_max_requests.inc();
                }
                if opened {
                    self.stats.cx_total.inc();
                    self.endpoints[ep].cx_total.inc();
                } else {
                    self.stats.cx_reused.inc();
                }
                Ok((s, (local, tls), opened))
            }
            Err(e) if super::h2conn::PendingOverflow::is(&e) => {
                self.stats.rq_pending_overflow.inc();
                Err(e)
            }
            // The connection it waited for failed: counted once, by its opener.
            Err(e) if super::h2conn::WaitedFailed::is(&e) => Err(e),
            Err(e) if super::h2conn::PoolOverflow::is(&e) => {
                self.stats.cx_pool_overflow.inc();
                Err(e)
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
    /// `hash` is the request's hash for a ring hash or Maglev cluster (`None`: none).
    pub fn start_request(&self, hash: Option<u64>) -> Option<usize> {
        self.stats.rq_total.inc();
        let Some(ep) = self.pick(hash, 0) else {
            self.stats.rq_no_healthy.inc();
            self.stats.rq_class[4].inc();
            return None;
        };
        self.endpoints[ep].rq_total.inc();
        Some(ep)
    }

    /// Picks an endpoint with the cluster's load-balancing policy, among the healthy
    /// ones (all of them in panic mode, which is counted). `hash` and `attempt` are for
    /// the hashing policies (`Lb::pick_hashed`).
    pub fn pick(&self, hash: Option<u64>, attempt: u32) -> Option<usize> {
        if !self.stats.used.get() {
            self.first_use();
        }
        let mut lb = self.lb.borrow_mut();
        let picked = lb.pick_hashed(hash, attempt, |i| {
            self.endpoints.get(i).map_or(0, |e| e.rq_active.get())
        });
        if lb.last_pick_panicked() {
            self.stats.lb_healthy_panic.inc();
        }
        picked
    }

    /// A try's response head from endpoint `ep`, `since` the try started on its
    /// connection (or the try's clock cut it then): peak EWMA's latency sample (`None`:
    /// the balancer takes none, see `wants_latency`).
    pub fn observe_latency(&self, ep: usize, since: Option<std::time::Instant>) {
        if let Some(since) = since {
            self.lb.borrow_mut().observe(ep, since.elapsed());
        }
    }

    /// The balancer takes latency samples (peak EWMA): only then does a try note when
    /// it started.
    pub fn wants_latency(&self) -> bool {
        self.cfg.lb_policy == crate::config::LbPolicy::PeakEwma
    }

    /// Once per cluster and core: the flag, and the alarm that gets the news to the
    /// control executor off the request path.
    #[cold]
    fn first_use(&self) {
        self.stats.used.set(true);
        if let Some(a) = self.alarm.get() {
            a.ring_at(std::time::Instant::now());
        }
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
                cx_idle: self.pools.iter().map(|p| p.pool.idle_count(i) as u64).sum(),
                health_flags: self
                    .health
                    .get(i)
                    .map_or(HealthFlags::HEALTHY, Cell::get)
                    .envoy_text(),
                outlier_rates: self.rates.get(i).map_or([0; 4], |r| {
                    [
                        r.external_total.get(),
                        r.external_success.get(),
                        r.local_total.get(),
                        r.local_success.get(),
                    ]
                }),
            })
            .collect()
    }
}
