//! Request mirroring (Envoy's `request_mirror_policies`) through the real binary, with
//! HTTP/1.1 and HTTP/2 clients: the mirror upstream gets the request as it went
//! upstream (method, path, headers with the route's edits, body) with its Host
//! suffixed `-shadow` before the port; a slow, silent or refused mirror never changes
//! the client's answer; fractions 0 and 100; the suffix switched off; a
//! `cluster_header` mirror naming no cluster is skipped; and the counters. Bodies that
//! stream (teed to the shadow) are in `tests/mirror_streaming.rs`. No test asserts a
//! timing.

mod common;
mod h2client;

use std::time::Duration;

use common::*;
use h2client::{connect, request, send};

const WAIT: Duration = Duration::from_secs(10);

const CONFIG: &str = r#"
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: { prefix: /basic }
            cluster: primary
            request_headers_to_add: [{ name: x-route, value: added }]
            request_mirror_policies: [{ cluster: mirror }]
          - match: { prefix: /to-h2 }
            cluster: primary
            request_mirror_policies: [{ cluster: mirror_h2 }]
          - match: { prefix: /nosuffix }
            cluster: primary
            request_mirror_policies: [{ cluster: mirror, disable_shadow_host_suffix_append: true }]
          - match: { prefix: /fractions }
            cluster: primary
            request_mirror_policies:
              - { cluster: never, runtime_fraction: { default_value: { numerator: 0 } } }
              - { cluster: mirror, runtime_fraction: { default_value: { numerator: 100 } } }
          - match: { prefix: /header }
            cluster: primary
            request_mirror_policies: [{ cluster_header: x-mirror-to }]
          - match: { prefix: /bad }
            cluster: primary
            timeout: 2s
            request_mirror_policies: [{ cluster: refused }, { cluster: silent }, { cluster: slow }]
clusters:
  - name: primary
    endpoints: [{ address: 127.0.0.1, port: @PRIMARY@ }]
  - name: mirror
    endpoints: [{ address: 127.0.0.1, port: @MIRROR@ }]
  - name: mirror_h2
    protocol: http2
    endpoints: [{ address: 127.0.0.1, port: @MIRROR_H2@ }]
  - name: never
    endpoints: [{ address: 127.0.0.1, port: @NEVER@ }]
  - name: refused
    connect_timeout: 1s
    endpoints: [{ address: 127.0.0.1, port: @REFUSED@ }]
  - name: silent
    connect_timeout: 1s
    endpoints: [{ address: 127.0.0.1, port: @SILENT@ }]
  - name: slow
    endpoints: [{ address: 127.0.0.1, port: @SLOW@ }]
"#;

struct Setup {
    proxy: Proxy,
    primary: Upstream,
    mirror: Upstream,
    /// What the HTTP/2 mirror cluster's endpoint (a second proxy speaking h2c) passed on.
    mirror_h2: Upstream,
    never: Upstream,
    _slow: Upstream,
    _silent: Blackhole,
    _b: Proxy,
}

fn setup() -> Setup {
    let primary = Upstream::echo();
    let mirror = Upstream::echo();
    let mirror_h2 = Upstream::echo();
    let never = Upstream::echo();
    let slow = Upstream::start(delayed(Duration::from_secs(60)));
    let silent = Blackhole::new();
    let b = Proxy::start(&proxy_config(mirror_h2.addr));
    let routes = CONFIG
        .replace("@PRIMARY@", &primary.addr.port().to_string())
        .replace("@MIRROR@", &mirror.addr.port().to_string())
        .replace("@MIRROR_H2@", &b.listen.port().to_string())
        .replace("@NEVER@", &never.addr.port().to_string())
        .replace("@REFUSED@", &refused_addr().port().to_string())
        .replace("@SILENT@", &silent.addr.port().to_string())
        .replace("@SLOW@", &slow.addr.port().to_string());
    let cfg = format!(
        "{HEADER}listeners:\n  - name: main\n    address: 127.0.0.1\n    port: @PORT@\n    route_table: main\n{routes}"
    );
    Setup {
        proxy: Proxy::start(&cfg),
        primary,
        mirror,
        mirror_h2,
        never,
        _slow: slow,
        _silent: silent,
        _b: b,
    }
}

fn h1(s: &Setup, raw: &str) -> Response {
    let mut c = Conn::connect(s.proxy.listen);
    c.send(raw);
    c.read_response().expect("a response")
}

fn h2(s: &Setup, method: &str, authority: &str, path: &str, body: &'static [u8]) -> u16 {
    let addr = s.proxy.listen;
    let uri = format!("http://{authority}{path}");
    let method = method.to_string();
    h2client::run(move || async move {
        let mut c = connect(addr).await;
        let mut req = request(&method, &uri).header("x-client", "h2");
        if !body.is_empty() {
            req = req.header("content-length", body.len().to_string());
        }
        let req = req.body(()).unwrap();
        send(&mut c, req, body).await.status
    })
}

fn last(up: &Upstream) -> Recorded {
    up.requests().pop().expect("a request")
}

fn cluster(s: &Setup, name: &str, stat: &str) -> u64 {
    s.proxy.cluster_stats(name)[stat].as_u64().unwrap_or(0)
}

#[test]
fn an_http1_request_is_mirrored_with_a_shadow_host_headers_and_body() {
    let s = setup();
    let r = h1(
        &s,
        "POST /basic/p?q=1 HTTP/1.1\r\nHost: a.example:8080\r\nx-client: h1\r\ncontent-length: 5\r\n\r\nhello",
    );
    assert_eq!(r.status, 200);
    assert!(s.mirror.wait_requests(1, WAIT), "the mirror got the shadow");
    let m = last(&s.mirror);
    let p = last(&s.primary);
    assert_eq!(m.method, "POST");
    assert_eq!(m.target, "/basic/p?q=1");
    assert_eq!(m.header("host"), Some("a.example-shadow:8080"));
    assert_eq!(p.header("host"), Some("a.example:8080"));
    assert_eq!(m.header("x-client"), Some("h1"));
    assert_eq!(
        m.header("x-route"),
        Some("added"),
        "after the route's edits"
    );
    assert_eq!(m.header("x-forwarded-proto"), p.header("x-forwarded-proto"));
    assert_eq!(m.body, b"hello");
    assert_eq!(p.body, b"hello");
    // The shadow's 200 is counted on the mirror cluster, as Envoy counts it.
    let counted = || (s.proxy.cluster_stats("mirror")["rq_class"][1] == 1).then_some(());
    assert!(wait_until(WAIT, counted).is_some());
    let stats = s.proxy.cluster_stats("mirror");
    assert_eq!(stats["rq_shadow"], 1);
    assert_eq!(stats["rq_total"], 1);
    assert_eq!(stats["rq_shadow_failed"], 0);
}

#[test]
fn an_http2_request_is_mirrored_to_http1_and_http2_clusters() {
    let s = setup();
    assert_eq!(h2(&s, "PUT", "b.example:9090", "/basic/x", b"h2-body"), 200);
    assert!(s.mirror.wait_requests(1, WAIT));
    let m = last(&s.mirror);
    assert_eq!(m.method, "PUT");
    assert_eq!(m.target, "/basic/x");
    assert_eq!(m.header("host"), Some("b.example-shadow:9090"));
    assert_eq!(m.header("x-client"), Some("h2"));
    assert_eq!(m.header("x-route"), Some("added"));
    assert_eq!(m.body, b"h2-body");

    // An HTTP/2 mirror cluster: its endpoint (proxy b) passes the authority on as Host.
    assert_eq!(h2(&s, "GET", "c.example", "/to-h2", b""), 200);
    let r = h1(&s, "GET /to-h2/1 HTTP/1.1\r\nHost: d.example\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(s.mirror_h2.wait_requests(2, WAIT));
    let mut hosts: Vec<String> = s
        .mirror_h2
        .requests()
        .iter()
        .map(|r| r.header("host").unwrap_or_default().to_string())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["c.example-shadow", "d.example-shadow"]);
}

#[test]
fn failing_silent_and_slow_mirrors_do_not_change_the_answer() {
    let s = setup();
    for _ in 0..3 {
        let r = h1(&s, "GET /bad HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.status, 200, "the primary's answer");
        assert!(r.body_str().contains("target: /bad"));
        assert_eq!(h2(&s, "GET", "a", "/bad", b""), 200);
    }
    assert!(s.primary.wait_requests(6, WAIT));
    // Each shadow failed (refused), or ran out of the route timeout (silent, slow).
    let failed = |n: &str| cluster(&s, n, "rq_shadow_failed");
    let done = || (failed("refused") == 6 && failed("silent") == 6).then_some(());
    assert!(wait_until(WAIT, done).is_some(), "{}", s.proxy.stats());
    assert_eq!(cluster(&s, "refused", "rq_shadow"), 6);
    assert!(cluster(&s, "refused", "cx_connect_fail") >= 6);
    assert!(wait_until(WAIT, || (failed("slow") == 6).then_some(())).is_some());
    assert!(cluster(&s, "slow", "rq_timeout") >= 6);
}

#[test]
fn fraction_zero_never_and_fraction_hundred_always_mirror() {
    let s = setup();
    for i in 0..20 {
        let r = h1(
            &s,
            &format!("GET /fractions/{i} HTTP/1.1\r\nHost: a\r\n\r\n"),
        );
        assert_eq!(r.status, 200);
    }
    assert!(s.mirror.wait_requests(20, WAIT));
    assert_eq!(s.never.request_count(), 0);
    assert_eq!(cluster(&s, "never", "rq_shadow"), 0);
    assert_eq!(cluster(&s, "mirror", "rq_shadow"), 20);
}

#[test]
fn the_suffix_can_be_switched_off() {
    let s = setup();
    let r = h1(&s, "GET /nosuffix HTTP/1.1\r\nHost: a.example:8080\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(s.mirror.wait_requests(1, WAIT));
    assert_eq!(last(&s.mirror).header("host"), Some("a.example:8080"));
}

#[test]
fn a_cluster_header_naming_no_cluster_is_skipped() {
    let s = setup();
    let r = h1(
        &s,
        "GET /header/none HTTP/1.1\r\nHost: a\r\nx-mirror-to: nope\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let r = h1(&s, "GET /header/missing HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 200);
    let r = h1(
        &s,
        "GET /header/named HTTP/1.1\r\nHost: a\r\nx-mirror-to: mirror\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(s.mirror.wait_requests(1, WAIT));
    assert_eq!(last(&s.mirror).target, "/header/named");
    assert_eq!(s.mirror.request_count(), 1);
}
