//! Raw serde type for a cluster's `outlier_detection` in the native YAML format, with
//! Envoy v3's field names (`config.cluster.v3.OutlierDetection`): durations as strings,
//! the wrapped integers and booleans as plain values. `config::build::outlier` checks it.

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_failure: Option<u32>,
    pub consecutive_local_origin_failure: Option<u32>,
    #[serde(default)]
    pub split_external_local_origin_errors: bool,
    pub interval: Option<String>,
    pub base_ejection_time: Option<String>,
    pub max_ejection_time: Option<String>,
    pub max_ejection_time_jitter: Option<String>,
    pub max_ejection_percent: Option<u32>,
    pub always_eject_one_host: Option<bool>,
    pub enforcing_consecutive_5xx: Option<u32>,
    pub enforcing_consecutive_gateway_failure: Option<u32>,
    pub enforcing_consecutive_local_origin_failure: Option<u32>,
    pub enforcing_success_rate: Option<u32>,
    pub enforcing_local_origin_success_rate: Option<u32>,
    pub enforcing_failure_percentage: Option<u32>,
    pub enforcing_failure_percentage_local_origin: Option<u32>,
    pub success_rate_minimum_hosts: Option<u32>,
    pub success_rate_request_volume: Option<u32>,
    pub success_rate_stdev_factor: Option<u32>,
    pub failure_percentage_threshold: Option<u32>,
    pub failure_percentage_minimum_hosts: Option<u32>,
    pub failure_percentage_request_volume: Option<u32>,
    pub successful_active_health_check_uneject_host: Option<bool>,
}
