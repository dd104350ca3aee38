//! Envoy `Bootstrap` -> native raw config: admin, node, overload manager and the static
//! resources (the helpers every area shares are in `convert`). Control plane only.

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::overload::v3::{resource_monitor, OverloadManager};
use envoy_types::pb::envoy::extensions::resource_monitors::downstream_connections::v3::DownstreamConnectionsConfig;
use serde_json::{json, Value};

use envoy_types::pb::envoy::config::metrics::v3::StatsConfig;

use super::super::raw::{RawAdmin, RawConfig, RawHistogramBuckets, RawRuntime, RawStats};
use super::convert::{payload, socket_address, AdsSecrets, Translation, R};
use super::{cluster, err, listener, PathMap};

/// Translates a bootstrap; `ads_secrets` are the secrets the xDS client holds (the
/// `sds_config: {ads: {}}` configs read them).
pub(super) fn translate(b: &Bootstrap, ads_secrets: &AdsSecrets) -> R<Translation> {
    let node = b.node.clone().unwrap_or_default();
    let mut tx = Translation {
        istio_workload: super::istio_stats::workload(&node),
        raw: RawConfig::default(),
        paths: PathMap::default(),
        zone: node.locality.map(|l| l.zone).unwrap_or_default(),
        node_id: node.id,
        direction: 0,
        ads_secrets: ads_secrets.clone(),
    };
    if let Some(a) = &b.admin {
        let (host, port) = socket_address(&a.address, "admin.address")?;
        tx.raw.admin = Some(RawAdmin {
            address: host,
            port,
        });
        tx.paths.add(
            "admin.address".into(),
            "admin.address.socket_address".into(),
        );
    }
    let mut runtime = RawRuntime::default();
    if let Some(om) = &b.overload_manager {
        runtime.max_connections = overload_manager(om)?;
    }
    tx.raw.runtime = Some(runtime);
    if let Some(sc) = &b.stats_config {
        tx.raw.stats = Some(stats_config(sc)?);
        tx.paths.add(
            "stats.histogram_buckets".into(),
            "stats_config.histogram_bucket_settings".into(),
        );
    }
    if let Some(sr) = &b.static_resources {
        for (i, c) in sr.clusters.iter().enumerate() {
            let p = format!("static_resources.clusters[{i}]");
            let raw = cluster::translate(c, &p, i, &mut tx.paths, &tx.ads_secrets)?;
            tx.raw.clusters.push(raw);
        }
        for (i, l) in sr.listeners.iter().enumerate() {
            listener::translate(l, i, &mut tx)?;
        }
    }
    Ok(tx)
}

/// `stats_config.histogram_bucket_settings` -> native `stats.histogram_buckets` (the
/// builder checks the buckets: greater than 0, distinct). `bins` sizes Envoy's
/// log-linear histogram; Outrigger counts into the buckets themselves, so it is
/// accepted and has nothing to size.
fn stats_config(sc: &StatsConfig) -> R<RawStats> {
    let mut out = RawStats::default();
    for (i, h) in sc.histogram_bucket_settings.iter().enumerate() {
        let p = format!("stats_config.histogram_bucket_settings[{i}]");
        let Some(m) = &h.r#match else {
            return Err(err(format!("{p}.match"), "is required"));
        };
        out.histogram_buckets.push(RawHistogramBuckets {
            matcher: super::rbac::string(m, &format!("{p}.match"))?,
            buckets: h.buckets.clone(),
        });
    }
    Ok(out)
}

/// `envoy.resource_monitors.global_downstream_max_connections`: the process-wide cap on
/// downstream connections (native `runtime.max_connections`).
fn overload_manager(om: &OverloadManager) -> R<Option<u64>> {
    let mut max = None;
    for (i, m) in om.resource_monitors.iter().enumerate() {
        let p = format!("overload_manager.resource_monitors[{i}]");
        let Some(resource_monitor::ConfigType::TypedConfig(any)) = &m.config_type else {
            return Err(err(format!("{p}.typed_config"), "is required"));
        };
        let c: DownstreamConnectionsConfig = payload(
            any,
            "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
            &format!("{p}.typed_config"),
        )?;
        if c.max_active_downstream_connections <= 0 {
            return Err(err(
                format!("{p}.typed_config.max_active_downstream_connections"),
                "must be greater than 0",
            ));
        }
        max = Some(c.max_active_downstream_connections as u64);
    }
    Ok(max)
}

/// `/config_dump` for a bootstrap: Envoy's `ConfigDump` shape for static resources (the
/// bootstrap, and its listeners, clusters and inline route configurations), as written.
pub(super) fn config_dump(b: &Value) -> Value {
    let sr = b.get("static_resources");
    let list = |k: &str| {
        sr.and_then(|s| s.get(k))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let typed = |mut v: Value, t: &str| {
        if let Some(o) = v.as_object_mut() {
            o.insert("@type".into(), json!(format!("type.googleapis.com/{t}")));
        }
        v
    };
    let listeners = list("listeners");
    let mut routes = Vec::new();
    for l in &listeners {
        for fc in l["filter_chains"].as_array().into_iter().flatten() {
            for f in fc["filters"].as_array().into_iter().flatten() {
                if let Some(rc) = f["typed_config"].get("route_config") {
                    routes.push(json!({
                        "route_config": typed(rc.clone(), "envoy.config.route.v3.RouteConfiguration")
                    }));
                }
            }
        }
    }
    json!({
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": b,
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "static_clusters": list("clusters").into_iter().map(|c| json!({
                    "cluster": typed(c, "envoy.config.cluster.v3.Cluster")
                })).collect::<Vec<_>>(),
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "static_listeners": listeners.into_iter().map(|l| json!({
                    "listener": typed(l, "envoy.config.listener.v3.Listener")
                })).collect::<Vec<_>>(),
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                "static_route_configs": routes,
            },
        ]
    })
}
