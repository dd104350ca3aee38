//! DestinationRule `trafficPolicy.tls` modes `SIMPLE` and `MUTUAL` from `outrigger
//! control` (issue 15): TLS originated by the sidecar to a service outside the mesh,
//! with the CA, client certificate and key from files, through an Outrigger and an
//! Envoy 1.40 sidecar alike.

mod common;
mod pki;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::{envoy_or_skip, Envoy};
use common::mesh::{bootstrap, start_control};
use common::*;
use pki::upstream::tls_upstream;

fn client(name: &str, bind: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: demo}}
spec: {{address: {bind}, labels: {{app: {name}}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: {name}}}}}
  egress: [{{port: {{number: {port}, protocol: HTTP, name: http}}, bind: {bind}, hosts: ['*/*']}}]
"
    )
}

/// The body of a GET through the sidecar at `at` for `host` (`None`: no 200).
fn body(at: SocketAddr, host: &str) -> Option<String> {
    let mut c = Conn::try_connect(at).ok()?;
    c.try_send(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"))
        .ok()?;
    let r = c.read_response().ok()?;
    (r.status == 200).then(|| r.body_str())
}

#[test]
fn mutual_tls_to_a_service_outside_the_mesh_uses_the_files_on_outrigger_and_envoy() {
    mutual_tls_outside_the_mesh("GRPC");
}

/// The same over delta xDS: a changed cluster's endpoints must come again there too.
#[test]
fn mutual_tls_outside_the_mesh_over_delta_xds() {
    mutual_tls_outside_the_mesh("DELTA_GRPC");
}

fn mutual_tls_outside_the_mesh(api: &str) {
    let dir = TempDir::new("mesh-egress");
    let pki_dir = TempDir::new("mesh-egress-pki");
    let ca = pki::Ca::new("external-ca");
    let ca_pem = ca.write(pki_dir.path(), "ca.pem");
    let server = ca.leaf(pki_dir.path(), "server", pki::server(&["secure.example"]));
    let me = ca.leaf(
        pki_dir.path(),
        "me",
        pki::client("spiffe://external/ns/demo/sa/caller"),
    );
    let (up, seen) = tls_upstream(&server, &ca_pem);
    let port = free_port();
    let envoy = envoy_or_skip("DestinationRule MUTUAL with an Envoy sidecar");
    write_atomic(
        &dir.join("external.yaml"),
        &format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: secure, namespace: demo}}
spec:
  hosts: [secure.example]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: secure, namespace: demo}}
spec:
  host: secure.example
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: {}
      privateKey: {}
      caCertificates: {}
      subjectAltNames: [secure.example]
",
            up.port(),
            pki::path(&me.cert),
            pki::path(&me.key),
            pki::path(&ca_pem)
        ),
    );
    write_atomic(&dir.join("or.yaml"), &client("or", "127.0.0.101", port));
    write_atomic(
        &dir.join("envoy.yaml"),
        &client("envoy", "127.0.0.102", port),
    );
    let control = start_control(&dir);
    let _ours = Proxy::start(&bootstrap("or.demo", control.listen, api));
    let _theirs = envoy
        .as_ref()
        .map(|bin| Envoy::start(bin, &bootstrap("envoy.demo", control.listen, api)));
    let mut sidecars = vec![("outrigger", SocketAddr::from(([127, 0, 0, 101], port)))];
    if envoy.is_some() {
        sidecars.push(("envoy", SocketAddr::from(([127, 0, 0, 102], port))));
    }
    for (who, at) in &sidecars {
        let got = wait_until(Duration::from_secs(15), || body(*at, "secure.example"));
        let got = got.unwrap_or_else(|| panic!("{who}: no answer over TLS:\n{}", control.stderr()));
        // The sidecar sent SNI (the host), and its client certificate from the files.
        assert!(got.contains("sni=secure.example"), "{who}: {got}");
        assert!(
            got.contains("client=spiffe://external/ns/demo/sa/caller"),
            "{who}: {got}"
        );
    }
    assert!(seen.requests.load(std::sync::atomic::Ordering::Relaxed) >= sidecars.len());
    // A server name the rule does not accept: the handshake is refused by both, within
    // seconds. Envoy warms the changed cluster until its endpoints come again: a control
    // plane that held them back (unchanged) left it on the old cluster for its 15 s
    // `initial_fetch_timeout`, which a 15 s wait here did not tell from a refusal.
    let wrong = std::fs::read_to_string(dir.join("external.yaml"))
        .unwrap()
        .replace(
            "subjectAltNames: [secure.example]",
            "subjectAltNames: [other.example]",
        );
    write_atomic(&dir.join("external.yaml"), &wrong);
    for (who, at) in &sidecars {
        let refused = wait_until(Duration::from_secs(8), || {
            body(*at, "secure.example").is_none().then_some(())
        });
        assert!(
            refused.is_some(),
            "{who}: a server outside subjectAltNames was accepted"
        );
    }
    // Bad fields are refused by name.
    let bad = wrong.replace(
        "mode: MUTUAL",
        "mode: MUTUAL\n      credentialName: my-secret",
    );
    write_atomic(&dir.join("external.yaml"), &bad);
    let named = wait_until(Duration::from_secs(10), || {
        let p = common::mesh::admin_json(&control, "/proxies");
        p["errors"]
            .as_array()?
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains("tls.credentialName")))
            .then_some(())
    });
    assert!(
        named.is_some(),
        "credentialName not refused by field:\n{}",
        control.stderr()
    );
}
