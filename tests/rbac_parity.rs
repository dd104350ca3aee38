//! RBAC parity with Envoy 1.40: one bootstrap (an HTTP RBAC filter with ALLOW rules,
//! DENY shadow rules and per-route overrides; a network RBAC filter in front of a TCP
//! proxy) runs under Envoy and under Outrigger, the same requests go to both over
//! HTTP/1 and HTTP/2, and the statuses, bodies, closed connections and RBAC counters are
//! compared case by case. Skips, saying why, when Envoy is not installed.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::*;
use common::*;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const PER_ROUTE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";
const NET_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";

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
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /open }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  authz:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - match: {{ prefix: /strict }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  authz:
                    "@type": {PER_ROUTE}
                    rbac: {{ rules: {{ action: ALLOW }} }}
              - match: {{ prefix: /unguarded }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  authz:
                    "@type": {PER_ROUTE}
              - match: {{ prefix: / }}
                route: {{ cluster: backend }}
          http_filters:
          - name: authz
            typed_config:
              "@type": {RBAC}
              rules:
                action: ALLOW
                policies:
                  admin:
                    permissions:
                    - and_rules:
                        rules:
                        - url_path: {{ path: {{ prefix: /admin }} }}
                        - header: {{ name: ":method", string_match: {{ exact: GET }} }}
                    principals:
                    - header: {{ name: x-user, string_match: {{ suffix: "@corp", ignore_case: true }} }}
                  api:
                    permissions:
                    - url_path: {{ path: {{ safe_regex: {{ regex: "/api/v[0-9]+/items" }} }} }}
                    principals: [{{ any: true }}]
                  exact:
                    permissions: [{{ url_path: {{ path: {{ exact: /exact }} }} }}]
                    principals: [{{ direct_remote_ip: {{ address_prefix: 127.0.0.1, prefix_len: 32 }} }}]
                  port:
                    permissions:
                    - and_rules:
                        rules:
                        - url_path: {{ path: {{ prefix: /port }} }}
                        - destination_port: @PORT@
                    principals: [{{ source_ip: {{ address_prefix: 127.0.0.0, prefix_len: 8 }} }}]
                  range:
                    permissions:
                    - header: {{ name: x-level, range_match: {{ start: 1, end: 5 }} }}
                    principals: [{{ any: true }}]
                  xff:
                    permissions: [{{ url_path: {{ path: {{ prefix: /xff }} }} }}]
                    principals: [{{ remote_ip: {{ address_prefix: 203.0.113.0, prefix_len: 24 }} }}]
                  not-delete:
                    permissions:
                    - and_rules:
                        rules:
                        - url_path: {{ path: {{ prefix: /things }} }}
                        - not_rule: {{ header: {{ name: ":method", exact_match: DELETE }} }}
                    principals: [{{ not_id: {{ header: {{ name: x-banned, present_match: true }} }} }}]
              shadow_rules:
                action: DENY
                policies:
                  no-things:
                    permissions: [{{ url_path: {{ path: {{ prefix: /things }} }} }}]
                    principals: [{{ any: true }}]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT2@ }} }}
    filter_chains:
    - filters:
      - name: guard
        typed_config:
          "@type": {NET_RBAC}
          stat_prefix: guard
          rules:
            action: DENY
            policies:
              loopback:
                permissions: [{{ any: true }}]
                principals: [{{ source_ip: {{ address_prefix: 127.0.0.0, prefix_len: 8 }} }}]
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: backend
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        upstream.port()
    )
}

/// (method, path, extra header lines)
const CASES: &[(&str, &str, &str)] = &[
    ("GET", "/admin/panel", "x-user: Bob@CORP\r\n"),
    ("GET", "/admin/panel", "x-user: bob@elsewhere\r\n"),
    ("POST", "/admin/panel", "x-user: bob@corp\r\n"),
    ("GET", "/api/v2/items", ""),
    ("GET", "/api/vx/items", ""),
    ("GET", "/exact?q=1", ""),
    ("GET", "/exact/", ""),
    ("GET", "/port/1", ""),
    ("GET", "/nothing", "x-level: 3\r\n"),
    ("GET", "/nothing", "x-level: 5\r\n"),
    ("GET", "/nothing", "x-level: many\r\n"),
    ("GET", "/xff", "x-forwarded-for: 203.0.113.9\r\n"),
    (
        "GET",
        "/xff",
        "x-forwarded-for: 203.0.113.9, 198.51.100.1\r\n",
    ),
    ("GET", "/xff", ""),
    ("GET", "/things/1", ""),
    ("DELETE", "/things/1", ""),
    ("GET", "/things/1", "x-banned: yes\r\n"),
    ("GET", "/open/x", ""),
    ("GET", "/strict/x", ""),
    ("GET", "/unguarded/x", ""),
    ("GET", "/nothing", ""),
];

/// What a client sees for each case over HTTP/1, then over HTTP/2 (status and body
/// when the proxy answered itself), then whether a connection to the network-RBAC
/// listener is closed without an answer.
fn observe(listen: SocketAddr, tcp: SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    let mut c = Conn::connect(listen);
    for (method, path, extra) in CASES {
        c.send(format!(
            "{method} {path} HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\n{extra}\r\n"
        ));
        let r = c.read_response().unwrap();
        let body = if r.status == 200 {
            String::new()
        } else {
            r.body_str()
        };
        out.push(format!(
            "h1 {method} {path} [{}] -> {} {body}",
            extra.trim(),
            r.status
        ));
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
            let body = if r.status == 200 {
                String::new()
            } else {
                r.body_str()
            };
            out.push(format!(
                "h2 {method} {path} [{}] -> {} {body}",
                extra.trim(),
                r.status
            ));
        }
        out
    });
    out.extend(h2);
    let mut t = Conn::connect(tcp);
    let _ = t.try_send("GET / HTTP/1.1\r\nHost: svc\r\n\r\n");
    out.push(format!(
        "tcp closed: {}",
        t.closed_within(Duration::from_secs(5))
    ));
    out
}

/// Envoy's `/stats` lines with `rbac` in the name, as `name: value`.
fn envoy_counters(admin: SocketAddr) -> Vec<String> {
    let mut c = Conn::connect(admin);
    c.send("GET /stats?filter=rbac HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response().unwrap();
    let mut v: Vec<String> = r
        .body_str()
        .lines()
        .filter(|l| l.contains("rbac"))
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
        .filter(|(k, _)| k.contains("rbac"))
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    v.sort();
    v
}

#[test]
fn rbac_decides_and_counts_as_envoy_does() {
    let Some(bin) = envoy_or_skip("rbac_decides_and_counts_as_envoy_does") else {
        return;
    };
    let up = Upstream::echo();
    let text = bootstrap(up.addr);
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = observe(envoy.listen, envoy.listen2);
    let envoy_stats = envoy_counters(envoy.admin);
    drop(envoy);
    let proxy = Proxy::start(&text);
    let from_ours = observe(proxy.listen, proxy.listen2);
    let ours = our_counters(&proxy);
    let mut diffs = Vec::new();
    for (o, e) in from_ours.iter().zip(&from_envoy) {
        if o != e {
            diffs.push(format!("outrigger: {o}\n    envoy: {e}"));
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    assert_eq!(from_ours.len(), from_envoy.len());
    assert_eq!(ours, envoy_stats, "RBAC counters");
}
