//! Envoy's `cluster.<name>.outlier_detection.*` stats as reported: counted once per
//! process by the control executor's detector (`src/outlier/`), not per core.

use serde::Serialize;

/// Envoy's `outlier_detection.*` of one cluster, as `/stats` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutlierReport {
    /// A gauge: endpoints ejected now.
    pub ejections_active: u64,
    pub ejections_overflow: u64,
    pub ejections_enforced_total: u64,
    pub ejections_enforced_consecutive_5xx: u64,
    pub ejections_detected_consecutive_5xx: u64,
    pub ejections_enforced_consecutive_gateway_failure: u64,
    pub ejections_detected_consecutive_gateway_failure: u64,
    pub ejections_enforced_consecutive_local_origin_failure: u64,
    pub ejections_detected_consecutive_local_origin_failure: u64,
    pub ejections_enforced_success_rate: u64,
    pub ejections_detected_success_rate: u64,
    pub ejections_enforced_local_origin_success_rate: u64,
    pub ejections_detected_local_origin_success_rate: u64,
    pub ejections_enforced_failure_percentage: u64,
    pub ejections_detected_failure_percentage: u64,
    pub ejections_enforced_local_origin_failure_percentage: u64,
    pub ejections_detected_local_origin_failure_percentage: u64,
    /// Deprecated in Envoy (still published there).
    pub ejections_total: u64,
    pub ejections_consecutive_5xx: u64,
    pub ejections_success_rate: u64,
}

impl OutlierReport {
    /// Every stat by Envoy's name, gauge first (for Prometheus).
    pub fn fields(&self) -> [(&'static str, u64); 20] {
        [
            ("ejections_active", self.ejections_active),
            ("ejections_overflow", self.ejections_overflow),
            ("ejections_enforced_total", self.ejections_enforced_total),
            (
                "ejections_enforced_consecutive_5xx",
                self.ejections_enforced_consecutive_5xx,
            ),
            (
                "ejections_detected_consecutive_5xx",
                self.ejections_detected_consecutive_5xx,
            ),
            (
                "ejections_enforced_consecutive_gateway_failure",
                self.ejections_enforced_consecutive_gateway_failure,
            ),
            (
                "ejections_detected_consecutive_gateway_failure",
                self.ejections_detected_consecutive_gateway_failure,
            ),
            (
                "ejections_enforced_consecutive_local_origin_failure",
                self.ejections_enforced_consecutive_local_origin_failure,
            ),
            (
                "ejections_detected_consecutive_local_origin_failure",
                self.ejections_detected_consecutive_local_origin_failure,
            ),
            (
                "ejections_enforced_success_rate",
                self.ejections_enforced_success_rate,
            ),
            (
                "ejections_detected_success_rate",
                self.ejections_detected_success_rate,
            ),
            (
                "ejections_enforced_local_origin_success_rate",
                self.ejections_enforced_local_origin_success_rate,
            ),
            (
                "ejections_detected_local_origin_success_rate",
                self.ejections_detected_local_origin_success_rate,
            ),
            (
                "ejections_enforced_failure_percentage",
                self.ejections_enforced_failure_percentage,
            ),
            (
                "ejections_detected_failure_percentage",
                self.ejections_detected_failure_percentage,
            ),
            (
                "ejections_enforced_local_origin_failure_percentage",
                self.ejections_enforced_local_origin_failure_percentage,
            ),
            (
                "ejections_detected_local_origin_failure_percentage",
                self.ejections_detected_local_origin_failure_percentage,
            ),
            ("ejections_total", self.ejections_total),
            ("ejections_consecutive_5xx", self.ejections_consecutive_5xx),
            ("ejections_success_rate", self.ejections_success_rate),
        ]
    }
}
