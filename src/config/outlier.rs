//! Outlier detection of a cluster (Envoy's `outlier_detection`, `Outlier::DetectorImpl`):
//! the settings, and each endpoint's process-wide consecutive-failure counters.
//!
//! The counters are shared by every worker through the snapshot's `Arc<Cluster>`, as
//! Envoy's host monitors are: a worker that gets a response (or a connect failure, or a
//! timeout) from an endpoint records it here (`upstream::outlier`), and the worker whose
//! record reaches a threshold tells the control executor, once per event; the control
//! executor (`src/outlier/`) decides the ejection and resets the counter. On the request
//! path a success only reads the counters (a store happens only when one is non-zero),
//! a failure adds one.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Envoy's `OutlierDetection` with its defaults (`DetectorConfig`). Percentages are
/// whole percents, `success_rate_stdev_factor` is in thousandths, as Envoy's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    pub consecutive_local_origin_failure: u32,
    pub split_external_local_origin_errors: bool,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_time_jitter: Duration,
    pub max_ejection_percent: u32,
    pub always_eject_one_host: bool,
    pub enforcing_consecutive_5xx: u32,
    pub enforcing_consecutive_gateway_failure: u32,
    pub enforcing_consecutive_local_origin_failure: u32,
    pub enforcing_success_rate: u32,
    pub enforcing_local_origin_success_rate: u32,
    pub enforcing_failure_percentage: u32,
    pub enforcing_failure_percentage_local_origin: u32,
    pub success_rate_minimum_hosts: u32,
    pub success_rate_request_volume: u32,
    pub success_rate_stdev_factor: u32,
    pub failure_percentage_threshold: u32,
    pub failure_percentage_minimum_hosts: u32,
    pub failure_percentage_request_volume: u32,
    pub successful_active_health_check_uneject_host: bool,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            consecutive_local_origin_failure: 5,
            split_external_local_origin_errors: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            // Envoy: 10 x the default base ejection time, or base_ejection_time if larger.
            max_ejection_time: Duration::from_secs(300),
            max_ejection_time_jitter: Duration::ZERO,
            max_ejection_percent: 10,
            always_eject_one_host: false,
            enforcing_consecutive_5xx: 100,
            enforcing_consecutive_gateway_failure: 0,
            enforcing_consecutive_local_origin_failure: 100,
            enforcing_success_rate: 100,
            enforcing_local_origin_success_rate: 100,
            enforcing_failure_percentage: 0,
            enforcing_failure_percentage_local_origin: 0,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1900,
            failure_percentage_threshold: 85,
            failure_percentage_minimum_hosts: 5,
            failure_percentage_request_volume: 50,
            successful_active_health_check_uneject_host: true,
        }
    }
}

/// What crossed a threshold (Envoy's `OutlierEjectionType`, the consecutive ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Consecutive {
    FiveXx,
    GatewayFailure,
    LocalOriginFailure,
}

/// One endpoint's consecutive-failure counts, for the whole process. On a cache line
/// of its own: a failing endpoint's increments must not invalidate the line every
/// core's success path reads for its neighbours.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct HostCounters {
    five_xx: AtomicU32,
    gateway: AtomicU32,
    local_origin: AtomicU32,
}

/// Sets a counter to zero, writing only when it is not zero already (the common case
/// is a read of a shared cache line, not a write).
fn clear(c: &AtomicU32) {
    if c.load(Ordering::Relaxed) != 0 {
        c.store(0, Ordering::Relaxed);
    }
}

/// Adds one; `true` when this add reached `threshold` (exactly: Envoy's `==`, so one
/// event per run of failures, and a threshold of 0 never fires).
fn bump(c: &AtomicU32, threshold: u32) -> bool {
    c.fetch_add(1, Ordering::Relaxed).wrapping_add(1) == threshold
}

impl HostCounters {
    /// Envoy's `putHttpResponseCode`: a 5xx counts for `consecutive_5xx` (and, for 502,
    /// 503 and 504, for `consecutive_gateway_failure`; another 5xx breaks that run);
    /// anything else ends both runs. Returns the thresholds this result reached.
    pub fn http_status(
        &self,
        cfg: &OutlierDetection,
        status: u16,
        mut fired: impl FnMut(Consecutive),
    ) {
        if (500..600).contains(&status) {
            if matches!(status, 502..=504) {
                if bump(&self.gateway, cfg.consecutive_gateway_failure) {
                    fired(Consecutive::GatewayFailure);
                }
            } else {
                clear(&self.gateway);
            }
            if bump(&self.five_xx, cfg.consecutive_5xx) {
                fired(Consecutive::FiveXx);
            }
        } else {
            clear(&self.five_xx);
            clear(&self.gateway);
        }
    }

    /// A locally originated failure (connect failure, reset, timeout) with
    /// `split_external_local_origin_errors`: `true` when it reached the threshold.
    pub fn local_failure(&self, cfg: &OutlierDetection) -> bool {
        bump(&self.local_origin, cfg.consecutive_local_origin_failure)
    }

    /// A connection was made (split mode): the local-origin run ends.
    pub fn local_success(&self) {
        clear(&self.local_origin);
    }

    /// Resets one run (the control executor, after the event was handled).
    pub fn reset(&self, kind: Consecutive) {
        clear(match kind {
            Consecutive::FiveXx => &self.five_xx,
            Consecutive::GatewayFailure => &self.gateway,
            Consecutive::LocalOriginFailure => &self.local_origin,
        });
    }

    /// Resets every run (an unejection, as Envoy's `unejectHost`).
    pub fn reset_all(&self) {
        clear(&self.five_xx);
        clear(&self.gateway);
        clear(&self.local_origin);
    }
}

/// A cluster's outlier detection: its settings and one counter set per endpoint (by
/// endpoint index). Compared by settings only: the counts are state, not config.
#[derive(Debug, Default)]
pub struct Outlier {
    pub cfg: OutlierDetection,
    pub hosts: Box<[HostCounters]>,
}

impl Outlier {
    pub fn new(cfg: OutlierDetection, endpoints: usize) -> Self {
        Outlier {
            cfg,
            hosts: (0..endpoints).map(|_| HostCounters::default()).collect(),
        }
    }
}

impl PartialEq for Outlier {
    fn eq(&self, other: &Self) -> bool {
        self.cfg == other.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_fire_once_at_the_threshold_and_follow_envoys_classes() {
        let cfg = OutlierDetection {
            consecutive_5xx: 3,
            consecutive_gateway_failure: 2,
            ..Default::default()
        };
        let h = HostCounters::default();
        let mut fired = Vec::new();
        for s in [503, 503, 500, 500, 500, 200, 502] {
            h.http_status(&cfg, s, |k| fired.push((s, k)));
        }
        // 503, 503: gateway run of 2; 500 breaks the gateway run but is the third 5xx.
        assert_eq!(
            fired,
            vec![
                (503, Consecutive::GatewayFailure),
                (500, Consecutive::FiveXx)
            ]
        );
        // The fourth and fifth 5xx did not fire again; the 200 ended the runs, so 502,
        // 500, 500 is a new run of three.
        let mut again = Vec::new();
        for s in [500, 500] {
            h.http_status(&cfg, s, |k| again.push(k));
        }
        assert_eq!(again, vec![Consecutive::FiveXx]);
        again.clear();
        h.reset_all();
        let zero = OutlierDetection {
            consecutive_5xx: 0,
            ..cfg
        };
        h.http_status(&zero, 500, |k| again.push(k));
        assert!(again.is_empty(), "a threshold of 0 never fires");
    }
}
