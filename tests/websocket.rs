//! WebSocket through the proxy: the HTTP/1.1 Upgrade handshake passes through on routes
//! that allow it, then frames flow both ways until either side closes. A real client
//! and server (tungstenite) on each end.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use common::ws::ws_echo_server;
use common::*;
use tungstenite::Message;

fn config(upstream: SocketAddr, upgrades: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    access_log:
      path: @DIR@/access.log
      format: \"%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST%\"
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: ws
            timeout: 1s
{upgrades}clusters:
  - name: ws
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        upstream.port()
    )
}

fn client(proxy: SocketAddr, path: &str) -> tungstenite::Result<tungstenite::WebSocket<TcpStream>> {
    let s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tungstenite::client(format!("ws://chat.example{path}"), s)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
        })
}

#[test]
fn websocket_frames_flow_both_ways_and_outlive_the_route_timeout() {
    let up = ws_echo_server(1);
    let p = Proxy::start(&config(up, "            upgrades: [websocket]\n"));
    let mut ws = client(p.listen, "/chat").expect("handshake through the proxy");
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("echo:hello"));
    // The tunnel is not bound by the 1 s route timeout: it lives on idle_timeout.
    thread::sleep(Duration::from_millis(1500));
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    let mut want = b"echo:".to_vec();
    want.extend_from_slice(&big);
    assert_eq!(ws.read().unwrap(), Message::binary(want));
    ws.close(None).unwrap();
    // The close handshake completes through the proxy.
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unexpected error while closing: {e}"),
        }
    }
    // The tunnel (and its log line) ends once both sides have closed their sockets.
    drop(ws);
    let log = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(p.dir.join("access.log"))
            .ok()
            .filter(|t| !t.is_empty())
    })
    .expect("access log line");
    assert_eq!(log.trim(), format!("GET /chat 101 - {up}"));
}

#[test]
fn routes_without_upgrades_refuse_them_with_403() {
    // Envoy answers 403 (upgrade_failed); forwarding the request with the upgrade
    // silently stripped would hand the client an answer to a different request.
    let up = Upstream::echo();
    let p = Proxy::start(&config(up.addr, "            upgrades: [connect]\n"));
    let err = client(p.listen, "/chat").expect_err("no websocket on this route");
    match err {
        tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected the proxy's 403, got {other}"),
    }
    // An allowed protocol with a body is refused the same way.
    let mut c = Conn::connect(p.listen);
    c.send(
        "POST /chat HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: connect\r\n\
         Content-Length: 2\r\n\r\nhi",
    );
    assert_eq!(c.read_response().unwrap().status, 403);
    assert_eq!(up.heads(), 0, "an upgrade request reached the upstream");
    // Not upgrades: h2c (dropped, the request goes on), and Upgrade without
    // Connection: upgrade.
    for raw in [
        "GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
         HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        "GET /plain HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
    ] {
        c.send(raw);
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200, "{raw:?}");
        let req = up.last_request();
        assert_eq!(req.header("upgrade"), None, "{raw:?}");
        assert_eq!(req.header("http2-settings"), None, "{raw:?}");
    }
}

#[test]
fn one_line_mode_passes_websockets() {
    // A sidecar passes WebSockets by default (as Istio does).
    let up = ws_echo_server(1);
    let upstream = up.to_string();
    let p = Proxy::start_args(&[
        "run",
        "--listen",
        "127.0.0.1:@PORT@",
        "--upstream",
        &upstream,
        "--admin",
        "127.0.0.1:@ADMIN_PORT@",
        "--concurrency",
        "1",
    ]);
    let mut ws = client(p.listen, "/chat").expect("handshake through the one-line proxy");
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("echo:hi"));
}

#[test]
fn a_101_carries_no_body_framing() {
    // The upstream's 101 has none; the proxy must not add any (it once added
    // `transfer-encoding: chunked`, which describes a body a 101 does not have).
    let up = Upstream::start(std::sync::Arc::new(
        |_: &Ctx<'_>, _: &Recorded, s: &mut TcpStream| {
            use std::io::Write;
            s.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            )?;
            Ok(false)
        },
    ));
    let p = Proxy::start(&config(up.addr, "            upgrades: [websocket]\n"));
    let mut c = Conn::connect(p.listen);
    c.send(
        "GET /chat HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let r = c.read_response().expect("the 101");
    assert_eq!(r.status, 101, "{:?}", r.headers);
    assert_eq!(r.header("transfer-encoding"), None, "{:?}", r.headers);
    assert_eq!(r.header("content-length"), None, "{:?}", r.headers);
    assert_eq!(r.header("upgrade"), Some("websocket"));
}

#[test]
fn an_unsolicited_101_is_a_bad_gateway() {
    let up = Upstream::start(std::sync::Arc::new(
        |_: &Ctx<'_>, _: &Recorded, s: &mut TcpStream| {
            use std::io::Write;
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")?;
            Ok(false)
        },
    ));
    let p = Proxy::start(&config(up.addr, "            upgrades: [websocket]\n"));
    // A plain GET (no upgrade asked) must not be switched by the upstream.
    let r = get(p.listen, "chat.example", "/plain");
    assert_eq!(r.status, 502);
}
