//! Capture mode: the listeners istiod gives a sidecar whose pod's traffic iptables
//! redirects to it (`outrigger iptables`, docs/interception.md), for a proxy whose node
//! metadata says `INTERCEPTION_MODE: REDIRECT` (`outrigger run --control ... --capture`).
//!
//! - `virtualOutbound` on 15001 with `use_original_dst`: each captured connection is
//!   handed to the listener of its original destination port, `0.0.0.0_PORT` (not
//!   bound), one per port of the services the proxy's Sidecar egress listeners select
//!   (every service exported to its namespace without one; `egress.rs`): HTTP ports
//!   route with the route table `PORT` (a virtual host per service, answering to its
//!   hosts and addresses, then istiod's `allow_any` host to `PassthroughCluster`, or
//!   `block_all` answering 502 under `outboundTrafficPolicy: REGISTRY_ONLY`), TCP ports
//!   proxy to the port's first service; any other port passes through to its original
//!   destination (`PassthroughCluster`, ORIGINAL_DST), or to `BlackHoleCluster` (no
//!   endpoint) under `REGISTRY_ONLY`. Egress listeners with `captureMode: NONE` are
//!   bound as for an uncaptured proxy.
//! - `virtualInbound` on 15006 with the `original_dst` listener filter: one filter chain
//!   per inbound port, HTTP through a connection manager (the workload's RBAC filters
//!   first) or TCP, to `inbound|PORT||`; mTLS per PeerAuthentication as on a bound
//!   inbound listener; other ports pass through (`InboundPassthroughCluster`). The
//!   inbound ports are the Sidecar's ingress entries, each to its `defaultEndpoint`
//!   (those with `captureMode: NONE` bound instead), or without any, the target ports
//!   of the services that select the workload, to an ORIGINAL_DST cluster whose
//!   connections leave from 127.0.0.6 so that the rules let them reach the workload
//!   uncaptured.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Value};

use super::egress;
use super::istio::{Protocol, Sidecar};
use super::model::{self, Mesh};
use super::peer_auth::{self, Mode};
use super::translate::{
    bound_ingress, http_listener, inbound_routes, ingress_cluster, mtls_chains, tcp_proxy, Proxy,
    View, CLUSTER, LISTENER, TYPES,
};

pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;
pub const INBOUND_CAPTURE_PORT: u16 = 15006;

const ANY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// Everything `proxy` is sent (`trust_domain`: the mesh's, for SPIFFE IDs): capture
/// mode's listeners when its traffic is captured; otherwise its Sidecar's bound egress
/// (`egress.rs`) and ingress (`translate::bound_ingress`) listeners.
pub fn proxy_view(mesh: &Mesh, proxy: &Proxy, trust_domain: &str) -> View {
    let mut v: View = TYPES.iter().map(|t| (*t, BTreeMap::new())).collect();
    let mut put = |t: &'static str, name: String, r: Value| {
        if let Some(m) = v.get_mut(t) {
            m.entry(name).or_insert(r);
        }
    };
    let sidecar = mesh
        .sidecar_for(&proxy.namespace, &proxy.labels)
        .map(|(_, s)| s);
    if proxy.capture {
        view(mesh, proxy, trust_domain, sidecar, &mut put);
    } else {
        egress::outbound(mesh, proxy, trust_domain, sidecar, &mut put);
        let ingress = sidecar.map(|s| s.ingress.as_slice()).unwrap_or(&[]);
        bound_ingress(mesh, proxy, trust_domain, ingress.iter(), &mut put);
    }
    v
}

/// `put(type, name, resource)` for everything a capture-mode proxy is sent.
fn view(
    mesh: &Mesh,
    proxy: &Proxy,
    trust_domain: &str,
    sidecar: Option<&Sidecar>,
    put: &mut dyn FnMut(&'static str, String, Value),
) {
    outbound(mesh, proxy, trust_domain, sidecar, put);
    inbound(mesh, proxy, trust_domain, sidecar, put);
    for (name, source) in [
        (egress::PASSTHROUGH, None),
        ("InboundPassthroughCluster", Some("127.0.0.6")),
    ] {
        put(CLUSTER, name.to_string(), original_dst(name, source));
    }
}

fn original_dst(name: &str, source: Option<&str>) -> Value {
    let mut c = json!({
        "name": name,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "10s"
    });
    if let Some(s) = source {
        c["upstream_bind_config"] = json!({"source_address": {"address": s, "port_value": 0}});
    }
    c
}

fn outbound(
    mesh: &Mesh,
    proxy: &Proxy,
    trust_domain: &str,
    sidecar: Option<&Sidecar>,
    put: &mut dyn FnMut(&'static str, String, Value),
) {
    egress::outbound(mesh, proxy, trust_domain, sidecar, put);
    put(
        LISTENER,
        "virtualOutbound".to_string(),
        json!({
            "name": "virtualOutbound",
            "address": {"socket_address": {"address": ANY.to_string(), "port_value": OUTBOUND_CAPTURE_PORT}},
            "use_original_dst": true,
            "traffic_direction": "OUTBOUND",
            "filter_chains": [{"name": "virtualOutbound-catchall-tcp", "filters": [tcp_proxy(egress::fallthrough(sidecar))]}]
        }),
    );
}

/// The workload's inbound ports: the target ports of the services in its namespace
/// that select it, with their protocol (the first service's for a port).
fn inbound_ports(mesh: &Mesh, proxy: &Proxy) -> BTreeMap<u16, Protocol> {
    let named = mesh.workload(&proxy.id).map(|(_, w)| &w.ports);
    let mut out = BTreeMap::new();
    for (m, se) in &mesh.services {
        let selects = se
            .workload_selector
            .as_ref()
            .is_some_and(|s| s.selects(&proxy.labels));
        if m.namespace != proxy.namespace || !selects {
            continue;
        }
        for p in &se.ports {
            let by_name = p
                .name
                .as_ref()
                .and_then(|n| named.and_then(|ports| ports.get(n)).copied());
            let target = by_name.or(p.target_port).unwrap_or(p.number);
            out.entry(target)
                .or_insert(p.protocol().unwrap_or(Protocol::Tcp));
        }
    }
    out
}

fn inbound(
    mesh: &Mesh,
    proxy: &Proxy,
    trust_domain: &str,
    sidecar: Option<&Sidecar>,
    put: &mut dyn FnMut(&'static str, String, Value),
) {
    // The Sidecar's ingress entries replace the ports the services give, each to its
    // `defaultEndpoint`; those with `captureMode: NONE` are bound listeners.
    let ingress = sidecar.map(|s| s.ingress.as_slice()).unwrap_or(&[]);
    let none = |i: &&super::istio::SidecarIngress| {
        model::capture_mode(i.capture_mode.as_deref()) == Ok(true)
    };
    bound_ingress(mesh, proxy, trust_domain, ingress.iter().filter(none), put);
    let ports: Vec<(u16, Protocol, Value)> = if ingress.is_empty() {
        inbound_ports(mesh, proxy)
            .into_iter()
            .map(|(port, proto)| {
                let mut c = original_dst(&format!("inbound|{port}||"), Some("127.0.0.6"));
                super::policy::cluster_policy(&mut c, None, None, proto == Protocol::Http2);
                (port, proto, c)
            })
            .collect()
    } else {
        ingress
            .iter()
            .filter(|i| !none(i))
            .map(|i| {
                let proto = i.port.protocol().unwrap_or(Protocol::Tcp);
                (i.port.number, proto, ingress_cluster(i).1)
            })
            .collect()
    };
    let rbac = super::authz::filters(&mesh.authorization_for(&proxy.namespace, &proxy.labels));
    let mut chains = Vec::new();
    let mut inspect_tls = false;
    for (port, proto, c) in ports {
        let cluster = format!("inbound|{port}||");
        put(CLUSTER, cluster.clone(), c);
        let filter = if proto == Protocol::Tcp {
            tcp_proxy(&cluster)
        } else {
            // The connection manager of a bound inbound listener, taken whole.
            let table = inbound_routes(&cluster, port);
            let l = http_listener("x", ANY, port, table, "INBOUND", &rbac);
            l["filter_chains"][0]["filters"][0].clone()
        };
        let plain = json!({
            "name": format!("0.0.0.0_{port}"),
            "filter_chain_match": {"destination_port": port},
            "filters": [filter]
        });
        let mode = peer_auth::inbound_mode(mesh, &proxy.namespace, &proxy.labels, port);
        let tls = match mode {
            Mode::Strict => Some(true),
            Mode::Permissive if proxy.authenticated => Some(false),
            _ => None,
        };
        match tls {
            Some(strict) => {
                inspect_tls |= !strict;
                chains.extend(mtls_chains(plain, &cluster, trust_domain, strict));
            }
            None => chains.push(plain),
        }
    }
    chains.push(json!({
        "name": "virtualInbound-catchall-tcp",
        "filters": [tcp_proxy("InboundPassthroughCluster")]
    }));
    let mut filters = vec![json!({
        "name": "envoy.filters.listener.original_dst",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}
    })];
    if inspect_tls {
        filters.push(json!({
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
        }));
    }
    put(
        LISTENER,
        "virtualInbound".to_string(),
        json!({
            "name": "virtualInbound",
            "address": {"socket_address": {"address": ANY.to_string(), "port_value": INBOUND_CAPTURE_PORT}},
            "traffic_direction": "INBOUND",
            "listener_filters": filters,
            "filter_chains": chains
        }),
    );
}
