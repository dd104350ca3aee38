//! Building the HTTP side of the model: listeners' HTTP filter chains, route tables,
//! virtual hosts, routes and their header edits and filter overrides. Part of
//! `config::build`; errors go to the same builder, with field paths.

use std::collections::HashSet;
use std::sync::Arc;

use super::super::model::*;
use super::super::raw::*;
use super::listener::{raw_terminals, RawTerminal};
use super::Builder;
use crate::http::filter::buffer::{BufferFilter, RawBuffer};
use crate::http::filter::header_mutation::{
    HeaderMutation, HeaderMutationFilter, RawHeaderMutationRef,
};
use crate::http::filter::headers::HeaderPlan;
use crate::http::filter::local_ratelimit::descriptors::{self, Policy, RawRateLimit};
use crate::http::filter::local_ratelimit::stats;
use crate::http::filter::local_ratelimit::{
    LocalRateLimitFilter, RawLocalRateLimit, RouteRateLimits,
};
use crate::http::filter::{
    FilterKind, FilterOverride, HttpFilter, RawHttpFilter, MAX_HEADER_MUTATION_FILTERS,
};
use crate::http::router::{DomainIndex, MAX_DOMAIN_LEN};

impl Builder {
    /// An `ext_proc` filter (its counters are `http.<stat_prefix>.ext_proc.*`).
    fn ext_proc_filter(
        &mut self,
        p: &str,
        raw: &crate::http::filter::ext_proc::config::RawExtProc,
        stat_prefix: &str,
        clusters: &[Arc<Cluster>],
    ) -> Option<crate::http::filter::ext_proc::ExtProcFilter> {
        use crate::http::filter::ext_proc::{Counters, COUNTER_NAMES};
        let own = raw.stat_prefix.as_deref().unwrap_or("");
        let counters = Counters::from_indices(
            COUNTER_NAMES.map(|n| self.counter(format!("http.{stat_prefix}.ext_proc.{own}{n}"))),
        );
        let cluster = |n: &str| {
            clusters
                .iter()
                .enumerate()
                .find(|(_, c)| c.name == n)
                .map(|(i, c)| (i, c.protocol == UpstreamProtocol::Http2))
        };
        let mut errors = Vec::new();
        let f = raw.build(p, cluster, counters, &mut errors);
        for (path, m) in errors {
            self.err(path, m);
        }
        f
    }

    /// A connection manager's HTTP filters; its counters are under `http.<stat_prefix>.`.
    pub(super) fn http_filters(
        &mut self,
        p: &str,
        raw: &[RawHttpFilter],
        stat_prefix: &str,
        clusters: &[Arc<Cluster>],
    ) -> Vec<HttpFilter> {
        let mut out: Vec<HttpFilter> = Vec::new();
        for (k, f) in raw.iter().enumerate() {
            let fp = format!("{p}.http_filters[{k}]");
            // Two filters may share a name, as Envoy allows (istiod names its DENY and
            // ALLOW RBAC filters alike); a route's override by that name reaches both.
            if f.name.is_empty() {
                self.err(format!("{fp}.name"), "must not be empty");
            }
            let types = [
                f.header_mutation.is_some(),
                f.buffer.is_some(),
                f.local_ratelimit.is_some(),
                f.rbac.is_some(),
                f.fault.is_some(),
                f.cors.is_some(),
                f.ext_proc.is_some(),
                f.ext_authz.is_some(),
                f.wasm.is_some(),
            ];
            let one = types.iter().filter(|t| **t).count() == 1;
            let kind = match (&f.header_mutation, &f.buffer, &f.local_ratelimit, &f.rbac) {
                _ if !one => {
                    self.err(
                        fp,
                        "set the filter's type: one of `header_mutation`, `buffer`, `local_ratelimit`, `rbac`, `fault`, `cors`, `ext_proc`, `ext_authz`, `wasm`",
                    );
                    continue;
                }
                _ if f.ext_proc.is_some() => {
                    let raw = f.ext_proc.as_ref().and_then(|r| {
                        self.ext_proc_filter(&format!("{fp}.ext_proc"), r, stat_prefix, clusters)
                    });
                    match raw {
                        Some(x) => FilterKind::ExtProc(Box::new(x)),
                        None => continue,
                    }
                }
                _ if f.cors.is_some() => FilterKind::Cors(self.cors_filter(stat_prefix)),
                _ if f.ext_authz.is_some() => {
                    let built = f.ext_authz.as_ref().and_then(|r| {
                        self.ext_authz_filter(&format!("{fp}.ext_authz"), r, stat_prefix, clusters)
                    });
                    match built {
                        Some(x) => FilterKind::ExtAuthz(Box::new(x)),
                        None => continue,
                    }
                }
                _ if f.wasm.is_some() => {
                    let fw = format!("{fp}.wasm");
                    match f
                        .wasm
                        .as_deref()
                        .map(|r| crate::wasm::config::build(&fw, r))
                    {
                        Some(Ok(p)) => FilterKind::Wasm(crate::http::filter::wasm::WasmFilter(p)),
                        Some(Err((field, reason))) => {
                            self.err(field, reason);
                            continue;
                        }
                        None => continue,
                    }
                }
                _ if f.fault.is_some() => {
                    let raw = f
                        .fault
                        .as_ref()
                        .map(|r| self.fault_filter(&format!("{fp}.fault"), r, stat_prefix));
                    match raw.flatten() {
                        Some(x) => FilterKind::Fault(Box::new(x)),
                        None => continue,
                    }
                }
                (Some(m), None, None, None) => {
                    let m = self.header_mutation(&format!("{fp}.header_mutation"), m.as_ref());
                    FilterKind::HeaderMutation(HeaderMutationFilter::new(&m))
                }
                (None, Some(b), None, None) => match self.buffer(&format!("{fp}.buffer"), b) {
                    Some(b) => FilterKind::Buffer(b),
                    None => continue,
                },
                (None, None, Some(l), None) => {
                    match self.local_ratelimit(&format!("{fp}.local_ratelimit"), l, false) {
                        Some(l) => FilterKind::LocalRateLimit(l),
                        None => continue,
                    }
                }
                (None, None, None, Some(r)) => FilterKind::Rbac(Box::new(self.rbac_filter(
                    &format!("{fp}.rbac"),
                    r,
                    stat_prefix,
                ))),
                _ => continue,
            };
            out.push(HttpFilter {
                name: f.name.clone(),
                kind,
            });
        }
        let mutations = out
            .iter()
            .filter(|f| matches!(f.kind, FilterKind::HeaderMutation(_)))
            .count();
        if out
            .iter()
            .filter(|f| matches!(f.kind, FilterKind::ExtProc(_)))
            .count()
            > 1
        {
            self.err(
                format!("{p}.http_filters"),
                "at most one ext_proc filter per chain",
            );
        }
        if mutations > MAX_HEADER_MUTATION_FILTERS {
            self.err(
                format!("{p}.http_filters"),
                format!("at most {MAX_HEADER_MUTATION_FILTERS} header_mutation filters"),
            );
        }
        out
    }

    /// A route's `per_filter_config` must name a filter of a listener that uses its table.
    pub(super) fn check_filter_overrides(&mut self, raw: &RawConfig) {
        for (i, t) in raw.route_tables.iter().enumerate() {
            let users: Vec<RawTerminal<'_>> = raw
                .listeners
                .iter()
                .flat_map(raw_terminals)
                .filter(|c| c.route_table.as_deref() == Some(t.name.as_str()))
                .collect();
            if users.is_empty() {
                continue;
            }
            for (j, v) in t.virtual_hosts.iter().enumerate() {
                for (k, r) in v.routes.iter().enumerate() {
                    for name in r.per_filter_config.keys() {
                        let known = users
                            .iter()
                            .any(|l| l.http_filters.iter().any(|f| &f.name == name));
                        if !known {
                            self.err(
                                format!("route_tables[{i}].virtual_hosts[{j}].routes[{k}].per_filter_config.{name}"),
                                format!("no HTTP filter named `{name}` on the listeners that use route table `{}`", t.name),
                            );
                        }
                    }
                }
            }
        }
    }

    pub(super) fn route_table(
        &mut self,
        i: usize,
        t: &RawRouteTable,
        clusters: &[Arc<Cluster>],
    ) -> RouteTable {
        let p = format!("route_tables[{i}]");
        self.lax_clusters = !t.validate_clusters;
        let table_edits = self.header_mutation(&p, t.header_mutation());
        let mut seen_domains = HashSet::new();
        let virtual_hosts = t
            .virtual_hosts
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let vp = format!("{p}.virtual_hosts[{j}]");
                if v.domains.is_empty() {
                    self.err(format!("{vp}.domains"), "must list at least one domain");
                }
                let domains = v
                    .domains
                    .iter()
                    .enumerate()
                    .filter_map(|(k, d)| {
                        let dp = format!("{vp}.domains[{k}]");
                        let d = d.to_ascii_lowercase();
                        if !seen_domains.insert(d.clone()) {
                            self.err(
                                dp.clone(),
                                format!("domain `{d}` is claimed by more than one virtual host"),
                            );
                        }
                        self.domain(dp, &d)
                    })
                    .collect();
                let vhost_edits = self.header_mutation(&vp, v.header_mutation());
                let levels = [&vhost_edits, &table_edits];
                let vhost_limits = self.rate_limits(&format!("{vp}.rate_limits"), &v.rate_limits);
                let vhost_retries = Retries {
                    policy: v
                        .retry_policy
                        .as_ref()
                        .map(|r| Box::new(self.retry_policy(&format!("{vp}.retry_policy"), r))),
                    attempt_count_request: v.include_request_attempt_count,
                    attempt_count_response: v.include_attempt_count_in_response,
                    per_request_buffer_limit: v.per_request_buffer_limit_bytes,
                    hedge_on_per_try_timeout: v
                        .hedge_policy
                        .is_some_and(|h| h.hedge_on_per_try_timeout),
                };
                let routes = v
                    .routes
                    .iter()
                    .enumerate()
                    .filter_map(|(k, r)| {
                        let rp = format!("{vp}.routes[{k}]");
                        let mut route =
                            self.route(rp.clone(), r, clusters, levels, &vhost_limits)?;
                        // Routes of a virtual host that share a prefix share their stats,
                        // as Envoy's do (the same stat names).
                        route.stats =
                            r.stat_prefix
                                .as_deref()
                                .filter(|s| !s.is_empty())
                                .map(|sp| {
                                    self.route_stats_index(format!("vhost.{}.route.{sp}", v.name))
                                });
                        if let RouteAction::Cluster(f) = &mut route.action {
                            // The route's policy replaces the virtual host's whole (Envoy).
                            f.retries = Retries {
                                policy: match &r.retry_policy {
                                    Some(raw) => Some(Box::new(
                                        self.retry_policy(&format!("{rp}.retry_policy"), raw),
                                    )),
                                    None => vhost_retries.policy.clone(),
                                },
                                per_request_buffer_limit: r
                                    .per_request_buffer_limit_bytes
                                    .or(vhost_retries.per_request_buffer_limit),
                                hedge_on_per_try_timeout: match r.hedge_policy {
                                    Some(h) => h.hedge_on_per_try_timeout,
                                    None => vhost_retries.hedge_on_per_try_timeout,
                                },
                                ..vhost_retries.clone()
                            };
                        } else {
                            for (field, set) in [
                                ("retry_policy", r.retry_policy.is_some()),
                                ("hedge_policy", r.hedge_policy.is_some()),
                            ] {
                                if set {
                                    self.err(
                                        format!("{rp}.{field}"),
                                        "needs a `cluster`, `cluster_header` or `weighted_clusters` route",
                                    );
                                }
                            }
                        }
                        Some(route)
                    })
                    .collect();
                VirtualHost {
                    name: v.name.clone(),
                    domains,
                    routes,
                }
            })
            .collect();
        let virtual_hosts: Vec<VirtualHost> = virtual_hosts;
        let domains = DomainIndex::build(
            virtual_hosts
                .iter()
                .enumerate()
                .flat_map(|(i, v)| v.domains.iter().map(move |d| (i, d))),
        );
        self.lax_clusters = false;
        let header_routes = virtual_hosts.iter().flat_map(|v| &v.routes).any(|r| {
            matches!(&r.action, RouteAction::Cluster(f) if matches!(f.target, ClusterTarget::Header(_))
                || f.mirrors.iter().any(|m| matches!(m.target, MirrorTarget::Header(_))))
        });
        RouteTable {
            name: t.name.clone(),
            virtual_hosts,
            domains,
            ignore_port_in_host_matching: t.ignore_port_in_host_matching,
            clusters_by_name: if header_routes {
                super::route_action::clusters_by_name(clusters)
            } else {
                Default::default()
            },
        }
    }

    fn domain(&mut self, path: String, d: &str) -> Option<DomainMatch> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:_[]".contains(&b))
        };
        if d.len() > MAX_DOMAIN_LEN {
            self.err(path, format!("longer than {MAX_DOMAIN_LEN} bytes"));
            return None;
        }
        let m = if d == "*" {
            DomainMatch::Any
        } else if let Some(rest) = d.strip_prefix('*') {
            if !rest.starts_with('.') && !rest.starts_with('-') || !valid(rest) {
                self.err(
                    path,
                    format!("`{d}`: a leading wildcard must be followed by `.` or `-` and a name"),
                );
                return None;
            }
            DomainMatch::Suffix(rest.to_string())
        } else if let Some(rest) = d.strip_suffix('*') {
            if !valid(rest) {
                self.err(path, format!("`{d}` is not a valid domain"));
                return None;
            }
            DomainMatch::Prefix(rest.to_string())
        } else if valid(d) {
            DomainMatch::Exact(d.to_string())
        } else {
            self.err(path, format!("`{d}` is not a valid domain"));
            return None;
        };
        Some(m)
    }

    /// Checks a buffer filter's config, recording errors under `prefix`.
    fn buffer(&mut self, prefix: &str, raw: &RawBuffer) -> Option<BufferFilter> {
        let mut errors = Vec::new();
        let b = raw.build(prefix, &mut errors);
        for (path, message) in errors {
            self.err(path, message);
        }
        b
    }

    /// Checks a local rate-limit config (a filter's, or a route's with `per_route`).
    fn local_ratelimit(
        &mut self,
        prefix: &str,
        raw: &RawLocalRateLimit,
        per_route: bool,
    ) -> Option<LocalRateLimitFilter> {
        let names = stats::names(&raw.stat_prefix);
        let counters = stats::Counters::from_indices(names.map(|n| self.counter(n)));
        let mut errors = Vec::new();
        let l = raw.build(prefix, per_route, counters, &mut errors, self);
        for (path, message) in errors {
            self.err(path, message);
        }
        l.map(|l| LocalRateLimitFilter(Arc::new(l)))
    }

    /// Checks a level's `rate_limits`, recording errors under `prefix`.
    fn rate_limits(&mut self, prefix: &str, raw: &[RawRateLimit]) -> Vec<Policy> {
        let mut errors = Vec::new();
        let p = descriptors::build(raw, prefix, &mut errors, self);
        for (path, message) in errors {
            self.err(path, message);
        }
        p
    }

    /// Checks one level's header edits, recording errors under `prefix`.
    fn header_mutation(&mut self, prefix: &str, raw: RawHeaderMutationRef<'_>) -> HeaderMutation {
        let mut errors = Vec::new();
        let m = raw.build(prefix, &mut errors);
        for (path, message) in errors {
            self.err(path, message);
        }
        m
    }

    /// A route's edits compiled with its virtual host's and route table's (in that order,
    /// as Envoy applies them), and its per-filter overrides.
    fn route_filters(
        &mut self,
        p: &str,
        r: &RawRoute,
        outer: [&HeaderMutation; 2],
        vhost_limits: &[Policy],
    ) -> RouteFilterConfig {
        let own = self.header_mutation(p, r.header_mutation());
        let [vhost, table] = outer;
        let mut overrides = Vec::new();
        for (name, o) in &r.per_filter_config {
            let op = format!("{p}.per_filter_config.{name}");
            let types = [
                o.header_mutation.is_some(),
                o.buffer.is_some(),
                o.local_ratelimit.is_some(),
                o.rbac.is_some(),
                o.fault.is_some(),
                o.cors.is_some(),
                o.ext_proc.is_some(),
                o.ext_authz.is_some(),
            ];
            let policy = o.fault.is_some()
                || o.cors.is_some()
                || o.ext_proc.is_some()
                || o.ext_authz.is_some();
            if policy && (o.disabled || types.iter().filter(|t| **t).count() != 1) {
                self.err(
                    op,
                    "set either `disabled: true` or the filter's own config (`header_mutation`, `buffer`, `local_ratelimit`, `rbac`, `fault`, `cors`, `ext_proc`, `ext_authz`)",
                );
                continue;
            }
            if let Some(f) = &o.fault {
                if let Some(s) = self.fault_settings(&format!("{op}.fault"), f) {
                    overrides.push((name.clone(), FilterOverride::Fault(Box::new(s))));
                }
                continue;
            }
            if let Some(e) = &o.ext_proc {
                let mut errors = Vec::new();
                let ov = e.build(&format!("{op}.ext_proc"), &mut errors);
                for (path, m) in errors {
                    self.err(path, m);
                }
                overrides.push((name.clone(), FilterOverride::ExtProc(ov)));
                continue;
            }
            if let Some(a) = &o.ext_authz {
                let a = self.ext_authz_per_route(&format!("{op}.ext_authz"), a);
                overrides.push((name.clone(), FilterOverride::ExtAuthz(Box::new(a))));
                continue;
            }
            if let Some(c) = &o.cors {
                if let Some(c) = self.cors_policy(&format!("{op}.cors"), c) {
                    overrides.push((name.clone(), FilterOverride::Cors(Box::new(c))));
                }
                continue;
            }
            let own = (&o.header_mutation, &o.buffer, &o.local_ratelimit, &o.rbac);
            match (o.disabled, own) {
                (true, (None, None, None, None)) => {
                    overrides.push((name.clone(), FilterOverride::Disabled))
                }
                (false, (None, None, Some(l), None)) => {
                    if let Some(l) = self.local_ratelimit(&format!("{op}.local_ratelimit"), l, true)
                    {
                        overrides.push((name.clone(), FilterOverride::LocalRateLimit(l)));
                    }
                }
                (false, (None, None, None, Some(r))) => {
                    let r = self.rbac_rules(&format!("{op}.rbac"), r);
                    overrides.push((name.clone(), FilterOverride::Rbac(Box::new(r))));
                }
                (false, (Some(m), None, None, None)) => {
                    let m = self.header_mutation(&format!("{op}.header_mutation"), m.as_ref());
                    overrides.push((
                        name.clone(),
                        FilterOverride::HeaderMutation(HeaderMutationFilter::new(&m)),
                    ));
                }
                (false, (None, Some(b), None, None)) => {
                    if let Some(b) = self.buffer(&format!("{op}.buffer"), b) {
                        overrides.push((name.clone(), FilterOverride::Buffer(b)));
                    }
                }
                _ => self.err(
                    op,
                    "set either `disabled: true` or the filter's own config (`header_mutation`, `buffer`, `local_ratelimit`, `rbac`, `fault`, `cors`, `ext_proc`, `ext_authz`)",
                ),
            }
        }
        RouteFilterConfig {
            request_headers: HeaderPlan::compile([&own.request, &vhost.request, &table.request]),
            response_headers: HeaderPlan::compile([
                &own.response,
                &vhost.response,
                &table.response,
            ]),
            overrides,
            rate_limits: RouteRateLimits {
                route: self.rate_limits(&format!("{p}.rate_limits"), &r.rate_limits),
                vhost: vhost_limits.to_vec(),
            },
            forwards: false,
            cluster: None,
        }
    }

    fn route(
        &mut self,
        p: String,
        r: &RawRoute,
        clusters: &[Arc<Cluster>],
        outer: [&HeaderMutation; 2],
        vhost_limits: &[Policy],
    ) -> Option<Route> {
        let mut filters = self.route_filters(&p, r, outer, vhost_limits);
        let m = self.route_match(&p, &r.matcher);
        let action = self.route_action(&p, r, clusters)?;
        // What the fault and CORS filters read of the route (Envoy's route entry).
        if let RouteAction::Cluster(f) = &action {
            filters.forwards = true;
            match f.target {
                ClusterTarget::Named(i) => {
                    filters.cluster = clusters.get(i).map(|c| c.name.clone())
                }
                ClusterTarget::Missing => filters.cluster = r.cluster.clone(),
                _ => {}
            }
        }
        let m = m?;
        Some(Route {
            name: r.name.as_deref().filter(|n| !n.is_empty()).map(Arc::from),
            path: m.path,
            headers: m.headers,
            query_parameters: m.query_parameters,
            grpc: m.grpc,
            runtime_fraction: m.runtime_fraction,
            action,
            filters,
            stats: None,
        })
    }
}

/// The rate-limit actions' matchers, checked as a route's are.
impl descriptors::Matchers for Builder {
    fn header(
        &mut self,
        p: &str,
        raw: &crate::config::raw_match::RawHeaderMatch,
    ) -> Option<crate::config::HeaderMatch> {
        self.header_match(p, raw)
    }

    fn query(
        &mut self,
        p: &str,
        raw: &crate::config::raw_match::RawQueryParameterMatch,
    ) -> Option<crate::config::QueryParameterMatch> {
        self.query_match(p, raw)
    }
}
