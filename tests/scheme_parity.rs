//! The scheme an HTTP/2 upstream is told, beside Envoy 1.40: `:scheme` and
//! `x-forwarded-proto` when TLS is on one side only. One bootstrap per combination of
//! a plaintext or TLS listener and a plaintext or TLS HTTP/2 cluster runs under Envoy
//! and under Outrigger; curl sends HTTP/1.1 and HTTP/2 requests, with and without an
//! incoming `x-forwarded-proto`, and the in-test HTTP/2 upstream answers with what it
//! received. Envoy sends the downstream's scheme, whatever the upstream transport
//! (`scheme_header_transformation` unset). Without Envoy, Outrigger's answers are
//! checked against those expectations alone.

mod common;
mod h2client;
mod pki;

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use common::envoy::{envoy_or_skip, Envoy};
use common::*;
use pki::{path, Ca, Leaf};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// An HTTP/2 server (h2 over TLS with ALPN `h2` when `tls` has a certificate, else
/// h2c) that answers every request with `scheme=<:scheme> xfp=<x-forwarded-proto>`.
/// It runs on an executor of its own thread for the rest of the test.
fn h2_upstream(tls: Option<&Leaf>) -> SocketAddr {
    let config = tls.map(|leaf| {
        let certs: Vec<_> = CertificateDer::pem_file_iter(&leaf.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&leaf.key).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut c = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        c.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(c)
    });
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        // On the proxy's own runtime (`outrigger::rt`), so the TLS stream is the one the
        // proxy's upstream side meets elsewhere.
        outrigger::rt::executor::block_on(async move {
            let l = outrigger::rt::net::listener_from(socket2::Socket::from(l))
                .expect("the upstream's listener");
            let config = Rc::new(config);
            loop {
                let Ok(sock) = l.accept().await else { return };
                let config = config.clone();
                outrigger::rt::spawn_local(async move {
                    match config.as_ref() {
                        Some(c) => {
                            let conn = rustls::ServerConnection::new(c.clone()).unwrap();
                            let mut t = outrigger::tls::TlsStream::new(sock, conn, &[]);
                            if t.handshake().await.is_ok() {
                                serve(t.compat()).await;
                            }
                        }
                        None => serve(sock.compat()).await,
                    }
                })
                .detach();
            }
        })
    });
    addr
}

async fn serve<T>(io: T)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        let xfp: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-proto")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let body = format!(
            "scheme={} xfp={}",
            req.uri().scheme_str().unwrap_or("-"),
            xfp.join(",")
        );
        let resp = http::Response::builder().status(200).body(()).unwrap();
        if let Ok(mut s) = respond.send_response(resp, false) {
            let _ = s.send_data(Bytes::from(body), true);
        }
    }
}

/// An Envoy bootstrap: one listener on `@PORT@` (TLS with `server`'s certificate when
/// `down_tls`) to one HTTP/2 cluster on `upstream` (TLS verified against `ca` when
/// `up_tls`).
fn bootstrap(down_tls: bool, up_tls: bool, server: &Leaf, ca: &Path, upstream: u16) -> String {
    let transport = if down_tls {
        format!(
            r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates: [{{ certificate_chain: {{ filename: "{}" }}, private_key: {{ filename: "{}" }} }}]
"#,
            path(&server.cert),
            path(&server.key)
        )
    } else {
        String::new()
    };
    let up_transport = if up_tls {
        format!(
            r#"    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: backend.test
        common_tls_context:
          alpn_protocols: [h2]
          validation_context: {{ trusted_ca: {{ filename: "{}" }} }}
"#,
            path(ca)
        )
    } else {
        String::new()
    };
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: backend }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
{transport}  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 2s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
{up_transport}"#
    )
}

/// What the upstream reported for one curl request to `port`.
fn seen(port: u16, tls: bool, ca: &Path, h2: bool, xfp: Option<&str>) -> String {
    let scheme = if tls { "https" } else { "http" };
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--cacert", &path(ca)])
        .args(["--resolve", &format!("proxy.test:{port}:127.0.0.1")])
        .arg(match (h2, tls) {
            (false, _) => "--http1.1",
            (true, true) => "--http2",
            (true, false) => "--http2-prior-knowledge",
        });
    if let Some(v) = xfp {
        cmd.args(["-H", &format!("x-forwarded-proto: {v}")]);
    }
    let out = cmd
        .arg(format!("{scheme}://proxy.test:{port}/s"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("curl must be installed");
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && body.starts_with("scheme="),
        "curl: {body}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    body
}

/// What the upstream reported for an HTTP/2 (h2c) request to `addr` whose `:scheme`
/// is `scheme`, which curl cannot choose.
fn seen_h2c(addr: SocketAddr, scheme: &'static str) -> String {
    h2client::run(move || async move {
        let mut c = h2client::connect(addr).await;
        let req = h2client::request("GET", &format!("{scheme}://proxy.test/s"))
            .body(())
            .unwrap();
        let r = h2client::send(&mut c, req, b"").await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body_str()
    })
}

#[test]
fn an_http2_upstream_gets_the_downstream_scheme_as_envoy_sends_it() {
    let dir = TempDir::new("scheme");
    let ca = Ca::new("scheme CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["proxy.test"]));
    let backend = ca.leaf(dir.path(), "backend", pki::server(&["backend.test"]));
    let plain_up = h2_upstream(None);
    let tls_up = h2_upstream(Some(&backend));
    let envoy_bin = envoy_or_skip("scheme parity (Envoy side)");
    for (down_tls, up_tls) in [(false, true), (true, false), (false, false), (true, true)] {
        let up = if up_tls { tls_up } else { plain_up };
        let text = bootstrap(down_tls, up_tls, &server, &ca_pem, up.port());
        let proxy = Proxy::start(&text);
        let envoy = envoy_bin.as_ref().map(|b| Envoy::start(b, &text));
        let down = if down_tls { "https" } else { "http" };
        for h2 in [false, true] {
            for xfp in [None, Some("https"), Some("http")] {
                let case =
                    format!("downstream {down}, upstream TLS {up_tls}, h2 {h2}, xfp {xfp:?}");
                let ours = seen(proxy.listen.port(), down_tls, &ca_pem, h2, xfp);
                // Envoy's default (no use_remote_address): an incoming x-forwarded-proto
                // is kept, and :scheme is the downstream's own (HTTP/1: from a kept
                // x-forwarded-proto, else the connection).
                let want_xfp = xfp.unwrap_or(down);
                let want_scheme = if h2 { down } else { want_xfp };
                assert_eq!(
                    ours,
                    format!("scheme={want_scheme} xfp={want_xfp}"),
                    "{case}"
                );
                if let Some(e) = &envoy {
                    let theirs = seen(e.listen.port(), down_tls, &ca_pem, h2, xfp);
                    assert_eq!(ours, theirs, "{case}: Outrigger, then Envoy");
                }
            }
        }
        // An HTTP/2 client's own `:scheme` is trusted and passed on, even `https` over
        // plaintext.
        if !down_tls {
            let ours = seen_h2c(proxy.listen, "https");
            assert_eq!(ours, "scheme=https xfp=http", "h2c with :scheme https");
            if let Some(e) = &envoy {
                assert_eq!(
                    ours,
                    seen_h2c(e.listen, "https"),
                    "h2c: Outrigger, then Envoy"
                );
            }
        }
    }
}
