//! A cluster's active health check, checked (Envoy's `core.v3.HealthCheck`). Built by
//! `config::build` from the native `health_checks:` list (an Envoy bootstrap's
//! `cluster.health_checks` translates to that list); run by `src/health/` on the control
//! executor.

use std::time::Duration;

/// One health checker of a cluster. Intervals are the ones Envoy derives: the defaults
/// are already filled in (`unhealthy_interval` defaults to `interval`, and so on).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    pub timeout: Duration,
    pub interval: Duration,
    /// Envoy's `initial_jitter`: the first check waits a random time below this.
    pub initial_jitter: Duration,
    pub interval_jitter: Duration,
    pub interval_jitter_percent: u32,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    /// Keep the connection between checks (Envoy's default).
    pub reuse_connection: bool,
    /// While the cluster has never had traffic (default 60 s).
    pub no_traffic_interval: Duration,
    /// The same for a healthy host (default `no_traffic_interval`).
    pub no_traffic_healthy_interval: Duration,
    pub unhealthy_interval: Duration,
    pub unhealthy_edge_interval: Duration,
    pub healthy_edge_interval: Duration,
    pub kind: CheckKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckKind {
    Http(HttpCheck),
    Tcp(TcpCheck),
    Grpc(GrpcCheck),
}

/// Envoy's `HttpHealthCheck` (HTTP/1.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    /// The Host sent; `None`: the cluster's name, as Envoy.
    pub host: Option<String>,
    pub path: String,
    pub method: String,
    /// Half-open ranges `[start, end)`; default `[200, 201)`.
    pub expected_statuses: Vec<(u16, u16)>,
    /// Statuses that count toward `unhealthy_threshold` instead of failing at once.
    pub retriable_statuses: Vec<(u16, u16)>,
}

/// Envoy's `TcpHealthCheck`: connect only, or send bytes and expect every `receive`
/// segment, in order, in what comes back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpCheck {
    pub send: Vec<u8>,
    pub receive: Vec<Vec<u8>>,
}

/// Envoy's `GrpcHealthCheck`: `grpc.health.v1.Health/Check` over HTTP/2.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrpcCheck {
    /// `HealthCheckRequest.service`; empty asks about the server as a whole.
    pub service_name: String,
    /// The `:authority` sent; `None`: the cluster's name, as Envoy.
    pub authority: Option<String>,
    /// Extra request headers (Envoy's `initial_metadata`), names lower-cased.
    pub initial_metadata: Vec<(String, String)>,
}
