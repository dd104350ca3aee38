//! An upload to an upstream that reads slowly arrives whole (black-box): the proxy's
//! socket buffers are small (a network namespace of the test's own, its
//! `net.ipv4.tcp_wmem` and `tcp_rmem` at 4 KiB), so the kernel takes the proxy's sends
//! of the body in parts, the last one too. The proxy must send the rest while it waits
//! for the answer; the upstream answers only once it has the whole body. Before
//! 2026-12-06 the rest of a last write the kernel took in part waited for a next write
//! that never came: the request ended at the route timeout (504) after 15 s.
//!
//! These tests need root, `ip` (iproute2), curl and nghttp; without them they FAIL (they
//! never pass silently). tests/run installs them.

mod common;

use common::netns::{Netns, Proc};

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_outrigger");

fn require_root_and_tools() {
    common::netns::require_root_and_tools(
        "tests/slow_upstream.rs",
        "network namespaces",
        &["ip", "curl", "nghttp", "timeout"],
        "apt-get install -y iproute2 curl nghttp2-client",
    );
}

/// A namespace with 4 KiB TCP buffers (deleted on drop).
fn small_buffers() -> Netns {
    let name = format!("or-slow-{}", std::process::id());
    let _ = Command::new("ip").args(["netns", "del", &name]).output();
    let ns = Netns::new(name);
    for knob in ["tcp_wmem", "tcp_rmem"] {
        let set = format!("echo '4096 4096 4096' > /proc/sys/net/ipv4/{knob}");
        ns.exec(&["sh", "-c", &set]);
    }
    ns
}

/// An HTTP/1.1 upstream that waits 300 ms before it reads each request (the proxy's
/// sends fill the buffers meanwhile), reads its whole body (Content-Length or chunked),
/// then answers with the number of body bytes it got.
fn slow_reader(mut c: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        thread::sleep(Duration::from_millis(300));
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        buf.drain(..head_end);
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse::<usize>().unwrap());
        let body = match length {
            Some(n) => {
                while buf.len() < n {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                buf.drain(..n);
                n
            }
            None => {
                // Chunked: what precedes the last chunk, less the framing.
                while !buf.ends_with(b"\r\n0\r\n\r\n") {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let mut n = 0;
                let mut rest = &buf[..];
                loop {
                    let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
                    let size = std::str::from_utf8(&rest[..eol]).unwrap();
                    let size = usize::from_str_radix(size.split(';').next().unwrap(), 16).unwrap();
                    if size == 0 {
                        break;
                    }
                    n += size;
                    rest = &rest[eol + 2 + size + 2..];
                }
                buf.clear();
                n
            }
        };
        let msg = body.to_string();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{msg}",
            msg.len()
        );
        if c.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The namespace, its slow upstream and the proxy in front of it (HTTP/1.1 and h2c on
/// one port); the proxy is ready when this returns.
fn setup(dir: &common::TempDir) -> (Netns, Proc) {
    require_root_and_tools();
    let ns = small_buffers();
    let l = ns.run(|| TcpListener::bind("127.0.0.1:18801").expect("bind upstream"));
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            thread::spawn(move || slow_reader(c));
        }
    });
    let cfg = "admin: { address: 127.0.0.1, port: 18802 }
runtime: { concurrency: 1 }
listeners:
  - { name: in, address: 127.0.0.1, port: 18800, route_table: t }
route_tables:
  - name: t
    virtual_hosts:
      - name: all
        domains: ['*']
        routes: [{ match: { prefix: / }, cluster: slow }]
clusters:
  - name: slow
    connect_timeout: 1s
    endpoints: [{ address: 127.0.0.1, port: 18801 }]
";
    let path = dir.path().join("proxy.yaml");
    fs::write(&path, cfg).unwrap();
    let stderr = dir.path().join("stderr");
    let proxy = ns.spawn(
        &[BIN, "run", "-c", path.to_str().expect("a UTF-8 temp path")],
        &stderr,
    );
    ns.wait_ready("127.0.0.1:18802", "proxy", &stderr);
    (ns, proxy)
}

/// curl in the namespace (HTTP/1.1): the body (the bytes the upstream got) and the
/// status.
fn upload(ns: &Netns, file: &std::path::Path, extra: &[&str]) -> String {
    let data = format!("@{}", file.display());
    let args = [
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-X",
            "POST",
            "--data-binary",
            &data,
        ][..],
        extra,
        &["-w", " %{http_code}", "http://127.0.0.1:18800/up"],
    ]
    .concat();
    ns.output(&args)
}

/// nghttp in the namespace (h2c with prior knowledge): the body. (curl 7.88's HTTP/2
/// upload with a 4 KiB send buffer of its own sends more DATA than its Content-Length,
/// which the proxy must refuse, and does, as h2 requires: a stream reset.)
fn upload_h2(ns: &Netns, file: &std::path::Path) -> String {
    let path = file.display().to_string();
    ns.output(&[
        "timeout",
        "10",
        "nghttp",
        "-d",
        &path,
        "http://127.0.0.1:18800/up",
    ])
}

#[test]
fn uploads_to_an_upstream_that_reads_slowly_arrive_whole_over_http1_and_http2() {
    let dir = common::TempDir::new("slow-upstream");
    let (ns, _proxy) = setup(&dir);
    for len in [60_000usize, 200_000, 1_000_000] {
        let file = dir.path().join(format!("body{len}"));
        fs::write(&file, vec![b'a'; len]).unwrap();
        let whole = format!("{len} 200");
        for round in 0..2 {
            let h1 = upload(&ns, &file, &[]);
            assert_eq!(h1, whole, "HTTP/1.1, {len} bytes, try {round}");
            let chunked = upload(&ns, &file, &["-H", "transfer-encoding: chunked"]);
            assert_eq!(chunked, whole, "HTTP/1.1 chunked, {len} bytes, try {round}");
            let h2 = upload_h2(&ns, &file);
            assert_eq!(h2, len.to_string(), "h2c, {len} bytes, try {round}");
        }
    }
}
