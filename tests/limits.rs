//! Request-head limits: `limits.max_request_line_bytes` (414), `max_header_bytes` (431)
//! and `max_headers` (431), configured and default.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const LIMITS: &str = "    limits:
      max_request_line_bytes: 256
      max_header_bytes: 1024
      max_headers: 10
";

fn limited(up: SocketAddr) -> Proxy {
    Proxy::start(&proxy_config_with(up, "5s", LIMITS))
}

/// Sends `raw`; expects `status`, `Connection: close`, a closed connection and an
/// untouched upstream.
fn expect_refused(proxy: &Proxy, up: &Upstream, raw: &[u8], status: u16) {
    let before = up.heads();
    let mut c = Conn::connect(proxy.listen);
    c.send(raw);
    let r = c.read_response().expect("a response to an oversized head");
    assert_eq!(r.status, status, "{}", r.body_str());
    assert!(r.says_close(), "{:?}", r.headers);
    assert!(c.closed_within(Duration::from_secs(3)));
    assert_eq!(
        up.heads(),
        before,
        "the upstream received an oversized head"
    );
}

fn expect_ok(proxy: &Proxy, raw: &[u8]) {
    let mut c = Conn::connect(proxy.listen);
    c.send(raw);
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 200, "{}", r.body_str());
}

/// A request line of exactly `len` bytes (without CRLF).
fn request_line(len: usize) -> String {
    let fixed = "GET / HTTP/1.1".len();
    format!("GET /{} HTTP/1.1", "a".repeat(len - fixed))
}

#[test]
fn request_line_over_the_limit_is_414() {
    let up = Upstream::echo();
    let proxy = limited(up.addr);
    let line = request_line(400);
    expect_refused(
        &proxy,
        &up,
        format!("{line}\r\nHost: x\r\n\r\n").as_bytes(),
        414,
    );
}

#[test]
fn request_line_within_the_limit_passes() {
    let up = Upstream::echo();
    let proxy = limited(up.addr);
    for len in [100, 250, 256] {
        let line = request_line(len);
        assert_eq!(line.len(), len);
        expect_ok(&proxy, format!("{line}\r\nHost: x\r\n\r\n").as_bytes());
    }
}

#[test]
fn request_line_over_the_limit_is_refused_before_it_ends() {
    // No newline yet: the proxy must not wait for the rest of an oversized line.
    let up = Upstream::echo();
    let proxy = limited(up.addr);
    expect_refused(
        &proxy,
        &up,
        format!("GET /{}", "a".repeat(1000)).as_bytes(),
        414,
    );
}

#[test]
fn request_line_at_the_limit_passes_however_it_arrives() {
    // A line of exactly the limit, delivered up to its CR first: once answered 414
    // because the partial line (with CR, without LF) looked one byte too long.
    let up = Upstream::echo();
    let proxy = limited(up.addr);
    let line = request_line(256);
    let mut c = Conn::connect(proxy.listen);
    c.send(format!("{line}\r").as_bytes());
    // Give the proxy the chance to read the first part on its own. Without the pause
    // the parts may merge, and the test passes without exercising anything.
    std::thread::sleep(Duration::from_millis(200));
    c.send(b"\nHost: x\r\n\r\n");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 200, "{}", r.body_str());
}

#[test]
fn leading_empty_lines_do_not_lift_the_request_line_limit() {
    let up = Upstream::echo();
    let proxy = limited(up.addr);
    let line = request_line(400);
    expect_refused(
        &proxy,
        &up,
        format!("\r\n{line}\r\nHost: x\r\n\r\n").as_bytes(),
        414,
    );
    // One empty line before a normal request is still fine (RFC 9112 section 2.2).
    expect_ok(&proxy, b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
}

#[test]
fn header_section_over_the_limit_is_431() {
    let up = Upstream::echo();
    let proxy = limited(up.addr);
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: {}\r\nX-B: {}\r\n\r\n",
        "a".repeat(700),
        "b".repeat(700)
    );
    expect_refused(&proxy, &up, raw.as_bytes(), 431);
}

#[test]
fn header_section_over_the_limit_is_refused_before_it_ends() {
    let up = Upstream::echo();
    let proxy = limited(up.addr);
    let raw = format!("GET / HTTP/1.1\r\nHost: x\r\nX-A: {}\r\n", "a".repeat(1500));
    expect_refused(&proxy, &up, raw.as_bytes(), 431);
}

#[test]
fn header_section_within_the_limit_passes() {
    let up = Upstream::echo();
    let proxy = limited(up.addr);
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: {}\r\n\r\n",
        "a".repeat(600)
    );
    expect_ok(&proxy, raw.as_bytes());
}

#[test]
fn too_many_headers_is_431() {
    let up = Upstream::echo();
    let proxy = limited(up.addr);
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..10 {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    expect_refused(&proxy, &up, raw.as_bytes(), 431);
}

#[test]
fn max_headers_exactly_passes() {
    let up = Upstream::echo();
    let proxy = limited(up.addr);
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..9 {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    expect_ok(&proxy, raw.as_bytes());
    assert_eq!(
        up.last_request()
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("X-"))
            .count(),
        9
    );
}

#[test]
fn default_limits() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    // A 40 KiB head is bigger than the first read buffer but within the 60 KiB default.
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40 * 1024)
    );
    expect_ok(&proxy, raw.as_bytes());
    assert_eq!(
        up.last_request().header("x-big").map(str::len),
        Some(40 * 1024)
    );
    // Request line over 16 KiB.
    expect_refused(
        &proxy,
        &up,
        format!("GET /{}", "a".repeat(17 * 1024)).as_bytes(),
        414,
    );
    // Headers over 60 KiB.
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: {}\r\nX-B: {}\r\n\r\n",
        "a".repeat(31 * 1024),
        "b".repeat(31 * 1024)
    );
    expect_refused(&proxy, &up, raw.as_bytes(), 431);
    // 100 headers pass, 101 do not.
    let many = |n: usize| {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 1..n {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw + "\r\n"
    };
    expect_ok(&proxy, many(100).as_bytes());
    expect_refused(&proxy, &up, many(101).as_bytes(), 431);
}

#[test]
fn limits_are_per_listener_and_validated() {
    // Out-of-range limits are config errors with the field path.
    let dir = TempDir::new("limits");
    let path = dir.join("bad.yaml");
    let bad = proxy_config_with(
        refused_addr(),
        "5s",
        "    limits:\n      max_request_line_bytes: 10\n      max_headers: 0\n",
    )
    .replace("@ADMIN_PORT@", "1")
    .replace("@PORT@", "2");
    std::fs::write(&path, bad).unwrap();
    let out = run_cli(
        &["validate", "-c", path.to_str().unwrap()],
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("listeners[0].limits.max_request_line_bytes"),
        "{err}"
    );
    assert!(err.contains("listeners[0].limits.max_headers"), "{err}");
}
