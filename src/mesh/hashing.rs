//! DestinationRule `loadBalancer.consistentHash`, as istiod translates it: the
//! service's clusters balance with `RING_HASH` (`ringHash.minimumRingSize`, or the
//! deprecated `minimumRingSize`) or `MAGLEV` (`maglev.tableSize`), and every route
//! whose one destination is such a cluster carries the `hash_policy` that says what a
//! request hashes: `httpHeaderName` (a header), `httpCookie` (`name`, `path`, `ttl`: a
//! cookie, generated with a `ttl`), `useSourceIp` (the client's address) or
//! `httpQueryParameterName` (a query parameter). A subset's load balancer replaces the
//! rule's for that subset, as in `translate::clusters`. Routes that split traffic
//! between several destinations get no hash policy (istiod's default).

use serde_json::{json, Value};

use super::lb_kinds::{ConsistentHash, LoadBalancer};
use super::model::Mesh;
use super::policy::proto_duration;

/// The cluster's `lb_policy` (and its config) for `lb`; `LEAST_REQUEST` without one,
/// istiod's default.
pub fn cluster_lb(c: &mut Value, lb: Option<&LoadBalancer>) {
    let Some(ch) = lb.and_then(|l| l.consistent_hash.as_ref()) else {
        let simple = lb
            .and_then(|l| l.simple.as_deref())
            .and_then(|s| super::istio::lb_policy(s).ok())
            .unwrap_or("LEAST_REQUEST");
        c["lb_policy"] = json!(simple);
        return;
    };
    if let Some(m) = &ch.maglev {
        c["lb_policy"] = json!("MAGLEV");
        if let Some(n) = m.table_size {
            c["maglev_lb_config"] = json!({"table_size": n});
        }
        return;
    }
    c["lb_policy"] = json!("RING_HASH");
    let min = ch
        .ring_hash
        .as_ref()
        .and_then(|r| r.minimum_ring_size)
        .or(ch.minimum_ring_size)
        .filter(|n| *n > 0);
    if let Some(n) = min {
        c["ring_hash_lb_config"] = json!({"minimum_ring_size": n});
    }
}

/// Envoy's `hash_policy` for `ch` (none without a hash key).
fn hash_policy(ch: &ConsistentHash) -> Option<Value> {
    if let Some(h) = &ch.http_header_name {
        return Some(json!([{"header": {"header_name": h}}]));
    }
    if let Some(c) = &ch.http_cookie {
        let mut cookie = json!({"name": c.name});
        if let Some(p) = &c.path {
            cookie["path"] = json!(p);
        }
        if let Some(t) = c
            .ttl
            .as_deref()
            .and_then(|t| crate::config::duration::parse_duration(t).ok())
        {
            cookie["ttl"] = json!(proto_duration(t));
        }
        return Some(json!([{ "cookie": cookie }]));
    }
    if ch.use_source_ip == Some(true) {
        return Some(json!([{"connection_properties": {"source_ip": true}}]));
    }
    ch.http_query_parameter_name
        .as_ref()
        .map(|q| json!([{"query_parameter": {"name": q}}]))
}

/// Adds the hash policy to each route of `routes` whose one destination cluster
/// (`outbound|PORT|SUBSET|HOST`) balances by consistent hash for a proxy in
/// `namespace`.
pub fn apply(mesh: &Mesh, namespace: &str, routes: &mut [Value]) {
    for r in routes {
        let Some(cluster) = r["route"]["cluster"].as_str() else {
            continue;
        };
        let Some(policy) = for_cluster(mesh, namespace, cluster) else {
            continue;
        };
        r["route"]["hash_policy"] = policy;
    }
}

fn for_cluster(mesh: &Mesh, namespace: &str, cluster: &str) -> Option<Value> {
    let mut parts = cluster.split('|');
    let (_, _, subset, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let (meta, _) = mesh
        .services
        .iter()
        .find(|(_, se)| se.hosts.iter().any(|h| h == host))?;
    let dr = mesh.destination_rule(host, namespace, &meta.namespace)?;
    let top = dr
        .traffic_policy
        .as_ref()
        .and_then(|t| t.load_balancer.as_ref());
    let lb = dr
        .subsets
        .iter()
        .find(|s| !subset.is_empty() && s.name == subset)
        .and_then(|s| s.traffic_policy.as_ref())
        .and_then(|t| t.load_balancer.as_ref())
        .or(top)?;
    hash_policy(lb.consistent_hash.as_ref()?)
}
