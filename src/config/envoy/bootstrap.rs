//! Envoy `Bootstrap` -> native raw config: admin, node, overload manager and the static
//! resources; plus the helpers every area shares (durations, addresses, header edits).
//! Control plane only.

use std::net::IpAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::core::v3::{
    address, header_value_option::HeaderAppendAction, socket_address, Address, HeaderValueOption,
};
use envoy_types::pb::envoy::config::overload::v3::{resource_monitor, OverloadManager};
use envoy_types::pb::envoy::extensions::resource_monitors::downstream_connections::v3::DownstreamConnectionsConfig;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use prost::Message;
use serde_json::{json, Value};

use super::super::build::ConfigError;
use super::super::raw::{RawAdmin, RawConfig, RawRuntime};
use super::{cluster, err, listener, walk, PathMap};
use crate::http::filter::header_mutation::RawHeaderAdd;

/// The native raw config a bootstrap translates to, and where its fields came from.
pub(in crate::config) struct Translation {
    pub raw: RawConfig,
    pub paths: PathMap,
}

pub(super) type R<T> = Result<T, ConfigError>;

pub(super) fn translate(b: &Bootstrap) -> R<Translation> {
    let mut tx = Translation {
        raw: RawConfig::default(),
        paths: PathMap::default(),
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
    if let Some(sr) = &b.static_resources {
        for (i, c) in sr.clusters.iter().enumerate() {
            let p = format!("static_resources.clusters[{i}]");
            let raw = cluster::translate(c, &p, i, &mut tx.paths)?;
            tx.raw.clusters.push(raw);
        }
        for (i, l) in sr.listeners.iter().enumerate() {
            listener::translate(l, i, &mut tx)?;
        }
    }
    Ok(tx)
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

/// Decodes an `Any` payload that must be of type `want`.
pub(super) fn payload<M: Message + Default>(any: &Any, want: &str, path: &str) -> R<M> {
    let name = walk::type_name(&any.type_url);
    if name != want {
        return Err(err(
            path,
            format!("extension type `{name}` is not valid here (expected `{want}`)"),
        ));
    }
    M::decode(any.value.as_slice()).map_err(|e| err(path, format!("cannot decode `{name}`: {e}")))
}

/// A duration field; negative values are invalid.
pub(super) fn duration(d: &Option<PbDuration>, path: &str) -> R<Option<Duration>> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds < 0 || d.nanos < 0 {
        return Err(err(path, "must not be negative"));
    }
    Ok(Some(
        Duration::from_secs(d.seconds as u64) + Duration::from_nanos(d.nanos as u64),
    ))
}

/// A duration in the native syntax.
pub(super) fn native_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// A timeout where Envoy's zero means "disabled" but the native field must be positive:
/// the longest duration the native format takes (a year) stands for "never".
pub(super) fn timeout_or_never(d: Duration) -> String {
    if d.is_zero() {
        "8760h".into()
    } else {
        native_duration(d)
    }
}

/// A `socket_address` with an IP address (Envoy resolves no names for listeners, the
/// admin address or STATIC endpoints) and a `port_value`.
pub(super) fn socket_address(a: &Option<Address>, path: &str) -> R<(String, u16)> {
    let sa = match a.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(sa)) => sa,
        _ => return Err(err(path, "a `socket_address` is required")),
    };
    let p = format!("{path}.socket_address");
    let port = match sa.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(v)) => v,
        _ => 0,
    };
    let port =
        u16::try_from(port).map_err(|_| err(format!("{p}.port_value"), "must be at most 65535"))?;
    Ok((sa.address.clone(), port))
}

/// Like [`socket_address`], and the address must be an IP literal.
pub(super) fn ip_socket_address(a: &Option<Address>, path: &str) -> R<(String, u16)> {
    let (host, port) = socket_address(a, path)?;
    if host.parse::<IpAddr>().is_err() {
        return Err(err(
            format!("{path}.socket_address.address"),
            format!("`{host}` is not an IP address"),
        ));
    }
    Ok((host, port))
}

/// `*_headers_to_add` entries.
pub(super) fn header_adds(list: &[HeaderValueOption], path: &str) -> R<Vec<RawHeaderAdd>> {
    list.iter()
        .enumerate()
        .map(|(i, h)| header_add(h, &format!("{path}[{i}]")))
        .collect()
}

pub(super) fn header_add(h: &HeaderValueOption, path: &str) -> R<RawHeaderAdd> {
    let Some(hv) = &h.header else {
        return Err(err(format!("{path}.header"), "is required"));
    };
    let action = HeaderAppendAction::try_from(h.append_action)
        .map_err(|_| err(format!("{path}.append_action"), "unknown value"))?;
    Ok(RawHeaderAdd {
        name: hv.key.clone(),
        value: hv.value.clone(),
        append_action: Some(action.as_str_name().to_string()),
    })
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
