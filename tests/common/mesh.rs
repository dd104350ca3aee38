//! Helpers for the control-plane tests (tests/control_plane.rs, tests/mesh_mtls.rs):
//! `outrigger control` on a directory, and a sidecar bootstrap that Outrigger and Envoy
//! both read.

use std::net::SocketAddr;
use std::time::Duration;

use super::{free_port, http_request, write_atomic, Proxy, TempDir, BIN};

/// A bootstrap that both Outrigger and Envoy read: the node, the admin port and ADS.
pub fn bootstrap(node: &str, xds: SocketAddr, api: &str) -> String {
    bootstrap_with_token(node, xds, api, None)
}

/// [`bootstrap`] whose ADS stream carries `authorization: Bearer TOKEN`.
pub fn bootstrap_with_token(node: &str, xds: SocketAddr, api: &str, token: Option<&str>) -> String {
    bootstrap_to(node, &[xds], api, token)
}

/// [`bootstrap_with_token`] with several control planes: the ADS cluster's endpoints.
pub fn bootstrap_to(node: &str, xds: &[SocketAddr], api: &str, token: Option<&str>) -> String {
    let metadata = token.map_or(String::new(), |t| {
        format!(", initial_metadata: [{{key: authorization, value: 'Bearer {t}'}}]")
    });
    let endpoints: Vec<String> = xds
        .iter()
        .map(|a| {
            format!(
                "{{endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}}}",
                a.ip(),
                a.port()
            )
        })
        .collect();
    let endpoints = endpoints.join(", ");
    format!(
        r#"node: {{id: {node}, cluster: demo}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
dynamic_resources:
  ads_config:
    api_type: {api}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}{metadata}}}]
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
      endpoints: [{{lb_endpoints: [{endpoints}]}}]
"#
    )
}

/// `outrigger control` on `dir` (and `extra` flags): xDS on `control.listen`, admin on
/// `control.admin`.
pub fn start_control_with(dir: &TempDir, extra: &[&str]) -> Proxy {
    let d = dir.path().display().to_string();
    let mut args = vec![
        "control",
        "--dir",
        &d,
        "--xds",
        "127.0.0.1:@PORT@",
        "--admin",
        "127.0.0.1:@ADMIN_PORT@",
    ];
    args.extend_from_slice(extra);
    Proxy::start_args(&args)
}

pub fn start_control(dir: &TempDir) -> Proxy {
    start_control_with(dir, &[])
}

pub fn admin_json(control: &Proxy, path: &str) -> serde_json::Value {
    let r = http_request(control.admin, "GET", path, Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body_str());
    serde_json::from_slice(&r.body).unwrap()
}

/// A sidecar started on `bootstrap` (written to `config`) without waiting for it to be
/// ready: one the control plane refuses, or whose listener cannot bind, never is.
/// Killed on drop (a failing test leaves none behind).
pub fn spawn_sidecar(config: &std::path::Path, bootstrap: &str) -> Spawned {
    write_atomic(
        config,
        &bootstrap.replace("@ADMIN_PORT@", &free_port().to_string()),
    );
    let child = std::process::Command::new(BIN)
        .args([
            "run",
            "-c",
            &config.display().to_string(),
            "--concurrency",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the sidecar");
    Spawned(child)
}

/// A child process killed (and reaped) on drop.
pub struct Spawned(std::process::Child);

impl From<std::process::Child> for Spawned {
    fn from(c: std::process::Child) -> Spawned {
        Spawned(c)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `bootstrap` (from the functions above) with ADS over TLS: the `xds` cluster checks
/// the control plane's certificate against the root in `ca` and for the DNS `name`,
/// as `outrigger run --control ... --control-ca` writes it.
pub fn over_tls(bootstrap: &str, ca: &std::path::Path, name: &str) -> String {
    format!(
        r#"{bootstrap}    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {name}
        common_tls_context:
          alpn_protocols: [h2]
          validation_context:
            trusted_ca: {{filename: {ca}}}
            match_typed_subject_alt_names: [{{san_type: DNS, matcher: {{exact: {name}}}}}]
"#,
        ca = ca.display()
    )
}
