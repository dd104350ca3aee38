//! Istio's resource kinds as the control plane reads them (the `networking.istio.io`
//! API, `v1`, `v1beta1` and `v1alpha3` alike): the fields this control plane acts on.
//! A field it does not know is refused by name, so a resource is never half-applied;
//! docs/control-plane.md lists what is supported.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

pub use super::lb_kinds::{ConsistentHash, LoadBalancer};

/// `metadata` of any resource.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Kubernetes keeps these; they do not change what is served.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// `workloadSelector` (ServiceEntry, Sidecar).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl WorkloadSelector {
    /// Every selector label is on the workload.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

pub use super::selector::MatchLabels;

/// A service port (`ServiceEntry.ports`, `Sidecar` listener ports).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Port {
    pub number: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub target_port: Option<u16>,
}

/// How a port's traffic is carried, from its `protocol` (Istio's names; a missing
/// protocol is TCP, as Istio treats a port it cannot sniff without a name prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    /// HTTP/2 to the upstream: `HTTP2`, `GRPC`, `GRPC-WEB`.
    Http2,
    Tcp,
}

impl Port {
    pub fn protocol(&self) -> Result<Protocol, String> {
        let p = self
            .protocol
            .as_deref()
            .unwrap_or("TCP")
            .to_ascii_uppercase();
        match p.as_str() {
            "HTTP" => Ok(Protocol::Http),
            "HTTP2" | "GRPC" | "GRPC-WEB" => Ok(Protocol::Http2),
            "TCP" | "TLS" | "HTTPS" | "MONGO" | "MYSQL" | "REDIS" => Ok(Protocol::Tcp),
            other => Err(format!(
                "protocol `{other}` is not one of HTTP, HTTP2, GRPC, GRPC-WEB, HTTPS, TLS, TCP, MONGO, MYSQL, REDIS"
            )),
        }
    }
}

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceEntry {
    pub hosts: Vec<String>,
    /// Virtual IPs: extra names the route tables answer to.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// `WorkloadEntry.spec`, also a `ServiceEntry` endpoint (written back to etcd for a
/// registered workload).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEntry {
    #[serde(default)]
    pub address: String,
    /// Port name to the workload's port for it.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub locality: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub service_account: Option<String>,
}

/// `Sidecar.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sidecar {
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub ingress: Vec<SidecarIngress>,
    #[serde(default)]
    pub egress: Vec<SidecarEgress>,
    #[serde(default)]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// `Sidecar.spec.outboundTrafficPolicy`: what a captured call to a destination no
/// service describes gets.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutboundTrafficPolicy {
    /// `ALLOW_ANY` (the default: passed through to where it was going) or
    /// `REGISTRY_ONLY` (refused).
    #[serde(default)]
    pub mode: Option<String>,
}

impl Sidecar {
    /// `outboundTrafficPolicy.mode: REGISTRY_ONLY`.
    pub fn registry_only(&self) -> bool {
        self.outbound_traffic_policy
            .as_ref()
            .and_then(|p| p.mode.as_deref())
            == Some("REGISTRY_ONLY")
    }
}

/// `Sidecar.spec.ingress[]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SidecarIngress {
    pub port: Port,
    #[serde(default)]
    pub bind: Option<String>,
    #[serde(default)]
    pub capture_mode: Option<String>,
    /// `127.0.0.1:PORT` (or `0.0.0.0:PORT`, read as loopback): the application.
    pub default_endpoint: String,
}

/// `Sidecar.spec.egress[]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SidecarEgress {
    #[serde(default)]
    pub port: Option<Port>,
    #[serde(default)]
    pub bind: Option<String>,
    #[serde(default)]
    pub capture_mode: Option<String>,
    pub hosts: Vec<String>,
}

/// `VirtualService.spec` (HTTP routes).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualService {
    pub hosts: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    #[serde(default)]
    pub export_to: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatch>,
    #[serde(default)]
    pub route: Vec<RouteDestination>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<Retries>,
    #[serde(default)]
    pub headers: Option<Headers>,
    #[serde(default)]
    pub fault: Option<Fault>,
    #[serde(default)]
    pub mirror: Option<Destination>,
    #[serde(default)]
    pub mirror_percentage: Option<Percent>,
    #[serde(default)]
    pub redirect: Option<Redirect>,
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
    #[serde(default)]
    pub cors_policy: Option<CorsPolicy>,
}

/// `fault`: a delay, an abort, or both, each for a percentage of requests.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default)]
    pub delay: Option<Delay>,
    #[serde(default)]
    pub abort: Option<Abort>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Delay {
    pub fixed_delay: String,
    #[serde(default)]
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Abort {
    #[serde(default)]
    pub http_status: Option<u32>,
    #[serde(default)]
    pub grpc_status: Option<String>,
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// Istio's `Percent`: a double from 0 to 100.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Redirect {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub redirect_code: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsPolicy {
    #[serde(default)]
    pub allow_origins: Vec<StringMatch>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age: Option<String>,
    #[serde(default)]
    pub allow_credentials: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<StringMatch>,
    #[serde(default)]
    pub method: Option<StringMatch>,
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub ignore_uri_case: bool,
}

/// Istio's `StringMatch`: exactly one of the three.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteDestination {
    pub destination: Destination,
    #[serde(default)]
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub host: String,
    #[serde(default)]
    pub subset: Option<String>,
    #[serde(default)]
    pub port: Option<PortSelector>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortSelector {
    pub number: u16,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retries {
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub per_try_timeout: Option<String>,
    #[serde(default)]
    pub retry_on: Option<String>,
}

/// `headers: {request: {...}, response: {...}}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    #[serde(default)]
    pub request: Option<HeaderOps>,
    #[serde(default)]
    pub response: Option<HeaderOps>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `DestinationRule.spec`: subsets by labels and the load-balancing policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationRule {
    pub host: String,
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
    #[serde(default)]
    pub subsets: Vec<Subset>,
    #[serde(default)]
    pub export_to: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficPolicy {
    #[serde(default)]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default)]
    pub connection_pool: Option<ConnectionPool>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default)]
    pub tls: Option<super::mtls_kinds::ClientTls>,
}

/// `connectionPool`: Envoy's circuit breakers and connection limits.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPool {
    #[serde(default)]
    pub tcp: Option<TcpPool>,
    #[serde(default)]
    pub http: Option<HttpPool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpPool {
    #[serde(default)]
    pub max_connections: Option<u32>,
    #[serde(default)]
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpPool {
    #[serde(default)]
    pub http1_max_pending_requests: Option<u32>,
    #[serde(default)]
    pub http2_max_requests: Option<u32>,
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub idle_timeout: Option<String>,
}

/// `outlierDetection`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierDetection {
    #[serde(default)]
    pub consecutive5xx_errors: Option<u32>,
    #[serde(default)]
    pub consecutive_gateway_errors: Option<u32>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub base_ejection_time: Option<String>,
    #[serde(default)]
    pub max_ejection_percent: Option<u32>,
    #[serde(default)]
    pub min_health_percent: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subset {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `defaultEndpoint`: `IP:PORT` (Istio's `0.0.0.0` means the workload's own address:
/// loopback here, the application beside the proxy).
pub fn default_endpoint(s: &str) -> Result<SocketAddr, String> {
    if s.starts_with("unix://") {
        return Err("unix sockets are not served yet".into());
    }
    let a: SocketAddr = s.parse().map_err(|_| format!("`{s}` is not IP:PORT"))?;
    Ok(if a.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    } else {
        a
    })
}

/// Istio's `simple` load balancer as Envoy's `lb_policy`.
pub fn lb_policy(simple: &str) -> Result<&'static str, String> {
    match simple {
        "ROUND_ROBIN" => Ok("ROUND_ROBIN"),
        "LEAST_REQUEST" | "LEAST_CONN" | "UNSPECIFIED" => Ok("LEAST_REQUEST"),
        "RANDOM" => Ok("RANDOM"),
        other => Err(format!(
            "`{other}` is not ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN or RANDOM"
        )),
    }
}

/// `AuthorizationPolicy.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationPolicy {
    #[serde(default)]
    pub selector: Option<MatchLabels>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub from: Vec<From>,
    #[serde(default)]
    pub to: Vec<To>,
    #[serde(default)]
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct From {
    pub source: Source,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub not_principals: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub not_namespaces: Vec<String>,
    #[serde(default)]
    pub ip_blocks: Vec<String>,
    #[serde(default)]
    pub not_ip_blocks: Vec<String>,
    #[serde(default)]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default)]
    pub not_remote_ip_blocks: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct To {
    pub operation: Operation,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operation {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub not_hosts: Vec<String>,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub not_ports: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub not_methods: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub not_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Condition {
    pub key: String,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub not_values: Vec<String>,
}

/// One resource read from a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    ServiceEntry(ServiceEntry),
    WorkloadEntry(WorkloadEntry),
    Sidecar(Sidecar),
    VirtualService(VirtualService),
    /// Boxed: the largest kind (its traffic policies), the others stay small.
    DestinationRule(Box<DestinationRule>),
    AuthorizationPolicy(AuthorizationPolicy),
    PeerAuthentication(super::mtls_kinds::PeerAuthentication),
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub meta: Metadata,
    pub spec: Spec,
    /// `FILE` (document `N` when the file holds several), for errors.
    pub origin: String,
}

impl Resource {
    pub fn kind(&self) -> &'static str {
        match self.spec {
            Spec::ServiceEntry(_) => "ServiceEntry",
            Spec::WorkloadEntry(_) => "WorkloadEntry",
            Spec::Sidecar(_) => "Sidecar",
            Spec::VirtualService(_) => "VirtualService",
            Spec::DestinationRule(_) => "DestinationRule",
            Spec::AuthorizationPolicy(_) => "AuthorizationPolicy",
            Spec::PeerAuthentication(_) => "PeerAuthentication",
        }
    }

    /// `KIND NAMESPACE/NAME in ORIGIN`, the prefix of every error about it.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} {}/{}",
            self.origin,
            self.kind(),
            self.meta.namespace,
            self.meta.name
        )
    }
}

/// The API groups read; anything else in the directory is refused, not skipped.
const GROUPS: [&str; 2] = ["networking.istio.io/", "security.istio.io/"];

/// Parses one YAML document (`origin` names it in errors).
pub fn parse_document(doc: serde_yaml::Value, origin: &str) -> Result<Option<Resource>, String> {
    if doc.is_null() {
        return Ok(None);
    }
    let map = doc
        .as_mapping()
        .ok_or_else(|| format!("{origin}: a resource is a mapping"))?;
    let text = |k: &str| map.get(k).and_then(|v| v.as_str());
    let api = text("apiVersion").ok_or_else(|| format!("{origin}: apiVersion: missing"))?;
    let kind = text("kind").ok_or_else(|| format!("{origin}: kind: missing"))?;
    if !GROUPS.iter().any(|g| api.starts_with(g)) {
        return Err(format!(
            "{origin}: apiVersion: `{api}` is not networking.istio.io or security.istio.io (v1, v1beta1, v1alpha3)"
        ));
    }
    for k in map.keys() {
        let k = k.as_str().unwrap_or("");
        if !["apiVersion", "kind", "metadata", "spec", "status"].contains(&k) {
            return Err(format!("{origin}: {k}: unknown top-level field"));
        }
    }
    let meta: Metadata = field(map.get("metadata"), origin, "metadata")?;
    if meta.name.is_empty() {
        return Err(format!("{origin}: metadata.name: missing"));
    }
    let at = format!("{origin}: {kind} {}/{}", meta.namespace, meta.name);
    let spec = map.get("spec");
    let spec = match kind {
        "ServiceEntry" => Spec::ServiceEntry(field(spec, &at, "spec")?),
        "WorkloadEntry" => Spec::WorkloadEntry(field(spec, &at, "spec")?),
        "Sidecar" => Spec::Sidecar(field(spec, &at, "spec")?),
        "VirtualService" => Spec::VirtualService(field(spec, &at, "spec")?),
        "DestinationRule" => Spec::DestinationRule(Box::new(field(spec, &at, "spec")?)),
        "AuthorizationPolicy" => Spec::AuthorizationPolicy(field(spec, &at, "spec")?),
        "PeerAuthentication" => Spec::PeerAuthentication(field(spec, &at, "spec")?),
        other => {
            return Err(format!(
                "{at}: kind: `{other}` is not served (ServiceEntry, WorkloadEntry, Sidecar, VirtualService, DestinationRule, AuthorizationPolicy, PeerAuthentication)"
            ))
        }
    };
    let origin = origin.to_string();
    Ok(Some(Resource { meta, spec, origin }))
}

/// Deserializes `v` with the failing field's path in the error (`spec.ports[0].number`).
fn field<T: for<'de> Deserialize<'de>>(
    v: Option<&serde_yaml::Value>,
    origin: &str,
    at: &str,
) -> Result<T, String> {
    let v = v
        .cloned()
        .ok_or_else(|| format!("{origin}: {at}: missing"))?;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            at.to_string()
        } else {
            format!("{at}.{path}")
        };
        format!("{origin}: {path}: {}", e.into_inner())
    })
}

/// Every resource in a YAML text of one or more documents.
pub fn parse_text(text: &str, file: &str) -> Result<Vec<Resource>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let docs: Vec<_> = serde_yaml::Deserializer::from_str(text).collect();
    let many = docs.len() > 1;
    for (i, d) in docs.into_iter().enumerate() {
        let origin = if many {
            format!("{file} (document {})", i + 1)
        } else {
            file.to_string()
        };
        let value = match serde_yaml::Value::deserialize(d) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{origin}: {e}"));
                continue;
            }
        };
        match parse_document(value, &origin) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_entry_is_read_and_a_bad_field_is_named() {
        let ok = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: echo, namespace: demo}\nspec:\n  hosts: [echo.demo]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1, ports: {http: 9000}}]\n";
        let r = parse_text(ok, "a.yaml").unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].describe(), "a.yaml: ServiceEntry demo/echo");
        let Spec::ServiceEntry(se) = &r[0].spec else {
            panic!("kind")
        };
        assert_eq!(se.endpoints[0].ports["http"], 9000);

        let bad = ok.replace("number: 80", "number: eighty");
        let e = parse_text(&bad, "a.yaml").unwrap_err();
        assert!(
            e[0].starts_with("a.yaml: ServiceEntry demo/echo: spec.ports[0].number: "),
            "{e:?}"
        );
        let unknown = ok.replace("resolution: STATIC", "resolutoin: STATIC");
        let e = parse_text(&unknown, "a.yaml").unwrap_err();
        assert!(
            e[0].contains("spec.resolutoin: unknown field `resolutoin`"),
            "{e:?}"
        );
        let two = format!(
            "{ok}---\n{}",
            ok.replace("kind: ServiceEntry", "kind: Gateway")
        );
        let e = parse_text(&two, "b.yaml").unwrap_err();
        assert!(
            e[0].starts_with("b.yaml (document 2): Gateway demo/echo: kind:"),
            "{e:?}"
        );
    }
}
