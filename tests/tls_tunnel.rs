//! Tunnels over terminated TLS: a TCP proxy chain behind a TLS transport socket moves
//! bytes both ways through the session (read and write halves of one TlsStream), and
//! the client's close_notify ends the upstream side.

mod common;
mod pki;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use pki::Ca;
use rustls::pki_types::pem::PemObject;

/// Echoes every read back until the client closes; then reports how many bytes it saw.
fn echo_server() -> (SocketAddr, std::sync::mpsc::Receiver<usize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        if let Some(Ok(mut s)) = l.incoming().next() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            let mut total = 0;
            let mut buf = [0u8; 16384];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                total += n;
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = tx.send(total);
        }
    });
    (addr, rx)
}

fn client(ca: &Path, addr: SocketAddr) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

#[test]
fn a_tcp_proxy_runs_over_terminated_tls() {
    let dir = TempDir::new("tls-pki");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["localhost"]));
    let (echo, total) = echo_server();
    let config = format!(
        "{HEADER}listeners:
  - name: tls
    address: 127.0.0.1
    port: @PORT@
    filter_chains:
      - name: tunnel
        tcp_proxy: {{ cluster: echo }}
        tls:
          certificates:
            - {{ cert_chain_file: \"{}\", private_key_file: \"{}\" }}
clusters:
  - name: echo
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        server.cert.display(),
        server.key.display(),
        echo.port()
    );
    let proxy = Proxy::start(&config);
    let mut s = client(&ca_pem, proxy.listen);
    // Bodies larger than a TLS record and the socket buffers, echoed as they go.
    let block: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    for round in 0..3 {
        s.write_all(&block).unwrap();
        s.flush().unwrap();
        while got.len() < block.len() * (round + 1) {
            let n = s.read(&mut buf).expect("echo");
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(got.chunks(block.len()).all(|c| c == block.as_slice()));
    // close_notify, then the write side: the upstream sees the end of the stream.
    s.conn.send_close_notify();
    s.flush().unwrap();
    let _ = s.sock.shutdown(std::net::Shutdown::Write);
    let seen = total
        .recv_timeout(IO_TIMEOUT)
        .expect("the upstream saw the end");
    assert_eq!(seen, block.len() * 3);
    let l = proxy.listener_stats("tls");
    assert_eq!(l["ssl"]["handshake"], 1, "{l}");
}
