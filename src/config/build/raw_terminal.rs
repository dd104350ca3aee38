//! The settings of one chain's terminal filter (and the network filters before it),
//! borrowed from either shape of the native format: a single-chain listener's own
//! fields, or one of its `filter_chains`. Part of `config::build`.

use super::super::raw::*;
use super::super::raw_rbac::RawNetworkFilter;
use crate::http::filter::RawHttpFilter;

/// The settings of one chain's terminal filter, borrowed from either shape.
#[derive(Debug)]
pub(super) struct RawTerminal<'a> {
    pub route_table: &'a Option<String>,
    pub tcp_proxy: &'a Option<RawTcpProxy>,
    pub codec: &'a Option<String>,
    pub stat_prefix: &'a Option<String>,
    pub limits: &'a Option<RawLimits>,
    pub idle_timeout: &'a Option<String>,
    pub access_log: &'a Option<RawAccessLog>,
    pub http2: &'a Option<RawHttp2>,
    pub request_headers_timeout: &'a Option<String>,
    pub stream_idle_timeout: &'a Option<String>,
    pub max_stream_duration: &'a Option<String>,
    pub forwarding: &'a Option<RawForwarding>,
    pub strip_any_host_port: Option<bool>,
    pub strip_matching_host_port: Option<bool>,
    pub proxy_headers: &'a Option<RawProxyHeaders>,
    pub tracing: &'a Option<super::super::raw_tracing::RawTracing>,
    pub istio_stats: &'a Option<super::super::raw_istio::RawIstioStats>,
    pub http_filters: &'a [RawHttpFilter],
    pub network_filters: &'a [RawNetworkFilter],
}

impl<'a> RawTerminal<'a> {
    pub(super) fn of_listener(l: &'a RawListener) -> Self {
        RawTerminal {
            route_table: &l.route_table,
            tcp_proxy: &l.tcp_proxy,
            codec: &None,
            stat_prefix: &None,
            limits: &l.limits,
            idle_timeout: &l.idle_timeout,
            access_log: &l.access_log,
            http2: &l.http2,
            request_headers_timeout: &l.request_headers_timeout,
            stream_idle_timeout: &l.stream_idle_timeout,
            max_stream_duration: &l.max_stream_duration,
            forwarding: &l.forwarding,
            strip_any_host_port: l.strip_any_host_port,
            strip_matching_host_port: l.strip_matching_host_port,
            proxy_headers: &l.proxy_headers,
            tracing: &l.tracing,
            istio_stats: &l.istio_stats,
            http_filters: &l.http_filters,
            network_filters: &l.network_filters,
        }
    }
}

impl<'a> RawTerminal<'a> {
    pub(super) fn of_chain(c: &'a RawFilterChain) -> Self {
        RawTerminal {
            route_table: &c.route_table,
            tcp_proxy: &c.tcp_proxy,
            codec: &c.codec,
            stat_prefix: &c.stat_prefix,
            limits: &c.limits,
            idle_timeout: &c.idle_timeout,
            access_log: &c.access_log,
            http2: &c.http2,
            request_headers_timeout: &c.request_headers_timeout,
            stream_idle_timeout: &c.stream_idle_timeout,
            max_stream_duration: &c.max_stream_duration,
            forwarding: &c.forwarding,
            strip_any_host_port: c.strip_any_host_port,
            strip_matching_host_port: c.strip_matching_host_port,
            proxy_headers: &c.proxy_headers,
            tracing: &c.tracing,
            istio_stats: &c.istio_stats,
            http_filters: &c.http_filters,
            network_filters: &c.network_filters,
        }
    }

    /// The single-chain fields that are set, by name.
    pub(super) fn set_fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("route_table", self.route_table.is_some()),
            ("tcp_proxy", self.tcp_proxy.is_some()),
            ("limits", self.limits.is_some()),
            ("idle_timeout", self.idle_timeout.is_some()),
            ("access_log", self.access_log.is_some()),
            ("http2", self.http2.is_some()),
            (
                "request_headers_timeout",
                self.request_headers_timeout.is_some(),
            ),
            ("stream_idle_timeout", self.stream_idle_timeout.is_some()),
            ("max_stream_duration", self.max_stream_duration.is_some()),
            ("forwarding", self.forwarding.is_some()),
            ("strip_any_host_port", self.strip_any_host_port.is_some()),
            (
                "strip_matching_host_port",
                self.strip_matching_host_port.is_some(),
            ),
            ("proxy_headers", self.proxy_headers.is_some()),
            ("tracing", self.tracing.is_some()),
            ("istio_stats", self.istio_stats.is_some()),
            ("http_filters", !self.http_filters.is_empty()),
            ("network_filters", !self.network_filters.is_empty()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
    }
}

/// Every terminal a raw listener describes (its own fields, or its chains), for checks
/// that look across listeners.
pub(super) fn raw_terminals(l: &RawListener) -> Vec<RawTerminal<'_>> {
    if l.filter_chains.is_empty() && l.default_filter_chain.is_none() {
        return vec![RawTerminal::of_listener(l)];
    }
    l.filter_chains
        .iter()
        .chain(&l.default_filter_chain)
        .map(RawTerminal::of_chain)
        .collect()
}
