//! gRPC through the proxy with a real client and server (Python grpcio, h2c): unary,
//! client-streaming, server-streaming and bidirectional calls, trailers and error
//! statuses preserved, and a local reply for an unrouted method; the same through the
//! buffer filter, which holds each request body before the call goes upstream.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;

#[test]
fn grpc_calls_of_every_kind_pass_through() {
    calls_of_every_kind("");
}

/// The buffer filter holds each request body (gRPC clients send no request trailers);
/// the response trailers (`grpc-status`, the server's own) still reach the client.
#[test]
fn grpc_calls_pass_through_the_buffer_filter() {
    calls_of_every_kind(
        "    http_filters:
      - name: buf
        buffer: { max_request_bytes: 1048576 }
",
    );
}

/// Istio's standard metrics label gRPC calls as such, with the `grpc-status` each call
/// ended with: the server's trailers (0), a trailers-only error (NOT_FOUND, 5), and the
/// proxy's own reply to an unrouted method (UNIMPLEMENTED, 12, from its 404).
#[test]
fn istio_metrics_carry_each_calls_grpc_status() {
    let p = calls_of_every_kind(
        "    istio_stats:
      reporter: destination
      workload: { name: echo-v1, namespace: test }
",
    );
    let text = p.prometheus();
    let count = |code: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .filter(|l| l.contains("request_protocol=\"grpc\""))
            .filter(|l| l.contains(&format!("grpc_response_status=\"{code}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("0"), 4.0, "unary, upload, ticks, bidi: {text}");
    assert_eq!(count("5"), 1.0, "the trailers-only NOT_FOUND: {text}");
    assert_eq!(
        count("12"),
        1.0,
        "the local reply to an unrouted method: {text}"
    );
    assert!(
        !text.contains("request_protocol=\"http\""),
        "every call is gRPC: {text}"
    );
}

/// Runs the client's calls through a proxy whose listener has `filters`.
fn calls_of_every_kind(filters: &str) -> Proxy {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/echo.py");
    let mut py = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with grpcio (pip install grpcio) must be installed");
    let mut out = BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("grpc server did not start: {line:?} (is grpcio installed?)"));
    let cfg = format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
{filters}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /test.Echo/ }}
            cluster: grpc
clusters:
  - name: grpc
    protocol: http2
    endpoints: [{{ address: 127.0.0.1, port: {port} }}]
"
    );
    let p = Proxy::start(&cfg);
    writeln!(py.stdin.as_mut().unwrap(), "{}", p.listen).unwrap();
    let mut result = String::new();
    out.read_line(&mut result).unwrap();
    let _ = py.wait();
    let v: serde_json::Value =
        serde_json::from_str(&result).unwrap_or_else(|_| panic!("client output: {result:?}"));
    assert_eq!(v["unary"], "echo:hello", "{v}");
    assert_eq!(v["unary_trailer"], "yes", "trailers pass through: {v}");
    assert_eq!(v["upload"], "abc", "{v}");
    assert_eq!(
        v["ticks"],
        serde_json::json!(["tick0", "tick1", "tick2", "tick3", "tick4"])
    );
    assert_eq!(v["bidi"], serde_json::json!(["echo:x", "echo:y", "echo:z"]));
    assert_eq!(
        v["fail"],
        serde_json::json!(["NOT_FOUND", "no such thing"]),
        "{v}"
    );
    assert_eq!(v["unrouted"][0], "UNIMPLEMENTED", "{v}");
    let c = p.cluster_stats("grpc");
    assert_eq!(c["cx_total"], 1, "one multiplexed upstream connection: {c}");
    assert_eq!(c["rq_total"], 5, "{c}");
    p
}
