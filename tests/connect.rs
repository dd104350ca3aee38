//! CONNECT tunnelling on routes that allow it (`upgrades: [connect]`): curl's
//! --proxytunnel and a raw client with half-close either way, one descriptor per socket,
//! HTTP/2 CONNECT streams with flow control; refused elsewhere.

mod common;
mod h2client;
mod sockets;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::*;
use sockets::{descriptors_of, tcp_inode};

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

/// A TCP upstream that sends `hello` and half-closes at once, then reads until the client
/// half-closes too and hands over what it read.
fn hello_then_listen() -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        if s.write_all(b"hello").is_err() || s.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let _ = tx.send(got);
    });
    (addr, rx)
}

/// Opens a CONNECT tunnel through `proxy` and reads the `200` and the upstream's `hello`.
fn open_tunnel(proxy: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(proxy).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"CONNECT db.tunnel.example:5432 HTTP/1.1\r\nHost: db.tunnel.example:5432\r\n\r\n")
        .unwrap();
    let want = b"HTTP/1.1 200 Connection Established\r\n\r\nhello";
    let mut got = vec![0u8; want.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    c
}

#[test]
fn an_upstream_half_close_leaves_the_client_direction_open() {
    let (addr, upstream_got) = hello_then_listen();
    let p = Proxy::start(&config(addr, "            upgrades: [connect]\n"));
    let mut c = open_tunnel(p.listen);
    // The upstream's end of stream reaches the client as one (a write shutdown of the
    // client connection, not a close) ...
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    // ... and the client can still send: its bytes and its own end of stream arrive.
    let open = "the client's direction is still open";
    c.write_all(b"still here").expect(open);
    c.shutdown(Shutdown::Write).expect(open);
    let got = upstream_got
        .recv_timeout(Duration::from_secs(10))
        .expect("the upstream saw the client's end of stream");
    assert_eq!(got, b"still here");
}

#[test]
fn a_connect_tunnel_holds_each_socket_on_one_descriptor() {
    // The client connection is split for the tunnel, not dup()'d (see tests/tcp_proxy.rs).
    let (addr, upstream_got) = hello_then_listen();
    let p = Proxy::start(&config(addr, "            upgrades: [connect]\n"));
    let c = open_tunnel(p.listen);
    let down = tcp_inode(Some(p.listen), c.local_addr().unwrap()).expect("client socket");
    let up = tcp_inode(None, addr).expect("upstream socket");
    assert_eq!(descriptors_of(p.pid, &down), 1, "client socket");
    assert_eq!(descriptors_of(p.pid, &up), 1, "upstream socket");
    c.shutdown(Shutdown::Write).unwrap();
    let got = upstream_got.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(got.is_empty(), "{got:?}");
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

/// A TCP upstream that echoes every byte back, then closes once the client half-closes.
fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// Sends an HTTP/2 CONNECT to `target` and returns the status; with a 200, writes
/// `payload` into the tunnel in pieces, half-closes, and returns everything read back
/// (which must end with END_STREAM, not a reset).
fn h2_connect(proxy: SocketAddr, target: &str, payload: Vec<u8>) -> (u16, Vec<u8>) {
    let (status, _, got) = h2_connect_head(proxy, target, payload);
    (status, got)
}

/// [`h2_connect`], with the response's header fields too.
fn h2_connect_head(
    proxy: SocketAddr,
    target: &str,
    payload: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    use h2client::{connect, within, STEP};
    let target = target.to_string();
    h2client::run(move || async move {
        let client = connect(proxy).await;
        let mut client = within(STEP, "stream slot", client.ready()).await.unwrap();
        let req = http::Request::builder()
            .method("CONNECT")
            .uri(target.as_str())
            .body(())
            .unwrap();
        let (response, mut tx) = client.send_request(req, false).unwrap();
        let resp = within(STEP, "CONNECT response", response).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if status != 200 {
            return (status, headers, Vec::new());
        }
        let mut rx = resp.into_body();
        // Write and read concurrently: the payload is larger than the windows.
        let write = async {
            for piece in payload.chunks(40_000) {
                tx.reserve_capacity(piece.len());
                tx.send_data(bytes::Bytes::copy_from_slice(piece), false)
                    .unwrap();
                // Let the window move before queueing more.
                glommio::yield_if_needed().await;
            }
            tx.send_data(bytes::Bytes::new(), true).unwrap();
            tx
        };
        let read = async {
            let mut got = Vec::new();
            while let Some(chunk) = within(STEP, "tunnel bytes", rx.data()).await {
                let chunk = chunk.expect("the tunnel ends with END_STREAM, not a reset");
                let _ = rx.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            got
        };
        let (_tx, got) = futures_lite::future::zip(write, read).await;
        (status, headers, got)
    })
}

#[test]
fn h2_connect_tunnels_bytes_both_ways_with_flow_control() {
    let up = tcp_echo();
    let p = Proxy::start(&config(up, "            upgrades: [connect]\n"));
    // More than the client's and the proxy's initial windows.
    let payload: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let (status, got) = h2_connect(p.listen, "db.tunnel.example:5432", payload.clone());
    assert_eq!(status, 200);
    assert_eq!(got.len(), payload.len());
    assert!(
        got == payload,
        "the echoed bytes came back intact and in order"
    );
    let s = p.listener_stats("main");
    assert_eq!(s["rq_total"], 1, "{s}");
    assert_eq!(p.cluster_stats("target")["cx_total"], 1);
}

#[test]
fn h2_connect_without_an_allowing_route_is_refused() {
    let up = Upstream::echo();
    let p = Proxy::start(&config(up.addr, ""));
    let (status, _) = h2_connect(p.listen, "svc.tunnel.example:443", Vec::new());
    assert_eq!(status, 404, "no route allows CONNECT here");
    let (status, _) = h2_connect(p.listen, "other.example:443", Vec::new());
    assert_eq!(status, 404);
    assert_eq!(up.request_count(), 0, "nothing reached the upstream");
    assert_eq!(flag_count(&p.listener_stats("main"), "NR"), 2);
}

/// The `200` carries the route's response edits, and the access log reads them there
/// (`%RESP(..)%` of an HTTP/2 CONNECT, with the connection's id).
#[test]
fn h2_connect_responses_carry_the_routes_response_edits() {
    let up = tcp_echo();
    let cfg = config(
        up,
        "            upgrades: [connect]
            response_headers_to_add:
              - { name: x-tunnel, value: open }
",
    )
    .replacen(
        "  - { name: main, address: 127.0.0.1, port: @PORT@, route_table: main }\n",
        "  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    access_log:
      path: @DIR@/access.log
      format: '%RESPONSE_CODE% %RESP(X-TUNNEL)% %RESP(X-NOPE)% %TRAILER(X-TUNNEL)% %CONNECTION_ID%'
",
        1,
    );
    let p = Proxy::start(&cfg);
    let (status, headers, got) =
        h2_connect_head(p.listen, "db.tunnel.example:5432", b"hi".to_vec());
    assert_eq!(status, 200);
    assert_eq!(got, b"hi");
    assert_eq!(headers.get("x-tunnel").unwrap(), "open", "{headers:?}");
    let log = p.dir.join("access.log");
    let line = wait_until(Duration::from_secs(10), || {
        read_lossy(&log).lines().next().map(str::to_string)
    })
    .expect("a log line");
    let (head, id) = line.rsplit_once(' ').unwrap();
    assert_eq!(head, "200 open - -", "{line}");
    assert!(id.parse::<u64>().is_ok_and(|n| n > 0), "{line}");
}

/// Opens an HTTP/2 CONNECT stream through `proxy`, sends nothing, and waits for its end:
/// the response status, and whether the stream was reset.
fn h2_connect_until_end(proxy: SocketAddr) -> (u16, bool) {
    use h2client::{connect, within, STEP};
    h2client::run(move || async move {
        let client = connect(proxy).await;
        let mut client = within(STEP, "stream slot", client.ready()).await.unwrap();
        let req = http::Request::builder()
            .method("CONNECT")
            .uri("db.tunnel.example:5432")
            .body(())
            .unwrap();
        let (response, _tx) = client.send_request(req, false).unwrap();
        let resp = within(STEP, "CONNECT response", response).await.unwrap();
        let status = resp.status().as_u16();
        let mut rx = resp.into_body();
        let end = within(STEP, "tunnel end", rx.data()).await;
        (status, matches!(end, Some(Err(_))))
    })
}

#[test]
fn a_quiet_h2_connect_tunnel_is_reset_with_drt() {
    let up = tcp_echo();
    let cfg = config(up, "            upgrades: [connect]\n").replace(
        "route_table: main }",
        "route_table: main, idle_timeout: 300ms }",
    );
    let p = Proxy::start(&cfg);
    // Nothing is sent either way: the tunnel goes quiet.
    let (status, reset) = h2_connect_until_end(p.listen);
    assert_eq!(status, 200);
    assert!(reset, "a quiet tunnel is reset");
    let s = p.listener_stats("main");
    assert_eq!(flag_count(&s, "DRT"), 1, "{s}");
    assert_eq!(flag_count(&s, "SI"), 0, "{s}");
}

/// An HTTP/2 CONNECT whose upstream refuses the connection gets the 503 `UF`, and the
/// access log's `%UPSTREAM_TRANSPORT_FAILURE_REASON%` says why, as for requests.
#[test]
fn a_refused_h2_connect_logs_the_transport_failure_reason() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = config(closed, "            upgrades: [connect]\n").replacen(
        "  - { name: main, address: 127.0.0.1, port: @PORT@, route_table: main }\n",
        "  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    access_log:
      path: @DIR@/access.log
      format: '%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_TRANSPORT_FAILURE_REASON%'
",
        1,
    );
    let p = Proxy::start(&cfg);
    let (status, _) = h2_connect(p.listen, "db.tunnel.example:5432", Vec::new());
    assert_eq!(status, 503);
    let log = p.dir.join("access.log");
    let line = wait_until(Duration::from_secs(10), || {
        let text = read_lossy(&log);
        text.lines().next().map(str::to_string)
    })
    .expect("a log line");
    assert_eq!(line, "503 UF delayed_connect_error:_Connection_refused");
}

/// The cluster's `max_stream_duration` ends a CONNECT tunnel, as Envoy's router bounds a
/// CONNECT's upstream request: the HTTP/1.1 client's connection closes, the HTTP/2
/// client's stream is reset; both flagged `UMSDR` and counted.
#[test]
fn the_clusters_max_stream_duration_ends_connect_tunnels() {
    let up = tcp_echo();
    let cfg = config(up, "            upgrades: [connect]\n").replace(
        "endpoints: [",
        "pool: { max_stream_duration: 300ms }\n    endpoints: [",
    );
    let p = Proxy::start(&cfg);
    // HTTP/1.1: bytes go both ways, then the connection closes at the bound.
    let mut c = TcpStream::connect(p.listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(
        b"CONNECT db.tunnel.example:5432 HTTP/1.1\r\nHost: db.tunnel.example:5432\r\n\r\nping",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(String::from_utf8_lossy(&got).ends_with("ping"), "{got:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed by the bound"
    );
    // HTTP/2: the stream is reset.
    let (status, reset) = h2_connect_until_end(p.listen);
    assert_eq!(status, 200);
    assert!(reset, "the tunnel is reset at the bound");
    let s = p.listener_stats("main");
    assert_eq!(flag_count(&s, "UMSDR"), 2, "{s}");
    assert_eq!(
        p.cluster_stats("target")["rq_max_duration_reached"].as_u64(),
        Some(2)
    );
}
