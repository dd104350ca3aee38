//! Envoy `RouteConfiguration` -> a native route table: virtual hosts, routes (the match
//! is in `matching`; the actions: cluster, cluster header or weighted clusters with
//! their rewrites, timeout and upgrades, redirect, direct response), header edits and
//! `typed_per_filter_config`. Control plane only.

mod hash;
pub(super) mod matching;
mod per_filter;
mod retry;

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    data_source, DataSource, HeaderValueOption, RoutingPriority,
};
use envoy_types::pb::envoy::config::route::v3::{
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    route,
    route_action::{ClusterNotFoundResponseCode, ClusterSpecifier, HostRewriteSpecifier},
    weighted_cluster::cluster_weight::HostRewriteSpecifier as WeightHostRewrite,
    RedirectAction, Route, RouteAction, RouteConfiguration, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::http::buffer::v3::Buffer as PbBuffer;
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::Mutations;
use envoy_types::pb::google::protobuf::Any;

use super::super::raw::{
    RawClusterWeight, RawDataSource, RawDataSourceFields, RawDirectResponse, RawMaxStreamDuration,
    RawMirrorPolicy, RawRedirect, RawRoute, RawRouteTable, RawVirtualHost, RawWeightedClusters,
};
use super::convert::{duration, header_adds, native_duration, Translation, R};
use super::{err, PathMap};
use crate::http::filter::buffer::RawBuffer;
use crate::http::filter::header_mutation::RawHeaderAdd;
use matching::At;

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
    /// A local rate-limit filter.
    LocalRateLimit,
    /// An RBAC filter.
    Rbac,
    /// A fault-injection filter.
    Fault,
    /// A CORS filter.
    Cors,
    /// An ext_proc filter.
    ExtProc,
    /// An ext_authz filter.
    ExtAuthz,
    /// A proxy-wasm filter (no per-route config but `disabled`).
    Wasm,
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
    // A generated name counts only this listener's tables, so that another listener's
    // change leaves it (and so the chain's fingerprint, `build/fingerprint.rs`) alone.
    let name = if !rc.name.is_empty() && !taken(&rc.name) {
        rc.name.clone()
    } else {
        let prefix = format!("{listener}#");
        let mut k = tx
            .raw
            .route_tables
            .iter()
            .filter(|r| r.name.starts_with(&prefix))
            .count();
        while taken(&format!("{prefix}{k}")) {
            k += 1;
        }
        format!("{prefix}{k}")
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
        let vhost_limits =
            super::local_ratelimit::rate_limits(&v.rate_limits, &format!("{vp}.rate_limits"))?;
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
        let vhost_hedge = match &v.hedge_policy {
            Some(h) => Some(retry::hedge_policy(h, &format!("{vp}.hedge_policy"))?),
            None => None,
        };
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
            rate_limits: vhost_limits,
            retry_policy,
            include_request_attempt_count: v.include_request_attempt_count,
            include_attempt_count_in_response: v.include_attempt_count_in_response,
            per_request_buffer_limit_bytes: vhost_buffer_limit(v),
            hedge_policy: vhost_hedge,
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
        // Envoy's default for a route table written inline; RDS ones come here with
        // `false` set (`config::envoy::xds`), Envoy's default for them.
        validate_clusters: rc.validate_clusters.as_ref().is_none_or(|v| v.value),
        request_headers_to_add: e.req_add,
        request_headers_to_remove: e.req_remove,
        response_headers_to_add: e.resp_add,
        response_headers_to_remove: e.resp_remove,
    });
    Ok(name)
}

/// `per_request_buffer_limit_bytes` (deprecated in Envoy 1.40 for
/// `request_body_buffer_limit`, which is not taken: it lifts the listener's limit).
#[allow(deprecated)]
fn route_buffer_limit(r: &Route) -> Option<u32> {
    r.per_request_buffer_limit_bytes.as_ref().map(|w| w.value)
}

/// The virtual host's `per_request_buffer_limit_bytes`.
#[allow(deprecated)]
fn vhost_buffer_limit(v: &envoy_types::pb::envoy::config::route::v3::VirtualHost) -> Option<u32> {
    v.per_request_buffer_limit_bytes.as_ref().map(|w| w.value)
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
    let per_filter = per_filter::per_filter_config([own, vhost, table], filters)?;
    let e = edits(
        &r.request_headers_to_add,
        &r.request_headers_to_remove,
        &r.response_headers_to_add,
        &r.response_headers_to_remove,
        p,
    )?;
    let mut out = RawRoute {
        name: (!r.name.is_empty()).then(|| r.name.clone()),
        matcher,
        cluster: None,
        cluster_header: None,
        weighted_clusters: None,
        redirect: None,
        timeout: None,
        priority: None,
        max_stream_duration: None,
        max_grpc_timeout: None,
        grpc_timeout_offset: None,
        prefix_rewrite: None,
        regex_rewrite: None,
        host_rewrite_literal: None,
        auto_host_rewrite: false,
        retry_policy: None,
        per_request_buffer_limit_bytes: route_buffer_limit(r),
        hedge_policy: None,
        stat_prefix: (!r.stat_prefix.is_empty()).then(|| r.stat_prefix.clone()),
        request_mirror_policies: Vec::new(),
        hash_policy: Vec::new(),
        cluster_not_found_response_code: None,
        direct_response: None,
        upgrades: Vec::new(),
        per_filter_config: per_filter,
        rate_limits: Vec::new(),
        request_headers_to_add: e.req_add,
        request_headers_to_remove: e.req_remove,
        response_headers_to_add: e.resp_add,
        response_headers_to_remove: e.resp_remove,
    };
    match &r.action {
        Some(route::Action::Route(a)) => {
            let ap = format!("{p}.route");
            out.rate_limits =
                super::local_ratelimit::rate_limits(&a.rate_limits, &format!("{ap}.rate_limits"))?;
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
    if let Some(h) = &a.hedge_policy {
        out.hedge_policy = Some(retry::hedge_policy(h, &format!("{ap}.hedge_policy"))?);
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
    out.hash_policy = hash::hash_policies(&a.hash_policy, ap, np, paths)?;
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
    // Envoy's `priority` (`RoutingPriority`, defined values only, as Envoy's
    // validation).
    match RoutingPriority::try_from(a.priority) {
        Ok(RoutingPriority::Default) => {}
        Ok(RoutingPriority::High) => out.priority = Some("HIGH".into()),
        Err(_) => return Err(err(format!("{ap}.priority"), "must be `DEFAULT` or `HIGH`")),
    }
    // Envoy's route timeout defaults to 15s; zero disables it.
    let timeout =
        duration(&a.timeout, &format!("{ap}.timeout"))?.unwrap_or(Duration::from_secs(15));
    out.timeout = Some(native_duration(timeout));
    let opt = |d: &Option<_>, f: &str| -> R<Option<String>> {
        Ok(duration(d, &format!("{ap}.{f}"))?.map(native_duration))
    };
    if let Some(m) = &a.max_stream_duration {
        out.max_stream_duration = Some(RawMaxStreamDuration {
            max_stream_duration: opt(
                &m.max_stream_duration,
                "max_stream_duration.max_stream_duration",
            )?,
            grpc_timeout_header_max: opt(
                &m.grpc_timeout_header_max,
                "max_stream_duration.grpc_timeout_header_max",
            )?,
            grpc_timeout_header_offset: opt(
                &m.grpc_timeout_header_offset,
                "max_stream_duration.grpc_timeout_header_offset",
            )?,
        });
    }
    #[allow(deprecated)]
    {
        out.max_grpc_timeout = opt(&a.max_grpc_timeout, "max_grpc_timeout")?;
        out.grpc_timeout_offset = opt(&a.grpc_timeout_offset, "grpc_timeout_offset")?;
    }
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

/// The buffer filter's config (its own, or a route's `BufferPerRoute.buffer`): `max_request_bytes` is required (Envoy's validation).
pub(super) fn buffer(b: &PbBuffer, p: &str) -> R<RawBuffer> {
    match b.max_request_bytes {
        Some(v) => Ok(RawBuffer {
            max_request_bytes: Some(u64::from(v.value)),
        }),
        None => Err(err(format!("{p}.max_request_bytes"), "is required")),
    }
}
