//! Raw config -> checked `Snapshot`, collecting every error with its field path.

use std::collections::HashSet;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use super::duration::parse_duration;
use super::locate;
use super::model::*;
use super::raw::*;

mod circuit;
mod dns;
mod ext_authz;
mod fault_cors;
mod fingerprint;
mod hash_policy;
mod health;
mod istio;
mod listener;
mod listener_filters;
mod locality;
mod outlier;
mod pool;
mod proxy_headers;
mod raw_terminal;
mod rbac;
mod retry;
mod route_action;
mod route_match;
mod routes;
mod stats;
mod tls;
mod tracing;

/// One problem in a config, located by field path and (when known) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every error found in one config.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub(super) fn one(path: &str, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            path: path.to_string(),
            line: None,
            message: message.into(),
        }])
    }
}

/// Parses and checks config text in the native YAML format.
pub(super) fn parse_native(text: &str) -> Result<Snapshot, ConfigErrors> {
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: RawConfig = match serde_path_to_error::deserialize(de) {
        Ok(raw) => raw,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.location().map(|l| l.line());
            let mut message = inner.to_string();
            // serde_yaml appends " at line L column C"; we report the line separately.
            if let Some(cut) = message.find(" at line ") {
                message.truncate(cut);
            }
            return Err(ConfigErrors(vec![ConfigError {
                path: if path == "." { "(root)".into() } else { path },
                line,
                message,
            }]));
        }
    };
    let dump = serde_yaml::from_str::<serde_json::Value>(text).unwrap_or(serde_json::Value::Null);
    let mut b = Builder::default();
    let snapshot = b.config(&raw, dump);
    if b.errors.is_empty() {
        if let Some(s) = snapshot {
            return Ok(s);
        }
    }
    let lines = locate::line_map(text);
    let mut errors = b.errors;
    for e in &mut errors {
        e.line = locate::line_of(&lines, &e.path);
    }
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    if errors.is_empty() {
        errors.push(ConfigError {
            path: "(root)".into(),
            line: None,
            message: "invalid config".into(),
        });
    }
    Err(ConfigErrors(errors))
}

/// Checks a raw config that another source (an Envoy bootstrap) translated; errors carry
/// native field paths, which the caller maps back to its own.
pub(crate) fn build_raw(
    raw: &RawConfig,
    dump: serde_json::Value,
) -> Result<Snapshot, Vec<ConfigError>> {
    build_raw_warming(raw, dump, &[])
}

/// As `build_raw`, where the clusters named in `warming` exist but are not in the config
/// yet (xDS: CDS sent them, their endpoints or secrets have not arrived). A route table
/// that validates its clusters takes a route to one of them, as Envoy's does (its
/// cluster manager counts warming clusters); until the cluster warms, the route answers
/// `NC` as a route to a missing cluster does.
pub(crate) fn build_raw_warming(
    raw: &RawConfig,
    dump: serde_json::Value,
    warming: &[String],
) -> Result<Snapshot, Vec<ConfigError>> {
    let mut b = Builder {
        warming_clusters: warming.to_vec(),
        ..Builder::default()
    };
    match b.config(raw, dump) {
        Some(s) if b.errors.is_empty() => Ok(s),
        _ if b.errors.is_empty() => Err(vec![ConfigError {
            path: "(root)".into(),
            line: None,
            message: "invalid config".into(),
        }]),
        _ => Err(b.errors),
    }
}

#[derive(Default)]
struct Builder {
    errors: Vec<ConfigError>,
    /// The config's named counters (`Snapshot::counters`), each once.
    counters: Vec<String>,
    /// The routes' stat prefixes (`Snapshot::route_stats`), each once.
    route_stats: Vec<String>,
    /// The route table being built has `validate_clusters: false`: a route to a
    /// cluster that does not exist loads (and answers `NC`).
    lax_clusters: bool,
    /// Clusters that exist but are still warming (`build_raw_warming`): a route to one
    /// loads whatever `lax_clusters` says, and answers `NC` until it warms.
    warming_clusters: Vec<String>,
}

impl Builder {
    /// The index of the counter `name` in `Snapshot::counters` (the filters' named
    /// counters: RBAC's, the local rate limit's), added on first use.
    fn counter(&mut self, name: String) -> usize {
        match self.counters.iter().position(|c| *c == name) {
            Some(i) => i,
            None => {
                self.counters.push(name);
                self.counters.len() - 1
            }
        }
    }

    fn err(&mut self, path: String, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path,
            line: None,
            message: message.into(),
        });
    }

    fn duration(&mut self, path: String, v: &Option<String>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(m) => {
                    self.err(path, m);
                    default
                }
            },
        }
    }

    fn positive_duration(
        &mut self,
        path: String,
        v: &Option<String>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path.clone(), v, default);
        if d.is_zero() {
            self.err(path, "must be greater than zero");
            return default;
        }
        d
    }

    fn resolve(&mut self, path: String, host: &str, port: u16) -> Option<SocketAddr> {
        match (host, port).to_socket_addrs() {
            Ok(mut it) => match it.next() {
                Some(a) => Some(a),
                None => {
                    self.err(path, format!("`{host}` resolves to no address"));
                    None
                }
            },
            Err(e) => {
                self.err(path, format!("`{host}` does not resolve: {e}"));
                None
            }
        }
    }

    fn unique<'a>(&mut self, kind: &str, names: impl Iterator<Item = &'a str>) {
        let mut seen = HashSet::new();
        for (i, n) in names.enumerate() {
            if n.is_empty() {
                self.err(format!("{kind}[{i}].name"), "must not be empty");
            } else if !seen.insert(n) {
                self.err(format!("{kind}[{i}].name"), format!("duplicate name `{n}`"));
            }
        }
    }

    fn config(&mut self, raw: &RawConfig, dump: serde_json::Value) -> Option<Snapshot> {
        let admin = raw
            .admin
            .as_ref()
            .and_then(|a| self.resolve("admin.address".into(), &a.address, a.port));
        let runtime = raw.runtime.as_ref();
        let concurrency = runtime.and_then(|r| r.concurrency);
        if concurrency == Some(0) {
            self.err(
                "runtime.concurrency".into(),
                "must be at least 1 (omit it for one worker per CPU)",
            );
        }
        let drain_timeout = self.duration(
            "runtime.drain_timeout".into(),
            &runtime.and_then(|r| r.drain_timeout.clone()),
            Duration::from_secs(10),
        );

        let spin_before_park = self.duration(
            "runtime.spin_before_park".into(),
            &runtime.and_then(|r| r.spin_before_park.clone()),
            Duration::ZERO,
        );
        if spin_before_park > Duration::from_millis(10) {
            self.err("runtime.spin_before_park".into(), "must be at most 10ms");
        }
        let max_connections = runtime.and_then(|r| r.max_connections);
        if max_connections == Some(0) {
            self.err(
                "runtime.max_connections".into(),
                "must be at least 1 (omit it for no limit)",
            );
        }

        let histogram_buckets = self.histogram_buckets(raw.stats.as_ref());
        self.unique("clusters", raw.clusters.iter().map(|c| c.name.as_str()));
        self.unique(
            "route_tables",
            raw.route_tables.iter().map(|c| c.name.as_str()),
        );
        self.unique("listeners", raw.listeners.iter().map(|c| c.name.as_str()));

        let clusters: Vec<Arc<Cluster>> = raw
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| Arc::new(self.cluster(i, c)))
            .collect();
        let route_tables: Vec<RouteTable> = raw
            .route_tables
            .iter()
            .enumerate()
            .map(|(i, t)| self.route_table(i, t, &clusters))
            .collect();
        let mut listeners = Vec::new();
        let mut addrs = HashSet::new();
        for (i, l) in raw.listeners.iter().enumerate() {
            if let Some(l) = self.listener(i, l, &route_tables, &clusters) {
                if !addrs.insert(l.addr) {
                    self.err(
                        format!("listeners[{i}].port"),
                        format!("address {} is used by another listener", l.addr),
                    );
                }
                if Some(l.addr) == admin {
                    self.err(
                        format!("listeners[{i}].port"),
                        "address is the admin address",
                    );
                }
                listeners.push(l);
            }
        }
        self.check_filter_overrides(raw);
        if !self.errors.is_empty() {
            return None;
        }
        Some(Snapshot {
            version: 0,
            admin,
            concurrency,
            drain_timeout,
            spin_before_park,
            max_connections,
            listeners,
            route_tables: Arc::new(route_tables),
            clusters,
            counters: std::mem::take(&mut self.counters),
            route_stats: std::mem::take(&mut self.route_stats),
            histogram_buckets,
            dump,
        })
    }

    /// `lb_policy`, with its ring hash or Maglev settings (Envoy's checks: ring sizes
    /// at most 8M and minimum <= maximum; a prime Maglev table under 5000011).
    fn lb_policy(&mut self, p: &str, c: &RawCluster) -> LbPolicy {
        let policy = match c.lb_policy.as_deref() {
            None | Some("round_robin") => LbPolicy::RoundRobin,
            Some("least_request") => LbPolicy::LeastRequest,
            Some("random") => LbPolicy::Random,
            Some("ring_hash") => LbPolicy::RING_HASH_DEFAULT,
            Some("maglev") => LbPolicy::MAGLEV_DEFAULT,
            Some("peak_ewma") => LbPolicy::PeakEwma,
            Some(other) => {
                self.err(
                    format!("{p}.lb_policy"),
                    format!("unknown policy `{other}` (use round_robin, least_request, random, ring_hash, maglev or peak_ewma)"),
                );
                LbPolicy::RoundRobin
            }
        };
        if c.ring_hash_lb_config.is_some() && !matches!(policy, LbPolicy::RingHash { .. }) {
            self.err(
                format!("{p}.ring_hash_lb_config"),
                "goes with `lb_policy: ring_hash`",
            );
        }
        if c.maglev_lb_config.is_some() && !matches!(policy, LbPolicy::Maglev { .. }) {
            self.err(
                format!("{p}.maglev_lb_config"),
                "goes with `lb_policy: maglev`",
            );
        }
        match policy {
            LbPolicy::RingHash {
                min_ring_size,
                max_ring_size,
            } => {
                let r = c.ring_hash_lb_config.as_ref();
                let min = r.and_then(|r| r.minimum_ring_size).unwrap_or(min_ring_size);
                let max = r.and_then(|r| r.maximum_ring_size).unwrap_or(max_ring_size);
                let rp = format!("{p}.ring_hash_lb_config");
                // Envoy's proto bounds: both at most 8M (8388608), the minimum positive.
                if min == 0 || min > 8 * 1024 * 1024 {
                    self.err(format!("{rp}.minimum_ring_size"), "must be 1 to 8388608");
                }
                if max == 0 || max > 8 * 1024 * 1024 {
                    self.err(format!("{rp}.maximum_ring_size"), "must be 1 to 8388608");
                }
                if min > max {
                    self.err(
                        rp.clone(),
                        format!("minimum_ring_size ({min}) > maximum_ring_size ({max})"),
                    );
                }
                match r.and_then(|r| r.hash_function.as_deref()) {
                    None | Some("XX_HASH") => {}
                    Some(other) => self.err(
                        format!("{rp}.hash_function"),
                        format!("`{other}` is not supported by Outrigger (XX_HASH)"),
                    ),
                }
                LbPolicy::RingHash {
                    min_ring_size: min,
                    max_ring_size: max,
                }
            }
            LbPolicy::Maglev { table_size } => {
                let t = c
                    .maglev_lb_config
                    .as_ref()
                    .and_then(|m| m.table_size)
                    .unwrap_or(table_size);
                // Envoy: the size must be prime, and its proto caps it below 5000011.
                if t >= 5_000_011 || !is_prime(t) {
                    self.err(
                        format!("{p}.maglev_lb_config.table_size"),
                        "must be a prime number below 5000011",
                    );
                }
                LbPolicy::Maglev { table_size: t }
            }
            other => other,
        }
    }

    fn cluster(&mut self, i: usize, c: &RawCluster) -> Cluster {
        let p = format!("clusters[{i}]");
        let connect_timeout = self.positive_duration(
            format!("{p}.connect_timeout"),
            &c.connect_timeout,
            Duration::from_secs(5),
        );
        let lb_policy = self.lb_policy(&p, c);
        let protocol = match c.protocol.as_deref() {
            None | Some("http1") => UpstreamProtocol::Http1,
            Some("http2") => UpstreamProtocol::Http2,
            Some("downstream") => UpstreamProtocol::Downstream,
            Some(other) => {
                self.err(
                    format!("{p}.protocol"),
                    format!("unknown protocol `{other}` (use http1, http2 or downstream)"),
                );
                UpstreamProtocol::Http1
            }
        };
        let (kind, dns_kind) = match c.kind.as_deref() {
            None | Some("static") => (ClusterKind::Static, None),
            Some("strict_dns") => (ClusterKind::Static, Some(false)),
            Some("logical_dns") => (ClusterKind::Static, Some(true)),
            Some("original_dst") => (ClusterKind::OriginalDst, None),
            Some(other) => {
                self.err(
                    format!("{p}.type"),
                    format!(
                        "unknown cluster type `{other}` \
                         (use static, strict_dns, logical_dns or original_dst)"
                    ),
                );
                (ClusterKind::Static, None)
            }
        };
        self.dns_fields(&p, c, dns_kind.is_some());
        let raw_endpoints = match (&c.endpoints, kind) {
            (Some(e), ClusterKind::Static) => e.as_slice(),
            (None, ClusterKind::Static) => {
                self.err(
                    format!("{p}.endpoints"),
                    "is required (it may be empty) for a static cluster",
                );
                &[]
            }
            (Some(e), ClusterKind::OriginalDst) if !e.is_empty() => {
                self.err(
                    format!("{p}.endpoints"),
                    "an original_dst cluster has no endpoints: it connects to each \
                     connection's original destination",
                );
                &[]
            }
            (_, ClusterKind::OriginalDst) => &[],
        };
        let source_address = c.source_address.as_ref().and_then(|a| {
            a.parse::<std::net::IpAddr>()
                .map_err(|_| {
                    self.err(
                        format!("{p}.source_address"),
                        format!("`{a}` is not an IP address"),
                    )
                })
                .ok()
        });
        let localities = self.localities(&p, c, raw_endpoints);
        let slow_start = self.slow_start(&p, c, lb_policy);
        let active_request_bias = self.active_request_bias(&p, c, lb_policy);
        let peak_ewma = self.peak_ewma(&p, c, lb_policy);
        let original_dst_header = self.original_dst_header(&p, c, kind);
        let mut dns_targets = Vec::new();
        // Each static endpoint's address and its raw entry (transport socket matches).
        let mut placed = Vec::new();
        let endpoints: Vec<Endpoint> = raw_endpoints
            .iter()
            .enumerate()
            .filter_map(|(j, e)| {
                let ep = format!("{p}.endpoints[{j}]");
                let weight = e.weight.unwrap_or(1);
                if !(1..=1000).contains(&weight) {
                    self.err(format!("{ep}.weight"), "must be between 1 and 1000");
                }
                if e.port == 0 {
                    self.err(format!("{ep}.port"), "must not be 0");
                }
                let health = self.endpoint_health(&ep, e.health_status.as_deref());
                // Envoy excludes a draining endpoint: no load, and not counted in the
                // priority and locality arithmetic.
                if e.health_status.as_deref() == Some("draining") {
                    return None;
                }
                let addr = match dns_kind {
                    // Resolved by the control executor (runtime/dns.rs), not here.
                    Some(_) => SocketAddr::from(([0, 0, 0, 0], e.port)),
                    None => self.resolve(format!("{ep}.address"), &e.address, e.port)?,
                };
                placed.push((addr, j));
                // Envoy's DNS clusters give an endpoint its DNS name as hostname; a plain
                // IP has none unless `hostname` is set.
                let hostname = e.hostname.clone().filter(|h| !h.is_empty()).or_else(|| {
                    e.address
                        .parse::<std::net::IpAddr>()
                        .is_err()
                        .then(|| e.address.clone())
                });
                let endpoint = Endpoint {
                    addr,
                    weight,
                    hostname,
                    priority: e.priority.unwrap_or(0),
                    locality: locality::index(&localities, e.locality.as_deref()),
                    health,
                };
                if dns_kind.is_some() {
                    dns_targets.push((e.address.clone(), e.port, endpoint));
                    return None;
                }
                Some(endpoint)
            })
            .collect();
        let dns = dns_kind.map(|logical| Arc::new(self.dns(&p, c, logical, dns_targets)));
        let pool = self.pool(&p, c, protocol);
        let tls = c.tls.as_ref().and_then(|t| {
            self.upstream_tls(&format!("{p}.tls"), t, protocol == UpstreamProtocol::Http2)
        });
        let endpoint_tls = self.endpoint_tls(
            &p,
            c,
            (raw_endpoints, &placed),
            protocol == UpstreamProtocol::Http2,
            dns_kind.is_some(),
        );
        let health_checks = self.health_checks(&p, &c.health_checks);
        let healthy_panic_threshold = match c.healthy_panic_threshold {
            None => 50,
            Some(t) if (0.0..=100.0).contains(&t) => t.round() as u32,
            Some(_) => {
                self.err(
                    format!("{p}.healthy_panic_threshold"),
                    "must be a percentage between 0 and 100",
                );
                50
            }
        };
        let breakers = Arc::new(self.circuit_breakers(&p, c.circuit_breakers.as_ref()));
        let outlier = c.outlier_detection.as_ref().map(|o| {
            Arc::new(crate::config::outlier::Outlier::new(
                self.outlier_detection(&p, o),
                endpoints.len(),
            ))
        });
        Cluster {
            name: c.name.clone(),
            connect_timeout,
            lb_policy,
            endpoints,
            pool,
            protocol,
            h1_trailers: c.http1_trailers.unwrap_or(true),
            tls,
            endpoint_tls,
            health_checks,
            healthy_panic_threshold,
            localities,
            slow_start,
            active_request_bias,
            peak_ewma,
            kind,
            source_address,
            original_dst_header,
            breakers,
            outlier,
            dns,
        }
    }

    /// `original_dst_lb_config`: the header an HTTP request names its upstream with
    /// (`use_http_header`), for an original_dst cluster. Envoy refuses a header name
    /// without `use_http_header`.
    fn original_dst_header(
        &mut self,
        p: &str,
        c: &RawCluster,
        kind: ClusterKind,
    ) -> Option<String> {
        let o = c.original_dst_lb_config.as_ref()?;
        let at = format!("{p}.original_dst_lb_config");
        if kind != ClusterKind::OriginalDst {
            self.err(at, "is for an original_dst cluster only");
            return None;
        }
        let name = o.http_header_name.as_deref().filter(|n| !n.is_empty());
        if !o.use_http_header {
            if name.is_some() {
                self.err(
                    format!("{at}.http_header_name"),
                    "needs `use_http_header: true`",
                );
            }
            return None;
        }
        let name = name.unwrap_or("x-envoy-original-dst-host");
        if !name.bytes().all(is_tchar) {
            self.err(format!("{at}.http_header_name"), "is not a header name");
            return None;
        }
        Some(name.to_ascii_lowercase())
    }
}

/// RFC 9110 token characters.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Trial division: table sizes are below 5000011, so at most ~1100 divisions, once per
/// config load.
fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
listeners:
  - name: l
    address: 127.0.0.1
    port: 10000
    route_table: main
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: ['*', 'api.example.com', '*.example.org']
        routes:
          - match: { prefix: / }
            cluster: backend
clusters:
  - name: backend
    endpoints:
      - { address: 127.0.0.1, port: 9000 }
";

    #[test]
    fn good_config_builds() {
        let s = parse_native(GOOD).unwrap();
        assert_eq!(s.listeners.len(), 1);
        assert_eq!(s.route_tables[0].virtual_hosts[0].domains.len(), 3);
        assert_eq!(s.clusters[0].connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn every_error_is_reported_with_path_and_line() {
        let bad = GOOD
            .replace("cluster: backend", "cluster: nope")
            .replace("port: 9000", "port: 9000, weight: 0");
        let errs = parse_native(&bad).unwrap_err().0;
        assert_eq!(errs.len(), 2, "{errs:?}");
        let route = errs.iter().find(|e| e.path.ends_with(".cluster")).unwrap();
        assert_eq!(
            route.path,
            "route_tables[0].virtual_hosts[0].routes[0].cluster"
        );
        assert_eq!(route.line, Some(14));
        assert!(errs
            .iter()
            .any(|e| e.path == "clusters[0].endpoints[0].weight" && e.line == Some(18)));
    }

    #[test]
    fn a_clusters_max_stream_duration_is_read_and_a_bad_one_named() {
        let with = |v: &str| {
            GOOD.replace(
                "  - name: backend\n",
                &format!("  - name: backend\n    pool: {{ max_stream_duration: {v} }}\n"),
            )
        };
        let s = parse_native(&with("1.5s")).unwrap();
        assert_eq!(
            s.clusters[0].pool.max_stream_duration,
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_native(GOOD).unwrap().clusters[0]
                .pool
                .max_stream_duration,
            Duration::ZERO
        );
        let errs = parse_native(&with("soon")).unwrap_err().0;
        assert_eq!(errs[0].path, "clusters[0].pool.max_stream_duration");
    }

    #[test]
    fn unknown_field_names_path_and_line() {
        let bad = GOOD.replace(
            "    route_table: main",
            "    route_table: main\n    colour: red",
        );
        let errs = parse_native(&bad).unwrap_err().0;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "listeners[0].colour");
        assert!(errs[0].message.contains("colour"), "{}", errs[0].message);
        assert_eq!(errs[0].line, Some(7));
    }
}
