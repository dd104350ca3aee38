//! The supported-fields table (`walk.rs`'s `SUPPORTED`) for the bootstrap's
//! `stats_config`: the histograms' bucket settings. Split out of `walk.rs` only for
//! size; the walker reads every table alike. Control plane only.

/// Supported fields, per message full name, as in `walk::SUPPORTED`.
pub(super) const SUPPORTED: &[(&str, &[&str])] = &[
    (
        "envoy.config.metrics.v3.StatsConfig",
        &["histogram_bucket_settings"],
    ),
    (
        // `bins` sizes Envoy's log-linear histogram, which Outrigger does not keep.
        "envoy.config.metrics.v3.HistogramBucketSettings",
        &["match", "buckets", "bins"],
    ),
];
