//! The native `tracing` block of an HTTP connection manager, as written in the YAML
//! (built into `observe::trace::Tracing` by `config::build::tracing`; Envoy's HCM
//! `tracing` is translated into it by `config::envoy::tracing`).

use serde::Deserialize;

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTracing {
    /// The cluster whose first endpoint is the OTLP collector.
    pub collector_cluster: String,
    /// `http` (OTLP/HTTP with protobuf; the default) or `grpc` (OTLP/gRPC).
    #[serde(default)]
    pub protocol: Option<String>,
    /// OTLP/HTTP's path (default `/v1/traces`).
    #[serde(default)]
    pub path: Option<String>,
    /// The `Host` of export requests (default: the cluster's name).
    #[serde(default)]
    pub authority: Option<String>,
    /// The resource's `service.name` (default `outrigger`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// `inbound` (server spans, `ingress`; the default) or `outbound` (client spans,
    /// `egress`).
    #[serde(default)]
    pub traffic_direction: Option<String>,
    /// Percentages (0 to 100, default 100), as Envoy's.
    #[serde(default)]
    pub random_sampling: Option<f64>,
    #[serde(default)]
    pub client_sampling: Option<f64>,
    #[serde(default)]
    pub overall_sampling: Option<f64>,
    /// `w3c`, `b3`, `b3_single` (default `[w3c]`).
    #[serde(default)]
    pub propagation: Option<Vec<String>>,
    #[serde(default)]
    pub custom_tags: Vec<RawCustomTag>,
    #[serde(default)]
    pub max_path_tag_length: Option<usize>,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
    /// A batch is sent at this many spans (default 512)...
    #[serde(default)]
    pub batch_spans: Option<usize>,
    /// ... or this long after its first span (default `1s`).
    #[serde(default)]
    pub flush_interval: Option<String>,
    /// Each worker's queue to the exporter (default 4096 spans).
    #[serde(default)]
    pub queue_spans: Option<usize>,
}

/// One of Envoy's custom tags: `literal`, or `request_header` (with `default_value`).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustomTag {
    pub tag: String,
    #[serde(default)]
    pub literal: Option<String>,
    #[serde(default)]
    pub request_header: Option<String>,
    #[serde(default)]
    pub default_value: Option<String>,
}
