//! Envoy `RouteConfiguration` -> a native route table: virtual hosts, routes (path and
//! header matches, cluster or direct response, timeout, upgrades), header edits and
//! `typed_per_filter_config`. Control plane only.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource, HeaderValueOption};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route, route_action::ClusterSpecifier,
    route_match::PathSpecifier, FilterConfig, HeaderMatcher, Route, RouteConfiguration,
};
use envoy_types::pb::envoy::extensions::filters::http::buffer::v3::{
    buffer_per_route::Override as BufferOverride, Buffer as PbBuffer, BufferPerRoute,
};
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{
    HeaderMutationPerRoute, Mutations,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::google::protobuf::Any;

use super::super::raw::{
    RawDataSource, RawDirectResponse, RawHeaderMatch, RawRoute, RawRouteMatch, RawRouteTable,
    RawVirtualHost,
};
use super::convert::{duration, header_adds, mutations, native_duration, payload, Translation, R};
use super::{err, walk};
use crate::http::filter::buffer::RawBuffer;
use crate::http::filter::header_mutation::RawHeaderAdd;
use crate::http::filter::RawFilterOverride;

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
            routes.push(self::route(r, &rp, levels, filters, upgrades)?);
        }
        let ve = edits(
            &v.request_headers_to_add,
            &v.request_headers_to_remove,
            &v.response_headers_to_add,
            &v.response_headers_to_remove,
            &vp,
        )?;
        virtual_hosts.push(RawVirtualHost {
            name: v.name.clone(),
            domains: v.domains.clone(),
            routes,
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
    outer: [Level<'_>; 2],
    filters: &[ChainFilter],
    upgrades: &[(String, bool)],
) -> R<RawRoute> {
    let m = r
        .r#match
        .as_ref()
        .ok_or_else(|| err(format!("{p}.match"), "is required"))?;
    let mp = format!("{p}.match");
    let (path, prefix, connect) = match &m.path_specifier {
        Some(PathSpecifier::Prefix(x)) => (None, Some(x.clone()), false),
        Some(PathSpecifier::Path(x)) => (Some(x.clone()), None, false),
        // Envoy: a connect_matcher route matches CONNECT requests only. Native CONNECT
        // routing ignores paths, so the route gets an exact path no request can carry (a
        // request target has no spaces): other requests never match it.
        Some(PathSpecifier::ConnectMatcher(_)) => {
            (Some("/ (CONNECT only)".to_string()), None, true)
        }
        _ => return Err(err(mp, "set `prefix`, `path` or `connect_matcher`")),
    };
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(k, h)| header_match(h, &format!("{mp}.headers[{k}]")))
        .collect::<R<Vec<_>>>()?;
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
        matcher: RawRouteMatch {
            path,
            prefix,
            headers,
            ..Default::default()
        },
        cluster: None,
        cluster_header: None,
        weighted_clusters: None,
        redirect: None,
        timeout: None,
        prefix_rewrite: None,
        regex_rewrite: None,
        host_rewrite_literal: None,
        auto_host_rewrite: false,
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
            match &a.cluster_specifier {
                Some(ClusterSpecifier::Cluster(c)) => out.cluster = Some(c.clone()),
                _ => return Err(err(format!("{ap}.cluster"), "is required")),
            }
            // Envoy's route timeout defaults to 15s; zero disables it.
            let timeout =
                duration(&a.timeout, &format!("{ap}.timeout"))?.unwrap_or(Duration::from_secs(15));
            out.timeout = Some(native_duration(timeout));
            // Envoy: an upgrade type must be configured on the connection manager; a
            // route may switch it on or off. CONNECT needs a connect_matcher route.
            for (t, enabled) in upgrades {
                let own = a
                    .upgrade_configs
                    .iter()
                    .find(|u| u.upgrade_type.eq_ignore_ascii_case(t));
                let on = own.map_or(*enabled, |u| u.enabled.as_ref().is_none_or(|b| b.value));
                if !on || (t == "connect") != connect {
                    continue;
                }
                // Without connect_config Envoy forwards the CONNECT request to the
                // upstream as HTTP; Outrigger only terminates CONNECT (Envoy's
                // connect_config: a TCP connection to the cluster, then a tunnel).
                if t == "connect" && own.and_then(|u| u.connect_config.as_ref()).is_none() {
                    return Err(err(
                        format!("{ap}.upgrade_configs"),
                        "CONNECT is only supported terminated: add an upgrade config \
                         {upgrade_type: CONNECT, connect_config: {}} to this route",
                    ));
                }
                out.upgrades.push(t.clone());
            }
        }
        Some(route::Action::DirectResponse(d)) => {
            let dp = format!("{p}.direct_response");
            let status = u16::try_from(d.status)
                .ok()
                .filter(|s| (200..600).contains(s))
                .ok_or_else(|| err(format!("{dp}.status"), "must be between 200 and 599"))?;
            let body = match &d.body {
                None => None,
                Some(b) => Some(data_string(b, &format!("{dp}.body"))?),
            };
            out.direct_response = Some(RawDirectResponse {
                status,
                body: body.map(RawDataSource::Inline),
                content_type: None,
            });
        }
        _ => {
            return Err(err(
                p,
                "set `route` or `direct_response` (other actions are not supported by Outrigger)",
            ))
        }
    }
    Ok(out)
}

fn data_string(d: &DataSource, p: &str) -> R<String> {
    match &d.specifier {
        Some(data_source::Specifier::InlineString(s)) => Ok(s.clone()),
        Some(data_source::Specifier::InlineBytes(b)) => String::from_utf8(b.clone())
            .map_err(|_| err(format!("{p}.inline_bytes"), "must be UTF-8 for Outrigger")),
        _ => Err(err(p, "set `inline_string` or `inline_bytes`")),
    }
}

// `exact_match` and `prefix_match` are deprecated in Envoy's API but still accepted.
#[allow(deprecated)]
fn header_match(h: &HeaderMatcher, p: &str) -> R<RawHeaderMatch> {
    let mut out = RawHeaderMatch {
        name: h.name.clone(),
        invert_match: h.invert_match,
        ..Default::default()
    };
    match &h.header_match_specifier {
        // Envoy: no specifier matches when the header is present.
        None => out.present_match = Some(true),
        Some(HeaderMatchSpecifier::ExactMatch(v)) => out.exact_match = Some(v.clone()),
        Some(HeaderMatchSpecifier::PrefixMatch(v)) => out.prefix_match = Some(v.clone()),
        Some(HeaderMatchSpecifier::PresentMatch(b)) => out.present_match = Some(*b),
        Some(HeaderMatchSpecifier::StringMatch(s)) => match &s.match_pattern {
            Some(MatchPattern::Exact(v)) => out.exact_match = Some(v.clone()),
            Some(MatchPattern::Prefix(v)) => out.prefix_match = Some(v.clone()),
            _ => return Err(err(format!("{p}.string_match"), "set `exact` or `prefix`")),
        },
        Some(_) => {
            return Err(err(
                p,
                "only exact, prefix and present matches are supported",
            ))
        }
    }
    Ok(out)
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
                    },
                    Some((_, PerFilter::Buffer(b))) => RawFilterOverride {
                        disabled: false,
                        header_mutation: None,
                        buffer: Some(b.clone()),
                        rbac: None,
                    },
                    Some((_, PerFilter::Mutations(_) | PerFilter::Rbac(_))) => {
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
                    PerFilter::Buffer(_) | PerFilter::Rbac(_) => {
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
