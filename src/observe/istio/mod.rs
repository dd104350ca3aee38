//! Istio's standard metrics (`istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes`, `istio_tcp_*`), with the labels Istio's
//! stats filter (`istio.stats`, istio/proxy `extensions/filters/http/istio_stats`) gives
//! them. On the request path only at the end of a stream: `stream_info::complete` hands
//! the finished record to [`cells::IstioCells::record`] of the listener's per-core stats.
//!
//! What a chain's labels can be is resolved when the config is built ([`IstioStats`]:
//! the reporter and this proxy's own workload facts from the bootstrap node's metadata).
//! What only the stream knows (the peer's certificate, the cluster, the Host, the status,
//! the flags) picks a series in the per-core table; a series is made (and its label text
//! rendered) the first time its combination is seen, then only counted.

pub mod cells;
pub mod render;

use std::sync::atomic::{AtomicU64, Ordering};

/// Whose view the metrics take (Istio's `reporter` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// An inbound sidecar listener (Istio's ServerSidecar): `reporter="destination"`.
    Destination,
    /// An outbound sidecar listener (ClientSidecar): `reporter="source"`.
    Source,
    /// A shared server gateway (`reporter: SERVER_GATEWAY`): `reporter="waypoint"`.
    Waypoint,
}

impl Reporter {
    pub fn label(self) -> &'static str {
        match self {
            Reporter::Destination => "destination",
            Reporter::Source => "source",
            Reporter::Waypoint => "waypoint",
        }
    }

    fn server_side(self) -> bool {
        matches!(self, Reporter::Destination | Reporter::Waypoint)
    }
}

/// This proxy's own workload, from the bootstrap node's metadata as Istio writes it
/// (`WORKLOAD_NAME`, `NAMESPACE`, `LABELS`, `CLUSTER_ID`, `MESH_ID`). Istio takes the
/// values as they are: a missing one is an empty label, not `unknown`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    /// `LABELS.app` and `LABELS.version`.
    pub app: String,
    pub version: String,
    /// `LABELS["service.istio.io/canonical-name"]` / `canonical-revision`.
    pub canonical_service: String,
    pub canonical_revision: String,
    pub cluster_id: String,
    /// `MESH_ID`: no standard label carries it (kept for the config dump).
    pub mesh_id: String,
}

/// One chain's `istio.stats` filter.
#[derive(Debug, PartialEq, Eq)]
pub struct IstioStats {
    /// Unique per build: with the stream's facts it keys a per-core series, so a
    /// reloaded chain with other labels never counts into the old chain's series.
    pub id: u64,
    pub reporter: Reporter,
    pub workload: Workload,
    /// Istio's `disable_host_header_fallback`: no `destination_service` from the Host.
    pub disable_host_header_fallback: bool,
}

impl IstioStats {
    pub fn new(reporter: Reporter, workload: Workload, disable_host_header_fallback: bool) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        IstioStats {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            reporter,
            workload,
            disable_host_header_fallback,
        }
    }

    /// Whether the stream's Host is read (for `destination_service`).
    pub fn wants_host(&self) -> bool {
        !self.disable_host_header_fallback
    }
}

/// Istio's default buckets (Envoy's default histogram buckets), for the duration in
/// milliseconds and for the byte sizes alike.
pub const BUCKETS: [f64; 19] = [
    0.5,
    1.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    30_000.0,
    60_000.0,
    300_000.0,
    600_000.0,
    1_800_000.0,
    3_600_000.0,
];

/// The namespace in a SPIFFE ID (`spiffe://<trust domain>/ns/<namespace>/sa/<account>`),
/// as Istio's `getNamespace` reads it.
pub fn spiffe_namespace(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("spiffe://")?;
    let mut parts = rest.split('/');
    while let Some(p) = parts.next() {
        if p == "ns" {
            return parts.next().filter(|n| !n.is_empty());
        }
    }
    None
}

/// The clusters whose name Istio reports as `destination_service_name` as they are.
const SPECIAL_CLUSTERS: &[&str] = &[
    "BlackHoleCluster",
    "PassthroughCluster",
    "InboundPassthroughCluster",
    "InboundPassthroughClusterIpv4",
    "InboundPassthroughClusterIpv6",
];

/// What one finished stream tells the labels.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamFacts<'a> {
    /// The cluster the stream went to (empty: none).
    pub cluster: &'a str,
    /// The request's Host / :authority (empty for TCP, or when not read).
    pub host: &'a str,
    /// The first URI SAN of the peer's certificate (downstream on the server side,
    /// upstream on the client side; empty: none).
    pub peer_san: &'a str,
    /// The first URI SAN of this proxy's own certificate on that connection.
    pub local_san: &'a str,
    /// `None` for a TCP connection; else `Some(is_grpc)`.
    pub http: Option<bool>,
    pub status: u16,
    pub grpc_status: Option<u16>,
    /// Envoy's short flag string (`-`, `UF`, `DI,UF`).
    pub flags: &'a str,
}

/// The label names, in the order Istio's filter adds them (HTTP; a TCP series has no
/// `response_code` and `grpc_response_status`).
pub const LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

const UNKNOWN: &str = "unknown";

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        UNKNOWN
    } else {
        s
    }
}

impl IstioStats {
    /// The label values of a stream, in [`LABELS`] order (`None`: the label is left
    /// out, as for a TCP series' response code). Runs once per new series, not per
    /// request. Follows istio_stats.cc's `populatePeerInfo`: with no peer metadata
    /// exchange, the peer's workload facts are `unknown` and its namespace comes from
    /// its SPIFFE ID.
    pub fn label_values(&self, f: &StreamFacts<'_>) -> Vec<Option<String>> {
        let w = &self.workload;
        let host = if self.disable_host_header_fallback {
            ""
        } else {
            f.host
        };
        let (service_host, service_name) = if SPECIAL_CLUSTERS.contains(&f.cluster) {
            (host, f.cluster)
        } else {
            (host, host)
        };
        let peer_ns = spiffe_namespace(f.peer_san).unwrap_or("");
        let s = |v: &str| Some(v.to_string());
        let mut v: Vec<Option<String>> = Vec::with_capacity(LABELS.len());
        v.push(s(self.reporter.label()));
        if self.reporter.server_side() {
            v.extend([
                s(UNKNOWN),
                s(UNKNOWN),
                s("latest"),
                s(or_unknown(peer_ns)),
                s(or_unknown(f.peer_san)),
                s(UNKNOWN),
                s(UNKNOWN),
                s(UNKNOWN),
            ]);
            let canonical = &w.canonical_service;
            let service = if service_host.is_empty() {
                canonical
            } else {
                service_host
            };
            let name = if service_name.is_empty() {
                canonical
            } else {
                service_name
            };
            v.extend([
                s(&w.name),
                s(&w.namespace),
                s(or_unknown(f.local_san)),
                s(&w.app),
                s(&w.version),
                s(service),
                s(canonical),
                s(&w.canonical_revision),
                s(name),
                s(&w.namespace),
                s(&w.cluster_id),
            ]);
        } else {
            v.extend([
                s(&w.name),
                s(&w.canonical_service),
                s(&w.canonical_revision),
                s(&w.namespace),
                s(or_unknown(f.local_san)),
                s(&w.app),
                s(&w.version),
                s(&w.cluster_id),
                s(UNKNOWN),
                s(or_unknown(peer_ns)),
                s(or_unknown(f.peer_san)),
                s(UNKNOWN),
                s(UNKNOWN),
                s(or_unknown(service_host)),
                s(UNKNOWN),
                s("latest"),
                s(or_unknown(service_name)),
                s(or_unknown(peer_ns)),
                s(UNKNOWN),
            ]);
        }
        match f.http {
            None => {
                v.push(s("tcp"));
                v.push(None);
                v.push(None);
            }
            Some(grpc) => {
                v.push(s(if grpc { "grpc" } else { "http" }));
                v.push(Some(f.status.to_string()));
                v.push(Some(match (grpc, f.grpc_status) {
                    (true, Some(g)) => g.to_string(),
                    _ => String::new(),
                }));
            }
        }
        v.push(s(f.flags));
        // Istio decides mutual TLS on the server side only (both ends presented a URI
        // SAN); the client side leaves the policy unknown.
        v.push(s(if !self.reporter.server_side() {
            UNKNOWN
        } else if !f.peer_san.is_empty() && !f.local_san.is_empty() {
            "mutual_tls"
        } else {
            "none"
        }));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(reporter: Reporter) -> IstioStats {
        IstioStats::new(
            reporter,
            Workload {
                name: "reviews-v1".into(),
                namespace: "default".into(),
                app: "reviews".into(),
                version: "v1".into(),
                canonical_service: "reviews".into(),
                canonical_revision: "v1".into(),
                cluster_id: "Kubernetes".into(),
                mesh_id: "cluster.local".into(),
            },
            false,
        )
    }

    fn get<'a>(v: &'a [Option<String>], name: &str) -> Option<&'a str> {
        let i = LABELS.iter().position(|l| *l == name)?;
        v.get(i)?.as_deref()
    }

    #[test]
    fn inbound_labels_take_the_peer_from_its_spiffe_id() {
        let s = stats(Reporter::Destination);
        let v = s.label_values(&StreamFacts {
            cluster: "inbound|9080||",
            host: "reviews:9080",
            peer_san: "spiffe://cluster.local/ns/shop/sa/productpage",
            local_san: "spiffe://cluster.local/ns/default/sa/reviews",
            http: Some(false),
            status: 200,
            grpc_status: None,
            flags: "-",
        });
        assert_eq!(v.len(), LABELS.len());
        assert_eq!(get(&v, "reporter"), Some("destination"));
        assert_eq!(get(&v, "source_workload"), Some("unknown"));
        assert_eq!(get(&v, "source_workload_namespace"), Some("shop"));
        assert_eq!(
            get(&v, "source_principal"),
            Some("spiffe://cluster.local/ns/shop/sa/productpage")
        );
        assert_eq!(get(&v, "destination_workload"), Some("reviews-v1"));
        assert_eq!(get(&v, "destination_service"), Some("reviews:9080"));
        assert_eq!(get(&v, "destination_cluster"), Some("Kubernetes"));
        assert_eq!(get(&v, "response_code"), Some("200"));
        assert_eq!(get(&v, "grpc_response_status"), Some(""));
        assert_eq!(get(&v, "connection_security_policy"), Some("mutual_tls"));
    }

    #[test]
    fn outbound_tcp_labels() {
        let s = stats(Reporter::Source);
        let v = s.label_values(&StreamFacts {
            cluster: "PassthroughCluster",
            http: None,
            flags: "UF",
            ..Default::default()
        });
        assert_eq!(get(&v, "reporter"), Some("source"));
        assert_eq!(get(&v, "source_workload"), Some("reviews-v1"));
        assert_eq!(get(&v, "source_principal"), Some("unknown"));
        assert_eq!(get(&v, "destination_service"), Some("unknown"));
        assert_eq!(
            get(&v, "destination_service_name"),
            Some("PassthroughCluster")
        );
        assert_eq!(get(&v, "request_protocol"), Some("tcp"));
        assert_eq!(get(&v, "response_code"), None);
        assert_eq!(get(&v, "connection_security_policy"), Some("unknown"));
    }

    #[test]
    fn spiffe_namespaces() {
        assert_eq!(spiffe_namespace("spiffe://td/ns/a/sa/b"), Some("a"));
        assert_eq!(spiffe_namespace("spiffe://td/ns/"), None);
        assert_eq!(spiffe_namespace("https://x/ns/a"), None);
    }
}
