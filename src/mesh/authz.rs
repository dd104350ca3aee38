//! AuthorizationPolicy (`security.istio.io`) in istiod's translation: the policies that
//! apply to a workload become RBAC filters on its sidecar's inbound connection
//! managers, a DENY filter before an ALLOW filter, before the router. A policy applies
//! when it is in the root namespace without a selector (the whole mesh), in the
//! workload's namespace without a selector, or selects the workload's labels.
//!
//! Each rule is one RBAC policy, `ns[NS]-policy[NAME]-rule[I]`: its `to` operations
//! (OR; each operation's fields AND; each field's values OR) and its `when` conditions
//! on the request are the permissions, its `from` sources and `when` conditions on the
//! peer the principals. A rule without `from`, `to` and `when` matches every request;
//! a policy without rules matches none, so an ALLOW policy without rules denies all.
//! Identities (`principals`, `namespaces`) match the peer certificate's SPIFFE ID, as
//! istiod writes them: without mutual TLS nothing carries one, and they never match.

use serde_json::{json, Value};

use super::istio::{AuthorizationPolicy, Condition, Metadata, Operation, Rule, Source};

/// Whether a `when` key is about the request (a permission) or the peer (a principal).
enum Side {
    Request,
    Peer,
}

/// Checks a policy (`spec.` paths in the errors).
pub fn check(p: &AuthorizationPolicy) -> Result<(), String> {
    let action = p.action.as_deref().unwrap_or("ALLOW");
    if action != "ALLOW" && action != "DENY" {
        return Err(format!(
            "spec.action: `{action}` is not served (ALLOW or DENY; AUDIT and CUSTOM not yet)"
        ));
    }
    for (i, r) in p.rules.iter().enumerate() {
        for (k, f) in r.from.iter().enumerate() {
            let s = &f.source;
            for (name, v) in [
                ("ipBlocks", &s.ip_blocks),
                ("notIpBlocks", &s.not_ip_blocks),
                ("remoteIpBlocks", &s.remote_ip_blocks),
                ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
            ] {
                for (j, b) in v.iter().enumerate() {
                    cidr(b).map_err(|e| {
                        format!("spec.rules[{i}].from[{k}].source.{name}[{j}]: {e}")
                    })?;
                }
            }
        }
        for (k, t) in r.to.iter().enumerate() {
            let o = &t.operation;
            for (name, v) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
                for (j, port) in v.iter().enumerate() {
                    port.parse::<u16>().map_err(|_| {
                        format!(
                            "spec.rules[{i}].to[{k}].operation.{name}[{j}]: `{port}` is not a port"
                        )
                    })?;
                }
            }
        }
        for (k, c) in r.when.iter().enumerate() {
            condition(c).map_err(|e| format!("spec.rules[{i}].when[{k}]: {e}"))?;
        }
    }
    Ok(())
}

/// `10.0.0.0/8` or `10.1.2.3` as Envoy's CidrRange.
fn cidr(s: &str) -> Result<Value, String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, l)) => (ip, Some(l)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = ip
        .parse()
        .map_err(|_| format!("`{s}` is not an IP address or CIDR range"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("`{s}`: the prefix length is not 0-{max}"))?,
        None => max,
    };
    Ok(json!({"address_prefix": addr.to_string(), "prefix_len": len}))
}

/// A `when` condition: which side it is on and its matcher for one value.
fn condition(c: &Condition) -> Result<(Side, Vec<Value>, Vec<Value>), String> {
    if c.values.is_empty() && c.not_values.is_empty() {
        return Err("values or notValues".into());
    }
    let each = |v: &[String], f: &dyn Fn(&str) -> Result<Value, String>| {
        v.iter().map(|x| f(x)).collect::<Result<Vec<_>, String>>()
    };
    let key = c.key.as_str();
    if let Some(h) = key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'))
    {
        let h = h.to_ascii_lowercase();
        let f = |v: &str| Ok(json!({"header": header(&h, v)}));
        return Ok((
            Side::Request,
            each(&c.values, &f)?,
            each(&c.not_values, &f)?,
        ));
    }
    match key {
        "source.ip" => {
            let f = |v: &str| Ok(json!({"direct_remote_ip": cidr(v)?}));
            Ok((Side::Peer, each(&c.values, &f)?, each(&c.not_values, &f)?))
        }
        "remote.ip" => {
            let f = |v: &str| Ok(json!({"remote_ip": cidr(v)?}));
            Ok((Side::Peer, each(&c.values, &f)?, each(&c.not_values, &f)?))
        }
        "destination.port" => {
            let f = |v: &str| {
                let p: u16 = v.parse().map_err(|_| format!("`{v}` is not a port"))?;
                Ok(json!({"destination_port": p}))
            };
            Ok((Side::Request, each(&c.values, &f)?, each(&c.not_values, &f)?))
        }
        "source.namespace" => {
            let f = |v: &str| Ok(namespace_id(v));
            Ok((Side::Peer, each(&c.values, &f)?, each(&c.not_values, &f)?))
        }
        "source.principal" => {
            let f = |v: &str| Ok(principal_id(v));
            Ok((Side::Peer, each(&c.values, &f)?, each(&c.not_values, &f)?))
        }
        other => Err(format!(
            "key `{other}` is not served (request.headers[NAME], source.ip, remote.ip, destination.port, source.namespace, source.principal)"
        )),
    }
}

/// Istio's string match: `*` any, `x*` prefix, `*x` suffix, else exact.
fn glob_match(v: &str, ignore_case: bool) -> Value {
    let mut m = if v == "*" {
        json!({"safe_regex": {"regex": ".+"}})
    } else if let Some(p) = v.strip_suffix('*') {
        json!({"prefix": p})
    } else if let Some(s) = v.strip_prefix('*') {
        json!({"suffix": s})
    } else {
        json!({"exact": v})
    };
    if ignore_case {
        m["ignore_case"] = json!(true);
    }
    m
}

fn header(name: &str, v: &str) -> Value {
    json!({"name": name, "string_match": glob_match(v, false)})
}

fn principal_id(v: &str) -> Value {
    json!({"authenticated": {"principal_name": glob_match(&format!("spiffe://{v}"), false)}})
}

fn namespace_id(v: &str) -> Value {
    let ns = regex::escape(v);
    json!({"authenticated": {"principal_name": {"safe_regex": {"regex": format!(".*/ns/{ns}/.*")}}}})
}

/// AND of the parts; `any` when there are none.
fn all_of(parts: Vec<Value>, and_key: &str, set_key: &str) -> Value {
    match parts.len() {
        0 => json!({"any": true}),
        1 => parts.into_iter().next().unwrap_or(json!({"any": true})),
        _ => json!({ and_key: { set_key: parts } }),
    }
}

/// An OR over matchers as a permission (`or_rules`) or principal (`or_ids`); `None`
/// for no matchers.
fn or(items: Vec<Value>, permission: bool) -> Option<Value> {
    match items.len() {
        0 => None,
        1 => items.into_iter().next(),
        _ if permission => Some(json!({"or_rules": {"rules": items}})),
        _ => Some(json!({"or_ids": {"ids": items}})),
    }
}

fn not(v: Value, permission: bool) -> Value {
    if permission {
        json!({"not_rule": v})
    } else {
        json!({"not_id": v})
    }
}

/// One field's values (OR) and its negation, as parts of an AND.
fn field(
    parts: &mut Vec<Value>,
    values: &[String],
    not_values: &[String],
    f: &dyn Fn(&str) -> Value,
    permission: bool,
) {
    if let Some(v) = or(values.iter().map(|x| f(x)).collect(), permission) {
        parts.push(v);
    }
    if let Some(v) = or(not_values.iter().map(|x| f(x)).collect(), permission) {
        parts.push(not(v, permission));
    }
}

fn operation(o: &Operation) -> Value {
    let mut parts = Vec::new();
    let host =
        |h: &str| json!({"header": {"name": ":authority", "string_match": glob_match(h, true)}});
    field(&mut parts, &o.hosts, &o.not_hosts, &host, true);
    let port = |p: &str| json!({"destination_port": p.parse::<u16>().unwrap_or(0)});
    field(&mut parts, &o.ports, &o.not_ports, &port, true);
    let method = |m: &str| json!({"header": header(":method", m)});
    field(&mut parts, &o.methods, &o.not_methods, &method, true);
    let path = |p: &str| {
        if p == "*" {
            json!({"any": true})
        } else {
            json!({"url_path": {"path": glob_match(p, false)}})
        }
    };
    field(&mut parts, &o.paths, &o.not_paths, &path, true);
    all_of(parts, "and_rules", "rules")
}

fn source(s: &Source) -> Value {
    let mut parts = Vec::new();
    field(
        &mut parts,
        &s.principals,
        &s.not_principals,
        &principal_id,
        false,
    );
    field(
        &mut parts,
        &s.namespaces,
        &s.not_namespaces,
        &namespace_id,
        false,
    );
    let ip = |b: &str| json!({"direct_remote_ip": cidr(b).unwrap_or(json!({}))});
    field(&mut parts, &s.ip_blocks, &s.not_ip_blocks, &ip, false);
    let remote = |b: &str| json!({"remote_ip": cidr(b).unwrap_or(json!({}))});
    field(
        &mut parts,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        &remote,
        false,
    );
    all_of(parts, "and_ids", "ids")
}

/// One rule as an RBAC policy: `{permissions: [..], principals: [..]}`.
fn rule_policy(r: &Rule) -> Value {
    let mut permissions = Vec::new();
    if let Some(v) = or(r.to.iter().map(|t| operation(&t.operation)).collect(), true) {
        permissions.push(v);
    }
    let mut principals = Vec::new();
    if let Some(v) = or(r.from.iter().map(|f| source(&f.source)).collect(), false) {
        principals.push(v);
    }
    for c in &r.when {
        let Ok((side, values, not_values)) = condition(c) else {
            continue;
        };
        let permission = matches!(side, Side::Request);
        let target = if permission {
            &mut permissions
        } else {
            &mut principals
        };
        if let Some(v) = or(values, permission) {
            target.push(v);
        }
        if let Some(v) = or(not_values, permission) {
            target.push(not(v, permission));
        }
    }
    json!({
        "permissions": [all_of(permissions, "and_rules", "rules")],
        "principals": [all_of(principals, "and_ids", "ids")],
    })
}

/// The RBAC filters for a workload's inbound connection managers, DENY first: none
/// when no policy applies.
pub fn filters(policies: &[&(Metadata, AuthorizationPolicy)]) -> Vec<Value> {
    let mut out = Vec::new();
    for action in ["DENY", "ALLOW"] {
        let chosen: Vec<_> = policies
            .iter()
            .filter(|(_, p)| p.action.as_deref().unwrap_or("ALLOW") == action)
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let mut rbac = serde_json::Map::new();
        for (m, p) in chosen {
            for (i, r) in p.rules.iter().enumerate() {
                rbac.insert(
                    format!("ns[{}]-policy[{}]-rule[{i}]", m.namespace, m.name),
                    rule_policy(r),
                );
            }
        }
        // Both named as istiod names them: Envoy and Outrigger take two filters of one name.
        out.push(json!({
            "name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": action, "policies": rbac}
            }
        }));
    }
    out
}
