//! One proxy's view of the mesh as Envoy v3 resources (Istio's translation, for the
//! kinds this control plane serves): written in proto3 JSON, as an Envoy config reads,
//! and encoded with the descriptors the proxy's own xDS client decodes with.
//!
//! Names follow istiod's, so that dashboards and `/config_dump` read the same:
//! clusters `outbound|PORT|SUBSET|HOST` and `inbound|PORT||`, listeners `BIND_PORT`.
//!
//! - Sidecar egress listeners: `egress.rs`.
//! - Sidecar ingress listener: bound at `bind:port`, to the cluster `inbound|PORT||` at
//!   the `defaultEndpoint`.
//! - A virtual host's routes come from the first VirtualService (by namespace, name)
//!   that names the host; without one, one route to the service's cluster with
//!   istiod's default retry policy and no timeout.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};

use super::istio::{
    Destination, HeaderOps, HttpRoute, Metadata, Protocol, ServiceEntry, SidecarIngress,
    StringMatch, TrafficPolicy, WorkloadEntry,
};
use super::model::{self, exported, resolution, Mesh, Resolution};
use super::peer_auth::{self, Mode};
use super::policy::proto_duration;

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// Served from the plane's certificates, not the view (`plane.rs`).
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The four types in the order a push sends them (clusters and their endpoints before
/// the listeners and routes that use them, as Envoy's ADS ordering asks).
pub const TYPES: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];

pub(super) const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

/// istiod's default retry policy on a route a VirtualService does not set.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// What a proxy is in the mesh: its namespace and labels (from its WorkloadEntry, or
/// from the node's metadata `NAMESPACE` and `LABELS`, as istiod reads a pod's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proxy {
    pub id: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// It showed a token and has a workload certificate (`peer_auth.rs`: what a proxy
    /// without one is sent).
    pub authenticated: bool,
    /// Its node metadata says `INTERCEPTION_MODE: REDIRECT`: iptables sends it the
    /// pod's traffic (`capture.rs`).
    pub capture: bool,
}

impl Proxy {
    /// The proxy named by `node_id`, placed by its WorkloadEntry when there is one.
    pub fn identify(
        mesh: &Mesh,
        node_id: &str,
        namespace: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Proxy {
        if let Some((m, w)) = mesh.workload(node_id) {
            let mut l = m.labels.clone();
            l.extend(w.labels.clone());
            return Proxy {
                id: node_id.to_string(),
                namespace: m.namespace.clone(),
                labels: l,
                authenticated: false,
                capture: false,
            };
        }
        let from_id = model::workload_name(node_id).map(|(_, ns)| ns.to_string());
        Proxy {
            id: node_id.to_string(),
            namespace: namespace
                .map(str::to_string)
                .or(from_id)
                .unwrap_or_else(|| "default".to_string()),
            labels,
            authenticated: false,
            capture: false,
        }
    }
}

/// A proxy's resources: type URL -> name -> proto3 JSON.
pub type View = BTreeMap<&'static str, BTreeMap<String, Value>>;

/// Bound listeners for Sidecar ingress entries, each to its `inbound|PORT||` cluster.
pub(super) fn bound_ingress<'s>(
    mesh: &Mesh,
    proxy: &Proxy,
    trust_domain: &str,
    entries: impl Iterator<Item = &'s SidecarIngress>,
    put: &mut dyn FnMut(&'static str, String, Value),
) {
    let rbac = super::authz::filters(&mesh.authorization_for(&proxy.namespace, &proxy.labels));
    for i in entries {
        let mode = peer_auth::inbound_mode(mesh, &proxy.namespace, &proxy.labels, i.port.number);
        // Without a certificate a PERMISSIVE port can only take plaintext.
        let tls = match mode {
            Mode::Strict => Some((trust_domain, true)),
            Mode::Permissive if proxy.authenticated => Some((trust_domain, false)),
            _ => None,
        };
        let (cluster, c) = ingress_cluster(i);
        put(CLUSTER, cluster, c);
        let (name, l) = inbound(i, &rbac, tls);
        put(LISTENER, name, l);
    }
}

/// A host pattern (`*`, `*.example.com`, or exact) against a host.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

pub fn cluster_name(port: u16, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// The service's clusters for `host:port`, its subsets' after it: (name, cluster, its
/// endpoints when served over EDS).
pub(super) fn clusters(
    mesh: &Mesh,
    proxy: &Proxy,
    trust_domain: &str,
    meta: &Metadata,
    se: &ServiceEntry,
    host: &str,
    port: u16,
) -> Vec<(String, Value, Option<Value>)> {
    let dr = mesh.destination_rule(host, &proxy.namespace, &meta.namespace);
    let top = dr
        .and_then(|d| d.traffic_policy.clone())
        .unwrap_or_default();
    let at = Where {
        mesh,
        proxy,
        trust_domain,
        meta,
        se,
        host,
        port,
    };
    let mut out = vec![one_cluster(&at, "", &BTreeMap::new(), &top)];
    for s in dr.map(|d| d.subsets.as_slice()).unwrap_or(&[]) {
        // A subset's policy overrides the rule's, field by field (istiod's merge).
        let mut tp = top.clone();
        if let Some(sp) = &s.traffic_policy {
            tp.load_balancer = sp.load_balancer.clone().or(tp.load_balancer);
            tp.connection_pool = sp.connection_pool.clone().or(tp.connection_pool);
            tp.outlier_detection = sp.outlier_detection.clone().or(tp.outlier_detection);
            tp.tls = sp.tls.clone().or(tp.tls);
        }
        out.push(one_cluster(&at, &s.name, &s.labels, &tp));
    }
    out
}

/// The service port a cluster is for, and who asks.
struct Where<'a> {
    mesh: &'a Mesh,
    proxy: &'a Proxy,
    trust_domain: &'a str,
    meta: &'a Metadata,
    se: &'a ServiceEntry,
    host: &'a str,
    port: u16,
}

fn one_cluster(
    at: &Where,
    subset: &str,
    labels: &BTreeMap<String, String>,
    tp: &TrafficPolicy,
) -> (String, Value, Option<Value>) {
    let Where {
        mesh,
        meta,
        se,
        host,
        port,
        ..
    } = *at;
    let name = cluster_name(port, subset, host);
    let mut c = json!({
        "name": name,
        "connect_timeout": "10s",
    });
    super::hashing::cluster_lb(&mut c, tp.load_balancer.as_ref());
    let res = resolution(se);
    let (eps, workloads) = endpoints(
        mesh,
        meta,
        se,
        port,
        labels,
        res != Resolution::Static,
        host,
    );
    let endpoint_labels: Vec<_> = workloads.iter().map(|(_, w)| &w.labels).collect();
    let mtls = peer_auth::outbound_mtls(
        tp.tls.as_ref(),
        &endpoint_labels,
        at.proxy.authenticated,
        res == Resolution::Static,
    );
    if mtls != peer_auth::Outbound::Plain {
        let mut peers: Vec<String> = tp
            .tls
            .as_ref()
            .map(|t| t.subject_alt_names.clone())
            .unwrap_or_default();
        if peers.is_empty() {
            peers = workloads
                .iter()
                .filter(|(_, w)| {
                    mtls == peer_auth::Outbound::Mtls || peer_auth::has_sidecar(&w.labels)
                })
                .map(|(ns, w)| {
                    let sa = w.service_account.as_deref().unwrap_or("default");
                    super::ca::spiffe_id(at.trust_domain, ns, sa)
                })
                .collect();
            peers.sort();
            peers.dedup();
        }
        let sni = tp
            .tls
            .as_ref()
            .and_then(|t| t.sni.clone())
            .unwrap_or_else(|| peer_auth::sni(port, subset, host));
        let h2 = model::protocol(se, port) == Protocol::Http2;
        let tls = peer_auth::upstream(at.trust_domain, &sni, &peers, h2);
        if mtls == peer_auth::Outbound::Mixed {
            c["transport_socket_matches"] = peer_auth::socket_matches(tls);
        } else {
            c["transport_socket"] = tls;
        }
    } else if let Some(ts) = tp.tls.as_ref().and_then(|t| peer_auth::external(t, host)) {
        c["transport_socket"] = ts;
    }
    let mut eds = None;
    match res {
        Resolution::Static => {
            c["type"] = json!("EDS");
            c["eds_cluster_config"] = json!({
                "eds_config": {"ads": {}, "resource_api_version": "V3"},
                "service_name": name
            });
            eds = Some(json!({"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]}));
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            c["type"] = json!(if res == Resolution::Dns {
                "STRICT_DNS"
            } else {
                "LOGICAL_DNS"
            });
            c["dns_lookup_family"] = json!("V4_ONLY");
            c["load_assignment"] =
                json!({"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]});
        }
        Resolution::Passthrough => {
            c["type"] = json!("ORIGINAL_DST");
            c["lb_policy"] = json!("CLUSTER_PROVIDED");
        }
    }
    let http2 = model::protocol(se, port) == Protocol::Http2;
    super::policy::cluster_policy(
        &mut c,
        tp.connection_pool.as_ref(),
        tp.outlier_detection.as_ref(),
        http2,
    );
    (name, c, eds)
}

/// The lb_endpoints of `se` on `port` whose labels include `labels`: the entry's own
/// endpoints, or the WorkloadEntries its selector picks in its namespace. A DNS entry
/// without endpoints resolves its host.
fn endpoints<'m>(
    mesh: &'m Mesh,
    meta: &'m Metadata,
    se: &'m ServiceEntry,
    port: u16,
    labels: &BTreeMap<String, String>,
    dns: bool,
    host: &str,
) -> (Vec<Value>, Vec<(&'m str, &'m WorkloadEntry)>) {
    let Some(sp) = se.ports.iter().find(|p| p.number == port) else {
        return (Vec::new(), Vec::new());
    };
    let target = |w: &WorkloadEntry| {
        sp.name
            .as_ref()
            .and_then(|n| w.ports.get(n).copied())
            .or(sp.target_port)
            .unwrap_or(sp.number)
    };
    let selected: Vec<(&str, &WorkloadEntry)> = match &se.workload_selector {
        Some(sel) => mesh
            .workloads
            .iter()
            .filter(|(m, w)| m.namespace == meta.namespace && sel.selects(&w.labels))
            .map(|(m, w)| (m.namespace.as_str(), w))
            .collect(),
        None => se
            .endpoints
            .iter()
            .map(|w| (meta.namespace.as_str(), w))
            .collect(),
    };
    let selected: Vec<_> = selected
        .into_iter()
        .filter(|(_, w)| labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
        .collect();
    let mut out: Vec<Value> = selected
        .iter()
        .map(|(_, w)| {
            let mut e = json!({"endpoint": {"address": {"socket_address": {
                "address": w.address, "port_value": target(w)
            }}}});
            if let Some(weight) = w.weight.filter(|w| *w > 0) {
                e["load_balancing_weight"] = json!(weight);
            }
            // What a cluster's `tlsMode-istio` transport socket match looks for.
            if peer_auth::has_sidecar(&w.labels) {
                e["metadata"] = json!({"filter_metadata": {
                    "envoy.transport_socket_match": {"tlsMode": "istio"}
                }});
            }
            e
        })
        .collect();
    if out.is_empty() && dns && se.endpoints.is_empty() && se.workload_selector.is_none() {
        out.push(json!({"endpoint": {"address": {"socket_address": {
            "address": host, "port_value": sp.target_port.unwrap_or(sp.number)
        }}}}));
    }
    (out, selected)
}

/// An HTTP listener with the given route source (`rds` or `route_config`); `first`
/// filters go before istiod's fault, CORS and router.
pub(super) fn http_listener(
    name: &str,
    bind: IpAddr,
    port: u16,
    routes: Value,
    direction: &str,
    first: &[Value],
) -> Value {
    let mut filters = first.to_vec();
    if let Value::Array(rest) = super::policy::http_filters() {
        filters.extend(rest);
    }
    let mut hcm = json!({
        "@type": HCM,
        "stat_prefix": format!("{}_{name}", direction.to_ascii_lowercase()),
        "http_filters": filters
    });
    if let (Some(h), Some(r)) = (hcm.as_object_mut(), routes.as_object()) {
        h.extend(r.clone());
    }
    json!({
        "name": name,
        "address": {"socket_address": {"address": bind.to_string(), "port_value": port}},
        "traffic_direction": direction,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm
        }]}]
    })
}

pub(super) fn tcp_listener(
    name: &str,
    bind: IpAddr,
    port: u16,
    cluster: &str,
    direction: &str,
) -> Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": bind.to_string(), "port_value": port}},
        "traffic_direction": direction,
        "filter_chains": [{"filters": [tcp_proxy(cluster)]}]
    })
}

/// A TCP proxy filter to `cluster`.
pub(super) fn tcp_proxy(cluster: &str) -> Value {
    json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {"@type": TCP_PROXY, "stat_prefix": cluster, "cluster": cluster}
    })
}

/// A Sidecar ingress entry's cluster: `inbound|PORT||`, to its `defaultEndpoint`.
pub(super) fn ingress_cluster(i: &SidecarIngress) -> (String, Value) {
    let port = i.port.number;
    let cluster = format!("inbound|{port}||");
    let app = super::istio::default_endpoint(&i.default_endpoint)
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], port)));
    let mut c = json!({
        "name": cluster,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": app.ip().to_string(), "port_value": app.port()}}}}
        ]}]}
    });
    let proto = i.port.protocol().unwrap_or(Protocol::Tcp);
    super::policy::cluster_policy(&mut c, None, None, proto == Protocol::Http2);
    (cluster, c)
}

/// A Sidecar ingress entry's bound listener: (name, listener); `rbac`, the workload's
/// authorization filters, go first in its connection manager; `tls`, the trust domain
/// and whether only mTLS is taken (STRICT) or plaintext too (PERMISSIVE).
fn inbound(i: &SidecarIngress, rbac: &[Value], tls: Option<(&str, bool)>) -> (String, Value) {
    let port = i.port.number;
    let bind = model::bind_ip(i.bind.as_deref()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let name = format!("{bind}_{port}");
    let cluster = format!("inbound|{port}||");
    let proto = i.port.protocol().unwrap_or(Protocol::Tcp);
    let l = if proto == Protocol::Tcp {
        tcp_listener(&name, bind, port, &cluster, "INBOUND")
    } else {
        http_listener(
            &name,
            bind,
            port,
            inbound_routes(&cluster, port),
            "INBOUND",
            rbac,
        )
    };
    let l = match tls {
        Some((trust_domain, strict)) => mtls_inbound(l, &cluster, trust_domain, strict),
        None => l,
    };
    (name, l)
}

/// An inbound port's inline route table: everything to its `inbound|PORT||` cluster,
/// with no timeout (istiod's).
pub(super) fn inbound_routes(cluster: &str, port: u16) -> Value {
    json!({"route_config": {
        "name": cluster,
        "validate_clusters": false,
        "virtual_hosts": [{"name": format!("inbound|http|{port}"), "domains": ["*"], "routes": [{
            "name": "default",
            "match": {"prefix": "/"},
            "route": {"cluster": cluster, "timeout": "0s"}
        }]}]
    }})
}

/// An inbound listener taking mTLS ([`mtls_chains`] of its chain); when not `strict`,
/// with the TLS inspector that picks between the two chains.
fn mtls_inbound(mut l: Value, cluster: &str, trust_domain: &str, strict: bool) -> Value {
    let Some(plain) = l.pointer("/filter_chains/0").cloned() else {
        return l;
    };
    l["filter_chains"] = json!(mtls_chains(plain, cluster, trust_domain, strict));
    if !strict {
        l["listener_filters"] = json!([{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
        }]);
    }
    l
}

/// The chains for a plaintext chain (to `cluster`) that is to take mTLS: the same
/// chain with the mesh's TLS (and the peer's certificate passed on in
/// `x-forwarded-client-cert`, as istiod sets it); unless `strict`, matched on
/// `transport_protocol: tls` with the mesh's ALPN, then a TCP proxy for other TLS (an
/// application's own), then the plaintext chain for the rest.
pub(super) fn mtls_chains(
    plain: Value,
    cluster: &str,
    trust_domain: &str,
    strict: bool,
) -> Vec<Value> {
    let mut secure = plain.clone();
    secure["transport_socket"] = peer_auth::downstream(trust_domain);
    if let Some(hcm) = secure.pointer_mut("/filters/0/typed_config") {
        if hcm.get("@type").and_then(Value::as_str) == Some(HCM) {
            hcm["forward_client_cert_details"] = json!("APPEND_FORWARD");
            hcm["set_current_client_cert_details"] =
                json!({"subject": true, "dns": true, "uri": true});
        }
    }
    if let Some(n) = secure.get("name").and_then(Value::as_str) {
        secure["name"] = json!(format!("{n}-mtls"));
    }
    if strict {
        return vec![secure];
    }
    let mut m = secure
        .get("filter_chain_match")
        .cloned()
        .unwrap_or_else(|| json!({}));
    m["transport_protocol"] = json!("tls");
    // Only the mesh's TLS (its ALPN); an application's own TLS passes through to the
    // workload untouched, a TCP proxy as istiod's PERMISSIVE chains (chain matching
    // does not fall back from `tls` to the plaintext chain).
    let mut own_tls = json!({"filter_chain_match": m.clone(), "filters": [tcp_proxy(cluster)]});
    if let Some(n) = plain.get("name").and_then(Value::as_str) {
        own_tls["name"] = json!(format!("{n}-tls-passthrough"));
    }
    m["application_protocols"] = json!(peer_auth::MESH_ALPNS);
    secure["filter_chain_match"] = m;
    vec![secure, own_tls, plain]
}

/// The route table of an HTTP egress listener.
pub(super) fn route_table(
    mesh: &Mesh,
    proxy: &Proxy,
    name: &str,
    port: u16,
    services: &[(&Metadata, &ServiceEntry)],
) -> Value {
    let mut vhosts = Vec::new();
    // A domain goes to the first service that claims it (Envoy refuses a table with
    // a domain twice): a host another service already has is skipped, as istiod
    // keeps the first, and an address already taken is left out.
    let mut taken = std::collections::BTreeSet::new();
    for (_, se) in services {
        for host in &se.hosts {
            if !taken.insert(host.clone()) {
                continue;
            }
            let mut domains = vec![json!(host), json!(format!("{host}:{port}"))];
            for a in &se.addresses {
                if taken.insert(a.clone()) {
                    domains.push(json!(a));
                    domains.push(json!(format!("{a}:{port}")));
                }
            }
            let mut routes: Vec<Value> = match virtual_service(mesh, proxy, host) {
                Some(http) if !http.is_empty() => {
                    http.iter().flat_map(|r| routes(r, port)).collect()
                }
                _ => vec![default_route(&cluster_name(port, "", host))],
            };
            super::hashing::apply(mesh, &proxy.namespace, &mut routes);
            vhosts.push(
                json!({"name": format!("{host}:{port}"), "domains": domains, "routes": routes}),
            );
        }
    }
    json!({"name": name, "validate_clusters": false, "virtual_hosts": vhosts})
}

/// The HTTP routes of the first VirtualService (by namespace, name) visible to the
/// proxy that names `host`.
fn virtual_service<'m>(mesh: &'m Mesh, proxy: &Proxy, host: &str) -> Option<&'m [HttpRoute]> {
    mesh.virtual_services
        .iter()
        .find(|(m, v)| {
            exported(&v.export_to, &m.namespace, &proxy.namespace)
                && v.hosts.iter().any(|h| host_matches(h, host))
        })
        .map(|(_, v)| v.http.as_slice())
}

fn default_route(cluster: &str) -> Value {
    json!({
        "name": "default",
        "match": {"prefix": "/"},
        "route": {
            "cluster": cluster,
            "timeout": "0s",
            "retry_policy": default_retry(),
        }
    })
}

fn default_retry() -> Value {
    json!({
        "retry_on": DEFAULT_RETRY_ON,
        "num_retries": 2,
        "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
        "host_selection_retry_max_attempts": 5,
        "retriable_status_codes": [503]
    })
}

/// One Istio HTTP route as Envoy routes: one per match (or one matching everything).
fn routes(r: &HttpRoute, port: u16) -> Vec<Value> {
    let cluster_of = |d: &Destination| {
        cluster_name(
            d.port.as_ref().map_or(port, |p| p.number),
            d.subset.as_deref().unwrap_or(""),
            &d.host,
        )
    };
    let mut base = json!({"route": action(r, &cluster_of)});
    super::policy::route_extras(r, &mut base, &cluster_of);
    if let Some(n) = &r.name {
        base["name"] = json!(n);
    }
    if let Some(h) = r.headers.as_ref() {
        header_ops(&mut base, "request", h.request.as_ref());
        header_ops(&mut base, "response", h.response.as_ref());
    }
    if r.matches.is_empty() {
        let mut one = base;
        one["match"] = json!({"prefix": "/"});
        return vec![one];
    }
    r.matches
        .iter()
        .map(|m| {
            let mut one = base.clone();
            let mut mt = match &m.uri {
                Some(StringMatch { exact: Some(e), .. }) => json!({"path": e}),
                Some(StringMatch {
                    prefix: Some(p), ..
                }) => json!({"prefix": p}),
                Some(StringMatch { regex: Some(x), .. }) => {
                    json!({"safe_regex": {"regex": x}})
                }
                _ => json!({"prefix": "/"}),
            };
            if m.ignore_uri_case {
                mt["case_sensitive"] = json!(false);
            }
            let mut headers: Vec<Value> = m
                .headers
                .iter()
                .map(|(n, s)| header_matcher(n, s))
                .collect();
            if let Some(method) = &m.method {
                headers.push(header_matcher(":method", method));
            }
            if !headers.is_empty() {
                mt["headers"] = json!(headers);
            }
            one["match"] = mt;
            one
        })
        .collect()
}

fn header_matcher(name: &str, s: &StringMatch) -> Value {
    json!({"name": name, "string_match": super::policy::string_match(s)})
}

fn header_ops(route: &mut Value, side: &str, ops: Option<&HeaderOps>) {
    let Some(ops) = ops else { return };
    let mut add: Vec<Value> = Vec::new();
    for (k, v) in &ops.set {
        add.push(json!({"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}));
    }
    for (k, v) in &ops.add {
        add.push(
            json!({"header": {"key": k, "value": v}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}),
        );
    }
    if !add.is_empty() {
        route[format!("{side}_headers_to_add")] = json!(add);
    }
    if !ops.remove.is_empty() {
        route[format!("{side}_headers_to_remove")] = json!(ops.remove);
    }
}

/// The route action: one cluster, or weighted clusters; the route's timeout (none by
/// default, as istiod) and retries (istiod's default policy when not given).
fn action(r: &HttpRoute, cluster_of: &dyn Fn(&Destination) -> String) -> Value {
    let mut a = match r.route.as_slice() {
        [one] => json!({"cluster": cluster_of(&one.destination)}),
        many => {
            let clusters: Vec<Value> = many
                .iter()
                .filter(|d| d.weight.unwrap_or(0) > 0)
                .map(|d| json!({"name": cluster_of(&d.destination), "weight": d.weight.unwrap_or(0)}))
                .collect();
            json!({"weighted_clusters": {"clusters": clusters}})
        }
    };
    let timeout = r
        .timeout
        .as_deref()
        .and_then(|t| crate::config::duration::parse_duration(t).ok())
        .unwrap_or_default();
    a["timeout"] = json!(proto_duration(timeout));
    match &r.retries {
        None => a["retry_policy"] = default_retry(),
        Some(x) if x.attempts == 0 => {}
        Some(x) => {
            let mut p = json!({"num_retries": x.attempts});
            let mut on = Vec::new();
            let mut codes = Vec::new();
            for part in x.retry_on.as_deref().unwrap_or(DEFAULT_RETRY_ON).split(',') {
                let part = part.trim();
                match part.parse::<u32>() {
                    Ok(code) => codes.push(code),
                    Err(_) if !part.is_empty() => on.push(part),
                    Err(_) => {}
                }
            }
            if !codes.is_empty() && !on.contains(&"retriable-status-codes") {
                on.push("retriable-status-codes");
            }
            p["retry_on"] = json!(on.join(","));
            if !codes.is_empty() {
                p["retriable_status_codes"] = json!(codes);
            }
            if let Some(t) = x
                .per_try_timeout
                .as_deref()
                .and_then(|t| crate::config::duration::parse_duration(t).ok())
            {
                p["per_try_timeout"] = json!(proto_duration(t));
            }
            a["retry_policy"] = p;
        }
    }
    a
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
