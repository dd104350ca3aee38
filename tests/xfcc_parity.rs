//! x-forwarded-client-cert parity with Envoy 1.40: one bootstrap per
//! `forward_client_cert_details` mode (with every `set_current_client_cert_details`
//! part) runs under Envoy and under Outrigger; curl sends a request carrying an XFCC
//! header over HTTP/1.1 and HTTP/2, once with a client certificate and once without,
//! and the XFCC value the upstream receives must be the same byte for byte: `By`,
//! `Hash`, the URL-encoded PEM of `Cert` and `Chain`, the RFC 2253 `Subject`, `URI`
//! and `DNS`. Outrigger's values are also checked on their own, so the test means
//! something without Envoy (it then skips only the comparison).

mod common;
mod pki;

use std::path::Path;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;
use pki::{curl_mtls, Ca, Leaf, LeafSpec, MtlsBootstrap};

const INCOMING: &str = "By=spiffe://other/sa/x;URI=spiffe://other/sa/y";

fn bootstrap(mode: &str, ca: &Path, server: &Leaf, upstream: u16) -> String {
    MtlsBootstrap {
        server,
        ca,
        tls: "          require_client_certificate: false\n",
        validation: "",
        hcm: &format!(
            "          forward_client_cert_details: {mode}\n          set_current_client_cert_details: {{ subject: true, cert: true, chain: true, dns: true, uri: true }}\n"
        ),
        route: "route: { cluster: backend }",
        clusters: &format!(
            r#"  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
"#
        ),
    }
    .render()
}

/// The XFCC values the echo upstream reports for one curl request through `port`
/// (joined by `|` when there are several fields; empty: none).
fn xfcc_seen(port: u16, ca: &Path, client: Option<&Leaf>, h2: bool, incoming: bool) -> String {
    let header = format!("x-forwarded-client-cert: {INCOMING}");
    let mut extra = vec![if h2 { "--http2" } else { "--http1.1" }];
    if incoming {
        extra.extend(["-H", &header]);
    }
    let out = curl_mtls(port, ca, client, &extra);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && body.contains("method: GET"),
        "curl: {body}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    body.lines()
        .filter_map(|l| {
            let (n, v) = l.strip_prefix("header: ")?.split_once(": ")?;
            n.eq_ignore_ascii_case("x-forwarded-client-cert")
                .then(|| v.to_string())
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// What Outrigger must send on its own: checked without Envoy.
fn check_outrigger(mode: &str, mtls: bool, got: &str) {
    match (mode, mtls) {
        ("ALWAYS_FORWARD_ONLY", _) | ("FORWARD_ONLY", true) => assert_eq!(got, INCOMING),
        ("SANITIZE", _) | (_, false) => assert_eq!(got, "", "{mode}"),
        ("APPEND_FORWARD" | "SANITIZE_SET", true) => {
            let own = match mode {
                "APPEND_FORWARD" => got
                    .strip_prefix(&format!("{INCOMING},"))
                    .unwrap_or_else(|| panic!("{got}")),
                _ => got,
            };
            let parts: Vec<&str> = own.split(';').collect();
            assert_eq!(
                parts[0], "By=spiffe://mesh.test/ns/default/sa/proxy",
                "{own}"
            );
            let hash = parts[1].strip_prefix("Hash=").unwrap();
            assert!(
                hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                "{own}"
            );
            assert!(
                parts[2].starts_with("Cert=\"-----BEGIN%20CERTIFICATE-----%0A"),
                "{own}"
            );
            assert!(
                parts[3].starts_with("Chain=\"-----BEGIN%20CERTIFICATE-----%0A"),
                "{own}"
            );
            assert_eq!(
                &parts[4..],
                [
                    "Subject=\"CN=client\"",
                    "URI=spiffe://mesh.test/ns/default/sa/client",
                    "DNS=client.test"
                ],
                "{own}"
            );
        }
        _ => unreachable!(),
    }
}

#[test]
fn every_forward_client_cert_mode_sends_what_envoy_sends() {
    let dir = TempDir::new("xfcc");
    let ca = Ca::new("mesh CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(
        dir.path(),
        "server",
        LeafSpec {
            dns: &["proxy.test"],
            uris: &["spiffe://mesh.test/ns/default/sa/proxy"],
            client: false,
            expired: false,
        },
    );
    let client = ca.leaf(
        dir.path(),
        "client",
        LeafSpec {
            dns: &["client.test"],
            uris: &["spiffe://mesh.test/ns/default/sa/client"],
            client: true,
            expired: false,
        },
    );
    let up = Upstream::echo();
    let envoy_bin = envoy_or_skip("xfcc parity (Envoy side)");
    for mode in [
        "SANITIZE",
        "FORWARD_ONLY",
        "APPEND_FORWARD",
        "SANITIZE_SET",
        "ALWAYS_FORWARD_ONLY",
    ] {
        let text = bootstrap(mode, &ca_pem, &server, up.addr.port());
        let proxy = Proxy::start(&text);
        let envoy = envoy_bin.as_ref().map(|b| Envoy::start(b, &text));
        for (mtls, h2) in [(true, false), (true, true), (false, false), (false, true)] {
            let who = if mtls { Some(&client) } else { None };
            let ours = xfcc_seen(proxy.listen.port(), &ca_pem, who, h2, true);
            check_outrigger(mode, mtls, &ours);
            if let Some(e) = &envoy {
                let theirs = xfcc_seen(e.listen.port(), &ca_pem, who, h2, true);
                assert_eq!(
                    ours, theirs,
                    "{mode}, client certificate {mtls}, h2 {h2}: Outrigger, then Envoy"
                );
            }
            // Without an incoming header: only the proxy's own element, if any.
            let ours = xfcc_seen(proxy.listen.port(), &ca_pem, who, h2, false);
            let own_only = matches!(mode, "APPEND_FORWARD" | "SANITIZE_SET") && mtls;
            assert_eq!(
                ours.starts_with("By="),
                own_only,
                "{mode} {mtls} {h2}: {ours}"
            );
            if !own_only {
                assert_eq!(ours, "", "{mode} {mtls} {h2}");
            }
            if let Some(e) = &envoy {
                let theirs = xfcc_seen(e.listen.port(), &ca_pem, who, h2, false);
                assert_eq!(ours, theirs, "{mode} {mtls} {h2}, no incoming header");
            }
        }
    }
}
