//! Envoy `RouteConfiguration` -> a native route table: virtual hosts, routes (the match
//! is in `matching`; the actions: cluster, cluster header or weighted clusters with
//! their rewrites, timeout and upgrades, redirect, direct response), header edits and
//! `typed_per_filter_config`. Control plane only.

pub(super) mod matching;
mod retry;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource, HeaderValueOption};
use envoy_types::pb::envoy::config::route::v3::{
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    route,
    route_action::{ClusterNotFoundResponseCode, ClusterSpecifier, HostRewriteSpecifier},
    weighted_cluster::cluster_weight::HostRewriteSpecifier as WeightHostRewrite,
    FilterConfig, RedirectAction, Route, RouteAction, RouteConfiguration, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::http::buffer::v3::{
    buffer_per_route::Override as BufferOverride, Buffer as PbBuffer, BufferPerRoute,
};
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{
    HeaderMutationPerRoute, Mutations,
};
use envoy_types::pb::google::protobuf::Any;

use super::super::raw::{
    RawClusterWeight, RawDataSource, RawDataSourceFields, RawDirectResponse, RawMirrorPolicy,
    RawRedirect, RawRoute, RawRouteTable, RawVirtualHost, RawWeightedClusters,
};
use super::convert::{duration, header_adds, mutations, native_duration, payload, Translation, R};
use super::{err, walk, PathMap};
use crate::http::filter::buffer::RawBuffer;
use crate::http::filter::header_mutation::RawHeaderAdd;
use crate::http::filter::RawFilterOverride;
use matching::At;

const PER_ROUTE: &str = "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute";
const BUFFER_PER_ROUTE: &str = "envoy.extensions.filters.http.buffer.v3.BufferPerRoute";
const FILTER_CONFIG: &str = "envoy.config.route.v3.FilterConfig";

/// A level's `typed_per_filter_config` and its field path.
type Level<'a> = (&'a HashMap<String, Any>, String);

/// A filter of the chain (other than the router): its name and kind.
pub(super) type ChainFilter = (String, ChainOwn);

/// What the per-route translation needs of a chain filter.
pub(super) enum ChainOwn {
    /// A header-mutation filter, with its own mutations.
    Mutations(Option<Mutations>),
    /// A buffer filter.
    Buffer,
    /// An RBAC filter.
    Rbac,
    /// A fault-injection filter.
    Fault,
    /// A CORS filter.
    Cors,
}

/// The four header-edit lists of any level, translated.
struct Edits {
    req_add: Vec<RawHeaderAdd>,
    req_remove: Vec<String>,
    resp_add: Vec<RawHeaderAdd>,
    resp_remove: Vec<String>,
}

fn edits(
    req_add: &[HeaderValueOption],
    req_remove: &[String],
    resp_add: &[HeaderValueOption],
    resp_remove: &[String],
    p: &str,
) -> R<Edits> {
    Ok(Edits {
        req_add: header_adds(req_add, &format!("{p}.request_headers_to_add"))?,
        req_remove: req_remove.to_vec(),
        resp_add: header_adds(resp_add, &format!("{p}.response_headers_to_add"))?,
        resp_remove: resp_remove.to_vec(),
    })
}

/// Translates `rc` into a route table for the chain whose HTTP filters are `filters` and
/// whose connection manager allows `upgrades` (type, enabled); returns the table's name.
pub(super) fn translate(
    rc: &RouteConfiguration,
    p: &str,
    listener: &str,
    filters: &[ChainFilter],
    upgrades: &[(String, bool)],
    tx: &mut Translation,
) -> R<String> {
    let t = tx.raw.route_tables.len();
    let taken = |n: &str| tx.raw.route_tables.iter().any(|r| r.name == n);
    let name = if !rc.name.is_empty() && !taken(&rc.name) {
        rc.name.clone()
    } else {
        format!("{listener}#{t}")
    };
    let np = format!("route_tables[{t}]");
    tx.paths.add(np.clone(), p.to_string());
    let top = (
        &rc.typed_per_filter_config,
        format!("{p}.typed_per_filter_config"),
    );
    let e = edits(
        &rc.request_headers_to_add,
        &rc.request_headers_to_remove,
        &rc.response_headers_to_add,
        &rc.response_headers_to_remove,
        p,
    )?;
    let mut virtual_hosts = Vec::new();
    for (j, v) in rc.virtual_hosts.iter().enumerate() {
        let vp = format!("{p}.virtual_hosts[{j}]");
        let vhost = (
            &v.typed_per_filter_config,
            format!("{vp}.typed_per_filter_config"),
        );
        let mut routes = Vec::new();
        for (k, r) in v.routes.iter().enumerate() {
            let rp = format!("{vp}.routes[{k}]");
            let nrp = format!("{np}.virtual_hosts[{j}].routes[{k}]");
            for (n, e) in [
                ("cluster", "route.cluster"),
                ("timeout", "route.timeout"),
                ("upgrades", "route.upgrade_configs"),
                ("per_filter_config", "typed_per_filter_config"),
            ] {
                tx.paths.add(format!("{nrp}.{n}"), format!("{rp}.{e}"));
            }
            let levels = [top.clone(), vhost.clone()];
            let paths = &mut tx.paths;
            routes.push(self::route(r, &rp, &nrp, levels, filters, upgrades, paths)?);
        }
        let ve = edits(
            &v.request_headers_to_add,
            &v.request_headers_to_remove,
            &v.response_headers_to_add,
            &v.response_headers_to_remove,
            &vp,
        )?;
        let retry_policy = match &v.retry_policy {
            None => None,
            Some(rp) => {
                let at = At {
                    envoy: &format!("{vp}.retry_policy"),
                    native: &format!("{np}.virtual_hosts[{j}].retry_policy"),
                };
                Some(retry::retry_policy(rp, &at, &mut tx.paths)?)
            }
        };
        virtual_hosts.push(RawVirtualHost {
            name: v.name.clone(),
            domains: v.domains.clone(),
            routes,
            retry_policy,
            include_request_attempt_count: v.include_request_attempt_count,
            include_attempt_count_in_response: v.include_attempt_count_in_response,
            request_headers_to_add: ve.req_add,
            request_headers_to_remove: ve.req_remove,
            response_headers_to_add: ve.resp_add,
            response_headers_to_remove: ve.resp_remove,
        });
    }
    tx.raw.route_tables.push(RawRouteTable {
        name: name.clone(),
        virtual_hosts,
        ignore_port_in_host_matching: rc.ignore_port_in_host_matching,
        request_headers_to_add: e.req_add,
        request_headers_to_remove: e.req_remove,
        response_headers_to_add: e.resp_add,
        response_headers_to_remove: e.resp_remove,
    });
    Ok(name)
}

fn route(
    r: &Route,
    p: &str,
    np: &str,
    outer: [Level<'_>; 2],
    filters: &[ChainFilter],
    upgrades: &[(String, bool)],
    paths: &mut PathMap,
) -> R<RawRoute> {
    let m = r
        .r#match
        .as_ref()
        .ok_or_else(|| err(format!("{p}.match"), "is required"))?;
    let at = At {
        envoy: &format!("{p}.match"),
        native: &format!("{np}.match"),
    };
    let (matcher, connect) = matching::route_match(m, &at, paths)?;
    let [table, vhost] = outer;
    let own = (
        &r.typed_per_filter_config,
        format!("{p}.typed_per_filter_config"),
    );
    let per_filter = per_filter_config([own, vhost, table], filters)?;
    let e = edits(
        &r.request_headers_to_add,
        &r.request_headers_to_remove,
        &r.response_headers_to_add,
        &r.response_headers_to_remove,
        p,
    )?;
    let mut out = RawRoute {
        matcher,
        cluster: None,
        cluster_header: None,
        weighted_clusters: None,
        redirect: None,
        timeout: None,
        prefix_rewrite: None,
        regex_rewrite: None,
        host_rewrite_literal: None,
        auto_host_rewrite: false,
        retry_policy: None,
        request_mirror_policies: Vec::new(),
        cluster_not_found_response_code: None,
        direct_response: None,
        upgrades: Vec::new(),
        per_filter_config: per_filter,
        request_headers_to_add: e.req_add,
        request_headers_to_remove: e.req_remove,
        response_headers_to_add: e.resp_add,
        response_headers_to_remove: e.resp_remove,
    };
    match &r.action {
        Some(route::Action::Route(a)) => {
            let ap = format!("{p}.route");
            route_action(a, &ap, np, connect, upgrades, &mut out, paths)?;
        }
        Some(route::Action::Redirect(rd)) => {
            let at = At {
                envoy: &format!("{p}.redirect"),
                native: &format!("{np}.redirect"),
            };
            paths.add(at.native.to_string(), at.envoy.to_string());
            out.redirect = Some(redirect(rd, &at, paths)?);
        }
        Some(route::Action::DirectResponse(d)) => {
            let dp = format!("{p}.direct_response");
            paths.add(format!("{np}.direct_response"), dp.clone());
            let status = u16::try_from(d.status)
                .ok()
                .filter(|s| (200..600).contains(s))
                .ok_or_else(|| err(format!("{dp}.status"), "must be between 200 and 599"))?;
            let body = match &d.body {
                None => None,
                Some(b) => Some(data_source(b, &format!("{dp}.body"))?),
            };
            out.direct_response = Some(RawDirectResponse {
                status,
                body,
                content_type: None,
            });
        }
        _ => {
            return Err(err(
                p,
                "set `route`, `redirect` or `direct_response` (other actions are not supported by Outrigger)",
            ))
        }
    }
    Ok(out)
}

fn route_action(
    a: &RouteAction,
    ap: &str,
    np: &str,
    connect: bool,
    upgrades: &[(String, bool)],
    out: &mut RawRoute,
    paths: &mut PathMap,
) -> R<()> {
    // The native route holds the action's fields itself.
    for f in [
        "cluster_header",
        "weighted_clusters",
        "prefix_rewrite",
        "host_rewrite_literal",
        "cluster_not_found_response_code",
    ] {
        paths.add(format!("{np}.{f}"), format!("{ap}.{f}"));
    }
    match &a.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => out.cluster = Some(c.clone()),
        Some(ClusterSpecifier::ClusterHeader(h)) => out.cluster_header = Some(h.clone()),
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            out.weighted_clusters = Some(weighted_clusters(w, &format!("{ap}.weighted_clusters"))?)
        }
        _ => {
            return Err(err(
                format!("{ap}.cluster"),
                "set `cluster`, `cluster_header` or `weighted_clusters`",
            ))
        }
    }
    let code =
        ClusterNotFoundResponseCode::try_from(a.cluster_not_found_response_code).map_err(|_| {
            err(
                format!("{ap}.cluster_not_found_response_code"),
                "unknown value",
            )
        })?;
    out.cluster_not_found_response_code = Some(code.as_str_name().to_string());
    if let Some(rp) = &a.retry_policy {
        let at = At {
            envoy: &format!("{ap}.retry_policy"),
            native: &format!("{np}.retry_policy"),
        };
        out.retry_policy = Some(retry::retry_policy(rp, &at, paths)?);
    }
    for (k, m) in a.request_mirror_policies.iter().enumerate() {
        let mp = format!("{ap}.request_mirror_policies[{k}]");
        paths.add(format!("{np}.request_mirror_policies[{k}]"), mp.clone());
        out.request_mirror_policies.push(RawMirrorPolicy {
            cluster: Some(m.cluster.clone()).filter(|c| !c.is_empty()),
            cluster_header: Some(m.cluster_header.clone()).filter(|c| !c.is_empty()),
            runtime_fraction: match &m.runtime_fraction {
                Some(f) => Some(matching::fraction(f, &format!("{mp}.runtime_fraction"))?),
                None => None,
            },
            disable_shadow_host_suffix_append: m.disable_shadow_host_suffix_append,
            host_rewrite_literal: Some(m.host_rewrite_literal.clone()).filter(|h| !h.is_empty()),
            trace_sampled: m.trace_sampled.as_ref().map(|b| b.value),
        });
    }
    // Envoy: an empty prefix_rewrite is no rewrite.
    out.prefix_rewrite = Some(a.prefix_rewrite.clone()).filter(|x| !x.is_empty());
    if let Some(rx) = &a.regex_rewrite {
        let at = At {
            envoy: &format!("{ap}.regex_rewrite"),
            native: &format!("{np}.regex_rewrite"),
        };
        paths.add(at.native.to_string(), at.envoy.to_string());
        out.regex_rewrite = Some(matching::regex_rewrite(rx, &at, paths)?);
    }
    match &a.host_rewrite_specifier {
        None => {}
        Some(HostRewriteSpecifier::HostRewriteLiteral(h)) => {
            out.host_rewrite_literal = Some(h.clone())
        }
        Some(HostRewriteSpecifier::AutoHostRewrite(b)) => out.auto_host_rewrite = b.value,
        // The walker refuses the other forms.
        Some(_) => {
            return Err(err(
                ap,
                "only `host_rewrite_literal` and `auto_host_rewrite` are supported",
            ))
        }
    }
    // Envoy's route timeout defaults to 15s; zero disables it.
    let timeout =
        duration(&a.timeout, &format!("{ap}.timeout"))?.unwrap_or(Duration::from_secs(15));
    out.timeout = Some(native_duration(timeout));
    // Envoy: an upgrade type must be configured on the connection manager; a route
    // may switch it on or off. CONNECT needs a connect_matcher route.
    for (t, enabled) in upgrades {
        let own = a
            .upgrade_configs
            .iter()
            .find(|u| u.upgrade_type.eq_ignore_ascii_case(t));
        let on = own.map_or(*enabled, |u| u.enabled.as_ref().is_none_or(|b| b.value));
        if !on || (t == "connect") != connect {
            continue;
        }
        // Without connect_config Envoy forwards the CONNECT request to the upstream as
        // HTTP; Outrigger only terminates CONNECT (Envoy's connect_config: a TCP
        // connection to the cluster, then a tunnel).
        if t == "connect" && own.and_then(|u| u.connect_config.as_ref()).is_none() {
            return Err(err(
                format!("{ap}.upgrade_configs"),
                "CONNECT is only supported terminated: add an upgrade config \
                 {upgrade_type: CONNECT, connect_config: {}} to this route",
            ));
        }
        out.upgrades.push(t.clone());
    }
    Ok(())
}

/// `weighted_clusters`: Envoy's weights are wrappers (unset is 0) and `total_weight`
/// is ignored (the sum is the total).
fn weighted_clusters(w: &WeightedCluster, p: &str) -> R<RawWeightedClusters> {
    let mut clusters = Vec::new();
    for (k, c) in w.clusters.iter().enumerate() {
        if c.name.is_empty() {
            return Err(err(
                format!("{p}.clusters[{k}].name"),
                "is required (`cluster_header` is not supported by Outrigger)",
            ));
        }
        clusters.push(RawClusterWeight {
            name: c.name.clone(),
            weight: c.weight.as_ref().map_or(0, |v| v.value),
            host_rewrite_literal: c
                .host_rewrite_specifier
                .as_ref()
                .map(|WeightHostRewrite::HostRewriteLiteral(h)| h.clone()),
        });
    }
    Ok(RawWeightedClusters {
        clusters,
        total_weight: None,
    })
}

/// `redirect`: Envoy's proto3 defaults (an empty string, port 0) mean "keep".
fn redirect(rd: &RedirectAction, at: &At<'_>, paths: &mut PathMap) -> R<RawRedirect> {
    let p = at.envoy;
    let code = RedirectResponseCode::try_from(rd.response_code)
        .map_err(|_| err(format!("{p}.response_code"), "unknown value"))?;
    let port_redirect = u16::try_from(rd.port_redirect)
        .map_err(|_| err(format!("{p}.port_redirect"), "must be at most 65535"))?;
    let mut out = RawRedirect {
        host_redirect: Some(rd.host_redirect.clone()).filter(|h| !h.is_empty()),
        port_redirect: Some(port_redirect).filter(|p| *p != 0),
        response_code: Some(code.as_str_name().to_string()),
        strip_query: rd.strip_query,
        ..Default::default()
    };
    match &rd.scheme_rewrite_specifier {
        Some(SchemeRewriteSpecifier::HttpsRedirect(b)) => out.https_redirect = *b,
        Some(SchemeRewriteSpecifier::SchemeRedirect(s)) => {
            out.scheme_redirect = Some(s.clone()).filter(|s| !s.is_empty())
        }
        None => {}
    }
    match &rd.path_rewrite_specifier {
        Some(PathRewriteSpecifier::PathRedirect(x)) => out.path_redirect = Some(x.clone()),
        Some(PathRewriteSpecifier::PrefixRewrite(x)) => out.prefix_rewrite = Some(x.clone()),
        Some(PathRewriteSpecifier::RegexRewrite(rx)) => {
            let sub = At {
                envoy: &format!("{p}.regex_rewrite"),
                native: &format!("{}.regex_rewrite", at.native),
            };
            paths.add(sub.native.to_string(), sub.envoy.to_string());
            out.regex_rewrite = Some(matching::regex_rewrite(rx, &sub, paths)?);
        }
        // The walker refuses `path_rewrite` (a path template).
        Some(_) => return Err(err(p, "`path_rewrite` is not supported by Outrigger")),
        None => {}
    }
    Ok(out)
}

/// A `direct_response` body: inline text (bytes must be UTF-8 for the native format), or
/// a file the native builder reads when the config loads, as Envoy does.
fn data_source(d: &DataSource, p: &str) -> R<RawDataSource> {
    let fields = |inline_string, filename| {
        RawDataSource::Source(RawDataSourceFields {
            inline_string,
            filename,
        })
    };
    match &d.specifier {
        Some(data_source::Specifier::InlineString(s)) => Ok(fields(Some(s.clone()), None)),
        Some(data_source::Specifier::InlineBytes(b)) => String::from_utf8(b.clone())
            .map(|s| fields(Some(s), None))
            .map_err(|_| err(format!("{p}.inline_bytes"), "must be UTF-8 for Outrigger")),
        Some(data_source::Specifier::Filename(f)) => Ok(fields(None, Some(f.clone()))),
        _ => Err(err(p, "set `inline_string`, `inline_bytes` or `filename`")),
    }
}

/// Envoy's header-mutation filter runs its own mutations, then those of every level's
/// per-route config (route, virtual host, route configuration: the less specific runs
/// last); the most specific `FilterConfig` decides whether the filter is disabled. Native
/// overrides replace a filter's edits, so the override carries all of them in that order.
/// Entries for filters the chain lacks are checked and then ignored, as Envoy does.
fn per_filter_config(
    levels: [Level<'_>; 3],
    filters: &[ChainFilter],
) -> R<BTreeMap<String, RawFilterOverride>> {
    let mut decoded: Vec<Vec<(String, PerFilter)>> = Vec::new();
    for (map, lp) in &levels {
        let mut entries = Vec::new();
        for (name, any) in map.iter() {
            let ep = format!("{lp}[\"{name}\"]");
            entries.push((name.clone(), filter_override(any, &ep)?));
        }
        decoded.push(entries);
    }
    let mut out = BTreeMap::new();
    for (name, own) in filters {
        let own = match own {
            ChainOwn::Mutations(m) => m,
            ChainOwn::Fault => {
                // Envoy's fault filter takes the most specific per-route config.
                let first = decoded
                    .iter_mut()
                    .flat_map(|e| e.iter_mut())
                    .find(|(n, _)| n == name);
                let o = match first {
                    None => continue,
                    Some((_, PerFilter::Disabled)) => RawFilterOverride {
                        disabled: true,
                        ..RawFilterOverride::default()
                    },
                    Some((_, PerFilter::Fault(f))) => RawFilterOverride {
                        fault: Some(std::mem::take(f)),
                        ..RawFilterOverride::default()
                    },
                    Some(_) => {
                        return Err(err(
                            "typed_per_filter_config",
                            format!(
                                "`{name}` is a fault filter; its per-route config is an HTTPFault"
                            ),
                        ))
                    }
                };
                out.insert(name.clone(), o);
                continue;
            }
            ChainOwn::Cors => {
                // Envoy's CORS filter reads every level's policy, the most specific
                // first; a FilterConfig that disables it at the most specific level
                // turns it off.
                let mut policies = Vec::new();
                let mut disabled = None;
                for (n, o) in decoded.iter().flat_map(|e| e.iter()) {
                    if n != name {
                        continue;
                    }
                    match o {
                        PerFilter::Disabled => {
                            disabled.get_or_insert(true);
                        }
                        PerFilter::Cors(c, p) => {
                            disabled.get_or_insert(false);
                            policies.push((c, p.clone()));
                        }
                        _ => {
                            return Err(err(
                                "typed_per_filter_config",
                                format!(
                                "`{name}` is a CORS filter; its per-route config is a CorsPolicy"
                            ),
                            ))
                        }
                    }
                }
                let o = match disabled {
                    None => continue,
                    Some(true) => RawFilterOverride {
                        disabled: true,
                        ..RawFilterOverride::default()
                    },
                    Some(false) => RawFilterOverride {
                        cors: Some(super::fault_cors::cors_policy(&policies)?),
                        ..RawFilterOverride::default()
                    },
                };
                out.insert(name.clone(), o);
                continue;
            }
            ChainOwn::Rbac => {
                // Envoy's RBAC filter takes the most specific per-route config.
                let first = decoded
                    .iter_mut()
                    .flat_map(|e| e.iter_mut())
                    .find(|(n, _)| n == name);
                let (disabled, rbac) = match first {
                    None => continue,
                    Some((_, PerFilter::Disabled)) => (true, None),
                    Some((_, PerFilter::Rbac(r))) => (false, Some(std::mem::take(r))),
                    Some(_) => {
                        return Err(err(
                            "typed_per_filter_config",
                            format!(
                            "`{name}` is an RBAC filter; its per-route config is an RBACPerRoute"
                        ),
                        ))
                    }
                };
                let o = RawFilterOverride {
                    disabled,
                    header_mutation: None,
                    buffer: None,
                    rbac,
                    fault: None,
                    cors: None,
                };
                out.insert(name.clone(), o);
                continue;
            }
            ChainOwn::Buffer => {
                // Envoy's buffer filter takes the most specific per-route config.
                let first = decoded
                    .iter()
                    .flat_map(|e| e.iter())
                    .find(|(n, _)| n == name);
                let o = match first {
                    None => continue,
                    Some((_, PerFilter::Disabled)) => RawFilterOverride {
                        disabled: true,
                        header_mutation: None,
                        buffer: None,
                        rbac: None,
                        fault: None,
                        cors: None,
                    },
                    Some((_, PerFilter::Buffer(b))) => RawFilterOverride {
                        disabled: false,
                        header_mutation: None,
                        buffer: Some(b.clone()),
                        rbac: None,
                        fault: None,
                        cors: None,
                    },
                    Some((_, PerFilter::Mutations(_) | PerFilter::Rbac(_)))
                    | Some((_, PerFilter::Fault(_) | PerFilter::Cors(..))) => {
                        return Err(err(
                            "typed_per_filter_config",
                            format!(
                            "`{name}` is a buffer filter; its per-route config is a BufferPerRoute"
                        ),
                        ))
                    }
                };
                out.insert(name.clone(), o);
                continue;
            }
        };
        let mut disabled = None;
        let mut merged = own.clone().unwrap_or_default();
        let mut any = false;
        for entries in &decoded {
            for (n, o) in entries {
                if n != name {
                    continue;
                }
                match o {
                    PerFilter::Disabled => {
                        disabled.get_or_insert(true);
                    }
                    PerFilter::Buffer(_)
                    | PerFilter::Rbac(_)
                    | PerFilter::Fault(_)
                    | PerFilter::Cors(..) => {
                        return Err(err(
                            "typed_per_filter_config",
                            format!("`{name}` is a header-mutation filter; a BufferPerRoute does not configure it"),
                        ))
                    }
                    PerFilter::Mutations(m) => {
                        disabled.get_or_insert(false);
                        merged.request_mutations.extend(m.request_mutations.clone());
                        merged
                            .response_mutations
                            .extend(m.response_mutations.clone());
                        any = true;
                    }
                }
            }
        }
        if disabled == Some(true) {
            out.insert(
                name.clone(),
                RawFilterOverride {
                    disabled: true,
                    header_mutation: None,
                    buffer: None,
                    rbac: None,
                    fault: None,
                    cors: None,
                },
            );
        } else if any {
            out.insert(
                name.clone(),
                RawFilterOverride {
                    disabled: false,
                    header_mutation: Some(mutations(&Some(merged), "(merged)")?),
                    buffer: None,
                    rbac: None,
                    fault: None,
                    cors: None,
                },
            );
        }
    }
    Ok(out)
}

/// The buffer filter's config (its own, or a route's `BufferPerRoute.buffer`): `max_request_bytes` is required (Envoy's validation).
pub(super) fn buffer(b: &PbBuffer, p: &str) -> R<RawBuffer> {
    match b.max_request_bytes {
        Some(v) => Ok(RawBuffer {
            max_request_bytes: Some(u64::from(v.value)),
        }),
        None => Err(err(format!("{p}.max_request_bytes"), "is required")),
    }
}

enum PerFilter {
    Disabled,
    Mutations(Mutations),
    Buffer(RawBuffer),
    Rbac(crate::config::raw_rbac::RawRbacFilter),
    Fault(crate::config::raw_fault_cors::RawFault),
    /// A `CorsPolicy` and its field path.
    Cors(
        envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy,
        String,
    ),
}

/// A `BufferPerRoute`: disabled, or its own limit.
fn buffer_override(b: &BufferPerRoute, ep: &str) -> R<PerFilter> {
    match &b.r#override {
        Some(BufferOverride::Disabled(true)) => Ok(PerFilter::Disabled),
        Some(BufferOverride::Buffer(buf)) => {
            Ok(PerFilter::Buffer(buffer(buf, &format!("{ep}.buffer"))?))
        }
        // Envoy: `disabled` must be true, and the oneof is required.
        _ => Err(err(ep, "set `disabled: true` or `buffer`")),
    }
}

/// One `typed_per_filter_config` entry: the header-mutation filter's per-route config,
/// or a `FilterConfig` that disables a filter or wraps that config.
fn filter_override(any: &Any, ep: &str) -> R<PerFilter> {
    let checked = |m: HeaderMutationPerRoute, p: String| {
        mutations(&m.mutations, &p)?;
        Ok(PerFilter::Mutations(m.mutations.unwrap_or_default()))
    };
    match walk::type_name(&any.type_url) {
        PER_ROUTE => checked(payload(any, PER_ROUTE, ep)?, format!("{ep}.mutations")),
        BUFFER_PER_ROUTE => buffer_override(&payload(any, BUFFER_PER_ROUTE, ep)?, ep),
        super::rbac::PER_ROUTE => Ok(PerFilter::Rbac(super::rbac::per_route_any(any, ep)?)),
        super::fault_cors::FAULT => Ok(PerFilter::Fault(super::fault_cors::fault(
            &payload(any, super::fault_cors::FAULT, ep)?,
            ep,
        )?)),
        super::fault_cors::CORS_POLICY => Ok(PerFilter::Cors(
            payload(any, super::fault_cors::CORS_POLICY, ep)?,
            ep.to_string(),
        )),
        FILTER_CONFIG => {
            let f: FilterConfig = payload(any, FILTER_CONFIG, ep)?;
            match (&f.config, f.disabled) {
                (None, true) => Ok(PerFilter::Disabled),
                (Some(inner), false) if walk::type_name(&inner.type_url) == BUFFER_PER_ROUTE => {
                    let cp = format!("{ep}.config");
                    buffer_override(&payload(inner, BUFFER_PER_ROUTE, &cp)?, &cp)
                }
                (Some(inner), false)
                    if walk::type_name(&inner.type_url) == super::rbac::PER_ROUTE =>
                {
                    let cp = format!("{ep}.config");
                    Ok(PerFilter::Rbac(super::rbac::per_route_any(inner, &cp)?))
                }
                (Some(inner), false)
                    if walk::type_name(&inner.type_url) == super::fault_cors::FAULT =>
                {
                    let cp = format!("{ep}.config");
                    let h = payload(inner, super::fault_cors::FAULT, &cp)?;
                    Ok(PerFilter::Fault(super::fault_cors::fault(&h, &cp)?))
                }
                (Some(inner), false)
                    if walk::type_name(&inner.type_url) == super::fault_cors::CORS_POLICY =>
                {
                    let cp = format!("{ep}.config");
                    let c = payload(inner, super::fault_cors::CORS_POLICY, &cp)?;
                    Ok(PerFilter::Cors(c, cp))
                }
                (Some(inner), false) => checked(
                    payload(inner, PER_ROUTE, &format!("{ep}.config"))?,
                    format!("{ep}.config.mutations"),
                ),
                _ => Err(err(ep, "set `disabled: true` or `config`")),
            }
        }
        other => Err(err(
            ep,
            format!("per-filter config type `{other}` is not supported by Outrigger"),
        )),
    }
}
