//! Envoy `Cluster` -> native raw cluster: discovery type, connect timeout, load balancing
//! policy (and its panic threshold), endpoints, health checks (`health.rs`), circuit
//! breakers and the upstream HTTP protocol options. Control plane only.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config::LocalityConfigSpecifier;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, Cluster};
use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
use envoy_types::pb::envoy::config::core::v3::RoutingPriority;
use envoy_types::pb::envoy::config::core::v3::{HealthStatus, Locality};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions as UpstreamHttp;

use super::super::raw::{RawCluster, RawEndpoint, RawPool, RawTcpKeepalive};
use super::super::raw_circuit::{RawCircuitBreakers, RawPercent, RawRetryBudget, RawThresholds};
use super::convert::{
    duration, ip_socket_address, native_duration, payload, socket_address, timeout_or_never, R,
};
use super::{err, PathMap};

const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

pub(super) fn translate(
    c: &Cluster,
    p: &str,
    index: usize,
    paths: &mut PathMap,
    ads: &super::convert::AdsSecrets,
) -> R<RawCluster> {
    let native = format!("clusters[{index}]");
    paths.add(native.clone(), p.to_string());
    let kind = match &c.cluster_discovery_type {
        None => DiscoveryType::Static,
        Some(ClusterDiscoveryType::Type(t)) => {
            DiscoveryType::try_from(*t).map_err(|_| err(format!("{p}.type"), "unknown value"))?
        }
        Some(ClusterDiscoveryType::ClusterType(_)) => {
            return Err(err(
                format!("{p}.cluster_type"),
                "not supported by Outrigger",
            ))
        }
    };
    let dns = match kind {
        DiscoveryType::Static | DiscoveryType::OriginalDst => false,
        // Resolved by the control executor, again every `dns_refresh_rate`.
        DiscoveryType::StrictDns | DiscoveryType::LogicalDns => true,
        // xDS turns an EDS cluster into a STATIC one once its endpoints arrive
        // (config/envoy/xds.rs); a bootstrap without ADS has nowhere to get them.
        DiscoveryType::Eds => {
            return Err(err(
                format!("{p}.type"),
                "`EDS` needs `dynamic_resources.ads_config` in the bootstrap",
            ))
        }
    };
    // Envoy's default connect timeout is 5s; it must be positive.
    let connect_timeout = duration(&c.connect_timeout, &format!("{p}.connect_timeout"))?
        .unwrap_or(Duration::from_secs(5));
    let lb = LbPolicy::try_from(c.lb_policy)
        .map_err(|_| err(format!("{p}.lb_policy"), "unknown value"))?;
    let original_dst = kind == DiscoveryType::OriginalDst;
    // Envoy: an ORIGINAL_DST cluster must say CLUSTER_PROVIDED, and only it may.
    if original_dst != (lb == LbPolicy::ClusterProvided) {
        return Err(err(
            format!("{p}.lb_policy"),
            "`CLUSTER_PROVIDED` goes with `type: ORIGINAL_DST`, and only with it",
        ));
    }
    let (
        lb_policy,
        ring_hash_lb_config,
        maglev_lb_config,
        slow_start,
        least_request_lb_config,
        peak_ewma_lb_config,
    ) = match &c.load_balancing_policy {
        // The typed form replaces the enum, as in Envoy.
        Some(lbp) if !original_dst => super::lb::typed(lbp, &format!("{p}.load_balancing_policy"))?,
        _ => {
            let lb_policy = match lb {
                LbPolicy::ClusterProvided => "round_robin",
                LbPolicy::RoundRobin => "round_robin",
                LbPolicy::LeastRequest => "least_request",
                LbPolicy::Random => "random",
                LbPolicy::RingHash => "ring_hash",
                LbPolicy::Maglev => "maglev",
                other => {
                    return Err(err(
                        format!("{p}.lb_policy"),
                        format!("`{}` is not supported by Outrigger", other.as_str_name()),
                    ))
                }
            };
            super::lb::lb_config(c, p, lb_policy, &native, paths)?
        }
    };
    let mut endpoints = Vec::new();
    let mut locality_weights = std::collections::BTreeMap::new();
    let mut overprovisioning_factor = None;
    if let Some(la) = &c.load_assignment {
        overprovisioning_factor = la
            .policy
            .as_ref()
            .and_then(|p| p.overprovisioning_factor.as_ref())
            .map(|f| f.value);
        for (j, locality) in la.endpoints.iter().enumerate() {
            let lp = format!("{p}.load_assignment.endpoints[{j}]");
            let name = locality_name(locality.locality.as_ref());
            if let Some(w) = &locality.load_balancing_weight {
                // Envoy keys locality weights by locality; one weight per locality here.
                if locality_weights
                    .insert(name.clone(), w.value)
                    .is_some_and(|o| o != w.value)
                {
                    return Err(err(
                        format!("{lp}.load_balancing_weight"),
                        "the same locality with another weight is not supported by Outrigger",
                    ));
                }
                if w.value == 0 {
                    return Err(err(
                        format!("{lp}.load_balancing_weight"),
                        "must be at least 1",
                    ));
                }
            }
            for (k, lb) in locality.lb_endpoints.iter().enumerate() {
                let ep = format!("{p}.load_assignment.endpoints[{j}].lb_endpoints[{k}]");
                let Some(HostIdentifier::Endpoint(e)) = &lb.host_identifier else {
                    return Err(err(format!("{ep}.endpoint"), "is required"));
                };
                let at = format!("{ep}.endpoint.address");
                let (address, port) = if dns {
                    socket_address(&e.address, &at)?
                } else {
                    ip_socket_address(&e.address, &at)?
                };
                let n = format!("{native}.endpoints[{}]", endpoints.len());
                paths.add(n.clone(), format!("{at}.socket_address"));
                paths.add(format!("{n}.weight"), format!("{ep}.load_balancing_weight"));
                endpoints.push(RawEndpoint {
                    address,
                    port,
                    weight: Some(lb.load_balancing_weight.as_ref().map_or(1, |w| w.value)),
                    // What auto_host_rewrite sends as Host (Envoy: the endpoint's hostname).
                    hostname: (!e.hostname.is_empty()).then(|| e.hostname.clone()),
                    priority: (locality.priority > 0).then_some(locality.priority),
                    locality: (!name.is_empty()).then(|| name.clone()),
                    health_status: match HealthStatus::try_from(lb.health_status) {
                        Ok(HealthStatus::Unknown) | Err(_) => None,
                        Ok(h) => Some(h.as_str_name().to_ascii_lowercase()),
                    },
                    metadata: socket_match_metadata(lb.metadata.as_ref()),
                });
            }
        }
    }
    // Envoy's default upstream idle timeout is one hour; zero disables it.
    let mut idle_timeout = Duration::from_secs(3600);
    // Envoy: the deprecated cluster field or the common HTTP protocol options' one,
    // never both; 0 is no limit.
    #[allow(deprecated)]
    let mut max_requests = c
        .max_requests_per_connection
        .map(|v| (v.value, format!("{p}.max_requests_per_connection")));
    let mut protocol = "http1";
    let mut max_concurrent_streams = None;
    let mut max_stream_duration = None;
    // Envoy's HTTP/1 codec drops trailers unless `enable_trailers`.
    let mut h1_trailers = false;
    for (key, any) in &c.typed_extension_protocol_options {
        let kp = format!("{p}.typed_extension_protocol_options[\"{key}\"]");
        if key != HTTP_OPTIONS {
            return Err(err(kp, format!("`{key}` is not supported by Outrigger")));
        }
        let o: UpstreamHttp = payload(any, HTTP_OPTIONS, &kp)?;
        if let Some(common) = &o.common_http_protocol_options {
            let cp = format!("{kp}.common_http_protocol_options");
            if let Some(d) = duration(&common.idle_timeout, &format!("{cp}.idle_timeout"))? {
                idle_timeout = d;
            }
            if let Some(v) = common.max_requests_per_connection {
                let at = format!("{cp}.max_requests_per_connection");
                if max_requests.is_some() {
                    return Err(err(
                        at,
                        "only one of the cluster's `max_requests_per_connection` and this one can be set (Envoy)",
                    ));
                }
                max_requests = Some((v.value, at));
            }
            let at = format!("{cp}.max_stream_duration");
            if let Some(d) = duration(&common.max_stream_duration, &at)? {
                // Envoy arms the timer in whole milliseconds (0: none).
                max_stream_duration = Some((Duration::from_millis(d.as_millis() as u64), at));
            }
            if common.max_headers_count.is_some() {
                return Err(err(
                    format!("{cp}.max_headers_count"),
                    "not supported by Outrigger for upstream connections",
                ));
            }
        }
        protocol = match &o.upstream_protocol_options {
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => {
                let ep = format!("{kp}.explicit_http_config");
                match &e.protocol_config {
                    Some(ProtocolConfig::HttpProtocolOptions(h1)) => {
                        h1_trailers = h1.enable_trailers;
                        "http1"
                    }
                    Some(ProtocolConfig::Http2ProtocolOptions(h2)) => {
                        let hp = format!("{ep}.http2_protocol_options");
                        max_concurrent_streams =
                            h2_settings(h2, &hp, &native, paths)?.or(max_concurrent_streams);
                        "http2"
                    }
                    _ => {
                        return Err(err(
                            ep,
                            "set `http_protocol_options` or `http2_protocol_options`",
                        ))
                    }
                }
            }
            // Envoy: the downstream's protocol, HTTP/2 only if the cluster allows it.
            Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(d)) => {
                h1_trailers = d
                    .http_protocol_options
                    .as_ref()
                    .is_some_and(|h| h.enable_trailers);
                match &d.http2_protocol_options {
                    Some(h2) => {
                        let hp =
                            format!("{kp}.use_downstream_protocol_config.http2_protocol_options");
                        max_concurrent_streams =
                            h2_settings(h2, &hp, &native, paths)?.or(max_concurrent_streams);
                        "downstream"
                    }
                    None => "http1",
                }
            }
            _ => {
                return Err(err(
                    kp,
                    "set `explicit_http_config` or `use_downstream_protocol_config`",
                ))
            }
        };
    }
    let mut raw = RawCluster {
        name: c.name.clone(),
        transport_socket_matches: socket_matches(c, p, ads)?,
        connect_timeout: Some(native_duration(connect_timeout)),
        lb_policy: Some(lb_policy.into()),
        ring_hash_lb_config,
        maglev_lb_config,
        least_request_lb_config,
        peak_ewma_lb_config,
        // An ORIGINAL_DST cluster with endpoints is refused by the native builder.
        endpoints: (!original_dst || !endpoints.is_empty()).then_some(endpoints),
        kind: match kind {
            DiscoveryType::OriginalDst => Some("original_dst".into()),
            DiscoveryType::StrictDns => Some("strict_dns".into()),
            DiscoveryType::LogicalDns => Some("logical_dns".into()),
            _ => None,
        },
        dns_refresh_rate: None,
        dns_failure_refresh_rate: None,
        dns_lookup_family: None,
        source_address: match &c.upstream_bind_config {
            Some(b) => {
                let at = format!("{p}.upstream_bind_config.source_address");
                let Some(sa) = &b.source_address else {
                    return Err(err(at, "is required"));
                };
                paths.add(format!("{native}.source_address"), at);
                Some(sa.address.clone())
            }
            None => None,
        },
        original_dst_lb_config: super::lb::original_dst_lb(c, p, &native, paths),
        pool: Some(RawPool {
            max_idle_per_endpoint: None,
            idle_timeout: Some(timeout_or_never(idle_timeout)),
            max_requests_per_connection: max_requests.as_ref().map(|(n, _)| *n),
            max_concurrent_streams,
            max_stream_duration: max_stream_duration
                .as_ref()
                .map(|(d, _)| native_duration(*d)),
        }),
        tcp_keepalive: tcp_keepalive(c, p, &native, paths),
        protocol: Some(protocol.into()),
        http1_trailers: Some(h1_trailers),
        tls: None,
        health_checks: c
            .health_checks
            .iter()
            .enumerate()
            .map(|(i, h)| super::health::translate(h, &format!("{p}.health_checks[{i}]")))
            .collect::<R<_>>()?,
        healthy_panic_threshold: c
            .common_lb_config
            .as_ref()
            .and_then(|l| l.healthy_panic_threshold.as_ref())
            .map(|t| t.value),
        overprovisioning_factor,
        locality_weighted_lb: c
            .common_lb_config
            .as_ref()
            .and_then(|l| l.locality_config_specifier.as_ref())
            .map(|s| matches!(s, LocalityConfigSpecifier::LocalityWeightedLbConfig(_))),
        locality_weights: (!locality_weights.is_empty()).then_some(locality_weights),
        slow_start,
        circuit_breakers: c.circuit_breakers.as_ref().map(circuit_breakers),
        outlier_detection: c
            .outlier_detection
            .as_ref()
            .map(|o| super::outlier::translate(o, &format!("{p}.outlier_detection")))
            .transpose()?,
    };
    if let Some((_, at)) = max_requests {
        paths.add(format!("{native}.pool.max_requests_per_connection"), at);
    }
    if let Some((_, at)) = max_stream_duration {
        paths.add(format!("{native}.pool.max_stream_duration"), at);
    }
    paths.add(
        format!("{native}.outlier_detection"),
        format!("{p}.outlier_detection"),
    );
    paths.add(
        format!("{native}.circuit_breakers"),
        format!("{p}.circuit_breakers"),
    );
    paths.add(
        format!("{native}.healthy_panic_threshold"),
        format!("{p}.common_lb_config.healthy_panic_threshold"),
    );
    if dns {
        super::dns::translate(c, p, &native, paths, &mut raw)?;
    }
    super::tls::upstream(&c.transport_socket, p, &mut raw, ads)?;
    paths.add(
        format!("clusters[{index}].tls"),
        format!("{p}.transport_socket"),
    );
    Ok(raw)
}

/// Envoy's `circuit_breakers` as the native block, field for field (the native builder
/// checks them).
fn circuit_breakers(cb: &CircuitBreakers) -> RawCircuitBreakers {
    let list =
        |l: &[envoy_types::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds]| {
            l.iter()
                .map(|t| RawThresholds {
                    priority: Some(
                        if t.priority == RoutingPriority::High as i32 {
                            "HIGH"
                        } else {
                            "DEFAULT"
                        }
                        .into(),
                    ),
                    max_connections: t.max_connections.map(|v| v.value),
                    max_pending_requests: t.max_pending_requests.map(|v| v.value),
                    max_requests: t.max_requests.map(|v| v.value),
                    max_retries: t.max_retries.map(|v| v.value),
                    retry_budget: t.retry_budget.map(|b| RawRetryBudget {
                        budget_percent: b.budget_percent.map(|p| RawPercent { value: p.value }),
                        min_retry_concurrency: b.min_retry_concurrency.map(|v| v.value),
                    }),
                    track_remaining: t.track_remaining,
                    max_connection_pools: t.max_connection_pools.map(|v| v.value),
                })
                .collect()
        };
    RawCircuitBreakers {
        thresholds: list(&cb.thresholds),
        per_host_thresholds: list(&cb.per_host_thresholds),
    }
}

/// The HTTP/2 settings of upstream connections: `max_concurrent_streams` (the native
/// `pool.max_concurrent_streams`); the message may be present and empty (it selects
/// HTTP/2), and no other setting is supported for upstream connections yet.
fn h2_settings(
    h2: &Http2ProtocolOptions,
    path: &str,
    native: &str,
    paths: &mut PathMap,
) -> R<Option<u32>> {
    let rest = Http2ProtocolOptions {
        max_concurrent_streams: None,
        ..h2.clone()
    };
    if rest != Http2ProtocolOptions::default() {
        return Err(err(
            path,
            "HTTP/2 settings for upstream connections other than `max_concurrent_streams` are not supported by Outrigger",
        ));
    }
    let n = h2.max_concurrent_streams.map(|v| v.value);
    if n.is_some() {
        paths.add(
            format!("{native}.pool.max_concurrent_streams"),
            format!("{path}.max_concurrent_streams"),
        );
    }
    Ok(n)
}

/// `upstream_connection_options.tcp_keepalive` as the native `tcp_keepalive` (the
/// walker refused the message's other fields).
fn tcp_keepalive(
    c: &Cluster,
    p: &str,
    native: &str,
    paths: &mut PathMap,
) -> Option<RawTcpKeepalive> {
    let k = c
        .upstream_connection_options
        .as_ref()?
        .tcp_keepalive
        .as_ref()?;
    paths.add(
        format!("{native}.tcp_keepalive"),
        format!("{p}.upstream_connection_options.tcp_keepalive"),
    );
    Some(RawTcpKeepalive {
        keepalive_probes: k.keepalive_probes.map(|v| v.value),
        keepalive_time: k.keepalive_time.map(|v| v.value),
        keepalive_interval: k.keepalive_interval.map(|v| v.value),
    })
}

/// A locality's name: `region/zone/sub_zone` (`""` for none).
fn locality_name(l: Option<&Locality>) -> String {
    match l {
        Some(l) if !(l.region.is_empty() && l.zone.is_empty() && l.sub_zone.is_empty()) => {
            format!("{}/{}/{}", l.region, l.zone, l.sub_zone)
        }
        _ => String::new(),
    }
}

/// The metadata key `transport_socket_matches` entries match endpoints on.
const SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// An endpoint's `filter_metadata["envoy.transport_socket_match"]`.
fn socket_match_metadata(
    m: Option<&envoy_types::pb::envoy::config::core::v3::Metadata>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let fields = m.and_then(|m| m.filter_metadata.get(SOCKET_MATCH));
    match fields.map(super::access_log::json) {
        Some(serde_json::Value::Object(o)) => o.into_iter().collect(),
        _ => Default::default(),
    }
}

/// Envoy's `transport_socket_matches`: each entry's criteria and transport.
fn socket_matches(
    c: &Cluster,
    p: &str,
    ads: &super::convert::AdsSecrets,
) -> R<Vec<crate::config::raw::RawTlsMatch>> {
    let mut out = Vec::new();
    for (i, m) in c.transport_socket_matches.iter().enumerate() {
        let at = format!("{p}.transport_socket_matches[{i}]");
        let Some(ts) = &m.transport_socket else {
            return Err(err(format!("{at}.transport_socket"), "is required"));
        };
        let criteria = match m.r#match.as_ref().map(super::access_log::json) {
            Some(serde_json::Value::Object(o)) => o.into_iter().collect(),
            _ => Default::default(),
        };
        out.push(crate::config::raw::RawTlsMatch {
            name: m.name.clone(),
            criteria,
            tls: super::tls::upstream_tls(ts, &format!("{at}.transport_socket"), ads)?,
        });
    }
    Ok(out)
}
