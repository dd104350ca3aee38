//! Workload self-registration on `outrigger control` (issue 15): workloads PUT their
//! WorkloadEntry on the admin port with a TTL, beat, leave, or stop beating and expire;
//! a sidecar's routes follow, with real requests through it. With `--tokens`, the
//! caller's token must be for the workload's namespace.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::mesh::{admin_json, bootstrap_with_token, start_control_with};
use common::*;

/// A service whose endpoints are the workloads labelled `app: vm`, and a client
/// workload whose sidecar binds the service's port on `bind`.
fn mesh(port: u16, bind: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: vm, namespace: demo}}
spec:
  hosts: [vm.demo]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: vm}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: client, namespace: demo}}
spec: {{address: {bind}, serviceAccount: client, labels: {{app: client}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - port: {{number: {port}, protocol: HTTP, name: http}}
    bind: {bind}
    captureMode: NONE
    hosts: [./*]
"
    )
}

const TOKENS: &str = "- {token: client-token-0123456789, namespace: demo, serviceAccount: client}
- {token: vm-token-0123456789abcdef, namespace: demo, serviceAccount: vm}
- {token: other-token-0123456789ab, namespace: other, serviceAccount: vm}
";

/// `METHOD /workloads/...` on the admin port with `body` and an optional token.
fn call(
    control: &Proxy,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let r = exchange(
        control.admin,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: control\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    (r.status, r.body_str().trim().to_string())
}

fn vm(port: u16) -> String {
    format!(r#"{{"address": "127.0.0.1", "ports": {{"http": {port}}}, "labels": {{"app": "vm"}}}}"#)
}

/// Which upstreams answer `n` requests through the sidecar: (a's, b's, failures).
fn spread(at: SocketAddr, n: usize, a: &Upstream, b: &Upstream) -> (usize, usize, usize) {
    let (a0, b0) = (a.request_count(), b.request_count());
    let mut failed = 0;
    for _ in 0..n {
        let ok = Conn::try_connect(at).ok().and_then(|mut c| {
            c.try_send("GET / HTTP/1.1\r\nHost: vm.demo\r\n\r\n").ok()?;
            c.read_response().ok()
        });
        if ok.map(|r| r.status) != Some(200) {
            failed += 1;
        }
    }
    (a.request_count() - a0, b.request_count() - b0, failed)
}

#[test]
fn registered_workloads_join_beat_leave_and_expire() {
    let (a, b) = (Upstream::echo(), Upstream::echo());
    let (dir, state) = (TempDir::new("mesh-reg"), TempDir::new("mesh-reg-state"));
    let port = free_port();
    write_atomic(&dir.join("mesh.yaml"), &mesh(port, "127.0.0.71"));
    write_atomic(&state.join("tokens.yaml"), TOKENS);
    let tokens = state.join("tokens.yaml").display().to_string();
    let control = start_control_with(&dir, &["--tokens", &tokens]);
    let _sidecar = Proxy::start(&bootstrap_with_token(
        "client.demo",
        control.listen,
        "DELTA_GRPC",
        Some("client-token-0123456789"),
    ));
    let at = SocketAddr::from(([127, 0, 0, 71], port));
    let vm_token = Some("vm-token-0123456789abcdef");

    // Tokens: none, another namespace's, another service account's.
    let (s, why) = call(
        &control,
        "PUT",
        "/workloads/demo/vm-a",
        &vm(a.addr.port()),
        None,
    );
    assert_eq!(s, 401, "{why}");
    let (s, why) = call(
        &control,
        "PUT",
        "/workloads/demo/vm-a",
        &vm(a.addr.port()),
        Some("other-token-0123456789ab"),
    );
    assert_eq!((s, why.contains("namespace other")), (403, true), "{why}");
    let wrong_sa =
        vm(a.addr.port()).replace("\"labels\"", "\"serviceAccount\": \"db\", \"labels\"");
    let (s, why) = call(&control, "PUT", "/workloads/demo/vm-a", &wrong_sa, vm_token);
    assert_eq!(s, 403, "{why}");
    // A bad spec is named by field; a name the directory has is a conflict.
    let (s, why) = call(
        &control,
        "PUT",
        "/workloads/demo/vm-a",
        r#"{"address": "127.0.0.1", "colour": "red"}"#,
        vm_token,
    );
    assert_eq!((s, why.contains("colour")), (400, true), "{why}");
    let (s, why) = call(
        &control,
        "PUT",
        "/workloads/demo/client",
        &vm(a.addr.port()),
        vm_token,
    );
    assert_eq!(s, 409, "{why}");

    // vm-a joins (a long TTL, renewed by heartbeats); vm-b with a short one.
    assert_eq!(
        call(
            &control,
            "PUT",
            "/workloads/demo/vm-a?ttl=60s",
            &vm(a.addr.port()),
            vm_token
        )
        .0,
        201
    );
    let up = wait_until(Duration::from_secs(10), || {
        (spread(at, 1, &a, &b) == (1, 0, 0)).then_some(())
    });
    assert!(
        up.is_some(),
        "the registered workload is not served:\n{}",
        control.stderr()
    );
    assert_eq!(
        call(
            &control,
            "PUT",
            "/workloads/demo/vm-a?ttl=60s",
            &vm(a.addr.port()),
            vm_token
        ),
        (200, "renewed".into())
    );
    assert_eq!(
        call(
            &control,
            "PUT",
            "/workloads/demo/vm-b?ttl=2s",
            &vm(b.addr.port()),
            vm_token
        )
        .0,
        201
    );
    let both = wait_until(Duration::from_secs(10), || {
        let (x, y, f) = spread(at, 20, &a, &b);
        (x > 0 && y > 0 && f == 0).then_some(())
    });
    assert!(both.is_some(), "the second workload does not take requests");
    let listed = admin_json(&control, "/workloads");
    assert_eq!(listed["workloads"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed["workloads"][0]["serviceAccount"], "vm", "{listed}");

    // vm-b stops beating: it expires after its 2 s and takes no more requests.
    let gone = wait_until(Duration::from_secs(10), || {
        (spread(at, 20, &a, &b) == (20, 0, 0)).then_some(())
    });
    assert!(gone.is_some(), "the expired workload still takes requests");
    assert_eq!(
        admin_json(&control, "/workloads")["workloads"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(control.stderr().contains("registrations expired"));

    // vm-a leaves: nothing serves the service.
    assert_eq!(
        call(&control, "DELETE", "/workloads/demo/vm-a", "", vm_token).0,
        200
    );
    assert_eq!(
        call(&control, "DELETE", "/workloads/demo/vm-a", "", vm_token).0,
        404
    );
    let empty = wait_until(Duration::from_secs(10), || {
        (spread(at, 1, &a, &b) == (0, 0, 1)).then_some(())
    });
    assert!(
        empty.is_some(),
        "the deregistered workload still takes requests"
    );
}
