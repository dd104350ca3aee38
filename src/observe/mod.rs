//! Observability: per-core stats, the access log, and the per-stream record that feeds
//! both.

pub mod access_log;
pub mod alloc_count;
pub mod outlier_stats;
pub mod stats;
pub mod stream_info;
pub mod tls_stats;
