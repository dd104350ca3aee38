//! Two `outrigger control` replicas on one etcd (issue 15): resources written with
//! etcdctl, both replicas serve the same view, sidecars (Outrigger and Envoy 1.40) whose
//! ADS cluster lists both follow changes, and when the replica they use dies they carry
//! on with the other. etcd and etcdctl are Debian's (etcd-server, etcd-client), which
//! tests/run installs.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::envoy::{envoy_or_skip, Envoy};
use common::mesh::{admin_json, bootstrap_to};
use common::*;

/// A single-member etcd on loopback, killed on drop.
struct Etcd {
    child: Child,
    url: String,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args([
                "--name",
                "t",
                "--data-dir",
                &dir.join("etcd").display().to_string(),
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("t={peer_url}"),
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server; tests/run installs it)");
        let e = Etcd { child, url };
        let addr: SocketAddr = format!("127.0.0.1:{client}").parse().unwrap();
        let up = wait_until(Duration::from_secs(20), || {
            let r = http_request(addr, "GET", "/health", Duration::from_secs(2)).ok()?;
            r.body_str().contains("true").then_some(())
        });
        assert!(up.is_some(), "etcd did not become healthy");
        e
    }

    /// `etcdctl put KEY VALUE` (or `del` when `value` is `None`).
    fn ctl(&self, key: &str, value: Option<&str>) {
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "3").args(["--endpoints", &self.url]);
        match value {
            Some(v) => c.args(["put", key, v]),
            None => c.args(["del", key]),
        };
        let out = c.output().expect("etcdctl (Debian's etcd-client)");
        assert!(
            out.status.success(),
            "etcdctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mesh(port: u16, v1: SocketAddr, v2: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: demo}}
spec:
  hosts: [echo.demo]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: echo}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: echo-v1, namespace: demo}}
spec: {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{app: echo, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: echo-v2, namespace: demo}}
spec: {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{app: echo, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: demo}}
spec:
  host: echo.demo
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
",
        v1.port(),
        v2.port()
    )
}

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
  egress: [{{port: {{number: {port}, protocol: HTTP, name: http}}, bind: {bind}, hosts: [./*]}}]
"
    )
}

/// Every request to `subset`.
fn only(subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: demo}}
spec:
  hosts: [echo.demo]
  http: [{{route: [{{destination: {{host: echo.demo, subset: {subset}}}}}]}}]
"
    )
}

/// Requests through `at` until all of 10 reach `want` (10 s at most).
fn settles_on(at: SocketAddr, want: &Upstream) -> bool {
    wait_until(Duration::from_secs(15), || {
        let before = want.request_count();
        for _ in 0..10 {
            let mut c = Conn::try_connect(at).ok()?;
            c.try_send("GET / HTTP/1.1\r\nHost: echo.demo\r\n\r\n")
                .ok()?;
            if c.read_response().ok()?.status != 200 {
                return None;
            }
        }
        (want.request_count() - before == 10).then_some(())
    })
    .is_some()
}

/// `PUT /workloads/demo/echo-vm?ttl=3s` on a replica's admin port.
fn register(control: &Proxy, spec: &str) -> (u16, String) {
    let r = exchange(
        control.admin,
        &format!(
            "PUT /workloads/demo/echo-vm?ttl=3s HTTP/1.1\r\nHost: c\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{spec}",
            spec.len()
        ),
    );
    (r.status, r.body_str().trim().to_string())
}

fn control(url: &str) -> Proxy {
    Proxy::start_args(&[
        "control",
        "--etcd",
        url,
        "--xds",
        "127.0.0.1:@PORT@",
        "--admin",
        "127.0.0.1:@ADMIN_PORT@",
    ])
}

#[test]
fn two_replicas_on_one_etcd_serve_one_mesh_and_sidecars_survive_one_dying() {
    let (v1, v2) = (Upstream::echo(), Upstream::echo());
    let state = TempDir::new("mesh-etcd");
    let etcd = Etcd::start(state.path());
    let port = free_port();
    etcd.ctl(
        "/outrigger/mesh/demo/echo",
        Some(&mesh(port, v1.addr, v2.addr)),
    );
    etcd.ctl(
        "/outrigger/mesh/demo/client-or",
        Some(&client("client-or", "127.0.0.91", port)),
    );
    etcd.ctl(
        "/outrigger/mesh/demo/client-envoy",
        Some(&client("client-envoy", "127.0.0.92", port)),
    );
    etcd.ctl("/outrigger/mesh/demo/vs", Some(&only("v2")));
    let mut a = control(&etcd.url);
    let b = control(&etcd.url);
    let xds = [a.listen, b.listen];
    let _ours = Proxy::start(&bootstrap_to("client-or.demo", &xds, "GRPC", None));
    let envoy = envoy_or_skip("Envoy sidecar on replicated control planes");
    let _theirs = envoy.as_ref().map(|bin| {
        Envoy::start(
            bin,
            &bootstrap_to("client-envoy.demo", &xds, "DELTA_GRPC", None),
        )
    });
    let mut sidecars = vec![("outrigger", SocketAddr::from(([127, 0, 0, 91], port)))];
    if envoy.is_some() {
        sidecars.push(("envoy", SocketAddr::from(([127, 0, 0, 92], port))));
    }
    for (who, at) in &sidecars {
        assert!(
            settles_on(*at, &v2),
            "{who}: not on v2 from etcd:\n{}",
            a.stderr()
        );
    }
    // Both replicas serve the same view.
    for node in ["client-or.demo", "client-envoy.demo"] {
        let path = format!("/config_dump?node={node}");
        assert_eq!(admin_json(&a, &path), admin_json(&b, &path), "{node}");
    }
    // A change written to etcd reaches the sidecars, whichever replica they use.
    etcd.ctl("/outrigger/mesh/demo/vs", Some(&only("v1")));
    for (who, at) in &sidecars {
        assert!(settles_on(*at, &v1), "{who}: did not follow etcd to v1");
    }
    // A bad value is refused by both, with its key; the sidecars keep the last mesh.
    etcd.ctl("/outrigger/mesh/demo/bad", Some("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad, namespace: demo}\nspec: {hosts: [x], http: [{timeout: soon}]}\n"));
    for c in [&a, &b] {
        let refused = wait_until(Duration::from_secs(10), || {
            let e = admin_json(c, "/proxies")["errors"].clone();
            e.as_array()?
                .iter()
                .any(|m| {
                    m.as_str()
                        .is_some_and(|m| m.starts_with("/outrigger/mesh/demo/bad"))
                })
                .then_some(())
        });
        assert!(refused.is_some(), "the bad key was not refused by its name");
    }
    etcd.ctl("/outrigger/mesh/demo/bad", None);

    // A workload registered on A is in etcd under a lease: B serves it too, B's
    // heartbeats keep it, and etcd expires it when they stop.
    let vm = Upstream::echo();
    let spec = format!(
        r#"{{"address": "127.0.0.1", "ports": {{"http": {}}}, "labels": {{"app": "echo", "version": "v1"}}}}"#,
        vm.addr.port()
    );
    assert_eq!(register(&a, &spec).0, 201);
    let served = wait_until(Duration::from_secs(10), || {
        let before = vm.request_count();
        for _ in 0..20 {
            let mut c = Conn::try_connect(sidecars[0].1).ok()?;
            c.try_send("GET / HTTP/1.1\r\nHost: echo.demo\r\n\r\n")
                .ok()?;
            c.read_response().ok()?;
        }
        (vm.request_count() > before).then_some(())
    });
    assert!(
        served.is_some(),
        "the workload registered on A is not served:\n{}",
        a.stderr()
    );
    for _ in 0..5 {
        // 5 beats a second apart on B: longer than the 3 s TTL.
        assert_eq!(register(&b, &spec), (200, "renewed".to_string()));
        std::thread::sleep(Duration::from_secs(1));
    }
    for c in [&a, &b] {
        let listed = admin_json(c, "/workloads")["workloads"].clone();
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    }
    let expired = wait_until(Duration::from_secs(10), || {
        [&a, &b]
            .iter()
            .all(|c| {
                admin_json(c, "/workloads")["workloads"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
            })
            .then_some(())
    });
    assert!(
        expired.is_some(),
        "the registration did not expire with its lease"
    );

    // Replica A dies; the sidecars carry on with B and follow the next change.
    a.terminate(Duration::from_secs(5));
    for (who, at) in &sidecars {
        assert!(
            settles_on(*at, &v1),
            "{who}: stopped serving when a replica died"
        );
    }
    etcd.ctl("/outrigger/mesh/demo/vs", Some(&only("v2")));
    for (who, at) in &sidecars {
        assert!(
            settles_on(*at, &v2),
            "{who}: did not follow the change through replica B:\n{}",
            b.stderr()
        );
    }
    // B's view routes to v2; A is gone.
    let dump = admin_json(&b, "/config_dump?node=client-or.demo");
    let routes = dump["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"].to_string();
    assert!(
        routes.contains(&format!("outbound|{port}|v2|echo.demo")),
        "{routes}"
    );
    assert!(
        !routes.contains(&format!("outbound|{port}|v1|echo.demo")),
        "{routes}"
    );
    assert!(!a.is_running());
    let on_b = admin_json(&b, "/proxies");
    let mut nodes = vec!["client-or.demo"];
    if envoy.is_some() {
        nodes.push("client-envoy.demo");
    }
    for node in nodes {
        assert!(
            on_b["proxies"][node]["streams"].as_u64() >= Some(1),
            "{node} not on B: {on_b}"
        );
    }
}
