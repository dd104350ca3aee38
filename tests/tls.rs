//! TLS through the real binary: curl over TLS with HTTP/1.1 and HTTP/2 (ALPN picks the
//! codec), mutual TLS with SPIFFE client certificates and every refusal counted and
//! kept from the upstream, SNI choosing between chains, plain and TLS chains on one
//! listener, and malformed ClientHellos; RBAC's `authenticated` principal falling back
//! to the client certificate's subject (RFC 2253). The PKI is made in the test (tests/pki).

mod common;
mod pki;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use pki::{Ca, Leaf, LeafSpec};

struct Curl {
    ok: bool,
    out: String,
}

/// `curl -sS` against `https://NAME:PORT/` resolved to the proxy; `extra` adds flags.
/// The output ends with `\n<status> <http version>`.
fn curl(proxy: &Proxy, name: &str, extra: &[&str]) -> Curl {
    let port = proxy.listen.port();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{name}:{port}/"))
        .stdin(Stdio::null())
        .output()
        .expect("curl must be installed");
    Curl {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A listener `tls` with the tls_inspector and `chains` (indented list items), a route
/// table `main` to the cluster `backend` on `upstream`, and tables `one` and `two`
/// answering their names.
fn config(chains: &str, upstream: &Upstream) -> String {
    format!(
        "{HEADER}listeners:
  - name: tls
    address: 127.0.0.1
    port: @PORT@
    listener_filters: [tls_inspector]
    filter_chains:
{chains}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: backend
  - name: one
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200, body: \"one\" }}
  - name: two
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200, body: \"two\" }}
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        upstream.addr.port()
    )
}

/// A `tls:` block (indented for a chain) with `server` and optional client checks.
fn tls_block(server: &Leaf, alpn: &str, client: &str) -> String {
    format!(
        "        tls:
          certificates:
            - {{ cert_chain_file: \"{}\", private_key_file: \"{}\" }}
          alpn_protocols: {alpn}
{client}",
        p(&server.cert),
        p(&server.key)
    )
}

fn ssl(proxy: &Proxy) -> serde_json::Value {
    proxy.listener_stats("tls")["ssl"].clone()
}

/// Waits until the `ssl` counter `name` reaches `n`.
fn wait_ssl(proxy: &Proxy, name: &str, n: u64) -> serde_json::Value {
    wait_until(IO_TIMEOUT, || {
        let s = ssl(proxy);
        (s[name].as_u64() == Some(n)).then_some(s)
    })
    .unwrap_or_else(|| panic!("ssl.{name} never reached {n}: {}", ssl(proxy)))
}

/// A proxy whose one TLS chain (for `localhost`, ALPN `h2, http/1.1`) routes with
/// `route_table`; the CA's PEM file and the upstream.
fn alpn_proxy(dir: &TempDir, route_table: &str) -> (Proxy, std::path::PathBuf, Upstream) {
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["localhost"]));
    let up = Upstream::echo();
    let chains = format!(
        "      - name: tls
        route_table: {route_table}
{}",
        tls_block(&server, "[h2, http/1.1]", "")
    );
    (Proxy::start(&config(&chains, &up)), ca_pem, up)
}

#[test]
fn curl_over_tls_with_http1_and_http2_chosen_by_alpn() {
    let dir = TempDir::new("tls-pki");
    let (proxy, ca_pem, up) = alpn_proxy(&dir, "main");
    let cacert = p(&ca_pem);
    let h1 = curl(&proxy, "localhost", &["--cacert", &cacert, "--http1.1"]);
    assert!(h1.ok && h1.out.ends_with("\n200 1.1"), "{}", h1.out);
    let h2 = curl(&proxy, "localhost", &["--cacert", &cacert, "--http2"]);
    assert!(h2.ok && h2.out.ends_with("\n200 2"), "{}", h2.out);
    assert_eq!(up.request_count(), 2);
    let s = wait_ssl(&proxy, "handshake", 2);
    assert_eq!(s["versions"]["TLSv1.3"], 2, "{s}");
    assert_eq!(s["no_certificate"], 2, "{s}");
    assert_eq!(s["connection_error"], 0, "{s}");
    // TLS 1.2 works too, with a forward-secret suite.
    let t12 = curl(
        &proxy,
        "localhost",
        &["--cacert", &cacert, "--tlsv1.2", "--tls-max", "1.2"],
    );
    assert!(t12.ok, "{}", t12.out);
    let s = wait_ssl(&proxy, "handshake", 3);
    assert_eq!(s["versions"]["TLSv1.2"], 1, "{s}");
    assert!(
        s["ciphers"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("ECDHE-")),
        "{s}"
    );
    let prom = proxy.prometheus();
    assert!(
        prom.contains("outrigger_ssl_handshake_total{listener=\"tls\"} 3"),
        "{prom}"
    );
    // TLS 1.1 and below are refused.
    let old = curl(
        &proxy,
        "localhost",
        &["--cacert", &cacert, "--tlsv1.0", "--tls-max", "1.1"],
    );
    assert!(!old.ok, "{}", old.out);
    wait_ssl(&proxy, "connection_error", 1);
}

const SPIFFE_WEB: &str = "spiffe://test.local/ns/default/sa/web";

#[test]
fn mutual_tls_accepts_a_spiffe_client_and_refuses_the_rest_before_the_upstream() {
    let dir = TempDir::new("tls-pki");
    let ca = Ca::new("test CA");
    let other_ca = Ca::new("other CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["localhost"]));
    let web = ca.leaf(dir.path(), "web", pki::client(SPIFFE_WEB));
    let stranger = other_ca.leaf(dir.path(), "stranger", pki::client(SPIFFE_WEB));
    let outsider = ca.leaf(
        dir.path(),
        "outsider",
        pki::client("spiffe://test.local/ns/other/sa/web"),
    );
    let expired = ca.leaf(
        dir.path(),
        "expired",
        LeafSpec {
            expired: true,
            ..pki::client(SPIFFE_WEB)
        },
    );
    let up = Upstream::echo();
    let validation = format!(
        "          require_client_certificate: true
          validation_context:
            trusted_ca_file: \"{}\"
            match_subject_alt_names:
              - {{ prefix: \"spiffe://test.local/ns/default/\" }}
",
        p(&ca_pem)
    );
    let chains = format!(
        "      - name: mtls
        route_table: main
        access_log:
          path: @DIR@/access.log
          format: '%PROTOCOL% %DOWNSTREAM_TLS_VERSION% %DOWNSTREAM_TLS_CIPHER% %REQUESTED_SERVER_NAME% %DOWNSTREAM_PEER_URI_SAN% %DOWNSTREAM_PEER_DNS_SAN%'
{}",
        tls_block(&server, "[h2, http/1.1]", &validation)
    );
    let proxy = Proxy::start(&config(&chains, &up));
    let cacert = p(&ca_pem);
    let with = |leaf: &Leaf| {
        curl(
            &proxy,
            "localhost",
            &[
                "--cacert",
                &cacert,
                "--cert",
                &p(&leaf.cert),
                "--key",
                &p(&leaf.key),
            ],
        )
    };
    let ok = with(&web);
    assert!(ok.ok && ok.out.ends_with("\n200 2"), "{}", ok.out);
    wait_ssl(&proxy, "handshake", 1);
    // The connection's TLS facts reach the upstream request and the access log.
    let req = up.last_request();
    assert_eq!(
        req.header("x-forwarded-proto"),
        Some("https"),
        "{}",
        req.describe()
    );
    let line = wait_for_line(&proxy.dir.join("access.log"), IO_TIMEOUT, |l| {
        l.starts_with("HTTP/2")
    });
    assert_eq!(
        line.as_deref(),
        Some(format!("HTTP/2 TLSv1.3 TLS_AES_256_GCM_SHA384 localhost {SPIFFE_WEB} -").as_str())
    );
    // And HTTP/1.1 over the same kind of connection.
    let h1 = curl(
        &proxy,
        "localhost",
        &[
            "--cacert",
            &cacert,
            "--cert",
            &p(&web.cert),
            "--key",
            &p(&web.key),
            "--http1.1",
        ],
    );
    assert!(h1.ok && h1.out.ends_with("\n200 1.1"), "{}", h1.out);
    assert_eq!(up.last_request().header("x-forwarded-proto"), Some("https"));
    wait_ssl(&proxy, "handshake", 2);

    let none = curl(&proxy, "localhost", &["--cacert", &cacert]);
    assert!(!none.ok, "{}", none.out);
    wait_ssl(&proxy, "fail_verify_no_cert", 1);

    let r = with(&stranger);
    assert!(!r.ok, "{}", r.out);
    wait_ssl(&proxy, "fail_verify_error", 1);

    let r = with(&expired);
    assert!(!r.ok, "{}", r.out);
    wait_ssl(&proxy, "fail_verify_error", 2);

    let r = with(&outsider);
    assert!(!r.ok, "{}", r.out);
    let s = wait_ssl(&proxy, "fail_verify_san", 1);
    assert_eq!(s["handshake"], 2, "{s}");
    assert_eq!(s["no_certificate"], 0, "{s}");
    assert_eq!(
        up.request_count(),
        2,
        "refused clients never reach the upstream"
    );
}

#[test]
fn rbac_authenticated_matches_the_client_certificate_subject_after_its_sans() {
    let dir = TempDir::new("tls-pki");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["localhost"]));
    // Both have a SPIFFE URI SAN the policy does not name; their subjects differ.
    let web = ca.leaf(dir.path(), "web", pki::client(SPIFFE_WEB));
    let db = ca.leaf(dir.path(), "db", pki::client(SPIFFE_WEB));
    let up = Upstream::echo();
    let validation = format!(
        "          require_client_certificate: true
          validation_context:
            trusted_ca_file: \"{}\"
",
        p(&ca_pem)
    );
    let chains = format!(
        "      - name: mtls
        route_table: main
        http_filters:
          - name: authz
            rbac:
              rules:
                action: ALLOW
                policies:
                  by-subject:
                    permissions: [{{ any: true }}]
                    principals: [{{ authenticated: {{ principal_name: {{ exact: \"CN=web\" }} }} }}]
{}",
        tls_block(&server, "[http/1.1]", &validation)
    );
    let proxy = Proxy::start(&config(&chains, &up));
    let cacert = p(&ca_pem);
    let with = |leaf: &Leaf| {
        let args = [
            "--cacert",
            &cacert,
            "--cert",
            &p(&leaf.cert),
            "--key",
            &p(&leaf.key),
        ];
        curl(&proxy, "localhost", &args)
    };
    let ok = with(&web);
    assert!(ok.ok && ok.out.ends_with("\n200 1.1"), "{}", ok.out);
    let denied = with(&db);
    assert!(denied.out.ends_with("\n403 1.1"), "{}", denied.out);
    assert_eq!(up.request_count(), 1);
}

#[test]
fn sni_chooses_the_chain_and_its_certificate() {
    let dir = TempDir::new("tls-pki");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let a = ca.leaf(dir.path(), "a", pki::server(&["a.example.com"]));
    let b = ca.leaf(dir.path(), "b", pki::server(&["*.b.example.com"]));
    let up = Upstream::echo();
    let chains = format!(
        "      - name: a
        filter_chain_match: {{ server_names: [a.example.com] }}
        route_table: one
{}      - name: b
        filter_chain_match: {{ server_names: [\"*.b.example.com\"] }}
        route_table: two
{}",
        tls_block(&a, "[http/1.1]", ""),
        tls_block(&b, "[http/1.1]", "")
    );
    let proxy = Proxy::start(&config(&chains, &up));
    let cacert = p(&ca_pem);
    let r = curl(&proxy, "a.example.com", &["--cacert", &cacert]);
    assert!(r.ok && r.out.starts_with("one\n200"), "{}", r.out);
    let r = curl(&proxy, "x.b.example.com", &["--cacert", &cacert]);
    assert!(r.ok && r.out.starts_with("two\n200"), "{}", r.out);
    // `*.b.example.com` does not take `b.example.com`; no chain does: closed, counted.
    let r = curl(&proxy, "b.example.com", &["--cacert", &cacert]);
    assert!(!r.ok, "{}", r.out);
    let l = proxy.listener_stats("tls");
    assert_eq!(l["no_filter_chain_match"], 1, "{l}");
    assert_eq!(l["ssl"]["handshake"], 2, "{l}");
}

#[test]
fn plain_and_tls_chains_share_a_listener_and_malformed_hellos_just_close() {
    let dir = TempDir::new("tls-pki");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["localhost"]));
    let up = Upstream::echo();
    let chains = format!(
        "      - name: plain
        filter_chain_match: {{ transport_protocol: raw_buffer }}
        route_table: one
      - name: tls
        filter_chain_match: {{ transport_protocol: tls }}
        route_table: two
{}",
        tls_block(&server, "[http/1.1]", "")
    );
    let proxy = Proxy::start(&config(&chains, &up));
    let r = curl(&proxy, "localhost", &["--cacert", &p(&ca_pem)]);
    assert!(r.ok && r.out.starts_with("two\n200"), "{}", r.out);
    assert_eq!(get(proxy.listen, "x", "/").body_str(), "one");

    // A handshake record that is not a well-formed ClientHello is "not TLS": the plain
    // chain takes it and its HTTP/1 codec answers 400 (or it closes), never a panic.
    let garbage: [&[u8]; 4] = [
        &[0x16, 3, 1, 0, 5, 1, 0, 0, 0x40, 3],
        &[0x16, 3, 1, 0, 9, 1, 0, 0, 5, 3, 3, 0xff, 0xff, 0xff],
        &[0x16, 3, 3, 0xff, 0xff, 1, 0xff, 0xff, 0xff],
        &[0x16, 3, 1, 0, 1, 2],
    ];
    for g in garbage {
        let mut s = TcpStream::connect(proxy.listen).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = s.write_all(g);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
    }
    // A ClientHello that is well formed but unacceptable (no common suite) fails the
    // handshake on the TLS chain: counted as a connection error.
    let mut hello = vec![3, 3];
    hello.extend([0u8; 32]);
    hello.extend([0, 0, 2, 0x00, 0x2f, 1, 0]); // TLS_RSA_WITH_AES_128_CBC_SHA only
    let mut msg = vec![1, 0, 0, hello.len() as u8];
    msg.extend(hello);
    let mut rec = vec![0x16, 3, 1, 0, msg.len() as u8];
    rec.extend(msg);
    let mut s = TcpStream::connect(proxy.listen).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(&rec).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(out.first(), Some(&0x15), "a TLS alert, then close: {out:?}");
    wait_ssl(&proxy, "connection_error", 1);
    let l = proxy.listener_stats("tls");
    assert_eq!(l["cx_panic"], 0, "{l}");
    assert_eq!(up.request_count(), 0);
    assert_eq!(
        get(proxy.listen, "x", "/").body_str(),
        "one",
        "still serving"
    );
    let _ = Duration::ZERO;
}

#[test]
fn config_checks() {
    let up = Upstream::echo();
    let dir = TempDir::new("tls-pki");
    let bad = |chains: &str| {
        let path = dir.join("bad.yaml");
        std::fs::write(
            &path,
            config(chains, &up)
                .replace("@ADMIN_PORT@", "0")
                .replace("@PORT@", "0"),
        )
        .unwrap();
        let out = run_cli(&["validate", "-c", &p(&path)], IO_TIMEOUT);
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
    };
    let e = bad("      - name: a
        route_table: one
        tls:
          certificates: [{ cert_chain_file: /nonexistent.pem, private_key_file: /nonexistent.key }]
          require_client_certificate: true
");
    assert!(e.contains("require_client_certificate"), "{e}");
    let e = bad("      - name: a
        route_table: one
        tls:
          certificates: [{ cert_chain_file: /nonexistent.pem, private_key_file: /nonexistent.key }]
");
    assert!(e.contains("cannot read `/nonexistent.pem`"), "{e}");
}

#[test]
fn the_shipped_example_runs_with_generated_certificates() {
    let dir = TempDir::new("tls-pki");
    let ca = Ca::new("demo CA");
    ca.write(dir.path(), "ca.pem");
    ca.leaf(
        dir.path(),
        "server",
        pki::server(&["*.demo.local", "localhost"]),
    );
    let client = ca.leaf(
        dir.path(),
        "client",
        pki::client("spiffe://demo.local/ns/default/sa/demo"),
    );
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tls.yaml"))
            .unwrap();
    let template = example
        .replace("config/demo-certs/", &format!("{}/", p(dir.path())))
        .replace("port: 9901", "port: @ADMIN_PORT@")
        .replace("port: 8443", "port: @PORT@");
    let proxy = Proxy::start(&template);
    let cacert = p(&dir.join("ca.pem"));
    let r = curl(&proxy, "api.demo.local", &["--cacert", &cacert]);
    assert!(r.ok && r.out.ends_with("outrigger\n\n200 2"), "{}", r.out);
    let r = curl(
        &proxy,
        "mesh.demo.local",
        &[
            "--cacert",
            &cacert,
            "--cert",
            &p(&client.cert),
            "--key",
            &p(&client.key),
        ],
    );
    assert!(r.ok && r.out.ends_with("\n200 2"), "{}", r.out);
    let r = curl(&proxy, "mesh.demo.local", &["--cacert", &cacert]);
    assert!(!r.ok, "{}", r.out);
    assert_eq!(get(proxy.listen, "x", "/").status, 200, "plaintext");
}

/// A rustls client config that trusts `ca` (PEM file), with rustls's session cache.
fn client_config(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

/// A TLS client connection that trusts `ca` (PEM file), for tests that hold one open.
fn tls_connect(
    addr: std::net::SocketAddr,
    name: &str,
    ca: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let conn =
        rustls::ClientConnection::new(client_config(ca), name.to_string().try_into().unwrap())
            .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// One keep-alive GET over `s`; the response up to the end of a body ending in `want`.
fn tls_get(s: &mut impl ReadWrite, want: &str) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(want.as_bytes()) {
        match s.read(&mut buf) {
            Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
            other => panic!("read: {other:?}, got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn a_rotated_certificate_serves_new_handshakes_and_live_connections_carry_on() {
    let dir = TempDir::new("tls-pki");
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let old_pem = old_ca.write(dir.path(), "old-ca.pem");
    let new_pem = new_ca.write(dir.path(), "new-ca.pem");
    let server = old_ca.leaf(dir.path(), "server", pki::server(&["localhost"]));
    let up = Upstream::echo();
    let chains = format!(
        "      - name: tls
        route_table: one
{}",
        tls_block(&server, "[http/1.1]", "")
    );
    let proxy = Proxy::start(&config(&chains, &up));
    let version = proxy.config_version();
    let mut live = tls_connect(proxy.listen, "localhost", &old_pem);
    assert!(tls_get(&mut live, "one").starts_with("HTTP/1.1 200"));

    // The new pair is written next to the old one and renamed over it, a file at a
    // time: in between, certificate and key do not match and that reload is refused.
    let next = new_ca.leaf(dir.path(), "next", pki::server(&["localhost"]));
    std::fs::rename(&next.cert, &server.cert).unwrap();
    std::fs::rename(&next.key, &server.key).unwrap();
    let rotated = wait_until(IO_TIMEOUT, || {
        let r = curl(&proxy, "localhost", &["--cacert", &p(&new_pem)]);
        r.ok.then_some(r)
    });
    assert!(rotated.is_some(), "{}", proxy.stderr());
    assert!(proxy.config_version() > version);
    let r = curl(&proxy, "localhost", &["--cacert", &p(&old_pem)]);
    assert!(!r.ok, "the old certificate is no longer served: {}", r.out);
    // The connection made before the rotation still works, on its old session.
    assert!(tls_get(&mut live, "one").starts_with("HTTP/1.1 200"));
}

#[test]
fn sessions_resume_on_any_core() {
    let dir = TempDir::new("tls-pki");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["localhost"]));
    let up = Upstream::echo();
    let chains = format!(
        "      - name: tls
        route_table: one
{}",
        tls_block(&server, "[http/1.1]", "")
    );
    // Two workers: the kernel spreads the connections over both, and a ticket issued
    // by one must resume on the other.
    let proxy = Proxy::start_with(&config(&chains, &up), 2);
    let config = client_config(&ca_pem);
    let mut kinds = Vec::new();
    for i in 0..8 {
        if i == 4 {
            // A reload builds new TLS configs; the ticket keys carry over.
            assert_eq!(proxy.reload().status, 200);
        }
        let conn =
            rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
        let sock = TcpStream::connect(proxy.listen).unwrap();
        sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        assert!(tls_get(&mut s, "one").starts_with("HTTP/1.1 200"));
        kinds.push(s.conn.handshake_kind());
    }
    assert_eq!(kinds[0], Some(rustls::HandshakeKind::Full));
    assert!(
        kinds[1..]
            .iter()
            .all(|k| *k == Some(rustls::HandshakeKind::Resumed)),
        "{kinds:?}"
    );
    let s = wait_ssl(&proxy, "handshake", 8);
    assert_eq!(s["session_reused"], 7, "{s}");
}

#[test]
fn a_tcp_proxy_chain_passes_tls_through_by_sni() {
    let dir = TempDir::new("tls-pki");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["pass.example.com"]));
    // Listener `tls` passes `pass.example.com` through untouched to listener `inner`,
    // which terminates it.
    let template = format!(
        "{HEADER}listeners:
  - name: tls
    address: 127.0.0.1
    port: @PORT@
    listener_filters: [tls_inspector]
    filter_chains:
      - name: passthrough
        filter_chain_match: {{ server_names: [pass.example.com] }}
        tcp_proxy: {{ cluster: inner }}
  - name: inner
    address: 127.0.0.1
    port: @PORT2@
    filter_chains:
      - name: terminate
        route_table: one
{}route_tables:
  - name: one
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200, body: \"inner\" }}
clusters:
  - name: inner
    endpoints: [{{ address: 127.0.0.1, port: @PORT2@ }}]
",
        tls_block(&server, "[h2, http/1.1]", "")
    );
    let proxy = Proxy::start(&template);
    let r = curl(&proxy, "pass.example.com", &["--cacert", &p(&ca_pem)]);
    assert!(r.ok && r.out.starts_with("inner\n200 2"), "{}", r.out);
    assert_eq!(proxy.listener_stats("tls")["ssl"]["handshake"], 0);
    assert_eq!(proxy.listener_stats("inner")["ssl"]["handshake"], 1);
}

/// A client that offers only protocols the chain does not list (a mesh client's
/// `istio`) is served without ALPN, as Envoy (BoringSSL) does; rustls alone would
/// refuse it with `no_application_protocol`.
#[test]
fn a_client_offering_none_of_the_chains_alpn_is_served_without_alpn() {
    let dir = TempDir::new("tls-alpn");
    let (proxy, ca_pem, _up) = alpn_proxy(&dir, "one");
    for (offer, want) in [
        (vec!["istio-peer-exchange", "istio"], None),
        (vec!["istio", "http/1.1"], Some(&b"http/1.1"[..])),
    ] {
        let mut c = (*client_config(&ca_pem)).clone();
        c.alpn_protocols = offer.iter().map(|p| p.as_bytes().to_vec()).collect();
        let conn = rustls::ClientConnection::new(
            std::sync::Arc::new(c),
            "localhost".to_string().try_into().unwrap(),
        )
        .unwrap();
        let sock = TcpStream::connect(proxy.listen).unwrap();
        sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        let got = tls_get(&mut s, "one");
        assert!(got.starts_with("HTTP/1.1 200"), "{offer:?}: {got}");
        assert_eq!(s.conn.alpn_protocol(), want, "{offer:?}");
    }
}
