//! The mesh as the control plane holds it: every resource read, checked across kinds
//! (names unique per kind and namespace, values in range), with the lookups the
//! translation needs. Built whole from a directory's resources; a mesh that fails a
//! check is refused and the last good one keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::istio::{
    AuthorizationPolicy, DestinationRule, Metadata, Protocol, Resource, ServiceEntry, Sidecar,
    Spec, VirtualService, WorkloadEntry,
};

/// The namespace whose unselected Sidecar applies to every namespace without one
/// (Istio's root namespace).
pub const ROOT_NAMESPACE: &str = "istio-system";

#[derive(Debug, Default, Clone)]
pub struct Mesh {
    pub services: Vec<(Metadata, ServiceEntry)>,
    pub workloads: Vec<(Metadata, WorkloadEntry)>,
    pub sidecars: Vec<(Metadata, Sidecar)>,
    pub virtual_services: Vec<(Metadata, VirtualService)>,
    pub destination_rules: Vec<(Metadata, DestinationRule)>,
    pub authorization_policies: Vec<(Metadata, AuthorizationPolicy)>,
    pub peer_authentications: Vec<(Metadata, super::mtls_kinds::PeerAuthentication)>,
}

/// How a ServiceEntry's endpoints are found (`resolution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Static,
    Dns,
    DnsRoundRobin,
    /// The connection's original destination (`NONE`).
    Passthrough,
}

pub fn resolution(se: &ServiceEntry) -> Resolution {
    match se.resolution.as_deref().unwrap_or("NONE") {
        "STATIC" => Resolution::Static,
        "DNS" => Resolution::Dns,
        "DNS_ROUND_ROBIN" => Resolution::DnsRoundRobin,
        _ => Resolution::Passthrough,
    }
}

impl Mesh {
    /// Checks the resources and sorts them by namespace and name (so that a service
    /// claimed twice resolves the same way on every build, as Istio's oldest-first).
    pub fn build(resources: Vec<Resource>) -> Result<Mesh, Vec<String>> {
        let mut m = Mesh::default();
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        for r in resources {
            if !seen.insert((r.kind(), r.meta.namespace.clone(), r.meta.name.clone())) {
                errors.push(format!(
                    "{}: metadata.name: a second {} with this name in namespace {}",
                    r.describe(),
                    r.kind(),
                    r.meta.namespace
                ));
                continue;
            }
            if let Err(e) = check(&r) {
                errors.push(format!("{}: {e}", r.describe()));
                continue;
            }
            match r.spec {
                Spec::ServiceEntry(s) => m.services.push((r.meta, s)),
                Spec::WorkloadEntry(w) => m.workloads.push((r.meta, w)),
                Spec::Sidecar(s) => m.sidecars.push((r.meta, s)),
                Spec::VirtualService(v) => m.virtual_services.push((r.meta, v)),
                Spec::DestinationRule(d) => m.destination_rules.push((r.meta, *d)),
                Spec::AuthorizationPolicy(a) => m.authorization_policies.push((r.meta, a)),
                Spec::PeerAuthentication(p) => m.peer_authentications.push((r.meta, p)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let key = |m: &Metadata| (m.namespace.clone(), m.name.clone());
        m.services.sort_by_key(|(a, _)| key(a));
        m.workloads.sort_by_key(|(a, _)| key(a));
        m.sidecars.sort_by_key(|(a, _)| key(a));
        m.virtual_services.sort_by_key(|(a, _)| key(a));
        m.destination_rules.sort_by_key(|(a, _)| key(a));
        m.authorization_policies.sort_by_key(|(a, _)| key(a));
        m.peer_authentications.sort_by_key(|(a, _)| key(a));
        Ok(m)
    }

    /// The WorkloadEntry a proxy is (`workload_name` of its node id).
    pub fn workload(&self, node_id: &str) -> Option<&(Metadata, WorkloadEntry)> {
        let (name, ns) = workload_name(node_id)?;
        self.workloads
            .iter()
            .find(|(m, _)| m.name == name && m.namespace == ns)
    }

    /// The Sidecar that applies to a workload: one in its namespace selecting it, else
    /// its namespace's unselected one, else the root namespace's unselected one.
    pub fn sidecar_for(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<&(Metadata, Sidecar)> {
        let find = |ns: &str, selected: bool| {
            self.sidecars.iter().find(|(m, s)| {
                m.namespace == ns
                    && match &s.workload_selector {
                        Some(w) => selected && w.selects(labels),
                        None => !selected,
                    }
            })
        };
        find(namespace, true)
            .or_else(|| find(namespace, false))
            .or_else(|| find(ROOT_NAMESPACE, false))
    }

    /// The AuthorizationPolicies that apply to a workload: the root namespace's and its
    /// namespace's without a selector, and those of its namespace that select it.
    pub fn authorization_for(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<&(Metadata, AuthorizationPolicy)> {
        self.authorization_policies
            .iter()
            .filter(|(m, p)| match &p.selector {
                None => m.namespace == ROOT_NAMESPACE || m.namespace == namespace,
                Some(sel) => m.namespace == namespace && sel.selects(labels),
            })
            .collect()
    }

    /// The DestinationRule for `host` seen from `namespace`: the proxy's namespace's
    /// first, then the host's own namespace's (Istio's lookup order).
    pub fn destination_rule(
        &self,
        host: &str,
        namespace: &str,
        service_ns: &str,
    ) -> Option<&DestinationRule> {
        let for_ns = |ns: &str| {
            self.destination_rules
                .iter()
                .find(|(m, d)| {
                    m.namespace == ns && d.host == host && exported(&d.export_to, ns, namespace)
                })
                .map(|(_, d)| d)
        };
        for_ns(namespace).or_else(|| for_ns(service_ns))
    }
}

/// The (name, namespace) a node id names: `NAME.NAMESPACE`, or Istio's
/// `sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local`.
pub fn workload_name(node_id: &str) -> Option<(&str, &str)> {
    node_id.split('~').nth(2).unwrap_or(node_id).split_once('.')
}

/// Istio's `exportTo`: empty or `*` is every namespace, `.` the resource's own.
pub fn exported(export_to: &[String], own: &str, to: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == to || (e == "." && own == to))
}

/// One resource's own checks (the error is prefixed by the resource).
fn check(r: &Resource) -> Result<(), String> {
    match &r.spec {
        Spec::ServiceEntry(s) => check_service(s),
        Spec::WorkloadEntry(w) => {
            if w.address.is_empty() {
                return Err("spec.address: missing".into());
            }
            Ok(())
        }
        Spec::Sidecar(s) => check_sidecar(s),
        Spec::VirtualService(v) => check_virtual_service(v),
        Spec::AuthorizationPolicy(a) => super::authz::check(a),
        Spec::PeerAuthentication(p) => super::mtls_kinds::check(p),
        Spec::DestinationRule(d) => {
            if d.host.is_empty() {
                return Err("spec.host: missing".into());
            }
            if let Some(t) = &d.traffic_policy {
                super::policy::check_traffic_policy(t, "spec.trafficPolicy")?;
            }
            let mut names = BTreeSet::new();
            for (i, s) in d.subsets.iter().enumerate() {
                if !names.insert(&s.name) {
                    return Err(format!("spec.subsets[{i}].name: `{}` given twice", s.name));
                }
                if let Some(t) = &s.traffic_policy {
                    super::policy::check_traffic_policy(
                        t,
                        &format!("spec.subsets[{i}].trafficPolicy"),
                    )?;
                }
            }
            Ok(())
        }
    }
}

fn check_service(s: &ServiceEntry) -> Result<(), String> {
    if s.hosts.is_empty() {
        return Err("spec.hosts: at least one host".into());
    }
    if s.ports.is_empty() {
        return Err("spec.ports: at least one port".into());
    }
    for (i, p) in s.ports.iter().enumerate() {
        p.protocol()
            .map_err(|e| format!("spec.ports[{i}].protocol: {e}"))?;
        if p.number == 0 {
            return Err(format!("spec.ports[{i}].number: 0 is not a port"));
        }
    }
    let res = s.resolution.as_deref().unwrap_or("NONE");
    if !["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"].contains(&res) {
        return Err(format!(
            "spec.resolution: `{res}` is not NONE, STATIC, DNS or DNS_ROUND_ROBIN"
        ));
    }
    if let Some(l) = s.location.as_deref() {
        if !["MESH_EXTERNAL", "MESH_INTERNAL"].contains(&l) {
            return Err(format!(
                "spec.location: `{l}` is not MESH_EXTERNAL or MESH_INTERNAL"
            ));
        }
    }
    if !s.endpoints.is_empty() && s.workload_selector.is_some() {
        return Err("spec.workloadSelector: not together with spec.endpoints".into());
    }
    for (i, e) in s.endpoints.iter().enumerate() {
        if e.address.is_empty() {
            return Err(format!("spec.endpoints[{i}].address: missing"));
        }
        if res == "STATIC" && e.address.parse::<IpAddr>().is_err() {
            return Err(format!(
                "spec.endpoints[{i}].address: `{}` is not an IP address (resolution STATIC)",
                e.address
            ));
        }
        for name in e.ports.keys() {
            if !s
                .ports
                .iter()
                .any(|p| p.name.as_deref() == Some(name.as_str()))
            {
                return Err(format!(
                    "spec.endpoints[{i}].ports.{name}: no port of the entry has this name"
                ));
            }
        }
    }
    Ok(())
}

fn check_sidecar(s: &Sidecar) -> Result<(), String> {
    for (i, e) in s.ingress.iter().enumerate() {
        e.port
            .protocol()
            .map_err(|m| format!("spec.ingress[{i}].port.protocol: {m}"))?;
        super::istio::default_endpoint(&e.default_endpoint)
            .map_err(|m| format!("spec.ingress[{i}].defaultEndpoint: {m}"))?;
        bind_ip(e.bind.as_deref()).map_err(|m| format!("spec.ingress[{i}].bind: {m}"))?;
        capture_mode(e.capture_mode.as_deref())
            .map_err(|m| format!("spec.ingress[{i}].captureMode: {m}"))?;
    }
    if let Some(mode) = s
        .outbound_traffic_policy
        .as_ref()
        .and_then(|p| p.mode.as_deref())
    {
        if mode != "ALLOW_ANY" && mode != "REGISTRY_ONLY" {
            return Err(format!(
                "spec.outboundTrafficPolicy.mode: `{mode}` is not ALLOW_ANY or REGISTRY_ONLY"
            ));
        }
    }
    let last = s.egress.len().saturating_sub(1);
    for (i, e) in s.egress.iter().enumerate() {
        // istiod's rule: one egress listener may omit the port (the catch-all for every
        // other service port), and it comes last.
        if e.port.is_none() && i != last {
            return Err(format!(
                "spec.egress[{i}].port: only the last egress listener may omit the port"
            ));
        }
        if let Some(p) = &e.port {
            p.protocol()
                .map_err(|m| format!("spec.egress[{i}].port.protocol: {m}"))?;
        }
        capture_mode(e.capture_mode.as_deref())
            .map_err(|m| format!("spec.egress[{i}].captureMode: {m}"))?;
        bind_ip(e.bind.as_deref()).map_err(|m| format!("spec.egress[{i}].bind: {m}"))?;
        if e.hosts.is_empty() {
            return Err(format!(
                "spec.egress[{i}].hosts: at least one `namespace/host`"
            ));
        }
        for (k, h) in e.hosts.iter().enumerate() {
            if h.split_once('/')
                .is_none_or(|(n, d)| n.is_empty() || d.is_empty())
            {
                return Err(format!(
                    "spec.egress[{i}].hosts[{k}]: `{h}` is not `namespace/host` (`*/*`, `./*`, `ns/name`)"
                ));
            }
        }
    }
    Ok(())
}

/// A listener's bind address (default `0.0.0.0`, as Istio's for `captureMode: NONE`).
/// A Sidecar listener's `captureMode`: `DEFAULT`, `IPTABLES` (both: taken from the
/// proxy's interception) or `NONE` (a bound listener); whether it is `NONE`.
pub fn capture_mode(mode: Option<&str>) -> Result<bool, String> {
    match mode {
        None | Some("DEFAULT") | Some("IPTABLES") => Ok(false),
        Some("NONE") => Ok(true),
        Some(m) => Err(format!("`{m}` is not DEFAULT, IPTABLES or NONE")),
    }
}

pub fn bind_ip(bind: Option<&str>) -> Result<IpAddr, String> {
    let b = bind.unwrap_or("0.0.0.0");
    b.parse().map_err(|_| format!("`{b}` is not an IP address"))
}

fn check_virtual_service(v: &VirtualService) -> Result<(), String> {
    if v.hosts.is_empty() {
        return Err("spec.hosts: at least one host".into());
    }
    if v.gateways.iter().any(|g| g != "mesh") {
        return Err("spec.gateways: only `mesh` is served (no gateways yet)".into());
    }
    for (i, h) in v.http.iter().enumerate() {
        let at = format!("spec.http[{i}]");
        super::policy::check_route(h, &at)?;
        for (k, m) in h.matches.iter().enumerate() {
            let sm = m
                .uri
                .iter()
                .map(|u| ("uri".to_string(), u))
                .chain(m.method.iter().map(|u| ("method".to_string(), u)))
                .chain(m.headers.iter().map(|(n, u)| (format!("headers.{n}"), u)));
            for (name, s) in sm {
                let set = [&s.exact, &s.prefix, &s.regex]
                    .iter()
                    .filter(|x| x.is_some())
                    .count();
                if set != 1 {
                    return Err(format!(
                        "{at}.match[{k}].{name}: exactly one of exact, prefix, regex"
                    ));
                }
                if let Some(r) = &s.regex {
                    regex_automata::meta::Regex::new(r)
                        .map_err(|e| format!("{at}.match[{k}].{name}.regex: {e}"))?;
                }
            }
        }
        for (k, d) in h.route.iter().enumerate() {
            if d.destination.host.is_empty() {
                return Err(format!("{at}.route[{k}].destination.host: missing"));
            }
        }
        if h.route.len() > 1 && h.route.iter().all(|d| d.weight.unwrap_or(0) == 0) {
            return Err(format!(
                "{at}.route: several destinations need weights (a total above 0)"
            ));
        }
    }
    Ok(())
}

/// The protocol of `port` on a service (for the listener and the cluster).
pub fn protocol(se: &ServiceEntry, port: u16) -> Protocol {
    se.ports
        .iter()
        .find(|p| p.number == port)
        .and_then(|p| p.protocol().ok())
        .unwrap_or(Protocol::Tcp)
}
