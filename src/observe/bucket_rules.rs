//! Which bucket bounds each duration histogram gets (`observe::buckets`): the first of
//! the config's `histogram_buckets` rules whose matcher takes the histogram's stat name
//! (Envoy's `stats_config.histogram_bucket_settings`), else the histogram's defaults.
//! Runs on a worker when it applies a config, never per request.

use std::rc::Rc;
use std::sync::Arc;

use super::buckets::Bounds;
use super::route_stats::RouteStats;
use super::stats::{
    duration_bounds, envoy_default_bounds, phase_bounds, ClusterStats, ListenerStats,
};
use crate::config::model::{HistogramBuckets, NetworkTerminal, Snapshot};
use crate::http::router::string_matches;

/// The bounds of the first rule that matches any of `names` (a histogram may go by its
/// Outrigger name and by Envoy's).
pub fn bounds_for(rules: &[HistogramBuckets], names: &[&str]) -> Option<Arc<Bounds>> {
    rules
        .iter()
        .find(|r| {
            names
                .iter()
                .any(|n| string_matches(&r.matcher, n.as_bytes()))
        })
        .map(|r| r.bounds.clone())
}

/// Sets the bounds of a route's `<prefix>.upstream_rq_time` (Envoy's buckets unless a
/// rule takes its name).
pub fn configure_route(snapshot: &Snapshot, prefix: &str, stats: &RouteStats) {
    let name = format!("{prefix}.upstream_rq_time");
    let b = bounds_for(&snapshot.histogram_buckets, &[&name]).unwrap_or_else(envoy_default_bounds);
    stats.rq_time.0.configure(&b);
}

/// Sets the bounds of every cluster's `upstream_rq_time`, every listener's
/// `downstream_rq_time` (which also answers to Envoy's name for it,
/// `http.<stat_prefix>.downstream_rq_time`, of each of its connection managers) and
/// its phase histograms (`listener.<name>.phase.<phase>`).
pub fn configure<'a>(
    snapshot: &Snapshot,
    clusters: impl Iterator<Item = (&'a str, &'a ClusterStats)>,
    listeners: &[Rc<ListenerStats>],
) {
    let rules = &snapshot.histogram_buckets;
    for (name, stats) in clusters {
        let own = format!("cluster.{name}.upstream_rq_time");
        let b = bounds_for(rules, &[&own]).unwrap_or_else(envoy_default_bounds);
        stats.rq_time.0.configure(&b);
    }
    for (l, stats) in snapshot.listeners.iter().zip(listeners) {
        let mut names = vec![format!("listener.{}.downstream_rq_time", l.name)];
        for (_, c) in l.chains() {
            if let NetworkTerminal::Http(h) = &c.terminal {
                names.push(format!("http.{}.downstream_rq_time", h.stat_prefix));
            }
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let b = bounds_for(rules, &names).unwrap_or_else(duration_bounds);
        stats.rq_time.0.configure(&b);
        for (phase, h) in super::phases::PHASE_NAMES.iter().zip(&stats.phases.hist) {
            let own = format!("listener.{}.phase.{phase}", l.name);
            let b = bounds_for(rules, &[&own]).unwrap_or_else(phase_bounds);
            h.0.configure(&b);
        }
    }
}
