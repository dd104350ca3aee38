//! SDS from files for the tests: a Kubernetes-style secret volume (files published by
//! an atomic `..data` symlink swap), SDS `DiscoveryResponse` files, bootstraps that
//! take their certificates from them, and TLS clients that report which certificate a
//! server presented.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::pki::{path, Leaf};

/// A directory laid out like a Kubernetes secret volume: `NAME -> ..data/NAME` for each
/// file, `..data -> ..vN`; [`K8sVolume::publish`] writes `..vN+1` and renames a new
/// `..data` over the old one, so readers see either every old file or every new one
/// (and Envoy's watch sees a move into the directory).
pub struct K8sVolume {
    pub dir: PathBuf,
    version: u32,
}

impl K8sVolume {
    pub fn new(dir: &Path) -> K8sVolume {
        std::fs::create_dir_all(dir).unwrap();
        K8sVolume {
            dir: dir.to_path_buf(),
            version: 0,
        }
    }

    /// The visible path of `name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Publishes `files` (name, contents) as the volume's new contents, atomically.
    pub fn publish(&mut self, files: &[(&str, &[u8])]) {
        self.version += 1;
        let v = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.join(&v)).unwrap();
        for (name, text) in files {
            std::fs::write(self.dir.join(&v).join(name), text).unwrap();
            let visible = self.dir.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                symlink(format!("..data/{name}"), &visible).unwrap();
            }
        }
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&v, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

/// An SDS file (YAML) with one `tls_certificate` secret `name` whose files are `cert`
/// and `key`.
pub fn tls_secret(name: &str, cert: &Path, key: &Path) -> String {
    format!(
        r#"version_info: "1"
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: {name}
  tls_certificate:
    certificate_chain: {{ filename: "{}" }}
    private_key: {{ filename: "{}" }}
"#,
        path(cert),
        path(key)
    )
}

/// An SDS file (YAML) with one `validation_context` secret `name`: `ca` and `extra`
/// (indented lines of the `validation_context`).
pub fn ca_secret(name: &str, ca: &Path, extra: &str) -> String {
    format!(
        r#"version_info: "1"
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: {name}
  validation_context:
    trusted_ca: {{ filename: "{}" }}
{extra}"#,
        path(ca)
    )
}

/// An `sds_config` reading `file`, watching `dir` (Envoy's `path_config_source`).
pub fn sds_config(file: &Path, dir: &Path) -> String {
    format!(
        "{{ path_config_source: {{ path: \"{}\", watched_directory: {{ path: \"{}\" }} }} }}",
        path(file),
        path(dir)
    )
}

pub const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const ROUTER: &str = "{ name: envoy.filters.http.router, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }";

/// A bootstrap (admin on `@ADMIN_PORT@`, node set: Envoy's SDS needs one) with one TLS
/// listener on `@PORT@` whose certificate is the SDS secret `server` read through
/// `sds` (an `sds_config`), answering `from sds` to every request; `extra_tls` is added to
/// its `common_tls_context` (indented 12).
pub fn downstream_bootstrap(sds: &str, extra_tls: &str) -> String {
    format!(
        r#"node: {{ id: test, cluster: test }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: sds
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [http/1.1]
            tls_certificate_sds_secret_configs:
            - name: server
              sds_config: {sds}
{extra_tls}      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: sds
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                direct_response: {{ status: 200, body: {{ inline_string: "from sds" }} }}
          http_filters: [{ROUTER}]
"#
    )
}

/// The DER of the first certificate in a PEM file.
pub fn der(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Accepts any server certificate: the tests look at which one was presented.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config that accepts any certificate (no resumption: every handshake is
/// full, so it shows the certificate served now).
pub fn any_cert_client() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    c.resumption = rustls::client::Resumption::disabled();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// A TLS connection to `addr` (SNI `proxy.test`) with `config`.
pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

pub fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let conn = rustls::ClientConnection::new(config.clone(), "proxy.test".try_into().unwrap())
        .map_err(std::io::Error::other)?;
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    sock.set_write_timeout(Some(Duration::from_secs(20)))?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The certificate `addr` presents to a new handshake now (DER), if it handshakes.
pub fn served(addr: SocketAddr) -> Option<Vec<u8>> {
    let s = connect(addr, &any_cert_client()).ok()?;
    s.conn.peer_certificates()?.first().map(|c| c.to_vec())
}

/// One keep-alive `GET /` over `s`: the status and body (`Content-Length` framing).
pub fn tls_get(s: &mut Tls) -> std::io::Result<(u16, String)> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    Ok((status, body))
}

/// An HTTP/1.1 server over TLS with `leaf`'s certificate (no client certificate asked),
/// answering every request `200 upstream`; serves up to 256 connections.
pub fn tls_upstream(leaf: &Leaf) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs: Vec<_> = CertificateDer::pem_file_iter(&leaf.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&leaf.key).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for sock in l.incoming().take(256) {
            let Ok(sock) = sock else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(20)));
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut s = rustls::StreamOwned::new(conn, sock);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nupstream";
                        if s.write_all(r).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(n @ 1..) => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
            });
        }
    });
    addr
}
