//! `outrigger control` (issue 15): Istio resources in a directory, served over ADS to
//! Outrigger and Envoy 1.40 sidecars, state of the world and delta. Each sidecar is a
//! workload with a Sidecar resource binding its outbound listener on loopback; the
//! test sends real requests through each and checks where they land as the directory
//! changes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

/// A bootstrap that both Outrigger and Envoy read: the node, the admin port and ADS.
fn bootstrap(node: &str, xds: SocketAddr, api: &str) -> String {
    format!(
        r#"node: {{id: {node}, cluster: demo}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
dynamic_resources:
  ads_config:
    api_type: {api}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]
"#,
        xds.port()
    )
}

/// The service and its two versions' workloads.
fn service(port: u16, v1: SocketAddr, v2: SocketAddr) -> String {
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
",
        v1.port(),
        v2.port()
    )
}

/// A client workload whose Sidecar binds its outbound HTTP listener for the service's
/// `port` on `bind` (as in Istio, an egress listener serves the services with its port).
fn client(name: &str, bind: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: demo}}
spec: {{address: 127.0.0.1, labels: {{app: {name}}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: {name}}}}}
  egress:
  - port: {{number: {port}, protocol: HTTP, name: http}}
    bind: {bind}
    captureMode: NONE
    hosts: [./*]
"
    )
}

/// `/v2...` to v2; everything else to v1.
const CANARY: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: demo}
spec:
  host: echo.demo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: demo}
spec:
  hosts: [echo.demo]
  http:
  - match: [{uri: {prefix: /v2}}]
    route: [{destination: {host: echo.demo, subset: v2}}]
  - route: [{destination: {host: echo.demo, subset: v1}, weight: 100}]
";

/// Sends `n` GETs for `path` through the sidecar's outbound listener; returns how many
/// reached v1 and v2 (`None` if one was not a 200).
fn spread(
    addr: SocketAddr,
    path: &str,
    n: usize,
    v1: &Upstream,
    v2: &Upstream,
) -> Option<(usize, usize)> {
    let (a, b) = (v1.request_count(), v2.request_count());
    for _ in 0..n {
        let mut c = Conn::try_connect(addr).ok()?;
        c.try_send(format!("GET {path} HTTP/1.1\r\nHost: echo.demo\r\n\r\n"))
            .ok()?;
        if c.read_response().ok()?.status != 200 {
            return None;
        }
    }
    Some((v1.request_count() - a, v2.request_count() - b))
}

fn admin_json(control: &Proxy, path: &str) -> serde_json::Value {
    let r = http_request(control.admin, "GET", path, Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body_str());
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn outrigger_and_envoy_sidecars_follow_the_mesh_over_sotw_and_delta() {
    let v1 = Upstream::echo();
    let v2 = Upstream::echo();
    let dir = TempDir::new("mesh");
    let envoy = envoy_or_skip("control plane with Envoy sidecars");
    let mut clients = vec![("or-sotw", "GRPC"), ("or-delta", "DELTA_GRPC")];
    if envoy.is_some() {
        clients.extend([("envoy-sotw", "GRPC"), ("envoy-delta", "DELTA_GRPC")]);
    }
    // The service's port; each client's listener for it on a loopback address of its own.
    let port = free_port();
    let listeners: Vec<SocketAddr> = (0..clients.len())
        .map(|i| SocketAddr::from(([127, 0, 0, 11 + i as u8], port)))
        .collect();
    write_atomic(&dir.join("service.yaml"), &service(port, v1.addr, v2.addr));
    for ((name, _), at) in clients.iter().zip(&listeners) {
        write_atomic(
            &dir.join(&format!("{name}.yaml")),
            &client(name, &at.ip().to_string(), port),
        );
    }
    let d = dir.path().display().to_string();
    let control = Proxy::start_args(&[
        "control",
        "--dir",
        &d,
        "--xds",
        "127.0.0.1:@PORT@",
        "--admin",
        "127.0.0.1:@ADMIN_PORT@",
    ]);

    let mut outriggers = Vec::new();
    let mut envoys = Vec::new();
    for (name, api) in &clients {
        let b = bootstrap(&format!("{name}.demo"), control.listen, api);
        match (name.starts_with("envoy"), &envoy) {
            (true, Some(bin)) => envoys.push(Envoy::start(bin, &b)),
            _ => outriggers.push(Proxy::start(&b)),
        }
    }

    // Without a VirtualService both versions serve (least request over two endpoints).
    for ((name, _), at) in clients.iter().zip(&listeners) {
        let (a, b) = wait_until(Duration::from_secs(10), || spread(*at, "/x", 30, &v1, &v2))
            .unwrap_or_else(|| panic!("{name}: no route to echo.demo:\n{}", control.stderr()));
        assert_eq!(a + b, 30, "{name}");
        assert!(a > 0 && b > 0, "{name}: v1 {a}, v2 {b}");
    }

    // The canary: /v2 to v2, the rest to v1, on every sidecar.
    write_atomic(&dir.join("canary.yaml"), CANARY);
    for ((name, _), at) in clients.iter().zip(&listeners) {
        let moved = wait_until(Duration::from_secs(10), || {
            let r = spread(*at, "/x", 10, &v1, &v2)?;
            (r == (10, 0)).then_some(())
        });
        assert!(moved.is_some(), "{name}: the VirtualService did not apply");
        assert_eq!(spread(*at, "/v2/a", 10, &v1, &v2), Some((0, 10)), "{name}");
    }

    // A broken change is refused by file and field; the last good mesh keeps serving.
    let broken = CANARY.replace(
        "- route: [{destination: {host: echo.demo, subset: v1}, weight: 100}]",
        "- route: [{destination: {host: echo.demo, subset: v1}, weight: 100}]\n    timeout: soon",
    );
    write_atomic(&dir.join("canary.yaml"), &broken);
    let refused = wait_until(Duration::from_secs(10), || {
        let s = admin_json(&control, "/proxies");
        let errors = s["errors"].as_array()?.clone();
        (!errors.is_empty()).then_some(errors)
    })
    .expect("the broken VirtualService was not refused");
    let e = refused[0].as_str().unwrap();
    assert!(
        e.contains("canary.yaml (document 2): VirtualService demo/echo: spec.http[1].timeout:"),
        "{e}"
    );
    for ((name, _), at) in clients.iter().zip(&listeners) {
        assert_eq!(spread(*at, "/x", 10, &v1, &v2), Some((10, 0)), "{name}");
    }

    // Deleting the canary brings the default route back; the subset clusters go away.
    std::fs::remove_file(dir.join("canary.yaml")).unwrap();
    for ((name, _), at) in clients.iter().zip(&listeners) {
        let back = wait_until(Duration::from_secs(10), || {
            let (a, b) = spread(*at, "/x", 30, &v1, &v2)?;
            (a > 0 && b > 0).then_some(())
        });
        assert!(
            back.is_some(),
            "{name}: the default route did not come back"
        );
    }
    for o in &outriggers {
        let dump = o.admin_get("/config_dump").body_str();
        assert!(
            !dump.contains(&format!("outbound|{port}|v1|echo.demo")),
            "{dump}"
        );
        assert!(dump.contains(&format!("outbound|{port}||echo.demo")));
    }
    for e in &envoys {
        let r = http_request(e.admin, "GET", "/clusters", Duration::from_secs(5)).unwrap();
        let text = r.body_str();
        assert!(
            !text.contains(&format!("outbound|{port}|v1|echo.demo")),
            "{text}"
        );
        assert!(
            text.contains(&format!("outbound|{port}||echo.demo")),
            "{text}"
        );
    }

    // Every proxy ACKed what it was last sent, and NACKed nothing.
    for (name, _) in &clients {
        let id = format!("{name}.demo");
        let settled = wait_until(Duration::from_secs(10), || {
            let s = admin_json(&control, "/proxies");
            let p = &s["proxies"][&id];
            let sent = p["sent"].as_object()?;
            (sent.len() == 4 && p["acked"] == p["sent"]).then(|| p.clone())
        });
        let p = settled.unwrap_or_else(|| {
            panic!(
                "{id}: not every type ACKed: {}",
                admin_json(&control, "/proxies")
            )
        });
        assert_eq!(p["nacked"], serde_json::json!({}), "{id}");
        assert_eq!(p["streams"], 1, "{id}");
    }
    let dump = admin_json(&control, "/config_dump?node=or-sotw.demo");
    assert!(
        dump["type.googleapis.com/envoy.config.listener.v3.Listener"]
            [listeners[0].to_string().replace(':', "_")]
        .is_object()
    );
}

#[test]
fn check_names_every_bad_file_and_field() {
    let dir = TempDir::new("mesh-check");
    let good = service(
        9080,
        SocketAddr::from(([127, 0, 0, 1], 1)),
        SocketAddr::from(([127, 0, 0, 1], 2)),
    );
    write_atomic(&dir.join("a.yaml"), &good);
    let d = dir.path().display().to_string();
    let out = run_cli(
        &["control", "--dir", &d, "--check"],
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok (1 ServiceEntries, 2 WorkloadEntries")
    );

    write_atomic(
        &dir.join("b.yaml"),
        &good
            .replace("protocol: HTTP", "protocol: SMTP")
            .replace("name: echo,", "name: other,"),
    );
    write_atomic(
        &dir.join("c.yaml"),
        &client("c", "127.0.0.1", 9080).replace("captureMode", "captureMod"),
    );
    let out = run_cli(
        &["control", "--dir", &d, "--check"],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "b.yaml (document 1): ServiceEntry demo/other: spec.ports[0].protocol: protocol `SMTP`"
        ),
        "{err}"
    );
    assert!(err.contains("c.yaml (document 2): Sidecar demo/c: spec.egress[0].captureMod: unknown field `captureMod`"), "{err}");
}
