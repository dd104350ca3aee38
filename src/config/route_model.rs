//! The checked route model: route tables, virtual hosts, routes, their matchers and
//! actions (Envoy's `RouteConfiguration`, `VirtualHost`, `Route`). Built by
//! `config::build::routes`; read by `http::router` on every request.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::http::filter::headers::HeaderPlan;
use crate::http::filter::local_ratelimit::RouteRateLimits;
use crate::http::filter::{FilterOverride, RouteFilters};
use crate::http::router::{DomainIndex, EntryCluster};

pub use super::match_model::{HeaderMatch, HeaderMatchKind, Pattern, StringMatch, StringMatchKind};

#[derive(Debug, PartialEq)]
pub struct RouteTable {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    /// The domains of every virtual host, indexed for lookup (`http::router::domains`).
    pub domains: DomainIndex,
    /// Envoy's `ignore_port_in_host_matching`: domains are matched against the Host
    /// without its port. Off (Envoy's default): `a.example:8080` matches only a domain
    /// `a.example:8080`, a wildcard or `*`.
    pub ignore_port_in_host_matching: bool,
    /// Cluster name -> index, for `cluster_header` routes (empty when there are none).
    pub clusters_by_name: HashMap<String, usize>,
}

#[derive(Debug, PartialEq)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<DomainMatch>,
    pub routes: Vec<Route>,
}

/// How a virtual host claims a Host header. Names are stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainMatch {
    /// `example.com`
    Exact(String),
    /// `*.example.com`, stored as `.example.com` (the `*` matches one or more characters).
    Suffix(String),
    /// `example.*`, stored as `example.`.
    Prefix(String),
    /// `*`
    Any,
}

#[derive(Debug, PartialEq)]
pub struct Route {
    /// Envoy's route `name` (the access log's `%ROUTE_NAME%`); `None` when unnamed.
    pub name: Option<std::sync::Arc<str>>,
    pub path: PathMatch,
    /// Every one must match.
    pub headers: Vec<HeaderMatch>,
    /// Every one must match.
    pub query_parameters: Vec<QueryParameterMatch>,
    /// Only gRPC requests (`content-type: application/grpc*`) match.
    pub grpc: bool,
    /// Envoy's `runtime_fraction`: the route matches this fraction of requests. There is
    /// no runtime layer: the default value is the fraction.
    pub runtime_fraction: Option<Fraction>,
    pub action: RouteAction,
    pub filters: RouteFilterConfig,
    /// Envoy's `stat_prefix`: the index of the route's stats in `Snapshot::route_stats`
    /// (`None`: the route keeps none).
    pub stats: Option<usize>,
}

/// What a route contributes to the filter chain: its header edits (compiled with its
/// virtual host's and route table's) and its per-filter overrides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteFilterConfig {
    pub request_headers: HeaderPlan,
    pub response_headers: HeaderPlan,
    pub overrides: Vec<(String, FilterOverride)>,
    /// The route's and its virtual host's `rate_limits` (the local rate limit's
    /// descriptors).
    pub rate_limits: RouteRateLimits,
    /// The route forwards to a cluster (not a direct response or a redirect).
    pub forwards: bool,
    /// The one cluster it forwards to, when that is fixed (`cluster`); the others are
    /// named per request (`router::entry_cluster`).
    pub cluster: Option<String>,
}
impl RouteFilterConfig {
    pub fn view(&self) -> RouteFilters<'_> {
        RouteFilters {
            request_headers: &self.request_headers,
            response_headers: &self.response_headers,
            overrides: &self.overrides,
            rate_limits: &self.rate_limits,
            forwards: self.forwards,
            cluster: match &self.cluster {
                Some(c) => EntryCluster::Name(c),
                None => EntryCluster::None,
            },
        }
    }
}

/// A compiled pattern for rewrites (the meta engine: captures, leftmost-first).
#[derive(Clone)]
pub struct RewritePattern {
    pub source: String,
    pub regex: regex_automata::meta::Regex,
}

impl fmt::Debug for RewritePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RewritePattern({:?})", self.source)
    }
}

impl PartialEq for RewritePattern {
    fn eq(&self, o: &RewritePattern) -> bool {
        self.source == o.source
    }
}

/// The path matcher; the query string is never part of what it sees.
#[derive(Debug, Clone, PartialEq)]
pub enum PathMatch {
    Exact {
        path: String,
        ignore_case: bool,
    },
    Prefix {
        prefix: String,
        ignore_case: bool,
    },
    /// The prefix, then the end of the path or a `/` (Envoy's `path_separated_prefix`).
    SeparatedPrefix {
        prefix: String,
        ignore_case: bool,
    },
    Regex(Pattern),
}

/// Envoy's `QueryParameterMatcher`: the first parameter with the name (not
/// percent-decoded, as Envoy compares it); `None`: present with any value.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryParameterMatch {
    pub name: String,
    pub value: Option<StringMatch>,
}

/// `numerator / denominator`; the denominator is 100, 10 000 or 1 000 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: u32,
}

#[derive(Debug, PartialEq)]
pub enum RouteAction {
    /// Proxy to a cluster.
    Cluster(Forward),
    /// Answer with a redirect (Envoy's `redirect`).
    Redirect(Redirect),
    Direct(DirectResponse),
}

/// Envoy's `RouteAction`.
#[derive(Debug, PartialEq)]
pub struct Forward {
    pub target: ClusterTarget,
    pub timeout: Duration,
    /// Envoy's `priority`: which of the cluster's circuit breakers and connection pools
    /// the requests use.
    pub priority: super::circuit::Priority,
    /// The route's other stream clocks: `max_stream_duration`, and the gRPC timeouts.
    pub stream: StreamTimeouts,
    /// Upgrade protocols (lower-case, e.g. `websocket`) this route passes through.
    pub upgrades: Vec<String>,
    pub path_rewrite: Option<PathRewrite>,
    pub host_rewrite: HostRewrite,
    /// Envoy's `cluster_not_found_response_code`: 503 (default), 404 or 500.
    pub cluster_not_found_status: u16,
    /// The route's retry policy (or its virtual host's) and attempt-count headers.
    pub retries: super::retry_model::Retries,
    /// Envoy's `request_mirror_policies`, in order (empty: no mirroring).
    pub mirrors: Vec<MirrorPolicy>,
    /// Envoy's `hash_policy`, in order (empty: a hashing cluster picks at random).
    pub hash_policy: Vec<HashPolicy>,
}

/// Envoy's route timeouts besides `timeout` (`http::router::timeouts` applies them):
/// the `max_stream_duration` message (Envoy's "new" timeouts) and the older
/// `max_grpc_timeout` / `grpc_timeout_offset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamTimeouts {
    /// Set: the route `timeout` and `max_grpc_timeout` no longer apply (Envoy's
    /// `usingNewTimeouts`).
    pub max_stream_duration: Option<MaxStreamDuration>,
    /// `max_grpc_timeout`: a gRPC request's `grpc-timeout` replaces the route timeout,
    /// capped at this (zero: no cap; no header: the cap, or none).
    pub max_grpc_timeout: Option<Duration>,
    /// `grpc_timeout_offset`: taken off the `grpc-timeout` first (when it leaves more
    /// than zero).
    pub grpc_timeout_offset: Option<Duration>,
}

/// Envoy's `RouteAction.MaxStreamDuration`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaxStreamDuration {
    /// `None`: the connection manager's; zero: none on this route.
    pub max_stream_duration: Option<Duration>,
    /// Set: a gRPC request's `grpc-timeout` is its stream's duration limit, capped at
    /// this (zero: no cap).
    pub grpc_timeout_header_max: Option<Duration>,
    /// Taken off that limit (down to zero).
    pub grpc_timeout_header_offset: Option<Duration>,
}

/// One of Envoy's `RouteAction.HashPolicy` entries: what the request's hash for a
/// ring hash or Maglev cluster is made of (`http::router::hash`).
#[derive(Debug, Clone, PartialEq)]
pub struct HashPolicy {
    pub kind: HashKind,
    /// Envoy's `terminal`: when this policy gave a hash, the later ones are skipped.
    pub terminal: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HashKind {
    /// Every value of the (lower-case) header, sorted.
    Header(String),
    /// The cookie's value; with `ttl` a missing cookie is generated and set in the
    /// response (`Set-Cookie`, with `path`), as Envoy does.
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: String,
    },
    /// `connection_properties.source_ip`: the downstream remote address.
    SourceIp,
    /// The first value of the query parameter.
    QueryParameter(String),
}

/// Envoy's `RequestMirrorPolicy`: a shadow copy of the request to another cluster,
/// fire and forget (`upstream::request::shadow`).
#[derive(Debug, PartialEq)]
pub struct MirrorPolicy {
    pub target: MirrorTarget,
    /// Envoy's `runtime_fraction`; `None`: every request.
    pub fraction: Option<Fraction>,
    /// Suffix the Host / `:authority` with `-shadow` (before any port); off with
    /// `disable_shadow_host_suffix_append`.
    pub host_suffix: bool,
    /// Envoy's `host_rewrite_literal`: the shadow's Host, unsuffixed.
    pub host: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum MirrorTarget {
    /// `cluster` (checked to exist when the config is built, as Envoy does).
    Named(usize),
    /// `cluster_header`: the cluster the (lower-case) header names; a request without
    /// the header, or naming no cluster, is not mirrored by this policy.
    Header(String),
}

#[derive(Debug, PartialEq)]
pub enum ClusterTarget {
    /// `cluster`.
    Named(usize),
    /// `cluster` naming a cluster that does not exist, in a route table that does not
    /// validate clusters (an RDS one, or `validate_clusters: false`): `NC` with the
    /// route's `cluster_not_found_response_code`, as Envoy. The name is in the route's
    /// `filters.cluster`.
    Missing,
    /// `cluster_header`: the cluster the (lower-case) header names; missing or unknown:
    /// `503` with flag `NC`, as Envoy.
    Header(String),
    /// `weighted_clusters`: picked at random in proportion to the weights (the total is
    /// their sum, as Envoy 1.40).
    Weighted {
        clusters: Vec<WeightedCluster>,
        total: u64,
    },
}

#[derive(Debug, PartialEq)]
pub struct WeightedCluster {
    /// `None`: no such cluster (a table that does not validate clusters); picking it
    /// answers `NC`.
    pub cluster: Option<usize>,
    /// The cluster's name (what the fault filter's `upstream_cluster` compares).
    pub name: String,
    pub weight: u32,
    /// Envoy's per-cluster `host_rewrite_literal`.
    pub host_rewrite: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum PathRewrite {
    /// `prefix_rewrite`: the matched prefix (or exact path) is replaced.
    Prefix(String),
    /// `regex_rewrite`: every match in the path (query kept) is replaced.
    Regex(RegexRewrite),
}

/// A pattern and its substitution, converted from RE2's syntax (`\1`) to the regex
/// engine's (`${1}`).
#[derive(Debug, PartialEq)]
pub struct RegexRewrite {
    pub pattern: RewritePattern,
    pub substitution: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HostRewrite {
    None,
    /// `host_rewrite_literal`.
    Literal(String),
    /// `auto_host_rewrite`: the picked endpoint's hostname; an endpoint without one
    /// (a plain IP address) leaves Host unchanged, as Envoy's STATIC clusters do.
    Auto,
}

/// Envoy's `RedirectAction`: the `Location` is the request's URL with these parts
/// replaced.
#[derive(Debug, PartialEq)]
pub struct Redirect {
    /// `scheme_redirect`, or `https` for `https_redirect`.
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: RedirectPath,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    pub strip_query: bool,
}

#[derive(Debug, PartialEq)]
pub enum RedirectPath {
    Keep,
    /// `path_redirect` (with its own query, if it has one, which replaces the request's).
    Path(String),
    Prefix(String),
    Regex(RegexRewrite),
}

#[derive(Debug, PartialEq)]
pub struct DirectResponse {
    pub status: u16,
    pub body: Bytes,
    pub content_type: Option<String>,
}
