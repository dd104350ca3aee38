//! The Prometheus text format's pieces both renderers use (`prometheus.rs`,
//! `prometheus_routes.rs`): family headers, label escaping, bucket bounds.

use std::fmt::Write;

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value.
pub(super) fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `le` of bucket `i`, in seconds: the histogram's configured bound
/// (`histogram_buckets`, given in milliseconds), else `default`'s (microseconds);
/// `+Inf` past the last.
pub(super) fn le_seconds(
    h: &crate::observe::stats::HistogramReport,
    default: &[u64],
    i: usize,
) -> String {
    let ms = match h.bounds.as_deref() {
        Some(b) => b.ms().get(i).copied(),
        None => default.get(i).map(|&us| us as f64 / 1000.0),
    };
    match ms {
        Some(ms) => format!("{}", ms / 1000.0),
        None => "+Inf".to_string(),
    }
}
