//! Settings of the latency-aware load balancer (`lb_policy: peak_ewma`), beyond the
//! `LbPolicy` enum (which stays `Eq`: these hold an `f64`).

use std::time::Duration;

/// Peak EWMA's settings, with the field names and defaults of Envoy's contrib
/// `envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma`: an endpoint's
/// cost is its latency estimate times (its requests in flight + 1); the estimate rises
/// at once to a slower response and otherwise decays with the time constant `decay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakEwma {
    /// The decay time constant (Envoy's `decay_time`, default 10s, Finagle's and
    /// linkerd's default).
    pub decay: Duration,
    /// The estimate of an endpoint with no response yet (Envoy's `default_rtt`,
    /// default 10ms).
    pub default_rtt: Duration,
    /// The cost of an endpoint with no response yet and requests in flight (Envoy's
    /// `penalty_value`, default 1e6, plus the requests in flight): it is likely failing.
    pub penalty: f64,
}

impl Default for PeakEwma {
    fn default() -> Self {
        PeakEwma {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(10),
            penalty: 1_000_000.0,
        }
    }
}
