//! Outlier detection, decided once per process on the control executor (issue 11;
//! Envoy's `Outlier::DetectorImpl`, which runs on Envoy's main thread).
//!
//! Off the request path. Workers record each try's outcome into the endpoint's
//! process-wide consecutive counters (`config::outlier`, `upstream::outlier`); the worker
//! whose record reaches a threshold sends an [`Event`], once per event. The detector
//! here owns everything else: which endpoints are ejected, their ejection counts and
//! back-off, the `outlier_detection.*` stats, the interval timer (unejections, the
//! success-rate and failure-percentage detectors of `rates.rs`, the back-off's decay).
//! An ejection or unejection becomes an [`Update`], sent to every worker the way health
//! checks' updates are; a worker keeps the ejected endpoints by cluster name and address
//! and its load balancer leaves them out (Envoy's `FAILED_OUTLIER_CHECK`, which counts
//! against the panic threshold like a failed health check).

mod rates;
mod stats;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rt::channel::local::LocalSender;

pub use stats::OutlierReport;

use crate::config::outlier::{Consecutive, OutlierDetection};
use crate::config::{Cluster, Snapshot};
use crate::observe::stats::StatsReport;
use stats::Kind;

/// An endpoint ejected (or brought back), for every worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub cluster: String,
    pub addr: SocketAddr,
    pub ejected: bool,
}

/// A consecutive-failure run of an endpoint reached its threshold on a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub cluster: String,
    pub addr: SocketAddr,
    pub kind: Consecutive,
}

/// One endpoint's ejection state (Envoy's `DetectorHostMonitorImpl`, its main-thread
/// half).
#[derive(Debug, Default)]
struct Host {
    ejected: bool,
    num_ejections: u64,
    /// Envoy's `ejectTimeBackoff`: the multiple of `base_ejection_time` the next
    /// ejection lasts; up by one per ejection, down by one per interval spent healthy.
    backoff: u32,
    last_ejection: Option<Instant>,
    last_unejection: Option<Instant>,
    jitter: Duration,
    /// The worker's cumulative request counts at the last interval (`rates.rs`).
    seen: rates::Seen,
}

/// One cluster's detector.
struct ClusterDetector {
    /// The snapshot's cluster: its settings, endpoints and the shared counters.
    cluster: Arc<Cluster>,
    /// By endpoint index of `cluster`.
    hosts: Vec<Host>,
    next_tick: Instant,
}

impl ClusterDetector {
    fn cfg(&self) -> &OutlierDetection {
        // Only clusters with outlier detection have a detector.
        static DEFAULT: std::sync::LazyLock<OutlierDetection> =
            std::sync::LazyLock::new(OutlierDetection::default);
        self.cluster.outlier.as_deref().map_or(&DEFAULT, |o| &o.cfg)
    }

    fn active(&self) -> u64 {
        self.hosts.iter().filter(|h| h.ejected).count() as u64
    }
}

struct Inner {
    updates: LocalSender<Update>,
    clusters: RefCell<HashMap<String, ClusterDetector>>,
    /// By cluster name, kept across snapshots (Envoy's stats outlive a cluster update).
    stats: RefCell<HashMap<String, stats::Counters>>,
    /// Rings when the next interval falls due (the control executor's ticker).
    alarm: crate::alarm::Alarm,
}

/// The process's outlier detector. Cheap to clone.
#[derive(Clone)]
pub struct Detector(Rc<Inner>);

impl Detector {
    pub fn new(updates: LocalSender<Update>) -> Self {
        Detector(Rc::new(Inner {
            updates,
            clusters: RefCell::default(),
            stats: RefCell::default(),
            alarm: crate::alarm::Alarm::default(),
        }))
    }

    /// Rings when `tick` is due.
    pub fn alarm(&self) -> &crate::alarm::Alarm {
        &self.0.alarm
    }

    fn send(&self, cluster: &str, addr: SocketAddr, ejected: bool) {
        // Unbounded local channel: the control executor forwards to the workers.
        let _ = self.0.updates.try_send(Update {
            cluster: cluster.to_string(),
            addr,
            ejected,
        });
    }

    /// Follows a new snapshot. A cluster whose outlier settings are unchanged keeps
    /// its endpoints' state by address (an endpoint that left is forgotten); a new or
    /// changed one starts with every endpoint in (Envoy builds a new detector for a
    /// changed cluster); a cluster that lost outlier detection brings its ejected
    /// endpoints back.
    pub fn apply(&self, snapshot: &Snapshot) {
        let now = Instant::now();
        let mut clusters = self.0.clusters.borrow_mut();
        let mut next: HashMap<String, ClusterDetector> = HashMap::new();
        for c in &snapshot.clusters {
            let Some(o) = c.outlier.as_deref() else {
                continue;
            };
            self.0.stats.borrow_mut().entry(c.name.clone()).or_default();
            let mut hosts: Vec<Host> = c.endpoints.iter().map(|_| Host::default()).collect();
            let mut next_tick = now + o.cfg.interval;
            if let Some(mut old) = clusters.remove(&c.name) {
                let same = old.cfg() == &o.cfg;
                for (i, e) in old.cluster.endpoints.iter().enumerate() {
                    let Some(h) = old.hosts.get_mut(i) else {
                        continue;
                    };
                    let kept = same
                        .then(|| c.endpoints.iter().position(|n| n.addr == e.addr))
                        .flatten();
                    match kept.and_then(|j| hosts.get_mut(j)) {
                        Some(slot) => *slot = std::mem::take(h),
                        None if h.ejected => self.send(&c.name, e.addr, false),
                        None => {}
                    }
                }
                if same {
                    next_tick = old.next_tick;
                }
            }
            next.insert(
                c.name.clone(),
                ClusterDetector {
                    cluster: c.clone(),
                    hosts,
                    next_tick,
                },
            );
        }
        // Clusters gone, or without outlier detection now.
        for (name, old) in clusters.drain() {
            for (e, h) in old.cluster.endpoints.iter().zip(&old.hosts) {
                if h.ejected {
                    self.send(&name, e.addr, false);
                }
            }
        }
        *clusters = next;
        if let Some(at) = clusters.values().map(|c| c.next_tick).min() {
            self.0.alarm.ring_at(at);
        }
        let names: Vec<&str> = clusters.keys().map(String::as_str).collect();
        self.0
            .stats
            .borrow_mut()
            .retain(|n, _| names.contains(&n.as_str()));
    }

    /// A worker's event (Envoy's `onConsecutiveErrorWorker`): an endpoint already
    /// ejected, or gone, is left alone; otherwise the detection is counted, the
    /// ejection tried, and the run's counter reset so that a new run can be seen.
    pub fn on_event(&self, e: Event) {
        self.on_event_at(e, Instant::now());
    }

    fn on_event_at(&self, e: Event, now: Instant) {
        let mut clusters = self.0.clusters.borrow_mut();
        let Some(cd) = clusters.get_mut(&e.cluster) else {
            return;
        };
        let Some(i) = cd.cluster.endpoints.iter().position(|x| x.addr == e.addr) else {
            return;
        };
        if cd.hosts.get(i).is_none_or(|h| h.ejected) {
            return;
        }
        let kind = Kind::from(e.kind);
        self.with_stats(&e.cluster, |s| {
            s.detected(kind);
            if kind == Kind::Consecutive5xx {
                s.ejections_consecutive_5xx += 1;
            }
        });
        self.eject(cd, i, kind, now);
        if let Some(h) = cd.cluster.outlier.as_deref().and_then(|o| o.hosts.get(i)) {
            h.reset(e.kind);
        }
    }

    /// An active health check passed for an endpoint that is not failing its checks:
    /// with `successful_active_health_check_uneject_host` (the default) an ejected one
    /// comes back at once (Envoy's host-check-complete callback).
    pub fn on_check_passed(&self, cluster: &str, addr: SocketAddr) {
        let mut clusters = self.0.clusters.borrow_mut();
        let Some(cd) = clusters.get_mut(cluster) else {
            return;
        };
        if !cd.cfg().successful_active_health_check_uneject_host {
            return;
        }
        let Some(i) = cd.cluster.endpoints.iter().position(|x| x.addr == addr) else {
            return;
        };
        if cd.hosts.get(i).is_some_and(|h| h.ejected) {
            self.uneject(cd, i, Instant::now());
        }
    }

    fn with_stats(&self, cluster: &str, f: impl FnOnce(&mut stats::Counters)) {
        if let Some(s) = self.0.stats.borrow_mut().get_mut(cluster) {
            f(s);
        }
    }

    /// Envoy's `ejectHost`: within `max_ejection_percent` (or the first ejection, with
    /// `always_eject_one_host`), and if the detector's `enforcing_*` percentage lets it.
    fn eject(&self, cd: &mut ClusterDetector, i: usize, kind: Kind, now: Instant) {
        let cfg = cd.cfg().clone();
        let active = cd.active();
        let total = cd.hosts.len().max(1) as f64;
        let percent = 100.0 * (active + 1) as f64 / total;
        let mut allowed = percent <= f64::from(cfg.max_ejection_percent.min(100));
        if cfg.always_eject_one_host {
            allowed = allowed || active == 0;
        }
        let name = cd.cluster.name.clone();
        if !allowed {
            self.with_stats(&name, |s| s.ejections_overflow += 1);
            return;
        }
        if matches!(kind, Kind::Consecutive5xx | Kind::SuccessRate) {
            self.with_stats(&name, |s| s.ejections_total += 1);
        }
        let enforcing = kind.enforcing(&cfg);
        if fastrand::u32(0..100) >= enforcing || cd.hosts.get(i).is_none_or(|h| h.ejected) {
            return;
        }
        let Some(addr) = cd.cluster.endpoints.get(i).map(|e| e.addr) else {
            return;
        };
        let Some(h) = cd.hosts.get_mut(i) else {
            return;
        };
        h.ejected = true;
        h.num_ejections += 1;
        h.last_ejection = Some(now);
        let jitter_ms = cfg.max_ejection_time_jitter.as_millis() as u64;
        h.jitter = Duration::from_millis(fastrand::u64(0..=jitter_ms));
        let base = cfg.base_ejection_time;
        if base.saturating_mul(h.backoff) < cfg.max_ejection_time + base {
            h.backoff += 1;
        }
        self.with_stats(&name, |s| s.enforced(kind));
        tracing::info!(
            cluster = %name,
            endpoint = %addr,
            ejection = kind.name(),
            num_ejections = h.num_ejections,
            "outlier detection ejected an endpoint"
        );
        self.send(&name, addr, true);
    }

    /// Envoy's `unejectHost`: back in, with its consecutive runs reset.
    fn uneject(&self, cd: &mut ClusterDetector, i: usize, now: Instant) {
        let Some(h) = cd.hosts.get_mut(i) else {
            return;
        };
        h.ejected = false;
        h.last_unejection = Some(now);
        if let Some(c) = cd.cluster.outlier.as_deref().and_then(|o| o.hosts.get(i)) {
            c.reset_all();
        }
        if let Some(e) = cd.cluster.endpoints.get(i) {
            tracing::info!(cluster = %cd.cluster.name, endpoint = %e.addr, "outlier detection brought an endpoint back");
            self.send(&cd.cluster.name, e.addr, false);
        }
    }

    /// When the next interval falls due, if any cluster has outlier detection.
    pub fn next_due(&self) -> Option<Instant> {
        self.0.clusters.borrow().values().map(|c| c.next_tick).min()
    }

    /// Whether a tick at `now` runs an interval detector, which needs the workers'
    /// request counts (`tick`'s `counts`).
    pub fn wants_counts(&self, now: Instant) -> bool {
        self.0
            .clusters
            .borrow()
            .values()
            .any(|c| c.next_tick <= now && rates::enabled_for(c.cfg(), c.hosts.len()))
    }

    /// Runs every cluster's interval that fell due (Envoy's `onIntervalTimer`):
    /// unejections whose time has come, the interval detectors (with the workers'
    /// cumulative counts, when gathered), the back-off's decay for endpoints that
    /// stayed in for an interval.
    pub fn tick(&self, now: Instant, counts: Option<&StatsReport>) {
        let names: Vec<String> = self
            .0
            .clusters
            .borrow()
            .iter()
            .filter(|(_, c)| c.next_tick <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let mut clusters = self.0.clusters.borrow_mut();
            let Some(cd) = clusters.get_mut(&name) else {
                continue;
            };
            let cfg = cd.cfg().clone();
            for i in 0..cd.hosts.len() {
                let due = cd.hosts.get(i).is_some_and(|h| {
                    let Some(at) = h.last_ejection.filter(|_| h.ejected) else {
                        return false;
                    };
                    let time = cfg
                        .base_ejection_time
                        .saturating_mul(h.backoff)
                        .min(cfg.max_ejection_time)
                        + h.jitter;
                    now.saturating_duration_since(at) >= time
                });
                if due {
                    self.uneject(cd, i, now);
                }
            }
            let report = counts.and_then(|r| r.clusters.iter().find(|c| c.name == name));
            // Both detectors may name one endpoint: the second is counted as Envoy
            // counts it (detected, and an overflow past max_ejection_percent), but an
            // endpoint is never ejected twice.
            for (i, kind) in rates::detect(cd, &cfg, report) {
                self.with_stats(&name, |s| {
                    s.detected(kind);
                    if kind == Kind::SuccessRate || kind == Kind::SuccessRateLocalOrigin {
                        s.ejections_success_rate += 1;
                    }
                });
                self.eject(cd, i, kind, now);
            }
            for h in cd.hosts.iter_mut().filter(|h| !h.ejected) {
                let stayed = h
                    .last_unejection
                    .is_some_and(|u| now.saturating_duration_since(u) >= cfg.interval);
                if stayed && h.backoff != 0 {
                    h.backoff -= 1;
                }
            }
            cd.next_tick = now + cfg.interval;
        }
    }

    /// The cluster's `outlier_detection.*` stats, if it has outlier detection.
    pub fn report(&self, cluster: &str) -> Option<OutlierReport> {
        let clusters = self.0.clusters.borrow();
        let cd = clusters.get(cluster)?;
        let stats = self.0.stats.borrow();
        Some(stats.get(cluster)?.report(cd.active()))
    }
}

#[cfg(test)]
mod tests;
