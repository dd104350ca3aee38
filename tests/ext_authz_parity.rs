//! ext_authz parity with Envoy 1.40: one bootstrap (the gRPC ext_authz filter, a route
//! that disables it and one with context extensions, the service's HTTP/2 cluster) runs
//! under Envoy and under Outrigger, each against its own copy of the test's
//! authorization service (`tests/authz/authz.py`); the same requests go to both and the
//! statuses, the headers the client and the upstream see, the denial bodies, the check
//! requests' contents that matter and the counters are compared. Skips, saying why,
//! when Envoy or the service's Python packages are not installed.

mod common;

mod authz;

#[path = "authz/stats_parity.rs"]
mod stats_parity;

use std::net::SocketAddr;

use authz::Authz;
use common::envoy::*;
use common::*;

const EXT_AUTHZ: &str = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
const PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";

fn bootstrap(up: SocketAddr, authz: SocketAddr) -> String {
    format!(
        r#"{head}          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /public }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": {PER_ROUTE}
                    disabled: true
              - match: {{ prefix: /nobuf }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": {PER_ROUTE}
                    check_settings: {{ disable_request_body_buffering: true }}
              - match: {{ prefix: /ctx }}
                route: {{ cluster: backend }}
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": {PER_ROUTE}
                    check_settings: {{ context_extensions: {{ team: blue }} }}
              - match: {{ prefix: / }}
                route: {{ cluster: backend }}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": {EXT_AUTHZ}
              transport_api_version: V3
              grpc_service:
                envoy_grpc: {{ cluster_name: authz }}
                timeout: 2s
          - name: envoy.filters.http.router
            typed_config: {{ "@type": {ROUTER_TYPE} }}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
  - name: authz
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: authz
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        up.port(),
        authz.port(),
        head = hcm_head("", "main"),
    )
}

/// What one request showed: the client's status, chosen headers and body; the headers
/// the upstream saw (`None`: it saw no request).
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    client: Vec<(String, Option<String>)>,
    body: String,
    upstream: Option<Vec<(String, Vec<String>)>>,
}

const CLIENT: &[&str] = &["x-authz-client", "www-authenticate", "x-deny-reason"];
const UPSTREAM: &[&str] = &[
    "x-authz-added",
    "x-authz-appended",
    "x-remove-me",
    "x-envoy-auth-failure-mode-allowed",
];

fn run(addr: SocketAddr, up: &Upstream, path: &str, extra: &str) -> Seen {
    run_raw(
        addr,
        up,
        &format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{extra}Connection: close\r\n\r\n"),
    )
}

fn run_raw(addr: SocketAddr, up: &Upstream, raw: &str) -> Seen {
    let before = up.request_count();
    let r = exchange(addr, raw);
    let upstream = (up.request_count() > before).then(|| {
        let last = up.last_request();
        UPSTREAM
            .iter()
            .map(|n| {
                let v = last
                    .headers_named(n)
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                (n.to_string(), v)
            })
            .collect()
    });
    Seen {
        status: r.status,
        client: CLIENT
            .iter()
            .map(|n| (n.to_string(), r.header(n).map(str::to_string)))
            .collect(),
        // A denial's body (the echo of a proxied request differs by its request id).
        body: if upstream.is_none() {
            r.body_str()
        } else {
            String::new()
        },
        upstream,
    }
}

const CASES: &[(&str, &str, &str)] = &[
    (
        "allowed",
        "/app?q=1",
        "x-remove-me: 1\r\nx-authz-appended: orig\r\nx-authz-added: client\r\n",
    ),
    ("denied", "/app", "x-authz: deny\r\n"),
    (
        "denied without a response",
        "/app",
        "x-authz: deny-bare\r\n",
    ),
    ("service failed", "/app", "x-authz: fail\r\n"),
    ("disabled on the route", "/public", "x-authz: deny\r\n"),
    ("context extensions", "/ctx/x", ""),
];

/// The check request's fields both proxies must fill alike.
fn essentials(c: &serde_json::Value) -> serde_json::Value {
    let h = &c["headers"];
    serde_json::json!({
        "method": c["method"], "path": c["path"], "host": c["host"],
        "scheme": c["scheme"], "protocol": c["protocol"], "size": c["size"],
        "source_address": c["source_address"], "source_principal": c["source_principal"],
        "destination_address": c["destination_address"],
        "context_extensions": c["context_extensions"],
        ":authority": h[":authority"], ":method": h[":method"], ":path": h[":path"],
        "x-authz": h["x-authz"], "x-remove-me": h["x-remove-me"],
        "x-authz-appended": h["x-authz-appended"],
        // Every header name but the two Envoy's connection manager adds before its
        // filters run (Outrigger adds them on the upstream request only).
        "names": h.as_object().map(|m| m.keys()
            .filter(|k| !matches!(k.as_str(), "x-request-id" | "x-forwarded-proto"))
            .cloned().collect::<Vec<_>>()),
    })
}

fn envoy_counter(admin: SocketAddr, name: &str) -> Option<u64> {
    let r = exchange(
        admin,
        "GET /stats?filter=ext_authz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    r.body_str().lines().find_map(|l| {
        let (n, v) = l.split_once(": ")?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[test]
fn ext_authz_behaves_alike() {
    let Some(bin) = envoy_or_skip("ext_authz_behaves_alike") else {
        return;
    };
    let (Some(svc_e), Some(svc_o)) = (
        Authz::start_or_skip("ext_authz_behaves_alike"),
        Authz::start_or_skip("ext_authz_behaves_alike"),
    ) else {
        return;
    };
    let (up_e, up_o) = (Upstream::echo(), Upstream::echo());
    let envoy = Envoy::start(&bin, &bootstrap(up_e.addr, svc_e.grpc));
    let proxy = Proxy::start(&bootstrap(up_o.addr, svc_o.grpc));
    for (what, path, extra) in CASES {
        let (ne, no) = (svc_e.checks().len(), svc_o.checks().len());
        let e = run(envoy.listen, &up_e, path, extra);
        let o = run(proxy.listen, &up_o, path, extra);
        assert_eq!(o, e, "{what}: Outrigger (left) and Envoy (right) differ");
        let (ce, co) = (svc_e.checks(), svc_o.checks());
        assert_eq!(co.len() - no, ce.len() - ne, "{what}: checks made");
        if let (Some(ce), Some(co)) = (ce.last().filter(|_| ce.len() > ne), co.last()) {
            assert_eq!(
                essentials(co),
                essentials(ce),
                "{what}: check requests differ (Outrigger left):\n{co}\n{ce}"
            );
        }
    }
    for name in ["ok", "denied", "error"] {
        let full = format!("http.main.ext_authz.{name}");
        let ours = proxy.stats()["counters"][&full].as_u64();
        assert_eq!(ours, envoy_counter(envoy.admin, &full), "{full}");
    }
}

/// The same with the plain-HTTP service.
fn http_bootstrap(up: SocketAddr, authz: SocketAddr) -> String {
    let filter = format!(
        r#"              "@type": {EXT_AUTHZ}
              http_service:
                server_uri: {{ uri: "http://authz", cluster: authz, timeout: 2s }}
                path_prefix: /check
                authorization_request:
                  allowed_headers: {{ patterns: [{{ exact: x-authz }}] }}
                  headers_to_add: [{{ key: x-from-proxy, value: "yes" }}]
                authorization_response:
                  allowed_upstream_headers: {{ patterns: [{{ exact: x-authz-added }}] }}
                  allowed_upstream_headers_to_append: {{ patterns: [{{ exact: x-authz-appended }}] }}
                  allowed_client_headers_on_success: {{ patterns: [{{ exact: x-authz-client }}] }}
                  allowed_client_headers: {{ patterns: [{{ exact: x-deny-reason }}] }}
"#
    );
    let grpc = bootstrap(up, authz);
    let start = grpc
        .find(&format!("              \"@type\": {EXT_AUTHZ}\n"))
        .unwrap();
    let end = grpc[start..]
        .find("          - name: envoy.filters.http.router")
        .unwrap()
        + start;
    let mut text = grpc[..start].to_string() + &filter + &grpc[end..];
    // The HTTP service's cluster speaks HTTP/1.1.
    let h2 = "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
";
    text = text.replace(h2, "");
    text
}

#[test]
fn ext_authz_http_service_behaves_alike() {
    let Some(bin) = envoy_or_skip("ext_authz_http_service_behaves_alike") else {
        return;
    };
    let (Some(svc_e), Some(svc_o)) = (
        Authz::start_or_skip("ext_authz_http_service_behaves_alike"),
        Authz::start_or_skip("ext_authz_http_service_behaves_alike"),
    ) else {
        return;
    };
    let (up_e, up_o) = (Upstream::echo(), Upstream::echo());
    let envoy = Envoy::start(&bin, &http_bootstrap(up_e.addr, svc_e.http));
    let proxy = Proxy::start(&http_bootstrap(up_o.addr, svc_o.http));
    for (what, path, extra) in CASES {
        let (ne, no) = (svc_e.checks().len(), svc_o.checks().len());
        let e = run(envoy.listen, &up_e, path, extra);
        let o = run(proxy.listen, &up_o, path, extra);
        assert_eq!(o, e, "{what}: Outrigger (left) and Envoy (right) differ");
        let (ce, co) = (svc_e.checks(), svc_o.checks());
        assert_eq!(co.len() - no, ce.len() - ne, "{what}: checks made");
        if let (Some(ce), Some(co)) = (ce.last().filter(|_| ce.len() > ne), co.last()) {
            let view = |c: &serde_json::Value| {
                let mut names: Vec<String> = c["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h[0].as_str().unwrap().to_string())
                    .filter(|n| !matches!(n.as_str(), "x-request-id" | "x-forwarded-proto"))
                    .collect();
                names.sort();
                serde_json::json!({"method": c["method"], "path": c["path"], "names": names})
            };
            assert_eq!(
                view(co),
                view(ce),
                "{what}: checks differ (Outrigger left):\n{co}\n{ce}"
            );
        }
    }
}

/// `with_request_body`: the bootstrap's filter with `settings` (a `BufferSettings`,
/// flow style), on the gRPC service or (`http`) the plain-HTTP one.
fn body_bootstrap(up: SocketAddr, svc: &Authz, http: bool, settings: &str) -> String {
    let text = if http {
        http_bootstrap(up, svc.http)
    } else {
        bootstrap(up, svc.grpc)
    };
    let anchor = "          - name: envoy.filters.http.router";
    text.replacen(
        anchor,
        &format!("              with_request_body: {settings}\n{anchor}"),
        1,
    )
}

/// Requests with bodies: (what, the raw request).
const BODY_CASES: &[(&str, &str)] = &[
    (
        "a short body",
        "POST /app HTTP/1.1\r\nHost: app.test\r\nx-remove-me: 1\r\ncontent-length: 10\r\nConnection: close\r\n\r\nhello body",
    ),
    (
        "a body the service denies",
        "POST /app HTTP/1.1\r\nHost: app.test\r\ncontent-length: 7\r\nConnection: close\r\n\r\ndeny-me",
    ),
    (
        "a chunked body",
        "POST /app HTTP/1.1\r\nHost: app.test\r\ntransfer-encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n",
    ),
    (
        "a body on a route that disables buffering",
        "POST /nobuf HTTP/1.1\r\nHost: app.test\r\ncontent-length: 10\r\nConnection: close\r\n\r\nhello body",
    ),
    (
        "an empty body",
        "POST /app HTTP/1.1\r\nHost: app.test\r\ncontent-length: 0\r\nConnection: close\r\n\r\n",
    ),
    (
        "no body, a client's partial-body header",
        "GET /app HTTP/1.1\r\nHost: app.test\r\nx-envoy-auth-partial-body: true\r\nConnection: close\r\n\r\n",
    ),
];

/// What the service saw of the body in a check, as `authz.py` logs it.
fn body_view(c: &serde_json::Value) -> serde_json::Value {
    let partial = match &c["headers"] {
        serde_json::Value::Array(list) => list
            .iter()
            .find(|h| h[0] == "x-envoy-auth-partial-body")
            .map(|h| h[1].clone()),
        h => h.get("x-envoy-auth-partial-body").cloned(),
    };
    let length = match &c["headers"] {
        serde_json::Value::Array(list) => list
            .iter()
            .find(|h| h[0] == "content-length")
            .map(|h| h[1].clone()),
        h => h.get("content-length").cloned(),
    };
    serde_json::json!({
        "kind": c["kind"], "method": c["method"], "body": c["body"], "raw_body": c["raw_body"],
        "partial": partial, "content-length": length,
        "names": match &c["headers"] {
            serde_json::Value::Array(list) => {
                let mut n: Vec<String> = list.iter()
                    .map(|h| h[0].as_str().unwrap_or_default().to_string())
                    .filter(|n| !matches!(n.as_str(), "x-request-id" | "x-forwarded-proto"))
                    .collect();
                n.sort();
                serde_json::json!(n)
            }
            h => serde_json::json!(h.as_object().map(|m| m.keys()
                .filter(|k| !matches!(k.as_str(), "x-request-id" | "x-forwarded-proto"))
                .cloned().collect::<Vec<_>>())),
        },
    })
}

fn body_parity(what: &str, http: bool, settings: &str, big: usize) {
    let Some(bin) = envoy_or_skip(what) else {
        return;
    };
    let (Some(svc_e), Some(svc_o)) = (Authz::start_or_skip(what), Authz::start_or_skip(what))
    else {
        return;
    };
    let (up_e, up_o) = (Upstream::echo(), Upstream::echo());
    let envoy = Envoy::start(&bin, &body_bootstrap(up_e.addr, &svc_e, http, settings));
    let proxy = Proxy::start(&body_bootstrap(up_o.addr, &svc_o, http, settings));
    let large = format!(
        "POST /app HTTP/1.1\r\nHost: app.test\r\ncontent-length: {big}\r\nConnection: close\r\n\r\n{}",
        "x".repeat(big)
    );
    let cases = BODY_CASES
        .iter()
        .map(|(w, r)| (*w, r.to_string()))
        .chain([("a body over max_request_bytes", large)]);
    for (case, raw) in cases {
        let (ne, no) = (svc_e.checks().len(), svc_o.checks().len());
        let e = run_raw(envoy.listen, &up_e, &raw);
        let o = run_raw(proxy.listen, &up_o, &raw);
        assert_eq!(
            o, e,
            "{what}: {case}: Outrigger (left) and Envoy (right) differ"
        );
        if o.upstream.is_some() {
            let (le, lo) = (up_e.last_request(), up_o.last_request());
            assert_eq!(lo.body_len, le.body_len, "{what}: {case}: upstream body");
        }
        let (ce, co) = (svc_e.checks(), svc_o.checks());
        assert_eq!(co.len() - no, ce.len() - ne, "{what}: {case}: checks made");
        if let (Some(ce), Some(co)) = (ce.last().filter(|_| ce.len() > ne), co.last()) {
            // The check's `size` (the body bytes read when it went out): a partial
            // check of the large body goes out after however many bytes the first
            // reads brought, in either proxy.
            let large = case == "a body over max_request_bytes";
            let size = |c: &serde_json::Value| {
                if large {
                    if let Some(n) = c["size"].as_u64() {
                        assert!(n >= 8 && n <= big as u64, "{what}: size {n}");
                    }
                    serde_json::Value::Null
                } else {
                    c["size"].clone()
                }
            };
            assert_eq!(size(co), size(ce), "{what}: {case}: size");
            assert_eq!(
                body_view(co),
                body_view(ce),
                "{what}: {case}: checks differ (Outrigger left):\n{co}\n{ce}"
            );
        }
    }
    // A denial after the whole body was read: whether the connection stays open.
    let keep = |addr: SocketAddr| {
        let mut c = Conn::connect(addr);
        c.send("POST /app HTTP/1.1\r\nHost: app.test\r\ncontent-length: 7\r\n\r\ndeny-me");
        let r = c.read_response().expect("a response");
        (r.status, r.says_close())
    };
    assert_eq!(
        keep(proxy.listen),
        keep(envoy.listen),
        "{what}: keep-alive after a denial"
    );
    if !http {
        for name in ["ok", "denied", "error"] {
            let full = format!("http.main.ext_authz.{name}");
            let ours = proxy.stats()["counters"][&full].as_u64();
            assert_eq!(ours, envoy_counter(envoy.admin, &full), "{what}: {full}");
        }
    }
}

#[test]
fn with_request_body_behaves_alike() {
    body_parity(
        "with_request_body_behaves_alike",
        false,
        "{ max_request_bytes: 16 }",
        64 * 1024,
    );
}

#[test]
fn with_request_body_partial_as_bytes_behaves_alike() {
    body_parity(
        "with_request_body_partial_as_bytes_behaves_alike",
        false,
        "{ max_request_bytes: 8, allow_partial_message: true, pack_as_bytes: true }",
        64 * 1024,
    );
}

#[test]
fn with_request_body_http_service_behaves_alike() {
    body_parity(
        "with_request_body_http_service_behaves_alike",
        true,
        "{ max_request_bytes: 16, allow_partial_message: true, pack_as_bytes: true }",
        64 * 1024,
    );
}
