//! The control plane's HTML status page (issue 15), read in headless Chromium (Debian's
//! `chromium`, installed by tests/run): services with their endpoints, connected
//! proxies with their ACKed versions and last NACK per type, certificates with their
//! expiry, registered workloads, and the last refused change.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::envoy::{envoy_or_skip, Envoy};
use common::mesh::{admin_json, bootstrap_with_token, spawn_sidecar, start_control_with};
use common::*;

const TOKENS: &str = "- {token: web-token-0123456789abc, namespace: demo, serviceAccount: web}
- {token: edge-token-0123456789ab, namespace: demo, serviceAccount: edge}
- {token: envoy-token-0123456789a, namespace: demo, serviceAccount: web}
";

fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if has_tool(c) {
            return c.to_string();
        }
    }
    panic!("no chromium: tests/run installs Debian's chromium package");
}

/// Runs headless Chromium on `url` with `what` (`--dump-dom` or `--screenshot=FILE`);
/// returns its stdout.
fn headless(url: &str, what: &str, profile: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", profile.display()),
            what,
            url,
        ])
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_status_page_shows_services_proxies_versions_nacks_certificates_and_registrations() {
    let app = Upstream::echo();
    let (dir, state) = (TempDir::new("mesh-page"), TempDir::new("mesh-page-state"));
    let port = free_port();
    // The edge sidecar's outbound port is held by the test: Outrigger NACKs the listener.
    let held = TcpListener::bind("127.0.0.82:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    write_atomic(
        &dir.join("mesh.yaml"),
        &format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: demo}}
spec:
  hosts: [web.demo]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: web}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web, namespace: demo}}
spec: {{address: 127.0.0.81, serviceAccount: web, labels: {{app: web}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  ingress: [{{port: {{number: {port}, protocol: HTTP, name: http}}, bind: 127.0.0.81, defaultEndpoint: '{}'}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: edge, namespace: demo}}
spec: {{address: 127.0.0.82, serviceAccount: edge, labels: {{app: edge}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: edge, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: edge}}}}
  egress: [{{port: {{number: {held_port}, protocol: HTTP, name: http}}, bind: 127.0.0.82, hosts: [./*]}}]
",
            app.addr
        ),
    );
    write_atomic(&state.join("tokens.yaml"), TOKENS);
    let tokens = state.join("tokens.yaml").display().to_string();
    let control = start_control_with(&dir, &["--tokens", &tokens]);
    let _web = Proxy::start(&bootstrap_with_token(
        "web.demo",
        control.listen,
        "GRPC",
        Some("web-token-0123456789abc"),
    ));
    // Not `Proxy::start`: its one listener never binds, so it may never be ready.
    let edge_boot = state.join("edge.yaml");
    let boot = bootstrap_with_token(
        "edge.demo",
        control.listen,
        "DELTA_GRPC",
        Some("edge-token-0123456789ab"),
    );
    let edge = spawn_sidecar(&edge_boot, &boot);
    let envoy = envoy_or_skip("the status page with an Envoy sidecar");
    let _envoy = envoy.as_ref().map(|bin| {
        Envoy::start(
            bin,
            &bootstrap_with_token(
                "web-envoy.demo",
                control.listen,
                "GRPC",
                Some("envoy-token-0123456789a"),
            ),
        )
    });
    // A registered workload, and a refused change.
    let body = r#"{"address": "127.0.0.83", "labels": {"app": "web"}}"#;
    let r = exchange(
        control.admin,
        &format!(
            "PUT /workloads/demo/web-vm?ttl=600s HTTP/1.1\r\nHost: c\r\nauthorization: Bearer web-token-0123456789abc\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body_str());
    let nacked = wait_until(Duration::from_secs(15), || {
        let p = admin_json(&control, "/proxies");
        let edge = &p["proxies"]["edge.demo"];
        let web = &p["proxies"]["web.demo"];
        (edge["nacked"].as_object().is_some_and(|n| !n.is_empty())
            && web["certificate"]["serial"].is_string())
        .then_some(())
    });
    drop(edge);
    assert!(
        nacked.is_some(),
        "no NACK or certificate:\n{}",
        admin_json(&control, "/proxies")
    );
    write_atomic(&dir.join("broken.yaml"), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad, namespace: demo}\nspec: {hosts: [web.demo], http: [{timeout: soon}]}\n");
    assert!(wait_until(Duration::from_secs(10), || {
        (!admin_json(&control, "/proxies")["errors"]
            .as_array()?
            .is_empty())
        .then_some(())
    })
    .is_some());

    let url = format!("http://{}/", control.admin);
    let dom = headless(&url, "--dump-dom", &state.join("chromium"));
    for want in [
        "Outrigger control plane",
        // services and endpoints (the registered one among them)
        "web.demo",
        "127.0.0.81",
        "127.0.0.83",
        // proxies, identities, versions, NACKs
        "edge.demo",
        "web.demo",
        "spiffe://cluster.local/ns/demo/sa/web",
        "ACKed",
        "NACK",
        "cannot bind",
        // the certificate's expiry
        "expires",
        // registrations and the refused change
        "demo/web-vm",
        "spec.http[0].timeout",
    ] {
        assert!(dom.contains(want), "the page lacks `{want}`:\n{dom}");
    }
    if envoy.is_some() {
        assert!(dom.contains("web-envoy.demo"), "{dom}");
    }
    // Identities show as soon as the token is checked: web's and the Envoy sidecar's.
    let expect = if envoy.is_some() { 2 } else { 1 };
    assert_eq!(
        dom.matches("spiffe://cluster.local/ns/demo/sa/web").count(),
        expect,
        "{dom}"
    );
    // The screenshot renders (and, with OUTRIGGER_STATUS_SCREENSHOT=FILE, is kept there:
    // docs/images/control-plane-status.png is made so).
    let png = std::env::var("OUTRIGGER_STATUS_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| state.join("status.png"));
    headless(
        &url,
        &format!("--screenshot={}", png.display()),
        &state.join("chromium"),
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    drop(held);
}
