//! Mutual TLS between sidecars with certificates from `outrigger control` (issue 15):
//! each sidecar shows a bootstrap token on its ADS stream (Envoy's
//! `grpc_services[].initial_metadata`), gets its workload certificate and the mesh's
//! trust bundle over SDS, and PeerAuthentication decides what its inbound port takes.
//! Outrigger and Envoy 1.40 sidecars, each as client and as server of the other.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::envoy::{envoy_or_skip, Envoy};
use common::mesh::{admin_json, bootstrap_with_token, over_tls, spawn_sidecar, start_control_with};
use common::*;

const TOKENS: &str = "- {token: web-outrigger-0123456789, namespace: demo, serviceAccount: web}
- {token: web-envoy-0123456789ab, namespace: demo, serviceAccount: web}
- {token: client-outrigger-0123456, namespace: demo, serviceAccount: client}
- {token: client-envoy-0123456789, namespace: demo, serviceAccount: client}
";

/// A server workload `name` (service `NAME.demo`) whose sidecar takes HTTP on
/// `bind:port` to the application at `app`, marked as having a sidecar.
fn server(name: &str, bind: &str, port: u16, app: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: demo}}
spec:
  hosts: [{name}.demo]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{who: {name}}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: demo}}
spec:
  address: {bind}
  serviceAccount: web
  labels: {{app: web, who: {name}, security.istio.io/tlsMode: istio}}
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

/// A client workload whose sidecar binds its outbound HTTP listener on `bind:port`.
fn client(name: &str, bind: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: demo}}
spec: {{address: {bind}, serviceAccount: client, labels: {{app: client, who: {name}}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: demo}}
spec:
  workloadSelector: {{labels: {{who: {name}}}}}
  egress:
  - port: {{number: {port}, protocol: HTTP, name: http}}
    bind: {bind}
    captureMode: NONE
    hosts: [./*]
"
    )
}

fn peer_authentication(mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: demo}}
spec: {{mtls: {{mode: {mode}}}}}
"
    )
}

fn allow_only(service_account: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: callers, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/demo/sa/{service_account}]}}}}]}}]
"
    )
}

/// The status of a GET for `host` sent to `at` on a new connection (`None`: no
/// response).
fn status(at: SocketAddr, host: &str) -> Option<u16> {
    let mut c = Conn::try_connect(at).ok()?;
    c.set_timeout(Duration::from_secs(5));
    c.try_send(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"))
        .ok()?;
    c.read_response().ok().map(|r| r.status)
}

/// The sidecars of one run: control plane, servers and clients (Envoy's when present).
struct Mesh {
    control: Proxy,
    _procs: (Vec<Proxy>, Vec<Envoy>),
    /// (who, outbound listener address).
    clients: Vec<(&'static str, SocketAddr)>,
    /// (service host, the server sidecar's inbound address).
    servers: Vec<(&'static str, SocketAddr)>,
}

fn start_mesh(dir: &TempDir, state: &TempDir, port: u16, app: SocketAddr, extra: &[&str]) -> Mesh {
    let envoy = envoy_or_skip("mTLS between Outrigger and Envoy sidecars");
    write_atomic(
        &dir.join("web-or.yaml"),
        &server("web-or", "127.0.0.61", port, app),
    );
    write_atomic(
        &dir.join("client-or.yaml"),
        &client("client-or", "127.0.0.63", port),
    );
    if envoy.is_some() {
        write_atomic(
            &dir.join("web-envoy.yaml"),
            &server("web-envoy", "127.0.0.62", port, app),
        );
        write_atomic(
            &dir.join("client-envoy.yaml"),
            &client("client-envoy", "127.0.0.64", port),
        );
    }
    write_atomic(&dir.join("mtls.yaml"), &peer_authentication("STRICT"));
    write_atomic(&state.join("tokens.yaml"), TOKENS);
    let tokens = state.join("tokens.yaml").display().to_string();
    let ca = state.join("ca").display().to_string();
    // The clients' ADS streams are over TLS (istiod's 15012), the servers' plaintext
    // (loopback peers get their certificates on either).
    let xds_tls = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let xds_tls_text = xds_tls.to_string();
    let mut args = vec![
        "--tokens",
        tokens.as_str(),
        "--ca-dir",
        ca.as_str(),
        "--xds-tls",
        &xds_tls_text,
    ];
    args.extend_from_slice(extra);
    let control = start_control_with(dir, &args);
    let xds = control.listen;
    let root = state.join("ca").join("root-cert.pem");
    // The client sidecar boots from flags alone (`run --control`), no bootstrap file.
    let token = state.join("client-or.token");
    write_atomic(&token, "client-outrigger-0123456\n");
    let (root_text, token_text) = (root.display().to_string(), token.display().to_string());
    let mut ours = vec![
        Proxy::start(&bootstrap_with_token(
            "web-or.demo",
            xds,
            "GRPC",
            Some("web-outrigger-0123456789"),
        )),
        Proxy::start_args(&[
            "run",
            "--control",
            &xds_tls_text,
            "--control-ca",
            &root_text,
            "--workload",
            "client-or.demo",
            "--token-file",
            &token_text,
            "--admin",
            "127.0.0.1:@ADMIN_PORT@",
            "--concurrency",
            "1",
        ]),
    ];
    let mut theirs = Vec::new();
    let mut clients = vec![("outrigger", SocketAddr::from(([127, 0, 0, 63], port)))];
    let mut servers = vec![("web-or.demo", SocketAddr::from(([127, 0, 0, 61], port)))];
    if let Some(bin) = &envoy {
        theirs.push(Envoy::start(
            bin,
            &bootstrap_with_token(
                "web-envoy.demo",
                xds,
                "DELTA_GRPC",
                Some("web-envoy-0123456789ab"),
            ),
        ));
        theirs.push(Envoy::start(
            bin,
            &over_tls(
                &bootstrap_with_token(
                    "client-envoy.demo",
                    xds_tls,
                    "GRPC",
                    Some("client-envoy-0123456789"),
                ),
                &root,
                "istiod.istio-system.svc",
            ),
        ));
        clients.push(("envoy", SocketAddr::from(([127, 0, 0, 64], port))));
        servers.push(("web-envoy.demo", SocketAddr::from(([127, 0, 0, 62], port))));
    }
    ours.shrink_to_fit();
    Mesh {
        control,
        _procs: (ours, theirs),
        clients,
        servers,
    }
}

impl Mesh {
    /// Waits until every client reaches every server with `want`.
    fn expect_all(&self, want: u16, what: &str) {
        for (who, at) in &self.clients {
            for (host, _) in &self.servers {
                let got = wait_until(Duration::from_secs(15), || {
                    (status(*at, host) == Some(want)).then_some(())
                });
                assert!(
                    got.is_some(),
                    "{what}: {who} client to {host}: not {want} (last {:?}); control plane:\n{}",
                    status(*at, host),
                    self.control.stderr()
                );
            }
        }
    }
}

#[test]
fn outrigger_and_envoy_sidecars_talk_mtls_with_certificates_from_the_control_plane() {
    let app = Upstream::echo();
    let (dir, state) = (TempDir::new("mesh-mtls"), TempDir::new("mesh-mtls-state"));
    let port = free_port();
    let m = start_mesh(&dir, &state, port, app.addr, &[]);

    // Every client reaches every server, over mTLS: the server's sidecar passes the
    // client's SPIFFE ID on to the application.
    m.expect_all(200, "STRICT");
    for (who, at) in &m.clients {
        for (host, _) in &m.servers {
            assert_eq!(status(*at, host), Some(200));
            let xfcc = app
                .last_request()
                .header("x-forwarded-client-cert")
                .map(str::to_string);
            let xfcc =
                xfcc.unwrap_or_else(|| panic!("{who} to {host}: no x-forwarded-client-cert"));
            assert!(
                xfcc.contains("URI=spiffe://cluster.local/ns/demo/sa/client"),
                "{who} to {host}: {xfcc}"
            );
            assert!(
                xfcc.contains("By=spiffe://cluster.local/ns/demo/sa/web"),
                "{who} to {host}: {xfcc}"
            );
        }
    }
    // STRICT: plaintext straight to a server's sidecar is refused.
    for (host, inbound) in &m.servers {
        assert_eq!(
            status(*inbound, host),
            None,
            "{host}: plaintext accepted under STRICT"
        );
    }
    // The control plane knows each proxy's identity and certificate.
    let proxies = admin_json(&m.control, "/proxies");
    for (node, sa) in [("web-or.demo", "web"), ("client-or.demo", "client")] {
        let p = &proxies["proxies"][node];
        assert_eq!(
            p["identity"],
            format!("spiffe://cluster.local/ns/demo/sa/{sa}"),
            "{node}: {p}"
        );
        assert!(p["certificate"]["serial"].is_string(), "{node}: {p}");
        assert!(
            p["nacked"].as_object().unwrap().is_empty(),
            "{node} NACKed: {p}"
        );
    }

    // Auto mTLS with mixed endpoints: a service on the web-or sidecar (STRICT, mTLS
    // only) and on an application without a sidecar. Each client splits the cluster
    // (istiod's transport_socket_matches): every call succeeds and both are reached.
    let plain = Upstream::echo();
    write_atomic(
        &dir.join("mixed.yaml"),
        &format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: mixed, namespace: demo}}
spec:
  hosts: [mixed.demo]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.61, serviceAccount: web, labels: {{security.istio.io/tlsMode: istio}}}}
  - {{address: 127.0.0.1, ports: {{http: {}}}}}
",
            plain.addr.port()
        ),
    );
    for (who, at) in &m.clients {
        let ready = wait_until(Duration::from_secs(15), || {
            (status(*at, "mixed.demo") == Some(200)).then_some(())
        });
        assert!(
            ready.is_some(),
            "{who}: mixed.demo:\n{}",
            m.control.stderr()
        );
        let (a, b) = (app.request_count(), plain.request_count());
        for i in 0..20 {
            assert_eq!(status(*at, "mixed.demo"), Some(200), "{who}: call {i}");
        }
        assert!(
            app.request_count() > a && plain.request_count() > b,
            "{who}: not both endpoints ({} through the sidecar, {} plain)",
            app.request_count() - a,
            plain.request_count() - b
        );
        assert!(!plain.last_request().has_header("x-forwarded-client-cert"));
    }
    std::fs::remove_file(dir.join("mixed.yaml")).unwrap();

    // AuthorizationPolicy principals are the peers' SPIFFE IDs.
    write_atomic(&dir.join("authz.yaml"), &allow_only("nobody"));
    m.expect_all(403, "principals: nobody");
    write_atomic(&dir.join("authz.yaml"), &allow_only("client"));
    m.expect_all(200, "principals: client");

    // PERMISSIVE: plaintext is taken as well, and the sidecars still speak mTLS.
    write_atomic(&dir.join("mtls.yaml"), &peer_authentication("PERMISSIVE"));
    std::fs::remove_file(dir.join("authz.yaml")).unwrap();
    for (host, inbound) in &m.servers {
        let open = wait_until(Duration::from_secs(15), || {
            (status(*inbound, host) == Some(200)).then_some(())
        });
        assert!(open.is_some(), "{host}: plaintext refused under PERMISSIVE");
        assert!(!app.last_request().has_header("x-forwarded-client-cert"));
    }
    for (who, at) in &m.clients {
        assert_eq!(status(*at, "web-or.demo"), Some(200), "{who}");
        let xfcc = app
            .last_request()
            .header("x-forwarded-client-cert")
            .map(str::to_string);
        assert!(
            xfcc.is_some_and(|x| x.contains("sa/client")),
            "{who}: not mTLS under PERMISSIVE"
        );
    }
}

#[test]
fn a_stream_without_a_valid_token_gets_nothing() {
    let (dir, state) = (TempDir::new("mesh-token"), TempDir::new("mesh-token-state"));
    let port = free_port();
    let app = Upstream::echo();
    write_atomic(
        &dir.join("web-or.yaml"),
        &server("web-or", "127.0.0.61", port, app.addr),
    );
    write_atomic(&state.join("tokens.yaml"), TOKENS);
    let tokens = state.join("tokens.yaml").display().to_string();
    let control = start_control_with(&dir, &["--tokens", &tokens]);
    for (i, (token, why)) in [
        (None, "no `authorization: Bearer TOKEN`"),
        (Some("not-a-token-at-all-0000"), "unknown token"),
        // A token for another service account than the WorkloadEntry names.
        (
            Some("client-outrigger-0123456"),
            "the token is for service account client",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        // Spawned, not `Proxy::start`: a sidecar the control plane refuses never
        // gets a config to be ready with.
        let b = bootstrap_with_token("web-or.demo", control.listen, "GRPC", token);
        let child = spawn_sidecar(&state.join(&format!("sidecar-{i}.yaml")), &b);
        let refused = wait_until(Duration::from_secs(10), || {
            control.stderr().contains(why).then_some(())
        });
        drop(child);
        assert!(
            refused.is_some(),
            "{token:?}: not refused with `{why}`:\n{}",
            control.stderr()
        );
    }
    assert!(admin_json(&control, "/proxies")["proxies"]
        .get("web-or.demo")
        .is_none());
}

/// `outrigger run --control` over TLS with `flags`, its stderr in `log`; killed on
/// drop.
fn spawn_run(log: &std::path::Path, flags: &[&str]) -> common::mesh::Spawned {
    let admin = format!("127.0.0.1:{}", free_port());
    let child = std::process::Command::new(BIN)
        .args(["run", "--concurrency", "1", "--admin", &admin])
        .args(flags)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start the sidecar");
    common::mesh::Spawned::from(child)
}

#[test]
fn xds_over_tls_checks_the_control_planes_certificate() {
    let (dir, state) = (TempDir::new("mesh-xtls"), TempDir::new("mesh-xtls-state"));
    let port = free_port();
    let app = Upstream::echo();
    write_atomic(
        &dir.join("client-or.yaml"),
        &client("client-or", "127.0.0.63", port),
    );
    write_atomic(
        &dir.join("web-or.yaml"),
        &server("web-or", "127.0.0.61", port, app.addr),
    );
    write_atomic(&state.join("tokens.yaml"), TOKENS);
    let tokens = state.join("tokens.yaml").display().to_string();
    let ca = state.join("ca").display().to_string();
    let xds_tls = format!("127.0.0.1:{}", free_port());
    let control = start_control_with(
        &dir,
        &[
            "--tokens",
            &tokens,
            "--ca-dir",
            &ca,
            "--xds-tls",
            &xds_tls,
            "--xds-name",
            "control.mesh.test",
        ],
    );
    let token = state.join("client.token");
    write_atomic(&token, "client-outrigger-0123456\n");
    let token = token.display().to_string();
    let root = state.join("ca/root-cert.pem").display().to_string();
    let other = state.join("other-root.pem");
    write_atomic(&other, &new_root("not the mesh").0);
    let other = other.display().to_string();
    let base = [
        "--control",
        xds_tls.as_str(),
        "--workload",
        "client-or.demo",
        "--token-file",
        token.as_str(),
    ];
    // Another root, or the right root and another name: the sidecar does not take the
    // control plane's certificate, and the control plane never sees its stream.
    for (i, extra) in [
        vec![
            "--control-ca",
            other.as_str(),
            "--control-name",
            "control.mesh.test",
        ],
        vec!["--control-ca", root.as_str()],
    ]
    .into_iter()
    .enumerate()
    {
        let log = state.join(&format!("refused-{i}.log"));
        let child = spawn_run(&log, &[&base[..], &extra[..]].concat());
        let refused = wait_until(Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("TLS handshake with").then_some(())
        });
        drop(child);
        assert!(
            refused.is_some(),
            "{extra:?}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    assert!(admin_json(&control, "/proxies")["proxies"]
        .get("client-or.demo")
        .is_none());
    // The mesh root and the control plane's name: the proxy is served, with its
    // certificate, over the encrypted stream.
    let log = state.join("good.log");
    let _good = spawn_run(
        &log,
        &[
            &base[..],
            &["--control-ca", &root, "--control-name", "control.mesh.test"],
        ]
        .concat(),
    );
    let served = wait_until(Duration::from_secs(15), || {
        let p = admin_json(&control, "/proxies");
        p["proxies"]["client-or.demo"]["certificate"]["serial"]
            .is_string()
            .then_some(())
    });
    assert!(
        served.is_some(),
        "{}\ncontrol plane:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        control.stderr()
    );
}

#[test]
fn certificates_rotate_under_load_without_a_failed_request() {
    let app = Upstream::echo();
    let (dir, state) = (
        TempDir::new("mesh-rotate"),
        TempDir::new("mesh-rotate-state"),
    );
    let port = free_port();
    // A new upstream connection, so a new handshake, for every request.
    let fresh = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: fresh, namespace: demo}
spec:
  host: '*.demo'
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 1}}}
";
    write_atomic(&dir.join("fresh.yaml"), fresh);
    let m = start_mesh(&dir, &state, port, app.addr, &["--cert-ttl", "4s"]);
    m.expect_all(200, "before rotation");
    let first = admin_json(&m.control, "/proxies")["proxies"]["client-or.demo"]["certificate"]
        ["serial"]
        .clone();
    let (mut sent, mut failed) = (0, Vec::new());
    let mut client_certs = std::collections::BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        for (who, at) in &m.clients {
            for (host, _) in &m.servers {
                sent += 1;
                match status(*at, host) {
                    Some(200) => {
                        let xfcc = app
                            .last_request()
                            .header("x-forwarded-client-cert")
                            .map(str::to_string);
                        if let Some(hash) = xfcc
                            .as_deref()
                            .and_then(|x| x.split(';').find(|f| f.starts_with("Hash=")))
                        {
                            client_certs.insert(hash.to_string());
                        }
                    }
                    other => failed.push(format!("{who} to {host}: {other:?}")),
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}\n{}",
        failed.len(),
        m.control.stderr()
    );
    let now = admin_json(&m.control, "/proxies")["proxies"]["client-or.demo"]["certificate"]
        ["serial"]
        .clone();
    assert_ne!(
        first, now,
        "the certificate was not renewed in 9 s with a 4 s lifetime"
    );
    // Certificates renewed every 2 s over 9 s: the servers saw several client
    // certificates (two clients, each renewed at least three times).
    assert!(
        client_certs.len() >= 4,
        "client certificates seen: {client_certs:?} ({sent} requests)"
    );
}

/// A new self-signed root: (certificate PEM, key PEM).
fn new_root(name: &str) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Each node's secret version sent.
fn secrets_sent(control: &Proxy) -> std::collections::BTreeMap<String, String> {
    let p = admin_json(control, "/proxies");
    p["proxies"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["streams"].as_u64() > Some(0))
        .map(|(k, v)| {
            (
                k.clone(),
                v["sent"][SECRET].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits until every node was sent secrets other than `before` and ACKed them.
fn wait_secrets_acked(
    control: &Proxy,
    before: &std::collections::BTreeMap<String, String>,
    step: &str,
) {
    let done = wait_until(Duration::from_secs(15), || {
        let p = admin_json(control, "/proxies");
        let all = before.keys().all(|node| {
            let n = &p["proxies"][node];
            let sent = n["sent"][SECRET].as_str().unwrap_or("");
            sent != before[node] && n["acked"][SECRET].as_str() == Some(sent)
        });
        all.then_some(())
    });
    assert!(
        done.is_some(),
        "{step}: not every proxy ACKed new secrets:\n{}",
        admin_json(control, "/proxies")
    );
}

#[test]
fn the_root_rotates_with_an_overlap_bundle_without_a_failed_request() {
    let app = Upstream::echo();
    let (dir, state) = (TempDir::new("mesh-root"), TempDir::new("mesh-root-state"));
    let port = free_port();
    let fresh = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: fresh, namespace: demo}
spec:
  host: '*.demo'
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 1}}}
";
    write_atomic(&dir.join("fresh.yaml"), fresh);
    let m = start_mesh(&dir, &state, port, app.addr, &[]);
    m.expect_all(200, "before the rotation");
    let ca = state.join("ca");
    let old_root = std::fs::read_to_string(ca.join("root-cert.pem")).unwrap();
    let (new_cert, new_key) = new_root("rotated root");

    // Requests through every pair for the whole rotation, each on a new handshake.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (clients, servers, stop) = (m.clients.clone(), m.servers.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut sent, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (who, at) in &clients {
                    for (host, _) in &servers {
                        sent += 1;
                        let s = status(*at, host);
                        if s != Some(200) {
                            failed.push(format!("{who} to {host}: {s:?}"));
                        }
                    }
                }
            }
            (sent, failed)
        })
    };
    // 1. Trust both roots; 2. sign with the new one; 3. trust only the new one.
    let before = secrets_sent(&m.control);
    write_atomic(&ca.join("root-cert.pem"), &format!("{old_root}{new_cert}"));
    wait_secrets_acked(&m.control, &before, "bundle of both roots");
    let before = secrets_sent(&m.control);
    write_atomic(&ca.join("ca-key.pem"), &new_key);
    write_atomic(&ca.join("cert-chain.pem"), &new_cert);
    write_atomic(&ca.join("ca-cert.pem"), &new_cert);
    wait_secrets_acked(&m.control, &before, "signed by the new root");
    let before = secrets_sent(&m.control);
    write_atomic(&ca.join("root-cert.pem"), &new_cert);
    wait_secrets_acked(&m.control, &before, "only the new root");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}\n{}",
        failed.len(),
        m.control.stderr()
    );
    assert!(sent > 20, "only {sent} requests during the rotation");
    // Only the new root is trusted now, and every pair still talks.
    m.expect_all(200, "after the rotation");
}

/// A raw TCP echo server (the application behind a TCP port).
fn tcp_echo() -> SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A TLS ClientHello offering `alpn`, as bytes.
fn client_hello(alpn: &str) -> Vec<u8> {
    let roots = rustls::RootCertStore::empty();
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    let name = rustls::pki_types::ServerName::try_from("app.test").unwrap();
    let mut c = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    c.write_tls(&mut out).unwrap();
    out
}

/// What `at` answers first to `hello` (up to its length), or `None`.
fn first_answer(at: SocketAddr, hello: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(at).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.write_all(hello).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < hello.len() {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Some(got)
}

/// PERMISSIVE, as istiod writes it: the mTLS chain takes only the mesh's ALPN, so an
/// application's own TLS to a TCP port passes through the sidecar untouched (the
/// application here echoes the ClientHello back), while a hello offering `istio`
/// gets the sidecar's TLS; alike on an Outrigger and an Envoy 1.40 sidecar.
#[test]
fn permissive_passes_an_applications_own_tls_through() {
    let envoy = envoy_or_skip("PERMISSIVE ALPN with an Envoy sidecar");
    let (dir, state) = (TempDir::new("mesh-alpn"), TempDir::new("mesh-alpn-state"));
    let port = free_port();
    let app = tcp_echo();
    let tcp_server = |name: &str, bind: &str| {
        server(name, bind, port, app).replace("protocol: HTTP", "protocol: TCP")
    };
    write_atomic(
        &dir.join("web-or.yaml"),
        &tcp_server("web-or", "127.0.0.71"),
    );
    write_atomic(
        &dir.join("web-envoy.yaml"),
        &tcp_server("web-envoy", "127.0.0.72"),
    );
    write_atomic(&state.join("tokens.yaml"), TOKENS);
    let tokens = state.join("tokens.yaml").display().to_string();
    let control = start_control_with(&dir, &["--tokens", &tokens]);
    let _ours = Proxy::start(&bootstrap_with_token(
        "web-or.demo",
        control.listen,
        "GRPC",
        Some("web-outrigger-0123456789"),
    ));
    let mut servers = vec![("outrigger", SocketAddr::from(([127, 0, 0, 71], port)))];
    let _theirs = envoy.as_ref().map(|bin| {
        servers.push(("envoy", SocketAddr::from(([127, 0, 0, 72], port))));
        Envoy::start(
            bin,
            &bootstrap_with_token(
                "web-envoy.demo",
                control.listen,
                "GRPC",
                Some("web-envoy-0123456789ab"),
            ),
        )
    });
    let own = client_hello("h2");
    let mesh = client_hello("istio");
    for (who, at) in &servers {
        // Wait for the inbound listener with its mTLS chain (the certificate came).
        let up = wait_until(Duration::from_secs(15), || {
            let r = first_answer(*at, &mesh)?;
            (!r.is_empty() && r != mesh).then_some(())
        });
        assert!(up.is_some(), "{who}: no mTLS chain:\n{}", control.stderr());
        assert_eq!(
            first_answer(*at, &own).as_deref(),
            Some(own.as_slice()),
            "{who}: the application's TLS did not pass through"
        );
    }
}
