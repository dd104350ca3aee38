//! A test PKI made at test time (rcgen): a CA, server and client certificates with
//! DNS and SPIFFE URI SANs, written as PEM files into a test directory. Nothing here
//! is committed as a file; every key lives only as long as its test.

#![allow(dead_code)]

pub mod upstream;

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate authority that signs leaves.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A leaf's files.
#[derive(Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a leaf says about itself.
pub struct LeafSpec<'a> {
    pub dns: &'a [&'a str],
    pub uris: &'a [&'a str],
    pub client: bool,
    pub expired: bool,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// Writes the CA certificate to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A leaf signed by this CA, written as `dir/name.pem` and `dir/name.key`.
    pub fn leaf(&self, dir: &Path, name: &str, spec: LeafSpec<'_>) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        for d in spec.dns {
            p.subject_alt_names
                .push(SanType::DnsName((*d).try_into().unwrap()));
        }
        for u in spec.uris {
            p.subject_alt_names
                .push(SanType::URI((*u).try_into().unwrap()));
        }
        p.extended_key_usages = vec![if spec.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if spec.expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

/// A server leaf for `dns` names.
pub fn server(dns: &'static [&'static str]) -> LeafSpec<'static> {
    LeafSpec {
        dns,
        uris: &[],
        client: false,
        expired: false,
    }
}

/// A client leaf with one URI SAN (a SPIFFE ID).
pub fn client(uri: &str) -> LeafSpec<'_> {
    LeafSpec {
        dns: &[],
        uris: std::slice::from_ref(Box::leak(Box::new(uri))),
        client: true,
        expired: false,
    }
}

/// A path as text, for configs and command lines.
pub fn path(p: &Path) -> String {
    p.display().to_string()
}

/// An Envoy bootstrap (admin on `@ADMIN_PORT@`) with one listener `mtls` on `@PORT@`
/// that terminates TLS with `server`'s certificate and checks client certificates
/// against `ca`, then runs an HTTP connection manager with the router. `tls` is added
/// to the `DownstreamTlsContext`, `validation` to its `validation_context`, `hcm` to the
/// connection manager; `route` is the one route's action and `clusters` the cluster
/// list (may be empty). Lines are indented as their place needs.
pub struct MtlsBootstrap<'a> {
    pub server: &'a Leaf,
    pub ca: &'a Path,
    pub tls: &'a str,
    pub validation: &'a str,
    pub hcm: &'a str,
    pub route: &'a str,
    pub clusters: &'a str,
}

impl MtlsBootstrap<'_> {
    pub fn render(&self) -> String {
        format!(
            r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: mtls
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
{tls}          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates: [{{ certificate_chain: {{ filename: "{cert}" }}, private_key: {{ filename: "{key}" }} }}]
            validation_context:
              trusted_ca: {{ filename: "{ca}" }}
{validation}      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mtls
{hcm}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                {route}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
{clusters}"#,
            tls = self.tls,
            validation = self.validation,
            hcm = self.hcm,
            route = self.route,
            clusters = self.clusters,
            cert = path(&self.server.cert),
            key = path(&self.server.key),
            ca = path(self.ca),
        )
    }
}

/// `curl -sS https://proxy.test:PORT/` resolved to 127.0.0.1, trusting `ca`, with
/// `client`'s certificate if given and `extra` flags.
pub fn curl_mtls(
    port: u16,
    ca: &Path,
    client: Option<&Leaf>,
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--cacert", &path(ca)])
        .args(["--resolve", &format!("proxy.test:{port}:127.0.0.1")])
        .args(extra);
    if let Some(c) = client {
        cmd.args(["--cert", &path(&c.cert), "--key", &path(&c.key)]);
    }
    cmd.arg(format!("https://proxy.test:{port}/"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("curl must be installed")
}
