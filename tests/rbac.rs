//! RBAC through the binary (Envoy's `envoy.filters.http.rbac` and
//! `envoy.filters.network.rbac`): requests allowed and denied by path, method, header,
//! source address and the mTLS peer's SPIFFE ID, over HTTP/1 and HTTP/2; a denied
//! request gets Envoy's `403 RBAC: access denied` and never reaches the upstream;
//! shadow rules and the LOG action only count; routes disable or replace the rules;
//! the network filter closes denied connections of a TCP proxy; bad configs are refused
//! with the field's path. The counters carry Envoy's names.

mod common;
mod h2client;
mod pki;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A listener `main` with an RBAC filter `authz` whose rules are `rules` and shadow
/// rules `shadow` (both indented for `rbac:`), routes `/open` (filter disabled),
/// `/public/strict` (rules replaced by a deny-all), and the rest to `backend`.
fn config(upstream: std::net::SocketAddr, rules: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    http_filters:
      - name: authz
        rbac:
{rules}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /open }}
            cluster: backend
            per_filter_config:
              authz: {{ disabled: true }}
          - match: {{ prefix: /public/strict }}
            cluster: backend
            per_filter_config:
              authz: {{ rbac: {{ rules: {{ action: ALLOW }} }} }}
          - match: {{ prefix: / }}
            cluster: backend
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        upstream.port()
    )
}

const RULES: &str = "          rules:
            action: ALLOW
            policies:
              admins:
                permissions:
                  - and_rules:
                      rules:
                        - url_path: { path: { prefix: /admin } }
                        - header: { name: ':method', string_match: { exact: GET } }
                principals:
                  - header: { name: x-user, string_match: { exact: alice } }
              exact:
                permissions: [{ url_path: { path: { exact: /exact } } }]
                principals: [{ any: true }]
              loopback:
                permissions: [{ url_path: { path: { exact: /local } } }]
                principals: [{ source_ip: { address_prefix: 127.0.0.0, prefix_len: 8 } }]
              public:
                permissions:
                  - or_rules:
                      rules:
                        - url_path: { path: { prefix: /public } }
                        - header: { name: x-public, present_match: true }
                principals: [{ any: true }]
              ten:
                permissions: [{ url_path: { path: { exact: /ten } } }]
                principals: [{ direct_remote_ip: { address_prefix: 10.0.0.0, prefix_len: 8 } }]
              not-post:
                permissions:
                  - and_rules:
                      rules:
                        - url_path: { path: { exact: /not-post } }
                        - not_rule: { header: { name: ':method', string_match: { exact: POST } } }
                principals: [{ any: true }]
          shadow_rules:
            action: DENY
            policies:
              shadow-public:
                permissions: [{ url_path: { path: { prefix: /public } } }]
                principals: [{ any: true }]
";

fn counter(proxy: &Proxy, name: &str) -> u64 {
    proxy.stats()["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {}", proxy.stats()["counters"]))
}

fn check_denied(r: &Response) {
    assert_eq!(r.status, 403, "{}", r.body_str());
    assert_eq!(r.body_str(), "RBAC: access denied");
    assert_eq!(r.header("content-type"), Some("text/plain"));
}

fn h1(c: &mut Conn, method: &str, path: &str, extra: &str) -> Response {
    c.send(format!(
        "{method} {path} HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\n{extra}\r\n"
    ));
    c.read_response().unwrap()
}

#[test]
fn http1_requests_are_allowed_and_denied_by_path_method_header_and_source() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, RULES));
    let mut c = Conn::connect(proxy.listen);
    // (method, path, extra headers, status)
    let cases: &[(&str, &str, &str, u16)] = &[
        ("GET", "/public/a", "", 200),
        ("GET", "/admin/x", "x-user: alice\r\n", 200),
        ("POST", "/admin/x", "x-user: alice\r\n", 403),
        ("GET", "/admin/x", "x-user: bob\r\n", 403),
        ("GET", "/admin/x", "", 403),
        // url_path ignores the query.
        ("GET", "/exact?a=1", "", 200),
        ("GET", "/exact/more", "", 403),
        ("GET", "/local", "", 200),
        ("GET", "/ten", "", 403),
        ("GET", "/anything", "x-public: 1\r\n", 200),
        ("GET", "/not-post", "", 200),
        ("POST", "/not-post", "", 403),
        // Disabled on the route; replaced by a deny-all on another.
        ("GET", "/open/x", "", 200),
        ("GET", "/public/strict", "", 403),
    ];
    let seen = up.request_count();
    let mut allowed = 0;
    for (method, path, extra, want) in cases {
        let r = h1(&mut c, method, path, extra);
        if *want == 403 {
            check_denied(&r);
        } else {
            assert_eq!(r.status, *want, "{method} {path}: {}", r.body_str());
            allowed += 1;
        }
    }
    assert_eq!(
        up.request_count() - seen,
        allowed,
        "a denied request went upstream"
    );
    // Envoy's counters: the route without the filter counts nothing; the route's
    // replacement counts in the filter's; shadow rules count every evaluated request.
    assert_eq!(
        counter(&proxy, "http.main.rbac.allowed"),
        allowed as u64 - 1
    );
    assert_eq!(counter(&proxy, "http.main.rbac.denied"), 7);
    let evaluated = cases.len() as u64 - 1;
    let shadow_denied = counter(&proxy, "http.main.rbac.shadow_denied");
    assert_eq!(
        shadow_denied, 1,
        "only /public/a hits the shadow DENY policy"
    );
    assert_eq!(
        counter(&proxy, "http.main.rbac.shadow_allowed") + shadow_denied,
        evaluated - 1,
        "the route's replacement has no shadow rules"
    );
    // Prometheus carries them too.
    let text = proxy.prometheus();
    assert!(
        text.contains("outrigger_filter_counter_total{name=\"http.main.rbac.denied\"} 7"),
        "{text}"
    );
}

#[test]
fn http2_requests_are_decided_alike() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, RULES));
    let addr = proxy.listen;
    let url = move |p: &str| format!("http://127.0.0.1:{}{p}", addr.port());
    let replies = h2client::run(move || async move {
        let mut client = h2client::connect(addr).await;
        let mut out = Vec::new();
        for (method, path, user) in [
            ("GET", "/public/a", None),
            ("GET", "/admin/x", Some("alice")),
            ("POST", "/admin/x", Some("alice")),
            ("GET", "/admin/x", None),
            ("GET", "/public/strict", None),
        ] {
            let mut b = h2client::request(method, &url(path));
            if let Some(u) = user {
                b = b.header("x-user", u);
            }
            let r = h2client::send(&mut client, b.body(()).unwrap(), b"").await;
            out.push((
                r.status,
                r.body_str(),
                r.header("content-type").map(String::from),
            ));
        }
        out
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [200, 200, 403, 403, 403]);
    for r in replies.iter().filter(|r| r.0 == 403) {
        assert_eq!(r.1, "RBAC: access denied");
        assert_eq!(r.2.as_deref(), Some("text/plain"));
    }
    assert_eq!(counter(&proxy, "http.main.rbac.allowed"), 2);
    assert_eq!(counter(&proxy, "http.main.rbac.denied"), 3);
}

#[test]
fn the_log_action_and_shadow_rules_only_count() {
    let up = Upstream::echo();
    let rules = "          rules:
            action: LOG
            policies:
              audit:
                permissions: [{ url_path: { path: { prefix: /audit } } }]
                principals: [{ any: true }]
          shadow_rules:
            action: ALLOW
            policies:
              audit:
                permissions: [{ url_path: { path: { prefix: /audit } } }]
                principals: [{ any: true }]
          shadow_rules_stat_prefix: dry_run_
";
    let proxy = Proxy::start(&config(up.addr, rules));
    let mut c = Conn::connect(proxy.listen);
    for path in ["/audit/1", "/other", "/audit/2"] {
        assert_eq!(h1(&mut c, "GET", path, "").status, 200, "{path}");
    }
    assert_eq!(counter(&proxy, "http.main.rbac.allowed"), 3);
    assert_eq!(counter(&proxy, "http.main.rbac.denied"), 0);
    // Envoy joins the shadow prefix after `rbac.`, with a `.` (Envoy 1.40's names).
    assert_eq!(counter(&proxy, "http.main.rbac.dry_run_.shadow_allowed"), 2);
    assert_eq!(counter(&proxy, "http.main.rbac.dry_run_.shadow_denied"), 1);
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn principals_are_the_mtls_peers_spiffe_ids() {
    let dir = TempDir::new("rbac-pki");
    let ca = pki::Ca::new("test CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["localhost"]));
    let web = ca.leaf(
        dir.path(),
        "web",
        pki::client("spiffe://test.local/ns/default/sa/web"),
    );
    let db = ca.leaf(
        dir.path(),
        "db",
        pki::client("spiffe://test.local/ns/default/sa/db"),
    );
    let up = Upstream::echo();
    let text = format!(
        "{HEADER}listeners:
  - name: mtls
    address: 127.0.0.1
    port: @PORT@
    listener_filters: [tls_inspector]
    filter_chains:
      - name: mtls
        route_table: main
        http_filters:
          - name: authz
            rbac:
              rules:
                policies:
                  web:
                    permissions: [{{ any: true }}]
                    principals:
                      - authenticated:
                          principal_name: {{ exact: \"spiffe://test.local/ns/default/sa/web\" }}
                  sni:
                    permissions: [{{ requested_server_name: {{ exact: nowhere.example }} }}]
                    principals: [{{ any: true }}]
        tls:
          certificates:
            - {{ cert_chain_file: \"{}\", private_key_file: \"{}\" }}
          alpn_protocols: [h2, http/1.1]
          require_client_certificate: true
          validation_context:
            trusted_ca_file: \"{}\"
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: backend
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        p(&server.cert),
        p(&server.key),
        p(&ca_pem),
        up.addr.port()
    );
    let proxy = Proxy::start(&text);
    let port = proxy.listen.port();
    let curl = |leaf: &pki::Leaf, http: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}", http])
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(["--cacert", &p(&ca_pem), "--cert", &p(&leaf.cert)])
            .args(["--key", &p(&leaf.key)])
            .arg(format!("https://localhost:{port}/x"))
            .stdin(Stdio::null())
            .output()
            .expect("curl must be installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for http in ["--http1.1", "--http2"] {
        let ok = curl(&web, http);
        assert!(ok.ends_with("\n200"), "{http}: {ok}");
        let denied = curl(&db, http);
        assert_eq!(denied, "RBAC: access denied\n403", "{http}");
    }
    assert_eq!(counter(&proxy, "http.mtls.rbac.allowed"), 2);
    assert_eq!(counter(&proxy, "http.mtls.rbac.denied"), 2);
}

/// A TCP proxy listener `tcp` with a network RBAC filter of `rules`.
fn tcp_config(upstream: std::net::SocketAddr, rules: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: tcp
    address: 127.0.0.1
    port: @PORT@
    network_filters:
      - name: guard
        rbac:
          stat_prefix: tcp
{rules}    tcp_proxy:
      cluster: backend
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        upstream.port()
    )
}

#[test]
fn network_rbac_closes_denied_connections_of_a_tcp_proxy() {
    let up = Upstream::echo();
    let allow = "          rules:
            policies:
              loopback:
                permissions: [{ destination_port: @PORT@ }]
                principals: [{ source_ip: { address_prefix: 127.0.0.1, prefix_len: 32 } }]
";
    let proxy = Proxy::start(&tcp_config(up.addr, allow));
    let r = get(proxy.listen, "svc", "/through");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(counter(&proxy, "tcp.rbac.allowed"), 1);
    drop(proxy);

    let deny = "          rules:
            action: DENY
            policies:
              everyone:
                permissions: [{ any: true }]
                principals: [{ not_id: { header: { name: x-never, present_match: true } } }]
          shadow_rules:
            policies:
              nobody:
                permissions: [{ url_path: { path: { prefix: / } } }]
                principals: [{ any: true }]
";
    let proxy = Proxy::start(&tcp_config(up.addr, deny));
    let seen = up.request_count();
    let mut c = Conn::connect(proxy.listen);
    let _ = c.try_send("GET / HTTP/1.1\r\nHost: svc\r\n\r\n");
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "a denied connection stays open"
    );
    assert_eq!(up.request_count(), seen);
    assert_eq!(counter(&proxy, "tcp.rbac.denied"), 1);
    // A connection has no path: the shadow ALLOW policy on `/` never matches.
    assert_eq!(counter(&proxy, "tcp.rbac.shadow_denied"), 1);
}

#[test]
fn bad_rbac_configs_are_refused_with_the_field_path() {
    let dir = TempDir::new("rbac-bad");
    let path = dir.join("bad.yaml");
    let rules = "          rules:
            action: MAYBE
            policies:
              empty:
                permissions: []
                principals: [{ any: true }]
              two:
                permissions: [{ any: true, url_path: { path: { exact: /x } } }]
                principals: [{ source_ip: { address_prefix: not-an-ip } }]
              port:
                permissions: [{ destination_port: 70000 }]
                principals: [{ authenticated: { principal_name: { safe_regex: { regex: '(' } } } }]
";
    let text = config("127.0.0.1:9".parse().unwrap(), rules)
        .replace("@ADMIN_PORT@", "9")
        .replace("@PORT@", "10");
    write_atomic(&path, &text);
    let out = run_cli(&["validate", "-c", &p(&path)], Duration::from_secs(10));
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    let base = "listeners[0].http_filters[0].rbac.rules";
    for field in [
        format!("{base}.action"),
        format!("{base}.policies.empty.permissions"),
        format!("{base}.policies.two.permissions[0]"),
        format!("{base}.policies.two.principals[0].source_ip.address_prefix"),
        format!("{base}.policies.port.permissions[0].destination_port"),
        format!("{base}.policies.port.principals[0].authenticated.principal_name.safe_regex"),
    ] {
        assert!(err.contains(&field), "missing {field} in:\n{err}");
    }
}
