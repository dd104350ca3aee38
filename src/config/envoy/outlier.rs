//! Envoy `cluster.outlier_detection` -> native raw `outlier_detection`: the same field
//! names, durations as native strings, wrapped values unwrapped. Checked afterwards by
//! the native builder (`config/build/outlier.rs`). Control plane only.

use envoy_types::pb::envoy::config::cluster::v3::OutlierDetection;

use super::super::raw_outlier::RawOutlierDetection;
use super::convert::{duration, native_duration, R};

pub(super) fn translate(o: &OutlierDetection, p: &str) -> R<RawOutlierDetection> {
    let d = |v, field: &str| -> R<Option<String>> {
        Ok(duration(v, &format!("{p}.{field}"))?.map(native_duration))
    };
    let w =
        |v: &Option<envoy_types::pb::google::protobuf::UInt32Value>| v.as_ref().map(|v| v.value);
    Ok(RawOutlierDetection {
        consecutive_5xx: w(&o.consecutive_5xx),
        consecutive_gateway_failure: w(&o.consecutive_gateway_failure),
        consecutive_local_origin_failure: w(&o.consecutive_local_origin_failure),
        split_external_local_origin_errors: o.split_external_local_origin_errors,
        interval: d(&o.interval, "interval")?,
        base_ejection_time: d(&o.base_ejection_time, "base_ejection_time")?,
        max_ejection_time: d(&o.max_ejection_time, "max_ejection_time")?,
        max_ejection_time_jitter: d(&o.max_ejection_time_jitter, "max_ejection_time_jitter")?,
        max_ejection_percent: w(&o.max_ejection_percent),
        always_eject_one_host: o.always_eject_one_host.as_ref().map(|v| v.value),
        enforcing_consecutive_5xx: w(&o.enforcing_consecutive_5xx),
        enforcing_consecutive_gateway_failure: w(&o.enforcing_consecutive_gateway_failure),
        enforcing_consecutive_local_origin_failure: w(&o.enforcing_consecutive_local_origin_failure),
        enforcing_success_rate: w(&o.enforcing_success_rate),
        enforcing_local_origin_success_rate: w(&o.enforcing_local_origin_success_rate),
        enforcing_failure_percentage: w(&o.enforcing_failure_percentage),
        enforcing_failure_percentage_local_origin: w(&o.enforcing_failure_percentage_local_origin),
        success_rate_minimum_hosts: w(&o.success_rate_minimum_hosts),
        success_rate_request_volume: w(&o.success_rate_request_volume),
        success_rate_stdev_factor: w(&o.success_rate_stdev_factor),
        failure_percentage_threshold: w(&o.failure_percentage_threshold),
        failure_percentage_minimum_hosts: w(&o.failure_percentage_minimum_hosts),
        failure_percentage_request_volume: w(&o.failure_percentage_request_volume),
        successful_active_health_check_uneject_host: o
            .successful_active_health_check_uneject_host
            .as_ref()
            .map(|v| v.value),
    })
}
