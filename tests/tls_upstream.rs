//! Upstream TLS origination through the real binary: a cluster with `tls:` to an
//! in-process rustls server that requires the proxy's client certificate. The proxy
//! sends the configured SNI, presents its certificate, verifies the server against the
//! CA and its SAN matchers, and pools the TLS connection; a wrong server identity is a
//! connect failure (503, UF) and no request reaches that server.

mod common;
mod pki;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use pki::{Ca, Leaf};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Counts of what the TLS upstream saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

/// An HTTP/1.1 server over TLS that requires a client certificate from `client_ca` and
/// answers every request with `sni=<SNI> alpn=<ALPN> client=<URI SAN>`.
fn tls_upstream(server: &Leaf, client_ca: &Path) -> (SocketAddr, Arc<Seen>) {
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

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn a_cluster_originates_mutual_tls_with_sni_and_checks_the_server_identity() {
    let dir = TempDir::new("tls-pki");
    let ca = Ca::new("mesh CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let backend = ca.leaf(
        dir.path(),
        "backend",
        pki::LeafSpec {
            dns: &["backend.local"],
            uris: &["spiffe://test.local/ns/default/sa/backend"],
            client: false,
            expired: false,
        },
    );
    let proxy_cert = ca.leaf(
        dir.path(),
        "proxy",
        pki::client("spiffe://test.local/ns/default/sa/proxy"),
    );
    let (up, seen) = tls_upstream(&backend, &ca_pem);
    let cluster = |name: &str, san: &str| {
        format!(
            "  - name: {name}
    connect_timeout: 2s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
    tls:
      sni: backend.local
      alpn_protocols: [http/1.1]
      certificates:
        - {{ cert_chain_file: \"{}\", private_key_file: \"{}\" }}
      validation_context:
        trusted_ca_file: \"{}\"
        match_subject_alt_names: [{{ exact: \"{san}\" }}]
",
            up.port(),
            p(&proxy_cert.cert),
            p(&proxy_cert.key),
            p(&ca_pem)
        )
    };
    let config = format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /wrong }}
            cluster: impostor
          - match: {{ prefix: / }}
            cluster: backend
clusters:
{}{}",
        cluster("backend", "spiffe://test.local/ns/default/sa/backend"),
        cluster("impostor", "spiffe://test.local/ns/default/sa/other"),
    );
    let proxy = Proxy::start(&config);
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..2 {
        c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response().expect("a response");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body_str(),
            "sni=backend.local alpn=http/1.1 client=spiffe://test.local/ns/default/sa/proxy"
        );
    }
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "the TLS connection is pooled and reused"
    );
    assert_eq!(proxy.cluster_stats("backend")["cx_reused"], 1);

    // A server whose SAN is not the one the cluster expects: a connect failure.
    let r = get(proxy.listen, "x", "/wrong");
    assert_eq!(r.status, 503);
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        2,
        "nothing reached it"
    );
    assert_eq!(proxy.cluster_stats("impostor")["cx_connect_fail"], 1);
}
