//! The CORS filter through the real binary, configured natively: preflights answered
//! for allowed origins (and forwarded, or refused, for others), the response headers of
//! actual requests (origin, credentials, exposed headers), per-route policies, routes
//! without one, and the `origin_valid` / `origin_invalid` counters, over HTTP/1 and
//! HTTP/2 clients.

mod common;
mod h2client;

use std::net::SocketAddr;

use common::*;

fn config(up: SocketAddr) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    http_filters:
      - {{ name: cors, cors: {{}} }}
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /api }}
            cluster: backend
            per_filter_config:
              cors:
                cors:
                  allow_origin_string_match: [{{ exact: 'https://app.test' }}, {{ suffix: '.corp.test' }}]
                  allow_methods: 'GET, PUT'
                  allow_headers: 'x-token'
                  expose_headers: 'x-total'
                  max_age: '300'
                  allow_credentials: true
          - match: {{ prefix: /strict }}
            cluster: backend
            per_filter_config:
              cors:
                cors:
                  allow_origin_string_match: [{{ exact: 'https://app.test' }}]
                  forward_not_matching_preflights: false
          - match: {{ prefix: / }}
            cluster: backend
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        up.port()
    )
}

fn h1(proxy: &Proxy, method: &str, path: &str, extra: &str) -> Response {
    exchange(
        proxy.listen,
        &format!("{method} {path} HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n{extra}\r\n"),
    )
}

/// The `access-control-*` headers of a response, sorted.
fn cors_headers(headers: &[(String, String)]) -> Vec<String> {
    let mut v: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-"))
        .map(|(n, v)| format!("{}: {v}", n.to_ascii_lowercase()))
        .collect();
    v.sort();
    v
}

fn counter(proxy: &Proxy, name: &str) -> u64 {
    proxy.stats()["counters"][format!("http.main.cors.{name}")]
        .as_u64()
        .unwrap_or(0)
}

const PREFLIGHT: &str = "access-control-request-method: PUT\r\n";

#[test]
fn preflights_and_actual_requests_over_http1() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    // An allowed origin's preflight is answered here; the upstream never sees it.
    let r = h1(
        &proxy,
        "OPTIONS",
        "/api/items",
        &format!("origin: https://x.corp.test\r\n{PREFLIGHT}"),
    );
    assert_eq!((r.status, r.body_str().as_str()), (200, ""));
    assert_eq!(
        cors_headers(&r.headers),
        [
            "access-control-allow-credentials: true",
            "access-control-allow-headers: x-token",
            "access-control-allow-methods: GET, PUT",
            "access-control-allow-origin: https://x.corp.test",
            "access-control-expose-headers: x-total",
            "access-control-max-age: 300",
        ]
    );
    assert_eq!(up.requests().len(), 0);
    // Another origin's preflight goes to the upstream, with nothing added.
    let r = h1(
        &proxy,
        "OPTIONS",
        "/api/items",
        &format!("origin: https://evil.test\r\n{PREFLIGHT}"),
    );
    assert_eq!(r.status, 200);
    assert!(cors_headers(&r.headers).is_empty());
    assert_eq!(up.requests().len(), 1);
    // ...unless the route's policy refuses to forward it: answered, no origin.
    let r = h1(
        &proxy,
        "OPTIONS",
        "/strict",
        &format!("origin: https://evil.test\r\n{PREFLIGHT}"),
    );
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(up.requests().len(), 1);
    // Actual requests: the origin echoed, credentials and exposed headers added.
    let r = h1(&proxy, "GET", "/api/items", "origin: https://app.test\r\n");
    assert_eq!(
        cors_headers(&r.headers),
        [
            "access-control-allow-credentials: true",
            "access-control-allow-origin: https://app.test",
            "access-control-expose-headers: x-total",
        ]
    );
    let r = h1(&proxy, "GET", "/api/items", "origin: https://evil.test\r\n");
    assert!(cors_headers(&r.headers).is_empty());
    // No policy on the route: nothing, not even counted.
    let r = h1(&proxy, "GET", "/other", "origin: https://app.test\r\n");
    assert!(cors_headers(&r.headers).is_empty());
    assert_eq!(counter(&proxy, "origin_valid"), 2);
    assert_eq!(counter(&proxy, "origin_invalid"), 3);
}

#[test]
fn preflights_and_actual_requests_over_http2() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let listen = proxy.listen;
    let replies = h2client::run(move || async move {
        let mut c = h2client::connect(listen).await;
        let mut out = Vec::new();
        let pre = h2client::request("OPTIONS", "http://svc/api/x")
            .header("origin", "https://app.test")
            .header("access-control-request-method", "PUT");
        out.push(h2client::send(&mut c, pre.body(()).unwrap(), b"").await);
        let get = h2client::request("GET", "http://svc/api/x").header("origin", "https://app.test");
        out.push(h2client::send(&mut c, get.body(()).unwrap(), b"").await);
        out
    });
    let headers = |r: &h2client::Reply| -> Vec<(String, String)> {
        r.headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect()
    };
    assert_eq!(replies[0].status, 200);
    assert_eq!(cors_headers(&headers(&replies[0])).len(), 6);
    assert_eq!(
        replies[1].header("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(
        replies[1].header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(up.requests().len(), 1, "only the GET went upstream");
}
