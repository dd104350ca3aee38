//! Fault injection and CORS parity with Envoy 1.40: one bootstrap (a fault filter with
//! header-driven faults and per-route `HTTPFault`s, a CORS filter with `CorsPolicy`s at
//! the virtual host and on routes) runs under Envoy and under Outrigger; the same
//! requests go to both over HTTP/1 and HTTP/2, and the statuses, local bodies, the
//! `access-control-*` and `grpc-*` headers, the access log's response flags and the
//! `fault.` / `cors.` counters (with `response_rl_injected` and the `active_faults`
//! gauge) are compared case by case. Skips, saying why, when Envoy
//! is not installed.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::*;
use common::*;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
const CORS: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
const POLICY: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";

fn bootstrap(upstream: SocketAddr) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: web
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: web
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "@DIR@/access.log"
              log_format:
                text_format_source:
                  inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:METHOD)% %REQ(:PATH)%\n"
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              typed_per_filter_config:
                cors:
                  "@type": {POLICY}
                  allow_origin_string_match: [{{ exact: "https://a.test" }}]
                  allow_methods: "GET, POST"
                  allow_headers: "x-a, x-b"
                  expose_headers: "x-total"
                  max_age: "600"
                  allow_credentials: true
              routes:
              - match: {{ prefix: /abort }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ http_status: 503, percentage: {{ numerator: 100 }} }}
              - match: {{ prefix: /never }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ http_status: 503, percentage: {{ numerator: 0 }} }}
              - match: {{ prefix: /grpc-abort }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ grpc_status: 5, percentage: {{ numerator: 1000000, denominator: MILLION }} }}
              - match: {{ prefix: /zero-pct }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ header_abort: {{}}, percentage: {{ numerator: 0 }} }}
              - match: {{ prefix: /other-cluster }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ http_status: 500, percentage: {{ numerator: 100 }} }}
                    upstream_cluster: elsewhere
              - match: {{ prefix: /this-cluster }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ http_status: 500, percentage: {{ numerator: 100 }} }}
                    upstream_cluster: backend
              - match: {{ prefix: /w-backend }}
                route: {{ weighted_clusters: {{ clusters: [{{ name: spare, weight: 0 }}, {{ name: backend, weight: 1 }}] }} }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ http_status: 500, percentage: {{ numerator: 100 }} }}
                    upstream_cluster: backend
              - match: {{ prefix: /w-spare }}
                route: {{ weighted_clusters: {{ clusters: [{{ name: spare, weight: 1 }}, {{ name: backend, weight: 0 }}] }} }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ http_status: 500, percentage: {{ numerator: 100 }} }}
                    upstream_cluster: backend
              - match: {{ prefix: /by-header }}
                route: {{ cluster_header: x-cluster }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ http_status: 500, percentage: {{ numerator: 100 }} }}
                    upstream_cluster: backend
              - match: {{ prefix: /any-header }}
                route: {{ cluster_header: x-cluster }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ http_status: 500, percentage: {{ numerator: 100 }} }}
                    upstream_cluster: nosuch
              - match: {{ prefix: /gated }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    abort: {{ http_status: 418, percentage: {{ numerator: 100 }} }}
                    downstream_nodes: [web-1]
                    headers: [{{ name: x-fault, exact_match: "yes" }}]
              - match: {{ prefix: /delay-abort }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    delay: {{ fixed_delay: 0.01s, percentage: {{ numerator: 100 }} }}
                    abort: {{ http_status: 502, percentage: {{ numerator: 100 }} }}
              - match: {{ prefix: /delay }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    delay: {{ fixed_delay: 0.01s, percentage: {{ numerator: 100 }} }}
              - match: {{ prefix: /throttled }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": {FAULT}
                    response_rate_limit: {{ fixed_limit: {{ limit_kbps: 64 }}, percentage: {{ numerator: 100 }} }}
              - match: {{ prefix: /no-faults }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  faults:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - match: {{ prefix: /cors-route }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  cors:
                    "@type": {POLICY}
                    allow_origin_string_match: [{{ suffix: ".b.test" }}]
                    allow_methods: "*"
                    allow_headers: "*"
                    allow_credentials: false
                    allow_private_network_access: true
              - match: {{ prefix: /cors-closed }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  cors:
                    "@type": {POLICY}
                    forward_not_matching_preflights: false
              - match: {{ prefix: /cors-shadow }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  cors:
                    "@type": {POLICY}
                    filter_enabled: {{ default_value: {{ numerator: 0 }} }}
                    shadow_enabled: {{ default_value: {{ numerator: 100 }} }}
              - match: {{ prefix: /direct }}
                direct_response: {{ status: 200, body: {{ inline_string: "direct" }} }}
              - match: {{ prefix: / }}
                route: {{ cluster: backend }}
          http_filters:
          - name: faults
            typed_config:
              "@type": {FAULT}
              delay: {{ header_delay: {{}}, percentage: {{ numerator: 100 }} }}
              abort: {{ header_abort: {{}}, percentage: {{ numerator: 100 }} }}
              response_rate_limit: {{ header_limit: {{}}, percentage: {{ numerator: 100 }} }}
          - name: cors
            typed_config:
              "@type": {CORS}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
  - name: spare
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: spare
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#,
        port = upstream.port()
    )
}

const GRPC: &str = "content-type: application/grpc\r\n";
const PREFLIGHT_A: &str = "origin: https://a.test\r\naccess-control-request-method: PUT\r\n";

/// (method, path, extra header lines)
const CASES: &[(&str, &str, &str)] = &[
    ("GET", "/abort", ""),
    ("GET", "/abort", GRPC),
    ("GET", "/never", ""),
    ("GET", "/grpc-abort", ""),
    ("GET", "/grpc-abort", GRPC),
    ("GET", "/x", "x-envoy-fault-abort-request: 429\r\n"),
    ("GET", "/x", "x-envoy-fault-abort-request: 600\r\n"),
    ("GET", "/x", "x-envoy-fault-abort-grpc-request: 14\r\n"),
    (
        "GET",
        "/x",
        "content-type: application/grpc\r\nx-envoy-fault-abort-grpc-request: 14\r\n",
    ),
    (
        "GET",
        "/x",
        "x-envoy-fault-abort-request: 503\r\nx-envoy-fault-abort-request-percentage: 0\r\n",
    ),
    (
        "GET",
        "/zero-pct",
        "x-envoy-fault-abort-request: 503\r\nx-envoy-fault-abort-request-percentage: 100\r\n",
    ),
    ("GET", "/x", "x-envoy-fault-delay-request: 10\r\n"),
    ("GET", "/x", "x-envoy-fault-delay-request: 0\r\n"),
    ("GET", "/other-cluster", ""),
    ("GET", "/this-cluster", ""),
    // `upstream_cluster` against the route entry's cluster: the weighted pick, the
    // `cluster_header` value (missing: none; a cluster that does not exist still names).
    ("GET", "/w-backend", ""),
    ("GET", "/w-spare", ""),
    ("GET", "/by-header", "x-cluster: backend\r\n"),
    ("GET", "/by-header", "x-cluster: spare\r\n"),
    ("GET", "/by-header", ""),
    ("GET", "/any-header", "x-cluster: nosuch\r\n"),
    ("GET", "/gated", "x-fault: yes\r\n"),
    (
        "GET",
        "/gated",
        "x-fault: yes\r\nx-envoy-downstream-service-node: web-1\r\n",
    ),
    (
        "GET",
        "/gated",
        "x-fault: no\r\nx-envoy-downstream-service-node: web-1\r\n",
    ),
    ("GET", "/delay", ""),
    ("GET", "/delay-abort", ""),
    ("GET", "/no-faults", "x-envoy-fault-abort-request: 500\r\n"),
    // Response rate limits: the route's fixed one, the filter's from the header (0 and
    // a percentage of 0 are none).
    ("GET", "/throttled", ""),
    ("GET", "/x", "x-envoy-fault-throughput-response: 64\r\n"),
    ("GET", "/x", "x-envoy-fault-throughput-response: 0\r\n"),
    (
        "GET",
        "/x",
        "x-envoy-fault-throughput-response: 64\r\nx-envoy-fault-throughput-response-percentage: 0\r\n",
    ),
    (
        "GET",
        "/x",
        "x-envoy-fault-throughput-response: 64\r\nx-envoy-fault-abort-request: 503\r\n",
    ),
    // CORS: the virtual host's policy.
    ("OPTIONS", "/x", PREFLIGHT_A),
    (
        "OPTIONS",
        "/x",
        "origin: https://evil.test\r\naccess-control-request-method: PUT\r\n",
    ),
    ("OPTIONS", "/x", "origin: https://a.test\r\n"),
    ("GET", "/x", "origin: https://a.test\r\n"),
    ("GET", "/x", "origin: https://evil.test\r\n"),
    ("GET", "/x", ""),
    // The route's policy over the virtual host's, field by field.
    (
        "OPTIONS",
        "/cors-route",
        "origin: https://x.b.test\r\naccess-control-request-method: DELETE\r\n\
         access-control-request-headers: x-c\r\naccess-control-request-private-network: true\r\n",
    ),
    ("OPTIONS", "/cors-route", PREFLIGHT_A),
    ("GET", "/cors-route", "origin: https://x.b.test\r\n"),
    (
        "OPTIONS",
        "/cors-closed",
        "origin: https://evil.test\r\naccess-control-request-method: PUT\r\n",
    ),
    ("OPTIONS", "/cors-shadow", PREFLIGHT_A),
    ("GET", "/cors-shadow", "origin: https://a.test\r\n"),
    ("GET", "/direct", "origin: https://a.test\r\n"),
    // A fault before CORS: the abort carries no CORS headers.
    (
        "GET",
        "/x",
        "origin: https://a.test\r\nx-envoy-fault-abort-request: 503\r\n",
    ),
];

/// The facts compared for one answer: status, the body when the proxy answered itself,
/// and the CORS and gRPC headers.
fn describe(status: u16, headers: &[(String, String)], body: &str) -> String {
    let local = !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("x-envoy-upstream-service-time"));
    let mut hs: Vec<String> = headers
        .iter()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase();
            n.starts_with("access-control-")
                || n.starts_with("grpc-")
                || (local && n == "content-type")
        })
        .map(|(n, v)| format!("{}={v}", n.to_ascii_lowercase()))
        .collect();
    hs.sort();
    let body = if local { body } else { "(upstream)" };
    format!("{status} {body:?} {}", hs.join(" "))
}

fn observe(listen: SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    let mut c = Conn::connect(listen);
    for (method, path, extra) in CASES {
        c.send(format!(
            "{method} {path} HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\n{extra}\r\n"
        ));
        let r = c.read_response().unwrap();
        let d = describe(r.status, &r.headers, &r.body_str());
        out.push(format!("h1 {method} {path} [{}] -> {d}", extra.trim()));
    }
    let h2 = h2client::run(move || async move {
        let mut client = h2client::connect(listen).await;
        let mut out = Vec::new();
        for (method, path, extra) in CASES {
            let mut b = h2client::request(method, &format!("http://svc{path}"));
            for line in extra.split("\r\n").filter(|l| !l.is_empty()) {
                if let Some((n, v)) = line.split_once(": ") {
                    b = b.header(n, v);
                }
            }
            let r = h2client::send(&mut client, b.body(()).unwrap(), b"").await;
            let mut headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            if let Some(t) = &r.trailers {
                headers.extend(
                    t.iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string())),
                );
            }
            let d = describe(r.status, &headers, &r.body_str());
            out.push(format!("h2 {method} {path} [{}] -> {d}", extra.trim()));
        }
        out
    });
    out.extend(h2);
    out
}

/// The access log once it has a line per request (two per case), sorted.
fn access_log(path: &std::path::Path) -> Vec<String> {
    let n = CASES.len() * 2;
    let lines = wait_until(Duration::from_secs(10), || {
        let lines: Vec<String> = read_lossy(path).lines().map(String::from).collect();
        (lines.len() >= n).then_some(lines)
    });
    let mut lines = lines.unwrap_or_else(|| panic!("{} lacks {n} lines", path.display()));
    lines.sort();
    lines
}

fn envoy_counters(admin: SocketAddr) -> Vec<String> {
    let mut c = Conn::connect(admin);
    c.send("GET /stats HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response().unwrap();
    let mut v: Vec<String> = r
        .body_str()
        .lines()
        .filter(|l| l.contains(".fault.") || l.contains(".cors."))
        .map(String::from)
        .collect();
    v.sort();
    v
}

fn our_counters(proxy: &Proxy) -> Vec<String> {
    let stats = proxy.stats();
    let mut v: Vec<String> = stats["counters"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains(".fault.") || k.contains(".cors."))
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    v.sort();
    v
}

#[test]
fn faults_and_cors_answer_and_count_as_envoy_does() {
    let Some(bin) = envoy_or_skip("faults_and_cors_answer_and_count_as_envoy_does") else {
        return;
    };
    let up = Upstream::echo();
    let text = bootstrap(up.addr);
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = observe(envoy.listen);
    let envoy_log = access_log(&envoy.dir.join("access.log"));
    let envoy_stats = envoy_counters(envoy.admin);
    drop(envoy);
    let proxy = Proxy::start(&text);
    let from_ours = observe(proxy.listen);
    let our_log = access_log(&proxy.dir.join("access.log"));
    let ours = our_counters(&proxy);
    let mut diffs = Vec::new();
    for (o, e) in from_ours.iter().zip(&from_envoy) {
        if o != e {
            diffs.push(format!("outrigger: {o}\n    envoy: {e}"));
        }
    }
    for (o, e) in our_log.iter().zip(&envoy_log) {
        if o != e {
            diffs.push(format!("log outrigger: {o}\n        envoy: {e}"));
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    assert_eq!(from_ours.len(), from_envoy.len());
    assert_eq!(ours, envoy_stats, "fault and CORS counters");
}
