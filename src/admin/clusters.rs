//! `GET /clusters`: Envoy's text format (`cluster::host:port::stat::value` lines) and,
//! with `?format=json`, Envoy's `ClusterStatuses` JSON. Admin only, on the control
//! executor; it reads the merged per-core report, nothing on the request path.
//!
//! The lines and their order are Envoy 1.40's (tests/clusters_admin.rs compares the
//! shapes with a running Envoy): per cluster `observability_name`, the `outlier::` lines
//! when outlier detection is configured, the circuit breaker thresholds of both
//! priorities (Envoy's defaults for a priority left unset), `added_via_api`, then per
//! host its stats in
//! name order and its `hostname`, `health_flags`, `weight`, locality, `canary`,
//! `priority` and success rates. Stats Outrigger does not count per host yet
//! (`cx_active`, `rq_pending_active`, `rq_timeout`; `rq_success`/`rq_error` without
//! outlier detection) read 0, success rates -1 and localities empty, as Envoy prints a
//! value it has not computed.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::observe::stats::{ClusterReport, EndpointReport};

/// One host stat: (name, value, is a gauge).
fn host_stats(e: &EndpointReport) -> [(&'static str, u64, bool); 9] {
    let [ext_total, ext_success, _, _] = e.outlier_rates;
    [
        ("cx_active", 0, true),
        ("cx_connect_fail", e.cx_connect_fail, false),
        ("cx_total", e.cx_total, false),
        ("rq_active", e.rq_active, true),
        ("rq_error", ext_total.saturating_sub(ext_success), false),
        ("rq_pending_active", 0, true),
        ("rq_success", ext_success, false),
        ("rq_timeout", 0, false),
        ("rq_total", e.rq_total, false),
    ]
}

/// Envoy's default circuit breaker thresholds (connections, pending, requests,
/// retries), for a cluster the report has no config of.
const ENVOY_DEFAULTS: [u64; 4] = [1024, 1024, 1024, 3];

/// The circuit breaker thresholds of the DEFAULT (`high` false) or HIGH priority.
fn thresholds(c: &ClusterReport, high: bool) -> [u64; 4] {
    c.thresholds
        .map_or(ENVOY_DEFAULTS, |[d, h]| if high { h } else { d })
}

/// Envoy's text format.
pub fn text(clusters: &[ClusterReport]) -> String {
    let mut out = String::new();
    for c in clusters {
        let n = &c.name;
        let _ = writeln!(out, "{n}::observability_name::{n}");
        if c.outlier_detection.is_some() {
            for s in [
                "success_rate_average",
                "success_rate_ejection_threshold",
                "local_origin_success_rate_average",
                "local_origin_success_rate_ejection_threshold",
            ] {
                let _ = writeln!(out, "{n}::outlier::{s}::-1");
            }
        }
        for (p, [cx, pending, rq, retries]) in [
            ("default_priority", thresholds(c, false)),
            ("high_priority", thresholds(c, true)),
        ] {
            let _ = writeln!(out, "{n}::{p}::max_connections::{cx}");
            let _ = writeln!(out, "{n}::{p}::max_pending_requests::{pending}");
            let _ = writeln!(out, "{n}::{p}::max_requests::{rq}");
            let _ = writeln!(out, "{n}::{p}::max_retries::{retries}");
        }
        let _ = writeln!(out, "{n}::added_via_api::{}", c.added_via_api);
        for e in &c.endpoints {
            let h = format!("{n}::{}", e.address);
            for (s, v, _) in host_stats(e) {
                let _ = writeln!(out, "{h}::{s}::{v}");
            }
            let _ = writeln!(out, "{h}::hostname::");
            let _ = writeln!(out, "{h}::health_flags::{}", e.health_flags);
            let _ = writeln!(out, "{h}::weight::{}", e.weight);
            for s in ["region", "zone", "sub_zone"] {
                let _ = writeln!(out, "{h}::{s}::");
            }
            let _ = writeln!(out, "{h}::canary::false");
            let _ = writeln!(out, "{h}::priority::0");
            let _ = writeln!(out, "{h}::success_rate::-1");
            let _ = writeln!(out, "{h}::local_origin_success_rate::-1");
        }
    }
    out
}

/// Envoy's `ClusterStatuses` JSON (proto3 JSON: zero values left out, 64-bit integers
/// as strings), plus Outrigger's own report under `clusters`.
pub fn json(clusters: &[ClusterReport]) -> Value {
    let statuses: Vec<Value> = clusters
        .iter()
        .map(|c| {
            let hosts: Vec<Value> = c.endpoints.iter().map(host_json).collect();
            let limits = |high: bool| {
                let [cx, pending, rq, retries] = thresholds(c, high);
                let mut t = json!({
                    "max_connections": cx,
                    "max_pending_requests": pending,
                    "max_requests": rq,
                    "max_retries": retries,
                });
                if high {
                    t["priority"] = json!("HIGH");
                }
                t
            };
            let mut s = json!({
                "name": c.name,
                "host_statuses": hosts,
                "circuit_breakers": {"thresholds": [limits(false), limits(true)]},
                "observability_name": c.name,
            });
            if c.added_via_api {
                s["added_via_api"] = json!(true);
            }
            s
        })
        .collect();
    json!({ "cluster_statuses": statuses, "clusters": clusters })
}

fn host_json(e: &EndpointReport) -> Value {
    let (ip, port) = match e.address.parse::<std::net::SocketAddr>() {
        Ok(a) => (a.ip().to_string(), a.port()),
        Err(_) => (e.address.clone(), 0),
    };
    // Counters first, then gauges, each in name order (Envoy's order).
    let mut stats: Vec<(&str, u64, bool)> = host_stats(e).to_vec();
    stats.sort_by_key(|(name, _, gauge)| (*gauge, *name));
    let stats: Vec<Value> = stats
        .into_iter()
        .map(|(name, v, gauge)| {
            let mut m = json!({ "name": name });
            if v != 0 {
                m["value"] = json!(v.to_string());
            }
            if gauge {
                m["type"] = json!("GAUGE");
            }
            m
        })
        .collect();
    let mut health = serde_json::Map::new();
    health.insert("eds_health_status".into(), json!("HEALTHY"));
    for flag in e.health_flags.split('/').filter(|f| !f.is_empty()) {
        match flag {
            "failed_active_hc" => {
                drop(health.insert("failed_active_health_check".into(), json!(true)))
            }
            "failed_outlier_check" => {
                drop(health.insert("failed_outlier_check".into(), json!(true)))
            }
            _ => {}
        }
    }
    json!({
        "address": {"socket_address": {"address": ip, "port_value": port}},
        "stats": stats,
        "health_status": health,
        "weight": e.weight,
        "locality": {},
    })
}
