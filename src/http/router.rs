//! Route matching: Host -> virtual host, then path and headers -> route.
//!
//! Virtual host selection follows Envoy: an exact domain wins, then the longest `*.suffix`
//! wildcard, then the longest `prefix.*` wildcard, then `*`. Routes are tried in order and
//! the first match wins. Nothing here allocates.

use crate::config::{
    DomainMatch, HeaderMatch, HeaderMatchKind, PathMatch, Route, RouteTable, VirtualHost,
};

/// Strips an optional `:port` from a Host value (IPv6 literals keep their brackets).
pub fn host_without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) => &host[..i],
        None => host,
    }
}

fn ends_with_ci(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Picks the virtual host for `host` (already without port).
pub fn virtual_host<'t>(table: &'t RouteTable, host: &[u8]) -> Option<&'t VirtualHost> {
    // rank: 3 = exact, 2 = suffix, 1 = prefix, 0 = any; longer wildcard wins within a rank.
    let mut best: Option<(&VirtualHost, u8, usize)> = None;
    for vh in &table.virtual_hosts {
        for d in &vh.domains {
            let cand = match d {
                DomainMatch::Exact(e) if host.eq_ignore_ascii_case(e.as_bytes()) => {
                    return Some(vh)
                }
                DomainMatch::Suffix(s)
                    if host.len() > s.len() && ends_with_ci(host, s.as_bytes()) =>
                {
                    (2, s.len())
                }
                DomainMatch::Prefix(p)
                    if host.len() > p.len() && starts_with_ci(host, p.as_bytes()) =>
                {
                    (1, p.len())
                }
                DomainMatch::Any => (0, 0),
                _ => continue,
            };
            if best.is_none_or(|(_, r, l)| (cand.0, cand.1) > (r, l)) {
                best = Some((vh, cand.0, cand.1));
            }
        }
    }
    best.map(|(vh, _, _)| vh)
}

fn header_matches(m: &HeaderMatch, headers: &[httparse::Header<'_>]) -> bool {
    let found = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(&m.name));
    let hit = match (&m.kind, found) {
        (HeaderMatchKind::Present(want), f) => f.is_some() == *want,
        (HeaderMatchKind::Exact(v), Some(h)) => h.value == v.as_slice(),
        (HeaderMatchKind::Prefix(v), Some(h)) => h.value.starts_with(v),
        (_, None) => false,
    };
    hit != m.invert
}

/// Finds the first route of `vh` matching `path` (query ignored) and `headers`.
pub fn route<'t>(
    vh: &'t VirtualHost,
    path: &str,
    headers: &[httparse::Header<'_>],
) -> Option<&'t Route> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    vh.routes.iter().find(|r| {
        let path_ok = match &r.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        };
        path_ok && r.headers.iter().all(|m| header_matches(m, headers))
    })
}

/// The route for a CONNECT to `authority`: the first route of the virtual host that
/// lists `connect` in its upgrades and whose header matchers match (paths do not apply).
pub fn select_connect<'t>(
    table: &'t RouteTable,
    authority: &[u8],
    headers: &[httparse::Header<'_>],
) -> Option<&'t Route> {
    let vh = virtual_host(table, host_without_port(authority))?;
    vh.routes.iter().find(|r| {
        matches!(&r.action, crate::config::RouteAction::Cluster { upgrades, .. } if upgrades.iter().any(|u| u == "connect"))
            && r.headers.iter().all(|m| header_matches(m, headers))
    })
}

/// Host + path + headers -> route, or `None` for no route (404 NR).
pub fn select<'t>(
    table: &'t RouteTable,
    host: &[u8],
    path: &str,
    headers: &[httparse::Header<'_>],
) -> Option<&'t Route> {
    let vh = virtual_host(table, host_without_port(host))?;
    route(vh, path, headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, RouteAction};

    const CFG: &str = "
route_tables:
  - name: t
    virtual_hosts:
      - name: exact
        domains: [api.example.com]
        routes:
          - match: { path: /health }
            direct_response: { status: 200 }
          - match: { prefix: /, headers: [{ name: x-canary, exact: '1' }] }
            direct_response: { status: 201 }
          - match: { prefix: /v1/ }
            direct_response: { status: 202 }
      - name: suffix
        domains: ['*.example.com']
        routes:
          - match: { prefix: / }
            direct_response: { status: 203 }
      - name: longer-suffix
        domains: ['*.b.example.com']
        routes:
          - match: { prefix: / }
            direct_response: { status: 204 }
      - name: prefix
        domains: ['internal.*']
        routes:
          - match: { prefix: / }
            direct_response: { status: 205 }
      - name: any
        domains: ['*']
        routes:
          - match: { prefix: /only }
            direct_response: { status: 206 }
";

    fn status(host: &str, path: &str, headers: &[httparse::Header<'_>]) -> Option<u16> {
        let s = parse_str(CFG).unwrap();
        select(&s.route_tables[0], host.as_bytes(), path, headers).map(|r| match &r.action {
            RouteAction::Direct(d) => d.status,
            RouteAction::Cluster { .. } => 0,
        })
    }

    #[test]
    fn domain_precedence() {
        assert_eq!(status("API.example.com:8080", "/health", &[]), Some(200));
        assert_eq!(status("a.example.com", "/", &[]), Some(203));
        assert_eq!(status("x.b.example.com", "/", &[]), Some(204));
        assert_eq!(status("internal.svc", "/", &[]), Some(205));
        assert_eq!(status("other", "/only/x", &[]), Some(206));
        assert_eq!(status("other", "/", &[]), None);
        assert_eq!(status("example.com", "/only", &[]), Some(206));
    }

    #[test]
    fn path_and_header_matching() {
        assert_eq!(status("api.example.com", "/health?x=1", &[]), Some(200));
        assert_eq!(
            status("api.example.com", "/healthz", &[]),
            Some(202).filter(|_| false).or(None)
        );
        let canary = [httparse::Header {
            name: "X-Canary",
            value: b"1",
        }];
        assert_eq!(status("api.example.com", "/v1/x", &canary), Some(201));
        assert_eq!(status("api.example.com", "/v1/x", &[]), Some(202));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(host_without_port(b"a:80"), b"a");
        assert_eq!(host_without_port(b"[::1]:80"), b"[::1]");
        assert_eq!(host_without_port(b"a"), b"a");
    }
}
