//! Streaming with bounded memory: very large request and response bodies go through the
//! proxy while its peak RSS (VmHWM) stays small.
//!
//! The client generates the upload on the fly and the upstream only counts it, so the
//! only process that could hold a body in memory is the proxy.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The proxy's peak RSS may not exceed this.
const MAX_HWM_KIB: u64 = 64 * 1024;

fn config(up: std::net::SocketAddr) -> String {
    // Generous route timeout: a debug build moves a gigabyte in seconds, not minutes,
    // but a loaded CI machine can be slow.
    proxy_config_with(up, "300s", "")
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

fn upload(total: u64, chunked: bool) {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let before = proxy.vm_hwm_kib();
    let start = Instant::now();
    let mut c = Conn::connect(proxy.listen);
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {total}")
    };
    c.send(format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\n{framing}\r\n\r\n"
    ));
    let block = 256 * 1024;
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(block as u64) as usize;
        let data = pattern(sent, n);
        if chunked {
            c.send(format!("{n:x}\r\n"));
            c.send(data);
            c.send("\r\n");
        } else {
            c.send(data);
        }
        sent += n as u64;
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "upload too slow: {sent} bytes in {:?}",
            start.elapsed()
        );
    }
    if chunked {
        c.send("0\r\n\r\n");
    }
    let r = c.read_response().expect("response after the upload");
    let elapsed = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.body_str());
    let e = Echoed::parse(&r.body);
    assert_eq!(e.field("body-length"), Some(total.to_string()));
    let req = up.last_request();
    assert_eq!(req.body_len, total);
    assert_eq!(req.chunked, chunked);
    assert!(matches_pattern(&req.body, 0), "the first bytes differ");
    let tail = pattern(total - req.body_tail.len() as u64, req.body_tail.len());
    assert_eq!(req.body_tail, tail, "the last bytes differ");
    let hwm = proxy.vm_hwm_kib();
    eprintln!(
        "upload {} MiB (chunked: {chunked}): {elapsed:.2?} ({:.0} MiB/s), proxy VmHWM {before} KiB -> {hwm} KiB",
        total >> 20,
        mib_per_s(total, elapsed)
    );
    assert!(
        hwm < MAX_HWM_KIB,
        "proxy VmHWM {hwm} KiB exceeds {MAX_HWM_KIB} KiB after a {total}-byte upload"
    );
}

fn download(total: u64, chunked: bool) {
    let up = Upstream::start(large_body(total, chunked));
    let proxy = Proxy::start(&config(up.addr));
    let before = proxy.vm_hwm_kib();
    let start = Instant::now();
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /download HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = c.read_response().expect("the whole download");
    let elapsed = start.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.chunked, chunked);
    assert_eq!(r.body_len, total);
    assert!(matches_pattern(&r.body, 0), "the first bytes differ");
    let tail = pattern(total - r.body_tail.len() as u64, r.body_tail.len());
    assert_eq!(r.body_tail, tail, "the last bytes differ");
    let hwm = proxy.vm_hwm_kib();
    eprintln!(
        "download {} MiB (chunked: {chunked}): {elapsed:.2?} ({:.0} MiB/s), proxy VmHWM {before} KiB -> {hwm} KiB",
        total >> 20,
        mib_per_s(total, elapsed)
    );
    assert!(
        hwm < MAX_HWM_KIB,
        "proxy VmHWM {hwm} KiB exceeds {MAX_HWM_KIB} KiB after a {total}-byte download"
    );
    // The connection is still usable afterwards.
    c.send("GET /download HTTP/1.1\r\nHost: test\r\nRange: none\r\n\r\n");
    c.set_timeout(Duration::from_secs(60));
    let again = c.read_response().expect("second download");
    assert_eq!(again.body_len, total);
}

#[test]
fn upload_1gib_content_length_with_bounded_memory() {
    upload(1 << 30, false);
}

#[test]
fn upload_256mib_chunked_with_bounded_memory() {
    upload(256 << 20, true);
}

#[test]
fn download_256mib_content_length_with_bounded_memory() {
    download(256 << 20, false);
}

#[test]
fn download_256mib_chunked_with_bounded_memory() {
    download(256 << 20, true);
}
