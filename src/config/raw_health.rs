//! Raw serde types for a cluster's `health_checks:` in the native YAML: Envoy's
//! `HealthCheck` field names and shapes, with durations as strings (`5s`) as elsewhere in
//! the native format. Checked by `config/build/health.rs`.

use serde::Deserialize;

use super::raw_match::RawRange;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub initial_jitter: Option<String>,
    #[serde(default)]
    pub interval_jitter: Option<String>,
    #[serde(default)]
    pub interval_jitter_percent: Option<u32>,
    #[serde(default)]
    pub unhealthy_threshold: Option<u32>,
    #[serde(default)]
    pub healthy_threshold: Option<u32>,
    #[serde(default)]
    pub reuse_connection: Option<bool>,
    #[serde(default)]
    pub no_traffic_interval: Option<String>,
    #[serde(default)]
    pub no_traffic_healthy_interval: Option<String>,
    #[serde(default)]
    pub unhealthy_interval: Option<String>,
    #[serde(default)]
    pub unhealthy_edge_interval: Option<String>,
    #[serde(default)]
    pub healthy_edge_interval: Option<String>,
    #[serde(default)]
    pub http_health_check: Option<RawHttpHealthCheck>,
    #[serde(default)]
    pub tcp_health_check: Option<RawTcpHealthCheck>,
    #[serde(default)]
    pub grpc_health_check: Option<RawGrpcHealthCheck>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpHealthCheck {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    /// Envoy's `RequestMethod` by name (`GET`, `HEAD`, ...); default `GET`.
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub expected_statuses: Vec<RawRange>,
    #[serde(default)]
    pub retriable_statuses: Vec<RawRange>,
}

/// Envoy's `HealthCheck.Payload`: `text` is hex.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPayload {
    pub text: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTcpHealthCheck {
    #[serde(default)]
    pub send: Option<RawPayload>,
    #[serde(default)]
    pub receive: Vec<RawPayload>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrpcHealthCheck {
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    /// Extra request headers, as Envoy's `initial_metadata` (`key` / `value`).
    #[serde(default)]
    pub initial_metadata: Vec<RawMetadata>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetadata {
    pub key: String,
    #[serde(default)]
    pub value: String,
}
