//! Upstream status codes outside 100..=599 are not HTTP: the proxy answers `502` with
//! the UPE flag (Envoy: "upstream connect error or disconnect/reset before headers.
//! reset reason: protocol error") and counts a protocol error, for HTTP/1.1 upstreams
//! and for HTTP/2 upstreams of HTTP/1.1 clients.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::*;

const UPE_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: protocol error";

fn config(up: SocketAddr, protocol: &str) -> String {
    format!(
        "{HEADER}listeners:
  - {{ name: main, address: 127.0.0.1, port: @PORT@, route_table: main }}
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: backend
            timeout: 5s
clusters:
  - name: backend
    protocol: {protocol}
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        up.port()
    )
}

/// Waits until the listener has counted `n` UPE responses (stats are recorded just
/// after the response is written).
fn wait_upe(proxy: &Proxy, n: u64) -> bool {
    wait_until(Duration::from_secs(5), || {
        (flag_count(&proxy.listener_stats("main"), "UPE") >= n).then_some(())
    })
    .is_some()
}

#[test]
fn http1_upstream_status_out_of_range_is_a_bad_gateway() {
    for status in ["000", "099", "600", "999"] {
        let up = Upstream::start(fixed(format!(
            "HTTP/1.1 {status} Odd\r\nContent-Length: 2\r\n\r\nok"
        )));
        let proxy = Proxy::start(&config(up.addr, "http1"));
        let r = get(proxy.listen, "a", "/x");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (502, UPE_BODY),
            "upstream status {status}"
        );
        assert!(wait_upe(&proxy, 1), "status {status}: no UPE counted");
        assert_eq!(proxy.cluster_stats("backend")["rq_protocol_error"], 1);
    }
    // The edges of the range pass.
    for status in ["100", "599"] {
        let raw = if status == "100" {
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string()
        } else {
            "HTTP/1.1 599 Edge\r\nContent-Length: 0\r\n\r\n".to_string()
        };
        let up = Upstream::start(fixed(raw));
        let proxy = Proxy::start(&config(up.addr, "http1"));
        let want = if status == "100" { 200 } else { 599 };
        assert_eq!(get(proxy.listen, "a", "/x").status, want);
    }
}

/// A minimal HTTP/2 server on raw frames: for each request HEADERS frame it answers a
/// HEADERS frame carrying `:status` = `status` (any three bytes, which a real server
/// library would refuse to send) and END_STREAM.
fn raw_h2_upstream(status: &'static [u8; 3]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().take(4).flatten() {
            thread::spawn(move || serve_raw_h2(s, status));
        }
    });
    addr
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn serve_raw_h2(mut s: TcpStream, status: &[u8; 3]) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut preface = [0u8; 24];
    if s.read_exact(&mut preface).is_err() || &preface != b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
        return;
    }
    loop {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).is_err() {
            return;
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).is_err() {
            return;
        }
        let reply = match kind {
            // SETTINGS (not an ACK): ours, then the ACK of theirs.
            0x4 if flags & 0x1 == 0 => [frame(0x4, 0, 0, &[]), frame(0x4, 0x1, 0, &[])].concat(),
            // HEADERS: HPACK "literal without indexing, name :status (static 8)".
            0x1 => {
                let mut block = vec![0x08, 0x03];
                block.extend_from_slice(status);
                frame(0x1, 0x4 | 0x1, stream, &block)
            }
            _ => continue,
        };
        if s.write_all(&reply).is_err() {
            return;
        }
    }
}

#[test]
fn http2_upstream_status_out_of_range_is_a_bad_gateway() {
    // 600..=999 fit `http::StatusCode`; 099 is refused by h2 itself as malformed.
    for (n, status) in [b"600", b"999", b"099"].into_iter().enumerate() {
        let up = raw_h2_upstream(status);
        let proxy = Proxy::start(&config(up, "http2"));
        let r = get(proxy.listen, "a", "/x");
        let shown = String::from_utf8_lossy(status);
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (502, UPE_BODY),
            "HTTP/2 upstream status {shown} (case {n})"
        );
        assert!(wait_upe(&proxy, 1), "status {shown}: no UPE counted");
        assert_eq!(proxy.cluster_stats("backend")["rq_protocol_error"], 1);
    }
    // The raw server itself is sound: an in-range status goes through.
    let up = raw_h2_upstream(b"204");
    let proxy = Proxy::start(&config(up, "http2"));
    assert_eq!(get(proxy.listen, "a", "/x").status, 204);
}
