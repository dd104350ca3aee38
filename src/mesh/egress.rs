//! A proxy's outbound side, from its Sidecar's egress listeners (istiod's sidecar
//! scope): which services it sees, on which ports, and the listeners, routes and
//! clusters that reach them.
//!
//! - An egress listener with a `port` takes the services its `hosts` select that have
//!   that port; one listener `BIND_PORT`. The egress listener without a port (the
//!   catch-all, last) takes every other port of the services it selects, a listener per
//!   port.
//! - Bound or not: a proxy whose traffic is not captured binds every listener (at
//!   `bind`, 127.0.0.1 by default, as istiod's "actual local host"); a captured proxy
//!   (`capture.rs`) binds only those with `captureMode: NONE` and takes the others from
//!   `virtualOutbound` as virtual listeners on `0.0.0.0` (route table named by the
//!   port, as istiod's).
//! - HTTP ports route by host (`translate::route_table`); a virtual listener's table
//!   ends with istiod's catch-all virtual host: `allow_any` to `PassthroughCluster`, or
//!   `block_all` answering 502 when the Sidecar's `outboundTrafficPolicy.mode` is
//!   `REGISTRY_ONLY`. TCP ports proxy to the port's first service.
//! - No Sidecar, or one without egress listeners: a captured proxy sees every service
//!   exported to its namespace (istiod's default `*/*` catch-all); an uncaptured one is
//!   given no outbound listener (binding every service port of the mesh on the host the
//!   applications share would take their ports).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};

use super::istio::{Metadata, Protocol, ServiceEntry, Sidecar, SidecarEgress};
use super::model::{self, exported, Mesh};
use super::translate::{
    cluster_name, clusters, host_matches, http_listener, route_table, tcp_listener, Proxy, CLUSTER,
    ENDPOINT, LISTENER, ROUTE,
};

pub const PASSTHROUGH: &str = "PassthroughCluster";
pub const BLACKHOLE: &str = "BlackHoleCluster";

/// Ports a captured proxy never takes as a service port (its own capture ports).
const CAPTURE_PORTS: [u16; 2] = [15001, 15006];

/// Puts `proxy`'s outbound listeners, routes, clusters and endpoints.
pub(super) fn outbound(
    mesh: &Mesh,
    proxy: &Proxy,
    trust_domain: &str,
    sidecar: Option<&Sidecar>,
    put: &mut dyn FnMut(&'static str, String, Value),
) {
    let default = [SidecarEgress {
        port: None,
        bind: None,
        capture_mode: None,
        hosts: vec!["*/*".to_string()],
    }];
    let egress: &[SidecarEgress] = match sidecar {
        Some(s) if !s.egress.is_empty() => &s.egress,
        _ if proxy.capture => &default,
        _ => &[],
    };
    let at = Scope {
        mesh,
        proxy,
        trust_domain,
        registry_only: sidecar.is_some_and(Sidecar::registry_only),
    };
    let mut taken = BTreeSet::new();
    let mut blackhole = false;
    for e in egress {
        let bound = !proxy.capture || model::capture_mode(e.capture_mode.as_deref()) == Ok(true);
        let local = IpAddr::V4(if bound {
            Ipv4Addr::LOCALHOST
        } else {
            Ipv4Addr::UNSPECIFIED
        });
        let bind = match &e.bind {
            Some(b) => model::bind_ip(Some(b)).unwrap_or(local),
            None => local,
        };
        let services = visible(mesh, proxy, e);
        match &e.port {
            Some(p) => {
                taken.insert(p.number);
                let on = on_port(&services, p.number);
                let proto = p.protocol().unwrap_or(Protocol::Tcp);
                blackhole |= at.listener(p.number, proto, &on, bind, bound, put);
            }
            None => {
                let ports: BTreeSet<u16> = services
                    .iter()
                    .flat_map(|(_, se)| se.ports.iter().map(|p| p.number))
                    .filter(|p| !taken.contains(p) && !CAPTURE_PORTS.contains(p))
                    .collect();
                for port in ports {
                    let on = on_port(&services, port);
                    let proto = on
                        .first()
                        .and_then(|(_, se)| se.ports.iter().find(|p| p.number == port))
                        .and_then(|p| p.protocol().ok())
                        .unwrap_or(Protocol::Tcp);
                    blackhole |= at.listener(port, proto, &on, bind, bound, put);
                }
            }
        }
    }
    if blackhole || proxy.capture {
        put(
            CLUSTER,
            BLACKHOLE.to_string(),
            json!({"name": BLACKHOLE, "type": "STATIC", "connect_timeout": "10s"}),
        );
    }
}

/// Where a captured connection no listener takes goes: its original destination, or
/// nowhere under `REGISTRY_ONLY`.
pub(super) fn fallthrough(sidecar: Option<&Sidecar>) -> &'static str {
    passthrough_or_blackhole(sidecar.is_some_and(Sidecar::registry_only))
}

fn passthrough_or_blackhole(registry_only: bool) -> &'static str {
    if registry_only {
        BLACKHOLE
    } else {
        PASSTHROUGH
    }
}

type Services<'m> = Vec<(&'m Metadata, &'m ServiceEntry)>;

struct Scope<'a> {
    mesh: &'a Mesh,
    proxy: &'a Proxy,
    trust_domain: &'a str,
    registry_only: bool,
}

impl Scope<'_> {
    /// One egress listener on `port` for `services` (and their clusters); whether it
    /// sends to the black hole.
    fn listener(
        &self,
        port: u16,
        proto: Protocol,
        services: &[(&Metadata, &ServiceEntry)],
        bind: IpAddr,
        bound: bool,
        put: &mut dyn FnMut(&'static str, String, Value),
    ) -> bool {
        for (meta, se) in services {
            for host in &se.hosts {
                for (name, c, eds) in clusters(
                    self.mesh,
                    self.proxy,
                    self.trust_domain,
                    meta,
                    se,
                    host,
                    port,
                ) {
                    if let Some(eds) = eds {
                        put(ENDPOINT, name.clone(), eds);
                    }
                    put(CLUSTER, name, c);
                }
            }
        }
        let name = format!("{bind}_{port}");
        // A bound listener has no original destination to pass through to.
        let fallthrough = passthrough_or_blackhole(bound || self.registry_only);
        let mut black = false;
        let l = if proto == Protocol::Tcp {
            let target = services
                .first()
                .and_then(|(_, se)| se.hosts.first())
                .map(|h| cluster_name(port, "", h));
            let to = target.as_deref().unwrap_or(fallthrough);
            black = to == BLACKHOLE;
            tcp_listener(&name, bind, port, to, "OUTBOUND")
        } else {
            // A virtual listener's table is shared by every bind on the port: named by
            // the port, as istiod's.
            let route = if bound || !bind.is_unspecified() {
                name.clone()
            } else {
                port.to_string()
            };
            let mut table = route_table(self.mesh, self.proxy, &route, port, services);
            if !bound {
                if let Some(vhosts) = table["virtual_hosts"].as_array_mut() {
                    vhosts.push(catch_all(self.registry_only));
                }
            }
            put(ROUTE, route.clone(), table);
            http_listener(
                &name,
                bind,
                port,
                json!({"rds": {"config_source": {"ads": {}, "resource_api_version": "V3"}, "route_config_name": route}}),
                "OUTBOUND",
                &[],
            )
        };
        put(LISTENER, name, bind_to_port(l, bound));
        black
    }
}

fn bind_to_port(mut l: Value, bound: bool) -> Value {
    if !bound {
        l["bind_to_port"] = json!(false);
    }
    l
}

/// istiod's last virtual host of a captured proxy's outbound route table.
fn catch_all(registry_only: bool) -> Value {
    if registry_only {
        json!({
            "name": "block_all",
            "domains": ["*"],
            "routes": [{"name": "block_all", "match": {"prefix": "/"},
                        "direct_response": {"status": 502}}]
        })
    } else {
        json!({
            "name": "allow_any",
            "domains": ["*"],
            "routes": [{"name": "allow_any", "match": {"prefix": "/"},
                        "route": {"cluster": PASSTHROUGH, "timeout": "0s"}}]
        })
    }
}

fn on_port<'m>(services: &[(&'m Metadata, &'m ServiceEntry)], port: u16) -> Services<'m> {
    services
        .iter()
        .filter(|(_, se)| se.ports.iter().any(|p| p.number == port))
        .copied()
        .collect()
}

/// The services an egress listener selects: those whose host its `hosts` name and
/// whose `exportTo` includes the proxy's namespace.
fn visible<'m>(mesh: &'m Mesh, proxy: &Proxy, e: &SidecarEgress) -> Services<'m> {
    mesh.services
        .iter()
        .filter(|(m, se)| {
            exported(&se.export_to, &m.namespace, &proxy.namespace)
                && se.hosts.iter().any(|h| {
                    e.hosts
                        .iter()
                        .any(|sel| host_selected(sel, &proxy.namespace, &m.namespace, h))
                })
        })
        .map(|(m, s)| (m, s))
        .collect()
}

/// Sidecar's `namespace/dnsName`: `*` any namespace, `.` the proxy's, `~` none;
/// `*` any host, `*.suffix` a wildcard.
fn host_selected(sel: &str, own_ns: &str, service_ns: &str, host: &str) -> bool {
    let Some((ns, name)) = sel.split_once('/') else {
        return false;
    };
    let ns_ok = match ns {
        "*" => true,
        "." => service_ns == own_ns,
        "~" => false,
        n => n == service_ns,
    };
    ns_ok && host_matches(name, host)
}
