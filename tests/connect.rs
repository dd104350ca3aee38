//! CONNECT tunnelling on routes that allow it (`upgrades: [connect]`): curl's
//! --proxytunnel and a raw client with half-close; refused elsewhere.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::*;

fn config(upstream: SocketAddr, upgrades: &str) -> String {
    format!(
        "{HEADER}listeners:
  - {{ name: main, address: 127.0.0.1, port: @PORT@, route_table: main }}
route_tables:
  - name: main
    virtual_hosts:
      - name: tunnels
        domains: [\"*.tunnel.example\"]
        routes:
          - match: {{ prefix: / }}
            cluster: target
{upgrades}      - name: rest
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200, body: plain }}
clusters:
  - name: target
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        upstream.port()
    )
}

#[test]
fn curl_proxytunnel_reaches_the_cluster_through_connect() {
    let up = Upstream::echo();
    let p = Proxy::start(&config(up.addr, "            upgrades: [CONNECT]\n"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-p", "-x"])
        .arg(format!("http://{}", p.listen))
        .arg("http://svc.tunnel.example/through/the/tunnel")
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let req = up.last_request();
    assert_eq!(
        req.target, "/through/the/tunnel",
        "the GET went through the tunnel as is"
    );
    assert_eq!(
        req.header("x-forwarded-for"),
        None,
        "bytes in a tunnel are not rewritten"
    );
}

#[test]
fn raw_tunnel_carries_bytes_both_ways_with_half_close() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = Vec::new();
            if s.read_to_end(&mut got).is_ok() {
                let _ = s.write_all(b"echo:");
                let _ = s.write_all(&got);
            }
        }
    });
    let p = Proxy::start(&config(addr, "            upgrades: [connect]\n"));
    let mut c = TcpStream::connect(p.listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The first tunnel bytes ride in the same packet as the CONNECT head.
    c.write_all(
        b"CONNECT db.tunnel.example:5432 HTTP/1.1\r\nHost: db.tunnel.example:5432\r\n\r\nping",
    )
    .unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text, "HTTP/1.1 200 Connection Established\r\n\r\necho:ping");
}

#[test]
fn connect_without_an_allowing_route_is_refused() {
    let up = Upstream::echo();
    let p = Proxy::start(&config(up.addr, ""));
    let mut c = Conn::connect(p.listen);
    c.send(b"CONNECT svc.tunnel.example:443 HTTP/1.1\r\nHost: svc.tunnel.example:443\r\n\r\n");
    let r = c.read_response_to("CONNECT").unwrap();
    assert_eq!(r.status, 404);
    let mut c = Conn::connect(p.listen);
    c.send(b"CONNECT /not-authority HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 400);
    assert_eq!(up.request_count(), 0);
}
