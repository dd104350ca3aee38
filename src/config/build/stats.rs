//! Building `stats` (Envoy's `stats_config`): the histograms' bucket rules; and the
//! routes' stat prefixes. Part of `config::build`.

use std::sync::Arc;

use super::super::model::HistogramBuckets;
use super::super::raw::RawStats;
use super::Builder;
use crate::observe::buckets::Bounds;

impl Builder {
    /// `stats.histogram_buckets`, in order (the first rule that matches wins).
    pub(super) fn histogram_buckets(&mut self, raw: Option<&RawStats>) -> Vec<HistogramBuckets> {
        let mut out = Vec::new();
        for (i, r) in raw
            .map_or(&[][..], |s| &s.histogram_buckets)
            .iter()
            .enumerate()
        {
            let p = format!("stats.histogram_buckets[{i}]");
            let matcher = self.string_match(&format!("{p}.match"), &r.matcher);
            let bounds = match Bounds::from_ms(&r.buckets) {
                Ok(b) => Some(b),
                Err(m) => {
                    self.err(format!("{p}.buckets"), m);
                    None
                }
            };
            if let (Some(matcher), Some(bounds)) = (matcher, bounds) {
                out.push(HistogramBuckets {
                    matcher,
                    bounds: Arc::new(bounds),
                });
            }
        }
        out
    }

    /// The index of the route stats `prefix` in `Snapshot::route_stats`, added on
    /// first use.
    pub(super) fn route_stats_index(&mut self, prefix: String) -> usize {
        match self.route_stats.iter().position(|c| *c == prefix) {
            Some(i) => i,
            None => {
                self.route_stats.push(prefix);
                self.route_stats.len() - 1
            }
        }
    }
}
