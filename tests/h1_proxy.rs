//! HTTP/1.1 proxying: clients (curl, a Rust client, raw bytes), keep-alive on both
//! sides, pipelining, HTTP/1.0, request and response bodies, 100-continue, hop-by-hop
//! headers, forwarding headers and routing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("these tests need `curl` on PATH")
}

#[test]
fn get_through_proxy_with_curl() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let out = curl(&["-i", &proxy.url("/hello?name=curl")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("method: GET"), "{text}");
    assert!(text.contains("target: /hello?name=curl"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("x-upstream-conn: 1"),
        "{text}"
    );
    assert_eq!(up.request_count(), 1);
}

#[test]
fn get_and_post_through_proxy_with_rust_client() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let resp = agent
        .get(&proxy.url("/rust"))
        .set("X-Client", "ureq")
        .call()
        .expect("GET through the proxy");
    assert_eq!(resp.status(), 200);
    let body = resp.into_string().unwrap();
    let e = Echoed::parse(body.as_bytes());
    assert_eq!(e.field("target").as_deref(), Some("/rust"));
    assert_eq!(e.header("x-client").as_deref(), Some("ureq"));

    let resp = agent
        .post(&proxy.url("/upload"))
        .send_bytes(b"hello from ureq")
        .expect("POST through the proxy");
    assert_eq!(resp.status(), 200);
    let req = up.last_request();
    assert_eq!(req.method, "POST");
    assert_eq!(req.body, b"hello from ureq");
    assert_eq!(req.header("content-length"), Some("15"));
}

#[test]
fn rust_client_keep_alive_reuses_both_connections() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    for i in 0..20 {
        let resp = agent.get(&proxy.url(&format!("/ka/{i}"))).call().unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_string().unwrap();
        assert!(body.contains(&format!("target: /ka/{i}\n")), "{body}");
    }
    assert_eq!(up.connections(), 1, "upstream connections should be reused");
    let l = proxy.listener_stats("main");
    assert_eq!(
        l["cx_total"], 1,
        "downstream connection should be reused: {l}"
    );
    assert_eq!(l["rq_total"], 20);
}

#[test]
fn many_requests_on_one_raw_connection_reuse_one_upstream_connection() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    for i in 0..50 {
        c.send(format!("GET /n/{i} HTTP/1.1\r\nHost: test\r\n\r\n"));
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert!(!r.says_close());
        let e = Echoed::parse(&r.body);
        assert_eq!(e.field("target"), Some(format!("/n/{i}")));
        assert_eq!(e.field("conn").as_deref(), Some("1"));
    }
    assert_eq!(up.connections(), 1);
    let cs = proxy.cluster_stats("backend");
    assert_eq!(cs["cx_total"], 1, "{cs}");
    assert_eq!(cs["cx_reused"], 49, "{cs}");
    assert_eq!(cs["rq_total"], 50, "{cs}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send(
        "GET /first HTTP/1.1\r\nHost: test\r\n\r\n\
         POST /second HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nabcde\
         GET /third HTTP/1.1\r\nHost: test\r\n\r\n",
    );
    for (path, len) in [("/first", 0), ("/second", 5), ("/third", 0)] {
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        let e = Echoed::parse(&r.body);
        assert_eq!(e.field("target").as_deref(), Some(path));
        assert_eq!(e.field("body-length"), Some(len.to_string()));
    }
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1].body, b"abcde");
}

#[test]
fn http10_client_is_closed_by_default() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /old HTTP/1.0\r\nHost: test\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        !r.chunked,
        "an HTTP/1.0 client must not get chunked framing"
    );
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "HTTP/1.0 without keep-alive must close"
    );
    assert!(Echoed::parse(&r.body).text.contains("target: /old"));
}

#[test]
fn http10_client_without_host_is_accepted() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /nohost HTTP/1.0\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn http10_client_with_keep_alive_stays_open() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    for i in 0..3 {
        c.send(format!(
            "GET /ka10/{i} HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n"
        ));
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("keep-alive"),
            "{:?}",
            r.headers
        );
        assert!(r.header("content-length").is_some());
        assert!(Echoed::parse(&r.body)
            .text
            .contains(&format!("target: /ka10/{i}")));
    }
    // Without the keep-alive token the next one closes.
    c.send("GET /last HTTP/1.0\r\nHost: test\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn content_length_request_body_is_forwarded_unchanged() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut body = vec![0u8; 200_000];
    fill_pattern(&mut body, 0);
    let mut c = Conn::connect(proxy.listen);
    c.send(format!(
        "PUT /cl HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    // In pieces, so the proxy forwards across several reads.
    for piece in body.chunks(30_000) {
        c.send(piece);
    }
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    let req = up.last_request();
    assert!(!req.chunked);
    assert!(req.header("transfer-encoding").is_none());
    assert_eq!(req.headers_named("content-length"), vec!["200000"]);
    assert_eq!(req.body_len, body.len() as u64);
    assert!(req.body == body, "the upstream got different bytes");
}

#[test]
fn chunked_request_body_stays_chunked_with_the_same_bytes() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let big = "x".repeat(3000);
    let wire = format!(
        "5\r\nhello\r\n7\r\n, world\r\n{:x}\r\n{big}\r\n0\r\nX-Checksum: abc123\r\n\r\n",
        big.len()
    );
    let mut c = Conn::connect(proxy.listen);
    c.send("POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in wire.as_bytes().chunks(7) {
        c.send(piece);
    }
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    let req = up.last_request();
    assert!(req.chunked, "a chunked request must stay chunked upstream");
    assert_eq!(req.headers_named("transfer-encoding"), vec!["chunked"]);
    assert!(req.header("content-length").is_none());
    assert_eq!(req.body, format!("hello, world{big}").as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&req.wire_body),
        wire,
        "the chunked framing should be forwarded byte for byte"
    );
    assert_eq!(
        req.trailers,
        vec![("X-Checksum".to_string(), "abc123".to_string())]
    );
    // The connection is still in step.
    c.send("GET /after HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = c.read_response().unwrap();
    assert!(Echoed::parse(&r.body).text.contains("target: /after"));
}

#[test]
fn a_whole_chunked_body_pipelined_with_the_next_request_keeps_both_in_step() {
    // The body, its trailers and the next request arrive in one read: the body goes
    // upstream with the head in one write, byte for byte, and only up to its end.
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let wire = "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n";
    let mut c = Conn::connect(proxy.listen);
    c.send(format!(
        "POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n{wire}\
         POST /length HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc\
         GET /after HTTP/1.1\r\nHost: test\r\n\r\n"
    ));
    for (path, len) in [("/chunked", 5), ("/length", 3), ("/after", 0)] {
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        let e = Echoed::parse(&r.body);
        assert_eq!(e.field("target").as_deref(), Some(path));
        assert_eq!(e.field("body-length"), Some(len.to_string()));
    }
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(String::from_utf8_lossy(&reqs[0].wire_body), wire);
    assert_eq!(reqs[1].body, b"abc");
    assert_eq!(up.connections(), 1);
}

#[test]
fn chunked_response_to_http11_client_keeps_chunks_and_trailers() {
    let up = Upstream::start(chunked_response(
        &["hello ", "chunked ", "world"],
        &[("x-trailer", "t1"), ("x-sum", "42")],
    ));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..2 {
        c.send("GET /stream HTTP/1.1\r\nHost: test\r\nTE: trailers\r\n\r\n");
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert!(r.chunked, "headers: {:?}", r.headers);
        assert_eq!(r.headers_named("transfer-encoding"), vec!["chunked"]);
        assert!(r.header("content-length").is_none());
        assert_eq!(r.body_str(), "hello chunked world");
        assert_eq!(r.trailer("x-trailer"), Some("t1"));
        assert_eq!(r.trailer("x-sum"), Some("42"));
        assert!(!r.says_close());
    }
    assert_eq!(up.connections(), 1);
}

/// Natively trailers pass (above). `proxy_headers.http1_trailers: false` on the
/// listener, or `http1_trailers: false` on the cluster, drops them both ways: the body
/// keeps its chunk framing and ends `0\r\n\r\n`, as from Envoy without
/// `enable_trailers` (tests/h1_trailers_parity.rs). The connection stays in step.
#[test]
fn chunked_trailers_are_dropped_when_a_side_turns_them_off() {
    let up = Upstream::start(chunked_response(&["hello"], &[("x-trailer", "t1")]));
    let listener_off = proxy_config_with(
        up.addr,
        "5s",
        "    proxy_headers: { http1_trailers: false }\n",
    );
    let cluster_off = proxy_config(up.addr).replace(
        "    connect_timeout: 1s\n",
        "    connect_timeout: 1s\n    http1_trailers: false\n",
    );
    for config in [listener_off, cluster_off] {
        let proxy = Proxy::start(&config);
        let mut c = Conn::connect(proxy.listen);
        for _ in 0..2 {
            c.send(
                "POST /t HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
                 3\r\nabc\r\n0\r\nx-req: 1\r\nx-req2: 2\r\n\r\n",
            );
            let r = c.read_response().unwrap();
            assert_eq!(r.status, 200);
            assert!(r.chunked, "headers: {:?}", r.headers);
            assert_eq!(r.body_str(), "hello");
            assert_eq!(r.trailer("x-trailer"), None);
            let seen = up.last_request();
            assert_eq!(
                String::from_utf8_lossy(&seen.wire_body),
                "3\r\nabc\r\n0\r\n\r\n"
            );
            assert!(seen.trailers.is_empty(), "{:?}", seen.trailers);
        }
    }
}

#[test]
fn chunked_response_to_http10_client_is_dechunked_and_closed() {
    let up = Upstream::start(chunked_response(
        &["hello ", "world"],
        &[("x-trailer", "t1")],
    ));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    // Even when it asks for keep-alive: a body without length needs the close.
    c.send("GET /stream HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        !r.chunked,
        "HTTP/1.0 client got chunked framing: {:?}",
        r.headers
    );
    assert!(r.header("transfer-encoding").is_none());
    assert!(r.until_close, "the body should be delimited by closing");
    assert_eq!(r.body_str(), "hello world");
    assert!(r.says_close(), "{:?}", r.headers);
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn expect_100_continue_raw() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send(
        "POST /expect HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = c.read_response().unwrap();
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue before sending the body"
    );
    c.send("0123456789");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    let req = up.last_request();
    assert_eq!(req.body, b"0123456789");
    assert!(
        req.header("expect").is_none(),
        "Expect is hop-by-hop for the proxy"
    );
}

#[test]
fn expect_100_continue_with_curl() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let file = proxy.dir.join("upload.bin");
    let mut data = vec![0u8; 4096];
    fill_pattern(&mut data, 7);
    std::fs::write(&file, &data).unwrap();
    let arg = format!("@{}", file.display());
    // curl adds `Expect: 100-continue` for bodies over 1 KiB (older versions) and on
    // request; ask for it explicitly so the test does not depend on the curl version.
    let out = curl(&[
        "-i",
        "-H",
        "Expect: 100-continue",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &arg,
        &proxy.url("/curl-upload"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("HTTP/1.1 100 Continue"), "{text}");
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    let req = up.last_request();
    assert_eq!(req.body, data);
}

#[test]
fn hop_by_hop_request_headers_are_removed() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send(
        "GET /hop HTTP/1.1\r\nHost: test\r\n\
         Connection: keep-alive, X-Secret, x-other-secret\r\n\
         X-Secret: 1\r\nX-Other-Secret: 2\r\nKeep-Alive: timeout=5\r\n\
         TE: trailers, deflate\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\n\
         X-Visible: yes\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    let req = up.last_request();
    for h in [
        "connection",
        "x-secret",
        "x-other-secret",
        "keep-alive",
        "upgrade",
        "proxy-connection",
    ] {
        assert!(
            !req.has_header(h),
            "`{h}` reached the upstream: {:?}",
            req.headers
        );
    }
    assert_eq!(req.headers_named("te"), vec!["trailers"]);
    assert_eq!(req.header("x-visible"), Some("yes"));
    assert_eq!(req.header("host"), Some("test"));

    c.send("GET /hop2 HTTP/1.1\r\nHost: test\r\nTE: gzip\r\n\r\n");
    c.read_response().unwrap();
    let req = up.last_request();
    assert!(
        !req.has_header("te"),
        "TE without `trailers` must not be forwarded: {:?}",
        req.headers
    );
}

#[test]
fn hop_by_hop_response_headers_are_removed() {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Up-Secret\r\n\
         X-Up-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
         Upgrade: h2c\r\nX-Up-Visible: v\r\n\r\nok",
    ));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /resp-hop HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "ok");
    for h in [
        "connection",
        "x-up-secret",
        "keep-alive",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            r.header(h).is_none(),
            "`{h}` reached the client: {:?}",
            r.headers
        );
    }
    assert_eq!(r.header("x-up-visible"), Some("v"));
}

#[test]
fn forwarding_headers_are_set() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);

    c.send("GET /xff HTTP/1.1\r\nHost: test\r\n\r\n");
    c.read_response().unwrap();
    let req = up.last_request();
    assert_eq!(req.headers_named("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(req.headers_named("x-forwarded-proto"), vec!["http"]);

    c.send("GET /xff HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n");
    c.read_response().unwrap();
    let req = up.last_request();
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        vec!["10.0.0.1,127.0.0.1"]
    );
    assert_eq!(req.headers_named("x-forwarded-proto"), vec!["http"]);

    c.send("GET /xff HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n");
    c.read_response().unwrap();
    let req = up.last_request();
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        vec!["10.0.0.1,10.0.0.2,127.0.0.1"]
    );
}

#[test]
fn head_request_gets_headers_only_and_connection_continues() {
    let up = Upstream::start(fixed("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..2 {
        c.send("HEAD /h HTTP/1.1\r\nHost: test\r\n\r\n");
        let r = c.read_response_to("HEAD").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("11"));
    }
    assert!(c.pending().is_empty(), "a HEAD response must have no body");
}

// ---- Routing ----

fn routing_config(upstream: std::net::SocketAddr) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
route_tables:
  - name: main
    virtual_hosts:
      - name: exact
        domains: [\"api.example.com\"]
        routes:
          - match: {{ path: /exact }}
            direct_response: {{ status: 200, body: \"exact-path\" }}
          - match: {{ prefix: /echo/ }}
            cluster: backend
          - match: {{ prefix: /h, headers: [{{ name: x-canary, exact: \"yes\" }}] }}
            direct_response: {{ status: 200, body: \"canary\" }}
          - match: {{ prefix: /h, headers: [{{ name: x-tenant, prefix: \"team-\" }}] }}
            direct_response: {{ status: 200, body: \"tenant\" }}
          - match: {{ prefix: /h, headers: [{{ name: x-debug, present: true }}] }}
            direct_response: {{ status: 200, body: \"debug\" }}
          - match: {{ prefix: /h, headers: [{{ name: x-env, exact: prod, invert: true }}] }}
            direct_response: {{ status: 200, body: \"not-prod\" }}
          - match: {{ prefix: /api }}
            direct_response: {{ status: 200, body: \"api-prefix\" }}
      - name: wildcard
        domains: [\"*.example.com\"]
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200, body: \"suffix\" }}
      - name: fallback
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /only-fallback }}
            direct_response: {{ status: 202, body: \"fallback\", content_type: application/x-test }}
clusters:
  - name: backend
    endpoints:
      - address: 127.0.0.1
        port: {}
",
        upstream.port()
    )
}

fn body_of(proxy: &Proxy, raw: &str) -> (u16, String) {
    let r = exchange(proxy.listen, raw);
    (r.status, r.body_str())
}

fn route(proxy: &Proxy, host: &str, path: &str, extra: &str) -> (u16, String) {
    body_of(
        proxy,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
    )
}

#[test]
fn routing_on_host_exact_suffix_and_any() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&routing_config(up.addr));
    assert_eq!(
        route(&proxy, "api.example.com", "/exact", ""),
        (200, "exact-path".into())
    );
    assert_eq!(
        route(&proxy, "API.Example.COM", "/exact", ""),
        (200, "exact-path".into())
    );
    // As Envoy: the port is part of the Host the domains are matched against (unless
    // the table sets `ignore_port_in_host_matching`), so this falls to `*`.
    assert_eq!(
        route(&proxy, "api.example.com:8080", "/exact", ""),
        (404, "".into())
    );
    assert_eq!(
        route(&proxy, "foo.example.com", "/anything", ""),
        (200, "suffix".into())
    );
    assert_eq!(
        route(&proxy, "a.b.example.com", "/", ""),
        (200, "suffix".into())
    );
    assert_eq!(
        route(&proxy, "other.org", "/only-fallback", ""),
        (202, "fallback".into())
    );
    // `*.example.com` needs something before the dot: the bare domain falls to `*`.
    assert_eq!(
        route(&proxy, "example.com", "/only-fallback", ""),
        (202, "fallback".into())
    );
    assert_eq!(route(&proxy, "example.com", "/", "").0, 404);
}

#[test]
fn routing_on_absolute_form_target() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&routing_config(up.addr));
    let (status, body) = body_of(
        &proxy,
        "GET http://api.example.com/exact HTTP/1.1\r\nHost: other.org\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status, body.as_str()), (200, "exact-path"));
    let (status, _) = body_of(
        &proxy,
        "GET http://api.example.com/echo/x?y=1 HTTP/1.1\r\nHost: other.org\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let req = up.last_request();
    assert_eq!(
        req.target, "/echo/x?y=1",
        "the upstream gets the origin form"
    );
    assert_eq!(req.headers_named("host"), vec!["api.example.com"]);
}

#[test]
fn routing_on_path_exact_and_prefix() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&routing_config(up.addr));
    let h = "api.example.com";
    assert_eq!(
        route(&proxy, h, "/exact?q=1", ""),
        (200, "exact-path".into())
    );
    // Not exact any more, and no other route matches it.
    assert_eq!(route(&proxy, h, "/exact/more", "").0, 404);
    assert_eq!(route(&proxy, h, "/api", ""), (200, "api-prefix".into()));
    assert_eq!(
        route(&proxy, h, "/api/v1/users", ""),
        (200, "api-prefix".into())
    );
    assert_eq!(route(&proxy, h, "/other", "").0, 404);
    let (status, body) = route(&proxy, h, "/echo/path", "");
    assert_eq!(status, 200);
    assert!(body.contains("target: /echo/path"), "{body}");
}

#[test]
fn routing_on_headers() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&routing_config(up.addr));
    let h = "api.example.com";
    assert_eq!(
        route(&proxy, h, "/h", "X-Canary: yes\r\n"),
        (200, "canary".into())
    );
    // As Envoy: a missing header fails a matcher even when it is inverted.
    assert_eq!(route(&proxy, h, "/h", "X-Canary: no\r\n").0, 404);
    assert_eq!(
        route(&proxy, h, "/h", "X-Tenant: team-blue\r\n"),
        (200, "tenant".into())
    );
    assert_eq!(
        route(&proxy, h, "/h", "X-Tenant: blue\r\nX-Env: dev\r\n"),
        (200, "not-prod".into())
    );
    assert_eq!(
        route(&proxy, h, "/h", "X-Debug: \r\n"),
        (200, "debug".into())
    );
    assert_eq!(
        route(&proxy, h, "/h", "X-Env: dev\r\n"),
        (200, "not-prod".into())
    );
    assert_eq!(route(&proxy, h, "/h", "X-Env: prod\r\n").0, 404);
}

#[test]
fn direct_response_route() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&routing_config(up.addr));
    let r = get(proxy.listen, "whatever", "/only-fallback/x");
    assert_eq!(r.status, 202);
    assert_eq!(r.body_str(), "fallback");
    assert_eq!(r.header("content-type"), Some("application/x-test"));
    assert_eq!(r.header("content-length"), Some("8"));
    // A small request body is read and discarded; the connection stays in step.
    let mut c = Conn::connect(proxy.listen);
    c.send("POST /only-fallback HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789");
    assert_eq!(c.read_response().unwrap().status, 202);
    c.send("HEAD /only-fallback HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read_response_to("HEAD").unwrap();
    assert_eq!(r.status, 202);
    c.send("GET /only-fallback HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (202, "fallback"));
    assert_eq!(
        up.connections(),
        0,
        "direct responses never touch the upstream"
    );
}

#[test]
fn no_route_is_404_and_keeps_the_connection() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&routing_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /nothing HTTP/1.1\r\nHost: other.org\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 404);
    c.send("GET /only-fallback HTTP/1.1\r\nHost: other.org\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 202);
    assert_eq!(up.connections(), 0);
}

#[test]
fn connection_header_cannot_strip_host() {
    // `Connection` may name end-to-end headers to drop, but the request sent upstream is
    // an HTTP/1.1 request and must carry the Host it was routed on (RFC 9112 section
    // 3.2). Otherwise a client can send the upstream a request without Host at all.
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let r = exchange(
        proxy.listen,
        "GET /strip-host HTTP/1.1\r\nHost: a.example\r\nConnection: host\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let req = up.last_request();
    assert_eq!(
        req.headers_named("host"),
        vec!["a.example"],
        "upstream head:\n{}",
        String::from_utf8_lossy(&req.raw_head)
    );
}

#[test]
fn close_delimited_upstream_response_is_forwarded_and_closes() {
    let up = Upstream::start(fixed_then_close(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    ));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /eof HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "until the end");
    assert!(r.says_close(), "{:?}", r.headers);
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn interim_responses_from_the_upstream_are_not_forwarded_as_final() {
    let up = Upstream::start(fixed(
        "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone",
    ));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
    let (_interim, r) = c.read_final().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "done"));
    c.send("GET /again HTTP/1.1\r\nHost: test\r\n\r\n");
    let (_, r) = c.read_final().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "done"));
    assert!(c.pending().is_empty());
}

#[test]
fn status_and_headers_of_the_upstream_are_preserved() {
    let up = Upstream::start(fixed(
        "HTTP/1.1 201 Created\r\nLocation: /things/1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
    ));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let r = get(proxy.listen, "test", "/things");
    assert_eq!(r.status, 201);
    assert_eq!(r.reason, "Created");
    assert_eq!(r.header("location"), Some("/things/1"));
    assert_eq!(r.headers_named("set-cookie"), vec!["a=1", "b=2"]);
}

#[test]
fn no_body_statuses_do_not_wait_for_a_body() {
    let up = Upstream::start(fixed("HTTP/1.1 204 No Content\r\n\r\n"));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..3 {
        c.send("DELETE /x HTTP/1.1\r\nHost: test\r\n\r\n");
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 204);
        assert!(r.header("transfer-encoding").is_none());
    }
    assert_eq!(up.connections(), 1);
}

#[test]
fn expect_100_continue_is_ignored_for_http10_clients() {
    // RFC 9110 section 10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be
    // ignored; section 15.2: a server MUST NOT send a 1xx response to an HTTP/1.0 client.
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send("POST /expect10 HTTP/1.0\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
    let r = c.read_response().unwrap();
    assert_eq!(
        r.status, 200,
        "an HTTP/1.0 client got a {} interim response",
        r.status
    );
    assert_eq!(up.last_request().body, b"hello");
}

#[test]
fn http11_connection_close_is_honoured() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /bye HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.says_close(), "{:?}", r.headers);
    assert!(c.closed_within(Duration::from_secs(2)));
    // The upstream connection is still pooled: the close was hop-by-hop.
    assert_eq!(get(proxy.listen, "test", "/again").status, 200);
    assert_eq!(up.connections(), 1);
}

#[test]
fn http10_upstream_connections_are_not_reused() {
    let up = Upstream::start(fixed("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..3 {
        c.send("GET /old-upstream HTTP/1.1\r\nHost: test\r\n\r\n");
        let r = c.read_response().unwrap();
        assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    }
    assert_eq!(
        up.connections(),
        3,
        "an HTTP/1.0 upstream without keep-alive was reused"
    );
}

#[test]
fn concurrent_keep_alive_clients_share_a_small_upstream_pool() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let addr = proxy.listen;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Conn::connect(addr);
                for i in 0..50 {
                    c.send(format!("GET /c/{t}/{i} HTTP/1.1\r\nHost: test\r\n\r\n"));
                    let r = c.read_response().unwrap();
                    assert_eq!(r.status, 200);
                    assert!(Echoed::parse(&r.body)
                        .text
                        .contains(&format!("target: /c/{t}/{i}\n")));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(up.request_count(), 200);
    assert!(
        up.connections() <= 4,
        "4 concurrent clients needed {} upstream connections",
        up.connections()
    );
}

fn two_endpoint_config(a: std::net::SocketAddr, b: std::net::SocketAddr, policy: &str) -> String {
    proxy_config(a).replace(
        "    endpoints:\n",
        &format!(
            "    lb_policy: {policy}\n    endpoints:\n      - address: 127.0.0.1\n        port: {}\n        weight: 3\n",
            b.port()
        ),
    )
}

#[test]
fn round_robin_follows_weights() {
    let a = Upstream::echo();
    let b = Upstream::echo();
    let proxy = Proxy::start(&two_endpoint_config(a.addr, b.addr, "round_robin"));
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..40 {
        c.send("GET /rr HTTP/1.1\r\nHost: test\r\n\r\n");
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    assert_eq!((a.request_count(), b.request_count()), (10, 30));
}

#[test]
fn least_request_and_random_use_every_endpoint() {
    for policy in ["least_request", "random"] {
        let a = Upstream::echo();
        let b = Upstream::echo();
        let proxy = Proxy::start(&two_endpoint_config(a.addr, b.addr, policy));
        let mut c = Conn::connect(proxy.listen);
        for _ in 0..60 {
            c.send("GET /lb HTTP/1.1\r\nHost: test\r\n\r\n");
            assert_eq!(c.read_response().unwrap().status, 200);
        }
        assert_eq!(a.request_count() + b.request_count(), 60);
        assert!(
            a.request_count() > 0 && b.request_count() > 0,
            "{policy}: {} / {}",
            a.request_count(),
            b.request_count()
        );
    }
}

#[test]
fn pool_limits_are_applied() {
    // max_idle_per_endpoint: 0 disables reuse.
    let up = Upstream::echo();
    let cfg = proxy_config(up.addr).replace(
        "    endpoints:\n",
        "    pool: { max_idle_per_endpoint: 0 }\n    endpoints:\n",
    );
    let proxy = Proxy::start(&cfg);
    for _ in 0..3 {
        assert_eq!(get(proxy.listen, "t", "/nopool").status, 200);
    }
    assert_eq!(up.connections(), 3);
    drop(proxy);

    // An idle pooled connection older than pool.idle_timeout is not used.
    let up = Upstream::echo();
    let cfg = proxy_config(up.addr).replace(
        "    endpoints:\n",
        "    pool: { idle_timeout: 200ms }\n    endpoints:\n",
    );
    let proxy = Proxy::start(&cfg);
    assert_eq!(get(proxy.listen, "t", "/a").status, 200);
    assert_eq!(get(proxy.listen, "t", "/b").status, 200);
    assert_eq!(up.connections(), 1);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(get(proxy.listen, "t", "/c").status, 200);
    assert_eq!(
        up.connections(),
        2,
        "an expired pooled connection was reused"
    );
}

#[test]
fn idle_downstream_connection_is_closed_after_idle_timeout() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config_with(
        up.addr,
        "5s",
        "    idle_timeout: 300ms\n",
    ));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /idle HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    let start = std::time::Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "idle connection not closed"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "closed too early: {took:?}"
    );
}

#[test]
fn upstream_connection_close_is_hop_by_hop() {
    let up = Upstream::start(fixed_then_close(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..3 {
        c.send("GET /uc HTTP/1.1\r\nHost: test\r\n\r\n");
        let r = c.read_response().unwrap();
        assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
        assert!(
            !r.says_close(),
            "the upstream's close leaked to the client: {:?}",
            r.headers
        );
    }
    assert_eq!(up.connections(), 3);
}

#[test]
fn client_leaving_a_download_releases_the_upstream_connection() {
    let up = Upstream::start(large_body(512 << 20, false));
    let proxy = Proxy::start(&proxy_config_with(
        up.addr,
        "60s",
        "    access_log:\n      path: @DIR@/access.log\n      format: '%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%'\n",
    ));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /big HTTP/1.1\r\nHost: test\r\n\r\n");
    let mut buf = [0u8; 65536];
    let mut got = 0;
    while got < (1 << 20) {
        got += std::io::Read::read(&mut c.stream, &mut buf).unwrap();
    }
    drop(c);
    let released = wait_until(Duration::from_secs(5), || {
        (up.open_connections() == 0).then_some(())
    });
    assert!(
        released.is_some(),
        "the upstream connection of an abandoned download stays open"
    );
    let line = wait_for_line(&proxy.dir.join("access.log"), Duration::from_secs(5), |l| {
        l.starts_with("/big ")
    });
    assert_eq!(line.as_deref(), Some("/big 200 DC"));
    assert_eq!(proxy.cluster_stats("backend")["endpoints"][0]["cx_idle"], 0);
}
