//! Part of `tests/ext_authz_parity.rs` (its own file for size): the counters both
//! proxies keep for the HTTP filter (its own and the route cluster's), chained ext_authz
//! filters that wait for the body, a route's body settings, and the network filter.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::authz::Authz;
use super::common::envoy::*;
use super::common::*;
use super::{EXT_AUTHZ, PER_ROUTE};

/// `GET /stats?filter=<re>` (Envoy's text form, which Outrigger's admin serves too) as
/// a map.
fn stats(admin: SocketAddr, filter: &str) -> BTreeMap<String, u64> {
    let r = exchange(
        admin,
        &format!("GET /stats?filter={filter} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200, "/stats: {}", r.body_str());
    r.body_str()
        .lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(": ")?;
            Some((n.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The ext_authz counters that Envoy made (counted) or that are above zero, and the
/// backend cluster's `upstream_rq_4xx` (a denial charges it).
fn counted(admin: SocketAddr) -> BTreeMap<String, u64> {
    stats(admin, "ext_authz|^cluster\\.backend\\.upstream_rq_4xx$")
        .into_iter()
        .filter(|(n, v)| *v > 0 || n.ends_with("upstream_rq_4xx"))
        .collect()
}

fn authz_cluster(name: &str, addr: SocketAddr) -> String {
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        addr.port()
    )
}

fn backend(up: SocketAddr) -> String {
    format!(
        r#"  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        up.port()
    )
}

/// One filter of the chain: `name`, its cluster, the rest of its fields (flow style
/// entries, each on its own line at the filter's indentation).
fn filter(name: &str, cluster: &str, extra: &str) -> String {
    format!(
        r#"          - name: {name}
            typed_config:
              "@type": {EXT_AUTHZ}
              grpc_service: {{ envoy_grpc: {{ cluster_name: {cluster} }}, timeout: 2s }}
{extra}"#
    )
}

fn chain_bootstrap(up: SocketAddr, svc: SocketAddr, filters: &str, routes: &str) -> String {
    format!(
        r#"{head}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}              - match: {{ prefix: /direct }}
                direct_response: {{ status: 200 }}
              - match: {{ prefix: / }}
                route: {{ cluster: backend }}
          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config: {{ "@type": {ROUTER_TYPE} }}
  clusters:
{}{}{}"#,
        backend(up),
        authz_cluster("authz", svc),
        authz_cluster("dead", refused_addr()),
        head = hcm_head("", "main"),
    )
}

fn status(addr: SocketAddr, path: &str, extra: &str) -> u16 {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{extra}Connection: close\r\n\r\n"),
    )
    .status
}

/// Allowed, denied (with and without a response), a failing service, a service that is
/// down with `failure_mode_allow` (the first filter, its own `stat_prefix`), a route
/// that disables the second filter, a direct response: the statuses, the filters'
/// counters and the route cluster's alike.
#[test]
fn ext_authz_counters_behave_alike() {
    let what = "ext_authz_counters_behave_alike";
    let Some(bin) = envoy_or_skip(what) else {
        return;
    };
    let (Some(svc_e), Some(svc_o)) = (Authz::start_or_skip(what), Authz::start_or_skip(what))
    else {
        return;
    };
    let filters = filter(
        "down",
        "dead",
        "              stat_prefix: fma\n              failure_mode_allow: true\n",
    ) + &filter("main", "authz", "");
    let routes = format!(
        r#"              - match: {{ prefix: /public }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  main: {{ "@type": {PER_ROUTE}, disabled: true }}
"#
    );
    let (up_e, up_o) = (Upstream::echo(), Upstream::echo());
    let envoy = Envoy::start(
        &bin,
        &chain_bootstrap(up_e.addr, svc_e.grpc, &filters, &routes),
    );
    let proxy = Proxy::start(&chain_bootstrap(up_o.addr, svc_o.grpc, &filters, &routes));
    let cases = [
        ("/app", ""),
        ("/app", "x-authz: deny\r\n"),
        ("/app", "x-authz: deny-bare\r\n"),
        ("/app", "x-authz: fail\r\n"),
        ("/public", "x-authz: deny\r\n"),
        ("/direct", "x-authz: deny\r\n"),
        ("/direct", ""),
    ];
    for (path, extra) in cases {
        assert_eq!(
            status(proxy.listen, path, extra),
            status(envoy.listen, path, extra),
            "{path} {extra:?}: Outrigger (left) and Envoy (right) differ"
        );
    }
    let (o, e) = (counted(proxy.admin), counted(envoy.admin));
    assert_eq!(o, e, "counters: Outrigger (left) and Envoy (right) differ");
    // What the comparison covers, so that it cannot pass on two empty maps.
    assert_eq!(e.get("cluster.backend.ext_authz.denied"), Some(&2), "{e:?}");
    assert_eq!(
        e.get("cluster.backend.ext_authz.fma.failure_mode_allowed"),
        Some(&5)
    );
    // The Prometheus form labels them by cluster and filter prefix.
    let prom = proxy.prometheus();
    for line in [
        "outrigger_cluster_ext_authz_denied_total{cluster=\"backend\",ext_authz_prefix=\"\"} 2",
        "outrigger_cluster_ext_authz_error_total{cluster=\"backend\",ext_authz_prefix=\"fma\"} 5",
    ] {
        assert!(prom.lines().any(|l| l == line), "{line} not in:\n{prom}");
    }
}

/// A check as it matters here: the path, `size`, the body and whether it was cut.
fn check_view(c: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "path": c["path"], "size": c["size"], "body": c["body"],
        "partial": c["headers"]["x-envoy-auth-partial-body"],
    })
}

/// Three ext_authz filters: the first and third want the body (8 bytes, partial; 100
/// bytes), the second none: they check one after the other, each with the body as far
/// as it wants it and the `size` of the body read. A route gives the first filter a
/// body of its own (4 bytes, partial); another disables the third's buffering (it then
/// sends what the first read, and no `413`).
#[test]
fn chained_filters_and_route_body_settings_behave_alike() {
    let what = "chained_filters_and_route_body_settings_behave_alike";
    let Some(bin) = envoy_or_skip(what) else {
        return;
    };
    let (Some(svc_e), Some(svc_o)) = (Authz::start_or_skip(what), Authz::start_or_skip(what))
    else {
        return;
    };
    let filters = filter(
        "first",
        "authz",
        "              with_request_body: { max_request_bytes: 8, allow_partial_message: true }\n",
    ) + &filter("second", "authz", "")
        + &filter(
            "third",
            "authz",
            "              with_request_body: { max_request_bytes: 100 }\n",
        );
    let routes = format!(
        r#"              - match: {{ prefix: /rwb }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  first: {{ "@type": {PER_ROUTE}, check_settings: {{ with_request_body: {{ max_request_bytes: 4, allow_partial_message: true }} }} }}
              - match: {{ prefix: /nobuf }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  third: {{ "@type": {PER_ROUTE}, check_settings: {{ disable_request_body_buffering: true }} }}
"#
    );
    let (up_e, up_o) = (Upstream::echo(), Upstream::echo());
    let envoy = Envoy::start(
        &bin,
        &chain_bootstrap(up_e.addr, svc_e.grpc, &filters, &routes),
    );
    let proxy = Proxy::start(&chain_bootstrap(up_o.addr, svc_o.grpc, &filters, &routes));
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: app.test\r\ncontent-length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let cases = [
        post("/a", "hello world 12345"),
        post("/rwb", "hello world 12345"),
        post("/nobuf", "hello world 12345"),
        post("/nobuf", &"z".repeat(150)),
        post("/big", &"z".repeat(150)),
        post("/deny", "deny-me-please"),
        "GET /get HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n".to_string(),
        "POST /chunked HTTP/1.1\r\nHost: app.test\r\ntransfer-encoding: chunked\r\nConnection: close\r\n\r\n11\r\nhello world 12345\r\n0\r\n\r\n".to_string(),
    ];
    for raw in &cases {
        let (ne, no) = (svc_e.checks().len(), svc_o.checks().len());
        let (se, so) = (exchange(envoy.listen, raw), exchange(proxy.listen, raw));
        assert_eq!(so.status, se.status, "{raw:?}: status");
        let seen = |svc: &Authz, from: usize| -> Vec<serde_json::Value> {
            svc.checks().iter().skip(from).map(check_view).collect()
        };
        let (ce, co) = (seen(&svc_e, ne), seen(&svc_o, no));
        assert!(!ce.is_empty(), "{raw:?}: Envoy made no check");
        assert_eq!(co, ce, "{raw:?}: checks (Outrigger left, Envoy right)");
    }
    let (o, e) = (counted(proxy.admin), counted(envoy.admin));
    assert_eq!(o, e, "counters: Outrigger (left) and Envoy (right) differ");
}

/// The network filter on a TCP proxy chain: an allowed connection, a denied one, and on
/// the second listener a down service behind two filters (the first with
/// `failure_mode_allow`, its own prefix, the second without): what the client gets and
/// every `ext_authz.<prefix>.*` stat alike.
#[test]
fn network_filter_behaves_alike() {
    let what = "network_filter_behaves_alike";
    let Some(bin) = envoy_or_skip(what) else {
        return;
    };
    let (Some(svc_e), Some(svc_o)) = (Authz::start_or_skip(what), Authz::start_or_skip(what))
    else {
        return;
    };
    let net = |prefix: &str, cluster: &str, fma: bool| {
        format!(
            r#"      - name: envoy.filters.network.ext_authz
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz
          stat_prefix: {prefix}
          failure_mode_allow: {fma}
          grpc_service: {{ envoy_grpc: {{ cluster_name: {cluster} }}, timeout: 2s }}
"#
        )
    };
    let listener = |name: &str, port: &str, filters: &str| {
        format!(
            r#"  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
{filters}      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: backend
"#
        )
    };
    let bootstrap = |up: SocketAddr, svc: SocketAddr| {
        format!(
            r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
{}{}  clusters:
{}{}{}"#,
            listener("tcp", "@PORT@", &net("net", "authz", false)),
            listener(
                "down",
                "@PORT2@",
                &(net("fma", "dead", true) + &net("closed", "dead", false))
            ),
            backend(up),
            authz_cluster("authz", svc),
            authz_cluster("dead", refused_addr()),
        )
    };
    let (up_e, up_o) = (Upstream::echo(), Upstream::echo());
    let envoy = Envoy::start(&bin, &bootstrap(up_e.addr, svc_e.grpc));
    let proxy = Proxy::start(&bootstrap(up_o.addr, svc_o.grpc));
    // Some(status) when the request went through, None when the connection closed.
    let through = |addr: SocketAddr| {
        let mut c = Conn::connect(addr);
        c.send("GET /t HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        match c.read_response() {
            Ok(r) => Some(r.status),
            Err(_) => {
                assert!(c.closed_within(Duration::from_secs(5)));
                None
            }
        }
    };
    let (o, e) = (through(proxy.listen), through(envoy.listen));
    assert_eq!((o, e), (Some(200), Some(200)), "allowed (Outrigger, Envoy)");
    svc_e.deny_connections();
    svc_o.deny_connections();
    let (o, e) = (through(proxy.listen), through(envoy.listen));
    assert_eq!((o, e), (None, None), "denied (Outrigger, Envoy)");
    let (o, e) = (through(proxy.listen2), through(envoy.listen2));
    assert_eq!(
        o, e,
        "service down: Outrigger (left) and Envoy (right) differ"
    );
    let (o, e) = (
        stats(proxy.admin, "^ext_authz\\."),
        stats(envoy.admin, "^ext_authz\\."),
    );
    assert_eq!(
        o, e,
        "ext_authz.*: Outrigger (left) and Envoy (right) differ"
    );
    assert_eq!(e.get("ext_authz.net.denied"), Some(&1), "{e:?}");
    assert_eq!(
        e.get("ext_authz.fma.failure_mode_allowed"),
        Some(&1),
        "{e:?}"
    );
}
