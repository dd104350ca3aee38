//! Observability: per-core stats, the access log, the per-stream record that feeds
//! both, distributed tracing (`trace`), and the process's log levels (`log_levels`).

pub mod access_log;
pub mod alloc_count;
pub mod log_levels;
pub mod outlier_stats;
pub mod stats;
pub mod stream_info;
pub mod tls_stats;
pub mod trace;
