//! The native `proxy_headers` settings through the binary: off by default (HTTP/1.0
//! served, nothing added), and each on: HTTP/1.0 refused with 426 or given a default
//! Host, `date`, `server`, the router's `x-envoy-*` headers, the sanitizing of incoming
//! `x-envoy-*` headers, `x-envoy-external-address` and `x-request-id`, on HTTP/1 and
//! HTTP/2. Also the bodies of HTTP/1 codec errors (the reason phrase).

mod common;

use common::*;

fn is_uuid_v4(v: &str) -> bool {
    v.len() == 36
        && v.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && v.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
        && v.get(14..15) == Some("4")
}

#[test]
fn native_defaults_add_nothing_and_serve_http_10() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let r = exchange(p.listen, "GET /a HTTP/1.0\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    for name in ["date", "server", "x-envoy-upstream-service-time"] {
        assert_eq!(r.header(name), None, "{name}: {r:?}");
    }
    let r = exchange(
        p.listen,
        "GET /a HTTP/1.1\r\nHost: a\r\nX-Envoy-Custom: 1\r\nX-Envoy-Retry-On: 5xx\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let req = up.last_request();
    // Nothing sanitizes x-envoy-* headers here, but the router consumes the retry
    // headers, as Envoy's does (tests/retries.rs).
    assert_eq!(req.header("x-envoy-custom"), Some("1"));
    assert_eq!(req.header("x-envoy-retry-on"), None);
    for name in [
        "x-request-id",
        "x-envoy-expected-rq-timeout-ms",
        "x-envoy-external-address",
    ] {
        assert_eq!(req.header(name), None, "{name}");
    }
}

#[test]
fn codec_errors_answer_with_the_reason_phrase() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    for (req, status, body) in [
        (
            "GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n".to_string(),
            400,
            "Bad Request",
        ),
        (
            format!(
                "GET /a HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
                "b".repeat(70 * 1024)
            ),
            431,
            "Request Header Fields Too Large",
        ),
        (
            "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_string(),
            501,
            "Not Implemented",
        ),
    ] {
        let r = exchange(p.listen, &req);
        assert_eq!((r.status, r.body_str().as_str()), (status, body), "{r:?}");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert!(r.says_close());
    }
}

const ALL_ON: &str = "    proxy_headers:
      accept_http_10: false
      date: true
      server_name: sidecar
      server_header_transformation: overwrite
      envoy_headers: true
      sanitize_envoy_headers: true
      generate_request_id: true
";

#[test]
fn every_own_header_when_configured() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config_with(up.addr, "5s", ALL_ON));
    let r = exchange(p.listen, "GET /a HTTP/1.0\r\nHost: a\r\n\r\n");
    assert_eq!((r.status, r.body_str().as_str()), (426, "Upgrade Required"));
    assert!(r.says_close());
    assert_eq!(r.header("server"), Some("sidecar"));
    assert_eq!(r.header("date").map(str::len), Some(29), "{r:?}");
    let r = exchange(
        p.listen,
        "GET /a HTTP/1.1\r\nHost: a\r\nX-Envoy-Retry-On: 5xx\r\nX-Envoy-Decorator-Operation: op\r\n\
         X-Envoy-Custom: kept\r\nX-Request-Id: client\r\nX-Envoy-Expected-Rq-Timeout-Ms: 1\r\n\
         Connection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("server"), Some("sidecar"));
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert!(r
        .header("x-envoy-upstream-service-time")
        .is_some_and(|v| v.parse::<u64>().is_ok()));
    let req = up.last_request();
    assert_eq!(req.header("x-envoy-retry-on"), None);
    // The native listener uses the peer address: an edge request.
    assert_eq!(req.header("x-envoy-decorator-operation"), None);
    assert_eq!(req.header("x-envoy-custom"), Some("kept"));
    assert_eq!(
        req.headers_named("x-envoy-expected-rq-timeout-ms"),
        ["5000"]
    );
    assert_eq!(req.header("x-envoy-external-address"), Some("127.0.0.1"));
    let ids = req.headers_named("x-request-id");
    assert!(ids.len() == 1 && is_uuid_v4(ids[0]), "{ids:?}");
    // HTTP/2 (prior knowledge) to the HTTP/1 cluster.
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "--http2-prior-knowledge"])
        .arg(p.url("/h2"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/2 200"), "{text}");
    for h in [
        "\r\nserver: sidecar\r\n",
        "\r\ndate: ",
        "\r\nx-envoy-upstream-service-time: ",
    ] {
        assert!(text.contains(h), "{h:?} in {text}");
    }
    let req = up.last_request();
    assert_eq!(req.target, "/h2");
    assert!(req.header("x-request-id").is_some_and(is_uuid_v4));
    assert_eq!(req.header("x-envoy-expected-rq-timeout-ms"), Some("5000"));
}

#[test]
fn http_10_default_host_append_if_absent_and_preserved_request_ids() {
    let up = Upstream::echo();
    let extra = "    proxy_headers:
      default_host_for_http_10: fallback.example
      server_header_transformation: append_if_absent
      generate_request_id: true
      preserve_external_request_id: true
";
    let p = Proxy::start(&proxy_config_with(up.addr, "0s", extra));
    let r = exchange(p.listen, "GET /a HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("server"), Some("outrigger"));
    let req = up.last_request();
    assert_eq!(req.headers_named("host"), ["fallback.example"]);
    assert!(req.header("x-request-id").is_some_and(is_uuid_v4));
    let r = exchange(
        p.listen,
        "GET /a HTTP/1.1\r\nHost: a\r\nX-Request-Id: client\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let req = up.last_request();
    assert_eq!(req.headers_named("x-request-id"), ["client"]);
    // No route timeout, no router headers asked for.
    assert_eq!(req.header("x-envoy-expected-rq-timeout-ms"), None);
}

/// Through an HTTP/2 cluster (a second proxy in front of the echo upstream), from an
/// HTTP/1.1 and an HTTP/2 client: the request stamps reach the upstream, the response
/// stamps the client.
#[test]
fn own_headers_cross_an_http2_cluster() {
    let up = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let a = Proxy::start(&format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
{ALL_ON}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: b
            timeout: 4s
clusters:
  - name: b
    protocol: http2
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        b.listen.port()
    ));
    let r = exchange(
        a.listen,
        "GET /h1 HTTP/1.1\r\nHost: a\r\nX-Envoy-Max-Retries: 3\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("server"), Some("sidecar"));
    assert!(r.header("date").is_some());
    assert!(r.header("x-envoy-upstream-service-time").is_some());
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "--http2-prior-knowledge"])
        .arg(a.url("/h2"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/2 200"), "{text}");
    for h in [
        "\r\nserver: sidecar\r\n",
        "\r\ndate: ",
        "\r\nx-envoy-upstream-service-time: ",
    ] {
        assert!(text.contains(h), "{h:?} in {text}");
    }
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        assert!(
            req.header("x-request-id").is_some_and(is_uuid_v4),
            "{req:?}"
        );
        assert_eq!(
            req.headers_named("x-envoy-expected-rq-timeout-ms"),
            ["4000"]
        );
        assert_eq!(req.header("x-envoy-max-retries"), None);
        assert_eq!(req.header("x-envoy-external-address"), Some("127.0.0.1"));
    }
}
