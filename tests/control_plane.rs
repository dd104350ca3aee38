//! `outrigger control` (issue 15): Istio resources in a directory, served over ADS to
//! Outrigger and Envoy 1.40 sidecars, state of the world and delta. Each sidecar is a
//! workload with a Sidecar resource binding its outbound listener on loopback; the
//! test sends real requests through each and checks where they land as the directory
//! changes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::{envoy_or_skip, Envoy};
use common::mesh::{admin_json, bootstrap, start_control};
use common::*;

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
    let control = start_control(&dir);

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

/// Route and cluster policies of one VirtualService and DestinationRule.
const POLICIES: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: demo}
spec:
  host: echo.demo
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 5}
      http: {http1MaxPendingRequests: 7, http2MaxRequests: 9, maxRetries: 3}
    outlierDetection: {consecutive5xxErrors: 4, interval: 2s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {connectionPool: {tcp: {maxConnections: 11}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: demo}
spec:
  hosts: [echo.demo]
  http:
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: echo.demo, subset: v1}}]
  - match: [{uri: {prefix: /rewrite}}]
    rewrite: {uri: /rewritten, authority: rewritten.demo}
    route: [{destination: {host: echo.demo, subset: v1}}]
  - match: [{uri: {exact: /redirect}}]
    redirect: {uri: /elsewhere, redirectCode: 302}
  - match: [{uri: {prefix: /mirror}}]
    route: [{destination: {host: echo.demo, subset: v1}}]
    mirror: {host: echo.demo, subset: v2}
  - match: [{headers: {x-canary: {exact: 'yes'}}}]
    route: [{destination: {host: echo.demo, subset: v2}}]
    headers:
      request: {set: {x-mesh: canary}}
      response: {set: {x-served-by: v2}}
  - route: [{destination: {host: echo.demo, subset: v1}}]
    corsPolicy:
      allowOrigins: [{exact: 'http://a.test'}]
      allowMethods: [GET, POST]
      maxAge: 1h
";

fn request(at: SocketAddr, raw: &str) -> Response {
    let mut c = Conn::connect(at);
    c.send(raw);
    c.read_response().unwrap()
}

/// The circuit breaker and outlier lines of `/clusters` for the service's clusters.
fn cluster_policy_lines(admin: SocketAddr) -> Vec<String> {
    let r = http_request(admin, "GET", "/clusters", Duration::from_secs(5)).unwrap();
    let mut lines: Vec<String> = r
        .body_str()
        .lines()
        .filter(|l| l.starts_with("outbound|"))
        .filter(|l| l.contains("::default_priority::") || l.contains("::outlier::"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn route_and_cluster_policies_act_alike_on_outrigger_and_envoy_sidecars() {
    let v1 = Upstream::echo();
    let v2 = Upstream::echo();
    let dir = TempDir::new("mesh-policy");
    let envoy = envoy_or_skip("control plane policies with an Envoy sidecar");
    let port = free_port();
    let or_at = SocketAddr::from(([127, 0, 0, 21], port));
    let envoy_at = SocketAddr::from(([127, 0, 0, 22], port));
    write_atomic(&dir.join("service.yaml"), &service(port, v1.addr, v2.addr));
    write_atomic(&dir.join("or.yaml"), &client("or", "127.0.0.21", port));
    write_atomic(
        &dir.join("envoy.yaml"),
        &client("envoy", "127.0.0.22", port),
    );
    write_atomic(&dir.join("policies.yaml"), POLICIES);
    let control = start_control(&dir);
    let ours = Proxy::start(&bootstrap("or.demo", control.listen, "GRPC"));
    let theirs = envoy
        .as_ref()
        .map(|bin| Envoy::start(bin, &bootstrap("envoy.demo", control.listen, "GRPC")));
    let mut sidecars = vec![("outrigger", or_at, ours.admin)];
    if let Some(e) = &theirs {
        sidecars.push(("envoy", envoy_at, e.admin));
    }
    for (who, at, _) in &sidecars {
        let get = |path: &str, extra: &str| {
            request(
                *at,
                &format!("GET {path} HTTP/1.1\r\nHost: echo.demo\r\n{extra}\r\n"),
            )
        };
        let ready = wait_until(Duration::from_secs(10), || {
            let mut c = Conn::try_connect(*at).ok()?;
            c.try_send("GET /x HTTP/1.1\r\nHost: echo.demo\r\n\r\n")
                .ok()?;
            (c.read_response().ok()?.status == 200).then_some(())
        });
        assert!(ready.is_some(), "{who}: no route:\n{}", control.stderr());

        let before = v1.request_count();
        assert_eq!(get("/abort", "").status, 418, "{who}: fault abort");
        assert_eq!(
            v1.request_count(),
            before,
            "{who}: an aborted request went upstream"
        );

        assert_eq!(get("/rewrite/x", "").status, 200, "{who}");
        let up = v1.last_request();
        assert_eq!(up.target, "/rewritten/x", "{who}: rewrite");
        assert_eq!(
            up.header("host"),
            Some("rewritten.demo"),
            "{who}: authority rewrite"
        );

        let r = get("/redirect", "");
        assert_eq!(r.status, 302, "{who}: redirect");
        assert_eq!(
            r.header("location"),
            Some("http://echo.demo/elsewhere"),
            "{who}"
        );

        let mirrored = v2.request_count();
        assert_eq!(get("/mirror/m", "").status, 200, "{who}");
        assert_eq!(v1.last_request().target, "/mirror/m", "{who}");
        let copy = wait_until(Duration::from_secs(5), || {
            (v2.request_count() > mirrored).then(|| v2.last_request())
        })
        .unwrap_or_else(|| panic!("{who}: no mirrored copy reached v2"));
        assert_eq!(copy.target, "/mirror/m", "{who}");

        let r = get("/c", "x-canary: yes\r\n");
        assert_eq!(r.status, 200, "{who}");
        assert_eq!(
            r.header("x-served-by"),
            Some("v2"),
            "{who}: response header set"
        );
        assert_eq!(v2.last_request().header("x-mesh"), Some("canary"), "{who}");

        let r = request(
            *at,
            "OPTIONS /any HTTP/1.1\r\nHost: echo.demo\r\nOrigin: http://a.test\r\nAccess-Control-Request-Method: POST\r\n\r\n",
        );
        assert_eq!(r.status, 200, "{who}: CORS preflight");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://a.test"),
            "{who}"
        );
        assert_eq!(
            r.header("access-control-allow-methods"),
            Some("GET,POST"),
            "{who}"
        );
        assert_eq!(r.header("access-control-max-age"), Some("3600"), "{who}");
    }

    // The DestinationRule's circuit breakers and outlier detection, as each prints them.
    let ours_lines = cluster_policy_lines(ours.admin);
    let v1_cx = format!("outbound|{port}|v1|echo.demo::default_priority::max_connections::5");
    let v2_cx = format!("outbound|{port}|v2|echo.demo::default_priority::max_connections::11");
    let v1_rq = format!("outbound|{port}|v1|echo.demo::default_priority::max_pending_requests::7");
    for want in [&v1_cx, &v2_cx, &v1_rq] {
        assert!(ours_lines.contains(want), "{want} not in {ours_lines:#?}");
    }
    if let Some(e) = &theirs {
        assert_eq!(
            cluster_policy_lines(e.admin),
            ours_lines,
            "Envoy's /clusters differs"
        );
    }
}

/// config/mesh/demo, the example the README names: the control plane, three workloads
/// each with a sidecar (one Envoy when it is installed), and the canary steps; it exits
/// non-zero when a step's counts are wrong.
#[test]
fn the_mesh_demo_runs_its_steps() {
    let out = std::process::Command::new("config/mesh/demo")
        .env("OUTRIGGER", BIN)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run config/mesh/demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2. canary.yaml applied"), "{stdout}");
    assert!(stdout.contains("reviews v2      200 of 200"), "{stdout}");
}

/// The control plane goes away and comes back on the same address: the sidecars keep
/// serving their last config meanwhile, reconnect, and follow the next change.
#[test]
fn sidecars_keep_serving_while_the_control_plane_restarts() {
    let v1 = Upstream::echo();
    let v2 = Upstream::echo();
    let dir = TempDir::new("mesh-restart");
    let envoy = envoy_or_skip("control plane restart with an Envoy sidecar");
    let port = free_port();
    let xds = free_port();
    let or_at = SocketAddr::from(([127, 0, 0, 41], port));
    let envoy_at = SocketAddr::from(([127, 0, 0, 42], port));
    write_atomic(&dir.join("service.yaml"), &service(port, v1.addr, v2.addr));
    write_atomic(&dir.join("or.yaml"), &client("or", "127.0.0.41", port));
    write_atomic(
        &dir.join("envoy.yaml"),
        &client("envoy", "127.0.0.42", port),
    );
    let d = dir.path().display().to_string();
    let xds_arg = format!("127.0.0.1:{xds}");
    let args = [
        "control",
        "--dir",
        &d,
        "--xds",
        &xds_arg,
        "--admin",
        "127.0.0.1:@ADMIN_PORT@",
    ];
    let control = Proxy::start_args(&args);
    let xds_addr = SocketAddr::from(([127, 0, 0, 1], xds));
    let _ours = Proxy::start(&bootstrap("or.demo", xds_addr, "GRPC"));
    let _theirs = envoy
        .as_ref()
        .map(|bin| Envoy::start(bin, &bootstrap("envoy.demo", xds_addr, "DELTA_GRPC")));
    let mut sidecars = vec![("outrigger", or_at)];
    if envoy.is_some() {
        sidecars.push(("envoy", envoy_at));
    }
    for (who, at) in &sidecars {
        let up = wait_until(Duration::from_secs(10), || spread(*at, "/x", 10, &v1, &v2));
        assert!(up.is_some(), "{who}: no route");
    }

    drop(control);
    for (who, at) in &sidecars {
        let (a, b) = spread(*at, "/x", 20, &v1, &v2)
            .unwrap_or_else(|| panic!("{who}: stopped serving without its control plane"));
        assert_eq!(a + b, 20, "{who}");
    }
    write_atomic(&dir.join("canary.yaml"), CANARY);
    let _control = Proxy::start_args(&args);
    for (who, at) in &sidecars {
        let moved = wait_until(Duration::from_secs(40), || {
            (spread(*at, "/v2/x", 10, &v1, &v2)? == (0, 10)).then_some(())
        });
        assert!(
            moved.is_some(),
            "{who}: did not follow the restarted control plane"
        );
    }
}

/// A workload whose Sidecar takes inbound HTTP on `bind:port` to the application at `app`.
fn server(name: &str, bind: &str, port: u16, app: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: demo}}
spec: {{address: {bind}, labels: {{app: web, who: {name}}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: demo}}
spec:
  workloadSelector: {{labels: {{who: {name}}}}}
  ingress:
  - port: {{number: {port}, protocol: HTTP, name: http}}
    bind: {bind}
    captureMode: NONE
    defaultEndpoint: '{app}'
"
    )
}

const AUTHZ: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: demo}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{to: [{operation: {paths: ['/admin*']}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: readers, namespace: demo}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {ipBlocks: [127.0.0.0/8]}}]
    to: [{operation: {methods: [GET, HEAD]}}]
    when: [{key: 'request.headers[x-user]', values: [alice, 'bob*']}]
";

#[test]
fn authorization_policies_allow_and_deny_alike_on_outrigger_and_envoy_sidecars() {
    let app = Upstream::echo();
    let dir = TempDir::new("mesh-authz");
    let envoy = envoy_or_skip("AuthorizationPolicy with an Envoy sidecar");
    let port = free_port();
    write_atomic(
        &dir.join("or.yaml"),
        &server("web-or", "127.0.0.51", port, app.addr),
    );
    write_atomic(
        &dir.join("envoy.yaml"),
        &server("web-envoy", "127.0.0.52", port, app.addr),
    );
    write_atomic(&dir.join("authz.yaml"), AUTHZ);
    let control = start_control(&dir);
    let _ours = Proxy::start(&bootstrap("web-or.demo", control.listen, "GRPC"));
    let _theirs = envoy
        .as_ref()
        .map(|bin| Envoy::start(bin, &bootstrap("web-envoy.demo", control.listen, "GRPC")));
    let mut sidecars = vec![("outrigger", SocketAddr::from(([127, 0, 0, 51], port)))];
    if envoy.is_some() {
        sidecars.push(("envoy", SocketAddr::from(([127, 0, 0, 52], port))));
    }
    let status = |at: SocketAddr, method: &str, path: &str, user: Option<&str>| {
        let mut c = Conn::try_connect(at).ok()?;
        let user = user.map_or(String::new(), |u| format!("x-user: {u}\r\n"));
        c.try_send(format!(
            "{method} {path} HTTP/1.1\r\nHost: web.demo\r\ncontent-length: 0\r\n{user}\r\n"
        ))
        .ok()?;
        c.read_response().ok().map(|r| r.status)
    };
    for (who, at) in &sidecars {
        let up = wait_until(Duration::from_secs(10), || {
            (status(*at, "GET", "/", Some("alice"))? == 200).then_some(())
        });
        assert!(up.is_some(), "{who}: not serving:\n{}", control.stderr());
        let seen: Vec<(&str, &str, Option<&str>, Option<u16>)> = [
            ("GET", "/", Some("alice")),
            ("GET", "/", Some("bobby")),
            ("GET", "/", None),
            ("GET", "/", Some("mallory")),
            ("POST", "/", Some("alice")),
            ("GET", "/admin/x", Some("alice")),
        ]
        .into_iter()
        .map(|(m, p, u)| (m, p, u, status(*at, m, p, u)))
        .collect();
        let want = [200, 200, 403, 403, 403, 403];
        for ((m, p, u, got), want) in seen.iter().zip(want) {
            assert_eq!(*got, Some(want), "{who}: {m} {p} x-user {u:?}");
        }
    }
    // Without the policies everything is allowed again.
    std::fs::remove_file(dir.join("authz.yaml")).unwrap();
    for (who, at) in &sidecars {
        let open = wait_until(Duration::from_secs(10), || {
            (status(*at, "GET", "/admin/x", None)? == 200).then_some(())
        });
        assert!(
            open.is_some(),
            "{who}: the policies stayed after their file went"
        );
    }
}

/// A DestinationRule's consistent hash: each key's requests stay on one endpoint, the
/// keys spread over both, and a cookie with a `ttl` is generated for a request without
/// it; alike on an Outrigger and an Envoy sidecar.
#[test]
fn consistent_hashing_pins_each_key_to_one_endpoint_alike_on_outrigger_and_envoy() {
    let v1 = Upstream::echo();
    let v2 = Upstream::echo();
    let dir = TempDir::new("mesh-hash");
    let envoy = envoy_or_skip("consistent hashing with an Envoy sidecar");
    let port = free_port();
    write_atomic(&dir.join("service.yaml"), &service(port, v1.addr, v2.addr));
    write_atomic(&dir.join("or.yaml"), &client("or", "127.0.0.23", port));
    write_atomic(
        &dir.join("envoy.yaml"),
        &client("envoy", "127.0.0.24", port),
    );
    let rule = |lb: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: demo}}
spec:
  host: echo.demo
  trafficPolicy: {{loadBalancer: {{consistentHash: {lb}}}}}
"
        )
    };
    write_atomic(
        &dir.join("rule.yaml"),
        &rule("{httpHeaderName: x-user, ringHash: {minimumRingSize: 2048}}"),
    );
    let control = start_control(&dir);
    let _ours = Proxy::start(&bootstrap("or.demo", control.listen, "GRPC"));
    let theirs = envoy
        .as_ref()
        .map(|bin| Envoy::start(bin, &bootstrap("envoy.demo", control.listen, "GRPC")));
    let mut sidecars = vec![("outrigger", SocketAddr::from(([127, 0, 0, 23], port)))];
    if theirs.is_some() {
        sidecars.push(("envoy", SocketAddr::from(([127, 0, 0, 24], port))));
    }
    // Which endpoint each request reached: 1 or 2.
    let landed = |at: SocketAddr, extra: &str| -> Option<(u8, Response)> {
        let (a, b) = (v1.request_count(), v2.request_count());
        let mut c = Conn::try_connect(at).ok()?;
        c.try_send(format!("GET / HTTP/1.1\r\nHost: echo.demo\r\n{extra}\r\n"))
            .ok()?;
        let r = c.read_response().ok()?;
        match (v1.request_count() - a, v2.request_count() - b) {
            (1, 0) => Some((1, r)),
            (0, 1) => Some((2, r)),
            _ => None,
        }
    };
    for (who, at) in &sidecars {
        let up = wait_until(Duration::from_secs(10), || landed(*at, ""));
        assert!(up.is_some(), "{who}: no route:\n{}", control.stderr());
        let mut seen = [false, false];
        for k in 0..16 {
            let key = format!("x-user: user-{k}\r\n");
            let first = landed(*at, &key).map(|(e, _)| e);
            for _ in 0..4 {
                assert_eq!(landed(*at, &key).map(|(e, _)| e), first, "{who}: user-{k}");
            }
            if let Some(e) = first {
                seen[usize::from(e - 1)] = true;
            }
        }
        assert_eq!(
            seen,
            [true, true],
            "{who}: the keys all went to one endpoint"
        );
    }
    // A cookie: generated with its ttl and path for a request without one.
    write_atomic(
        &dir.join("rule.yaml"),
        &rule("{httpCookie: {name: sticky, path: /, ttl: 60s}, maglev: {tableSize: 65537}}"),
    );
    for (who, at) in &sidecars {
        let cookie = wait_until(Duration::from_secs(10), || {
            let (_, r) = landed(*at, "")?;
            r.header("set-cookie").map(str::to_string)
        });
        let cookie = cookie.unwrap_or_else(|| panic!("{who}: no cookie:\n{}", control.stderr()));
        assert!(
            cookie.starts_with("sticky=\"") && cookie.contains("Max-Age=60; Path=/; HttpOnly"),
            "{who}: {cookie}"
        );
        // The cookie sent back pins the endpoint.
        let value = cookie.split(';').next().unwrap().to_string();
        let pinned = landed(*at, &format!("cookie: {value}\r\n")).map(|(e, _)| e);
        for _ in 0..4 {
            assert_eq!(
                landed(*at, &format!("cookie: {value}\r\n")).map(|(e, _)| e),
                pinned,
                "{who}"
            );
        }
    }
    drop(theirs);
}
