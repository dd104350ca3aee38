//! The HTTP filter chain's first filter and the router's header edits: a listener's
//! `header_mutation` filter, route / virtual-host / route-table header edits, per-route
//! filter overrides, on every protocol path (HTTP/1 and HTTP/2 clients, HTTP/1 and
//! HTTP/2 upstreams) and on direct responses.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Proxy A: a `tag` filter on the listener, edits at every route level, and a cluster in
/// `protocol` towards `upstream`.
fn config(upstream: SocketAddr, protocol: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    http_filters:
      - name: tag
        header_mutation:
          request_headers_to_add:
            - {{ name: x-filter, value: f, append_action: OVERWRITE_IF_EXISTS_OR_ADD }}
          response_headers_to_add:
            - {{ name: x-served-by, value: outrigger }}
          response_headers_to_remove: [x-upstream-conn]
route_tables:
  - name: main
    request_headers_to_add:
      - {{ name: x-table, value: t }}
    response_headers_to_add:
      - {{ name: x-level, value: table }}
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        request_headers_to_add:
          - {{ name: x-vhost, value: v, append_action: ADD_IF_ABSENT }}
        routes:
          - match: {{ prefix: /plain }}
            cluster: backend
            per_filter_config:
              tag: {{ disabled: true }}
          - match: {{ prefix: /other }}
            cluster: backend
            per_filter_config:
              tag:
                header_mutation:
                  request_headers_to_add:
                    - {{ name: x-filter, value: override }}
          - match: {{ prefix: /direct }}
            direct_response: {{ status: 200, body: direct }}
            response_headers_to_add:
              - {{ name: x-route, value: direct }}
          - match: {{ prefix: / }}
            cluster: backend
            request_headers_to_add:
              - {{ name: x-route, value: r }}
              - {{ name: x-vhost, value: from-route }}
            request_headers_to_remove: [x-secret]
clusters:
  - name: backend
    protocol: {protocol}
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        upstream.port()
    )
}

const CLIENT: &str =
    "GET /edit HTTP/1.1\r\nHost: a\r\nX-Secret: s\r\nX-Filter: client\r\nX-Keep: k\r\n\r\n";

/// What every path must deliver for `/edit`.
fn check_request(req: &Recorded) {
    assert_eq!(req.header("x-secret"), None, "{:?}", req.headers);
    assert_eq!(
        req.headers_named("x-filter"),
        vec!["f"],
        "{:?}",
        req.headers
    );
    assert_eq!(req.header("x-route"), Some("r"));
    // The route added x-vhost first, so the virtual host's ADD_IF_ABSENT is skipped.
    assert_eq!(req.headers_named("x-vhost"), vec!["from-route"]);
    assert_eq!(req.header("x-table"), Some("t"));
    assert_eq!(req.header("x-keep"), Some("k"));
}

fn check_response(headers: &dyn Fn(&str) -> Vec<String>) {
    assert_eq!(headers("x-upstream-conn"), Vec::<String>::new());
    assert_eq!(headers("x-served-by"), vec!["outrigger".to_string()]);
    assert_eq!(headers("x-level"), vec!["table".to_string()]);
}

#[test]
fn http1_client_to_http1_upstream() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, "http1"));
    let mut c = Conn::connect(proxy.listen);
    c.send(CLIENT);
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    check_request(&up.last_request());
    check_response(&|n| r.headers_named(n).iter().map(|s| s.to_string()).collect());

    // The filter is off on /plain: the upstream's header comes back, x-filter passes.
    c.send("GET /plain HTTP/1.1\r\nHost: a\r\nX-Filter: client\r\n\r\n");
    let r = c.read_response().unwrap();
    assert!(r.header("x-upstream-conn").is_some(), "{:?}", r.headers);
    assert_eq!(r.header("x-served-by"), None);
    assert_eq!(r.header("x-level"), Some("table"));
    assert_eq!(up.last_request().headers_named("x-filter"), vec!["client"]);

    // /other replaces the filter's config: appended, not overwritten, and no response edits.
    c.send("GET /other HTTP/1.1\r\nHost: a\r\nX-Filter: client\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.header("x-served-by"), None);
    assert_eq!(
        up.last_request().headers_named("x-filter"),
        vec!["client", "override"]
    );

    // Direct responses get the route's and the filter's response edits.
    c.send("GET /direct HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.body_str(), "direct");
    assert_eq!(r.header("x-route"), Some("direct"));
    assert_eq!(r.header("x-served-by"), Some("outrigger"));
}

/// `nghttp -v` output: the response headers of the one request.
fn nghttp_headers(url: &str, extra: &[&str]) -> Vec<(String, String)> {
    let mut cmd = Command::new("nghttp");
    cmd.args(["-v", "-t", "10"]);
    for h in extra {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("these tests need `nghttp` (Debian nghttp2-client) on PATH");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let rest = l.split_once("recv (stream_id=")?.1;
            let (_, header) = rest.split_once(") ")?;
            let (n, v) = header.rsplit_once(": ").or_else(|| {
                // `:status: 200` splits at the second colon.
                header.strip_prefix(':').and_then(|h| h.split_once(": "))
            })?;
            Some((n.to_string(), v.to_string()))
        })
        .collect()
}

fn h2_case(protocol: &str) {
    let up = Upstream::echo();
    // HTTP/2 upstream: a second outrigger in front of the echo server speaks h2c.
    let b = (protocol == "http2").then(|| Proxy::start(&proxy_config(up.addr)));
    let target = b.as_ref().map_or(up.addr, |b| b.listen);
    let proxy = Proxy::start(&config(target, protocol));
    let headers = nghttp_headers(
        &proxy.url("/edit"),
        &["x-secret: s", "x-filter: client", "x-keep: k"],
    );
    assert!(
        headers
            .iter()
            .any(|(n, v)| n.ends_with("status") && v == "200"),
        "{headers:?}"
    );
    check_request(&up.last_request());
    check_response(&|n| {
        headers
            .iter()
            .filter(|(h, _)| h == n)
            .map(|(_, v)| v.clone())
            .collect()
    });
}

#[test]
fn http2_client_to_http1_upstream() {
    h2_case("http1");
}

#[test]
fn http2_client_to_http2_upstream() {
    h2_case("http2");
}

/// Per-route overrides and direct responses on HTTP/2 streams (HTTP/1.1 upstream).
#[test]
fn http2_overrides_and_direct_responses() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, "http1"));
    let named = |headers: &[(String, String)], n: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(h, _)| h == n)
            .map(|(_, v)| v.clone())
            .collect()
    };
    // The filter is off on /plain: the upstream's header comes back, x-filter passes.
    let h = nghttp_headers(&proxy.url("/plain"), &["x-filter: client"]);
    assert_eq!(named(&h, "x-upstream-conn").len(), 1, "{h:?}");
    assert!(named(&h, "x-served-by").is_empty(), "{h:?}");
    assert_eq!(named(&h, "x-level"), ["table"]);
    assert_eq!(up.last_request().headers_named("x-filter"), vec!["client"]);
    // /other replaces the filter's config: appended, and no response edits of its own.
    let h = nghttp_headers(&proxy.url("/other"), &["x-filter: client"]);
    assert!(named(&h, "x-served-by").is_empty(), "{h:?}");
    assert_eq!(
        up.last_request().headers_named("x-filter"),
        vec!["client", "override"]
    );
    // Direct responses get the route's and the filter's response edits.
    let h = nghttp_headers(&proxy.url("/direct"), &[]);
    assert_eq!(named(&h, "x-route"), ["direct"], "{h:?}");
    assert_eq!(named(&h, "x-served-by"), ["outrigger"]);
}

/// Request edits apply after the proxy set its forwarding headers (as Envoy's router
/// edits run after the connection manager's), on the HTTP/2 to HTTP/1.1 path.
#[test]
fn http2_edits_see_the_forwarding_headers() {
    let up = Upstream::echo();
    let cfg = proxy_config(up.addr).replace(
        "            timeout: 5s\n",
        "            timeout: 5s
            request_headers_to_remove: [x-forwarded-proto]
            request_headers_to_add:
              - { name: x-forwarded-for, value: 192.0.2.1, append_action: OVERWRITE_IF_EXISTS }
              - { name: x-added, value: a, append_action: ADD_IF_ABSENT }
",
    );
    let proxy = Proxy::start(&cfg);
    let h = nghttp_headers(&proxy.url("/f"), &["x-forwarded-for: 10.0.0.1"]);
    assert!(
        h.iter().any(|(n, v)| n.ends_with("status") && v == "200"),
        "{h:?}"
    );
    let req = up.last_request();
    assert_eq!(req.headers_named("x-forwarded-for"), ["192.0.2.1"]);
    assert!(req.headers_named("x-forwarded-proto").is_empty());
    assert_eq!(req.headers_named("x-added"), ["a"]);
}

#[test]
fn http1_client_to_http2_upstream() {
    let up = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let proxy = Proxy::start(&config(b.listen, "http2"));
    let mut c = Conn::connect(proxy.listen);
    c.send(CLIENT);
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    check_request(&up.last_request());
    check_response(&|n| r.headers_named(n).iter().map(|s| s.to_string()).collect());
}

#[test]
fn bad_edits_are_refused_with_the_field() {
    let dir = TempDir::new("hm");
    let path = dir.join("bad.yaml");
    let text = config("127.0.0.1:9".parse().unwrap(), "http1")
        .replace("name: x-table", "name: Host")
        .replace("tag: { disabled: true }", "nope: { disabled: true }")
        .replace("value: f,", "value: '%START_TIME%',")
        .replace("@ADMIN_PORT@", "9")
        .replace("@PORT@", "10");
    write_atomic(&path, &text);
    let out = run_cli(
        &["validate", "-c", &path.display().to_string()],
        Duration::from_secs(10),
    );
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    for field in [
        "route_tables[0].request_headers_to_add[0].name",
        "route_tables[0].virtual_hosts[0].routes[0].per_filter_config.nope",
        "listeners[0].http_filters[0].header_mutation.request_headers_to_add[0].value",
    ] {
        assert!(err.contains(field), "missing {field} in:\n{err}");
    }
}

#[test]
fn the_proxys_own_replies_carry_the_response_edits() {
    // Envoy applies route and filter response edits to its local replies too.
    let proxy = Proxy::start(&config(refused_addr(), "http1"));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /edit HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 503, "{}", r.body_str());
    assert_eq!(
        r.header("x-served-by"),
        Some("outrigger"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("x-level"), Some("table"));
    let h = nghttp_headers(&proxy.url("/edit"), &[]);
    assert!(
        h.iter().any(|(n, v)| n.ends_with("status") && v == "503"),
        "{h:?}"
    );
    assert!(
        h.iter()
            .any(|(n, v)| n == "x-served-by" && v == "outrigger"),
        "{h:?}"
    );
}
