//! One Envoy v3 bootstrap with `request_mirror_policies`, run by Envoy 1.40 and by
//! Outrigger (which translates it, src/config/envoy/): the same requests to both, and
//! what each one's mirror upstream received compared case by case (method, path, Host,
//! the headers that matter, the body), and what the primary upstream got.
//!
//! Envoy comes from `loadtest/.venv` (`OUTRIGGER_TEST_ENVOY` may point elsewhere); the
//! test skips, saying why, when there is none.

mod common;

use std::time::Duration;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// The routes of the one virtual host, as (match, action).
const ROUTES: &[(&str, &str)] = &[
    ("{prefix: /m}", "route: {cluster: up, request_mirror_policies: [{cluster: mir}]}"),
    (
        "{prefix: /ns}",
        "route: {cluster: up, request_mirror_policies: [{cluster: mir, disable_shadow_host_suffix_append: true}]}",
    ),
    (
        "{prefix: /hdr}",
        "route: {cluster: up, request_mirror_policies: [{cluster_header: x-mirror}]}",
    ),
    (
        "{prefix: /rw}",
        "route: {cluster: up, prefix_rewrite: /new, host_rewrite_literal: rewritten.example, request_mirror_policies: [{cluster: mir, trace_sampled: false}]}",
    ),
    (
        "{prefix: /f}",
        "route: {cluster: up, request_mirror_policies: [{cluster: mir, runtime_fraction: {default_value: {numerator: 0}}}]}",
    ),
];

fn bootstrap(up: u16, mir: u16) -> String {
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
    let mut routes = String::new();
    for (m, a) in ROUTES {
        routes.push_str(&format!(
            "              - match: {m}\n                {a}\n"
        ));
    }
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: @PORT@}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: parity
          route_config:
            request_headers_to_add: [{{header: {{key: x-table, value: t}}}}]
            virtual_hosts:
            - name: all
              domains: ["*"]
              request_headers_to_add: [{{header: {{key: x-vhost, value: v}}}}]
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{c1}{c2}"#,
        c1 = cluster("up", up),
        c2 = cluster("mir", mir),
    )
}

/// The requests: (Host, method and target, extra header lines, body).
const CASES: &[(&str, &str, &str, &str)] = &[
    ("a.test", "GET /m/x?q=1", "x-custom: 1\r\n", ""),
    ("a.test:8080", "GET /m", "", ""),
    ("127.0.0.1:9000", "GET /m/ip", "", ""),
    (
        "a.test",
        "POST /m/body",
        "content-type: text/plain\r\n",
        "hello",
    ),
    // A body that streams: teed to the shadow as it goes to the primary.
    (
        "a.test",
        "POST /m/chunked",
        "transfer-encoding: chunked\r\n",
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ),
    ("a.test:8080", "GET /ns", "", ""),
    ("a.test", "GET /hdr/1", "x-mirror: mir\r\n", ""),
    (
        "a.test",
        "GET /rw/p",
        "x-forwarded-for: 10.1.1.1\r\nx-forwarded-proto: https\r\n",
        "",
    ),
];

/// What a mirror (or primary) request carried that both proxies should agree on.
fn facts(r: &Recorded) -> Vec<String> {
    let mut out = vec![
        format!("method {}", r.method),
        format!("target {}", r.target),
        format!("body {:?}", String::from_utf8_lossy(&r.body)),
    ];
    for name in [
        "host",
        "x-custom",
        "x-table",
        "x-vhost",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-envoy-original-path",
        "x-envoy-original-host",
        "x-envoy-expected-rq-timeout-ms",
        "x-envoy-internal",
        "content-type",
        "content-length",
        "x-mirror",
    ] {
        out.push(format!("{name}: {:?}", r.headers_named(name)));
    }
    out.push(format!(
        "x-request-id present: {}",
        r.has_header("x-request-id")
    ));
    out
}

struct Side {
    up: Upstream,
    mir: Upstream,
}

impl Side {
    fn new() -> Side {
        Side {
            up: Upstream::echo(),
            mir: Upstream::echo(),
        }
    }

    fn bootstrap(&self) -> String {
        bootstrap(self.up.addr.port(), self.mir.addr.port())
    }
}

/// Sends one case; returns the primary's and (if it got one) the mirror's request.
fn run(
    listen: std::net::SocketAddr,
    side: &Side,
    case: usize,
) -> (u16, Recorded, Option<Recorded>) {
    let (host, line, extra, body) = CASES[case];
    let before = side.mir.request_count();
    let mut c = Conn::connect(listen);
    let length = if body.is_empty() && line.starts_with("GET") || extra.contains("chunked") {
        String::new()
    } else {
        format!("content-length: {}\r\n", body.len())
    };
    c.send(format!(
        "{line} HTTP/1.1\r\nHost: {host}\r\n{extra}{length}\r\n{body}"
    ));
    let r = c.read_response().expect("a response");
    let primary = side.up.requests().pop().expect("the primary's request");
    let mirrored = side
        .mir
        .wait_requests(before + 1, Duration::from_secs(2))
        .then(|| side.mir.requests().pop())
        .flatten();
    (r.status, primary, mirrored)
}

#[test]
fn the_mirror_gets_what_envoys_mirror_gets() {
    let Some(bin) = envoy_or_skip("the_mirror_gets_what_envoys_mirror_gets") else {
        return;
    };
    let (e_side, o_side) = (Side::new(), Side::new());
    let envoy = Envoy::start(&bin, &e_side.bootstrap());
    let proxy = Proxy::start(&o_side.bootstrap());
    let mut diffs = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let (es, ep, em) = run(envoy.listen, &e_side, i);
        let (os, op, om) = run(proxy.listen, &o_side, i);
        assert_eq!(es, os, "case {case:?}: status");
        assert_eq!(em.is_some(), om.is_some(), "case {case:?}: mirrored");
        let (ef, of) = (facts(&ep), facts(&op));
        for (e, o) in ef.iter().zip(&of) {
            if e != o && !e.starts_with("x-envoy-internal") {
                diffs.push(format!("{case:?} primary: envoy {e} / outrigger {o}"));
            }
        }
        if let (Some(em), Some(om)) = (em, om) {
            let same_id =
                |p: &Recorded, m: &Recorded| p.header("x-request-id") == m.header("x-request-id");
            if same_id(&ep, &em) != same_id(&op, &om) {
                diffs.push(format!(
                    "{case:?} mirror: the primary's x-request-id: envoy {} / outrigger {}",
                    same_id(&ep, &em),
                    same_id(&op, &om)
                ));
            }
            // Both append the node's address (the host's first non-loopback IPv4
            // address) to the shadow's x-forwarded-for, as Envoy's async client does.
            for (e, o) in facts(&em).iter().zip(&facts(&om)) {
                if e != o {
                    diffs.push(format!("{case:?} mirror: envoy {e} / outrigger {o}"));
                }
            }
        }
    }
    // An HTTP/2 body without a content-length (curl -T -): teed to the shadow.
    let h2_mirror = |listen: std::net::SocketAddr, side: &Side| {
        let before = side.mir.request_count();
        let url = format!("http://{listen}/m/h2stream");
        let (status, _) = common::bodies::h2_stream_post(&url, "streamed over h2");
        let m = side
            .mir
            .wait_requests(before + 1, WAIT)
            .then(|| side.mir.requests().pop())
            .flatten();
        // The authority carries each proxy's own port.
        let port = listen.port().to_string();
        let same = |f: String| f.replace(&port, "PORT");
        (
            status,
            m.map(|m| facts(&m).into_iter().map(same).collect::<Vec<_>>()),
        )
    };
    let (e, o) = (
        h2_mirror(envoy.listen, &e_side),
        h2_mirror(proxy.listen, &o_side),
    );
    if e != o {
        diffs.push(format!("h2 streamed body: envoy {e:?} / outrigger {o:?}"));
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    // Fraction 0: neither mirrors. A mirrored request sent after it on the same
    // connection arrives alone.
    for (listen, side) in [(envoy.listen, &e_side), (proxy.listen, &o_side)] {
        let before = side.mir.request_count();
        let mut c = Conn::connect(listen);
        for target in ["/f/zero", "/m/after"] {
            c.send(format!("GET {target} HTTP/1.1\r\nHost: a.test\r\n\r\n"));
            assert_eq!(c.read_response().expect("a response").status, 200);
        }
        assert!(side.mir.wait_requests(before + 1, WAIT));
        let targets: Vec<String> = side.mir.requests()[before..]
            .iter()
            .map(|r| r.target.clone())
            .collect();
        assert_eq!(targets, ["/m/after"]);
    }
}
