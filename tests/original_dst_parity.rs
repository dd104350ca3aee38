//! HTTP routes to an ORIGINAL_DST cluster, beside Envoy 1.40: the same bootstrap (an
//! HTTP connection manager whose route goes to an ORIGINAL_DST cluster with
//! `original_dst_lb_config.use_http_header`, and a second listener whose cluster names
//! its own `http_header_name`) runs under Envoy and under Outrigger, and the same
//! requests (the header naming an upstream, missing, invalid, repeated, naming a port
//! nobody listens on) go to both over HTTP/1 and HTTP/2. On loopback no connection is
//! redirected, so without a usable header neither has a destination: `503 UH`. Skips,
//! saying why, when Envoy is not installed.

mod common;
mod h2client;

use std::net::SocketAddr;

use common::envoy::*;
use common::*;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

fn listener(name: &str, port: &str, cluster: &str) -> String {
    format!(
        r#"  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: {name}
          codec_type: AUTO
          route_config:
            name: {name}
            virtual_hosts:
            - name: allow_any
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: {cluster} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": {ROUTER} }}
"#
    )
}

fn bootstrap() -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
{}{}  clusters:
  - name: passthrough
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 1s
    original_dst_lb_config: {{ use_http_header: true }}
  - name: named
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 1s
    original_dst_lb_config: {{ use_http_header: true, http_header_name: x-dst }}
"#,
        listener("web", "@PORT@", "passthrough"),
        listener("named", "@PORT2@", "named"),
    )
}

/// `(listener 1 or 2, request headers)` for each case; `@UP@` is the upstream's
/// address, `@REFUSED@` one where nothing listens.
const CASES: &[(u8, &[(&str, &str)])] = &[
    (1, &[("x-envoy-original-dst-host", "@UP@")]),
    (1, &[]),
    (1, &[("x-envoy-original-dst-host", "nonsense")]),
    (1, &[("x-envoy-original-dst-host", "localhost:80")]),
    (1, &[("x-envoy-original-dst-host", "127.0.0.1")]),
    (1, &[("x-envoy-original-dst-host", "::1:80")]),
    (1, &[("x-envoy-original-dst-host", "@REFUSED@")]),
    (
        1,
        &[
            ("x-envoy-original-dst-host", "@UP@"),
            ("x-envoy-original-dst-host", "bad"),
        ],
    ),
    (
        1,
        &[
            ("x-envoy-original-dst-host", "bad"),
            ("x-envoy-original-dst-host", "@UP@"),
        ],
    ),
    (1, &[("x-dst", "@UP@")]),
    (2, &[("x-dst", "@UP@")]),
    (2, &[("X-Dst", "@UP@")]),
    (2, &[("x-envoy-original-dst-host", "@UP@")]),
    (2, &[]),
];

/// Status and the start of a local reply's body (a connect failure's reason text
/// ends with the OS's words, which may differ).
fn seen(status: u16, body: &str) -> String {
    if status == 200 {
        return "200".into();
    }
    let body: String = body.chars().take(60).collect();
    format!("{status} {body}")
}

fn observe(ports: [SocketAddr; 2], up: SocketAddr, refused: SocketAddr) -> Vec<String> {
    let value = |v: &str| {
        v.replace("@UP@", &up.to_string())
            .replace("@REFUSED@", &refused.to_string())
    };
    let mut out = Vec::new();
    for (i, (l, headers)) in CASES.iter().enumerate() {
        let mut c = Conn::connect(ports[usize::from(*l) - 1]);
        let extra: String = headers
            .iter()
            .map(|(n, v)| format!("{n}: {}\r\n", value(v)))
            .collect();
        c.send(format!("GET /p HTTP/1.1\r\nHost: svc\r\n{extra}\r\n"));
        let r = c.read_response().unwrap();
        out.push(format!("h1 case {i}: {}", seen(r.status, &r.body_str())));
    }
    let cases: Vec<(u8, Vec<(String, String)>)> = CASES
        .iter()
        .map(|(l, h)| {
            (
                *l,
                h.iter().map(|(n, v)| (n.to_string(), value(v))).collect(),
            )
        })
        .collect();
    let h2 = h2client::run(move || async move {
        let mut out = Vec::new();
        for (i, (l, headers)) in cases.iter().enumerate() {
            let mut client = h2client::connect(ports[usize::from(*l) - 1]).await;
            let mut b = h2client::request("GET", "http://svc/p");
            for (n, v) in headers {
                b = b.header(n.to_ascii_lowercase(), v);
            }
            let r = h2client::send(&mut client, b.body(()).unwrap(), b"").await;
            out.push(format!("h2 case {i}: {}", seen(r.status, &r.body_str())));
        }
        out
    });
    out.extend(h2);
    out
}

#[test]
fn http_routes_to_original_dst_clusters_pick_hosts_as_envoy_does() {
    let up = Upstream::echo();
    let refused = refused_addr();
    let text = bootstrap();
    let proxy = Proxy::start(&text);
    let ours = observe([proxy.listen, proxy.listen2], up.addr, refused);
    // Without Envoy, the expectations alone: the header's upstream answers, anything
    // else has no destination on loopback.
    let ok: Vec<usize> = vec![0, 7, 10, 11];
    for (i, line) in ours.iter().enumerate() {
        let case = i % CASES.len();
        if ok.contains(&case) {
            assert!(line.ends_with(": 200"), "{line}");
        } else if case == 6 {
            assert!(line.contains(": 503 upstream connect error"), "{line}");
        } else {
            assert!(line.ends_with(": 503 no healthy upstream"), "{line}");
        }
    }
    let Some(bin) = envoy_or_skip("http_routes_to_original_dst_clusters_pick_hosts_as_envoy_does")
    else {
        return;
    };
    drop(proxy);
    let envoy = Envoy::start(&bin, &text);
    let theirs = observe([envoy.listen, envoy.listen2], up.addr, refused);
    let diffs: Vec<String> = ours
        .iter()
        .zip(&theirs)
        .filter(|(o, e)| o != e)
        .map(|(o, e)| format!("outrigger: {o}\n    envoy: {e}"))
        .collect();
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    assert_eq!(ours.len(), theirs.len());
}
