//! External authorization through the binary (Envoy's `envoy.filters.http.ext_authz`
//! and `envoy.filters.network.ext_authz`), against the test's authorization service
//! (`tests/authz/authz.py`: grpcio with xds-protos' `envoy.service.auth.v3`, and a
//! plain-HTTP service): allow (headers added both ways, a header removed), deny (the
//! service's status, headers and body reach the client), the service down with
//! `failure_mode_allow` on and off, a timeout, per-route disable and context
//! extensions, the check request's contents, the counters, HTTP/2 clients, the network
//! filter's allow and deny, and config errors by path. `ext_authz_parity.rs` runs the
//! same bootstrap through Envoy 1.40.

mod common;
mod h2client;

use std::net::SocketAddr;

use common::*;

mod authz;
use authz::Authz;

/// A listener `main` with the ext_authz filter `authz` (`filter`: its fields, indented
/// for `ext_authz:`), routes `/public` (filter disabled), `/ctx` (context extensions)
/// and the rest to `backend`; clusters `authz_grpc` (HTTP/2) and `authz_http`.
fn config(up: SocketAddr, grpc: SocketAddr, http: SocketAddr, filter: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    http_filters:
      - name: authz
        ext_authz:
{filter}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /public }}
            cluster: backend
            per_filter_config:
              authz: {{ disabled: true }}
          - match: {{ prefix: /ctx }}
            cluster: backend
            per_filter_config:
              authz: {{ ext_authz: {{ context_extensions: {{ team: blue, tier: gold }} }} }}
          - match: {{ prefix: / }}
            cluster: backend
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
  - name: authz_grpc
    protocol: http2
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
  - name: authz_http
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        up.port(),
        grpc.port(),
        http.port()
    )
}

const GRPC: &str = "          grpc_service: { cluster: authz_grpc, timeout: 2s }
";

fn counter(proxy: &Proxy, name: &str) -> u64 {
    proxy.stats()["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {}", proxy.stats()["counters"]))
}

fn request(addr: SocketAddr, path: &str, extra: &str) -> Response {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{extra}Connection: close\r\n\r\n"),
    )
}

#[test]
fn grpc_allow_adds_headers_both_ways_and_deny_returns_the_services_answer() {
    let Some(svc) = Authz::start_or_skip("grpc_allow") else {
        return;
    };
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, svc.grpc, svc.http, GRPC));

    // Allowed: the service's request mutations reach the upstream, its response header
    // the client.
    let r = request(
        proxy.listen,
        "/app?q=1",
        "x-remove-me: 1\r\nx-authz-appended: orig\r\nx-authz-added: client\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.header("x-authz-client"), Some("hello"));
    let seen = up.last_request();
    assert_eq!(seen.headers_named("x-authz-added"), ["yes"], "{seen:?}");
    assert_eq!(seen.headers_named("x-authz-appended"), ["orig,a"]);
    assert!(!seen.has_header("x-remove-me"));

    // Denied: the service's status, headers and body; the upstream never sees it.
    let before = up.request_count();
    let r = request(proxy.listen, "/app", "x-authz: deny\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"test\""));
    assert_eq!(r.header("x-deny-reason"), Some("test"));
    assert_eq!(r.body_str(), "denied by test");
    // Envoy's default for a denial without an HTTP response: 403.
    let r = request(proxy.listen, "/app", "x-authz: deny-bare\r\n");
    assert_eq!(r.status, 403);
    assert_eq!(up.request_count(), before);

    // The check request: what Envoy fills in.
    let checks = svc.checks();
    let first = &checks[0];
    assert_eq!(first["kind"], "grpc");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/app?q=1");
    assert_eq!(first["host"], "app.test");
    assert_eq!(first["scheme"], "http");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["headers"][":authority"], "app.test");
    assert_eq!(first["headers"][":method"], "GET");
    assert_eq!(first["headers"][":path"], "/app?q=1");
    assert_eq!(first["headers"]["x-remove-me"], "1");
    assert_eq!(first["source_address"], "127.0.0.1");
    assert_ne!(first["source_port"], 0);
    assert_eq!(first["destination_port"], proxy.listen.port());
    assert_eq!(first["source_principal"], "");
    assert_eq!(first["context_extensions"], serde_json::json!({}));

    // Per route: disabled (no check), and context extensions.
    let n = svc.checks().len();
    let r = request(proxy.listen, "/public", "x-authz: deny\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(svc.checks().len(), n, "a disabled route is not checked");
    let r = request(proxy.listen, "/ctx", "");
    assert_eq!(r.status, 200);
    let last = svc.checks().pop().unwrap();
    assert_eq!(
        last["context_extensions"],
        serde_json::json!({"team": "blue", "tier": "gold"})
    );

    assert_eq!(counter(&proxy, "http.main.ext_authz.ok"), 2);
    assert_eq!(counter(&proxy, "http.main.ext_authz.denied"), 2);
    assert_eq!(counter(&proxy, "http.main.ext_authz.error"), 0);
    assert_eq!(flag_count(&proxy.listener_stats("main"), "UAEX"), 2);
    // The same in the scope of the route's cluster, made by their first count (no
    // `error` yet); the two denials (401, 403) count in its `upstream_rq_4xx`.
    let r = proxy.admin_get("/stats?filter=^cluster.backend.(ext_authz|upstream_rq_4xx)");
    assert_eq!(
        r.body_str(),
        "cluster.backend.ext_authz.denied: 2\ncluster.backend.ext_authz.ok: 2\n\
         cluster.backend.upstream_rq_4xx: 2\n"
    );
    let r = proxy.admin_get("/stats?format=json&filter=^cluster.backend.ext_authz");
    let json: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(
        json["stats"],
        serde_json::json!([
            {"name": "cluster.backend.ext_authz.denied", "value": 2},
            {"name": "cluster.backend.ext_authz.ok", "value": 2}
        ])
    );
}

#[test]
fn grpc_over_http2_clients() {
    let Some(svc) = Authz::start_or_skip("grpc_h2") else {
        return;
    };
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, svc.grpc, svc.http, GRPC));
    let addr = proxy.listen;
    let (allowed, denied) = h2client::run(move || async move {
        let mut c = h2client::connect(addr).await;
        let url = "http://app.test/h2";
        let allowed = h2client::send(
            &mut c,
            h2client::request("GET", url)
                .header("x-remove-me", "1")
                .body(())
                .unwrap(),
            b"",
        )
        .await;
        let denied = h2client::send(
            &mut c,
            h2client::request("GET", url)
                .header("x-authz", "deny")
                .body(())
                .unwrap(),
            b"",
        )
        .await;
        (allowed, denied)
    });
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("x-authz-client"), Some("hello"));
    let seen = up.last_request();
    assert_eq!(seen.header("x-authz-added"), Some("yes"));
    assert!(!seen.has_header("x-remove-me"));
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("x-deny-reason"), Some("test"));
    assert_eq!(denied.body_str(), "denied by test");
    let checks = svc.checks();
    assert_eq!(checks[0]["protocol"], "HTTP/2");
    assert_eq!(checks[0]["host"], "app.test");
}

#[test]
fn service_down_errors_with_status_on_error_or_allows_with_failure_mode_allow() {
    let up = Upstream::echo();
    let dead = refused_addr();
    // Off (the default): 403, empty body, UAEX.
    let proxy = Proxy::start(&config(up.addr, dead, dead, GRPC));
    let r = request(proxy.listen, "/", "");
    assert_eq!(r.status, 403);
    assert_eq!(r.body_str(), "");
    assert_eq!(up.request_count(), 0);
    assert_eq!(counter(&proxy, "http.main.ext_authz.error"), 1);
    assert_eq!(
        counter(&proxy, "http.main.ext_authz.failure_mode_allowed"),
        0
    );
    drop(proxy);

    // status_on_error and a filter stat_prefix.
    let filter = format!("{GRPC}          status_on_error: 503\n          stat_prefix: edge\n");
    let proxy = Proxy::start(&config(up.addr, dead, dead, &filter));
    assert_eq!(request(proxy.listen, "/", "").status, 503);
    assert_eq!(counter(&proxy, "http.main.ext_authz.edge.error"), 1);
    drop(proxy);

    // On: the request goes upstream, marked with failure_mode_allow_header_add.
    let filter = format!(
        "{GRPC}          failure_mode_allow: true\n          failure_mode_allow_header_add: true\n"
    );
    let proxy = Proxy::start(&config(up.addr, dead, dead, &filter));
    let r = request(proxy.listen, "/", "");
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last_request()
            .header("x-envoy-auth-failure-mode-allowed"),
        Some("true")
    );
    assert_eq!(counter(&proxy, "http.main.ext_authz.error"), 1);
    assert_eq!(
        counter(&proxy, "http.main.ext_authz.failure_mode_allowed"),
        1
    );
}

#[test]
fn a_slow_service_times_out_and_a_failed_call_is_an_error() {
    let Some(svc) = Authz::start_or_skip("timeout") else {
        return;
    };
    let up = Upstream::echo();
    let filter = "          grpc_service: { cluster: authz_grpc, timeout: 0.3s }\n";
    let proxy = Proxy::start(&config(up.addr, svc.grpc, svc.http, filter));
    let r = request(proxy.listen, "/", "x-authz: slow\r\n");
    assert_eq!(r.status, 403);
    let r = request(proxy.listen, "/", "x-authz: fail\r\n");
    assert_eq!(r.status, 403);
    assert_eq!(counter(&proxy, "http.main.ext_authz.error"), 2);
    // The service answers the next one on the same per-core connection.
    assert_eq!(request(proxy.listen, "/", "").status, 200);
    assert_eq!(counter(&proxy, "http.main.ext_authz.ok"), 1);
    assert_eq!(up.request_count(), 1);
}

#[test]
fn http_service_allow_and_deny() {
    let Some(svc) = Authz::start_or_skip("http_service") else {
        return;
    };
    let up = Upstream::echo();
    let filter = "          http_service:
            cluster: authz_http
            timeout: 2s
            path_prefix: /check
            headers_to_add: [{ name: x-from-proxy, value: outrigger }]
            allowed_headers: [{ exact: x-authz }, { prefix: x-forward-me }]
            allowed_upstream_headers: [{ exact: x-authz-added }]
            allowed_upstream_headers_to_append: [{ exact: x-authz-appended }]
            allowed_client_headers_on_success: [{ exact: x-authz-client }]
            allowed_client_headers: [{ exact: x-deny-reason }]
";
    let proxy = Proxy::start(&config(up.addr, svc.grpc, svc.http, filter));
    let r = request(
        proxy.listen,
        "/app?x=1",
        "authorization: Bearer t\r\nx-forward-me-too: y\r\nx-not-sent: n\r\nx-remove-me: 1\r\nx-authz-appended: orig\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-authz-client"), Some("hello"));
    let seen = up.last_request();
    assert_eq!(seen.headers_named("x-authz-added"), ["yes"]);
    assert_eq!(seen.headers_named("x-authz-appended"), ["orig", "a"]);
    assert!(!seen.has_header("x-remove-me"));
    assert!(!seen.has_header("x-not-allowed"));
    let check = svc.checks().pop().unwrap();
    assert_eq!(check["kind"], "http");
    assert_eq!(check["method"], "GET");
    assert_eq!(check["path"], "/check/app?x=1");
    let names: Vec<String> = check["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{}={}", h[0].as_str().unwrap(), h[1].as_str().unwrap()))
        .collect();
    for want in [
        "host=app.test",
        "content-length=0",
        "authorization=Bearer t",
        "x-forward-me-too=y",
        "x-from-proxy=outrigger",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("x-not-sent")),
        "{names:?}"
    );

    let r = request(proxy.listen, "/app", "x-authz: deny\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.body_str(), "denied by test");
    assert_eq!(r.header("x-deny-reason"), Some("test"));
    // Not listed, but Envoy always lets WWW-Authenticate through.
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"test\""));
    assert_eq!(counter(&proxy, "http.main.ext_authz.ok"), 1);
    assert_eq!(counter(&proxy, "http.main.ext_authz.denied"), 1);
}

#[test]
fn network_filter_allows_and_closes() {
    let Some(svc) = Authz::start_or_skip("network") else {
        return;
    };
    let up = Upstream::echo();
    let cfg = |prefix: &str| {
        format!(
            "{HEADER}listeners:
  - name: tcp
    address: 127.0.0.1
    port: @PORT@
    network_filters:
      - name: authz
        ext_authz:
          stat_prefix: {prefix}
          grpc_service: {{ cluster: authz_grpc, timeout: 2s }}
    tcp_proxy: {{ cluster: backend }}
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
  - name: authz_grpc
    protocol: http2
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
            up.addr.port(),
            svc.grpc.port()
        )
    };
    let proxy = Proxy::start(&cfg("tcp_authz"));
    let r = request(proxy.listen, "/through", "");
    assert_eq!(r.status, 200);
    assert_eq!(up.request_count(), 1);
    let check = svc.checks().pop().unwrap();
    assert_eq!(check["source_address"], "127.0.0.1");
    assert_eq!(check["destination_port"], proxy.listen.port());
    assert_eq!(check["method"], "");
    assert_eq!(counter(&proxy, "ext_authz.tcp_authz.total"), 1);
    assert_eq!(counter(&proxy, "ext_authz.tcp_authz.ok"), 1);
    drop(proxy);

    // The service denies connections from now on: closed before any upstream connect.
    svc.deny_connections();
    let proxy = Proxy::start(&cfg("tcp_authz"));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(c.closed_within(std::time::Duration::from_secs(5)));
    assert_eq!(up.request_count(), 1);
    assert_eq!(counter(&proxy, "ext_authz.tcp_authz.denied"), 1);
    assert_eq!(counter(&proxy, "ext_authz.tcp_authz.cx_closed"), 1);
}

#[test]
fn bad_configs_are_refused_by_path() {
    let up = Upstream::echo();
    let dead = refused_addr();
    let cases = [
        (
            "          grpc_service: { cluster: nope }\n",
            "http_filters[0].ext_authz.grpc_service.cluster",
        ),
        (
            "          grpc_service: { cluster: authz_http }\n",
            "http_filters[0].ext_authz.grpc_service.cluster",
        ),
        (
            "          http_service: { cluster: authz_grpc }\n",
            "http_filters[0].ext_authz.http_service.cluster",
        ),
        (
            "          failure_mode_allow: true\n",
            "http_filters[0].ext_authz",
        ),
        (
            "          grpc_service: { cluster: authz_grpc, timeout: soon }\n",
            "http_filters[0].ext_authz.grpc_service.timeout",
        ),
        (
            "          grpc_service: { cluster: authz_grpc }\n          with_request_body: { max_request_bytes: 0 }\n",
            "http_filters[0].ext_authz.with_request_body.max_request_bytes",
        ),
        (
            "          grpc_service: { cluster: authz_grpc }\n          with_request_body: { max_bytes: 9 }\n",
            "max_bytes",
        ),
    ];
    const CTX: &str = "ext_authz: { context_extensions: { team: blue, tier: gold } }";
    let both = "ext_authz: { disable_request_body_buffering: true, with_request_body: { max_request_bytes: 4 } }";
    let cases = cases.into_iter().map(|(f, p)| (f, p, None)).chain([(
        GRPC,
        "per_filter_config.authz.ext_authz.with_request_body",
        Some(both),
    )]);
    for (filter, path, route) in cases {
        let dir = TempDir::new("ext-authz-bad");
        let file = dir.join("bad.yaml");
        write_atomic(
            &file,
            &config(up.addr, dead, dead, filter)
                .replace(CTX, route.unwrap_or(CTX))
                .replace("@ADMIN_PORT@", "0")
                .replace("@PORT@", "0"),
        );
        let out = run_cli(
            &["validate", "-c", &file.display().to_string()],
            std::time::Duration::from_secs(20),
        );
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{filter} loaded: {text}");
        assert!(text.contains(path), "{filter}: {text}");
    }
}

/// `with_request_body` (gRPC): the body reaches the service before the request goes
/// on; the answer's mutations still reach the upstream head (written before the body
/// was read), a body that is too large is a `413`, a bodiless request is checked at
/// once.
#[test]
fn with_request_body_sends_the_body_and_refuses_a_larger_one() {
    let Some(svc) = Authz::start_or_skip("with_body") else {
        return;
    };
    let up = Upstream::echo();
    let filter = format!("{GRPC}          with_request_body: {{ max_request_bytes: 16 }}\n");
    let proxy = Proxy::start(&config(up.addr, svc.grpc, svc.http, &filter));
    let post = |extra: &str, body: &str| {
        exchange(
            proxy.listen,
            &format!(
                "POST /app HTTP/1.1\r\nHost: app.test\r\n{extra}content-length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let r = post("x-remove-me: 1\r\n", "hello body");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.header("x-authz-client"), Some("hello"));
    let seen = up.last_request();
    assert_eq!(seen.body, b"hello body");
    assert_eq!(seen.headers_named("x-authz-added"), ["yes"], "{seen:?}");
    assert!(!seen.has_header("x-remove-me"));
    let check = svc.checks().pop().unwrap();
    assert_eq!(check["body"], "hello body");
    assert_eq!(check["raw_body"], "");
    assert_eq!(check["headers"]["x-envoy-auth-partial-body"], "false");
    assert_eq!(check["headers"]["content-length"], "10");

    // The decision is on the body.
    let before = up.request_count();
    let r = post("", "please deny-me");
    assert_eq!(r.status, 401);
    assert_eq!(r.body_str(), "denied by test");
    assert_eq!(up.request_count(), before);

    // Over the limit: 413, the service is not asked.
    let checks = svc.checks().len();
    let r = post("", &"x".repeat(64 * 1024));
    assert_eq!(r.status, 413);
    assert_eq!(r.body_str(), "Payload Too Large");
    assert_eq!(svc.checks().len(), checks);
    assert_eq!(up.request_count(), before);

    // A chunked body: checked whole, sent upstream with its length.
    let r = exchange(
        proxy.listen,
        "POST /app HTTP/1.1\r\nHost: app.test\r\ntransfer-encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(svc.checks().pop().unwrap()["body"], "hello!!!");
    let seen = up.last_request();
    assert_eq!(seen.body, b"hello!!!");
    assert_eq!(seen.header("content-length"), Some("8"));
    assert_eq!(seen.headers_named("x-authz-added"), ["yes"]);

    // No body: checked on the head, without a body or the partial-body header; a
    // client's own `x-envoy-auth-partial-body` never reaches the service.
    let r = request(proxy.listen, "/app", "x-envoy-auth-partial-body: true\r\n");
    assert_eq!(r.status, 200);
    let check = svc.checks().pop().unwrap();
    assert_eq!(check["body"], "");
    assert!(check["headers"].get("x-envoy-auth-partial-body").is_none());
    assert_eq!(counter(&proxy, "http.main.ext_authz.ok"), 3);
    assert_eq!(counter(&proxy, "http.main.ext_authz.denied"), 1);
}

/// `allow_partial_message` and `pack_as_bytes`: a longer body is checked with its first
/// `max_request_bytes`, in `raw_body`, and goes upstream whole; also from an HTTP/2
/// client.
#[test]
fn with_request_body_partial_and_packed_as_bytes() {
    let Some(svc) = Authz::start_or_skip("with_body_partial") else {
        return;
    };
    let up = Upstream::echo();
    let filter = format!(
        "{GRPC}          with_request_body: {{ max_request_bytes: 8, allow_partial_message: true, pack_as_bytes: true }}\n"
    );
    let proxy = Proxy::start(&config(up.addr, svc.grpc, svc.http, &filter));
    let body = "0123456789abcdef".repeat(4096);
    let r = exchange(
        proxy.listen,
        &format!(
            "POST /app HTTP/1.1\r\nHost: app.test\r\ncontent-length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let check = svc.checks().pop().unwrap();
    assert_eq!(check["raw_body"], "3031323334353637");
    assert_eq!(check["body"], "");
    assert_eq!(check["headers"]["x-envoy-auth-partial-body"], "true");
    let seen = up.last_request();
    assert_eq!(seen.body_len, body.len() as u64);
    assert_eq!(seen.headers_named("x-authz-added"), ["yes"]);

    // HTTP/2: a short body, whole.
    let addr = proxy.listen;
    let resp = h2client::run(move || async move {
        let mut c = h2client::connect(addr).await;
        let req = h2client::request("POST", "http://app.test/h2")
            .header("x-remove-me", "1")
            .body(())
            .unwrap();
        h2client::send(&mut c, req, b"tiny").await
    });
    assert_eq!(resp.status, 200);
    let check = svc.checks().pop().unwrap();
    assert_eq!(check["raw_body"], "74696e79");
    assert_eq!(check["headers"]["x-envoy-auth-partial-body"], "false");
    let seen = up.last_request();
    assert_eq!(seen.body, b"tiny");
    assert_eq!(seen.header("x-authz-added"), Some("yes"));
    assert!(!seen.has_header("x-remove-me"));
}

/// The plain-HTTP service gets the buffered body as its request's body.
#[test]
fn with_request_body_over_the_http_service() {
    let Some(svc) = Authz::start_or_skip("with_body_http") else {
        return;
    };
    let up = Upstream::echo();
    let filter = "          http_service:
            cluster: authz_http
            timeout: 2s
            allowed_upstream_headers: [{ exact: x-authz-added }]
          with_request_body: { max_request_bytes: 32 }
";
    let proxy = Proxy::start(&config(up.addr, svc.grpc, svc.http, filter));
    let r = exchange(
        proxy.listen,
        "POST /app HTTP/1.1\r\nHost: app.test\r\ncontent-length: 10\r\nConnection: close\r\n\r\nhello body",
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let check = svc.checks().pop().unwrap();
    assert_eq!(check["kind"], "http");
    assert_eq!(check["body"], "hello body");
    let names: Vec<String> = check["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{}={}", h[0].as_str().unwrap(), h[1].as_str().unwrap()))
        .collect();
    assert!(names.iter().any(|n| n == "content-length=10"), "{names:?}");
    assert_eq!(up.last_request().headers_named("x-authz-added"), ["yes"]);
    let r = exchange(
        proxy.listen,
        "POST /app HTTP/1.1\r\nHost: app.test\r\ncontent-length: 7\r\nConnection: close\r\n\r\ndeny-me",
    );
    assert_eq!(r.status, 401);
}
