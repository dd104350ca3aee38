//! Envoy `Listener` -> a native listener with filter chains (`RawChainedListener`): the
//! address, listener filters, each chain's `filter_chain_match` and its one network
//! filter (HTTP connection manager or TCP proxy). Control plane only.

use std::collections::HashSet;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::CidrRange as PbCidr;
use envoy_types::pb::envoy::config::listener::v3::{
    filter, listener_filter, FilterChain as PbChain, FilterChainMatch as PbMatch, Listener,
};
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy,
};

use super::super::build::{RawChain, RawChainedListener};
use super::super::model::{CidrRange, FilterChainMatch, ListenerFilters};
use super::super::raw::{RawTcpProxy, RawWeightedCluster};
use super::bootstrap::{duration, ip_socket_address, payload, timeout_or_never, Translation, R};
use super::{err, hcm, walk};

const HCM: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const HTTP_INSPECTOR: &str = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";

pub(super) fn translate(l: &Listener, i: usize, tx: &mut Translation) -> R<()> {
    let p = format!("static_resources.listeners[{i}]");
    let native = format!("chained_listeners[{}]", tx.raw.chained_listeners.len());
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
    let mut listener_filters = ListenerFilters::default();
    for (k, f) in l.listener_filters.iter().enumerate() {
        let fp = format!("{p}.listener_filters[{k}]");
        let Some(listener_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
            return Err(err(format!("{fp}.typed_config"), "is required"));
        };
        let _: HttpInspector = payload(any, HTTP_INSPECTOR, &format!("{fp}.typed_config"))?;
        listener_filters.http_inspector = true;
    }
    let mut seen = HashSet::new();
    let mut filter_chains = Vec::new();
    for (j, fc) in l.filter_chains.iter().enumerate() {
        let cp = format!("{p}.filter_chains[{j}]");
        let chain = self::chain(
            fc,
            &cp,
            &format!("{native}.filter_chains[{j}]"),
            &name,
            j,
            tx,
        )?;
        if !seen.insert(chain.matcher.clone()) {
            return Err(err(
                format!("{cp}.filter_chain_match"),
                "multiple filter chains with the same matching rules are defined",
            ));
        }
        filter_chains.push(chain);
    }
    let default_filter_chain = match &l.default_filter_chain {
        Some(fc) => {
            let cp = format!("{p}.default_filter_chain");
            if fc.filter_chain_match.is_some() {
                return Err(err(
                    format!("{cp}.filter_chain_match"),
                    "the default filter chain has no match",
                ));
            }
            let n = filter_chains.len();
            Some(self::chain(
                fc,
                &cp,
                &format!("{native}.default_filter_chain"),
                &name,
                n,
                tx,
            )?)
        }
        None => None,
    };
    if filter_chains.is_empty() && default_filter_chain.is_none() {
        return Err(err(
            format!("{p}.filter_chains"),
            "a listener needs at least one filter chain",
        ));
    }
    tx.raw.chained_listeners.push(RawChainedListener {
        name,
        address,
        port,
        listener_filters,
        filter_chains,
        default_filter_chain,
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
) -> R<RawChain> {
    tx.paths
        .add(native.to_string(), format!("{p}.filters[0].typed_config"));
    let matcher = match &fc.filter_chain_match {
        Some(m) => chain_match(m, &format!("{p}.filter_chain_match"))?,
        None => FilterChainMatch::default(),
    };
    let [f] = fc.filters.as_slice() else {
        return Err(err(
            format!("{p}.filters"),
            "Outrigger supports exactly one network filter per chain: an http_connection_manager or a tcp_proxy",
        ));
    };
    let fp = format!("{p}.filters[0].typed_config");
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        return Err(err(fp, "is required"));
    };
    let name = if fc.name.is_empty() {
        format!("{listener}/{index}")
    } else {
        fc.name.clone()
    };
    let mut chain = RawChain {
        name,
        matcher,
        ..RawChain::default()
    };
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
    chain: &mut RawChain,
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
    chain.access_log = hcm::access_log(&t.access_log, &format!("{p}.access_log"))?;
    chain.tcp_proxy = Some(raw);
    Ok(())
}

fn chain_match(m: &PbMatch, p: &str) -> R<FilterChainMatch> {
    let port =
        |v: u32, path: String| u16::try_from(v).map_err(|_| err(path, "must be at most 65535"));
    Ok(FilterChainMatch {
        destination_port: match &m.destination_port {
            Some(v) => Some(port(v.value, format!("{p}.destination_port"))?),
            None => None,
        },
        prefix_ranges: cidrs(&m.prefix_ranges, &format!("{p}.prefix_ranges"))?,
        server_names: m.server_names.clone(),
        transport_protocol: Some(m.transport_protocol.clone()).filter(|t| !t.is_empty()),
        application_protocols: m.application_protocols.clone(),
        source_prefix_ranges: cidrs(
            &m.source_prefix_ranges,
            &format!("{p}.source_prefix_ranges"),
        )?,
        source_ports: m
            .source_ports
            .iter()
            .enumerate()
            .map(|(k, v)| port(*v, format!("{p}.source_ports[{k}]")))
            .collect::<R<_>>()?,
    })
}

fn cidrs(list: &[PbCidr], p: &str) -> R<Vec<CidrRange>> {
    list.iter()
        .enumerate()
        .map(|(k, c)| {
            let cp = format!("{p}[{k}]");
            let ip: IpAddr = c.address_prefix.parse().map_err(|_| {
                err(
                    format!("{cp}.address_prefix"),
                    format!("`{}` is not an IP address", c.address_prefix),
                )
            })?;
            let len = c.prefix_len.as_ref().map_or(0, |l| l.value);
            u8::try_from(len)
                .ok()
                .and_then(|len| CidrRange::new(ip, len))
                .ok_or_else(|| {
                    err(
                        format!("{cp}.prefix_len"),
                        "too long for the address family",
                    )
                })
        })
        .collect()
}
