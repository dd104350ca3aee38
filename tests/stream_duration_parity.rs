//! Stream durations and gRPC timeouts against Envoy 1.40: the connection manager's
//! `common_http_protocol_options.max_stream_duration`, a route's `max_stream_duration`
//! (with `grpc_timeout_header_max` / `grpc_timeout_header_offset`), and the older
//! `max_grpc_timeout` / `grpc_timeout_offset`. One bootstrap goes to Envoy and to
//! Outrigger; each case is sent by curl over HTTP/1.1 and over HTTP/2 (h2c), and what
//! must be equal is: the client's status, `grpc-status` and `grpc-message`, whether the
//! response was cut after its head, the `grpc-timeout` the upstream received, and the
//! access log's status, flags and response code details (which clock ended the stream).
//! Without any gRPC setting a `grpc-timeout` bounds nothing and goes upstream untouched;
//! a route with `max_stream_duration` has no route timeout (its `timeout: 0.2s` here is
//! ignored, as Envoy ignores it).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::envoy::{envoy_or_skip, hcm_head, Envoy, ROUTER_TYPE};
use common::*;

const FILE_LOG: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";

/// `.../sleep/N` answers `ok` after N ms; `.../stream` sends its head and 10 of 100
/// body bytes, then stalls for 3 s.
fn upstream() -> Upstream {
    Upstream::start(std::sync::Arc::new(|ctx, req, s| {
        let t = req.target.as_str();
        if t.ends_with("/stream") {
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")?;
            ctx.sleep(Duration::from_secs(3));
            return Ok(false);
        }
        let ms = t
            .rsplit_once("/sleep/")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0);
        ctx.sleep(Duration::from_millis(ms));
        // Kept alive: the next case's clock runs on a pooled connection (9e72d4a).
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")?;
        Ok(true)
    }))
}

fn bootstrap(up: SocketAddr) -> String {
    let head = hcm_head("", "main");
    format!(
        r#"{head}          common_http_protocol_options: {{ max_stream_duration: 0.5s }}
          access_log:
          - name: log
            typed_config:
              "@type": {FILE_LOG}
              path: "@DIR@/access.log"
              log_format:
                text_format_source:
                  inline_string: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /r/ }}
                route:
                  cluster: up
                  max_stream_duration:
                    max_stream_duration: 0.3s
                    grpc_timeout_header_max: 0.8s
                    grpc_timeout_header_offset: 0.1s
              - match: {{ prefix: /g/ }}
                route: {{ cluster: up, max_grpc_timeout: 0.6s, grpc_timeout_offset: 0.1s }}
              - match: {{ prefix: /z/ }}
                route: {{ cluster: up, timeout: 0.2s, max_stream_duration: {{ max_stream_duration: 0s }} }}
              - match: {{ prefix: / }}
                route: {{ cluster: up }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": {ROUTER_TYPE}}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        up.port()
    )
}

/// (path, gRPC, the client's `grpc-timeout`).
const CASES: &[(&str, bool, Option<&str>)] = &[
    // The connection manager's 0.5 s limit: 504 before the head.
    ("/sleep/2000", false, None),
    // A gRPC request's grpc-timeout alone bounds nothing, and goes upstream as it came.
    ("/sleep/100", true, Some("50m")),
    // The route's 0.3 s limit.
    ("/r/sleep/2000", false, None),
    // grpc-timeout 2 s capped at 0.8 s, less 0.1 s: DEADLINE_EXCEEDED; 700m upstream.
    ("/r/sleep/2000", true, Some("2S")),
    // No grpc-timeout: the route's 0.3 s, written upstream.
    ("/r/sleep/100", true, None),
    // max_grpc_timeout: 250 ms less 0.1 s is the route timeout: UT.
    ("/g/sleep/2000", true, Some("250m")),
    // No header: the cap (0.6 s), written upstream.
    ("/g/sleep/100", true, None),
    // Not gRPC: the route's 15 s timeout, the connection manager's 0.5 s limit.
    ("/g/sleep/800", false, None),
    // A zero route limit turns the connection manager's off; the route timeout is off.
    ("/z/sleep/800", false, None),
    // The limit after the response head: the response is cut.
    ("/stream", false, None),
    ("/r/stream", true, Some("1S")),
];

#[derive(Debug, PartialEq)]
struct Seen {
    status: String,
    grpc_status: Option<String>,
    grpc_message: Option<String>,
    /// curl saw the response cut (a reset stream, a closed connection mid-body).
    cut: bool,
    /// The `grpc-timeout` the upstream received.
    upstream_grpc_timeout: Option<String>,
}

fn send(listen: SocketAddr, h2: bool, case: &(&str, bool, Option<&str>), up: &Upstream) -> Seen {
    let (path, grpc, timeout) = *case;
    let before = up.requests().len();
    let url = format!("http://{listen}{path}");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "5", "-o", "/dev/null", "-D", "-"]);
    cmd.arg(if h2 {
        "--http2-prior-knowledge"
    } else {
        "--http1.1"
    });
    if grpc {
        cmd.args(["-X", "POST", "--data-binary", "", "-H"]);
        cmd.arg("content-type: application/grpc");
    }
    if let Some(t) = timeout {
        cmd.args(["-H", &format!("grpc-timeout: {t}")]);
    }
    let out = cmd.arg(&url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("none")
        .to_string();
    let upstream_grpc_timeout = wait_until(Duration::from_secs(2), || {
        let r = up.requests();
        (r.len() > before).then(|| {
            r.last()
                .and_then(|r| r.header("grpc-timeout").map(String::from))
        })
    })
    .flatten();
    Seen {
        status,
        grpc_status: field("grpc-status"),
        grpc_message: field("grpc-message"),
        cut: !out.status.success(),
        upstream_grpc_timeout,
    }
}

/// Every case over HTTP/1.1 then HTTP/2, and the access log's lines for them.
fn exercise(listen: SocketAddr, log: &Path, up: &Upstream) -> (Vec<Seen>, Vec<String>) {
    let mut seen = Vec::new();
    for h2 in [false, true] {
        for c in CASES {
            seen.push(send(listen, h2, c, up));
        }
    }
    let n = CASES.len() * 2;
    let lines = wait_until(Duration::from_secs(10), || {
        let text = read_lossy(log);
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| panic!("fewer than {n} log lines:\n{}", read_lossy(log)));
    (seen, lines)
}

#[test]
fn envoy_and_outrigger_time_streams_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_time_streams_alike") else {
        return;
    };
    let up = upstream();
    let text = bootstrap(up.addr);
    let envoy = Envoy::start(&bin, &text);
    let (from_envoy, envoy_log) = exercise(envoy.listen, &envoy.dir.join("access.log"), &up);
    drop(envoy);
    let proxy = Proxy::start_with(&text, 1);
    let (from_outrigger, our_log) = exercise(proxy.listen, &proxy.dir.join("access.log"), &up);
    let mut diffs = common::envoy::client_diffs(CASES, &from_envoy, &from_outrigger);
    diffs.extend(common::envoy::log_diff(&envoy_log, &our_log));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // The cases do what they are meant to (not only alike): the limit ended the first.
    assert_eq!(from_outrigger[0].status, "504");
    assert_eq!(from_outrigger[3].grpc_status.as_deref(), Some("4"));
    assert_eq!(
        from_outrigger[3].upstream_grpc_timeout.as_deref(),
        Some("700m")
    );
    assert_eq!(from_outrigger[8].status, "200");
}
