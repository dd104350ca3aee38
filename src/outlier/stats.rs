//! Envoy's `cluster.<name>.outlier_detection.*` stats, counted once per process by the
//! detector (`DetectionStats`), and the ejection types they are counted by.

pub use crate::observe::outlier_stats::OutlierReport;

use crate::config::outlier::{Consecutive, OutlierDetection};

/// Envoy's `OutlierEjectionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
    ConsecutiveLocalOriginFailure,
    SuccessRate,
    SuccessRateLocalOrigin,
    FailurePercentage,
    FailurePercentageLocalOrigin,
}

impl From<Consecutive> for Kind {
    fn from(c: Consecutive) -> Self {
        match c {
            Consecutive::FiveXx => Kind::Consecutive5xx,
            Consecutive::GatewayFailure => Kind::ConsecutiveGatewayFailure,
            Consecutive::LocalOriginFailure => Kind::ConsecutiveLocalOriginFailure,
        }
    }
}

impl Kind {
    /// The `enforcing_*` percentage that applies.
    pub fn enforcing(self, c: &OutlierDetection) -> u32 {
        match self {
            Kind::Consecutive5xx => c.enforcing_consecutive_5xx,
            Kind::ConsecutiveGatewayFailure => c.enforcing_consecutive_gateway_failure,
            Kind::ConsecutiveLocalOriginFailure => c.enforcing_consecutive_local_origin_failure,
            Kind::SuccessRate => c.enforcing_success_rate,
            Kind::SuccessRateLocalOrigin => c.enforcing_local_origin_success_rate,
            Kind::FailurePercentage => c.enforcing_failure_percentage,
            Kind::FailurePercentageLocalOrigin => c.enforcing_failure_percentage_local_origin,
        }
    }

    /// Envoy's stat suffix (`ejections_detected_<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Consecutive5xx => "consecutive_5xx",
            Kind::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            Kind::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
            Kind::SuccessRate => "success_rate",
            Kind::SuccessRateLocalOrigin => "local_origin_success_rate",
            Kind::FailurePercentage => "failure_percentage",
            Kind::FailurePercentageLocalOrigin => "local_origin_failure_percentage",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const KINDS: usize = 7;

/// The counters of one cluster.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub ejections_enforced_total: u64,
    pub ejections_overflow: u64,
    enforced: [u64; KINDS],
    detected: [u64; KINDS],
    /// Envoy's deprecated counters, still published by Envoy.
    pub ejections_total: u64,
    pub ejections_consecutive_5xx: u64,
    pub ejections_success_rate: u64,
}

impl Counters {
    pub fn detected(&mut self, k: Kind) {
        if let Some(c) = self.detected.get_mut(k.index()) {
            *c += 1;
        }
    }

    pub fn enforced(&mut self, k: Kind) {
        self.ejections_enforced_total += 1;
        if let Some(c) = self.enforced.get_mut(k.index()) {
            *c += 1;
        }
    }

    pub fn report(&self, active: u64) -> OutlierReport {
        let e = |k: Kind| self.enforced.get(k.index()).copied().unwrap_or(0);
        let d = |k: Kind| self.detected.get(k.index()).copied().unwrap_or(0);
        OutlierReport {
            ejections_active: active,
            ejections_overflow: self.ejections_overflow,
            ejections_enforced_total: self.ejections_enforced_total,
            ejections_enforced_consecutive_5xx: e(Kind::Consecutive5xx),
            ejections_detected_consecutive_5xx: d(Kind::Consecutive5xx),
            ejections_enforced_consecutive_gateway_failure: e(Kind::ConsecutiveGatewayFailure),
            ejections_detected_consecutive_gateway_failure: d(Kind::ConsecutiveGatewayFailure),
            ejections_enforced_consecutive_local_origin_failure: e(
                Kind::ConsecutiveLocalOriginFailure,
            ),
            ejections_detected_consecutive_local_origin_failure: d(
                Kind::ConsecutiveLocalOriginFailure,
            ),
            ejections_enforced_success_rate: e(Kind::SuccessRate),
            ejections_detected_success_rate: d(Kind::SuccessRate),
            ejections_enforced_local_origin_success_rate: e(Kind::SuccessRateLocalOrigin),
            ejections_detected_local_origin_success_rate: d(Kind::SuccessRateLocalOrigin),
            ejections_enforced_failure_percentage: e(Kind::FailurePercentage),
            ejections_detected_failure_percentage: d(Kind::FailurePercentage),
            ejections_enforced_local_origin_failure_percentage: e(
                Kind::FailurePercentageLocalOrigin,
            ),
            ejections_detected_local_origin_failure_percentage: d(
                Kind::FailurePercentageLocalOrigin,
            ),
            ejections_total: self.ejections_total,
            ejections_consecutive_5xx: self.ejections_consecutive_5xx,
            ejections_success_rate: self.ejections_success_rate,
        }
    }
}
