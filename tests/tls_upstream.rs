//! Upstream TLS origination through the real binary: a cluster with `tls:` to an
//! in-process rustls server that requires the proxy's client certificate. The proxy
//! sends the configured SNI, presents its certificate, verifies the server against the
//! CA and its SAN matchers, and pools the TLS connection; a wrong server identity is a
//! connect failure (503, UF) and no request reaches that server.

mod common;
mod pki;

use std::path::Path;
use std::sync::atomic::Ordering;

use common::*;
use pki::upstream::tls_upstream;
use pki::Ca;

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
