//! Client-certificate SAN matchers from an Envoy bootstrap, against Envoy 1.40:
//! `match_typed_subject_alt_names` with every `StringMatcher` form, and the SAN type
//! honoured (a DNS matcher never accepts a URI SAN). Each case runs the same bootstrap
//! under both proxies and compares whether curl with the client certificate gets
//! through; Outrigger's expectation is also checked on its own.

mod common;
mod pki;

use std::path::Path;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;
use pki::{curl_mtls, Ca, Leaf, LeafSpec, MtlsBootstrap};

fn bootstrap(san: &str, ca: &Path, server: &Leaf) -> String {
    MtlsBootstrap {
        server,
        ca,
        tls: "          require_client_certificate: true\n",
        validation: &format!("              match_typed_subject_alt_names: [{san}]\n"),
        hcm: "",
        route: "direct_response: { status: 200, body: { inline_string: \"in\" } }",
        clusters: "",
    }
    .render()
}

/// Whether curl with `client`'s certificate gets the direct response through `port`.
fn admitted(port: u16, ca: &Path, client: &Leaf) -> bool {
    let out = curl_mtls(port, ca, Some(client), &[]);
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
