//! Access-log parity with Envoy 1.40: the same bootstrap (an HTTP connection manager
//! with a file access log) runs under Envoy and under Outrigger, the same requests go
//! to both, and the log lines are compared field by field. Only fields that differ by
//! nature are normalised: timestamps, durations, ports of client sockets, connection
//! and request ids. Three formats: Envoy's default, a text format with `%REQ%`,
//! `%RESP%` and `%TRAILER%` (alternatives, lengths), and a `json_format` (types); and
//! HTTP/2 clients (prior knowledge) in text and JSON: response headers and trailers of
//! HTTP/1.1 and HTTP/2 upstreams (gRPC with trailers, trailers-only) and of local
//! replies, and `%CONNECTION_ID%` across streams of one connection; and HTTP/1.1
//! clients of the HTTP/2 upstream, whose trailers the log prints though the client
//! does not get them from Envoy.
//! Skips, saying why, when Envoy is not installed.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::envoy::*;
use common::*;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const FILE_LOG: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";

/// The bootstrap: `upstream` speaks HTTP/1.1 (`/up`), `h2` HTTP/2 (`/g`, cluster
/// `grpc`).
fn bootstrap(upstream: SocketAddr, h2: SocketAddr, log_format: &str) -> String {
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
              - match: {{ prefix: /g }}
                route: {{ cluster: grpc }}
                request_headers_to_add: [{{ header: {{ key: x-added, value: "g" }} }}]
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
  - name: grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        upstream.port(),
        h2.port()
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
    let text = bootstrap(up.addr, refused_addr(), log_format);
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

const TEXT: &str = "%REQ(:METHOD)%|%REQ(X-MAIN?X-ALT):5%|%REQ(:PATH)%|%REQ(USER-AGENT)%|%REQ(X-ADDED)%|%REQ(X-FORWARDED-FOR)%|%RESP(X-UP)%|%RESP(CONTENT-LENGTH)%|%RESP(X-NOPE?X-UP):1%|%RESP(CONTENT-TYPE)%|%TRAILER(X-T)%|%TRAILER(GRPC-STATUS?X-T):3%|%RESPONSE_CODE%|%RESPONSE_FLAGS%|%BYTES_RECEIVED%|%BYTES_SENT%|%UPSTREAM_CLUSTER%|%UPSTREAM_HOST%|%PROTOCOL%|%REQ(:AUTHORITY)%|%REQ(HOST)%|%UPSTREAM_REQUEST_ATTEMPT_COUNT%|%RESPONSE_CODE_DETAILS%|%DOWNSTREAM_LOCAL_ADDRESS%|%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%|%START_TIME(%Y/%m/%d)%|%DURATION%|%REQUEST_DURATION%|%RESPONSE_DURATION%|%CONNECTION_ID%|%REQUESTED_SERVER_NAME%|%DOWNSTREAM_PEER_URI_SAN%|100%%|%RESP(:STATUS)%";

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

/// The HTTP/2 requests (method, path, gRPC), in this order on one connection; then
/// [`H2_OTHER`] on a second one.
const H2_CASES: &[(&str, &str, bool)] = &[
    // An HTTP/1.1 upstream.
    ("GET", "/up/a", false),
    // A gRPC call whose HTTP/2 upstream ends the response with trailers.
    ("POST", "/g/echo", true),
    // A gRPC call answered trailers-only by the upstream (its status in the head).
    ("POST", "/g/fail", true),
    // An HTTP/2 upstream's plain response (no trailers).
    ("GET", "/g/plain", false),
    // Local replies: a direct response with a body, no route (no body), and a gRPC
    // call to a cluster without endpoints (the proxy's trailers-only reply).
    ("GET", "/d", false),
    ("GET", "/nope", false),
    ("POST", "/none", true),
];
const H2_OTHER: &str = "/up/other";

/// What the HTTP/2 upstream answers (`h2client::h2_upstream_answering`).
fn h2_answer(p: &http::request::Parts) -> h2client::Answer {
    let grpc = |extra: &[(&'static str, &'static str)]| {
        let mut h = vec![("content-type", "application/grpc"), ("x-up", "g1")];
        h.extend_from_slice(extra);
        h
    };
    match p.uri.path() {
        "/g/echo" => h2client::Answer {
            status: 200,
            headers: grpc(&[]),
            body: b"\0\0\0\0\x02hi",
            trailers: vec![
                ("grpc-status", "0"),
                ("grpc-message", "fine"),
                ("x-t", "t1"),
            ],
        },
        "/g/fail" => h2client::Answer {
            status: 200,
            headers: grpc(&[("grpc-status", "5"), ("grpc-message", "no such thing")]),
            body: b"",
            trailers: vec![],
        },
        // A body with a length, then trailers.
        "/g/lt" => h2client::Answer {
            status: 200,
            headers: vec![("content-length", "5"), ("x-up", "lt")],
            body: b"hello",
            trailers: vec![("x-t", "t2"), ("grpc-message", "len")],
        },
        _ => h2client::Answer {
            status: 200,
            headers: vec![("content-length", "5"), ("x-up", "h2")],
            body: b"hello",
            trailers: vec![],
        },
    }
}

/// Sends the HTTP/2 cases with prior knowledge; returns the log's lines once there is
/// one per request.
fn run_h2(listen: SocketAddr, log: &Path) -> Vec<String> {
    h2client::run(move || async move {
        let mut c = h2client::connect(listen).await;
        for (method, path, grpc) in H2_CASES {
            let mut req = h2client::request(method, &format!("http://svc{path}"));
            if *grpc {
                req = req
                    .header("content-type", "application/grpc")
                    .header("te", "trailers");
            }
            let body: &[u8] = if *method == "POST" {
                b"\0\0\0\0\x02yo"
            } else {
                b""
            };
            let r = h2client::send(&mut c, req.body(()).unwrap(), body).await;
            assert!(r.reset.is_none(), "{path}: {:?}", r.reset);
        }
        let mut other = h2client::connect(listen).await;
        let req = h2client::request("GET", &format!("http://svc{H2_OTHER}"));
        let r = h2client::send(&mut other, req.body(()).unwrap(), b"").await;
        assert_eq!(r.status, 200, "{H2_OTHER}");
    });
    let n = H2_CASES.len() + 1;
    wait_until(Duration::from_secs(10), || {
        let text = read_lossy(log);
        let lines: Vec<String> = text.lines().map(String::from).collect();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| panic!("fewer than {n} log lines:\n{}", read_lossy(log)))
}

/// Runs the bootstrap under Envoy, then Outrigger, with the HTTP/2 cases; returns
/// (ours, envoy's) lines and the two upstreams' addresses.
fn both_h2(
    bin: &std::path::PathBuf,
    log_format: &str,
) -> (Vec<String>, Vec<String>, [SocketAddr; 2]) {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-up: u1\r\n\r\nhello",
    ));
    let h2 = h2client::h2_upstream_answering(h2_answer);
    let text = bootstrap(up.addr, h2, log_format);
    let envoy = Envoy::start(bin, &text);
    let from_envoy = run_h2(envoy.listen, &envoy.dir.join("access.log"));
    drop(envoy);
    let proxy = Proxy::start(&text);
    let ours = run_h2(proxy.listen, &proxy.dir.join("access.log"));
    (ours, from_envoy, [up.addr, h2])
}

/// Connection ids differ between the proxies: each becomes the order of its first
/// appearance (`c0`, `c1`), so lines of one connection share theirs and the other
/// connection's differs. A `0` or `-` stays as it is.
fn connection_ordinals(ids: &[String]) -> Vec<String> {
    let mut seen: Vec<&String> = Vec::new();
    ids.iter()
        .map(|id| {
            if !is_number(id) || id == "0" {
                return id.clone();
            }
            let i = seen.iter().position(|s| *s == id).unwrap_or_else(|| {
                seen.push(id);
                seen.len() - 1
            });
            format!("c{i}")
        })
        .collect()
}

const H2_TEXT: &str = "%REQ(:PATH)%|%REQ(:METHOD)%|%PROTOCOL%|%RESPONSE_CODE%|%RESPONSE_FLAGS%|%RESP(X-UP)%|%RESP(CONTENT-LENGTH)%|%RESP(CONTENT-TYPE)%|%RESP(GRPC-STATUS)%|%RESP(GRPC-MESSAGE):6%|%RESP(X-NOPE?X-UP):1%|%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%|%RESP(SERVER)%|%RESP(DATE)%|%TRAILER(GRPC-STATUS)%|%TRAILER(X-T)%|%TRAILER(X-NOPE?GRPC-MESSAGE):2%|%BYTES_RECEIVED%|%BYTES_SENT%|%UPSTREAM_CLUSTER%|%UPSTREAM_HOST%|%RESPONSE_CODE_DETAILS%|%REQUEST_DURATION%|%RESPONSE_DURATION%|%CONNECTION_ID%";

/// HTTP/2 downstream streams: `%RESP%` and `%TRAILER%` (gRPC trailers, trailers-only
/// responses, local replies, alternatives and lengths) and `%CONNECTION_ID%`.
#[test]
fn http2_text_format_with_headers_and_trailers_matches_envoy() {
    let Some(bin) = envoy_or_skip("http2_text_format_with_headers_and_trailers_matches_envoy")
    else {
        return;
    };
    let fmt = format!(
        "              log_format:\n                text_format_source:\n                  inline_string: \"{H2_TEXT}\\n\""
    );
    let (ours, envoy, [up, h2]) = both_h2(&bin, &fmt);
    let norm = |lines: &[String]| -> Vec<String> {
        // By path: a stream's line may be written just after its client saw the end.
        let mut rows: Vec<Vec<String>> = lines
            .iter()
            .map(|l| l.split('|').map(String::from).collect())
            .collect();
        rows.sort();
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.last().cloned().unwrap_or_default())
            .collect();
        let ids = connection_ordinals(&ids);
        rows.iter()
            .zip(ids)
            .map(|(r, id)| {
                let mut r = r.clone();
                if let Some(last) = r.last_mut() {
                    *last = id;
                }
                for (i, f) in r.iter_mut().enumerate() {
                    match i {
                        // x-envoy-upstream-service-time
                        11 if is_number(f) => *f = "<ms>".into(),
                        // date
                        13 if f != "-" => *f = "<date>".into(),
                        20 if *f == up.to_string() => *f = "<up>".into(),
                        20 if *f == h2.to_string() => *f = "<h2>".into(),
                        // REQUEST_DURATION, RESPONSE_DURATION: a number or `-`
                        22 | 23 if is_number(f) => *f = "<ms>".into(),
                        _ => {}
                    }
                }
                r.join("|")
            })
            .collect()
    };
    let (ours, envoy) = (norm(&ours), norm(&envoy));
    assert_eq!(ours, envoy, "HTTP/2 text format: outrigger, then envoy");
    // The lines say what they should, not only the same thing as Envoy's.
    let echo = ours.iter().find(|l| l.starts_with("/g/echo|")).unwrap();
    assert!(echo.contains("|0|t1|fi|"), "gRPC trailers: {echo}");
    assert!(
        ours.iter().all(|l| !l.ends_with("|0")),
        "connection ids: {ours:?}"
    );
}

/// The same in a `json_format`: header values are strings, absent ones `null`.
#[test]
fn http2_json_format_matches_envoy() {
    let Some(bin) = envoy_or_skip("http2_json_format_matches_envoy") else {
        return;
    };
    let fmt = r#"              log_format:
                json_format:
                  path: "%REQ(:PATH)%"
                  code: "%RESPONSE_CODE%"
                  resp: "%RESP(X-UP)%"
                  rgs: "%RESP(GRPC-STATUS)%"
                  cl: "%RESP(CONTENT-LENGTH)%"
                  trailer: "%TRAILER(GRPC-STATUS)%"
                  mixed: "t=%TRAILER(X-T)% r=%RESP(CONTENT-TYPE):8%"
                  cid: "%CONNECTION_ID%"
"#;
    let (ours, envoy, _) = both_h2(&bin, fmt);
    let norm = |lines: &[String]| -> Vec<String> {
        let mut values: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        values.sort_by_key(|v| v["path"].as_str().unwrap_or_default().to_string());
        let ids: Vec<String> = values.iter().map(|v| v["cid"].to_string()).collect();
        for (v, id) in values.iter_mut().zip(connection_ordinals(&ids)) {
            v["cid"] = id.into();
        }
        values.iter().map(|v| v.to_string()).collect()
    };
    assert_eq!(
        norm(&ours),
        norm(&envoy),
        "HTTP/2 json format: outrigger, then envoy"
    );
}

/// HTTP/1.1 clients of the HTTP/2 upstream (method, path): a body ended by trailers,
/// a trailers-only answer, a plain body, and a body with a length and trailers.
const H1_TO_H2_CASES: &[(&str, &str)] = &[
    ("POST", "/g/echo"),
    ("POST", "/g/fail"),
    ("GET", "/g/plain"),
    ("GET", "/g/lt"),
];

const H1_TO_H2_TEXT: &str = "%REQ(:PATH)%|%PROTOCOL%|%RESPONSE_CODE%|%RESPONSE_FLAGS%|%RESP(X-UP)%|%RESP(CONTENT-LENGTH)%|%RESP(GRPC-STATUS)%|%TRAILER(GRPC-STATUS)%|%TRAILER(X-T)%|%TRAILER(X-NOPE?GRPC-MESSAGE):3%|%BYTES_SENT%|%RESPONSE_CODE_DETAILS%|%RESPONSE_DURATION%";

/// `%TRAILER%` for an HTTP/1.1 client: Envoy's log prints the HTTP/2 upstream's
/// trailers whatever the client's protocol, with a chunked body or one with a length.
#[test]
fn http1_clients_log_http2_upstream_trailers_as_envoy() {
    let Some(bin) = envoy_or_skip("http1_clients_log_http2_upstream_trailers_as_envoy") else {
        return;
    };
    let fmt = format!(
        "              log_format:\n                text_format_source:\n                  inline_string: \"{H1_TO_H2_TEXT}\\n\""
    );
    // What the client got after the body: Envoy's HTTP/1 codec drops the trailers
    // (`enable_trailers` off by default), whatever the body's framing.
    let wire = std::cell::RefCell::new(Vec::new());
    let send = |listen: SocketAddr, log: &Path| -> Vec<String> {
        wire.borrow_mut().clear();
        for (method, path) in H1_TO_H2_CASES {
            let mut c = Conn::connect(listen);
            let body = if *method == "POST" {
                "\0\0\0\0\x02yo"
            } else {
                ""
            };
            c.send(format!(
                "{method} {path} HTTP/1.1\r\nhost: svc\r\ncontent-type: application/grpc\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            ));
            let r = c.read_response().unwrap();
            assert_eq!(r.status, 200, "{path}");
            wire.borrow_mut().push(format!(
                "{path}: chunked={} trailers={:?}",
                r.chunked, r.trailers
            ));
        }
        let n = H1_TO_H2_CASES.len();
        let mut lines = wait_until(Duration::from_secs(10), || {
            let lines: Vec<String> = read_lossy(log).lines().map(String::from).collect();
            (lines.len() >= n).then_some(lines)
        })
        .unwrap_or_else(|| panic!("fewer than {n} log lines:\n{}", read_lossy(log)));
        lines.sort();
        // RESPONSE_DURATION: a number, or `-` (which must stay `-`).
        lines
            .iter()
            .map(|l| match l.rsplit_once('|') {
                Some((rest, d)) if is_number(d) => format!("{rest}|<ms>"),
                _ => l.clone(),
            })
            .collect()
    };
    let up = Upstream::start(fixed("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
    let h2 = h2client::h2_upstream_answering(h2_answer);
    let text = bootstrap(up.addr, h2, &fmt);
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = send(envoy.listen, &envoy.dir.join("access.log"));
    let envoy_wire = wire.borrow().clone();
    drop(envoy);
    let proxy = Proxy::start(&text);
    let ours = send(proxy.listen, &proxy.dir.join("access.log"));
    assert_eq!(ours, from_envoy, "HTTP/1.1 clients: outrigger, then envoy");
    assert_eq!(
        *wire.borrow(),
        envoy_wire,
        "on the wire: outrigger, then envoy"
    );
    // The lines say what they should, not only the same thing as Envoy's.
    assert!(
        ours.iter()
            .any(|l| l.starts_with("/g/echo|") && l.contains("|0|t1|fin|")),
        "{ours:?}"
    );
    assert!(
        ours.iter()
            .any(|l| l.starts_with("/g/lt|") && l.contains("|-|t2|len|")),
        "{ours:?}"
    );
}

const H2_REQ_TEXT: &str = "%REQ(:PATH)%|%REQ(X-ADDED)%|%REQ(X-FORWARDED-FOR)%|%REQ(HOST)%|%REQ(:AUTHORITY)%|%REQ(X-ENVOY-EXPECTED-RQ-TIMEOUT-MS)%|%REQ(CONTENT-TYPE)%|%REQ(TE)%|%REQ(CONTENT-LENGTH)%|%REQ(X-REQUEST-ID):1%";

/// HTTP/2 clients: `%REQ(..)%` reads the request as it went upstream (the route's
/// added headers, the proxy's own), to an HTTP/1.1 and to an HTTP/2 upstream, and as it
/// came for local replies (with the generated `x-request-id`, here only whether there is
/// one), as Envoy's log reads its request header map. Not compared:
/// `x-envoy-expected-rq-timeout-ms` of a request routed to a cluster without endpoints,
/// which Envoy's router sets before it finds no host and Outrigger's log does not show.
#[test]
fn http2_clients_log_request_headers_as_sent_like_envoy() {
    let Some(bin) = envoy_or_skip("http2_clients_log_request_headers_as_sent_like_envoy") else {
        return;
    };
    let fmt = format!(
        "              log_format:\n                text_format_source:\n                  inline_string: \"{H2_REQ_TEXT}\\n\""
    );
    let (ours, envoy, _) = both_h2(&bin, &fmt);
    let norm = |lines: &[String]| -> Vec<String> {
        let mut lines: Vec<String> = lines
            .iter()
            .map(|l| match l.strip_prefix("/none|") {
                // The cluster has no endpoint: the timeout header is not compared.
                Some(rest) => {
                    let mut f: Vec<&str> = rest.split('|').collect();
                    if let Some(t) = f.get_mut(4) {
                        *t = "<t>";
                    }
                    format!("/none|{}", f.join("|"))
                }
                None => l.clone(),
            })
            // The generated x-request-id's first character: whether there is one.
            .map(|l| match l.rsplit_once('|') {
                Some((rest, id)) if id != "-" => format!("{rest}|<id>"),
                _ => l,
            })
            .collect();
        lines.sort();
        lines
    };
    let (ours, envoy) = (norm(&ours), norm(&envoy));
    assert_eq!(ours, envoy, "HTTP/2 request headers: outrigger, then envoy");
    assert!(ours.iter().any(|l| l.starts_with("/g/echo|g|")), "{ours:?}");
    assert!(ours.iter().any(|l| l.starts_with("/up/a|yes|")), "{ours:?}");
}
