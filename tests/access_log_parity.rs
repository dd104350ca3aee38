//! Access-log parity with Envoy 1.40: the same bootstrap (an HTTP connection manager
//! with a file access log) runs under Envoy and under Outrigger, the same requests go
//! to both, and the log lines are compared field by field. Only fields that differ by
//! nature are normalised: timestamps, durations, ports of client sockets, connection
//! and request ids. Three formats: Envoy's default, a text format with `%REQ%`,
//! `%RESP%` and `%TRAILER%` (alternatives, lengths), and a `json_format` (types).
//! Skips, saying why, when Envoy is not installed.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::envoy::*;
use common::*;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const FILE_LOG: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";

fn bootstrap(upstream: SocketAddr, log_format: &str) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: web
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: web
          access_log:
          - name: log
            typed_config:
              "@type": {FILE_LOG}
              path: "@DIR@/access.log"
{log_format}
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /up }}
                route: {{ cluster: backend }}
                request_headers_to_add: [{{ header: {{ key: x-added, value: "yes" }} }}]
              - match: {{ prefix: /d }}
                direct_response: {{ status: 201, body: {{ inline_string: hi }} }}
              - match: {{ prefix: /none }}
                route: {{ cluster: empty }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
  - name: empty
    type: STATIC
    connect_timeout: 1s
    load_assignment: {{ cluster_name: empty }}
"#,
        upstream.port()
    )
}

/// The requests, each on its own connection (method, path, extra header lines, body).
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "GET",
        "/up/a",
        "user-agent: tester/1\r\nx-alt: alt-value\r\n",
        "",
    ),
    (
        "GET",
        "/up/b?q=1",
        "x-main: main-value-long\r\nx-forwarded-for: 192.0.2.1\r\n",
        "",
    ),
    (
        "POST",
        "/up/c",
        "content-type: text/plain\r\n",
        "hello world",
    ),
    ("GET", "/d", "user-agent: tester/2\r\n", ""),
    ("GET", "/nope", "x-request-id: client-id-1\r\n", ""),
    ("GET", "/none", "", ""),
];

/// Sends every case; returns the log's lines once there is one per case.
fn run(listen: SocketAddr, log: &Path) -> Vec<String> {
    for (method, path, extra, body) in CASES {
        let mut c = Conn::connect(listen);
        let len = if body.is_empty() && *method == "GET" {
            String::new()
        } else {
            format!("content-length: {}\r\n", body.len())
        };
        c.send(format!(
            "{method} {path} HTTP/1.1\r\nhost: svc\r\n{len}{extra}connection: close\r\n\r\n{body}"
        ));
        c.read_response().unwrap();
    }
    let n = CASES.len();
    wait_until(Duration::from_secs(10), || {
        let text = read_lossy(log);
        let lines: Vec<String> = text.lines().map(String::from).collect();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| panic!("fewer than {n} log lines:\n{}", read_lossy(log)))
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Replaces what differs by nature: any value that looks like a time stamp, a UUID, or
/// an address with a port other than the upstream's; numbers in `numeric` fields.
fn normalise_text(field: &str, upstream: SocketAddr) -> String {
    let f = field.trim_matches('"');
    let quoted = |s: &str| {
        if field.starts_with('"') {
            format!("\"{s}\"")
        } else {
            s.to_string()
        }
    };
    if f.len() == 36 && f.bytes().filter(|b| *b == b'-').count() == 4 {
        return quoted("<uuid>");
    }
    if f.starts_with("127.0.0.1:") && f != upstream.to_string() {
        return quoted("<addr>");
    }
    if f.len() >= 10 && f.as_bytes().get(4) == Some(&b'-') && f.as_bytes().get(7) == Some(&b'-') {
        return quoted("<time>");
    }
    field.to_string()
}

fn compare(ours: &[String], envoy: &[String], what: &str) {
    let mut diffs = Vec::new();
    for (i, (o, e)) in ours.iter().zip(envoy).enumerate() {
        if o != e {
            diffs.push(format!(
                "case {i} {:?}\n  outrigger: {o}\n      envoy: {e}",
                CASES.get(i).map(|c| c.1)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what} differences:\n{}",
        diffs.join("\n")
    );
    assert_eq!(ours.len(), envoy.len(), "{what}: line counts");
}

/// Runs the bootstrap under Envoy, then Outrigger; returns (ours, envoy's) lines.
fn both(bin: &std::path::PathBuf, log_format: &str) -> (Vec<String>, Vec<String>, SocketAddr) {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-up: u1\r\n\r\nhello",
    ));
    let text = bootstrap(up.addr, log_format);
    let envoy = Envoy::start(bin, &text);
    let from_envoy = run(envoy.listen, &envoy.dir.join("access.log"));
    drop(envoy);
    let proxy = Proxy::start(&text);
    let ours = run(proxy.listen, &proxy.dir.join("access.log"));
    (ours, from_envoy, up.addr)
}

/// Envoy's default format (no `log_format`): split on spaces (quoted fields have no
/// spaces in these cases) and normalise time, durations and ids.
#[test]
fn default_format_matches_envoy() {
    let Some(bin) = envoy_or_skip("default_format_matches_envoy") else {
        return;
    };
    let (ours, envoy, up) = both(&bin, "");
    let norm = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                l.split(' ')
                    .enumerate()
                    .map(|(i, f)| match i {
                        // [START_TIME]
                        0 => "[<time>]".to_string(),
                        // DURATION, upstream service time
                        8 | 9 if is_number(f) => "<ms>".into(),
                        _ => normalise_text(f, up),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    compare(&norm(&ours), &norm(&envoy), "default format");
}

const TEXT: &str = "%REQ(:METHOD)%|%REQ(X-MAIN?X-ALT):5%|%REQ(:PATH)%|%REQ(USER-AGENT)%|%REQ(X-ADDED)%|%REQ(X-FORWARDED-FOR)%|%RESP(X-UP)%|%RESP(CONTENT-LENGTH)%|%RESP(X-NOPE?X-UP):1%|%RESP(CONTENT-TYPE)%|%TRAILER(X-T)%|%TRAILER(GRPC-STATUS?X-T):3%|%RESPONSE_CODE%|%RESPONSE_FLAGS%|%BYTES_RECEIVED%|%BYTES_SENT%|%UPSTREAM_CLUSTER%|%UPSTREAM_HOST%|%PROTOCOL%|%REQ(:AUTHORITY)%|%REQ(HOST)%|%UPSTREAM_REQUEST_ATTEMPT_COUNT%|%RESPONSE_CODE_DETAILS%|%DOWNSTREAM_LOCAL_ADDRESS%|%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%|%START_TIME(%Y/%m/%d)%|%DURATION%|%REQUEST_DURATION%|%RESPONSE_DURATION%|%CONNECTION_ID%|%REQUESTED_SERVER_NAME%|%DOWNSTREAM_PEER_URI_SAN%|100%%";

#[test]
fn text_format_with_headers_matches_envoy() {
    let Some(bin) = envoy_or_skip("text_format_with_headers_matches_envoy") else {
        return;
    };
    let fmt = format!(
        "              log_format:\n                text_format_source:\n                  inline_string: \"{TEXT}\\n\""
    );
    let (ours, envoy, up) = both(&bin, &fmt);
    let norm = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                l.split('|')
                    .enumerate()
                    .map(|(i, f)| match i {
                        // START_TIME(%Y/%m/%d)
                        25 => "<date>".to_string(),
                        // DURATION, REQUEST_DURATION, RESPONSE_DURATION, CONNECTION_ID:
                        // any number (a `-` must stay a `-`).
                        26..=29 if is_number(f) => "<n>".into(),
                        _ => normalise_text(f, up),
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    };
    compare(&norm(&ours), &norm(&envoy), "text format");
}

#[test]
fn json_format_matches_envoy() {
    let Some(bin) = envoy_or_skip("json_format_matches_envoy") else {
        return;
    };
    let fmt = r#"              log_format:
                json_format:
                  code: "%RESPONSE_CODE%"
                  dur: "%DURATION%"
                  br: "%BYTES_RECEIVED%"
                  bs: "%BYTES_SENT%"
                  ua: "%REQ(USER-AGENT)%"
                  missing: "%REQ(X-NOPE)%"
                  mixed: "a %RESPONSE_CODE% b"
                  mixed_missing: "a %REQ(X-NOPE)% b"
                  flags: "%RESPONSE_FLAGS%"
                  up: "%UPSTREAM_HOST%"
                  cluster: "%UPSTREAM_CLUSTER%"
                  num: 5
                  frac: 2.5
                  is_true: true
                  nothing: null
                  nested: { inner: "%PROTOCOL%", deeper: { c: "%RESPONSE_CODE%", m: "%REQ(:METHOD)%" } }
                  trunc: "%REQ(USER-AGENT):3%"
                  resp: "%RESP(X-UP)%"
                  trailer: "%TRAILER(GRPC-STATUS)%"
                  added: "%REQ(X-ADDED)%"
                  att: "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"
                  rcd: "%RESPONSE_CODE_DETAILS%"
                  rdur: "%REQUEST_DURATION%"
                  rsdur: "%RESPONSE_DURATION%"
                  cid: "%CONNECTION_ID%"
                  st: "%START_TIME(%Y)%"
                  san: "%DOWNSTREAM_PEER_URI_SAN%"
                  dla: "%DOWNSTREAM_LOCAL_ADDRESS%"
                  quote: "say \"%REQ(:PATH)%\""
"#;
    let (ours, envoy, _) = both(&bin, fmt);
    let norm = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                // Every line is one JSON object.
                let mut v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                for k in ["dur", "rdur", "rsdur", "cid"] {
                    if v[k].is_number() {
                        v[k] = "<n>".into();
                    }
                }
                v["dla"] = "<addr>".into();
                // Key order as written (Envoy sorts them; so must we).
                let text = serde_json::to_string(&v).unwrap();
                let keys_in_order: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                let first_keys: Vec<&str> = l
                    .trim_start_matches('{')
                    .split(',')
                    .filter_map(|p| p.strip_prefix('"').and_then(|p| p.split('"').next()))
                    .take(3)
                    .collect();
                format!(
                    "{text} first keys {first_keys:?} of {}",
                    keys_in_order.len()
                )
            })
            .collect()
    };
    compare(&norm(&ours), &norm(&envoy), "json format");
}
