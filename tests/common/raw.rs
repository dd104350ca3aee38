//! Upstreams written on raw sockets, for what the common `Upstream` (which reads each
//! request whole before its handler runs) cannot do: answer before the body is read.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// An upstream whose connections (at most `conns`) are each handled by `f` on a thread.
pub fn raw_upstream(conns: usize, f: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let f = Arc::new(f);
    thread::spawn(move || {
        for s in l.incoming().take(conns).flatten() {
            let f = f.clone();
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                f(s)
            });
        }
    });
    addr
}

/// Reads from `s` until the end of the request head plus `extra` bytes (or EOF).
pub fn read_head_and(s: &mut TcpStream, extra: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= i + 4 + extra {
                return got;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Answers `200` to each request as soon as its head has arrived, then reads and drops
/// its body (Content-Length) and waits for the next request on the same connection, as
/// nginx does for a `return 200`. Counts the requests whose body it read whole.
pub fn answers_before_reading(bodies: Arc<AtomicUsize>) -> SocketAddr {
    raw_upstream(4, move |mut s| loop {
        let got = read_head_and(&mut s, 0);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
            .is_err()
        {
            return;
        }
        let mut left = len - (got.len() - end - 4);
        let mut sink = [0u8; 65536];
        while left > 0 {
            match s.read(&mut sink[..left.min(65536)]) {
                Ok(0) | Err(_) => return,
                Ok(n) => left -= n,
            }
        }
        bodies.fetch_add(1, Ordering::SeqCst);
    })
}
