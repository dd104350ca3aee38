//! Route matching: Host -> virtual host, then path, headers, query parameters -> route,
//! then the route's action (`action::resolve`).
//!
//! Virtual host selection follows Envoy (`domains`): an exact domain wins, then the
//! longest `*.suffix` wildcard, then the longest `prefix.*` wildcard, then `*`. Routes
//! are tried in order and the first match wins (`matchers`). Matching allocates nothing.

mod action;
mod domains;
pub mod hash;
mod matchers;
pub mod timeouts;

pub use action::{convert_substitution, entry_cluster, resolve, Decision, EntryCluster, Target};
pub use domains::{DomainIndex, MAX_DOMAIN_LEN};
pub use matchers::{
    header_matches, header_matches_values, path_matches, query_matches, random, string_matches,
    Request,
};

use crate::config::{Route, RouteAction, RouteTable, StripPort, VirtualHost};

/// Strips an optional `:port` from a Host value (IPv6 literals keep their brackets).
pub fn host_without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(i) => host.get(..=i).unwrap_or(host),
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) => host.get(..i).unwrap_or(host),
        None => host,
    }
}

/// The authority after the connection manager's `strip_any_host_port` /
/// `strip_matching_host_port` (Envoy's): without its port, or as it came.
pub fn strip_port(authority: &[u8], mode: StripPort) -> &[u8] {
    if mode == StripPort::Keep {
        return authority;
    }
    let host = host_without_port(authority);
    if let StripPort::Matching(listener) = mode {
        let port = authority
            .get(host.len() + 1..)
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.parse::<u16>().ok());
        if port != Some(listener) {
            return authority;
        }
    }
    host
}

/// Picks the virtual host for `host` (as the client sent it; the port is ignored only
/// when the table says `ignore_port_in_host_matching`).
pub fn virtual_host<'t>(table: &'t RouteTable, host: &[u8]) -> Option<&'t VirtualHost> {
    let host = if table.ignore_port_in_host_matching {
        host_without_port(host)
    } else {
        host
    };
    table
        .domains
        .find(host)
        .and_then(|i| table.virtual_hosts.get(i))
}

/// Finds the first route of `vh` matching `req`.
pub fn route<'t>(vh: &'t VirtualHost, req: &Request<'_>) -> Option<&'t Route> {
    let path = req.path_only();
    let mut rand = None;
    vh.routes.iter().find(|r| {
        matchers::path_matches(&r.path, path) && matchers::route_matches(r, req, &mut rand)
    })
}

/// The route for a CONNECT to `authority`: the first route of the virtual host that
/// lists `connect` in its upgrades and whose header matchers match (paths do not apply).
/// The authority's port is ignored here (a CONNECT's authority always has one).
pub fn select_connect<'t>(table: &'t RouteTable, req: &Request<'_>) -> Option<&'t Route> {
    let vh = table
        .domains
        .find(host_without_port(req.authority))
        .and_then(|i| table.virtual_hosts.get(i))?;
    let mut rand = None;
    vh.routes.iter().find(|r| {
        matches!(&r.action, RouteAction::Cluster(f) if f.upgrades.iter().any(|u| u == "connect"))
            && matchers::route_matches(r, req, &mut rand)
    })
}

/// Host + path + headers -> route, or `None` for no route (404 NR).
pub fn select<'t>(table: &'t RouteTable, req: &Request<'_>) -> Option<&'t Route> {
    let vh = virtual_host(table, req.authority)?;
    route(vh, req)
}

#[cfg(test)]
mod tests;
