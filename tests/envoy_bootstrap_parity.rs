//! Parity with Envoy 1.40 on one bootstrap file: the same file (ports templated) runs
//! under Envoy and under Outrigger, the same requests go to both, and what the client
//! and the upstream see is compared: statuses, direct-response bodies, selected response
//! headers, the headers the upstream receives (header_mutation filter with per-route
//! overrides, route-level edits, x-forwarded-for with use_remote_address false and
//! true), no route (404), an unreachable cluster (503 and its body), WebSocket upgrades
//! allowed and refused, a TCP proxy, and the buffer filter (per-route disabled and
//! resized; over-limit 413s on HTTP/1 and HTTP/2; chunked bodies arriving upstream with
//! a Content-Length). Skips, saying why, when Envoy is not installed.

mod common;
mod h2client;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::bodies::*;
use common::envoy::*;
use common::*;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// The connection manager both listeners share; only use_remote_address differs.
fn hcm(stat_prefix: &str, use_remote_address: bool) -> String {
    format!(
        r#"      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: {stat_prefix}
          use_remote_address: {use_remote_address}
          upgrade_configs: [{{upgrade_type: websocket}}, {{upgrade_type: CONNECT}}]
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "@DIR@/{stat_prefix}.log"
              log_format:
                text_format_source:
                  inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:METHOD)% %REQ(:PATH)% %REQ(:AUTHORITY)%\n"
          route_config:
            name: routes_{stat_prefix}
            response_headers_to_add:
            - header: {{key: x-table, value: t}}
            virtual_hosts:
            - name: other
              domains: [other.example]
              routes:
              - match: {{prefix: /only}}
                direct_response: {{status: 200, body: {{inline_string: only}}}}
            - name: all
              domains: ["*"]
              routes:
              - match: {{connect_matcher: {{}}}}
                route:
                  cluster: tunnel
                  upgrade_configs: [{{upgrade_type: CONNECT, connect_config: {{}}}}]
              - match: {{prefix: /direct}}
                direct_response: {{status: 200, body: {{inline_string: "direct body\n"}}}}
              - match: {{prefix: /teapot}}
                direct_response: {{status: 418, body: {{inline_string: short and stout}}}}
              - match: {{prefix: /nobody}}
                direct_response: {{status: 503}}
              - match: {{prefix: /dead}}
                route: {{cluster: dead}}
              - match: {{prefix: /ws}}
                route: {{cluster: ws}}
              - match: {{prefix: /nows}}
                route: {{cluster: ws, upgrade_configs: [{{upgrade_type: websocket, enabled: false}}]}}
              - match: {{prefix: /nofilter}}
                route: {{cluster: up}}
                typed_per_filter_config:
                  hm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - match: {{prefix: /perroute}}
                route: {{cluster: up}}
                typed_per_filter_config:
                  hm:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute
                    mutations:
                      request_mutations:
                      - append: {{header: {{key: x-filter, value: per-route}}}}
              - match:
                  prefix: /
                  headers: [{{name: x-match, string_match: {{exact: "yes"}}}}]
                route: {{cluster: up}}
                request_headers_to_add:
                - header: {{key: x-matched, value: "1"}}
              - match: {{prefix: /}}
                route: {{cluster: up}}
                request_headers_to_add:
                - header: {{key: x-route, value: r}}
                - header: {{key: x-over, value: route}}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
                request_headers_to_remove: [x-secret]
                response_headers_to_add:
                - header: {{key: x-resp-route, value: "yes"}}
          http_filters:
          - name: hm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
                - append: {{header: {{key: x-filter, value: global}}}}
                - remove: x-drop
                response_mutations:
                - append: {{header: {{key: x-filter-resp, value: "yes"}}}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    )
}

fn cluster(name: &str, addr: SocketAddr) -> String {
    format!(
        "  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]
",
        addr.port()
    )
}

fn http_bootstrap(up: SocketAddr, dead: SocketAddr, ws: SocketAddr, tunnel: SocketAddr) -> String {
    format!(
        "admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
static_resources:
  listeners:
  - name: trusted
    address: {{socket_address: {{address: 127.0.0.1, port_value: @PORT@}}}}
    filter_chains:
    - filters:
{}  - name: edge
    address: {{socket_address: {{address: 127.0.0.1, port_value: @PORT2@}}}}
    filter_chains:
    - filters:
{}  clusters:
{}{}{}{}",
        hcm("trusted", false),
        hcm("edge", true),
        cluster("up", up),
        cluster("dead", dead),
        cluster("ws", ws),
        cluster("tunnel", tunnel)
    )
}

/// A WebSocket server (tungstenite) for `n` handshakes.
fn ws_server(n: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().take(n).flatten() {
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                if let Ok(mut ws) = tungstenite::accept(s) {
                    while ws.read().is_ok() {}
                }
            });
        }
    });
    addr
}

/// What one side did with the test requests, as labelled lines.
fn observe(listen: SocketAddr, listen2: SocketAddr, up: &Upstream) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let mut note = |label: &str, v: String| seen.push((label.to_string(), v));
    let resp_headers = |r: &Response, names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{n}={:?}", r.headers_named(n)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for path in ["/direct", "/teapot", "/nobody"] {
        let r = get(listen, "svc", path);
        note(
            path,
            format!(
                "{} body={:?} {}",
                r.status,
                r.body_str(),
                resp_headers(
                    &r,
                    &["content-type", "content-length", "x-table", "x-filter-resp"]
                )
            ),
        );
    }
    let r = get(listen, "other.example", "/nope");
    note(
        "no route",
        format!(
            "{} body={:?} {}",
            r.status,
            r.body_str(),
            resp_headers(&r, &["content-type", "x-table"])
        ),
    );
    let r = get(listen, "svc", "/dead");
    note(
        "unreachable cluster",
        format!(
            "{} body={:?} {}",
            r.status,
            r.body_str(),
            resp_headers(&r, &["content-type", "x-table"])
        ),
    );
    let upstream_saw = |names: &[&str], peer_appended: bool| {
        let req = up.last_request();
        names
            .iter()
            .map(|n| {
                let mut values: Vec<String> = req
                    .headers_named(n)
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(|v| v.trim().to_string())
                    .collect();
                // Known difference (docs/envoy-api.md): for a loopback peer Envoy appends
                // its own non-loopback local address, Outrigger the peer (127.0.0.1).
                if *n == "x-forwarded-for" && peer_appended {
                    if let Some(last) = values.last_mut() {
                        eprintln!("KNOWN DIFFERENCE: appended x-forwarded-for entry `{last}`");
                        *last = "<appended>".into();
                    }
                }
                format!("{n}={values:?}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let compared = [
        "x-secret",
        "x-drop",
        "x-filter",
        "x-route",
        "x-over",
        "x-matched",
        "x-forwarded-for",
        "x-forwarded-proto",
        "host",
    ];
    let request = |path: &str, extra: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: svc\r\nX-Secret: s\r\nX-Drop: d\r\nX-Over: client\r\n\
             X-Forwarded-For: 192.0.2.10\r\nX-Forwarded-Proto: https\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    for (label, addr, path, extra) in [
        ("route edits, trusted", listen, "/a", ""),
        ("route edits, edge (use_remote_address)", listen2, "/a", ""),
        ("filter disabled per route", listen, "/nofilter", ""),
        ("filter config per route", listen, "/perroute", ""),
        ("header match", listen, "/m", "X-Match: yes\r\n"),
    ] {
        let r = exchange(addr, &request(path, extra));
        note(
            label,
            format!(
                "{} upstream: {} | client: {}",
                r.status,
                upstream_saw(&compared, addr == listen2),
                resp_headers(&r, &["x-filter-resp", "x-resp-route", "x-table"])
            ),
        );
    }
    for path in ["/ws", "/nows"] {
        let r = exchange(
            listen,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
        );
        note(
            &format!("websocket {path}"),
            format!(
                "{} body={:?} {}",
                r.status,
                r.body_str(),
                resp_headers(
                    &r,
                    &[
                        "upgrade",
                        "sec-websocket-accept",
                        "server",
                        "x-table",
                        "x-envoy-upstream-service-time"
                    ]
                )
            ),
        );
    }
    note("CONNECT", connect(listen));
    // Envoy's limits: 60 KiB of request headers, 100 header fields.
    let big = format!("X-Big: {}\r\n", "b".repeat(61 * 1024));
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    for (label, extra) in [("61 KiB header", big), ("101 headers", many)] {
        let mut c = Conn::connect(listen);
        c.send(format!("GET /a HTTP/1.1\r\nHost: svc\r\n{extra}\r\n"));
        let status = c.read_response().map_or(0, |r| r.status);
        note(label, format!("status {status}"));
    }
    // HTTP/2 with prior knowledge (curl): the same routes.
    for path in ["/direct", "/teapot", "/a"] {
        let out = curl_h2(listen, path);
        // The echo upstream's body lists every header it got, and the proxies' own
        // headers (x-request-id, the service time) differ per run, so only the status
        // line is compared there.
        let out = match path {
            "/a" => out.lines().last().unwrap_or("").to_string(),
            _ => out,
        };
        note(&format!("h2c {path}"), out);
    }
    note(
        "h2c upstream",
        upstream_saw(&["x-filter", "x-route", "x-forwarded-for"], false),
    );
    seen
}

/// `curl --http2-prior-knowledge`: status, HTTP version and body.
fn curl_h2(addr: SocketAddr, path: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "--http2-prior-knowledge"])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A CONNECT through the `connect_matcher` route: the status, then bytes both ways.
fn connect(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.split(' ').nth(1).unwrap_or("").to_string();
    if status != "200" {
        return format!("status {status}");
    }
    // The connection manager's own headers on the tunnel's 200.
    let mut own: Vec<String> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, _)| n.trim().to_ascii_lowercase())
        .filter(|n| n == "date" || n == "server")
        .collect();
    own.sort();
    s.write_all(b"through the tunnel").unwrap();
    let mut back = [0u8; 18];
    let echoed = s.read_exact(&mut back).is_ok();
    format!("status {status}, echoed {echoed}, own headers {own:?}")
}

/// The header names the client and the upstream see, to check that neither side adds
/// one the other does not (date, server, x-request-id, x-envoy-*).
fn header_names(addr: SocketAddr, up: &Upstream) -> (Vec<String>, Vec<String>) {
    let r = get(addr, "svc", "/names");
    let mut client: Vec<String> = r
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    let mut upstream: Vec<String> = up
        .last_request()
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    client.sort();
    upstream.sort();
    (client, upstream)
}

/// The trusted listener's access log once it has `n` lines, sorted (a WebSocket tunnel
/// is logged when it closes, so the order of lines may differ).
fn access_log(path: &std::path::Path, n: usize) -> Vec<String> {
    let lines = wait_until(Duration::from_secs(10), || {
        let text = read_lossy(path);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= n).then_some(lines)
    });
    let mut lines = lines.unwrap_or_else(|| {
        panic!(
            "{} has not {n} lines:\n{}",
            path.display(),
            read_lossy(path)
        )
    });
    lines.truncate(n);
    for l in &mut lines {
        // Known differences (docs/envoy-api.md): a tunnel (WebSocket, CONNECT) the client
        // closes is flagged DC by Envoy and not by Outrigger, and Envoy logs a CONNECT's
        // %REQ(:PATH)% as `-` where Outrigger logs the authority.
        let fields: Vec<&str> = l.split(' ').collect();
        if let [status, flag, method, path, authority] = fields[..] {
            let tunnel = status == "101" || method == "CONNECT";
            if tunnel {
                eprintln!("KNOWN DIFFERENCE: tunnel log line `{l}` (flag {flag}, path {path})");
                let path = if method == "CONNECT" { "<path>" } else { path };
                *l = format!("{status} <flag> {method} {path} {authority}");
            }
        }
    }
    lines.sort();
    lines
}

fn compare(ours: &[(String, String)], envoy: &[(String, String)]) {
    for (label, e) in envoy {
        eprintln!("envoy {label}: {e}");
    }
    let mut diffs = Vec::new();
    for ((label, o), (_, e)) in ours.iter().zip(envoy) {
        if o != e {
            diffs.push(format!("{label}:\n  outrigger: {o}\n  envoy:     {e}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "differences from Envoy:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn one_bootstrap_behaves_alike_under_envoy_and_outrigger() {
    let Some(bin) = envoy_or_skip("one_bootstrap_behaves_alike_under_envoy_and_outrigger") else {
        return;
    };
    let up = Upstream::echo();
    let ws = ws_server(4);
    let dead = refused_addr();
    let tunnel = tcp_echo(2);
    let text = http_bootstrap(up.addr, dead, ws, tunnel);
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = observe(envoy.listen, envoy.listen2, &up);
    // Every request the trusted listener saw before `header_names`, the two refused
    // heads and the three HTTP/2 ones included: a tunnel is logged when it closes,
    // which may be after the requests that follow it.
    const LOGGED: usize = 17;
    // curl's HTTP/2 requests carry the listener's address as their authority.
    let logged = |path: &std::path::Path, listen: SocketAddr| {
        let mut lines: Vec<String> = access_log(path, LOGGED)
            .into_iter()
            .map(|l| l.replace(&listen.to_string(), "<listen>"))
            .collect();
        lines.sort();
        lines
    };
    let envoy_log = logged(&envoy.dir.join("trusted.log"), envoy.listen);
    let envoy_names = header_names(envoy.listen, &up);
    drop(envoy);
    let proxy = Proxy::start(&text);
    let from_ours = observe(proxy.listen, proxy.listen2, &up);
    let our_log = logged(&proxy.dir.join("trusted.log"), proxy.listen);
    let our_names = header_names(proxy.listen, &up);
    for (what, e, o) in [
        ("client response", &envoy_names.0, &our_names.0),
        ("upstream request", &envoy_names.1, &our_names.1),
    ] {
        let only_envoy: Vec<_> = e.iter().filter(|n| !o.contains(n)).collect();
        let only_ours: Vec<_> = o.iter().filter(|n| !e.contains(n)).collect();
        // The connection manager's and router's own headers (date, server,
        // x-envoy-*, x-request-id) are sent by both.
        assert!(
            only_envoy.is_empty() && only_ours.is_empty(),
            "{what} headers only Envoy sends: {only_envoy:?}; only Outrigger: {only_ours:?}"
        );
    }
    compare(&from_ours, &from_envoy);
    assert_eq!(
        our_log, envoy_log,
        "access log lines (status, response flags, request)"
    );
}

/// A TCP echo server for `n` connections.
fn tcp_echo(n: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for mut s in l.incoming().take(n).flatten() {
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [0u8; 1024];
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 || s.write_all(buf.get(..k).unwrap_or_default()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends a line that is not HTTP and reads back as many bytes (the write side stays open:
/// Envoy's listener filters close a connection that ends before they decide).
fn round_trip(addr: SocketAddr) -> Vec<u8> {
    let line = b"ping over tcp\r\n";
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(line).unwrap();
    let mut got = vec![0u8; line.len()];
    match s.read_exact(&mut got) {
        Ok(()) => got,
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_tcp_proxy_bootstrap_behaves_alike() {
    let Some(bin) = envoy_or_skip("a_tcp_proxy_bootstrap_behaves_alike") else {
        return;
    };
    let echo = tcp_echo(2);
    let text = format!(
        "admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: @PORT@}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          weighted_clusters:
            clusters: [{{name: echo, weight: 1}}]
  clusters:
{}",
        cluster("echo", echo)
    );
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = round_trip(envoy.listen);
    drop(envoy);
    let proxy = Proxy::start(&text);
    assert_eq!(round_trip(proxy.listen), from_envoy);
    assert_eq!(from_envoy, b"ping over tcp\r\n");
}

/// A chain per HTTP version, chosen by the http_inspector's application protocol, and a
/// default chain (a TCP proxy) for what is not HTTP.
#[test]
fn filter_chains_chosen_by_http_inspector_behave_alike() {
    let Some(bin) = envoy_or_skip("filter_chains_chosen_by_http_inspector_behave_alike") else {
        return;
    };
    let echo = tcp_echo(2);
    let chain = |name: &str, proto: &str| {
        format!(
            "    - name: {name}
      filter_chain_match: {{application_protocols: [\"{proto}\"]}}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": {HCM}
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: \"chain {name}\"}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"
        )
    };
    let text = format!(
        "admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
static_resources:
  listeners:
  - name: sniff
    address: {{socket_address: {{address: 127.0.0.1, port_value: @PORT@}}}}
    listener_filters:
    - name: envoy.filters.listener.http_inspector
      typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector}}
    filter_chains:
{}{}    default_filter_chain:
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: raw
          cluster: echo
  clusters:
{}",
        chain("h11", "http/1.1"),
        chain("h10", "http/1.0"),
        cluster("echo", echo)
    );
    let run = |addr: SocketAddr| {
        let h11 = exchange(
            addr,
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        let h10 = exchange(addr, "GET / HTTP/1.0\r\nHost: a\r\n\r\n");
        (
            (h11.status, h11.body_str()),
            (h10.status, h10.body_str()),
            round_trip(addr),
        )
    };
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = run(envoy.listen);
    drop(envoy);
    let proxy = Proxy::start(&text);
    let ours = run(proxy.listen);
    assert_eq!(ours.0, from_envoy.0, "HTTP/1.1 chain");
    assert_eq!(ours.2, from_envoy.2, "default chain (TCP proxy)");
    assert_eq!(from_envoy.0 .1, "chain h11");
    assert_eq!(from_envoy.2, b"ping over tcp\r\n");
    // Both refuse HTTP/1.0 with 426 unless the connection manager sets
    // http_protocol_options.accept_http_10.
    assert_eq!(ours.1, from_envoy.1, "HTTP/1.0 chain");
    assert_eq!(from_envoy.1 .0, 426);
}

/// The overload manager's global downstream connection cap: a connection above it is
/// closed without a response under both; the open one keeps being served.
#[test]
fn the_global_connection_cap_behaves_alike() {
    let Some(bin) = envoy_or_skip("the_global_connection_cap_behaves_alike") else {
        return;
    };
    let text = "admin:
  address: {socket_address: {address: 127.0.0.1, port_value: @ADMIN_PORT@}}
overload_manager:
  resource_monitors:
  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      \"@type\": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: 1
static_resources:
  listeners:
  - name: capped
    address: {socket_address: {address: 127.0.0.1, port_value: @PORT@}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: capped
          route_config:
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
              - match: {prefix: /}
                direct_response: {status: 200, body: {inline_string: ok}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
";
    let run = |addr: SocketAddr| {
        let mut first = Conn::connect(addr);
        first.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let served = first.read_response().map_or(0, |r| r.status);
        let mut second = Conn::connect(addr);
        let _ = second.try_send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let second_closed = second.closed_within(Duration::from_secs(5));
        first.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let again = first.read_response().map_or(0, |r| r.status);
        (served, second_closed, again)
    };
    let envoy = Envoy::start(&bin, text);
    let from_envoy = run(envoy.listen);
    drop(envoy);
    let proxy = Proxy::start(text);
    assert_eq!(run(proxy.listen), from_envoy);
    assert_eq!(from_envoy, (200, true, 200));
}

/// A bootstrap with Envoy's buffer filter (1024 bytes), a route that disables it and one
/// that raises its limit, and an access log of status and response flags.
fn buffer_bootstrap(up: SocketAddr) -> String {
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
static_resources:
  listeners:
  - name: buffered
    address: {{socket_address: {{address: 127.0.0.1, port_value: @PORT@}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: buffered
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "@DIR@/buffered.log"
              log_format:
                text_format_source:
                  inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:METHOD)% %REQ(:PATH)%\n"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /off}}
                route: {{cluster: up}}
                typed_per_filter_config:
                  buf:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute
                    disabled: true
              - match: {{prefix: /big}}
                route: {{cluster: up}}
                typed_per_filter_config:
                  buf:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute
                      buffer: {{max_request_bytes: 4096}}
              - match: {{prefix: /}}
                route: {{cluster: up}}
          http_filters:
          - name: buf
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 1024
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{}"#,
        cluster("up", up)
    )
}

/// What the client and the upstream see for each buffer-filter case.
fn observe_buffer(listen: SocketAddr, up: &Upstream) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let upstream = |out: &mut Vec<(String, String)>, label: &str| {
        let r = up.last_request();
        out.push((
            format!("{label}: upstream framing"),
            format!(
                "content-length={:?} transfer-encoding={:?} body={}",
                r.header("content-length"),
                r.header("transfer-encoding"),
                r.body_len
            ),
        ));
    };
    let mut c = Conn::connect(listen);
    for (label, path, n) in [
        ("chunked at the limit", "/c", 1024),
        ("chunked on a disabled route", "/off", 5000),
        ("chunked on a resized route", "/big", 3000),
    ] {
        c.send(chunked_post(path, &letters(n)));
        let r = c.read_response().unwrap();
        out.push((format!("{label}: status"), r.status.to_string()));
        upstream(&mut out, label);
    }
    let seen = up.request_count();
    for (label, req) in [
        (
            "content-length over the limit",
            length_post("/l", &letters(1025)),
        ),
        ("chunked over the limit", chunked_post("/c", &letters(2000))),
    ] {
        let mut c = Conn::connect(listen);
        c.send(req);
        let r = c.read_response().unwrap();
        out.push((
            format!("{label}: response"),
            format!(
                "{} {:?} content-type={:?} close={} closed={}",
                r.status,
                r.body_str(),
                r.header("content-type"),
                r.says_close(),
                c.closed_within(Duration::from_secs(5))
            ),
        ));
    }
    let url = |p: &str| format!("http://{listen}{p}");
    let r = h2client::post_unfinished(listen, "/c", 4000);
    out.push((
        "h2 over the limit".into(),
        format!("{} {:?} reset={:?}", r.status, r.body_str(), r.reset),
    ));
    out.push((
        "refused bodies went upstream".into(),
        (up.request_count() - seen).to_string(),
    ));
    // The chunk that ends the body is not held against the limit (Envoy's filter
    // continues on end_stream): 2000 bytes in one final DATA frame pass.
    let (status, _) = h2_whole_post(&url("/c"), &letters(2000));
    out.push((
        "h2 one final frame over the limit: status".into(),
        status.to_string(),
    ));
    upstream(&mut out, "h2 one final frame over the limit");
    let (status, _) = h2_stream_post(&url("/c"), &letters(1000));
    out.push(("h2 under the limit: status".into(), status.to_string()));
    upstream(&mut out, "h2 under the limit");
    out
}

#[test]
fn the_buffer_filter_behaves_alike() {
    let Some(bin) = envoy_or_skip("the_buffer_filter_behaves_alike") else {
        return;
    };
    let up = Upstream::echo();
    let text = buffer_bootstrap(up.addr);
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = observe_buffer(envoy.listen, &up);
    let envoy_log = access_log(&envoy.dir.join("buffered.log"), 8);
    drop(envoy);
    let proxy = Proxy::start(&text);
    let from_ours = observe_buffer(proxy.listen, &up);
    let our_log = access_log(&proxy.dir.join("buffered.log"), 8);
    compare(&from_ours, &from_envoy);
    assert_eq!(
        our_log, envoy_log,
        "access log lines (status, response flags, request)"
    );
}
