//! An HTTP/1.1 server over TLS for the upstream TLS tests (tests/tls_upstream.rs,
//! tests/tls_oneline.rs): rustls, on plain threads, requiring a client certificate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::Leaf;

/// Counts of what the TLS upstream saw.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
}

/// An HTTP/1.1 server over TLS that requires a client certificate from `client_ca` and
/// answers every request with `sni=<SNI> alpn=<ALPN> client=<URI SAN>`.
pub fn tls_upstream(server: &Leaf, client_ca: &Path) -> (SocketAddr, Arc<Seen>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(client_ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let certs: Vec<_> = CertificateDer::pem_file_iter(&server.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&server.key).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    thread::spawn(move || {
        for sock in l.incoming().take(64) {
            let Ok(sock) = sock else { continue };
            s2.connections.fetch_add(1, Ordering::SeqCst);
            let config = config.clone();
            let seen = s2.clone();
            thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(20)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut s = rustls::StreamOwned::new(conn, sock);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk) {
                            Ok(n @ 1..) => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    let sni = s.conn.server_name().unwrap_or("").to_string();
                    let alpn = s
                        .conn
                        .alpn_protocol()
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .unwrap_or_default();
                    let client = s
                        .conn
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| outrigger::tls::der::sans(c).uri.join(","))
                        .unwrap_or_default();
                    let body = format!("sni={sni} alpn={alpn} client={client}");
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    if s.write_all(head.as_bytes()).is_err()
                        || s.write_all(body.as_bytes()).is_err()
                    {
                        return;
                    }
                    let _ = s.flush();
                }
            });
        }
    });
    (addr, seen)
}
