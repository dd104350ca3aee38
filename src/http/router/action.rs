//! What a matched route does with the request (Envoy's `RouteEntry` finalisation):
//! which cluster (`cluster`, `weighted_clusters`, `cluster_header`), the path and Host
//! the upstream gets (`prefix_rewrite`, `regex_rewrite`, `host_rewrite_literal`,
//! `auto_host_rewrite`), or the redirect or direct response to answer with. Both codecs
//! call `resolve` once per request, after the route was selected; the upstream encoders
//! only read the result. Without a rewrite or redirect nothing here allocates.
//!
//! A weighted cluster is picked with a random value the connection manager draws once
//! per request before the filters run (Envoy's stream random value): `entry_cluster`
//! names the pick for the filters (Envoy's route entry `clusterName()`, which the fault
//! filter's `upstream_cluster` compares), and `resolve` takes the same cluster.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::time::Duration;

use crate::config::{
    ClusterTarget, DirectResponse, Fraction, HostRewrite, MirrorPolicy, MirrorTarget, PathMatch,
    PathRewrite, Redirect, RedirectPath, RegexRewrite, Route, RouteAction, RouteTable,
    WeightedCluster,
};

use super::matchers::{random, Request};

/// The outcome of a matched route.
#[derive(Debug, PartialEq)]
pub enum Decision<'t> {
    Forward(Target<'t>),
    /// `cluster_header` named no cluster (or the header was missing): `NC` with the
    /// route's `cluster_not_found_response_code` (503 by default).
    ClusterNotFound {
        status: u16,
    },
    Redirect {
        status: u16,
        location: String,
    },
    /// `location`: for a 201 or 3xx direct response, Envoy sends the request's URL.
    Direct(&'t DirectResponse, Option<String>),
}

/// The cluster a route entry names for one request, as Envoy's `clusterName()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EntryCluster<'t> {
    /// Not a route that forwards (or no route).
    #[default]
    None,
    /// `cluster`, or the weighted cluster picked for this request.
    Name(&'t str),
    /// `cluster_header`: the first value of this (lower-case) request header, empty when
    /// it is missing (Envoy's `DynamicRouteEntry`), whether or not such a cluster exists.
    Header(&'t str),
}

/// The cluster `route` names for a request whose random value is `draw` (the same
/// value `resolve` gets).
pub fn entry_cluster(route: &Route, draw: u64) -> EntryCluster<'_> {
    let RouteAction::Cluster(f) = &route.action else {
        return EntryCluster::None;
    };
    match &f.target {
        ClusterTarget::Named(_) | ClusterTarget::Missing => route
            .filters
            .cluster
            .as_deref()
            .map_or(EntryCluster::None, EntryCluster::Name),
        ClusterTarget::Header(h) => EntryCluster::Header(h),
        ClusterTarget::Weighted { clusters, total } => weighted(clusters, *total, draw)
            .map_or(EntryCluster::None, |c| EntryCluster::Name(&c.name)),
    }
}

/// Envoy's weighted pick: the value in [0, total), and the cluster whose interval holds
/// it.
fn weighted(clusters: &[WeightedCluster], total: u64, draw: u64) -> Option<&WeightedCluster> {
    let mut pick = draw % total.max(1);
    for c in clusters {
        if pick < u64::from(c.weight) {
            return Some(c);
        }
        pick -= u64::from(c.weight);
    }
    clusters.last()
}

/// Where a forwarded request goes and how it changes on the way.
#[derive(Debug, PartialEq)]
pub struct Target<'t> {
    pub cluster: usize,
    pub timeout: Duration,
    /// The route's priority: which breakers and pools of the cluster it uses.
    pub priority: crate::config::circuit::Priority,
    /// The route's other stream clocks (`router::timeouts`).
    pub stream: crate::config::StreamTimeouts,
    pub upgrades: &'t [String],
    /// The path (and query) to send instead of the client's; the client's then goes in
    /// `x-envoy-original-path`, as Envoy does.
    pub path: Option<String>,
    /// The Host to send instead of the client's.
    pub host: Option<&'t str>,
    /// Whether the client's Host goes in `x-envoy-original-host`: a route's own
    /// `host_rewrite_literal` records it; a weighted cluster's only replaces the Host,
    /// as Envoy's weighted cluster entry does.
    pub record_host: bool,
    /// `auto_host_rewrite`: the Host becomes the picked endpoint's hostname, if it has
    /// one.
    pub auto_host: bool,
    /// The route's retry policy and attempt-count headers.
    pub retries: &'t crate::config::Retries,
    /// The mirror policies that fire for this request, with their clusters (empty, and
    /// not allocated, for a route without `request_mirror_policies`).
    pub shadows: Vec<(usize, &'t MirrorPolicy)>,
    /// The route's `hash_policy` (`router::hash`), for a hashing cluster.
    pub hash_policy: &'t [crate::config::HashPolicy],
}

/// Converts an RE2 substitution (`\1` for a group, `\\` for a backslash) to the regex
/// crate's (`${1}`, with `$` escaped as `$$`).
pub fn convert_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    it.next();
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('\\') => {
                    it.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// Every match of the pattern in `path` replaced by the substitution. The cache is made
/// for this call (a rewrite allocates its new path anyway), so workers share the
/// compiled pattern without a pool, lock or atomic.
fn regex_rewrite(r: &RegexRewrite, path: &str) -> String {
    use regex_automata::util::iter::Searcher;
    let re = &r.pattern.regex;
    let mut cache = re.create_cache();
    let mut caps = re.create_captures();
    let mut out = String::with_capacity(path.len() + r.substitution.len());
    let mut last = 0;
    let mut it = Searcher::new(regex_automata::Input::new(path));
    loop {
        let found = it.advance(|input| {
            re.search_captures_with(&mut cache, input, &mut caps);
            Ok(caps.get_match())
        });
        let Some(m) = found else { break };
        out.push_str(path.get(last..m.start()).unwrap_or_default());
        caps.interpolate_string_into(path, &r.substitution, &mut out);
        last = m.end();
    }
    out.push_str(path.get(last..).unwrap_or_default());
    out
}

/// The matched part a `prefix_rewrite` replaces: the configured prefix or path (Envoy
/// replaces `matcher().size()` bytes); for a regex route, the whole path.
fn matched_len(m: &PathMatch, path_only: &str) -> usize {
    match m {
        PathMatch::Exact { path: p, .. } => p.len(),
        PathMatch::Prefix { prefix: p, .. } | PathMatch::SeparatedPrefix { prefix: p, .. } => {
            p.len()
        }
        PathMatch::Regex(_) => path_only.len(),
    }
}

/// `path` (with query) with the first `len` bytes replaced by `with`; never empty (an
/// upstream request line needs a path).
fn replace_head(path: &str, len: usize, with: &str) -> String {
    let rest = path.get(len..).unwrap_or_default();
    let mut s = String::with_capacity(with.len() + rest.len() + 1);
    s.push_str(with);
    s.push_str(rest);
    if s.is_empty() || s.starts_with('?') {
        s.insert(0, '/');
    }
    s
}

/// What a path rewrite makes of the request's path; `None`: no rewrite.
fn rewritten_path(route: &Route, rw: &PathRewrite, req: &Request<'_>) -> String {
    let path_only = req.path_only();
    match rw {
        PathRewrite::Prefix(p) => replace_head(req.path, matched_len(&route.path, path_only), p),
        PathRewrite::Regex(r) => {
            replace_head(req.path, path_only.len(), &regex_rewrite(r, path_only))
        }
    }
}

/// Resolves the action of `route` (selected from `table`) for `req`.
pub fn resolve<'t>(
    table: &'t RouteTable,
    route: &'t Route,
    req: &Request<'_>,
    draw: u64,
) -> Decision<'t> {
    let f = match &route.action {
        RouteAction::Direct(d) => {
            let location = (d.status == 201 || (300..400).contains(&d.status))
                .then(|| request_url(req, None, None, None, req.path));
            return Decision::Direct(d, location);
        }
        RouteAction::Redirect(r) => return redirect(route, r, req),
        RouteAction::Cluster(f) => f,
    };
    let mut host = match &f.host_rewrite {
        HostRewrite::Literal(h) => Some(h.as_str()),
        HostRewrite::None | HostRewrite::Auto => None,
    };
    let cluster = match &f.target {
        ClusterTarget::Named(c) => *c,
        ClusterTarget::Missing => {
            return Decision::ClusterNotFound {
                status: f.cluster_not_found_status,
            }
        }
        ClusterTarget::Header(name) => {
            let named = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|n| table.clusters_by_name.get(n));
            match named {
                Some(c) => *c,
                None => {
                    return Decision::ClusterNotFound {
                        status: f.cluster_not_found_status,
                    }
                }
            }
        }
        ClusterTarget::Weighted { clusters, total } => {
            let Some((c, i)) =
                weighted(clusters, *total, draw).and_then(|c| c.cluster.map(|i| (c, i)))
            else {
                return Decision::ClusterNotFound {
                    status: f.cluster_not_found_status,
                };
            };
            if let Some(h) = &c.host_rewrite {
                host = Some(h);
            }
            i
        }
    };
    let shadows = if f.mirrors.is_empty() {
        Vec::new()
    } else {
        shadows(table, &f.mirrors, req)
    };
    Decision::Forward(Target {
        shadows,
        hash_policy: &f.hash_policy,
        cluster,
        record_host: matches!(f.host_rewrite, HostRewrite::Literal(_)),
        timeout: f.timeout,
        priority: f.priority,
        stream: f.stream,
        retries: &f.retries,
        upgrades: &f.upgrades,
        path: f
            .path_rewrite
            .as_ref()
            .map(|rw| rewritten_path(route, rw, req)),
        host,
        auto_host: f.host_rewrite == HostRewrite::Auto,
    })
}

/// Envoy's `shouldShadow` and `getShadowCluster`, per policy in order: its fraction
/// drawn on its own (none: every request), then its cluster; a `cluster_header` policy
/// whose header (the first value) is missing or names no cluster is skipped.
fn shadows<'t>(
    table: &'t RouteTable,
    mirrors: &'t [MirrorPolicy],
    req: &Request<'_>,
) -> Vec<(usize, &'t MirrorPolicy)> {
    let hit = |f: Fraction| random() % u64::from(f.denominator.max(1)) < u64::from(f.numerator);
    mirrors
        .iter()
        .filter(|m| m.fraction.is_none_or(hit))
        .filter_map(|m| {
            let cluster = match &m.target {
                MirrorTarget::Named(c) => *c,
                MirrorTarget::Header(name) => *req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|n| table.clusters_by_name.get(n))?,
            };
            Some((cluster, m))
        })
        .collect()
}

/// The default port of a scheme, which a redirect drops from the Host when it changes
/// the scheme (as Envoy does).
fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    }
}

/// Splits `host:port` (a bracketed IPv6 literal keeps its brackets).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.rfind("]:") {
            Some(i) => (
                authority.get(..=i).unwrap_or(authority),
                authority.get(i + 2..),
            ),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    }
}

/// `scheme://host[:port]path`: the request's URL with the given parts replaced.
fn request_url(
    req: &Request<'_>,
    scheme: Option<&str>,
    host: Option<&str>,
    port: Option<u16>,
    path: &str,
) -> String {
    let authority = std::str::from_utf8(req.authority).unwrap_or("");
    let (orig_host, orig_port) = split_port(authority);
    let new_scheme = scheme.unwrap_or(req.scheme);
    let mut url = String::with_capacity(authority.len() + path.len() + 16);
    url.push_str(new_scheme);
    url.push_str("://");
    match (host, port) {
        (Some(h), Some(p)) => {
            url.push_str(split_port(h).0);
            url.push(':');
            url.push_str(&p.to_string());
        }
        (Some(h), None) => url.push_str(h),
        (None, Some(p)) => {
            url.push_str(orig_host);
            url.push(':');
            url.push_str(&p.to_string());
        }
        (None, None) => {
            // A scheme change drops the old scheme's default port.
            let drop =
                scheme.is_some() && orig_port.is_some() && orig_port == default_port(req.scheme);
            url.push_str(if drop { orig_host } else { authority });
        }
    }
    url.push_str(path);
    url
}

/// Envoy's `RedirectAction`: the `Location` for this request.
fn redirect<'t>(route: &Route, r: &Redirect, req: &Request<'_>) -> Decision<'t> {
    let path_only = req.path_only();
    let query = req.path.get(path_only.len()..).unwrap_or_default();
    let mut path = match &r.path {
        RedirectPath::Keep => req.path.to_string(),
        // A `path_redirect` with its own query replaces the request's query.
        RedirectPath::Path(p) if p.contains('?') => p.clone(),
        RedirectPath::Path(p) => format!("{p}{query}"),
        RedirectPath::Prefix(p) => replace_head(req.path, matched_len(&route.path, path_only), p),
        RedirectPath::Regex(rx) => format!("{}{query}", regex_rewrite(rx, path_only)),
    };
    if r.strip_query && !matches!(&r.path, RedirectPath::Path(p) if p.contains('?')) {
        if let Some(i) = path.find('?') {
            path.truncate(i);
        }
    }
    Decision::Redirect {
        status: r.status,
        location: request_url(req, r.scheme.as_deref(), r.host.as_deref(), r.port, &path),
    }
}
