//! Circuit breakers of a cluster (Envoy's `circuit_breakers`, `ResourceManagerImpl`):
//! the thresholds, and the live counts they are checked against.
//!
//! A cluster has one `Breakers` per routing priority (Envoy's `ResourceManagers`: a
//! route's `priority`, DEFAULT or HIGH, picks which counts its requests take), and a
//! request at one priority also gets connections from that priority's pools
//! (`upstream::cluster::Pools`), so the two never share a connection or a slot.
//! The counts hold for the whole process, as Envoy's do: one `CircuitBreakers` per cluster,
//! shared by every worker through the snapshot's `Arc<Cluster>` (and carried to the
//! next snapshot while the cluster's definition, endpoints aside, stays the same:
//! `runtime::control`). On the request path a request takes one slot of `max_requests`
//! when its endpoint is picked and gives it back when it ends (one atomic add and one
//! subtract, no lock); a request that needs a new upstream connection holds a
//! `max_pending_requests` slot while it waits for it; an upstream connection holds a
//! `max_connections` slot while it is open (`upstream::counted`); a retry holds a
//! `max_retries` slot (or the retry budget's) from the moment it is scheduled until its
//! outcome is decided. With `per_host_thresholds.max_connections` an endpoint's open
//! connections are counted too, process-wide (Envoy's host `cx_active`): each core
//! looks its endpoints' counters up once, when its cluster state is built
//! (`CircuitBreakers::host`), and a connection's open and close touch one more atomic.
//! `max_connection_pools` counts Envoy's connection pools: one per endpoint and core,
//! from the moment the core opens a first connection to the endpoint until its last
//! one closes (Envoy creates a pool for a host on first use and deletes it when it is
//! idle, with no connection left); only those two moments touch its atomic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Envoy's `RetryBudget`: retries may be `budget_percent` of the active and pending
/// requests, but at least `min_retry_concurrency`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    pub budget_percent: f64,
    pub min_retry_concurrency: u64,
}

/// The thresholds of one priority (Envoy's `CircuitBreakers.Thresholds`), with
/// Envoy's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub max_connections: u64,
    pub max_pending_requests: u64,
    pub max_requests: u64,
    pub max_retries: u64,
    /// Replaces `max_retries` when set.
    pub retry_budget: Option<RetryBudget>,
    /// Envoy's default is "unlimited", the `u64` maximum (which `remaining_cx_pools`
    /// then shows, as Envoy 1.40's `/stats` does).
    pub max_connection_pools: u64,
    /// Publish the `remaining_*` gauges.
    pub track_remaining: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
            retry_budget: None,
            max_connection_pools: u64::MAX,
            track_remaining: false,
        }
    }
}

/// Envoy's `RoutingPriority` (`ResourcePriority`): which of a cluster's breakers and
/// connection pools a route's requests use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Priority {
    #[default]
    Default,
    High,
}

impl Priority {
    /// Envoy's `RoutingPriority` name as the configs spell it (unset: DEFAULT); `None`
    /// for any other.
    pub fn parse(name: Option<&str>) -> Option<Priority> {
        match name {
            None | Some("DEFAULT") => Some(Priority::Default),
            Some("HIGH") => Some(Priority::High),
            Some(_) => None,
        }
    }

    /// 0 for DEFAULT, 1 for HIGH: its place in a pair kept per priority (a cluster's
    /// thresholds while they are built, its pools on a core).
    pub fn index(self) -> usize {
        match self {
            Priority::Default => 0,
            Priority::High => 1,
        }
    }
}

/// A cluster's breakers, one per priority, and the process-wide per-endpoint
/// connection counts they share (Envoy's host `cx_active` counts every priority's
/// connections; each priority's `per_host_thresholds` limits it).
#[derive(Default)]
pub struct CircuitBreakers {
    pub default: Arc<Breakers>,
    pub high: Arc<Breakers>,
    /// Open connections per endpoint address (only with a per-host limit); kept by
    /// address, so an update that changes the endpoints keeps the counts of the ones
    /// that stay.
    hosts: Mutex<HashMap<SocketAddr, Arc<AtomicU64>>>,
}

impl CircuitBreakers {
    pub fn new(default: Breakers, high: Breakers) -> Self {
        CircuitBreakers {
            default: Arc::new(default),
            high: Arc::new(high),
            hosts: Mutex::default(),
        }
    }

    /// The breakers of routing priority `p`.
    pub fn at(&self, p: Priority) -> &Arc<Breakers> {
        match p {
            Priority::Default => &self.default,
            Priority::High => &self.high,
        }
    }

    /// With a per-host limit at either priority: the counter of the endpoint at `addr`
    /// (shared by every core); without one, a counter that counts nothing. Called when
    /// a core builds its cluster state, never per request.
    pub fn host(&self, addr: SocketAddr) -> HostCx {
        let limited = [&self.default, &self.high]
            .iter()
            .any(|b| b.per_host_max_connections.is_some());
        if !limited {
            return HostCx(None);
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        HostCx(Some(hosts.entry(addr).or_default().clone()))
    }
}

impl std::fmt::Debug for CircuitBreakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakers")
            .field("default", &self.default)
            .field("high", &self.high)
            .finish_non_exhaustive()
    }
}

/// Alike when their thresholds are: the counts are state, not config.
impl PartialEq for CircuitBreakers {
    fn eq(&self, other: &Self) -> bool {
        *self.default == *other.default && *self.high == *other.high
    }
}

/// One priority's breakers: its thresholds and the process-wide counts.
#[derive(Default)]
pub struct Breakers {
    pub limits: Thresholds,
    /// `per_host_thresholds`' `max_connections` of this priority (`None`: no per-host
    /// limit).
    pub per_host_max_connections: Option<u64>,
    connections: AtomicU64,
    pending: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    /// Connection pools: (endpoint, core) pairs with a connection open or opening.
    pools: AtomicU64,
}

/// One endpoint's open connections, for the per-host limit (nothing without one).
#[derive(Debug, Clone, Default)]
pub struct HostCx(Option<Arc<AtomicU64>>);

impl HostCx {
    /// Counts nothing.
    pub const NONE: HostCx = HostCx(None);

    fn inc(&self) {
        if let Some(n) = &self.0 {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn dec(&self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn at(&self, max: Option<u64>) -> bool {
        match (&self.0, max) {
            (Some(n), Some(m)) => n.load(Ordering::Relaxed) >= m,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("limits", &self.limits)
            .field("per_host_max_connections", &self.per_host_max_connections)
            .finish_non_exhaustive()
    }
}

/// Two clusters' breakers are alike when their thresholds are: the counts are state,
/// not config.
impl PartialEq for Breakers {
    fn eq(&self, other: &Self) -> bool {
        self.limits == other.limits
            && self.per_host_max_connections == other.per_host_max_connections
    }
}

/// Takes one slot of `count` if it stays within `max` (exact across workers: the add
/// comes first, an overflow gives the slot back).
fn take(count: &AtomicU64, max: u64) -> bool {
    let before = count.fetch_add(1, Ordering::Relaxed);
    if before >= max {
        count.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    true
}

fn give(count: &AtomicU64) {
    count.fetch_sub(1, Ordering::Relaxed);
}

impl Breakers {
    pub fn new(limits: Thresholds) -> Self {
        Breakers {
            limits,
            ..Default::default()
        }
    }

    /// With `per_host_thresholds`' `max_connections` (`None`: no per-host limit).
    pub fn with_per_host(mut self, max_connections: Option<u64>) -> Self {
        self.per_host_max_connections = max_connections;
        self
    }

    /// A new upstream connection to `host` within its per-host `max_connections` and
    /// the cluster's, given back by `close_cx`; `false` (nothing taken) at either limit
    /// (Envoy's `canCreateConnection`).
    pub fn open_cx(&self, host: &HostCx) -> bool {
        if host.at(self.per_host_max_connections) {
            return false;
        }
        if !take(&self.connections, self.limits.max_connections) {
            return false;
        }
        host.inc();
        true
    }

    /// A new upstream connection over a limit: Envoy opens one anyway when the pool
    /// has none (its pending requests would wait forever), and counts it.
    pub fn force_cx(&self, host: &HostCx) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        host.inc();
    }

    pub fn close_cx(&self, host: &HostCx) {
        give(&self.connections);
        host.dec();
    }

    /// Whether a new connection pool (a first connection from a core to an endpoint)
    /// fits under `max_connection_pools` (Envoy's `connectionPools().canCreate()`,
    /// checked, then counted by `open_pool`, as Envoy's pool map does).
    pub fn can_open_pool(&self) -> bool {
        self.pools.load(Ordering::Relaxed) < self.limits.max_connection_pools
    }

    /// A core's first connection to an endpoint is opening: its pool exists.
    pub fn open_pool(&self) {
        self.pools.fetch_add(1, Ordering::Relaxed);
    }

    /// A core's last connection to an endpoint closed: its pool is gone.
    pub fn close_pool(&self) {
        give(&self.pools);
    }

    /// A slot of `max_requests`, given back by `end_request`.
    pub fn try_request(&self) -> bool {
        take(&self.requests, self.limits.max_requests)
    }

    pub fn end_request(&self) {
        give(&self.requests);
    }

    /// A slot of `max_pending_requests` (a request waiting for a new connection), given
    /// back when the guard is dropped (the connect may be cut short by a clock).
    pub fn try_pending(&self) -> Option<Pending<'_>> {
        take(&self.pending, self.limits.max_pending_requests).then_some(Pending(self))
    }

    /// How many retries may be in flight: `max_retries`, or the budget's share of the
    /// active and pending requests (Envoy's `RetryBudgetImpl::max`).
    fn max_retries(&self) -> u64 {
        match self.limits.retry_budget {
            None => self.limits.max_retries,
            Some(b) => {
                let active =
                    self.requests.load(Ordering::Relaxed) + self.pending.load(Ordering::Relaxed);
                let share = (b.budget_percent / 100.0 * active as f64) as u64;
                share.max(b.min_retry_concurrency)
            }
        }
    }

    /// A retry slot, given back by `end_retry`.
    pub fn try_retry(&self) -> bool {
        take(&self.retries, self.max_retries())
    }

    pub fn end_retry(&self) {
        give(&self.retries);
    }

    /// Envoy's `circuit_breakers.<priority>.*` gauges.
    pub fn report(&self) -> BreakerReport {
        let l = &self.limits;
        let (cx, pending, rq, retries) = (
            self.connections.load(Ordering::Relaxed),
            self.pending.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
        );
        let pools = self.pools.load(Ordering::Relaxed);
        let max_retries = self.max_retries();
        let remaining = |max: u64, n: u64| l.track_remaining.then(|| max.saturating_sub(n));
        BreakerReport {
            cx_open: u64::from(cx >= l.max_connections),
            rq_pending_open: u64::from(pending >= l.max_pending_requests),
            rq_open: u64::from(rq >= l.max_requests),
            rq_retry_open: u64::from(retries >= max_retries),
            cx_pool_open: u64::from(pools >= l.max_connection_pools),
            remaining_cx: remaining(l.max_connections, cx),
            remaining_pending: remaining(l.max_pending_requests, pending),
            remaining_rq: remaining(l.max_requests, rq),
            // Envoy publishes no remaining_retries under a retry budget.
            remaining_retries: remaining(max_retries, retries).filter(|_| l.retry_budget.is_none()),
            remaining_cx_pools: remaining(l.max_connection_pools, pools),
        }
    }
}

/// A request's `max_pending_requests` slot.
pub struct Pending<'a>(&'a Breakers);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        give(&self.0.pending);
    }
}

/// One priority's gauges, as `/stats` shows them (`remaining_*` only with
/// `track_remaining`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BreakerReport {
    pub cx_open: u64,
    pub rq_pending_open: u64,
    pub rq_open: u64,
    pub rq_retry_open: u64,
    pub cx_pool_open: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_cx: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_pending: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_rq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_retries: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_cx_pools: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_hold_the_limit_and_come_back() {
        let b = Breakers::new(Thresholds {
            max_requests: 2,
            track_remaining: true,
            ..Default::default()
        });
        assert!(b.try_request() && b.try_request());
        assert!(!b.try_request(), "the third is over the limit");
        assert_eq!(b.report().rq_open, 1);
        assert_eq!(b.report().remaining_rq, Some(0));
        b.end_request();
        assert!(b.try_request());
        b.end_request();
        b.end_request();
        assert_eq!(b.report().remaining_rq, Some(2));
        assert_eq!(b.report().rq_open, 0);
    }

    #[test]
    fn a_host_at_its_limit_takes_no_connection_and_others_still_do() {
        let cb = CircuitBreakers::new(
            Breakers::new(Thresholds::default()).with_per_host(Some(1)),
            Breakers::new(Thresholds::default()),
        );
        let b = &cb.default;
        let (a, other) = (
            cb.host("127.0.0.1:1".parse().unwrap()),
            cb.host("127.0.0.1:2".parse().unwrap()),
        );
        let again = cb.host("127.0.0.1:1".parse().unwrap());
        assert!(b.open_cx(&a));
        assert!(!b.open_cx(&again), "the same address, counted once for all");
        assert!(b.open_cx(&other));
        b.force_cx(&a);
        b.close_cx(&a);
        assert!(!b.open_cx(&a), "a forced connection counts too");
        b.close_cx(&a);
        assert!(b.open_cx(&a));
        assert_eq!(b.connections.load(Ordering::Relaxed), 2);
        assert!(
            cb.high.open_cx(&a),
            "HIGH has no per-host limit of its own, though the host's count is shared"
        );
    }

    #[test]
    fn each_priority_counts_its_own_slots() {
        let one = Thresholds {
            max_requests: 1,
            ..Default::default()
        };
        let cb = CircuitBreakers::new(Breakers::new(one), Breakers::new(one));
        assert!(cb.at(Priority::Default).try_request());
        assert!(!cb.at(Priority::Default).try_request());
        assert!(
            cb.at(Priority::High).try_request(),
            "HIGH has its own count"
        );
        assert!(!cb.at(Priority::High).try_request());
    }

    #[test]
    fn a_budget_scales_with_the_active_requests() {
        let b = Breakers::new(Thresholds {
            retry_budget: Some(RetryBudget {
                budget_percent: 50.0,
                min_retry_concurrency: 1,
            }),
            ..Default::default()
        });
        assert!(b.try_retry(), "the minimum concurrency");
        assert!(!b.try_retry());
        for _ in 0..4 {
            assert!(b.try_request());
        }
        assert!(b.try_retry(), "50% of 4 active is 2");
        assert!(!b.try_retry());
        assert_eq!(b.report().remaining_retries, None);
    }
}
