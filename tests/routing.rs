//! Route matching and route actions through the real binary: every matcher (path,
//! prefix, path_separated_prefix, safe_regex, case_sensitive, header matchers on
//! pseudo-headers too, query parameters, gRPC, runtime fraction), domain lookup, and
//! every action (weighted clusters, cluster_header, prefix and regex rewrites, Host
//! rewrites, redirects, direct responses) with HTTP/1.1 and HTTP/2 clients, and the
//! rewrites on all four protocol paths (HTTP/1.1 and HTTP/2 clients x HTTP/1.1 and
//! HTTP/2 upstreams). The expected answers are Envoy 1.40's (checked by hand against
//! the Envoy binary; see docs/configuration.md, "Routing").

mod common;
mod h2client;

use std::net::SocketAddr;

use common::*;
use h2client::{connect, request, send};

/// The routes every test uses; `@H1@` / `@H2@` are the clusters' upstream ports.
const ROUTES: &str = r#"
route_tables:
  - name: main
    virtual_hosts:
      - name: exact
        domains: ["api.example.com"]
        routes:
          - match: { prefix: / }
            direct_response: { status: 200, body: exact-host }
      - name: suffix
        domains: ["*.example.com"]
        routes:
          - match: { prefix: / }
            direct_response: { status: 200, body: suffix-host }
      - name: prefix
        domains: ["internal.*"]
        routes:
          - match: { prefix: / }
            direct_response: { status: 200, body: prefix-host }
      - name: via-h2
        domains: ["h2.test"]
        routes:
          - match: { prefix: /pre/ }
            cluster: h2
            prefix_rewrite: /new/
          - match: { safe_regex: { regex: '/rx/[a-z]+/.*' } }
            cluster: h2
            regex_rewrite: { pattern: { regex: '^/rx/([a-z]+)/(.*)$' }, substitution: '/\2/\1' }
          - match: { prefix: /host }
            cluster: h2
            host_rewrite_literal: rewritten.example
          - match: { prefix: / }
            cluster: h2
      - name: all
        domains: ["*"]
        routes:
          - match: { path: /exact }
            direct_response: { status: 200, body: exact-path }
          - match: { path: /CaseLess, case_sensitive: false }
            direct_response: { status: 200, body: caseless }
          - match: { path_separated_prefix: /sep }
            direct_response: { status: 200, body: separated }
          - match: { safe_regex: { regex: '/items/[0-9]+' } }
            direct_response: { status: 200, body: regex-path }
          - match: { prefix: /m, headers: [{ name: ':method', string_match: { exact: DELETE } }] }
            direct_response: { status: 200, body: method }
          - match: { prefix: /m, headers: [{ name: x-v, exact_match: v1 }] }
            direct_response: { status: 200, body: exact }
          - match: { prefix: /m, headers: [{ name: x-v, string_match: { prefix: pre- } }] }
            direct_response: { status: 200, body: prefix }
          - match: { prefix: /m, headers: [{ name: x-v, suffix_match: -suf }] }
            direct_response: { status: 200, body: suffix }
          - match: { prefix: /m, headers: [{ name: x-v, string_match: { contains: MID, ignore_case: true } }] }
            direct_response: { status: 200, body: contains }
          - match: { prefix: /m, headers: [{ name: x-v, safe_regex_match: { regex: 'v[0-9]{3}' } }] }
            direct_response: { status: 200, body: regex }
          - match: { prefix: /m, headers: [{ name: x-n, range_match: { start: 100, end: 200 } }] }
            direct_response: { status: 200, body: range }
          - match: { prefix: /m, headers: [{ name: x-p, present_match: true }] }
            direct_response: { status: 200, body: present }
          - match: { prefix: /m, headers: [{ name: x-env, exact_match: prod, invert_match: true }] }
            direct_response: { status: 200, body: inverted }
          - match: { prefix: /m, headers: [{ name: x-e, exact_match: '', treat_missing_header_as_empty: true }] }
            direct_response: { status: 200, body: missing-as-empty }
          - match: { prefix: /q, query_parameters: [{ name: debug, present_match: true }, { name: v, string_match: { exact: '2' } }] }
            direct_response: { status: 200, body: query }
          - match: { prefix: /g, grpc: {} }
            direct_response: { status: 200, body: grpc }
          - match: { prefix: /rf, runtime_fraction: { default_value: { numerator: 0 } } }
            direct_response: { status: 200, body: never }
          - match: { prefix: /rf, runtime_fraction: { default_value: { numerator: 100 } } }
            direct_response: { status: 200, body: always }
          - match: { prefix: /w }
            weighted_clusters: { clusters: [{ name: h1, weight: 0 }, { name: other, weight: 3 }] }
          - match: { prefix: /ch404 }
            cluster_header: x-cluster
            cluster_not_found_response_code: NOT_FOUND
          - match: { prefix: /ch }
            cluster_header: x-cluster
          - match: { prefix: /pre/ }
            cluster: h1
            prefix_rewrite: /new/
          - match: { safe_regex: { regex: '/rx/[a-z]+/.*' } }
            cluster: h1
            regex_rewrite: { pattern: { regex: '^/rx/([a-z]+)/(.*)$' }, substitution: '/\2/\1' }
          - match: { prefix: /host }
            cluster: h1
            host_rewrite_literal: rewritten.example
          - match: { prefix: /auto-ip }
            cluster: h1
            auto_host_rewrite: true
          - match: { prefix: /auto }
            cluster: named
            auto_host_rewrite: true
          - match: { prefix: /redir }
            redirect: { host_redirect: new.example.com, prefix_rewrite: /new, response_code: TEMPORARY_REDIRECT }
          - match: { prefix: /https }
            redirect: { https_redirect: true }
          - match: { prefix: /port }
            redirect: { port_redirect: 8443, strip_query: true, response_code: PERMANENT_REDIRECT }
          - match: { prefix: /scheme }
            redirect: { scheme_redirect: ftp, path_redirect: '/p?x=1', response_code: SEE_OTHER }
          - match: { prefix: /found }
            redirect: { regex_rewrite: { pattern: { regex: '^/found/(.*)$' }, substitution: '/z/\1' }, response_code: FOUND }
          - match: { prefix: /file }
            direct_response: { status: 200, body: { filename: '@FILE@' }, content_type: text/html }
          - match: { prefix: /relocated }
            direct_response: { status: 301 }
          - match: { prefix: / }
            cluster: h1
clusters:
  - name: h1
    endpoints: [{ address: 127.0.0.1, port: @H1@ }]
  - name: other
    endpoints: [{ address: 127.0.0.1, port: @OTHER@ }]
  - name: named
    endpoints: [{ address: 127.0.0.1, port: @H1@, hostname: svc.internal }]
  - name: h2
    protocol: http2
    endpoints: [{ address: 127.0.0.1, port: @H2@ }]
"#;

/// The proxy under test and what stands behind it.
struct Setup {
    proxy: Proxy,
    /// The echo server behind clusters `h1` and `named`, and behind `b`.
    up: Upstream,
    other: Upstream,
    /// A second proxy speaking h2c in front of `up`: cluster `h2`'s endpoint. It passes
    /// path and authority on as it gets them, so `up` sees what `h2` received.
    _b: Proxy,
    _dir: TempDir,
}

fn setup() -> Setup {
    let up = Upstream::echo();
    let other = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let dir = TempDir::new("routing");
    let file = dir.join("body.html");
    std::fs::write(&file, "<p>from a file</p>\n").unwrap();
    let routes = ROUTES
        .replace("@H1@", &up.addr.port().to_string())
        .replace("@OTHER@", &other.addr.port().to_string())
        .replace("@H2@", &b.listen.port().to_string())
        .replace("@FILE@", &file.display().to_string());
    let cfg = format!(
        "{HEADER}listeners:\n  - name: main\n    address: 127.0.0.1\n    port: @PORT@\n    route_table: main\n{routes}"
    );
    Setup {
        proxy: Proxy::start(&cfg),
        up,
        other,
        _b: b,
        _dir: dir,
    }
}

/// HTTP/1.1 request with `host` and extra header lines; the response.
fn h1(addr: SocketAddr, method: &str, host: &str, path: &str, extra: &str) -> Response {
    exchange(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
    )
}

fn body(addr: SocketAddr, path: &str, extra: &str) -> (u16, String) {
    let r = h1(addr, "GET", "x.test", path, extra);
    (r.status, r.body_str())
}

#[test]
fn domains_in_envoy_order_and_ports_kept() {
    let s = setup();
    let a = s.proxy.listen;
    let host = |h: &str| {
        let r = h1(a, "GET", h, "/exact", "");
        (r.status, r.body_str())
    };
    assert_eq!(host("API.Example.com"), (200, "exact-host".into()));
    assert_eq!(host("deep.a.example.com"), (200, "suffix-host".into()));
    assert_eq!(host("internal.svc"), (200, "prefix-host".into()));
    // A port is part of the Host (Envoy's default): `*` takes it.
    assert_eq!(host("api.example.com:8080"), (200, "exact-path".into()));
    assert_eq!(host("unknown"), (200, "exact-path".into()));
}

#[test]
fn path_matchers() {
    let s = setup();
    let a = s.proxy.listen;
    assert_eq!(body(a, "/exact?x=1", ""), (200, "exact-path".into()));
    assert_eq!(body(a, "/caseless", ""), (200, "caseless".into()));
    assert_eq!(body(a, "/sep", ""), (200, "separated".into()));
    assert_eq!(body(a, "/sep/more", ""), (200, "separated".into()));
    assert_eq!(body(a, "/items/42?x", ""), (200, "regex-path".into()));
    // Not matched by those: the catch-all sends them to the echo upstream.
    for p in ["/exact/x", "/separately", "/items/4x2"] {
        let (status, b) = body(a, p, "");
        assert_eq!(status, 200);
        assert!(b.contains(&format!("target: {p}\n")), "{p}: {b}");
    }
}

#[test]
fn header_query_grpc_and_fraction_matchers() {
    let s = setup();
    let a = s.proxy.listen;
    let m = |extra: &str| body(a, "/m", extra).1;
    assert_eq!(h1(a, "DELETE", "x.test", "/m", "").body_str(), "method");
    assert_eq!(m("x-v: v1\r\n"), "exact");
    assert_eq!(m("x-v: pre-x\r\n"), "prefix");
    assert_eq!(m("x-v: a-suf\r\n"), "suffix");
    assert_eq!(m("x-v: amidb\r\n"), "contains");
    assert_eq!(m("x-v: v123\r\n"), "regex");
    assert_eq!(m("x-n: 150\r\n"), "range");
    assert_eq!(m("x-p: \r\n"), "present");
    assert_eq!(m("x-env: dev\r\n"), "inverted");
    // A missing header fails even an inverted matcher; this one treats it as "".
    assert_eq!(m(""), "missing-as-empty");
    assert!(m("x-n: 200\r\nx-e: e\r\n").contains("target: /m"));
    // One of several fields matching is enough (Envoy 1.40).
    assert_eq!(m("x-v: zzz\r\nx-v: v1\r\n"), "exact");
    assert_eq!(body(a, "/q?v=2&debug", "").1, "query");
    assert!(body(a, "/q?v=3&debug", "")
        .1
        .contains("target: /q?v=3&debug"));
    // A gRPC request gets the direct response in Envoy's gRPC form: 200, grpc-status
    // UNKNOWN (2) for a 200, the body in grpc-message, no body.
    let g = h1(
        a,
        "GET",
        "x.test",
        "/g",
        "content-type: application/grpc\r\n",
    );
    assert_eq!(g.status, 200);
    assert_eq!(g.header("content-type"), Some("application/grpc"));
    assert_eq!(g.header("grpc-status"), Some("2"));
    assert_eq!(g.header("grpc-message"), Some("grpc"));
    assert_eq!(g.body_str(), "");
    assert!(body(a, "/g", "").1.contains("target: /g"));
    assert_eq!(body(a, "/rf", "").1, "always");
}

#[test]
fn weighted_clusters_and_cluster_header() {
    let s = setup();
    let a = s.proxy.listen;
    // A zero weight is never picked.
    for _ in 0..10 {
        assert_eq!(body(a, "/w", "").0, 200);
    }
    assert_eq!(s.other.requests().len(), 10);
    assert!(s.up.requests().is_empty());
    assert_eq!(body(a, "/ch", "x-cluster: other\r\n").0, 200);
    assert_eq!(s.other.requests().len(), 11);
    // Unknown or missing: 503, no body, flag NC (Envoy's cluster_not_found).
    for extra in ["x-cluster: nope\r\n", ""] {
        let r = h1(a, "GET", "x.test", "/ch", extra);
        assert_eq!(r.status, 503);
        assert_eq!(r.body_str(), "");
        assert_eq!(r.header("content-length"), Some("0"));
    }
    assert_eq!(h1(a, "GET", "x.test", "/ch404", "").status, 404);
    let stats = s.proxy.listener_stats("main");
    assert_eq!(flag_count(&stats, "NC"), 3, "{stats}");
}

/// What the echo upstream received: (target, Host, x-envoy-original-path,
/// x-envoy-original-host).
fn seen(up: &Upstream) -> (String, String, Option<String>, Option<String>) {
    let r = up.last_request();
    (
        r.target.clone(),
        r.header("host").unwrap_or_default().to_string(),
        r.header("x-envoy-original-path").map(str::to_string),
        r.header("x-envoy-original-host").map(str::to_string),
    )
}

/// Sends `GET path` to `host` with an optional extra header, expecting a 200.
type Get<'a> = &'a dyn Fn(&str, &str, Option<(&str, &str)>);

/// The rewrites, sent by `get(host, path, extra header)`, arrive at `up`.
fn check_rewrites(up: &Upstream, host: &str, get: Get<'_>) {
    get(
        host,
        "/pre/a/b?q=1",
        Some(("x-envoy-original-path", "/spoofed")),
    );
    assert_eq!(
        seen(up),
        (
            "/new/a/b?q=1".into(),
            host.into(),
            Some("/pre/a/b?q=1".into()),
            None
        )
    );
    get(host, "/rx/abc/def?k=v", None);
    assert_eq!(
        seen(up),
        (
            "/def/abc?k=v".into(),
            host.into(),
            Some("/rx/abc/def?k=v".into()),
            None
        )
    );
    get(host, "/host/x", None);
    assert_eq!(
        seen(up),
        (
            "/host/x".into(),
            "rewritten.example".into(),
            None,
            Some(host.into())
        )
    );
    // No rewrite: the client's own x-envoy-original-path passes (as Envoy).
    get(host, "/plain", Some(("x-envoy-original-path", "/mine")));
    assert_eq!(
        seen(up),
        ("/plain".into(), host.into(), Some("/mine".into()), None)
    );
}

fn h1_get(addr: SocketAddr) -> impl Fn(&str, &str, Option<(&str, &str)>) {
    move |host, path, extra| {
        let extra = extra.map_or(String::new(), |(n, v)| format!("{n}: {v}\r\n"));
        let r = h1(addr, "GET", host, path, &extra);
        assert_eq!(r.status, 200, "{path}: {}", r.body_str());
    }
}

fn h2_get(addr: SocketAddr) -> impl Fn(&str, &str, Option<(&str, &str)>) {
    move |host, path, extra| {
        let uri = format!("http://{host}{path}");
        let extra = extra.map(|(n, v)| (n.to_string(), v.to_string()));
        let status = h2client::run(move || async move {
            let mut c = connect(addr).await;
            let mut b = request("GET", &uri);
            if let Some((n, v)) = extra {
                b = b.header(n, v);
            }
            send(&mut c, b.body(()).unwrap(), b"").await.status
        });
        assert_eq!(status, 200, "{path}");
    }
}

#[test]
fn rewrites_http1_client_to_http1_upstream() {
    let s = setup();
    check_rewrites(&s.up, "x.test", &h1_get(s.proxy.listen));
}

#[test]
fn rewrites_http1_client_to_http2_upstream() {
    let s = setup();
    check_rewrites(&s.up, "h2.test", &h1_get(s.proxy.listen));
}

#[test]
fn rewrites_http2_client_to_http1_upstream() {
    let s = setup();
    check_rewrites(&s.up, "x.test", &h2_get(s.proxy.listen));
}

#[test]
fn rewrites_http2_client_to_http2_upstream() {
    let s = setup();
    check_rewrites(&s.up, "h2.test", &h2_get(s.proxy.listen));
}

#[test]
fn auto_host_rewrite_uses_the_endpoint_hostname() {
    let s = setup();
    let a = s.proxy.listen;
    assert_eq!(body(a, "/auto", "").0, 200);
    assert_eq!(
        seen(&s.up),
        (
            "/auto".into(),
            "svc.internal".into(),
            None,
            Some("x.test".into())
        )
    );
    // A plain IP endpoint has no hostname: Host stays (Envoy's STATIC clusters).
    assert_eq!(body(a, "/auto-ip", "").0, 200);
    assert_eq!(
        seen(&s.up),
        ("/auto-ip".into(), "x.test".into(), None, None)
    );
    // The same over HTTP/2 (the cluster's endpoints share the hostname).
    h2_get(a)("x.test", "/auto", None);
    assert_eq!(
        seen(&s.up),
        (
            "/auto".into(),
            "svc.internal".into(),
            None,
            Some("x.test".into())
        )
    );
    h2_get(a)("x.test", "/auto-ip", None);
    assert_eq!(
        seen(&s.up),
        ("/auto-ip".into(), "x.test".into(), None, None)
    );
}

#[test]
fn redirects_http1() {
    let s = setup();
    let a = s.proxy.listen;
    let redirect = |host: &str, path: &str| {
        let r = h1(a, "GET", host, path, "");
        assert_eq!(r.body_str(), "");
        assert_eq!(r.header("content-length"), Some("0"));
        (
            r.status,
            r.header("location").unwrap_or_default().to_string(),
        )
    };
    assert_eq!(
        redirect("x.test:8080", "/redir/a?q=1"),
        (307, "http://new.example.com/new/a?q=1".into())
    );
    assert_eq!(
        redirect("x.test:80", "/https/x?y"),
        (301, "https://x.test/https/x?y".into())
    );
    assert_eq!(
        redirect("x.test:8080", "/https/x"),
        (301, "https://x.test:8080/https/x".into())
    );
    assert_eq!(
        redirect("x.test", "/port/x?y=1"),
        (308, "http://x.test:8443/port/x".into())
    );
    assert_eq!(
        redirect("x.test", "/scheme/s?q"),
        (303, "ftp://x.test/p?x=1".into())
    );
    assert_eq!(
        redirect("x.test", "/found/abc?k=v"),
        (302, "http://x.test/z/abc?k=v".into())
    );
}

#[test]
fn redirects_and_direct_responses_http2() {
    let s = setup();
    let addr = s.proxy.listen;
    let replies = h2client::run(move || async move {
        let mut c = connect(addr).await;
        let mut out = Vec::new();
        for uri in [
            "http://x.test/redir/a?q=1",
            "http://x.test/file",
            "http://x.test/relocated?x=1",
        ] {
            let r = send(&mut c, request("GET", uri).body(()).unwrap(), b"").await;
            out.push((
                r.status,
                r.header("location").map(str::to_string),
                r.header("content-type").map(str::to_string),
                r.body_str(),
            ));
        }
        out
    });
    assert_eq!(
        replies[0],
        (
            307,
            Some("http://new.example.com/new/a?q=1".into()),
            None,
            "".into()
        )
    );
    assert_eq!(
        replies[1],
        (
            200,
            None,
            Some("text/html".into()),
            "<p>from a file</p>\n".into()
        )
    );
    // A 3xx direct response carries the request's URL as its location (Envoy).
    assert_eq!(
        replies[2],
        (
            301,
            Some("http://x.test/relocated?x=1".into()),
            None,
            "".into()
        )
    );
}

#[test]
fn direct_response_from_a_file_http1() {
    let s = setup();
    let r = h1(s.proxy.listen, "GET", "x.test", "/file", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.body_str(), "<p>from a file</p>\n");
    assert_eq!(r.header("location"), None);
    let r = h1(s.proxy.listen, "GET", "x.test", "/relocated", "");
    assert_eq!(r.header("location"), Some("http://x.test/relocated"));
}

#[test]
fn h2_header_matchers_see_pseudo_headers() {
    let s = setup();
    let addr = s.proxy.listen;
    let (m, v) = h2client::run(move || async move {
        let mut c = connect(addr).await;
        let m = send(
            &mut c,
            request("DELETE", "http://x.test/m").body(()).unwrap(),
            b"",
        )
        .await
        .body_str();
        let v = send(
            &mut c,
            request("GET", "http://x.test/m")
                .header("x-v", "pre-1")
                .body(())
                .unwrap(),
            b"",
        )
        .await
        .body_str();
        (m, v)
    });
    assert_eq!((m.as_str(), v.as_str()), ("method", "prefix"));
}

#[test]
fn validation_errors_name_the_field() {
    let bad = ROUTES
        .replace("@H1@", "1")
        .replace("@OTHER@", "2")
        .replace("@H2@", "3")
        .replace("@FILE@", "/nonexistent/body")
        .replace("'/items/[0-9]+'", "'/items/[0-9'");
    let dir = TempDir::new("routing-invalid");
    let path = dir.join("bad.yaml");
    std::fs::write(&path, &bad).unwrap();
    let out = run_cli(
        &["validate", "-c", path.to_str().unwrap()],
        std::time::Duration::from_secs(20),
    );
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("route_tables[0].virtual_hosts[4].routes[3].match.safe_regex"),
        "{err}"
    );
    assert!(err.contains(".direct_response.body.filename"), "{err}");
}

/// Envoy's strip_any_host_port / strip_matching_host_port: the port goes before routing,
/// and the upstream gets the Host without it.
#[test]
fn connection_manager_strips_the_port() {
    let up = Upstream::echo();
    let cfg = format!(
        "{HEADER}listeners:
  - name: any
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    strip_any_host_port: true
  - name: matching
    address: 127.0.0.1
    port: @PORT2@
    route_table: main
    strip_matching_host_port: true
route_tables:
  - name: main
    virtual_hosts:
      - name: api
        domains: [api.test]
        routes:
          - match: {{ prefix: / }}
            cluster: h1
      - name: all
        domains: ['*']
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200, body: star }}
clusters:
  - name: h1
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        up.addr.port()
    );
    let proxy = Proxy::start(&cfg);
    let r = h1(proxy.listen, "GET", "api.test:8080", "/a", "");
    assert_eq!(r.status, 200);
    assert_eq!(up.last_request().header("host"), Some("api.test"));
    let own = format!("api.test:{}", proxy.listen2.port());
    let r = h1(proxy.listen2, "GET", &own, "/b", "");
    assert_eq!(r.status, 200);
    assert_eq!(up.last_request().target, "/b");
    assert_eq!(up.last_request().header("host"), Some("api.test"));
    // Another port stays, and the domain does not match it.
    let r = h1(proxy.listen2, "GET", "api.test:8080", "/c", "");
    assert_eq!(r.body_str(), "star");
    // HTTP/2: the :authority loses its port too.
    h2_get(proxy.listen)("api.test:8080", "/d", None);
    assert_eq!(up.last_request().target, "/d");
    assert_eq!(up.last_request().header("host"), Some("api.test"));
}

/// A request (method, URI, header fields) and the body its route answers with.
type Case = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

/// The matchers over HTTP/2 streams: the same routes, the same answers as HTTP/1.1.
#[test]
fn matchers_over_http2() {
    let s = setup();
    let addr = s.proxy.listen;
    let cases: Vec<Case> = vec![
        ("GET", "http://API.example.com/x", vec![], "exact-host"),
        ("GET", "http://a.example.com/x", vec![], "suffix-host"),
        ("GET", "http://internal.svc/x", vec![], "prefix-host"),
        ("GET", "http://x.test/exact?q=1", vec![], "exact-path"),
        ("GET", "http://x.test/CASELESS", vec![], "caseless"),
        ("GET", "http://x.test/sep/x", vec![], "separated"),
        ("GET", "http://x.test/items/7", vec![], "regex-path"),
        ("GET", "http://x.test/m", vec![("x-v", "a-suf")], "suffix"),
        ("GET", "http://x.test/m", vec![("x-v", "xMIDx")], "contains"),
        ("GET", "http://x.test/m", vec![("x-v", "v999")], "regex"),
        ("GET", "http://x.test/m", vec![("x-n", "100")], "range"),
        ("GET", "http://x.test/m", vec![("x-p", "1")], "present"),
        ("GET", "http://x.test/m", vec![("x-env", "qa")], "inverted"),
        ("GET", "http://x.test/m", vec![], "missing-as-empty"),
        ("GET", "http://x.test/q?debug&v=2", vec![], "query"),
        (
            "POST",
            "http://x.test/g",
            vec![("content-type", "application/grpc")],
            "grpc",
        ),
        ("GET", "http://x.test/rf", vec![], "always"),
    ];
    let got = h2client::run(move || async move {
        let mut c = connect(addr).await;
        let mut out = Vec::new();
        for (method, uri, headers, _) in &cases {
            let mut b = request(method, uri);
            for (n, v) in headers {
                b = b.header(*n, *v);
            }
            let r = send(&mut c, b.body(()).unwrap(), b"").await;
            // A gRPC request's direct response comes in grpc-message (Envoy's form).
            let got = match r.header("grpc-message") {
                Some(m) => m.to_string(),
                None => r.body_str(),
            };
            out.push((uri.to_string(), got));
        }
        (
            out,
            cases.iter().map(|c| c.3.to_string()).collect::<Vec<_>>(),
        )
    });
    for ((uri, body), want) in got.0.iter().zip(&got.1) {
        assert_eq!(body, want, "{uri}");
    }
}
