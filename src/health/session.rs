//! One endpoint's health-check state machine, Envoy's `ActiveHealthCheckSession` without
//! the IO: what a check's outcome does to the endpoint's flags (thresholds, the first
//! check deciding at once, an unexpected HTTP status failing at once) and how long to
//! wait before the next check. Pure; the checker (`health/mod.rs`) drives it.

use std::time::Duration;

use super::flags::HealthFlags;
use crate::config::HealthCheck;

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The endpoint answered, wrongly (an unexpected HTTP status, a gRPC status other
    /// than SERVING). `retriable`: a `retriable_statuses` status, which counts toward
    /// `unhealthy_threshold` like a network failure.
    Active {
        retriable: bool,
    },
    /// Connect failure, reset, close (Envoy's `NETWORK`).
    Network,
    /// No answer within `timeout` (Envoy's `NETWORK_TIMEOUT`).
    Timeout,
}

/// What a check did to the endpoint's health (Envoy's `HealthTransition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    Changed,
    /// On the way to a change that a threshold has not reached yet.
    ChangePending,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub flags: HealthFlags,
    pub first_check: bool,
    num_healthy: u32,
    num_unhealthy: u32,
}

impl Session {
    pub fn new(flags: HealthFlags) -> Self {
        Session {
            flags,
            first_check: true,
            num_healthy: 0,
            num_unhealthy: 0,
        }
    }

    /// Applies one outcome (Envoy's `handleSuccess` / `setUnhealthy`).
    pub fn record(&mut self, outcome: Outcome, hc: &HealthCheck) -> Transition {
        let mut t = Transition::Unchanged;
        if outcome == Outcome::Success {
            self.num_unhealthy = 0;
            if self.flags.failed() {
                // The first result ever decides at once (Envoy: faster start-up).
                self.num_healthy += 1;
                if self.first_check || self.num_healthy >= hc.healthy_threshold {
                    self.flags.set(HealthFlags::FAILED_ACTIVE_HC, false);
                    self.flags.set(HealthFlags::ACTIVE_HC_TIMEOUT, false);
                    t = Transition::Changed;
                } else {
                    t = Transition::ChangePending;
                }
            }
        } else {
            self.num_healthy = 0;
            if !self.flags.failed() {
                let network = matches!(outcome, Outcome::Network | Outcome::Timeout);
                let retriable = matches!(outcome, Outcome::Active { retriable: true });
                self.num_unhealthy += 1;
                if (!network && !retriable) || self.num_unhealthy >= hc.unhealthy_threshold {
                    self.flags.set(HealthFlags::FAILED_ACTIVE_HC, true);
                    t = Transition::Changed;
                } else {
                    t = Transition::ChangePending;
                }
            }
            // A failed host shows whether its last failure was a timeout.
            let timeout = outcome == Outcome::Timeout && self.flags.failed();
            self.flags.set(HealthFlags::ACTIVE_HC_TIMEOUT, timeout);
        }
        if self.flags.has(HealthFlags::PENDING_ACTIVE_HC) {
            self.flags.set(HealthFlags::PENDING_ACTIVE_HC, false);
            t = Transition::Changed;
        }
        self.first_check = false;
        t
    }

    /// The wait before the next check (Envoy's `interval`): the no-traffic intervals
    /// until the cluster has had traffic, then by health and transition; plus jitter.
    /// `rand` is a random number.
    pub fn next_interval(
        &self,
        hc: &HealthCheck,
        t: Transition,
        cluster_used: bool,
        rand: u64,
    ) -> Duration {
        let healthy = !self.flags.failed();
        let base = if !cluster_used {
            if healthy && t != Transition::ChangePending {
                hc.no_traffic_healthy_interval
            } else {
                hc.no_traffic_interval
            }
        } else if !healthy {
            if t == Transition::ChangePending {
                hc.unhealthy_edge_interval
            } else {
                hc.unhealthy_interval
            }
        } else if t == Transition::ChangePending {
            hc.healthy_edge_interval
        } else {
            hc.interval
        };
        with_jitter(base, hc, rand)
    }
}

/// Envoy's `intervalWithJitter`, in milliseconds: up to `interval_jitter_percent` of the
/// base, plus up to `interval_jitter`; at least 1 ms.
fn with_jitter(base: Duration, hc: &HealthCheck, rand: u64) -> Duration {
    let mut ms = base.as_millis() as u64;
    let percent_mod = u64::from(hc.interval_jitter_percent) * ms / 100;
    if percent_mod > 0 {
        ms += rand % percent_mod;
    }
    let jitter = hc.interval_jitter.as_millis() as u64;
    if jitter > 0 {
        ms += rand.rotate_left(17) % jitter;
    }
    Duration::from_millis(ms.max(1))
}

/// The wait before the first check: a random part of `initial_jitter` (none without).
pub fn initial_delay(hc: &HealthCheck, rand: u64) -> Duration {
    let j = hc.initial_jitter.as_millis() as u64;
    if j == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis((rand % j).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CheckKind, TcpCheck};

    fn hc(unhealthy: u32, healthy: u32) -> HealthCheck {
        HealthCheck {
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(5),
            initial_jitter: Duration::ZERO,
            interval_jitter: Duration::ZERO,
            interval_jitter_percent: 0,
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
            reuse_connection: true,
            no_traffic_interval: Duration::from_secs(60),
            no_traffic_healthy_interval: Duration::from_secs(60),
            unhealthy_interval: Duration::from_secs(5),
            unhealthy_edge_interval: Duration::from_secs(5),
            healthy_edge_interval: Duration::from_secs(5),
            kind: CheckKind::Tcp(TcpCheck {
                send: vec![],
                receive: vec![],
            }),
        }
    }

    #[test]
    fn first_success_passes_at_once_then_thresholds_apply() {
        let hc = hc(2, 3);
        let mut s = Session::new(HealthFlags::INITIAL);
        assert_eq!(s.record(Outcome::Success, &hc), Transition::Changed);
        assert!(!s.flags.failed());
        // Network failures count toward unhealthy_threshold.
        assert_eq!(s.record(Outcome::Network, &hc), Transition::ChangePending);
        assert!(!s.flags.failed());
        assert_eq!(s.record(Outcome::Timeout, &hc), Transition::Changed);
        assert_eq!(s.flags.envoy_text(), "/failed_active_hc/active_hc_timeout");
        // Back takes healthy_threshold successes in a row.
        assert_eq!(s.record(Outcome::Success, &hc), Transition::ChangePending);
        assert_eq!(s.record(Outcome::Network, &hc), Transition::Unchanged);
        assert_eq!(s.flags.envoy_text(), "/failed_active_hc");
        for _ in 0..2 {
            assert_eq!(s.record(Outcome::Success, &hc), Transition::ChangePending);
        }
        assert_eq!(s.record(Outcome::Success, &hc), Transition::Changed);
        assert_eq!(s.flags, HealthFlags::HEALTHY);
    }

    #[test]
    fn an_unexpected_status_fails_at_once_a_retriable_one_counts() {
        let hc = hc(3, 1);
        let mut s = Session::new(HealthFlags::INITIAL);
        s.record(Outcome::Success, &hc);
        assert_eq!(
            s.record(Outcome::Active { retriable: true }, &hc),
            Transition::ChangePending
        );
        assert_eq!(
            s.record(Outcome::Active { retriable: false }, &hc),
            Transition::Changed
        );
        assert!(s.flags.failed());
    }

    #[test]
    fn a_first_failure_keeps_the_host_failed() {
        let hc = hc(3, 2);
        let mut s = Session::new(HealthFlags::INITIAL);
        assert_eq!(s.record(Outcome::Network, &hc), Transition::Unchanged);
        assert!(s.flags.failed());
        assert_eq!(s.record(Outcome::Success, &hc), Transition::ChangePending);
        assert_eq!(s.record(Outcome::Success, &hc), Transition::Changed);
    }

    #[test]
    fn intervals_follow_traffic_and_health() {
        let mut h = hc(1, 1);
        h.unhealthy_interval = Duration::from_secs(7);
        h.no_traffic_healthy_interval = Duration::from_secs(90);
        let mut s = Session::new(HealthFlags::INITIAL);
        assert_eq!(
            s.next_interval(&h, Transition::Unchanged, false, 0),
            Duration::from_secs(60)
        );
        assert_eq!(
            s.next_interval(&h, Transition::Unchanged, true, 0),
            Duration::from_secs(7)
        );
        s.record(Outcome::Success, &h);
        assert_eq!(
            s.next_interval(&h, Transition::Changed, false, 0),
            Duration::from_secs(90)
        );
        assert_eq!(
            s.next_interval(&h, Transition::Changed, true, 0),
            Duration::from_secs(5)
        );
        h.interval_jitter_percent = 10;
        let d = s.next_interval(&h, Transition::Unchanged, true, 499);
        assert_eq!(d, Duration::from_millis(5499));
    }
}
