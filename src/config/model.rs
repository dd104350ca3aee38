//! The checked domain model every config source translates into.
//!
//! A `Snapshot` is immutable once built: the control executor builds one, wraps it in an
//! `Arc` and hands it to every worker. Cross references (listener -> route table, route ->
//! cluster) are resolved to indices at build time, so the request path never looks up a
//! name and never meets a dangling reference.

use crate::http::filter::headers::HeaderPlan;
use crate::http::filter::HttpFilter;
pub use crate::tls::config::{CertDetails, ForwardClientCert};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::access_log_json::LogFormat;

/// One complete, valid configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// Monotonic version assigned by the control executor (1 for the first config).
    pub version: u64,
    pub admin: Option<SocketAddr>,
    pub concurrency: Option<usize>,
    pub drain_timeout: Duration,
    /// How long an idle worker polls for new events before it sleeps (zero: sleep at once).
    pub spin_before_park: Duration,
    /// Process-wide cap on open downstream connections (`None`: no cap).
    pub max_connections: Option<u64>,
    pub listeners: Vec<Listener>,
    /// Shared, so that a snapshot that changes only endpoints (DNS re-resolution)
    /// is made without rebuilding them.
    pub route_tables: Arc<Vec<RouteTable>>,
    pub clusters: Vec<Arc<Cluster>>,
    /// Named counters of the filters (Envoy's stat names, e.g.
    /// `http.ingress.rbac.allowed`); a filter holds indices into this list, and each
    /// worker keeps one counter per name (`WorkerView::counters`), across reloads.
    pub counters: Vec<String>,
    /// Bucket bounds for the duration histograms, by stat name: the first rule whose
    /// matcher takes a histogram's name gives its buckets (Envoy's
    /// `stats_config.histogram_bucket_settings`; `observe::bucket_rules`).
    pub histogram_buckets: Vec<HistogramBuckets>,
    /// The routes' stat prefixes, `vhost.<virtual host>.route.<stat_prefix>` (Envoy's
    /// route `stat_prefix`), each once; a route holds its index, and each worker keeps
    /// one `observe::route_stats::RouteStats` per prefix, across reloads.
    pub route_stats: Vec<String>,
    /// The config as JSON, for `/config_dump`.
    pub dump: serde_json::Value,
}

/// One rule of `histogram_buckets`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramBuckets {
    pub matcher: super::match_model::StringMatch,
    pub bounds: Arc<crate::observe::buckets::Bounds>,
}

/// A listening socket and what it does with the connections it accepts: its listener
/// filters look at a new connection, then one of its filter chains takes it (Envoy's
/// `Listener`).
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    pub backlog: u32,
    /// Cap on this listener's open connections, over all workers (`None`: no cap).
    pub max_connections: Option<u64>,
    pub listener_filters: ListenerFilters,
    /// Tried by their match (`FilterChainMatch`); at least one chain or a default.
    pub filter_chains: Vec<FilterChain>,
    /// Takes the connections no chain in `filter_chains` matches (`None`: close them).
    pub default_filter_chain: Option<FilterChain>,
    /// Envoy's `use_original_dst`: a connection whose original destination (read with
    /// SO_ORIGINAL_DST) is another listener's address is handed to that listener
    /// (`listener/original_dst.rs`). Implies `listener_filters.original_dst`, as in Envoy.
    pub use_original_dst: bool,
    /// Envoy's `bind_to_port`: `false` makes a virtual listener that only takes
    /// connections handed off by a `use_original_dst` listener (no socket is bound).
    pub bind_to_port: bool,
}

impl Listener {
    /// The chain at `index`: `filter_chains[index]`, or the default chain at index
    /// `filter_chains.len()`. The accept loop names a connection's chain this way.
    pub fn chain(&self, index: usize) -> Option<&FilterChain> {
        match self.filter_chains.get(index) {
            Some(c) => Some(c),
            None if index == self.filter_chains.len() => self.default_filter_chain.as_ref(),
            None => None,
        }
    }

    /// Every chain with its index (as `chain` takes it), the default chain last.
    pub fn chains(&self) -> impl Iterator<Item = (usize, &FilterChain)> {
        self.filter_chains
            .iter()
            .chain(self.default_filter_chain.as_ref())
            .enumerate()
    }
}

/// What runs on a new connection before a filter chain is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerFilters {
    /// Envoy's `envoy.filters.listener.http_inspector`: peek the first bytes and set the
    /// connection's application protocol to `h2c` (HTTP/2 preface), `http/1.1` or
    /// `http/1.0`; leave it empty for anything else.
    pub http_inspector: bool,
    /// Envoy's `envoy.filters.listener.tls_inspector`: parse a TLS ClientHello from the
    /// first bytes and set the transport protocol (`tls`), the server name (SNI) and
    /// the application protocols (ALPN) (`listener/tls_inspector.rs`).
    pub tls_inspector: bool,
    /// Envoy's `envoy.filters.listener.original_dst`: the connection's local address
    /// becomes its original destination (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST), which
    /// an iptables REDIRECT rewrote; chain matching and ORIGINAL_DST clusters see it.
    pub original_dst: bool,
    /// How long the listener filters may wait for the client's first bytes (Envoy's
    /// `listener_filters_timeout`, 15s; zero: no limit).
    pub timeout: Duration,
    /// When the timeout passes, carry on with what was detected (nothing) instead of
    /// closing the connection (Envoy's `continue_on_listener_filters_timeout`, false).
    pub continue_on_timeout: bool,
    /// Server-first detection (Outrigger's own; `listener/server_first.rs`): when the
    /// client has sent nothing this long and its connection would fall back to a TCP
    /// proxy to an ORIGINAL_DST cluster, connect to the original destination while
    /// the listener filters wait; a server that speaks first ends the wait. `None`: off.
    pub server_first_probe: Option<Duration>,
}

impl Default for ListenerFilters {
    fn default() -> Self {
        ListenerFilters {
            http_inspector: false,
            tls_inspector: false,
            original_dst: false,
            timeout: Duration::from_secs(15),
            continue_on_timeout: false,
            server_first_probe: None,
        }
    }
}

/// The network filters one connection runs through; today only the terminal one.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterChain {
    pub name: String,
    pub matcher: FilterChainMatch,
    /// Network filters run on a new connection before the terminal (network RBAC).
    pub network_filters: Vec<crate::listener::rbac::NetworkFilter>,
    /// The chain's last network filter.
    pub terminal: NetworkTerminal,
    /// Its transport socket: TLS terminated with these settings (`None`: plain bytes).
    pub tls: Option<std::sync::Arc<crate::tls::ServerTls>>,
    /// A hash of the chain as configured (`config/build/fingerprint.rs`): equal on the
    /// same listener means the same chain, whatever else an update changed. Workers
    /// compare it to tell which connections an update drains.
    pub fingerprint: u64,
}

impl FilterChain {
    pub fn hcm(&self) -> Option<&HttpConnectionManager> {
        match &self.terminal {
            NetworkTerminal::Http(h) => Some(h),
            NetworkTerminal::Tcp(_) => None,
        }
    }
}

/// Envoy's `FilterChainMatch` subset; empty fields match anything. Selection follows
/// Envoy: criteria are checked in Envoy's order (destination_port, prefix_ranges,
/// server_names, transport_protocol, application_protocols, source_type,
/// source_prefix_ranges, source_ports), and at each the most specific value wins.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct FilterChainMatch {
    pub destination_port: Option<u16>,
    /// The connection's local (destination) address.
    pub prefix_ranges: Vec<CidrRange>,
    /// Set by the tls_inspector (SNI): exact names and `*.` wildcards.
    pub server_names: Vec<String>,
    /// `raw_buffer`, or `tls` from the tls_inspector.
    pub transport_protocol: Option<String>,
    /// Set by the http_inspector (`h2c`, `http/1.1`, `http/1.0`) or the tls_inspector
    /// (the client's ALPN list).
    pub application_protocols: Vec<String>,
    pub source_prefix_ranges: Vec<CidrRange>,
    pub source_ports: Vec<u16>,
}

/// An address range, `addr/prefix_len`; `addr` has its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CidrRange {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl CidrRange {
    /// `addr/len`, host bits cleared; `None` if `len` is too long for the family.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<CidrRange> {
        let addr = match addr {
            IpAddr::V4(a) if prefix_len <= 32 => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix_len))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) if prefix_len <= 128 => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefix_len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
            _ => return None,
        };
        Some(CidrRange { addr, prefix_len })
    }

    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        CidrRange::new(ip, self.prefix_len).is_some_and(|r| r.addr == self.addr)
    }
}

/// A chain's terminal network filter.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkTerminal {
    /// Envoy's `envoy.filters.network.http_connection_manager`.
    Http(HttpConnectionManager),
    /// Envoy's `envoy.filters.network.tcp_proxy`.
    Tcp(TcpProxy),
}

/// Which HTTP codec the connection manager speaks (Envoy's `codec_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CodecType {
    /// HTTP/2 if the connection starts with the HTTP/2 preface, else HTTP/1.
    #[default]
    Auto,
    Http1,
    /// HTTP/2 with prior knowledge (h2c) only.
    Http2,
}

/// The HTTP connection manager: codec, limits, timeouts, the HTTP filters and the route
/// table (Envoy's `HttpConnectionManager`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConnectionManager {
    /// Defaults to the listener name in native YAML.
    pub stat_prefix: String,
    pub codec: CodecType,
    pub route_table: usize,
    pub limits: Limits,
    pub idle_timeout: Duration,
    pub access_log: Option<AccessLog>,
    pub http2: Http2Settings,
    /// Deadline for receiving a complete request head, from its first byte (zero: none).
    pub request_headers_timeout: Duration,
    /// A stream that moves no byte either way for this long is ended (zero: never).
    pub stream_idle_timeout: Duration,
    /// A stream's duration limit from its head (zero: none; `router::timeouts`).
    pub max_stream_duration: Duration,
    pub forwarding: Forwarding,
    /// Whether the Host loses its port before routing (and on its way upstream).
    pub strip_port: StripPort,
    /// The HTTP filter chain, in order; the router runs after it.
    pub http_filters: Vec<HttpFilter>,
    /// What the connection manager and the router add or answer by themselves (boxed:
    /// read once per request, and it would make every terminal as large).
    pub own: Box<OwnHeaders>,
    /// Distributed tracing (`observe::trace`; `None`: no spans, no propagation).
    pub tracing: Option<Arc<crate::observe::trace::Tracing>>,
    /// Istio's standard metrics (`observe::istio`; the `istio.stats` filter).
    pub istio_stats: Option<Arc<crate::observe::istio::IstioStats>>,
}

/// Envoy's `server_header_transformation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerHeader {
    /// Replace the upstream's `server` with `server_name` (Envoy's default).
    Overwrite,
    /// Add `server_name` only when the response has no `server`.
    AppendIfAbsent,
    /// Leave `server` as the response has it, or absent.
    PassThrough,
}

/// The headers the connection manager and the router write or answer with themselves
/// (`http::own_headers`), and HTTP/1.0 handling. A bootstrap gets Envoy's defaults (all
/// on, HTTP/1.0 refused); the native format's defaults keep a sidecar lean (all off,
/// HTTP/1.0 served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnHeaders {
    /// Serve HTTP/1.0 requests; otherwise `426 Upgrade Required` (Envoy's
    /// `http_protocol_options.accept_http_10`).
    pub accept_http_10: bool,
    /// The authority of an HTTP/1.0 request without Host (`default_host_for_http_10`).
    pub default_host_for_http_10: Option<String>,
    /// HTTP/1 clients' trailers are read and written (Envoy's `enable_trailers`).
    pub h1_trailers: bool,
    /// `date` on every response sent downstream that lacks one.
    pub date: bool,
    pub server_name: String,
    pub server_header_transformation: ServerHeader,
    /// The router's own headers (Envoy's router without `suppress_envoy_headers`):
    /// `x-envoy-upstream-service-time` on proxied responses,
    /// `x-envoy-expected-rq-timeout-ms` on upstream requests with a route timeout.
    pub envoy_headers: bool,
    /// Remove the `x-envoy-*` control headers from requests, which Envoy does for every
    /// request it does not consider internal, and set `x-envoy-external-address` on edge
    /// requests (`use_remote_address`).
    pub sanitize_envoy_headers: bool,
    /// `x-request-id` (UUID v4) on upstream requests that lack one, and on every edge
    /// request unless `preserve_external_request_id`.
    pub generate_request_id: bool,
    pub preserve_external_request_id: bool,
    /// The debug header `x-outrigger-phases` on proxied responses: the request's
    /// phases up to its response head (`observe::phases`). Outrigger's own; off.
    pub phases_header: bool,
    /// Compiled from the above: the `server` edit, applied to responses after every
    /// other edit.
    pub response_plan: HeaderPlan,
    /// Compiled from the above: the sanitizing removals, applied to requests before
    /// every other edit.
    pub request_plan: HeaderPlan,
    /// `request_plan` without the removal of `x-forwarded-client-cert`, for requests
    /// whose XFCC header goes on (`http/xfcc.rs`).
    pub request_plan_keeping_xfcc: HeaderPlan,
    /// The router's removal of the retry headers it consumed
    /// (`retry_model::CONSUMED`), added to a request that carries one.
    pub consumed_plan: HeaderPlan,
    /// Envoy's `internal_address_config` (`None`: no client is internal, Envoy 1.40's
    /// default; `http::forwarding::is_internal`).
    pub internal: Option<Box<InternalAddresses>>,
}

/// The clients whose requests are internal, and the plans such a request gets instead
/// of the sanitizing ones: `x-envoy-internal: true`, the other `x-envoy-*` headers kept
/// (with and without the removal of `x-forwarded-client-cert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalAddresses {
    pub cidrs: Vec<CidrRange>,
    pub plan: HeaderPlan,
    pub plan_keeping_xfcc: HeaderPlan,
}

/// Envoy's `strip_any_host_port` / `strip_matching_host_port`: the connection manager
/// removes the port from the Host (`:authority`) before the request is routed, so
/// domains match without it and the upstream and redirects get the Host without it.
/// CONNECT targets keep theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StripPort {
    /// Envoy's default.
    #[default]
    Keep,
    Any,
    /// Only this port: the listener's.
    Matching(u16),
}

/// Who the client is and what the proxy adds to `x-forwarded-for`, as Envoy's
/// `use_remote_address`, `xff_num_trusted_hops` and `skip_xff_append`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarding {
    /// The client address is the connection's peer (true), or is read from
    /// `x-forwarded-for` (false).
    pub use_remote_address: bool,
    /// Addresses at the right end of `x-forwarded-for` that were added by trusted proxies.
    pub xff_num_trusted_hops: u32,
    /// Do not append the peer address to `x-forwarded-for`.
    pub skip_xff_append: bool,
    /// What happens to `x-forwarded-client-cert` (Envoy's `forward_client_cert_details`).
    pub xfcc: ForwardClientCert,
    /// The parts of the proxy's own XFCC element (`set_current_client_cert_details`).
    pub xfcc_details: CertDetails,
}

impl Forwarding {
    /// A sidecar sees its clients directly: the peer is the client and is appended;
    /// `x-forwarded-client-cert` is removed (Envoy's default).
    pub const SIDECAR: Forwarding = Forwarding {
        use_remote_address: true,
        xff_num_trusted_hops: 0,
        skip_xff_append: false,
        xfcc: ForwardClientCert::Sanitize,
        xfcc_details: CertDetails {
            subject: false,
            cert: false,
            chain: false,
            dns: false,
            uri: false,
        },
    };
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding::SIDECAR
    }
}

/// HTTP/2 settings a listener advertises to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    pub max_concurrent_streams: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    /// Send a PING after this long without one (zero: never).
    pub keepalive_interval: std::time::Duration,
    /// Close the connection if a PING is not answered within this.
    pub keepalive_timeout: std::time::Duration,
}

impl Default for Http2Settings {
    fn default() -> Self {
        Http2Settings {
            max_concurrent_streams: 1024,
            initial_stream_window_size: 256 * 1024,
            initial_connection_window_size: 1024 * 1024,
            keepalive_interval: std::time::Duration::ZERO,
            keepalive_timeout: std::time::Duration::from_secs(20),
        }
    }
}

/// A TCP proxy: each connection goes to one cluster, picked by weight.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpProxy {
    /// (cluster index, weight); `None`: a cluster that is still warming (CDS sent it,
    /// its endpoints have not come): a connection that picks it is closed, flag `NC`,
    /// as Envoy's TCP proxy does for a cluster it does not have yet.
    pub clusters: Vec<(Option<usize>, u32)>,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout: Duration,
    pub access_log: Option<AccessLog>,
    /// Istio's TCP metrics (`observe::istio`; the `istio.stats` network filter).
    pub istio_stats: Option<Arc<crate::observe::istio::IstioStats>>,
}

/// Per-listener limits on the request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_request_line_bytes: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

/// The largest header count a listener may allow (the parser's stack array size).
pub const MAX_HEADERS_CAP: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line_bytes: 16 * 1024,
            max_header_bytes: 60 * 1024,
            max_headers: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    /// `None` is stdout; `/dev/stdout` and `/dev/stderr` are the process's streams.
    pub path: Option<String>,
    pub format: LogFormat,
    /// Which streams get a line (`None`: all).
    pub filter: Option<super::access_log_filter::LogFilter>,
    /// The format prints `%UPSTREAM_LOCAL_ADDRESS%`: only then is an upstream
    /// connection's local address read (a `getsockname` per new HTTP/1 connection) and
    /// carried to the log (compiled from `format`).
    pub upstream_local: bool,
    /// The format prints an upstream TLS operator (`%UPSTREAM_PEER_URI_SAN%`, ...):
    /// only then are the upstream connection's TLS facts carried to the log.
    pub upstream_tls: bool,
    /// The format prints a response header (`%RESP(..)%`) / a trailer
    /// (`%TRAILER(..)%`): only then does an HTTP/2 stream keep a copy of the response
    /// head / trailers it sent (an HTTP/1 connection keeps the head it wrote anyway).
    pub response_headers: bool,
    pub trailers: bool,
}

pub use super::retry_model::{Retries, RetryPolicy};
pub use super::route_model::*;

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    pub endpoints: Vec<Endpoint>,
    pub pool: PoolLimits,
    pub protocol: UpstreamProtocol,
    /// An HTTP/1 upstream's trailers are read and written (Envoy's `enable_trailers`).
    pub h1_trailers: bool,
    /// Its transport socket: TLS to its endpoints (`None`: plain TCP).
    pub tls: Option<Arc<crate::tls::client::ClientTls>>,
    /// The endpoints whose transport is not `tls` (`transport_socket_matches`): their
    /// TLS, or `None` for plaintext. Empty without matches (nothing to look up).
    pub endpoint_tls: Vec<(SocketAddr, Option<Arc<crate::tls::client::ClientTls>>)>,
    /// Active health checks (at most one), run once per process by `src/health/`.
    pub health_checks: Vec<super::HealthCheck>,
    /// Envoy's `common_lb_config.healthy_panic_threshold`, in percent (default 50): with
    /// fewer healthy endpoints than this the load balancer uses all of them.
    pub healthy_panic_threshold: u32,
    /// Priorities' overprovisioning and locality weights (the endpoints say their
    /// priority and locality).
    pub localities: Localities,
    /// Envoy's `slow_start_config` (round robin and least request only).
    pub slow_start: Option<SlowStart>,
    /// Envoy's `active_request_bias` (least request; default 1.0): with unequal
    /// weights an endpoint's effective weight is `weight / (active + 1) ^ bias`.
    pub active_request_bias: f64,
    /// Peak EWMA's settings (`lb_policy: peak_ewma`; the defaults otherwise).
    pub peak_ewma: super::PeakEwma,
    /// How the upstream address is found: the endpoints, or the connection's original
    /// destination.
    pub kind: ClusterKind,
    /// Envoy's `upstream_bind_config.source_address`: upstream connections are bound to
    /// this source address (Istio's inbound passthrough binds 127.0.0.6, which the
    /// capture rules let through).
    pub source_address: Option<IpAddr>,
    /// An original_dst cluster's `original_dst_lb_config.use_http_header`: the request
    /// header (lowercase; Envoy's default `x-envoy-original-dst-host`) whose
    /// `IP:port` an HTTP request goes to instead of the connection's original
    /// destination. `None`: no header is read.
    pub original_dst_header: Option<String>,
    /// Circuit breakers per priority: thresholds and the process-wide counts (`config::circuit`),
    /// compared by thresholds only.
    pub breakers: Arc<super::circuit::CircuitBreakers>,
    /// Outlier detection: its settings and each endpoint's process-wide consecutive
    /// failure counts (`config::outlier`), compared by settings only.
    pub outlier: Option<Arc<super::outlier::Outlier>>,
    /// STRICT_DNS or LOGICAL_DNS: the names the control executor resolves, again every
    /// `refresh_rate`, into `endpoints` (empty until the first resolution).
    pub dns: Option<Arc<Dns>>,
}

impl Cluster {
    /// The TLS of connections to `addr`: its `transport_socket_matches` entry's, else
    /// the cluster's.
    pub fn tls_for(&self, addr: SocketAddr) -> Option<&Arc<crate::tls::client::ClientTls>> {
        match self.endpoint_tls.iter().find(|(a, _)| *a == addr) {
            Some((_, t)) => t.as_ref(),
            None => self.tls.as_ref(),
        }
    }
}

/// Envoy's STRICT_DNS or LOGICAL_DNS: what to resolve and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Dns {
    /// LOGICAL_DNS: one name, and only its first address is used.
    pub logical: bool,
    /// `dns_refresh_rate` (Envoy's default 5 s).
    pub refresh_rate: Duration,
    /// `dns_failure_refresh_rate`: after a failed resolution the next one comes after a
    /// jittered back-off from `base` up to `max`; `None`: `refresh_rate`.
    pub failure_refresh: Option<(Duration, Duration)>,
    pub family: DnsFamily,
    /// One per configured endpoint, in order.
    pub targets: Vec<DnsTarget>,
}

/// One configured endpoint whose address is a name: each address it resolves to
/// becomes an endpoint like `template` with that address.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsTarget {
    pub host: String,
    pub port: u16,
    /// Weight, hostname, priority, locality and health of the endpoints it makes (its
    /// `addr` is unused).
    pub template: Endpoint,
}

/// Envoy's `dns_lookup_family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsFamily {
    /// IPv6 addresses if there are any, else IPv4 (Envoy's default).
    #[default]
    Auto,
    V4Only,
    V6Only,
    /// IPv4 addresses if there are any, else IPv6.
    V4Preferred,
    /// Both.
    All,
}

/// Envoy's cluster discovery types that Outrigger has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterKind {
    /// The endpoints listed (STATIC, and DNS names resolved at load).
    Static,
    /// Envoy's `ORIGINAL_DST` with `lb_policy: CLUSTER_PROVIDED`: no endpoints; each
    /// connection goes to its own original destination (the downstream connection's
    /// local address after the original_dst listener filter). Istio's
    /// PassthroughCluster and InboundPassthroughCluster are such clusters.
    OriginalDst,
}

/// The protocol spoken to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c): one multiplexed connection per endpoint per core.
    Http2,
    /// Whatever the downstream request used.
    Downstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    /// Envoy's `RING_HASH` (ketama): each endpoint hashed onto a ring between
    /// `min_ring_size` (default 1024) and `max_ring_size` (default 8M) times in all, in
    /// proportion to its weight; a request's hash takes the next entry clockwise.
    RingHash {
        min_ring_size: u64,
        max_ring_size: u64,
    },
    /// Envoy's `MAGLEV`: a lookup table of `table_size` entries (a prime, default 65537)
    /// filled by the endpoints' permutations, in proportion to their weights.
    Maglev {
        table_size: u64,
    },
    /// Peak EWMA (linkerd's default): the cheaper of two endpoints drawn at random, an
    /// endpoint costing its peak-sensitive latency estimate times (in flight + 1); its
    /// settings are the cluster's `peak_ewma`.
    PeakEwma,
}

impl LbPolicy {
    /// Envoy's ring hash defaults (`RingHashLoadBalancer`).
    pub const RING_HASH_DEFAULT: LbPolicy = LbPolicy::RingHash {
        min_ring_size: 1024,
        max_ring_size: 8 * 1024 * 1024,
    };
    /// Envoy's Maglev default (`MaglevTable::DefaultTableSize`).
    pub const MAGLEV_DEFAULT: LbPolicy = LbPolicy::Maglev { table_size: 65537 };

    /// A consistent-hash policy: picks follow the request's hash (route `hash_policy`).
    pub fn hashing(&self) -> bool {
        matches!(self, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    /// What `auto_host_rewrite` sends as Host: the configured `hostname`, else the
    /// address when it is a DNS name (as Envoy's DNS clusters); `None` for a plain IP.
    pub hostname: Option<String>,
    /// Envoy's priority level (`LocalityLbEndpoints.priority`; 0 is the highest): a
    /// lower level gets load only as the ones above lose healthy endpoints.
    pub priority: u32,
    /// Index into the cluster's `localities.list`.
    pub locality: usize,
    /// The health the config (or EDS) gives it, before health checks and outlier
    /// detection have their say.
    pub health: EndpointHealth,
}

/// Envoy's `LbEndpoint.health_status`, reduced to what the load balancer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointHealth {
    /// `HEALTHY` or `UNKNOWN` (unset).
    #[default]
    Healthy,
    /// `DEGRADED`: used only when the healthy endpoints cannot carry the load.
    Degraded,
    /// `UNHEALTHY`, `DRAINING` or `TIMEOUT`: counted, never picked (except in panic).
    Unhealthy,
}

/// Localities and the priority arithmetic's knobs of a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Localities {
    /// Envoy's `ClusterLoadAssignment.policy.overprovisioning_factor` (percent,
    /// default 140): a priority (or locality) with this share of healthy endpoints
    /// counts as fully available.
    pub overprovisioning_factor: u32,
    /// Envoy's `common_lb_config.locality_weighted_lb_config`: within a priority, a
    /// locality is picked first, by its weight times its availability.
    pub weighted: bool,
    /// Each locality's name and weight (0: none given, so no load when weighted).
    pub list: Vec<Locality>,
}

impl Default for Localities {
    fn default() -> Self {
        Localities {
            overprovisioning_factor: 140,
            weighted: false,
            list: Vec::new(),
        }
    }
}

/// Envoy's `SlowStartConfig`: an endpoint that has just become healthy (or was just
/// added) ramps its weight up over `window`: `weight * max(min_weight_percent / 100,
/// (elapsed / window) ^ (1 / aggression))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    pub window: Duration,
    /// Default 1.0 (linear).
    pub aggression: f64,
    /// Default 10.
    pub min_weight_percent: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    pub name: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    pub max_idle_per_endpoint: usize,
    pub idle_timeout: Duration,
    /// Envoy's `max_requests_per_connection`: an HTTP/1.1 connection that carried this
    /// many requests is closed instead of pooled, an HTTP/2 one that carried this many
    /// streams takes no new one and closes when they end (`None`: no limit).
    pub max_requests_per_connection: Option<u32>,
    /// Envoy's `http2_protocol_options.max_concurrent_streams`: at most this many streams
    /// on one HTTP/2 connection (fewer if the upstream's SETTINGS say so; default 2^31-1).
    pub max_concurrent_streams: u32,
    /// Envoy's `upstream_connection_options.tcp_keepalive` (`None`: none).
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Envoy's `max_stream_duration` on the cluster: each try's bound (zero: none).
    pub max_stream_duration: Duration,
}

/// TCP keepalive probes on an upstream connection; an unset field keeps the kernel's
/// default (`net.ipv4.tcp_keepalive_*`), as in Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpKeepalive {
    /// TCP_KEEPCNT: unanswered probes before the connection is dropped.
    pub probes: Option<u32>,
    /// TCP_KEEPIDLE: seconds idle before the first probe.
    pub time: Option<u32>,
    /// TCP_KEEPINTVL: seconds between probes.
    pub interval: Option<u32>,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_idle_per_endpoint: 1024,
            idle_timeout: Duration::from_secs(60),
            max_requests_per_connection: None,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            tcp_keepalive: None,
            max_stream_duration: Duration::ZERO,
        }
    }
}

/// Envoy's default `max_concurrent_streams` for upstream HTTP/2 connections (2^31 - 1).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 2_147_483_647;

impl Snapshot {
    pub fn cluster_index(&self, name: &str) -> Option<usize> {
        self.clusters.iter().position(|c| c.name == name)
    }
}
