//! DestinationRule `trafficPolicy.loadBalancer` as read (a leaf below `istio.rs`, so
//! the checks and the translation in `hashing.rs` can use it without a cycle).

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancer {
    #[serde(default)]
    pub simple: Option<String>,
    #[serde(default)]
    pub consistent_hash: Option<ConsistentHash>,
}

/// `loadBalancer.consistentHash`: a ring hash (or Maglev) cluster, and what the routes
/// to it hash (`hashing.rs`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsistentHash {
    #[serde(default)]
    pub http_header_name: Option<String>,
    #[serde(default)]
    pub http_cookie: Option<HttpCookie>,
    #[serde(default)]
    pub use_source_ip: Option<bool>,
    #[serde(default)]
    pub http_query_parameter_name: Option<String>,
    #[serde(default)]
    pub ring_hash: Option<RingHash>,
    #[serde(default)]
    pub maglev: Option<Maglev>,
    /// Deprecated in Istio for `ringHash.minimumRingSize`.
    #[serde(default)]
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpCookie {
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RingHash {
    #[serde(default)]
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Maglev {
    #[serde(default)]
    pub table_size: Option<u64>,
}

/// Envoy's largest ring (`maximum_ring_size`'s default).
const MAX_RING: u64 = 8 << 20;

/// The checks istiod's validation makes, with the field's path.
pub fn check(lb: &LoadBalancer, at: &str) -> Result<(), String> {
    let Some(ch) = &lb.consistent_hash else {
        return Ok(());
    };
    let at = format!("{at}.loadBalancer.consistentHash");
    if lb.simple.is_some() {
        return Err(format!(
            "{at}: `simple` and `consistentHash` are one choice, not both"
        ));
    }
    let keys = [
        ch.http_header_name.is_some(),
        ch.http_cookie.is_some(),
        ch.use_source_ip.is_some(),
        ch.http_query_parameter_name.is_some(),
    ];
    if keys.iter().filter(|k| **k).count() > 1 {
        return Err(format!(
            "{at}: one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName"
        ));
    }
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        return Err(format!("{at}: ringHash or maglev, not both"));
    }
    if let Some(c) = &ch.http_cookie {
        if c.name.is_empty() {
            return Err(format!("{at}.httpCookie.name: required"));
        }
        if let Some(t) = &c.ttl {
            crate::config::duration::parse_duration(t)
                .map_err(|e| format!("{at}.httpCookie.ttl: {e}"))?;
        }
    }
    for (field, size) in [
        (
            "ringHash.minimumRingSize",
            ch.ring_hash.as_ref().and_then(|r| r.minimum_ring_size),
        ),
        ("minimumRingSize", ch.minimum_ring_size),
    ] {
        if size.is_some_and(|n| n > MAX_RING) {
            return Err(format!("{at}.{field}: at most {MAX_RING}"));
        }
    }
    if let Some(n) = ch.maglev.as_ref().and_then(|m| m.table_size) {
        // Envoy's bound on the table.
        if n > 5_000_011 {
            return Err(format!("{at}.maglev.tableSize: at most 5000011"));
        }
        if !prime(n) {
            return Err(format!("{at}.maglev.tableSize: {n} is not a prime"));
        }
    }
    Ok(())
}

fn prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d: &u64| d.checked_mul(*d).is_some_and(|sq| sq <= n))
            .all(|d| !n.is_multiple_of(d))
}
