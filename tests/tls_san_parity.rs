//! Client-certificate SAN matchers from an Envoy bootstrap, against Envoy 1.40:
//! `match_typed_subject_alt_names` with every `StringMatcher` form, and the SAN type
//! honoured (a DNS matcher never accepts a URI SAN). Each case runs the same bootstrap
//! under both proxies and compares whether curl with the client certificate gets
//! through; Outrigger's expectation is also checked on its own.

mod common;
mod pki;

use std::path::Path;
use std::process::{Command, Stdio};

use common::envoy::{envoy_or_skip, Envoy};
use common::*;
use pki::{Ca, Leaf, LeafSpec};

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn bootstrap(san: &str, ca: &Path, server: &Leaf) -> String {
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
          require_client_certificate: true
          common_tls_context:
            tls_certificates: [{{ certificate_chain: {{ filename: "{cert}" }}, private_key: {{ filename: "{key}" }} }}]
            validation_context:
              trusted_ca: {{ filename: "{ca}" }}
              match_typed_subject_alt_names: [{san}]
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: mtls
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                direct_response: {{ status: 200, body: {{ inline_string: "in" }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#,
        cert = p(&server.cert),
        key = p(&server.key),
        ca = p(ca),
    )
}

/// Whether curl with `client`'s certificate gets the direct response through `port`.
fn admitted(port: u16, ca: &Path, client: &Leaf) -> bool {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", &p(ca)])
        .args(["--resolve", &format!("proxy.test:{port}:127.0.0.1")])
        .args(["--cert", &p(&client.cert), "--key", &p(&client.key)])
        .arg(format!("https://proxy.test:{port}/"))
        .stdin(Stdio::null())
        .output()
        .expect("curl must be installed");
    out.status.success() && out.stdout == b"in"
}

#[test]
fn typed_san_matchers_of_every_form_admit_as_envoy_does() {
    let dir = TempDir::new("san");
    let ca = Ca::new("mesh CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(
        dir.path(),
        "server",
        LeafSpec {
            dns: &["proxy.test"],
            uris: &[],
            client: false,
            expired: false,
        },
    );
    let client = ca.leaf(
        dir.path(),
        "client",
        LeafSpec {
            dns: &["web.mesh.test"],
            uris: &["spiffe://mesh.test/ns/prod/sa/web"],
            client: true,
            expired: false,
        },
    );
    let cases = [
        ("{san_type: URI, matcher: {exact: 'spiffe://mesh.test/ns/prod/sa/web'}}", true),
        // The type counts: the URI is not a DNS name.
        ("{san_type: DNS, matcher: {exact: 'spiffe://mesh.test/ns/prod/sa/web'}}", false),
        ("{san_type: DNS, matcher: {suffix: '.mesh.test'}}", true),
        ("{san_type: URI, matcher: {suffix: '.mesh.test'}}", false),
        ("{san_type: URI, matcher: {contains: '/ns/prod/'}}", true),
        ("{san_type: URI, matcher: {safe_regex: {regex: 'spiffe://mesh\\.test/ns/[a-z]+/sa/web'}}}", true),
        ("{san_type: URI, matcher: {safe_regex: {regex: 'mesh'}}}", false),
        ("{san_type: DNS, matcher: {exact: 'WEB.mesh.test', ignore_case: true}}", true),
        ("{san_type: DNS, matcher: {prefix: 'WEB.'}}", false),
    ];
    let envoy_bin = envoy_or_skip("SAN matcher parity (Envoy side)");
    for (i, (san, want)) in cases.iter().enumerate() {
        let text = bootstrap(san, &ca_pem, &server);
        let proxy = Proxy::start(&text);
        assert_eq!(
            admitted(proxy.listen.port(), &ca_pem, &client),
            *want,
            "case {i} {san}: Outrigger"
        );
        if let Some(b) = &envoy_bin {
            let envoy = Envoy::start(b, &text);
            assert_eq!(
                admitted(envoy.listen.port(), &ca_pem, &client),
                *want,
                "case {i} {san}: Envoy"
            );
        }
    }
}
