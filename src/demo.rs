//! `outrigger demo`: the proxy on an embedded config in front of a built-in upstream,
//! so a fresh checkout can serve traffic with nothing else running.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// The embedded demo config (also checked in as config/demo.yaml and loaded by a test).
pub const DEMO_CONFIG: &str = include_str!("../config/demo.yaml");
/// Where the built-in upstream listens (matches config/demo.yaml).
pub const DEMO_UPSTREAM: &str = "127.0.0.1:18080";

/// Starts the built-in upstream on a plain thread: a small HTTP/1.1 keep-alive server
/// that answers every request with a greeting naming the method and path.
pub fn start_upstream(addr: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::Builder::new()
        .name("demo-upstream".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = std::thread::Builder::new().spawn(move || serve(stream));
            }
        })?;
    Ok(())
}

fn serve(mut s: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let (head_len, body_len, reply) = match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(n)) => {
                let body_len: usize = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0);
                let text = format!(
                    "hello from the outrigger demo upstream: {} {}\n",
                    req.method.unwrap_or("?"),
                    req.path.unwrap_or("?")
                );
                (n, body_len, text)
            }
            Ok(httparse::Status::Partial) if len < buf.len() => {
                match s.read(&mut buf[len..]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
                continue;
            }
            _ => return,
        };
        // Skip the request body, keeping any pipelined bytes after it.
        let have = len - head_len;
        if have >= body_len {
            buf.copy_within(head_len + body_len..len, 0);
            len = have - body_len;
        } else {
            let mut left = body_len - have;
            len = 0;
            while left > 0 {
                let n = match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if n > left {
                    buf.copy_within(left..n, 0);
                    len = n - left;
                    left = 0;
                } else {
                    left -= n;
                }
            }
        }
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{}",
            reply.len(),
            reply
        );
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}
