//! Building listeners: the socket settings, the listener filters, and the filter chains
//! with their terminal network filter (HTTP connection manager or TCP proxy). Part of
//! `config::build`; errors go to the same builder, with field paths.
//!
//! The native format has two shapes. The single-chain shape puts the connection
//! manager's (or TCP proxy's) settings on the listener itself; it describes one filter
//! chain that matches every connection.

use std::sync::Arc;
use std::time::Duration;

use super::super::access_log_format::DEFAULT_FORMAT;
use super::super::access_log_json::{JsonTemplate, LogFormat};
use super::super::model::*;
use super::super::raw::*;
pub(super) use super::raw_terminal::{raw_terminals, RawTerminal};
use super::Builder;

impl Builder {
    pub(super) fn listener(
        &mut self,
        i: usize,
        l: &RawListener,
        tables: &[RouteTable],
        clusters: &[Arc<Cluster>],
    ) -> Option<Listener> {
        let p = format!("listeners[{i}]");
        let addr = self.resolve(format!("{p}.address"), &l.address, l.port);
        let backlog = l.backlog.unwrap_or(1024);
        if backlog == 0 {
            self.err(format!("{p}.backlog"), "must be at least 1");
        }
        if l.max_connections == Some(0) {
            self.err(
                format!("{p}.max_connections"),
                "must be at least 1 (omit it for no limit)",
            );
        }
        let listener_filters = self.listener_filters(&p, l);
        let own = RawTerminal::of_listener(l);
        let (filter_chains, default_filter_chain) =
            if l.filter_chains.is_empty() && l.default_filter_chain.is_none() {
                // The single-chain shape: one chain that takes every connection.
                let terminal = self.terminal(&p, &own, &l.name, tables, clusters)?;
                let chain = FilterChain {
                    name: l.name.clone(),
                    matcher: FilterChainMatch::default(),
                    network_filters: self.network_filters(&p, own.network_filters, clusters),
                    terminal,
                    tls: None,
                    fingerprint: super::fingerprint::chain(&l.name, None, &own, None),
                };
                (vec![chain], None)
            } else {
                for field in own.set_fields() {
                    self.err(
                        format!("{p}.{field}"),
                        format!(
                            "`{field}` belongs in a filter chain when the listener has \
                             `filter_chains` or `default_filter_chain`"
                        ),
                    );
                }
                let mut chains = Vec::new();
                for (j, c) in l.filter_chains.iter().enumerate() {
                    let cp = format!("{p}.filter_chains[{j}]");
                    chains.extend(self.chain(&cp, c, &l.name, &listener_filters, tables, clusters));
                }
                let default = l.default_filter_chain.as_ref().and_then(|c| {
                    let cp = format!("{p}.default_filter_chain");
                    if c.filter_chain_match.is_some() {
                        self.err(
                            format!("{cp}.filter_chain_match"),
                            "the default filter chain takes what no chain matches: it has no match",
                        );
                    }
                    self.chain(&cp, c, &l.name, &listener_filters, tables, clusters)
                });
                // Names key each chain's access log across reloads.
                let names = l.filter_chains.iter().map(|c| c.name.as_str());
                self.unique(&format!("{p}.filter_chains"), names);
                if let Some(d) = &l.default_filter_chain {
                    if d.name.is_empty() {
                        self.err(
                            format!("{p}.default_filter_chain.name"),
                            "must not be empty",
                        );
                    } else if l.filter_chains.iter().any(|c| c.name == d.name) {
                        self.err(
                            format!("{p}.default_filter_chain.name"),
                            format!("duplicate name `{}`", d.name),
                        );
                    }
                }
                (chains, default)
            };
        let mut listener = Listener {
            name: l.name.clone(),
            addr: addr?,
            backlog,
            max_connections: l.max_connections,
            listener_filters,
            filter_chains,
            default_filter_chain,
            use_original_dst: l.use_original_dst.unwrap_or(false),
            bind_to_port: l.bind_to_port.unwrap_or(true),
        };
        // Envoy: use_original_dst adds the original_dst listener filter.
        if listener.use_original_dst {
            listener.listener_filters.original_dst = true;
        }
        // strip_matching_host_port compares with the port this listener is on.
        for c in listener
            .filter_chains
            .iter_mut()
            .chain(listener.default_filter_chain.as_mut())
        {
            if let NetworkTerminal::Http(h) = &mut c.terminal {
                if h.strip_port == StripPort::Matching(0) {
                    h.strip_port = StripPort::Matching(l.port);
                }
            }
        }
        // Envoy refuses chains it could not tell apart.
        if let Err(e) = crate::listener::select::ChainSelector::build(&listener) {
            self.err(format!("{p}.filter_chains"), e);
        }
        Some(listener)
    }

    fn chain(
        &mut self,
        p: &str,
        c: &RawFilterChain,
        listener: &str,
        filters: &ListenerFilters,
        tables: &[RouteTable],
        clusters: &[Arc<Cluster>],
    ) -> Option<FilterChain> {
        let d = RawFilterChainMatch::default();
        let m = c.filter_chain_match.as_ref().unwrap_or(&d);
        let matcher = self.chain_match(&format!("{p}.filter_chain_match"), m, filters);
        let terminal = self.terminal(p, &RawTerminal::of_chain(c), listener, tables, clusters)?;
        let tls = c
            .tls
            .as_ref()
            .and_then(|t| self.downstream_tls(&format!("{p}.tls"), t));
        Some(FilterChain {
            name: c.name.clone(),
            matcher,
            network_filters: self.network_filters(p, &c.network_filters, clusters),
            terminal,
            tls,
            fingerprint: super::fingerprint::chain(
                &c.name,
                c.filter_chain_match.as_ref(),
                &RawTerminal::of_chain(c),
                c.tls.as_ref(),
            ),
        })
    }

    fn chain_match(
        &mut self,
        p: &str,
        m: &RawFilterChainMatch,
        filters: &ListenerFilters,
    ) -> FilterChainMatch {
        let port = |this: &mut Self, path: String, v: u32| match u16::try_from(v) {
            Ok(v) if v > 0 => Some(v),
            _ => {
                this.err(path, "must be a port between 1 and 65535");
                None
            }
        };
        let destination_port = m
            .destination_port
            .and_then(|v| port(self, format!("{p}.destination_port"), v));
        let source_ports = m
            .source_ports
            .iter()
            .enumerate()
            .filter_map(|(k, v)| port(self, format!("{p}.source_ports[{k}]"), *v))
            .collect();
        let prefix_ranges = self.cidrs(&format!("{p}.prefix_ranges"), &m.prefix_ranges);
        let source_prefix_ranges = self.cidrs(
            &format!("{p}.source_prefix_ranges"),
            &m.source_prefix_ranges,
        );
        for (k, n) in m.server_names.iter().enumerate() {
            if n.is_empty() {
                self.err(format!("{p}.server_names[{k}]"), "must not be empty");
            }
        }
        for (k, a) in m.application_protocols.iter().enumerate() {
            if a.is_empty() {
                self.err(
                    format!("{p}.application_protocols[{k}]"),
                    "must not be empty",
                );
            }
        }
        // Without a listener filter that detects it, no connection has an application
        // protocol, and a chain that needs one would never match.
        let detects = filters.http_inspector || filters.tls_inspector;
        if !m.application_protocols.is_empty() && !detects {
            self.err(
                format!("{p}.application_protocols"),
                "needs a listener filter that detects the protocol: add `http_inspector` \
                 or `tls_inspector` to the listener's `listener_filters`",
            );
        }
        // Only the tls_inspector sets a server name or the `tls` transport.
        let tls = m.transport_protocol.as_deref() == Some(crate::listener::tls_inspector::TLS);
        if !filters.tls_inspector && (tls || !m.server_names.is_empty()) {
            let field = if tls {
                "transport_protocol"
            } else {
                "server_names"
            };
            self.err(
                format!("{p}.{field}"),
                "needs `tls_inspector` in the listener's `listener_filters`",
            );
        }
        if m.transport_protocol.as_deref() == Some("") {
            self.err(format!("{p}.transport_protocol"), "must not be empty");
        }
        FilterChainMatch {
            destination_port,
            prefix_ranges,
            server_names: m.server_names.clone(),
            transport_protocol: m.transport_protocol.clone(),
            application_protocols: m.application_protocols.clone(),
            source_prefix_ranges,
            source_ports,
        }
    }

    /// `ADDRESS/LEN`, or a bare address for that one address.
    fn cidrs(&mut self, p: &str, raw: &[String]) -> Vec<CidrRange> {
        let mut out = Vec::new();
        for (k, s) in raw.iter().enumerate() {
            let (addr, len) = match s.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (s.as_str(), None),
            };
            let Ok(addr) = addr.parse::<std::net::IpAddr>() else {
                self.err(
                    format!("{p}[{k}]"),
                    format!("`{s}` is not an IP address range (ADDRESS/LEN)"),
                );
                continue;
            };
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = match len.map(str::parse::<u8>) {
                None => Some(max),
                Some(Ok(l)) if l <= max => Some(l),
                Some(_) => None,
            };
            match len.and_then(|l| CidrRange::new(addr, l)) {
                Some(r) => out.push(r),
                None => self.err(
                    format!("{p}[{k}]"),
                    format!("`{s}`: the prefix length must be between 0 and {max}"),
                ),
            }
        }
        out
    }

    /// A chain's terminal filter: an HTTP connection manager (`route_table`) or a TCP
    /// proxy (`tcp_proxy`). `p` is the path of the object holding the fields.
    pub(super) fn terminal(
        &mut self,
        p: &str,
        t: &RawTerminal<'_>,
        listener: &str,
        tables: &[RouteTable],
        clusters: &[Arc<Cluster>],
    ) -> Option<NetworkTerminal> {
        let idle_timeout = self.positive_duration(
            format!("{p}.idle_timeout"),
            t.idle_timeout,
            Duration::from_secs(300),
        );
        match (t.route_table, t.tcp_proxy) {
            (Some(name), None) => {
                let route_table = match tables.iter().position(|r| &r.name == name) {
                    Some(r) => Some(r),
                    None => {
                        self.err(
                            format!("{p}.route_table"),
                            format!("no route table named `{name}`"),
                        );
                        None
                    }
                };
                let hcm = self.hcm(
                    p,
                    t,
                    listener,
                    idle_timeout,
                    route_table.unwrap_or(0),
                    clusters,
                );
                Some(NetworkTerminal::Http(hcm)).filter(|_| route_table.is_some())
            }
            (None, Some(tcp)) => {
                // Settings that only an HTTP connection manager reads.
                for (set, field) in [
                    (t.codec.is_some(), "codec"),
                    (t.stat_prefix.is_some(), "stat_prefix"),
                    (t.limits.is_some(), "limits"),
                    (t.http2.is_some(), "http2"),
                    (
                        t.request_headers_timeout.is_some(),
                        "request_headers_timeout",
                    ),
                    (t.stream_idle_timeout.is_some(), "stream_idle_timeout"),
                    (t.max_stream_duration.is_some(), "max_stream_duration"),
                    (t.forwarding.is_some(), "forwarding"),
                    (t.strip_any_host_port.is_some(), "strip_any_host_port"),
                    (
                        t.strip_matching_host_port.is_some(),
                        "strip_matching_host_port",
                    ),
                    (t.proxy_headers.is_some(), "proxy_headers"),
                    (t.tracing.is_some(), "tracing"),
                    (!t.http_filters.is_empty(), "http_filters"),
                ] {
                    if set {
                        let m = if field == "http_filters" {
                            "HTTP filters need an HTTP listener (`route_table`)".to_string()
                        } else {
                            format!("`{field}` needs an HTTP connection manager (`route_table`)")
                        };
                        self.err(format!("{p}.{field}"), m);
                    }
                }
                let access_log = self.access_log(p, t.access_log);
                let istio_stats = self.istio_stats(p, t.istio_stats);
                self.tcp_proxy(format!("{p}.tcp_proxy"), tcp, clusters, idle_timeout)
                    .map(|mut tcp| {
                        tcp.access_log = access_log;
                        tcp.istio_stats = istio_stats;
                        NetworkTerminal::Tcp(tcp)
                    })
            }
            _ => {
                self.err(
                    p.to_string(),
                    "set exactly one of `route_table` and `tcp_proxy`",
                );
                None
            }
        }
    }

    fn access_log(&mut self, p: &str, a: &Option<RawAccessLog>) -> Option<AccessLog> {
        let a = a.as_ref()?;
        let format = match (&a.format, &a.json_format) {
            (Some(_), Some(_)) => {
                self.err(
                    format!("{p}.access_log"),
                    "set at most one of `format` and `json_format`",
                );
                return None;
            }
            (_, Some(j)) => JsonTemplate::from_value(j)
                .map(LogFormat::Json)
                .map_err(|m| (format!("{p}.access_log.json_format"), m)),
            (f, None) => LogFormat::parse(f.as_deref().unwrap_or(DEFAULT_FORMAT))
                .map_err(|m| (format!("{p}.access_log.format"), m)),
        };
        let format = match format {
            Ok(f) => f,
            Err((at, m)) => {
                self.err(at, m);
                return None;
            }
        };
        let filter = match a
            .filter
            .as_ref()
            .map(|f| f.build(&format!("{p}.access_log.filter")))
        {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err((at, m))) => {
                self.err(at, m);
                return None;
            }
        };
        if a.path.is_empty() {
            self.err(
                format!("{p}.access_log.path"),
                "must be a file path or `stdout`",
            );
            return None;
        }
        let path = if a.path == "stdout" {
            None
        } else {
            Some(a.path.clone())
        };
        use crate::config::access_log_format::Op;
        let upstream_local = format.uses(&Op::UpstreamLocalAddress);
        let upstream_tls = Op::UPSTREAM_TLS.iter().any(|op| format.uses(op));
        use crate::config::access_log_format::HeaderSource;
        let response_headers = format.uses_any(&|op| op.reads(HeaderSource::Response));
        let trailers = format.uses_any(&|op| op.reads(HeaderSource::Trailer));
        Some(AccessLog {
            path,
            format,
            filter,
            upstream_local,
            upstream_tls,
            response_headers,
            trailers,
        })
    }

    fn hcm(
        &mut self,
        p: &str,
        t: &RawTerminal<'_>,
        listener: &str,
        idle_timeout: Duration,
        route_table: usize,
        clusters: &[Arc<Cluster>],
    ) -> HttpConnectionManager {
        let codec = match t.codec.as_deref() {
            None | Some("auto") => CodecType::Auto,
            Some("http1") => CodecType::Http1,
            Some("http2") => CodecType::Http2,
            Some(other) => {
                self.err(
                    format!("{p}.codec"),
                    format!("unknown codec `{other}` (use auto, http1 or http2)"),
                );
                CodecType::Auto
            }
        };
        let d = Limits::default();
        let rl = t.limits.as_ref();
        let limits = Limits {
            max_request_line_bytes: rl
                .and_then(|r| r.max_request_line_bytes)
                .unwrap_or(d.max_request_line_bytes),
            max_header_bytes: rl
                .and_then(|r| r.max_header_bytes)
                .unwrap_or(d.max_header_bytes),
            max_headers: rl.and_then(|r| r.max_headers).unwrap_or(d.max_headers),
        };
        if !(64..=1 << 20).contains(&limits.max_request_line_bytes) {
            self.err(
                format!("{p}.limits.max_request_line_bytes"),
                "must be between 64 and 1048576",
            );
        }
        if !(256..=1 << 20).contains(&limits.max_header_bytes) {
            self.err(
                format!("{p}.limits.max_header_bytes"),
                "must be between 256 and 1048576",
            );
        }
        if !(1..=MAX_HEADERS_CAP).contains(&limits.max_headers) {
            self.err(
                format!("{p}.limits.max_headers"),
                format!("must be between 1 and {MAX_HEADERS_CAP}"),
            );
        }
        let access_log = self.access_log(p, t.access_log);
        let http2 = self.http2(p, t.http2);
        let http_filters = self.http_filters(
            p,
            t.http_filters,
            t.stat_prefix.as_deref().unwrap_or(listener),
            clusters,
        );
        // Envoy's defaults: no request-head deadline, a 5-minute stream idle timeout.
        let request_headers_timeout = self.duration(
            format!("{p}.request_headers_timeout"),
            t.request_headers_timeout,
            Duration::ZERO,
        );
        let stream_idle_timeout = self.duration(
            format!("{p}.stream_idle_timeout"),
            t.stream_idle_timeout,
            Duration::from_secs(300),
        );
        // Envoy's default: no limit on a stream's duration.
        let max_stream_duration = self.duration(
            format!("{p}.max_stream_duration"),
            t.max_stream_duration,
            Duration::ZERO,
        );
        let fd = Forwarding::default();
        let rf = t.forwarding.as_ref();
        let forwarding = Forwarding {
            use_remote_address: rf
                .and_then(|f| f.use_remote_address)
                .unwrap_or(fd.use_remote_address),
            xff_num_trusted_hops: rf
                .and_then(|f| f.xff_num_trusted_hops)
                .unwrap_or(fd.xff_num_trusted_hops),
            skip_xff_append: rf
                .and_then(|f| f.skip_xff_append)
                .unwrap_or(fd.skip_xff_append),
            xfcc: match rf.and_then(|f| f.forward_client_cert_details.as_deref()) {
                None | Some("sanitize") => ForwardClientCert::Sanitize,
                Some("forward_only") => ForwardClientCert::ForwardOnly,
                Some("append_forward") => ForwardClientCert::AppendForward,
                Some("sanitize_set") => ForwardClientCert::SanitizeSet,
                Some("always_forward_only") => ForwardClientCert::AlwaysForwardOnly,
                Some(other) => {
                    self.err(
                        format!("{p}.forwarding.forward_client_cert_details"),
                        format!("unknown value `{other}` (use sanitize, forward_only, append_forward, sanitize_set or always_forward_only)"),
                    );
                    fd.xfcc
                }
            },
            xfcc_details: rf
                .and_then(|f| f.set_current_client_cert_details.as_ref())
                .map_or(fd.xfcc_details, |d| CertDetails {
                    subject: d.subject,
                    cert: d.cert,
                    chain: d.chain,
                    dns: d.dns,
                    uri: d.uri,
                }),
        };
        let stat_prefix = match t.stat_prefix {
            Some(s) if s.is_empty() => {
                self.err(format!("{p}.stat_prefix"), "must not be empty");
                listener.to_string()
            }
            Some(s) => s.clone(),
            None => listener.to_string(),
        };
        let strip_port = match (t.strip_any_host_port, t.strip_matching_host_port) {
            (Some(true), Some(true)) => {
                self.err(
                    format!("{p}.strip_any_host_port"),
                    "set at most one of `strip_any_host_port` and `strip_matching_host_port`",
                );
                StripPort::Keep
            }
            (Some(true), _) => StripPort::Any,
            // The listener's port is filled in when the listener is built.
            (_, Some(true)) => StripPort::Matching(0),
            _ => StripPort::Keep,
        };
        let mut own = Box::new(self.proxy_headers(p, t.proxy_headers, &forwarding));
        own.internal = self.internal_addresses(p, rf.map_or(&[][..], |f| &f.internal_addresses));
        let tracing = self.tracing(p, t.tracing, clusters);
        let istio_stats = self.istio_stats(p, t.istio_stats);
        HttpConnectionManager {
            own,
            tracing,
            istio_stats,
            stat_prefix,
            strip_port,
            codec,
            route_table,
            limits,
            idle_timeout,
            access_log,
            http2,
            request_headers_timeout,
            stream_idle_timeout,
            max_stream_duration,
            forwarding,
            http_filters,
        }
    }

    fn http2(&mut self, p: &str, r2: &Option<RawHttp2>) -> Http2Settings {
        let d2 = Http2Settings::default();
        let r2 = r2.as_ref();
        let http2 = Http2Settings {
            max_concurrent_streams: r2
                .and_then(|h| h.max_concurrent_streams)
                .unwrap_or(d2.max_concurrent_streams),
            initial_stream_window_size: r2
                .and_then(|h| h.initial_stream_window_size)
                .unwrap_or(d2.initial_stream_window_size),
            initial_connection_window_size: r2
                .and_then(|h| h.initial_connection_window_size)
                .unwrap_or(d2.initial_connection_window_size),
            keepalive_interval: self.duration(
                format!("{p}.http2.keepalive_interval"),
                &r2.and_then(|h| h.keepalive_interval.clone()),
                d2.keepalive_interval,
            ),
            keepalive_timeout: self.positive_duration(
                format!("{p}.http2.keepalive_timeout"),
                &r2.and_then(|h| h.keepalive_timeout.clone()),
                d2.keepalive_timeout,
            ),
        };
        if http2.max_concurrent_streams == 0 {
            self.err(
                format!("{p}.http2.max_concurrent_streams"),
                "must be at least 1",
            );
        }
        // RFC 9113 section 6.5.2: windows are 65535 at least here, 2^31-1 at most.
        for (field, v) in [
            (
                "initial_stream_window_size",
                http2.initial_stream_window_size,
            ),
            (
                "initial_connection_window_size",
                http2.initial_connection_window_size,
            ),
        ] {
            if !(65_535..=i32::MAX as u32).contains(&v) {
                self.err(
                    format!("{p}.http2.{field}"),
                    "must be between 65535 and 2147483647",
                );
            }
        }
        http2
    }

    fn tcp_proxy(
        &mut self,
        p: String,
        t: &RawTcpProxy,
        clusters: &[Arc<Cluster>],
        idle_timeout: Duration,
    ) -> Option<TcpProxy> {
        let mut picks = Vec::new();
        let mut named = |this: &mut Self, path: String, name: &str, weight: u32| match clusters
            .iter()
            .position(|c| c.name == name)
        {
            Some(c) => picks.push((Some(c), weight)),
            // Envoy accepts a TCP proxy to a cluster it does not have yet; a CDS
            // cluster that warms is one (its connections are closed until it warms).
            None if this.warming_clusters.iter().any(|w| w == name) => picks.push((None, weight)),
            None => this.err(path, format!("no cluster named `{name}`")),
        };
        match (&t.cluster, t.weighted_clusters.is_empty()) {
            (Some(name), true) => named(self, format!("{p}.cluster"), name, 1),
            (None, false) => {
                for (k, w) in t.weighted_clusters.iter().enumerate() {
                    if !(1..=1000).contains(&w.weight) {
                        self.err(
                            format!("{p}.weighted_clusters[{k}].weight"),
                            "must be between 1 and 1000",
                        );
                    }
                    named(
                        self,
                        format!("{p}.weighted_clusters[{k}].name"),
                        &w.name,
                        w.weight,
                    );
                }
            }
            _ => {
                self.err(p, "set exactly one of `cluster` and `weighted_clusters`");
                return None;
            }
        }
        Some(TcpProxy {
            clusters: picks,
            idle_timeout,
            access_log: None,
            istio_stats: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_str, CodecType, NetworkTerminal};

    const TAIL: &str = "route_tables:
  - name: t
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: { prefix: / }
            direct_response: { status: 200 }
            per_filter_config: { edits: { disabled: true } }
";

    #[test]
    fn a_single_chain_listener_is_one_chain_that_matches_everything() {
        let s = parse_str(&format!(
            "listeners:
  - name: l
    address: 127.0.0.1
    port: 10000
    route_table: t
    http_filters:
      - name: edits
        header_mutation: {{ request_headers_to_remove: [x-a] }}
{TAIL}"
        ))
        .unwrap();
        let l = &s.listeners[0];
        assert_eq!(l.filter_chains.len(), 1);
        assert!(l.default_filter_chain.is_none());
        assert!(!l.listener_filters.http_inspector);
        let c = &l.filter_chains[0];
        assert_eq!(c.matcher, Default::default());
        let NetworkTerminal::Http(h) = &c.terminal else {
            panic!("an HTTP chain");
        };
        assert_eq!(h.codec, CodecType::Auto);
        assert_eq!(h.stat_prefix, "l");
        assert_eq!(h.http_filters.len(), 1);
    }

    #[test]
    fn routes_may_override_a_filter_of_a_chain_that_uses_their_table() {
        let s = parse_str(&format!(
            "listeners:
  - name: l
    address: 127.0.0.1
    port: 10000
    listener_filters: [http_inspector]
    filter_chains:
      - name: h1
        filter_chain_match: {{ application_protocols: [http/1.1], source_ports: [5] }}
        codec: http1
        stat_prefix: ingress
        route_table: t
    default_filter_chain:
      name: d
      route_table: t
      http_filters:
        - name: edits
          header_mutation: {{ request_headers_to_remove: [x-a] }}
{TAIL}"
        ))
        .unwrap();
        let l = &s.listeners[0];
        assert!(l.listener_filters.http_inspector);
        let m = &l.filter_chains[0].matcher;
        assert_eq!(m.application_protocols, ["http/1.1"]);
        assert_eq!(m.source_ports, [5]);
        let h = l.filter_chains[0].hcm().unwrap();
        assert_eq!(
            (h.codec, h.stat_prefix.as_str()),
            (CodecType::Http1, "ingress")
        );
        assert_eq!(l.chain(1).map(|c| c.name.as_str()), Some("d"));
        assert!(l.chain(2).is_none());
    }

    #[test]
    fn a_route_may_not_override_a_filter_no_chain_of_its_table_has() {
        let e = parse_str(&format!(
            "listeners:
  - name: l
    address: 127.0.0.1
    port: 10000
    default_filter_chain: {{ name: d, route_table: t }}
{TAIL}"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("no HTTP filter named `edits`"), "{e}");
    }
}
