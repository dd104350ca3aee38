//! A WebSocket echo server for the tests (tungstenite), on its own threads.

use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use tungstenite::Message;

/// A WebSocket server that answers each text or binary message with `echo:` + message,
/// and records the Upgrade header of each handshake it accepted.
pub fn ws_echo_server(conns: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().take(conns).flatten() {
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let Ok(mut ws) = tungstenite::accept(s) else {
                    return;
                };
                while let Ok(msg) = ws.read() {
                    let reply = match msg {
                        Message::Text(t) => Message::text(format!("echo:{t}")),
                        Message::Binary(b) => {
                            let mut v = b"echo:".to_vec();
                            v.extend_from_slice(&b);
                            Message::binary(v)
                        }
                        // tungstenite queues the close reply; flushing sends it, and the
                        // next read ends the loop.
                        Message::Close(_) => {
                            let _ = ws.flush();
                            continue;
                        }
                        _ => continue,
                    };
                    if ws.send(reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}
