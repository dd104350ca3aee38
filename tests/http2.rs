//! HTTP/2 downstream (h2c with prior knowledge, detected on the HTTP/1 port) proxied to
//! HTTP/1.1 upstreams: curl and h2load as clients, gRPC-style local replies, request and
//! response bodies, and bounded memory behind a slow reader.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn curl_h2(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-i", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl must be installed");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn curl_over_h2c_reaches_an_http1_upstream() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let url = format!("http://{}/h2/path?q=1", p.listen);
    let (code, text) = curl_h2(&["-H", "x-custom: yes", "-H", "te: trailers", &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    let req = up.last_request();
    assert_eq!(req.method, "GET");
    assert_eq!(req.target, "/h2/path?q=1");
    assert_eq!(req.version, "HTTP/1.1");
    assert_eq!(
        req.header("host"),
        Some(p.listen.to_string().as_str()),
        "authority becomes Host"
    );
    assert_eq!(req.header("x-custom"), Some("yes"));
    assert_eq!(req.header("te"), Some("trailers"));
    assert_eq!(req.header("x-forwarded-proto"), Some("http"));
    assert_eq!(req.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(req.header("connection"), None);
    // The access log and stats count it as HTTP/2 on the same listener as HTTP/1.
    assert_eq!(p.listener_stats("main")["rq_total"], 1);
}

#[test]
fn request_bodies_stream_to_the_upstream() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let dir = TempDir::new("h2-body");
    let file = dir.join("body.bin");
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &body).unwrap();
    let url = format!("http://{}/upload", p.listen);
    // With a length: forwarded with Content-Length.
    let (code, text) = curl_h2(&["--data-binary", &format!("@{}", file.display()), &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    let req = up.last_request();
    assert_eq!(req.method, "POST");
    assert!(!req.chunked);
    assert_eq!(req.body_len, body.len() as u64);
    // Without a length: forwarded chunked.
    let (code, text) = curl_h2(&[
        "-H",
        "content-length:",
        "-H",
        "transfer-encoding:",
        "-T",
        file.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code, 0, "{text}");
    let req = up.last_request();
    assert_eq!(req.method, "PUT");
    assert_eq!(req.body_len, body.len() as u64);
}

#[test]
fn h2load_many_streams_all_succeed() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let out = Command::new("h2load")
        .args([
            "-n",
            "400",
            "-c",
            "2",
            "-m",
            "8",
            &format!("http://{}/load", p.listen),
        ])
        .output()
        .expect("h2load (nghttp2-client) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("400 succeeded, 0 failed"), "{text}");
    assert!(text.contains("status codes: 400 2xx"), "{text}");
}

#[test]
fn grpc_local_replies_carry_grpc_status() {
    let cfg = format!(
        "{HEADER}listeners:
  - {{ name: main, address: 127.0.0.1, port: @PORT@, route_table: main }}
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /pkg.Svc/ }}
            cluster: gone
clusters:
  - name: gone
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        refused_addr().port()
    );
    let p = Proxy::start(&cfg);
    let grpc = [
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        "",
    ];
    let (_, text) =
        curl_h2(&[&grpc[..], &[&format!("http://{}/other.Svc/Call", p.listen)]].concat());
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(
        text.contains("grpc-status: 12"),
        "no route is UNIMPLEMENTED: {text}"
    );
    let (_, text) = curl_h2(&[&grpc[..], &[&format!("http://{}/pkg.Svc/Call", p.listen)]].concat());
    assert!(
        text.contains("grpc-status: 14"),
        "connect failure is UNAVAILABLE: {text}"
    );
    assert!(
        text.contains("grpc-message: upstream connect error"),
        "{text}"
    );
    // A plain HTTP/2 request gets the plain local reply.
    let (_, text) = curl_h2(&[&format!("http://{}/other", p.listen)]);
    assert!(text.starts_with("HTTP/2 404"), "{text}");
}

#[test]
fn a_slow_h2_reader_keeps_proxy_memory_bounded() {
    let up = Upstream::start(large_body(512 << 20, false));
    let p = Proxy::start(&proxy_config_with(up.addr, "0s", ""));
    let url = format!("http://{}/big", p.listen);
    let start = Instant::now();
    // curl reads at 200 KiB/s for 3 s: the upstream could send 512 MiB meanwhile.
    let (code, _) = curl_h2(&[
        "--limit-rate",
        "200K",
        "--max-time",
        "3",
        "-o",
        "/dev/null",
        &url,
    ]);
    assert_eq!(code, 28, "curl should stop at its own time limit");
    assert!(start.elapsed() < Duration::from_secs(10));
    let hwm = p.vm_hwm_kib();
    assert!(
        hwm < 64 * 1024,
        "proxy peak RSS {hwm} KiB: flow control must push back"
    );
}
