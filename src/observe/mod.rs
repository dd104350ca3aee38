//! Observability: per-core stats, the access log, the per-stream record that feeds
//! both, distributed tracing (`trace`), Istio's standard metrics (`istio`), the requests'
//! self-time breakdown (`phases`), and the process's log levels (`log_levels`).

pub mod access_log;
pub mod access_log_filter;
pub mod access_log_fmt;
pub mod alloc_count;
pub mod authz_stats;
pub mod bucket_rules;
pub mod buckets;
pub mod istio;
pub mod log_levels;
pub mod outlier_stats;
pub mod phases;
pub mod route_stats;
pub mod stats;
pub mod stream_info;
pub mod tls_stats;
pub mod trace;
pub mod transport_failure;
