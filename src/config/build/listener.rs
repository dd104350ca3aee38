//! Building listeners: the socket settings, the listener filters, and the filter chains
//! with their terminal network filter (HTTP connection manager or TCP proxy). Part of
//! `config::build`; errors go to the same builder, with field paths.
//!
//! The native format has two shapes. The single-chain shape puts the connection
//! manager's (or TCP proxy's) settings on the listener itself; it describes one filter
//! chain that matches every connection.

use std::sync::Arc;
use std::time::Duration;

use super::super::access_log_format::{LogFormat, DEFAULT_FORMAT};
use super::super::model::*;
use super::super::raw::*;
use super::Builder;
use crate::http::filter::RawHttpFilter;

/// The settings of one chain's terminal filter, borrowed from either shape.
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
    pub forwarding: &'a Option<RawForwarding>,
    pub http_filters: &'a [RawHttpFilter],
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
            forwarding: &l.forwarding,
            http_filters: &l.http_filters,
        }
    }
}

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
        let terminal = self.terminal(&p, &RawTerminal::of_listener(l), &l.name, tables, clusters);
        let chain = FilterChain {
            name: l.name.clone(),
            matcher: FilterChainMatch::default(),
            terminal: terminal?,
        };
        Some(Listener {
            name: l.name.clone(),
            addr: addr?,
            backlog,
            max_connections: l.max_connections,
            listener_filters: ListenerFilters::default(),
            filter_chains: vec![chain],
            default_filter_chain: None,
        })
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
                let hcm = self.hcm(p, t, listener, idle_timeout, route_table.unwrap_or(0));
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
                    (t.forwarding.is_some(), "forwarding"),
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
                self.tcp_proxy(format!("{p}.tcp_proxy"), tcp, clusters, idle_timeout)
                    .map(|mut tcp| {
                        tcp.access_log = access_log;
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
        let format = match LogFormat::parse(a.format.as_deref().unwrap_or(DEFAULT_FORMAT)) {
            Ok(f) => f,
            Err(m) => {
                self.err(format!("{p}.access_log.format"), m);
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
        Some(AccessLog { path, format })
    }

    fn hcm(
        &mut self,
        p: &str,
        t: &RawTerminal<'_>,
        listener: &str,
        idle_timeout: Duration,
        route_table: usize,
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
        let http_filters = self.http_filters(p, t.http_filters);
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
        };
        let stat_prefix = match t.stat_prefix {
            Some(s) if s.is_empty() => {
                self.err(format!("{p}.stat_prefix"), "must not be empty");
                listener.to_string()
            }
            Some(s) => s.clone(),
            None => listener.to_string(),
        };
        HttpConnectionManager {
            stat_prefix,
            codec,
            route_table,
            limits,
            idle_timeout,
            access_log,
            http2,
            request_headers_timeout,
            stream_idle_timeout,
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
            Some(c) => picks.push((c, weight)),
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
        })
    }
}
