//! Raw serde types for a cluster's `circuit_breakers` in the native YAML format, with
//! Envoy v3's field names and shapes (`CircuitBreakers.Thresholds`, `RetryBudget` with
//! `budget_percent: {value: ...}`). `config::build::circuit` checks them.

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCircuitBreakers {
    #[serde(default)]
    pub thresholds: Vec<RawThresholds>,
    /// Envoy's per-host limits: `max_connections` only (with `priority` and
    /// `track_remaining`; Envoy refuses the other fields here, so does the builder).
    #[serde(default)]
    pub per_host_thresholds: Vec<RawThresholds>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThresholds {
    /// `DEFAULT` (the default) or `HIGH`.
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub max_connections: Option<u32>,
    #[serde(default)]
    pub max_pending_requests: Option<u32>,
    #[serde(default)]
    pub max_requests: Option<u32>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub retry_budget: Option<RawRetryBudget>,
    #[serde(default)]
    pub track_remaining: bool,
    /// Connection pools: one per endpoint and core while it has a connection.
    #[serde(default)]
    pub max_connection_pools: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetryBudget {
    #[serde(default)]
    pub budget_percent: Option<RawPercent>,
    #[serde(default)]
    pub min_retry_concurrency: Option<u32>,
}

/// Envoy's `type.v3.Percent`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPercent {
    pub value: f64,
}
