//! Istio's standard metrics on `/stats/prometheus`: an Envoy bootstrap as Istio writes
//! it (node metadata, `istio.stats` HTTP and network filters, listeners with a
//! `traffic_direction`) and the native `istio_stats` block. The series and their labels
//! are checked here, and the whole page is parsed with prometheus-client's text parser
//! (Python; `tests/run` installs it into `loadtest/.venv`, or set
//! `OUTRIGGER_TEST_PYTHON` to a Python that has it).
//!
//! Envoy 1.40 has no `istio.stats` filter (it is built into Istio's Envoy), so there is
//! no parity run here; the labels follow istio/proxy's istio_stats.cc.

mod common;
mod pki;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use pki::{curl_mtls, path as p, Ca, Leaf, LeafSpec};

const T: Duration = Duration::from_secs(10);
const CLIENT_ID: &str = "spiffe://mesh.test/ns/shop/sa/productpage";
const PROXY_ID: &str = "spiffe://mesh.test/ns/default/sa/reviews";

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A small reader of Prometheus text for the checks (label values here hold no
/// escapes); the full parse is prometheus-client's, below.
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        for pair in labels.split("\",").filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap();
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        out.push((name.to_string(), map, value.parse().unwrap()));
    }
    out
}

fn find<'a>(all: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    all.iter()
        .filter(|(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn bootstrap(server: &Leaf, ca: &Path, upstream: u16, plugin: &str) -> String {
    format!(
        r#"node:
  id: sidecar~10.0.0.7~reviews-v1-abc.default~default.svc.cluster.local
  cluster: reviews.default
  metadata:
    NAME: reviews-v1-abc
    NAMESPACE: default
    WORKLOAD_NAME: reviews-v1
    CLUSTER_ID: Kubernetes
    MESH_ID: cluster.local
    LABELS:
      app: reviews
      version: v1
      service.istio.io/canonical-name: reviews
      service.istio.io/canonical-revision: v1
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: virtualInbound
    traffic_direction: INBOUND
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates: [{{ certificate_chain: {{ filename: "{cert}" }}, private_key: {{ filename: "{key}" }} }}]
            validation_context:
              trusted_ca: {{ filename: "{ca}" }}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound_0.0.0.0_9080
          route_config:
            virtual_hosts:
            - name: inbound|http|9080
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: "inbound|9080||" }}
          http_filters:
          - name: istio.stats
            typed_config:
              "@type": type.googleapis.com/stats.PluginConfig
{plugin}          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  - name: virtualOutbound
    traffic_direction: OUTBOUND
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT2@ }} }}
    filter_chains:
    - filters:
      - name: istio.stats
        typed_config:
          "@type": type.googleapis.com/stats.PluginConfig
          tcp_reporting_duration: 5s
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: PassthroughCluster
          cluster: PassthroughCluster
  clusters:
  - name: "inbound|9080||"
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: "inbound|9080||"
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
  - name: PassthroughCluster
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: PassthroughCluster
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
"#,
        cert = p(&server.cert),
        key = p(&server.key),
        ca = p(ca),
    )
}

struct Pki {
    _dir: TempDir,
    ca: PathBuf,
    server: Leaf,
    client: Leaf,
}

fn pki() -> Pki {
    let dir = TempDir::new("istio-metrics");
    let ca = Ca::new("mesh CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(
        dir.path(),
        "server",
        LeafSpec {
            dns: &["proxy.test"],
            uris: &[PROXY_ID],
            client: false,
            expired: false,
        },
    );
    let client = ca.leaf(dir.path(), "client", pki::client(CLIENT_ID));
    Pki {
        _dir: dir,
        ca: ca_pem,
        server,
        client,
    }
}

/// One HTTP/1.1 request through a TCP-proxied connection to the echo upstream.
fn tcp_round_trip(addr: std::net::SocketAddr) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET /tcp HTTP/1.1\r\nhost: up\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
}

#[test]
fn istio_bootstrap_reports_the_standard_metrics_with_the_peer_identity() {
    let k = pki();
    let up = Upstream::echo();
    let proxy = Proxy::start(&bootstrap(&k.server, &k.ca, up.addr.port(), ""));
    let port = proxy.listen.port();
    for h2 in [false, true] {
        let flag = if h2 { "--http2" } else { "--http1.1" };
        let out = curl_mtls(port, &k.ca, Some(&k.client), &[flag]);
        assert!(out.status.success(), "{out:?}");
    }
    tcp_round_trip(proxy.listen2);

    // The TCP connection is reported when it closes, which the proxy sees a moment
    // after the client.
    let text = wait_until(T, || {
        let t = proxy.prometheus();
        t.contains("istio_tcp_connections_closed_total")
            .then_some(t)
    })
    .expect("the TCP connection is reported");
    let all = samples(&text);

    let host = format!("proxy.test:{port}");
    let inbound = [
        ("reporter", "destination"),
        ("source_workload", "unknown"),
        ("source_canonical_service", "unknown"),
        ("source_canonical_revision", "latest"),
        ("source_workload_namespace", "shop"),
        ("source_principal", CLIENT_ID),
        ("source_app", "unknown"),
        ("source_version", "unknown"),
        ("source_cluster", "unknown"),
        ("destination_workload", "reviews-v1"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", PROXY_ID),
        ("destination_app", "reviews"),
        ("destination_version", "v1"),
        ("destination_service", &host),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v1"),
        ("destination_service_name", &host),
        ("destination_service_namespace", "default"),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("grpc_response_status", ""),
        ("response_flags", "-"),
        ("connection_security_policy", "mutual_tls"),
    ];
    let total = find(&all, "istio_requests_total", &inbound);
    assert_eq!(total.len(), 1, "one series for both requests:\n{text}");
    assert_eq!(total[0].2, 2.0, "{text}");
    // Exactly Istio's labels, no more.
    assert_eq!(total[0].1.len(), inbound.len(), "{:?}", total[0].1);

    for h in [
        "istio_request_duration_milliseconds",
        "istio_request_bytes",
        "istio_response_bytes",
    ] {
        let count = find(&all, &format!("{h}_count"), &inbound);
        assert_eq!(count.len(), 1, "{h}:\n{text}");
        assert_eq!(count[0].2, 2.0, "{h}");
        let inf: Vec<_> = find(&all, &format!("{h}_bucket"), &inbound)
            .into_iter()
            .filter(|s| s.1.get("le").map(String::as_str) == Some("+Inf"))
            .collect();
        assert_eq!(inf.len(), 1, "{h}");
        assert_eq!(inf[0].2, 2.0, "{h}");
        // Istio's default buckets: 0.5 .. 3600000, then +Inf.
        let les: Vec<_> = find(&all, &format!("{h}_bucket"), &inbound)
            .into_iter()
            .map(|s| s.1["le"].clone())
            .collect();
        assert_eq!(les.first().map(String::as_str), Some("0.5"), "{h}");
        assert_eq!(les.len(), 20, "{h}: {les:?}");
        assert!(les.contains(&"3600000".to_string()), "{h}: {les:?}");
    }
    let bytes = find(&all, "istio_response_bytes_sum", &inbound);
    assert!(bytes[0].2 > 0.0);

    // The outbound TCP chain: the source's view of its own workload.
    let tcp = [
        ("reporter", "source"),
        ("source_workload", "reviews-v1"),
        ("source_workload_namespace", "default"),
        ("source_app", "reviews"),
        ("source_version", "v1"),
        ("source_cluster", "Kubernetes"),
        ("destination_service", "unknown"),
        ("destination_service_name", "PassthroughCluster"),
        ("request_protocol", "tcp"),
        ("response_flags", "-"),
        ("connection_security_policy", "unknown"),
    ];
    for name in [
        "istio_tcp_connections_opened_total",
        "istio_tcp_connections_closed_total",
    ] {
        let s = find(&all, name, &tcp);
        assert_eq!(s.len(), 1, "{name}:\n{text}");
        assert_eq!(s[0].2, 1.0, "{name}");
        assert!(!s[0].1.contains_key("response_code"), "{:?}", s[0].1);
    }
    let sent = find(&all, "istio_tcp_sent_bytes_total", &tcp);
    let received = find(&all, "istio_tcp_received_bytes_total", &tcp);
    assert!(sent[0].2 > 0.0 && received[0].2 > 0.0, "{text}");

    prometheus_client_parses(&text);
    dashboard_queries_only_emitted_families(&text);
}

/// Every `istio_*` metric the shipped Grafana dashboard queries is on the page.
fn dashboard_queries_only_emitted_families(text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/outrigger-mesh.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let emitted: std::collections::BTreeSet<String> =
        samples(text).into_iter().map(|(n, _, _)| n).collect();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("istio_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                emitted.contains(&name),
                "the dashboard queries `{name}`: {e}"
            );
            rest = &rest[i + name.len()..];
        }
    }
}

/// An outbound sidecar (reporter `source`) whose HTTP and TCP listeners reach a
/// mutual-TLS upstream (Istio's ISTIO_MUTUAL origination): the principals come from
/// the upstream connection, as istio_stats.cc reads them on the client side.
fn outbound_bootstrap(client: &Leaf, ca: &Path, upstream: u16) -> String {
    let hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    let tls = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
    format!(
        r#"node:
  id: sidecar~10.0.0.9~productpage-v1-xyz.shop~shop.svc.cluster.local
  metadata:
    NAMESPACE: shop
    WORKLOAD_NAME: productpage-v1
    CLUSTER_ID: Kubernetes
    LABELS: {{ app: productpage, version: v1 }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: outbound_http
    traffic_direction: OUTBOUND
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {hcm}
          stat_prefix: outbound_0.0.0.0_9080
          route_config:
            virtual_hosts:
            - name: reviews
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: "outbound|9080||reviews.default.svc.cluster.local" }}
          http_filters:
          - name: istio.stats
            typed_config:
              "@type": type.googleapis.com/stats.PluginConfig
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  - name: outbound_tcp
    traffic_direction: OUTBOUND
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT2@ }} }}
    filter_chains:
    - filters:
      - name: istio.stats
        typed_config:
          "@type": type.googleapis.com/stats.PluginConfig
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: outbound|9080||reviews.default.svc.cluster.local
          cluster: "outbound|9080||reviews.default.svc.cluster.local"
  clusters:
  - name: "outbound|9080||reviews.default.svc.cluster.local"
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: "outbound|9080||reviews.default.svc.cluster.local"
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": {tls}
        sni: outbound_.9080_._.reviews.default.svc.cluster.local
        common_tls_context:
          tls_certificates: [{{ certificate_chain: {{ filename: "{cert}" }}, private_key: {{ filename: "{key}" }} }}]
          validation_context: {{ trusted_ca: {{ filename: "{ca}" }} }}
"#,
        cert = p(&client.cert),
        key = p(&client.key),
        ca = p(ca),
    )
}

#[test]
fn outbound_principals_come_from_the_upstream_certificates() {
    let k = pki();
    let (up, _) = pki::upstream::tls_upstream(&k.server, &k.ca);
    let proxy = Proxy::start(&outbound_bootstrap(&k.client, &k.ca, up.port()));
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..2 {
        c.send("GET / HTTP/1.1\r\nhost: reviews.default.svc.cluster.local:9080\r\n\r\n");
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        // The upstream saw the cluster's client certificate.
        assert!(
            String::from_utf8_lossy(&r.body).contains(&format!("client={CLIENT_ID}")),
            "{r:?}"
        );
    }
    drop(c);
    // The TCP listener: one request through the tunnel, then the connection closes.
    let mut t = Conn::connect(proxy.listen2);
    t.send("GET /tcp HTTP/1.1\r\nhost: up\r\n\r\n");
    assert_eq!(t.read_response().unwrap().status, 200);
    drop(t);
    let text = wait_until(T, || {
        let t = proxy.prometheus();
        t.contains("istio_tcp_connections_closed_total")
            .then_some(t)
    })
    .expect("the TCP connection is reported");
    let all = samples(&text);
    let peer = [
        ("reporter", "source"),
        ("source_workload", "productpage-v1"),
        ("source_workload_namespace", "shop"),
        ("source_principal", CLIENT_ID),
        ("destination_workload_namespace", "default"),
        ("destination_principal", PROXY_ID),
        ("destination_service_namespace", "default"),
        ("connection_security_policy", "unknown"),
    ];
    let http = find(&all, "istio_requests_total", &peer);
    assert_eq!(http.len(), 1, "{text}");
    assert_eq!(http[0].2, 2.0, "{text}");
    assert_eq!(
        http[0].1["destination_service"],
        "reviews.default.svc.cluster.local:9080"
    );
    let tcp = find(&all, "istio_tcp_connections_closed_total", &peer);
    assert_eq!(tcp.len(), 1, "{text}");
    assert_eq!(tcp[0].1["request_protocol"], "tcp");
    prometheus_client_parses(&text);
}

#[test]
fn without_a_client_certificate_the_peer_is_unknown_and_the_policy_none() {
    let k = pki();
    let up = Upstream::echo();
    // disable_host_header_fallback: the service falls back to the canonical name.
    let plugin = "              disable_host_header_fallback: true\n";
    let text = bootstrap(&k.server, &k.ca, up.addr.port(), plugin).replace(
        "require_client_certificate: true",
        "require_client_certificate: false",
    );
    let proxy = Proxy::start(&text);
    let out = curl_mtls(proxy.listen.port(), &k.ca, None, &["--http1.1"]);
    assert!(out.status.success(), "{out:?}");
    let text = proxy.prometheus();
    let all = samples(&text);
    let s = find(
        &all,
        "istio_requests_total",
        &[
            ("reporter", "destination"),
            ("source_principal", "unknown"),
            ("source_workload_namespace", "unknown"),
            ("destination_principal", PROXY_ID),
            ("destination_service", "reviews"),
            ("destination_service_name", "reviews"),
            ("connection_security_policy", "none"),
        ],
    );
    assert_eq!(s.len(), 1, "{text}");
    assert_eq!(s[0].2, 1.0);
}

#[test]
fn native_istio_stats_on_a_plain_listener() {
    let up = Upstream::echo();
    let extra = "    istio_stats:
      reporter: source
      workload: { name: productpage-v1, namespace: shop, app: productpage, version: v1, cluster_id: east }
";
    let proxy = Proxy::start(&proxy_config_with(up.addr, "5s", extra));
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..3 {
        c.send("GET / HTTP/1.1\r\nhost: reviews.default.svc:9080\r\n\r\n");
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    let text = proxy.prometheus();
    let all = samples(&text);
    let s = find(
        &all,
        "istio_requests_total",
        &[
            ("reporter", "source"),
            ("source_workload", "productpage-v1"),
            ("source_workload_namespace", "shop"),
            ("source_principal", "unknown"),
            ("source_app", "productpage"),
            ("source_cluster", "east"),
            ("destination_workload", "unknown"),
            ("destination_service", "reviews.default.svc:9080"),
            ("destination_canonical_revision", "latest"),
            ("response_code", "200"),
            ("connection_security_policy", "unknown"),
        ],
    );
    assert_eq!(s.len(), 1, "{text}");
    assert_eq!(s[0].2, 3.0);
    prometheus_client_parses(&text);
}

#[test]
fn config_checks() {
    let dir = TempDir::new("istio-config");
    let k = pki();
    // Istio's Telemetry API overrides (`metrics`) are not supported: refused by path.
    let plugin = "              metrics: [{ name: requests_total, drop: true }]\n";
    let text = bootstrap(&k.server, &k.ca, 9, plugin)
        .replace("@ADMIN_PORT@", &free_port().to_string())
        .replace("@PORT2@", &free_port().to_string())
        .replace("@PORT@", &free_port().to_string());
    let path = dir.join("bootstrap.yaml");
    write_atomic(&path, &text);
    let o = run_cli(&["validate", "-c", &p(&path)], T);
    let out = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains(
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.metrics: not supported by Outrigger"
        ),
        "{out}"
    );
    // The native block: an unknown reporter, an unknown field.
    for (extra, want) in [
        (
            "    istio_stats: { reporter: client }\n",
            "listeners[0].istio_stats.reporter",
        ),
        (
            "    istio_stats: { workload: { pod: x } }\n",
            "unknown field `pod`",
        ),
    ] {
        let text = proxy_config_with("127.0.0.1:9".parse().unwrap(), "5s", extra)
            .replace("@ADMIN_PORT@", &free_port().to_string())
            .replace("@PORT@", &free_port().to_string());
        let path = dir.join("native.yaml");
        write_atomic(&path, &text);
        let o = run_cli(&["validate", "-c", &p(&path)], T);
        let out =
            String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
        assert!(!o.status.success(), "{extra}: {out}");
        assert!(out.contains(want), "{extra}: {out}");
    }
}

/// A Python with prometheus-client: `OUTRIGGER_TEST_PYTHON`, or `loadtest/.venv`'s.
fn python_or_skip() -> Option<PathBuf> {
    let py = std::env::var_os("OUTRIGGER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/.venv/bin/python"));
    let ok = Command::new(&py)
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED prometheus-client parse: no prometheus_client for {} (tests/run installs it into loadtest/.venv, or set OUTRIGGER_TEST_PYTHON)",
            py.display()
        );
        return None;
    }
    Some(py)
}

/// prometheus-client's parser reads the whole page, and finds every Istio family with
/// its type and Istio's labels.
fn prometheus_client_parses(text: &str) {
    let Some(py) = python_or_skip() else { return };
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
for name, kind in [("istio_requests", "counter"),
                   ("istio_request_duration_milliseconds", "histogram"),
                   ("istio_request_bytes", "histogram"),
                   ("istio_response_bytes", "histogram")]:
    f = fams[name]
    assert f.type == kind, (name, f.type)
    for s in f.samples:
        for label in ("reporter", "source_principal", "destination_service", "response_code",
                      "grpc_response_status", "connection_security_policy"):
            assert label in s.labels, (name, s)
for name in ("istio_tcp_connections_opened", "istio_tcp_connections_closed",
             "istio_tcp_sent_bytes", "istio_tcp_received_bytes"):
    if name in fams:
        assert fams[name].type == "counter", name
print("families", len(fams))
"#;
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus-client: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
