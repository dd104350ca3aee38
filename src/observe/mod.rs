//! Observability: per-core stats and the access log.

pub mod access_log;
pub mod alloc_count;
pub mod stats;
