//! Per-core stats: plain `Cell` counters owned by one worker, never shared, never locked.
//!
//! The admin server asks each worker for a `StatsReport` (a plain copy, sent over a
//! channel) and merges the reports at scrape time.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use super::buckets::Bounds;

use crate::http::flags::{ResponseFlag, FLAG_COUNT};

/// Upper bounds of the request-duration histogram, in microseconds.
pub const DURATION_BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    5_000_000, 30_000_000,
];

/// Envoy's default histogram buckets (0.5 ms to 1 h), in microseconds: the bounds of
/// `cluster.<name>.upstream_rq_time`.
pub const UPSTREAM_RQ_TIME_BUCKETS_US: [u64; 19] = [
    500,
    1_000,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    600_000_000,
    1_800_000_000,
    3_600_000_000,
];

#[derive(Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get() + n);
    }
    #[inline]
    pub fn dec(&self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Durations in whole microseconds counted into buckets whose bounds a config may set
/// (`observe::buckets`: Envoy's `histogram_bucket_settings`), on one core. The bounds
/// are chosen when a config is applied, by the stat's name; a change of bounds starts
/// the histogram afresh. Recording borrows the cell (a flag check, no lock) and
/// compares against the bounds: nothing is allocated per request.
pub struct TimeHistogram(RefCell<TimeBuckets>);

struct TimeBuckets {
    bounds: Arc<Bounds>,
    /// One per bound, and the last for durations above them all.
    counts: Box<[Counter]>,
    sum_us: Counter,
}

impl TimeBuckets {
    fn new(bounds: Arc<Bounds>) -> TimeBuckets {
        TimeBuckets {
            counts: (0..=bounds.us().len())
                .map(|_| Counter::default())
                .collect(),
            bounds,
            sum_us: Counter::default(),
        }
    }
}

impl TimeHistogram {
    pub fn new(bounds: Arc<Bounds>) -> Self {
        TimeHistogram(RefCell::new(TimeBuckets::new(bounds)))
    }

    /// Counts `us` into the first bucket whose bound is at least `us`.
    #[inline]
    pub fn record(&self, us: u64) {
        if let Ok(b) = self.0.try_borrow() {
            let i = b.bounds.us().partition_point(|&x| x < us);
            if let Some(c) = b.counts.get(i) {
                c.inc();
            }
            b.sum_us.add(us);
        }
    }

    /// Uses `bounds` from now on; the counts start afresh if they differ from the
    /// current ones (a config changed them).
    pub fn configure(&self, bounds: &Arc<Bounds>) {
        let same = self
            .0
            .try_borrow()
            .is_ok_and(|b| Arc::ptr_eq(&b.bounds, bounds) || *b.bounds == **bounds);
        if !same {
            if let Ok(mut b) = self.0.try_borrow_mut() {
                *b = TimeBuckets::new(bounds.clone());
            }
        }
    }

    pub fn report(&self) -> HistogramReport {
        match self.0.try_borrow() {
            Ok(b) => HistogramReport {
                buckets: b.counts.iter().map(Counter::get).collect(),
                sum_us: b.sum_us.get(),
                bounds: Some(b.bounds.clone()),
            },
            Err(_) => HistogramReport::default(),
        }
    }
}

/// The default bounds of request durations (`DURATION_BUCKETS_US`), made once.
pub fn duration_bounds() -> Arc<Bounds> {
    static B: OnceLock<Arc<Bounds>> = OnceLock::new();
    B.get_or_init(|| Arc::new(Bounds::from_us(&DURATION_BUCKETS_US)))
        .clone()
}

/// Envoy's default bounds (`UPSTREAM_RQ_TIME_BUCKETS_US`), made once.
pub fn envoy_default_bounds() -> Arc<Bounds> {
    static B: OnceLock<Arc<Bounds>> = OnceLock::new();
    B.get_or_init(|| Arc::new(Bounds::from_us(&UPSTREAM_RQ_TIME_BUCKETS_US)))
        .clone()
}

/// Request durations of a listener (`DURATION_BUCKETS_US` unless configured).
pub struct Histogram(pub TimeHistogram);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(TimeHistogram::new(duration_bounds()))
    }
}

impl Histogram {
    pub fn record(&self, us: u64) {
        self.0.record(us);
    }

    fn report(&self) -> HistogramReport {
        self.0.report()
    }
}

/// An `upstream_rq_time` on one core (Envoy's default buckets unless configured): a
/// cluster's, or a route's (`route_stats`).
pub struct UpstreamTime(pub TimeHistogram);

impl Default for UpstreamTime {
    fn default() -> Self {
        UpstreamTime(TimeHistogram::new(envoy_default_bounds()))
    }
}

impl UpstreamTime {
    /// Counts a finished request that went upstream (`Times::upstream`).
    pub fn record(&self, total: std::time::Duration, t: &super::phases::Times) {
        let Some(d) = t.upstream(total) else { return };
        self.0
            .record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn report(&self) -> HistogramReport {
        self.0.report()
    }
}

// ---- The self-time breakdown's histograms (`observe::phases`). ----

/// The default bounds of a phase (`phases::PHASE_BUCKETS_US`), made once.
pub fn phase_bounds() -> Arc<Bounds> {
    static B: OnceLock<Arc<Bounds>> = OnceLock::new();
    B.get_or_init(|| Arc::new(Bounds::from_us(&super::phases::PHASE_BUCKETS_US)))
        .clone()
}

/// One phase's durations (`PHASE_BUCKETS_US` unless `histogram_buckets` sets them for
/// `listener.<name>.phase.<phase>`).
pub struct PhaseHistogram(pub TimeHistogram);

impl Default for PhaseHistogram {
    fn default() -> Self {
        PhaseHistogram(TimeHistogram::new(phase_bounds()))
    }
}

impl PhaseHistogram {
    fn record(&self, us: u64) {
        self.0.record(us);
    }

    fn report(&self) -> HistogramReport {
        self.0.report()
    }
}

/// One listener's phase histograms on one core.
#[derive(Default)]
pub struct PhaseStats {
    pub hist: [PhaseHistogram; super::phases::PHASE_COUNT],
    /// Set when a request of this listener recorded phases (a listener without HTTP
    /// traffic reports none).
    used: Cell<bool>,
}

impl PhaseStats {
    pub fn record(&self, t: &super::phases::Times) {
        self.used.set(true);
        for (h, d) in self.hist.iter().zip(t.0) {
            if let Some(d) = d {
                h.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
            }
        }
    }

    /// The histograms in `phases::PHASE_NAMES` order; empty if no request recorded any.
    pub fn report(&self) -> Vec<HistogramReport> {
        if !self.used.get() {
            return Vec::new();
        }
        self.hist.iter().map(PhaseHistogram::report).collect()
    }
}

/// `/stats`: the histograms as an object keyed by phase name (bucket bounds in
/// `super::phases::PHASE_BUCKETS_US`, the last bucket above them).
pub fn serialize_named<S: serde::Serializer>(
    v: &[HistogramReport],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(v.len()))?;
    for (name, h) in super::phases::PHASE_NAMES.iter().zip(v) {
        m.serialize_entry(name, h)?;
    }
    m.end()
}

/// Adds one core's phase histograms into the merged ones.
pub fn merge_phases(into: &mut Vec<HistogramReport>, from: Vec<HistogramReport>) {
    if into.is_empty() {
        *into = from;
        return;
    }
    for (a, b) in into.iter_mut().zip(from) {
        if a.buckets.len() < b.buckets.len() {
            a.buckets.resize(b.buckets.len(), 0);
        }
        for (x, y) in a.buckets.iter_mut().zip(&b.buckets) {
            *x += y;
        }
        a.sum_us += b.sum_us;
    }
}

/// Index of a status code's class (1xx..5xx) in the `*_class` arrays.
pub fn class_index(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5) - 1)
}

/// Downstream stats of one listener on one core.
#[derive(Default)]
pub struct ListenerStats {
    pub cx_total: Counter,
    pub cx_active: Counter,
    pub rq_total: Counter,
    pub rq_class: [Counter; 5],
    pub rq_flags: [Counter; FLAG_COUNT],
    pub rq_time: Histogram,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub access_log_dropped: Counter,
    /// Connections (or HTTP/2 streams) whose handling panicked and was cut off.
    pub cx_panic: Counter,
    /// Connections closed at accept because a connection limit was reached.
    pub cx_overflow: Counter,
    /// Connections closed because no filter chain matched them and there is no default
    /// chain (Envoy's `no_filter_chain_match`).
    pub no_filter_chain_match: Counter,
    /// Connections whose listener filters did not finish within the listener filters
    /// timeout (Envoy's `downstream_pre_cx_timeout`).
    pub pre_cx_timeout: Counter,
    /// TLS handshakes of the listener's TLS filter chains (Envoy's `ssl.*`).
    pub ssl: super::tls_stats::TlsStats,
    /// Istio's standard metrics of the listener's chains with an `istio_stats` filter.
    pub istio: super::istio::cells::IstioCells,
    /// The requests' self-time breakdown (`observe::phases`).
    pub phases: PhaseStats,
}

impl ListenerStats {
    pub fn request_done(&self, status: u16, flag: ResponseFlag, us: u64) {
        self.rq_total.inc();
        // Status 0: the request ended without a response (the connection was closed).
        if status != 0 {
            self.rq_class[class_index(status)].inc();
        }
        if flag != ResponseFlag::None {
            self.rq_flags[flag as usize].inc();
        }
        self.rq_time.record(us);
    }

    pub fn report(&self, name: &str) -> ListenerReport {
        ListenerReport {
            name: name.to_string(),
            cx_total: self.cx_total.get(),
            cx_active: self.cx_active.get(),
            rq_total: self.rq_total.get(),
            rq_class: self.rq_class.iter().map(Counter::get).collect(),
            rq_flags: ResponseFlag::all()
                .iter()
                .skip(1)
                .map(|f| (f.as_str().to_string(), self.rq_flags[*f as usize].get()))
                .collect(),
            rq_time: self.rq_time.report(),
            bytes_received: self.bytes_received.get(),
            bytes_sent: self.bytes_sent.get(),
            access_log_dropped: self.access_log_dropped.get(),
            cx_panic: self.cx_panic.get(),
            cx_overflow: self.cx_overflow.get(),
            no_filter_chain_match: self.no_filter_chain_match.get(),
            pre_cx_timeout: self.pre_cx_timeout.get(),
            ssl: self.ssl.report(),
            phases: self.phases.report(),
        }
    }
}

/// Upstream stats of one cluster on one core; kept by cluster name across reloads.
#[derive(Default)]
pub struct ClusterStats {
    pub rq_total: Counter,
    pub rq_class: [Counter; 5],
    pub rq_timeout: Counter,
    pub cx_total: Counter,
    pub cx_connect_fail: Counter,
    pub cx_reused: Counter,
    pub rq_no_healthy: Counter,
    pub rq_reset: Counter,
    pub rq_protocol_error: Counter,
    /// Envoy's `upstream_rq_retry*` and `upstream_rq_per_try_timeout`.
    pub rq_retry: Counter,
    pub rq_retry_success: Counter,
    /// Never counted yet: retry budgets and `max_retries` circuit breaking are not built.
    pub rq_retry_overflow: Counter,
    /// Envoy's `upstream_rq_pending_overflow`: requests refused by
    /// `max_pending_requests` (503 UO).
    pub rq_pending_overflow: Counter,
    /// Envoy's `upstream_rq_active_overflow`: requests refused by `max_requests`.
    pub rq_active_overflow: Counter,
    /// Envoy's `upstream_cx_overflow`: new connections `max_connections` refused.
    pub cx_overflow: Counter,
    /// Envoy's `upstream_cx_pool_overflow`: requests that needed a new connection pool
    /// past `max_connection_pools` (503 UH).
    pub cx_pool_overflow: Counter,
    /// Envoy's `upstream_cx_max_requests`: connections that reached
    /// `max_requests_per_connection` (counted when the last request they may carry is
    /// sent on them; they close once it is done).
    pub cx_max_requests: Counter,
    /// Envoy's `upstream_cx_idle_timeout`: connections closed after the cluster's idle
    /// timeout with no request (pooled HTTP/1.1 ones, HTTP/2 ones with no stream).
    pub cx_idle_timeout: Counter,
    pub rq_retry_limit_exceeded: Counter,
    pub rq_retry_backoff_exponential: Counter,
    pub rq_per_try_timeout: Counter,
    pub rq_per_try_idle_timeout: Counter,
    /// Envoy's `upstream_rq_max_duration_reached`: tries the cluster's
    /// `max_stream_duration` ended.
    pub rq_max_duration_reached: Counter,
    /// Request mirroring (`upstream::request::shadow`), on the mirror cluster: shadows
    /// sent, those that got no response, and those not sent (too many in flight on the
    /// core, or a request body that was not held). Envoy has no names for these; it
    /// counts shadows only in the mirror cluster's `upstream_rq_*`, as these are too.
    pub rq_shadow: Counter,
    pub rq_shadow_failed: Counter,
    pub rq_shadow_dropped: Counter,
    /// Shadows reset because they fell behind the primary's body past the tee's bound
    /// (`upstream::request::tee`).
    pub rq_shadow_abandoned: Counter,
    /// Envoy's `retry_or_shadow_abandoned`: requests whose body outgrew the retry
    /// buffer limit, so that no retry could replay it.
    pub retry_or_shadow_abandoned: Counter,
    /// Envoy's `lb_healthy_panic`: picks made among all endpoints because too few were
    /// healthy.
    pub lb_healthy_panic: Counter,
    /// The ext_authz filter's counters for requests routed to this cluster
    /// (`cluster.<name>.ext_authz.*`, `observe::authz_stats`).
    pub ext_authz: super::authz_stats::ClusterExtAuthz,
    /// Envoy's `upstream_rq_time`.
    pub rq_time: UpstreamTime,
    /// Set once, by the cluster's first pick on this core (Envoy's no-traffic check
    /// interval ends with it); `used_reported` once the control executor was told.
    pub used: std::cell::Cell<bool>,
    pub used_reported: std::cell::Cell<bool>,
}

/// Per-endpoint counters, part of the per-core cluster state.
#[derive(Default)]
pub struct EndpointStats {
    pub rq_total: Counter,
    pub rq_active: Counter,
    pub cx_total: Counter,
    pub cx_connect_fail: Counter,
}

impl ClusterStats {
    pub fn report(&self, name: &str, endpoints: Vec<EndpointReport>) -> ClusterReport {
        ClusterReport {
            name: name.to_string(),
            rq_total: self.rq_total.get(),
            rq_class: self.rq_class.iter().map(Counter::get).collect(),
            rq_timeout: self.rq_timeout.get(),
            cx_total: self.cx_total.get(),
            cx_connect_fail: self.cx_connect_fail.get(),
            cx_reused: self.cx_reused.get(),
            rq_no_healthy: self.rq_no_healthy.get(),
            rq_reset: self.rq_reset.get(),
            rq_protocol_error: self.rq_protocol_error.get(),
            rq_retry: self.rq_retry.get(),
            rq_retry_success: self.rq_retry_success.get(),
            rq_retry_overflow: self.rq_retry_overflow.get(),
            rq_pending_overflow: self.rq_pending_overflow.get(),
            rq_active_overflow: self.rq_active_overflow.get(),
            cx_overflow: self.cx_overflow.get(),
            cx_pool_overflow: self.cx_pool_overflow.get(),
            cx_max_requests: self.cx_max_requests.get(),
            cx_idle_timeout: self.cx_idle_timeout.get(),
            circuit_breakers: None,
            circuit_breakers_high: None,
            rq_retry_limit_exceeded: self.rq_retry_limit_exceeded.get(),
            rq_retry_backoff_exponential: self.rq_retry_backoff_exponential.get(),
            rq_per_try_timeout: self.rq_per_try_timeout.get(),
            rq_per_try_idle_timeout: self.rq_per_try_idle_timeout.get(),
            rq_max_duration_reached: self.rq_max_duration_reached.get(),
            rq_shadow: self.rq_shadow.get(),
            rq_shadow_failed: self.rq_shadow_failed.get(),
            rq_shadow_dropped: self.rq_shadow_dropped.get(),
            rq_shadow_abandoned: self.rq_shadow_abandoned.get(),
            retry_or_shadow_abandoned: self.retry_or_shadow_abandoned.get(),
            lb_healthy_panic: self.lb_healthy_panic.get(),
            ext_authz: self.ext_authz.report(),
            rq_time: self.rq_time.report(),
            health_check: None,
            dns: None,
            outlier_detection: None,
            thresholds: None,
            added_via_api: false,
            endpoints,
        }
    }
}

// ---- Reports: plain data that crosses from a worker to the admin server. ----

#[derive(Debug, Clone, Default, Serialize)]
pub struct HistogramReport {
    pub buckets: Vec<u64>,
    pub sum_us: u64,
    /// The bucket bounds, when a config may set them (`None`: the kind's fixed ones).
    #[serde(skip)]
    pub bounds: Option<Arc<Bounds>>,
}

impl HistogramReport {
    /// Adds another core's counts of the same histogram. Counts under other bounds (a
    /// core that had not applied a config yet) are left out.
    pub fn merge(&mut self, other: &HistogramReport) {
        let same = match (&self.bounds, &other.bounds) {
            (Some(a), Some(b)) => a == b,
            (None, None) => true,
            _ => false,
        };
        if self.buckets.is_empty() && self.sum_us == 0 && !same {
            *self = other.clone();
            return;
        }
        if !same {
            return;
        }
        add_vec(&mut self.buckets, &other.buckets);
        self.sum_us += other.sum_us;
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ListenerReport {
    pub name: String,
    pub cx_total: u64,
    pub cx_active: u64,
    pub rq_total: u64,
    pub rq_class: Vec<u64>,
    pub rq_flags: Vec<(String, u64)>,
    pub rq_time: HistogramReport,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub access_log_dropped: u64,
    pub cx_panic: u64,
    pub cx_overflow: u64,
    pub no_filter_chain_match: u64,
    pub pre_cx_timeout: u64,
    pub ssl: super::tls_stats::TlsReport,
    /// Per-phase histograms in `phases::PHASE_NAMES` order (empty: no request yet);
    /// `/stats` shows them by phase name.
    #[serde(serialize_with = "serialize_named")]
    pub phases: Vec<HistogramReport>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointReport {
    pub address: String,
    pub weight: u32,
    pub rq_total: u64,
    pub rq_active: u64,
    pub cx_total: u64,
    pub cx_connect_fail: u64,
    pub cx_idle: u64,
    /// Envoy's `health_flags`: `healthy`, or flags such as `/failed_active_hc`.
    pub health_flags: String,
    /// Cumulative requests for outlier detection's interval detectors: external total
    /// and successes, local-origin total and successes (not published).
    #[serde(skip)]
    pub outlier_rates: [u64; 4],
}

/// Envoy's `cluster.<name>.update_*` for a STRICT_DNS or LOGICAL_DNS cluster: one
/// attempt per name resolved, counted once per process by the control executor.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DnsUpdateReport {
    pub update_attempt: u64,
    pub update_success: u64,
    pub update_failure: u64,
    /// A lookup that gave the addresses the name already had.
    pub update_no_rebuild: u64,
}

/// Envoy's `cluster.<name>.health_check.*`: counted once per process by the control
/// executor's checker (not per core).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealthCheckReport {
    pub attempt: u64,
    pub success: u64,
    pub failure: u64,
    pub network_failure: u64,
    pub verify_cluster: u64,
    /// A gauge: endpoints passing their checks.
    pub healthy: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterReport {
    pub name: String,
    pub rq_total: u64,
    pub rq_class: Vec<u64>,
    pub rq_timeout: u64,
    pub cx_total: u64,
    pub cx_connect_fail: u64,
    pub cx_reused: u64,
    pub rq_no_healthy: u64,
    pub rq_reset: u64,
    pub rq_protocol_error: u64,
    pub rq_retry: u64,
    pub rq_retry_success: u64,
    pub rq_retry_overflow: u64,
    pub rq_pending_overflow: u64,
    pub rq_active_overflow: u64,
    pub cx_overflow: u64,
    pub cx_pool_overflow: u64,
    pub cx_max_requests: u64,
    pub cx_idle_timeout: u64,
    /// Envoy's `circuit_breakers.default.*` and `circuit_breakers.high.*` gauges,
    /// process-wide (filled in by the control side from the snapshot, not summed over
    /// workers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<crate::config::circuit::BreakerReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breakers_high: Option<crate::config::circuit::BreakerReport>,
    pub rq_retry_limit_exceeded: u64,
    pub rq_retry_backoff_exponential: u64,
    pub rq_per_try_timeout: u64,
    pub rq_per_try_idle_timeout: u64,
    pub rq_max_duration_reached: u64,
    pub rq_shadow: u64,
    pub rq_shadow_failed: u64,
    pub rq_shadow_dropped: u64,
    pub rq_shadow_abandoned: u64,
    pub retry_or_shadow_abandoned: u64,
    pub lb_healthy_panic: u64,
    /// `ext_authz.[<prefix>.]*`, by the ext_authz filter's prefix (empty: no filter
    /// counted on this cluster).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ext_authz: Vec<super::authz_stats::ExtAuthzReport>,
    /// `upstream_rq_time`: bounds in `UPSTREAM_RQ_TIME_BUCKETS_US`, the last bucket above.
    pub rq_time: HistogramReport,
    /// Only for a cluster with health checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckReport>,
    /// Only for a DNS cluster (filled in by the control side).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsUpdateReport>,
    /// Only for a cluster with outlier detection (filled in by the control side).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<super::outlier_stats::OutlierReport>,
    /// The circuit breaker limits (connections, pending, requests, retries) of the
    /// DEFAULT and HIGH priorities, and whether the cluster came over xDS, for
    /// `/clusters` (filled in by the control side).
    #[serde(skip)]
    pub thresholds: Option<[[u64; 4]; 2]>,
    #[serde(skip)]
    pub added_via_api: bool,
    pub endpoints: Vec<EndpointReport>,
}

/// Everything one worker counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatsReport {
    pub listeners: Vec<ListenerReport>,
    pub clusters: Vec<ClusterReport>,
    /// The filters' counters by Envoy's stat name (`http.ingress.rbac.allowed`,
    /// `<stat_prefix>.http_local_rate_limit.ok`), summed over cores.
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Istio's metrics, one entry per label combination (merged by label text).
    #[serde(skip)]
    pub istio: Vec<super::istio::cells::IstioSeriesReport>,
    /// Histograms kept by name (the routes' `upstream_rq_time`: `route_stats`), with
    /// Envoy's default buckets unless configured.
    #[serde(skip)]
    pub histograms: Vec<(String, HistogramReport)>,
}

fn add_vec(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

impl StatsReport {
    /// Adds another worker's report into this one, matching by name.
    pub fn merge(&mut self, other: StatsReport) {
        super::istio::cells::merge_into(&mut self.istio, other.istio);
        for (name, h) in other.histograms {
            match self.histograms.iter_mut().find(|(n, _)| *n == name) {
                Some((_, x)) => x.merge(&h),
                None => self.histograms.push((name, h)),
            }
        }
        for (name, n) in other.counters {
            *self.counters.entry(name).or_default() += n;
        }
        for l in other.listeners {
            match self.listeners.iter_mut().find(|x| x.name == l.name) {
                None => self.listeners.push(l),
                Some(x) => {
                    x.cx_total += l.cx_total;
                    x.cx_active += l.cx_active;
                    x.rq_total += l.rq_total;
                    add_vec(&mut x.rq_class, &l.rq_class);
                    for (f, n) in l.rq_flags {
                        match x.rq_flags.iter_mut().find(|(g, _)| *g == f) {
                            Some((_, m)) => *m += n,
                            None => x.rq_flags.push((f, n)),
                        }
                    }
                    x.rq_time.merge(&l.rq_time);
                    x.bytes_received += l.bytes_received;
                    x.bytes_sent += l.bytes_sent;
                    x.access_log_dropped += l.access_log_dropped;
                    x.cx_panic += l.cx_panic;
                    x.cx_overflow += l.cx_overflow;
                    x.no_filter_chain_match += l.no_filter_chain_match;
                    x.pre_cx_timeout += l.pre_cx_timeout;
                    x.ssl.merge(l.ssl);
                    merge_phases(&mut x.phases, l.phases);
                }
            }
        }
        for c in other.clusters {
            match self.clusters.iter_mut().find(|x| x.name == c.name) {
                None => self.clusters.push(c),
                Some(x) => {
                    x.rq_total += c.rq_total;
                    add_vec(&mut x.rq_class, &c.rq_class);
                    x.rq_timeout += c.rq_timeout;
                    x.cx_total += c.cx_total;
                    x.cx_connect_fail += c.cx_connect_fail;
                    x.cx_reused += c.cx_reused;
                    x.rq_no_healthy += c.rq_no_healthy;
                    x.rq_reset += c.rq_reset;
                    x.rq_protocol_error += c.rq_protocol_error;
                    x.rq_retry += c.rq_retry;
                    x.rq_retry_success += c.rq_retry_success;
                    x.rq_retry_overflow += c.rq_retry_overflow;
                    x.rq_pending_overflow += c.rq_pending_overflow;
                    x.rq_active_overflow += c.rq_active_overflow;
                    x.cx_overflow += c.cx_overflow;
                    x.cx_pool_overflow += c.cx_pool_overflow;
                    x.cx_max_requests += c.cx_max_requests;
                    x.cx_idle_timeout += c.cx_idle_timeout;
                    x.rq_retry_limit_exceeded += c.rq_retry_limit_exceeded;
                    x.rq_retry_backoff_exponential += c.rq_retry_backoff_exponential;
                    x.rq_per_try_timeout += c.rq_per_try_timeout;
                    x.rq_per_try_idle_timeout += c.rq_per_try_idle_timeout;
                    x.rq_max_duration_reached += c.rq_max_duration_reached;
                    x.rq_shadow += c.rq_shadow;
                    x.rq_shadow_failed += c.rq_shadow_failed;
                    x.rq_shadow_dropped += c.rq_shadow_dropped;
                    x.rq_shadow_abandoned += c.rq_shadow_abandoned;
                    x.retry_or_shadow_abandoned += c.retry_or_shadow_abandoned;
                    x.lb_healthy_panic += c.lb_healthy_panic;
                    super::authz_stats::merge(&mut x.ext_authz, c.ext_authz);
                    x.rq_time.merge(&c.rq_time);
                    for e in c.endpoints {
                        match x.endpoints.iter_mut().find(|y| y.address == e.address) {
                            None => x.endpoints.push(e),
                            Some(y) => {
                                y.rq_total += e.rq_total;
                                y.rq_active += e.rq_active;
                                y.cx_total += e.cx_total;
                                y.cx_connect_fail += e.cx_connect_fail;
                                y.cx_idle += e.cx_idle;
                                for (a, b) in y.outlier_rates.iter_mut().zip(e.outlier_rates) {
                                    *a += b;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
