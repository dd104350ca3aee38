//! Envoy `Listener` -> a native listener in its filter-chain shape: the address, the
//! listener filters and their timeout, each chain's `filter_chain_match` and its one
//! network filter (HTTP connection manager or TCP proxy). Control plane only.

use envoy_types::pb::envoy::config::core::v3::CidrRange as PbCidr;
use envoy_types::pb::envoy::config::listener::v3::{
    filter, listener_filter, FilterChain as PbChain, FilterChainMatch as PbMatch, Listener,
};
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy,
};

use super::super::raw::{
    RawFilterChain, RawFilterChainMatch, RawListener, RawTcpProxy, RawWeightedCluster,
};
use super::convert::{
    duration, ip_socket_address, native_duration, payload, timeout_or_never, Translation, R,
};
use super::{err, hcm, walk};

const HCM: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const HTTP_INSPECTOR: &str = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";
const TLS_INSPECTOR: &str = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
const ORIGINAL_DST: &str = "envoy.extensions.filters.listener.original_dst.v3.OriginalDst";

pub(super) fn translate(l: &Listener, i: usize, tx: &mut Translation) -> R<()> {
    let p = format!("static_resources.listeners[{i}]");
    let native = format!("listeners[{i}]");
    tx.paths.add(native.clone(), p.clone());
    tx.paths
        .add(format!("{native}.port"), format!("{p}.address"));
    tx.paths
        .add(format!("{native}.address"), format!("{p}.address"));
    let (address, port) = ip_socket_address(&l.address, &format!("{p}.address"))?;
    // Envoy names an unnamed listener itself; ours must be unique and stable.
    let name = if l.name.is_empty() {
        format!("listener_{i}")
    } else {
        l.name.clone()
    };
    let mut listener_filters = Vec::new();
    for (k, f) in l.listener_filters.iter().enumerate() {
        let fp = format!("{p}.listener_filters[{k}]");
        let Some(listener_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
            return Err(err(format!("{fp}.typed_config"), "is required"));
        };
        let name = if walk::type_name(&any.type_url) == TLS_INSPECTOR {
            let _: TlsInspector = payload(any, TLS_INSPECTOR, &format!("{fp}.typed_config"))?;
            "tls_inspector"
        } else if walk::type_name(&any.type_url) == ORIGINAL_DST {
            let _: OriginalDst = payload(any, ORIGINAL_DST, &format!("{fp}.typed_config"))?;
            "original_dst"
        } else {
            let _: HttpInspector = payload(any, HTTP_INSPECTOR, &format!("{fp}.typed_config"))?;
            "http_inspector"
        };
        tx.paths.add(format!("{native}.listener_filters[{k}]"), fp);
        listener_filters.push(name.to_string());
    }
    // Envoy: the listener filters may wait 15s for the first bytes; zero: no limit.
    let listener_filters_timeout = duration(
        &l.listener_filters_timeout,
        &format!("{p}.listener_filters_timeout"),
    )?
    .unwrap_or(std::time::Duration::from_secs(15));
    tx.direction = l.traffic_direction;
    let mut filter_chains = Vec::new();
    for (j, fc) in l.filter_chains.iter().enumerate() {
        let cp = format!("{p}.filter_chains[{j}]");
        let np = format!("{native}.filter_chains[{j}]");
        filter_chains.push(self::chain(fc, &cp, &np, &name, j, tx)?);
    }
    let default_filter_chain = match &l.default_filter_chain {
        Some(fc) => {
            let cp = format!("{p}.default_filter_chain");
            let np = format!("{native}.default_filter_chain");
            let n = filter_chains.len();
            Some(self::chain(fc, &cp, &np, &name, n, tx)?)
        }
        None => None,
    };
    tx.raw.listeners.push(RawListener {
        name,
        address,
        port,
        route_table: None,
        tcp_proxy: None,
        strip_any_host_port: None,
        strip_matching_host_port: None,
        limits: None,
        idle_timeout: None,
        backlog: None,
        access_log: None,
        http2: None,
        request_headers_timeout: None,
        stream_idle_timeout: None,
        max_stream_duration: None,
        max_connections: None,
        forwarding: None,
        proxy_headers: None,
        tracing: None,
        istio_stats: None,
        http_filters: Vec::new(),
        network_filters: Vec::new(),
        listener_filters,
        listener_filters_timeout: Some(native_duration(listener_filters_timeout)),
        continue_on_listener_filters_timeout: Some(l.continue_on_listener_filters_timeout),
        // Envoy has no server-first detection.
        server_first_probe: None,
        filter_chains,
        default_filter_chain,
        use_original_dst: l.use_original_dst.as_ref().map(|v| v.value),
        bind_to_port: l.bind_to_port.as_ref().map(|v| v.value),
    });
    Ok(())
}

fn chain(
    fc: &PbChain,
    p: &str,
    native: &str,
    listener: &str,
    index: usize,
    tx: &mut Translation,
) -> R<RawFilterChain> {
    // The last filter is the terminal; network RBAC filters may come before it.
    let last = fc.filters.len().saturating_sub(1);
    tx.paths.add(
        native.to_string(),
        format!("{p}.filters[{last}].typed_config"),
    );
    tx.paths.add(format!("{native}.name"), format!("{p}.name"));
    tx.paths.add(
        format!("{native}.filter_chain_match"),
        format!("{p}.filter_chain_match"),
    );
    let filter_chain_match = fc.filter_chain_match.as_ref().map(chain_match);
    let Some((f, before)) = fc.filters.split_last() else {
        return Err(err(
            format!("{p}.filters"),
            "needs a terminal network filter: an http_connection_manager or a tcp_proxy",
        ));
    };
    let mut network_filters = Vec::new();
    let mut istio_stats = None;
    for (k, nf) in before.iter().enumerate() {
        let np = format!("{p}.filters[{k}].typed_config");
        match &nf.config_type {
            // Istio's stats network filter (before a tcp_proxy): the chain's `istio_stats`.
            Some(filter::ConfigType::TypedConfig(any))
                if walk::type_name(&any.type_url) == super::istio_stats::PLUGIN_CONFIG =>
            {
                istio_stats = Some(super::istio_stats::translate(any, &np, tx)?);
                tx.paths.add(format!("{native}.istio_stats"), np);
            }
            Some(filter::ConfigType::TypedConfig(any))
                if walk::type_name(&any.type_url) == super::ext_authz::NETWORK =>
            {
                let e = payload(any, super::ext_authz::NETWORK, &np)?;
                network_filters.push(super::ext_authz::network(&e, &nf.name, &np)?);
            }
            Some(filter::ConfigType::TypedConfig(any))
                if walk::type_name(&any.type_url) == super::rbac::NETWORK =>
            {
                let r = payload(any, super::rbac::NETWORK, &np)?;
                network_filters.push(super::rbac::network(&r, &nf.name, &np)?);
            }
            _ => {
                return Err(err(
                    np,
                    "Outrigger supports network RBAC, ext_authz and Istio stats filters before the chain's last filter (an http_connection_manager or a tcp_proxy), and no other",
                ))
            }
        }
    }
    let fp = format!("{p}.filters[{last}].typed_config");
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        return Err(err(fp, "is required"));
    };
    let name = if fc.name.is_empty() {
        format!("{listener}/{index}")
    } else {
        fc.name.clone()
    };
    let mut chain = RawFilterChain {
        name,
        filter_chain_match,
        route_table: None,
        tcp_proxy: None,
        strip_any_host_port: None,
        strip_matching_host_port: None,
        codec: None,
        stat_prefix: None,
        limits: None,
        idle_timeout: None,
        access_log: None,
        http2: None,
        request_headers_timeout: None,
        stream_idle_timeout: None,
        max_stream_duration: None,
        forwarding: None,
        proxy_headers: None,
        tracing: None,
        istio_stats,
        http_filters: Vec::new(),
        network_filters,
        tls: super::tls::downstream(&fc.transport_socket, p, &tx.ads_secrets)?,
    };
    tx.paths
        .add(format!("{native}.tls"), format!("{p}.transport_socket"));
    match walk::type_name(&any.type_url) {
        HCM => {
            let h = payload(any, HCM, &fp)?;
            hcm::translate(&h, &fp, native, listener, &mut chain, tx)?;
        }
        TCP_PROXY => {
            let t: TcpProxy = payload(any, TCP_PROXY, &fp)?;
            tcp_proxy(&t, &fp, native, &mut chain, tx)?;
        }
        other => {
            return Err(err(
                fp,
                format!("network filter type `{other}` is not supported by Outrigger"),
            ))
        }
    }
    Ok(chain)
}

fn tcp_proxy(
    t: &TcpProxy,
    p: &str,
    native: &str,
    chain: &mut RawFilterChain,
    tx: &mut Translation,
) -> R<()> {
    if t.stat_prefix.is_empty() {
        return Err(err(format!("{p}.stat_prefix"), "is required"));
    }
    tx.paths.add(format!("{native}.tcp_proxy"), p.to_string());
    let mut raw = RawTcpProxy {
        cluster: None,
        weighted_clusters: Vec::new(),
    };
    match &t.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => raw.cluster = Some(c.clone()),
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            for c in &w.clusters {
                raw.weighted_clusters.push(RawWeightedCluster {
                    name: c.name.clone(),
                    weight: c.weight,
                });
            }
            tx.paths.add(
                format!("{native}.tcp_proxy.weighted_clusters"),
                format!("{p}.weighted_clusters.clusters"),
            );
        }
        None => {
            return Err(err(
                format!("{p}.cluster"),
                "set `cluster` or `weighted_clusters`",
            ))
        }
    }
    // Envoy's TCP proxy idle timeout defaults to one hour; zero disables it.
    let idle = duration(&t.idle_timeout, &format!("{p}.idle_timeout"))?
        .unwrap_or(std::time::Duration::from_secs(3600));
    chain.idle_timeout = Some(timeout_or_never(idle));
    chain.access_log = super::access_log::access_log(&t.access_log, &format!("{p}.access_log"))?;
    chain.tcp_proxy = Some(raw);
    Ok(())
}

/// The match in the native syntax (CIDR ranges as `ADDRESS/LEN`); the native builder
/// checks it.
fn chain_match(m: &PbMatch) -> RawFilterChainMatch {
    let cidrs = |list: &[PbCidr]| {
        list.iter()
            .map(|c| {
                let len = c.prefix_len.as_ref().map_or(0, |l| l.value);
                format!("{}/{len}", c.address_prefix)
            })
            .collect()
    };
    RawFilterChainMatch {
        destination_port: m.destination_port.as_ref().map(|v| v.value),
        prefix_ranges: cidrs(&m.prefix_ranges),
        server_names: m.server_names.clone(),
        transport_protocol: Some(m.transport_protocol.clone()).filter(|t| !t.is_empty()),
        application_protocols: m.application_protocols.clone(),
        source_prefix_ranges: cidrs(&m.source_prefix_ranges),
        source_ports: m.source_ports.clone(),
    }
}
