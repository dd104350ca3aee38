//! Per-route stats (Envoy's route `stat_prefix`), one set per core for each route that
//! has one: the counters Envoy keeps under `vhost.<virtual host>.route.<stat_prefix>.`.
//!
//! As in Envoy's router, a request counts here once the router picked a cluster for it:
//! `upstream_rq_total` per try that went upstream, `upstream_rq_completed`,
//! `upstream_rq_<class>` and `upstream_rq_<code>` for the status the request ended with
//! (the upstream's, or the router's own 503/504 for a failed try), `upstream_rq_time`
//! when an upstream response came, `upstream_rq_timeout` for a route timeout (not for
//! per-try timeouts that used up the retries, as in Envoy's router), and the
//! retry counters as the retry policy decides (`upstream::request::retry`). The counters
//! Envoy makes when first charged (completed, classes, codes, the histogram) are shown
//! once they are not 0; the others always. Plain `Cell`s, as every per-core stat: a
//! route without `stat_prefix` has none, and pays one branch per request.

use std::collections::BTreeMap;

use super::phases::Times;
use super::stats::{class_index, Counter, HistogramReport, UpstreamTime};
use crate::http::flags::ResponseFlag;

/// The status codes counted one by one (Envoy's `upstream_rq_<code>`).
const CODES: std::ops::RangeInclusive<u16> = 100..=599;

/// One route's stats on one core.
pub struct RouteStats {
    pub rq_total: Counter,
    pub rq_timeout: Counter,
    pub rq_retry: Counter,
    pub rq_retry_limit_exceeded: Counter,
    pub rq_retry_overflow: Counter,
    pub rq_retry_success: Counter,
    rq_completed: Counter,
    rq_class: [Counter; 5],
    /// One per status in `CODES` (allocated once, with the stats).
    rq_code: Box<[Counter]>,
    pub rq_time: UpstreamTime,
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            rq_total: Counter::default(),
            rq_timeout: Counter::default(),
            rq_retry: Counter::default(),
            rq_retry_limit_exceeded: Counter::default(),
            rq_retry_overflow: Counter::default(),
            rq_retry_success: Counter::default(),
            rq_completed: Counter::default(),
            rq_class: Default::default(),
            rq_code: CODES.map(|_| Counter::default()).collect(),
            rq_time: UpstreamTime::default(),
        }
    }
}

/// What a finished request the router sent towards a cluster tells its route's stats.
pub struct Ended<'a> {
    /// The status sent (0: none, the client went away first).
    pub status: u16,
    pub flag: Option<ResponseFlag>,
    /// The route timeout ran out (a `UT` from per-try timeouts that used up the retries
    /// is not one: Envoy counts those in the cluster's `upstream_rq_per_try_timeout`).
    pub route_timeout: bool,
    pub duration: std::time::Duration,
    pub phases: &'a Times,
}

impl RouteStats {
    /// Counts a finished request (its retries were counted as they were made).
    pub fn charge(&self, e: &Ended<'_>) {
        // A try that got no connection never went upstream (Envoy counts the route's
        // `upstream_rq_total` when the connection pool is ready).
        let no_try = matches!(
            e.flag,
            Some(
                ResponseFlag::NoHealthyUpstream
                    | ResponseFlag::UpstreamOverflow
                    | ResponseFlag::UpstreamConnectFailure
                    | ResponseFlag::NoClusterFound
            )
        );
        if !no_try {
            self.rq_total.inc();
        }
        if e.route_timeout && e.flag == Some(ResponseFlag::UpstreamTimeout) {
            self.rq_timeout.inc();
        }
        if e.status != 0 {
            self.rq_completed.inc();
            if let Some(c) = self.rq_class.get(class_index(e.status)) {
                c.inc();
            }
            let i = usize::from(e.status.saturating_sub(*CODES.start()));
            if let Some(c) = self.rq_code.get(i).filter(|_| CODES.contains(&e.status)) {
                c.inc();
            }
        }
        self.rq_time.record(e.duration, e.phases);
    }

    /// Adds this core's counts to a report: the counters by Envoy's names (those
    /// Envoy makes when first charged only once they are not 0), and the
    /// `upstream_rq_time` histogram under its name.
    pub fn report_into(
        &self,
        prefix: &str,
        counters: &mut BTreeMap<String, u64>,
        histograms: &mut Vec<(String, HistogramReport)>,
    ) {
        let mut put = |name: &str, n: u64, always: bool| {
            if always || n > 0 {
                *counters.entry(format!("{prefix}.{name}")).or_default() += n;
            }
        };
        put("upstream_rq_retry", self.rq_retry.get(), true);
        put(
            "upstream_rq_retry_limit_exceeded",
            self.rq_retry_limit_exceeded.get(),
            true,
        );
        put(
            "upstream_rq_retry_overflow",
            self.rq_retry_overflow.get(),
            true,
        );
        put(
            "upstream_rq_retry_success",
            self.rq_retry_success.get(),
            true,
        );
        put("upstream_rq_timeout", self.rq_timeout.get(), true);
        put("upstream_rq_total", self.rq_total.get(), true);
        put("upstream_rq_completed", self.rq_completed.get(), false);
        for (class, n) in ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .zip(&self.rq_class)
        {
            put(&format!("upstream_rq_{class}"), n.get(), false);
        }
        for (code, n) in CODES.zip(self.rq_code.iter()) {
            if n.get() > 0 {
                put(&format!("upstream_rq_{code}"), n.get(), false);
            }
        }
        histograms.push((format!("{prefix}.upstream_rq_time"), self.rq_time.report()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_charged_request_counts_its_status_and_try() {
        let s = RouteStats::default();
        let t = Times::default();
        let ended = |status, flag| Ended {
            status,
            flag,
            route_timeout: flag == Some(ResponseFlag::UpstreamTimeout),
            duration: Duration::from_millis(3),
            phases: &t,
        };
        s.charge(&ended(200, None));
        s.charge(&ended(503, Some(ResponseFlag::UpstreamConnectFailure)));
        s.charge(&ended(504, Some(ResponseFlag::UpstreamTimeout)));
        let (mut c, mut h) = (BTreeMap::new(), Vec::new());
        s.report_into("vhost.v.route.r", &mut c, &mut h);
        s.report_into("vhost.v.route.r", &mut c, &mut h);
        assert_eq!(c["vhost.v.route.r.upstream_rq_total"], 4);
        assert_eq!(c["vhost.v.route.r.upstream_rq_completed"], 6);
        assert_eq!(c["vhost.v.route.r.upstream_rq_5xx"], 4);
        assert_eq!(c["vhost.v.route.r.upstream_rq_200"], 2);
        assert_eq!(c["vhost.v.route.r.upstream_rq_504"], 2);
        assert_eq!(c["vhost.v.route.r.upstream_rq_timeout"], 2);
        assert!(!c.contains_key("vhost.v.route.r.upstream_rq_4xx"));
        assert_eq!(h[0].0, "vhost.v.route.r.upstream_rq_time");
        let mut fresh = BTreeMap::new();
        RouteStats::default().report_into("p", &mut fresh, &mut Vec::new());
        assert_eq!(fresh.len(), 6, "{fresh:?}");
    }
}
