//! Access logs configured through an Envoy bootstrap, through the real binary: JSON
//! lines under a burst of concurrent requests, access-log filters, the stdout and
//! stderr loggers, reopening the file on SIGUSR1 (log rotation), the TCP proxy's log,
//! and malformed formats refused with the field's path.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const FILE_LOG: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
const T: Duration = Duration::from_secs(10);

/// One HCM listener on `@PORT@` (routes `/up` to `backend`, `/d` direct, the rest NR),
/// a TCP proxy listener on `@PORT2@` to `backend`, both with the given `access_log`
/// lists (indented for the HCM; the TCP one may be empty).
fn bootstrap(upstream: SocketAddr, access_log: &str, tcp_log: &str) -> String {
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
{access_log}
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /up }}
                route: {{ cluster: backend }}
              - match: {{ prefix: /d }}
                direct_response: {{ status: 200, body: {{ inline_string: hi }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT2@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: backend
{tcp_log}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        upstream.port()
    )
}

/// A file access log at `@DIR@/{file}` with extra lines (`log_format`, indented 14).
fn file_log(file: &str, format: &str, filter: &str) -> String {
    format!(
        "          access_log:\n          - name: log\n{filter}            typed_config:\n              \"@type\": {FILE_LOG}\n              path: \"@DIR@/{file}\"\n{format}"
    )
}

fn lines(path: &Path) -> Vec<String> {
    read_lossy(path).lines().map(String::from).collect()
}

fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    wait_until(T, || {
        let l = lines(path);
        (l.len() >= n).then_some(l)
    })
    .unwrap_or_else(|| panic!("fewer than {n} lines in {path:?}:\n{}", read_lossy(path)))
}

const JSON: &str = r#"              log_format:
                json_format:
                  code: "%RESPONSE_CODE%"
                  path: "%REQ(:PATH)%"
                  ua: "%REQ(USER-AGENT)%"
                  bytes: { in: "%BYTES_RECEIVED%", out: "%BYTES_SENT%" }
                  up: "%UPSTREAM_HOST%"
                  quoted: "\"%REQ(X-TRICKY)%\""
"#;

/// The issue's "the JSON access log parses line by line under load": a bounded burst
/// of concurrent requests on two workers, each line one JSON object with typed values.
#[test]
fn json_lines_parse_under_a_concurrent_burst() {
    let up = Upstream::echo();
    let proxy = Proxy::start_with(
        &bootstrap(up.addr, &file_log("access.log", JSON, ""), ""),
        2,
    );
    const THREADS: usize = 8;
    const EACH: usize = 25;
    let listen = proxy.listen;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Conn::connect(listen);
                for i in 0..EACH {
                    c.send(format!(
                        "GET /up/{t}/{i} HTTP/1.1\r\nhost: svc\r\nuser-agent: burst \"{t}\"\r\n\
                         x-tricky: a\\b \"q\" \u{e9}\r\n\r\n"
                    ));
                    assert_eq!(c.read_response().unwrap().status, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let got = wait_lines(&proxy.dir.join("access.log"), THREADS * EACH);
    assert_eq!(got.len(), THREADS * EACH);
    let mut paths = std::collections::BTreeSet::new();
    for l in &got {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert_eq!(v["code"], 200, "{l}");
        assert!(
            v["bytes"]["in"].is_u64() && v["bytes"]["out"].is_u64(),
            "{l}"
        );
        assert_eq!(v["up"], up.addr.to_string(), "{l}");
        assert!(v["ua"].as_str().unwrap().starts_with("burst \""), "{l}");
        assert_eq!(v["quoted"], "\"a\\b \"q\" \u{e9}\"", "{l}");
        paths.insert(v["path"].as_str().unwrap().to_string());
    }
    assert_eq!(paths.len(), THREADS * EACH, "every request once");
}

/// `status_code_filter`, `response_flag_filter`, `duration_filter`, `runtime_filter`,
/// `not_health_check_filter` and their `and`/`or` combinations decide which requests
/// get a line: here (status >= 400, not a health check, within a minute) or a 0%
/// sample (never) or an upstream connect failure (none happens).
#[test]
fn filters_choose_the_logged_requests() {
    let up = Upstream::echo();
    let filter = r#"            filter:
              or_filter:
                filters:
                - and_filter:
                    filters:
                    - status_code_filter: { comparison: { op: GE, value: { default_value: 400, runtime_key: k } } }
                    - not_health_check_filter: {}
                    - duration_filter: { comparison: { op: LE, value: { default_value: 60000, runtime_key: d } } }
                - runtime_filter: { runtime_key: never, percent_sampled: { numerator: 0 } }
                - response_flag_filter: { flags: [UF] }
"#;
    let fmt = "              log_format: { text_format_source: { inline_string: \"%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n\" } }\n";
    let proxy = Proxy::start(&bootstrap(
        up.addr,
        &file_log("access.log", fmt, filter),
        "",
    ));
    let mut c = Conn::connect(proxy.listen);
    for path in ["/up/ok", "/d", "/nope", "/up/ok2", "/nope2"] {
        c.send(format!("GET {path} HTTP/1.1\r\nhost: svc\r\n\r\n"));
        c.read_response().unwrap();
    }
    let log = proxy.dir.join("access.log");
    // The last logged request is in: the earlier ones were flushed before it.
    wait_for_line(&log, T, |l| l.starts_with("/nope2 ")).expect("the last 404 line");
    assert_eq!(lines(&log), ["/nope 404 NR", "/nope2 404 NR"]);
}

/// Envoy reopens its access logs on SIGUSR1: rename the file, signal, and the next
/// lines go to a new file of the configured name; no line is lost.
#[test]
fn sigusr1_reopens_the_log_file() {
    let up = Upstream::echo();
    let fmt = "              log_format: { text_format_source: { inline_string: \"%REQ(:PATH)%\\n\" } }\n";
    let proxy = Proxy::start(&bootstrap(up.addr, &file_log("access.log", fmt, ""), ""));
    let (log, old) = (proxy.dir.join("access.log"), proxy.dir.join("access.log.1"));
    assert_eq!(get(proxy.listen, "svc", "/up/before").status, 200);
    wait_for_line(&log, T, |l| l == "/up/before").expect("first line");
    std::fs::rename(&log, &old).unwrap();
    // Until the signal, lines follow the open file to its new name.
    assert_eq!(get(proxy.listen, "svc", "/up/renamed").status, 200);
    wait_for_line(&old, T, |l| l == "/up/renamed").expect("line in the renamed file");
    proxy.signal(libc::SIGUSR1);
    // The signal's flag is read by the log thread before its next write: keep logging
    // until a line reaches the new file (bounded).
    let mut sent = Vec::new();
    let reopened = wait_until(T, || {
        let p = format!("/up/after{}", sent.len());
        assert_eq!(get(proxy.listen, "svc", &p).status, 200);
        sent.push(p);
        std::thread::sleep(Duration::from_millis(20));
        (!lines(&log).is_empty()).then_some(())
    });
    assert!(reopened.is_some(), "no new file after SIGUSR1");
    let last = sent.last().unwrap().clone();
    wait_for_line(&log, T, |l| l == last).expect("last line in the new file");
    let (new_lines, old_lines) = (lines(&log), lines(&old));
    assert!(!new_lines.contains(&"/up/before".to_string()));
    assert_eq!(old_lines[..2], ["/up/before", "/up/renamed"]);
    for p in &sent {
        assert!(
            new_lines.contains(p) || old_lines.contains(p),
            "{p} lost:\nnew {new_lines:?}\nold {old_lines:?}"
        );
    }
}

/// `envoy.access_loggers.stdout`, `.stderr`, and a file logger on /dev/stdout.
#[test]
fn stdout_and_stderr_loggers() {
    let up = Upstream::echo();
    let stderr_log = "          access_log:\n          - name: err\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog\n              log_format: { text_format_source: { inline_string: \"to-stderr %REQ(:PATH)%\\n\" } }\n";
    let stdout_log = "          access_log:\n          - name: out\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n              log_format: { text_format: \"to-stdout %REQ(:PATH)%\\n\" }\n";
    let proxy = Proxy::start(&bootstrap(up.addr, stderr_log, ""));
    assert_eq!(get(proxy.listen, "svc", "/up/e").status, 200);
    assert!(wait_until(T, || proxy
        .stderr()
        .contains("to-stderr /up/e")
        .then_some(()))
    .is_some());
    let proxy = Proxy::start(&bootstrap(up.addr, stdout_log, ""));
    assert_eq!(get(proxy.listen, "svc", "/up/o").status, 200);
    assert!(wait_until(T, || proxy
        .stdout()
        .contains("to-stdout /up/o")
        .then_some(()))
    .is_some());
    let dev_stdout = file_log("x", "", "").replace("@DIR@/x", "/dev/stdout");
    let proxy = Proxy::start(&bootstrap(up.addr, &dev_stdout, ""));
    assert_eq!(get(proxy.listen, "svc", "/up/dev").status, 200);
    assert!(
        wait_until(T, || proxy
            .stdout()
            .contains("\"GET /up/dev HTTP/1.1\" 200")
            .then_some(()))
        .is_some(),
        "{}",
        proxy.stdout()
    );
}

/// The TCP proxy's `access_log`: connection-level operators.
#[test]
fn tcp_proxy_access_log() {
    let up = Upstream::echo();
    let tcp_log = "          access_log:\n          - name: tcp\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: \"@DIR@/tcp.log\"\n              log_format:\n                json_format: { up: \"%UPSTREAM_HOST%\", cluster: \"%UPSTREAM_CLUSTER%\", path: \"%REQ(:PATH)%\", rx: \"%BYTES_RECEIVED%\" }\n";
    let proxy = Proxy::start(&bootstrap(up.addr, "", tcp_log));
    let raw = "GET /t HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n";
    assert_eq!(exchange(proxy.listen2, raw).status, 200);
    let l = wait_lines(&proxy.dir.join("tcp.log"), 1);
    let v: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
    assert_eq!(v["up"], up.addr.to_string());
    assert_eq!(v["cluster"], "backend");
    assert_eq!(
        v["path"],
        serde_json::Value::Null,
        "no HTTP request on a TCP stream"
    );
    assert_eq!(v["rx"], raw.len() as u64, "TCP counts every byte");
}

fn validate(text: &str) -> (bool, String) {
    validate_config(text)
}

/// Malformed formats are refused with the field path and the reason, never accepted
/// or crashed on.
#[test]
fn malformed_formats_are_refused_with_their_path() {
    let up = "127.0.0.1:9".parse().unwrap();
    let cases = [
        ("%NOPE%", "Not supported field in StreamInfo: NOPE"),
        ("%REQ(X):abc%", "bad maximum length"),
        ("%DURATION", "unterminated operator"),
        ("%REQ(X):%", "bad maximum length"),
    ];
    for (fmt, why) in cases {
        let f = format!(
            "              log_format: {{ text_format_source: {{ inline_string: \"{fmt}\" }} }}\n"
        );
        let (ok, out) = validate(&bootstrap(up, &file_log("a.log", &f, ""), ""));
        assert!(!ok, "{fmt} accepted");
        assert!(
            out.contains("access_log[0].typed_config.log_format.text_format_source.inline_string")
                && out.contains(why),
            "{fmt}: {out}"
        );
    }
    let json = "              log_format: { json_format: { a: { b: \"%BAD%\" } } }\n";
    let (ok, out) = validate(&bootstrap(up, &file_log("a.log", json, ""), ""));
    assert!(
        !ok && out.contains("a.b: Not supported field in StreamInfo: BAD"),
        "{out}"
    );
    let filter = "            filter: { response_flag_filter: { flags: [NOPE] } }\n";
    let (ok, out) = validate(&bootstrap(up, &file_log("a.log", "", filter), ""));
    assert!(!ok && out.contains("NOPE"), "{out}");
}
