//! A cluster's `outlier_detection`: Envoy's settings with Envoy's defaults, checked as
//! Envoy checks them (percentages at most 100, `max_ejection_time` not below
//! `base_ejection_time`, positive `interval` and `base_ejection_time`).

use super::super::outlier::OutlierDetection;
use super::super::raw_outlier::RawOutlierDetection;
use super::Builder;

impl Builder {
    pub(super) fn outlier_detection(
        &mut self,
        p: &str,
        o: &RawOutlierDetection,
    ) -> OutlierDetection {
        let p = format!("{p}.outlier_detection");
        let d = OutlierDetection::default();
        let interval = self.positive_duration(format!("{p}.interval"), &o.interval, d.interval);
        let base_ejection_time = self.positive_duration(
            format!("{p}.base_ejection_time"),
            &o.base_ejection_time,
            d.base_ejection_time,
        );
        // Unset: Envoy's default (300s) or base_ejection_time, whichever is larger.
        let max_ejection_time = self.duration(
            format!("{p}.max_ejection_time"),
            &o.max_ejection_time,
            d.max_ejection_time.max(base_ejection_time),
        );
        if max_ejection_time < base_ejection_time {
            self.err(
                format!("{p}.max_ejection_time"),
                "cannot be smaller than base_ejection_time",
            );
        }
        let max_ejection_time_jitter = self.duration(
            format!("{p}.max_ejection_time_jitter"),
            &o.max_ejection_time_jitter,
            d.max_ejection_time_jitter,
        );
        let mut pct = |name: &str, v: Option<u32>, default: u32| -> u32 {
            match v {
                Some(v) if v > 100 => {
                    self.err(
                        format!("{p}.{name}"),
                        "must be a percentage between 0 and 100",
                    );
                    default
                }
                Some(v) => v,
                None => default,
            }
        };
        let max_ejection_percent = pct(
            "max_ejection_percent",
            o.max_ejection_percent,
            d.max_ejection_percent,
        );
        let enforcing_consecutive_5xx = pct(
            "enforcing_consecutive_5xx",
            o.enforcing_consecutive_5xx,
            d.enforcing_consecutive_5xx,
        );
        let enforcing_consecutive_gateway_failure = pct(
            "enforcing_consecutive_gateway_failure",
            o.enforcing_consecutive_gateway_failure,
            d.enforcing_consecutive_gateway_failure,
        );
        let enforcing_consecutive_local_origin_failure = pct(
            "enforcing_consecutive_local_origin_failure",
            o.enforcing_consecutive_local_origin_failure,
            d.enforcing_consecutive_local_origin_failure,
        );
        let enforcing_success_rate = pct(
            "enforcing_success_rate",
            o.enforcing_success_rate,
            d.enforcing_success_rate,
        );
        let enforcing_local_origin_success_rate = pct(
            "enforcing_local_origin_success_rate",
            o.enforcing_local_origin_success_rate,
            d.enforcing_local_origin_success_rate,
        );
        let enforcing_failure_percentage = pct(
            "enforcing_failure_percentage",
            o.enforcing_failure_percentage,
            d.enforcing_failure_percentage,
        );
        let enforcing_failure_percentage_local_origin = pct(
            "enforcing_failure_percentage_local_origin",
            o.enforcing_failure_percentage_local_origin,
            d.enforcing_failure_percentage_local_origin,
        );
        let failure_percentage_threshold = pct(
            "failure_percentage_threshold",
            o.failure_percentage_threshold,
            d.failure_percentage_threshold,
        );
        OutlierDetection {
            consecutive_5xx: o.consecutive_5xx.unwrap_or(d.consecutive_5xx),
            consecutive_gateway_failure: o
                .consecutive_gateway_failure
                .unwrap_or(d.consecutive_gateway_failure),
            consecutive_local_origin_failure: o
                .consecutive_local_origin_failure
                .unwrap_or(d.consecutive_local_origin_failure),
            split_external_local_origin_errors: o.split_external_local_origin_errors,
            interval,
            base_ejection_time,
            max_ejection_time,
            max_ejection_time_jitter,
            max_ejection_percent,
            always_eject_one_host: o.always_eject_one_host.unwrap_or(d.always_eject_one_host),
            enforcing_consecutive_5xx,
            enforcing_consecutive_gateway_failure,
            enforcing_consecutive_local_origin_failure,
            enforcing_success_rate,
            enforcing_local_origin_success_rate,
            enforcing_failure_percentage,
            enforcing_failure_percentage_local_origin,
            success_rate_minimum_hosts: o
                .success_rate_minimum_hosts
                .unwrap_or(d.success_rate_minimum_hosts),
            success_rate_request_volume: o
                .success_rate_request_volume
                .unwrap_or(d.success_rate_request_volume),
            success_rate_stdev_factor: o
                .success_rate_stdev_factor
                .unwrap_or(d.success_rate_stdev_factor),
            failure_percentage_threshold,
            failure_percentage_minimum_hosts: o
                .failure_percentage_minimum_hosts
                .unwrap_or(d.failure_percentage_minimum_hosts),
            failure_percentage_request_volume: o
                .failure_percentage_request_volume
                .unwrap_or(d.failure_percentage_request_volume),
            successful_active_health_check_uneject_host: o
                .successful_active_health_check_uneject_host
                .unwrap_or(d.successful_active_health_check_uneject_host),
        }
    }
}
