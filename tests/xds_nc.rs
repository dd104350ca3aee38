//! A route to a cluster that does not exist (Envoy's `NC`), through the real binary and
//! beside Envoy 1.40: an RDS route naming a cluster CDS never delivered, one with
//! `cluster_not_found_response_code: NOT_FOUND`, a cluster CDS removes while RDS still
//! names it, and a bootstrap whose inline route table sets `validate_clusters: false`.
//! Each answers `503` (or the route's code) with no body, `NC` in `%RESPONSE_FLAGS%` and
//! `cluster_not_found` in `%RESPONSE_CODE_DETAILS%`. The same bootstrap and management
//! server run under Envoy when it is installed, and the answers and log lines compare.
//!
//! Also an LDS listener whose inline route (which validates its clusters) names a CDS
//! cluster still warming (its endpoints not sent yet): Envoy accepts it, since its
//! cluster manager counts warming clusters, and the route answers `NC` until the
//! endpoints arrive; and a TCP proxy listener to such a cluster, whose connections are
//! closed until it warms.

mod common;
#[allow(dead_code)]
mod xds_server;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::envoy::*;
use common::*;
use serde_json::json;
use xds_server::resources::*;
use xds_server::*;

const T: Duration = Duration::from_secs(20);
const FORMAT: &str = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn access_log(path: &Path) -> serde_json::Value {
    json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path.display().to_string(),
            "log_format": {"text_format_source": {"inline_string": FORMAT}}
        }
    }])
}

/// Listener `main` on `port` -> RDS `r1`, logging to `log`.
fn logged_listener(port: u16, log: &Path) -> Vec<u8> {
    encode(
        LISTENER,
        json!({
            "name": "main",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "main",
                    "access_log": access_log(log),
                    "rds": {"config_source": {"ads": {}, "resource_api_version": "V3"}, "route_config_name": "r1"},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                }
            }]}]
        }),
    )
}

/// `/ghost` and `/ghost404` to a cluster that never exists, `/` to `c1`.
fn routes() -> serde_json::Value {
    json!([
        {"match": {"prefix": "/ghost404"}, "route": {"cluster": "ghost", "cluster_not_found_response_code": "NOT_FOUND"}},
        {"match": {"prefix": "/ghost"}, "route": {"cluster": "ghost"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "c1"}}
    ])
}

/// `status body-length` of a GET on a new connection.
fn ask(port: u16, path: &str) -> String {
    let Ok(mut c) = Conn::try_connect(addr(port)) else {
        return "refused".into();
    };
    c.set_timeout(Duration::from_secs(5));
    if c.try_send(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n"))
        .is_err()
    {
        return "reset".into();
    }
    match c.read_response() {
        Ok(r) => format!("{} {}", r.status, r.body.len()),
        Err(_) => "reset".into(),
    }
}

/// The log's lines once it has `n` of them besides `/ 200` ones.
fn lines(log: &Path, n: usize) -> Vec<String> {
    wait_until(T, || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let l: Vec<String> = text.lines().map(str::to_string).collect();
        // Requests answered 200 while the scenario waited for the route do not count:
        // there may be several, and the lines after them are the ones compared.
        let counted = l.iter().filter(|l| !l.starts_with("/ 200")).count();
        (counted >= n).then_some(l)
    })
    .unwrap_or_else(|| panic!("the access log did not get {n} lines"))
}

/// The xDS scenario; returns the answers and the access log's lines.
fn xds_scenario<P>(start: impl Fn(&str) -> P, delta: bool) -> (Vec<String>, Vec<String>) {
    let dir = TempDir::new("xds-nc");
    let log = dir.join("access.log");
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nup".to_string(),
    ));
    let mgmt = Mgmt::start();
    let port = free_port();
    mgmt.set(CLUSTER, &[("c1", eds_cluster("c1"))]);
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[up.addr.port()]))]);
    let rc = json!({"name": "r1", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes()}]});
    mgmt.set(ROUTE, &[("r1", encode(ROUTE, rc))]);
    mgmt.set(LISTENER, &[("main", logged_listener(port, &log))]);
    let api = if delta { "DELTA_GRPC" } else { "GRPC" };
    let proxy = start(&bootstrap(mgmt.addr, api));
    assert!(wait_until(T, || (ask(port, "/") == "200 2").then_some(())).is_some());
    let mut answers = vec![ask(port, "/ghost"), ask(port, "/ghost404")];
    // CDS removes `c1` while RDS still names it.
    mgmt.remove(CLUSTER, "c1");
    let gone = wait_until(T, || Some(ask(port, "/")).filter(|a| a != "200 2"));
    answers.push(gone.unwrap_or_default());
    // The three after the first `/ 200` (`settle` keeps one of those).
    let log_lines = lines(&log, 3);
    drop(proxy);
    (answers, log_lines)
}

const STATIC: &str = r#"
admin: {address: {socket_address: {address: 127.0.0.1, port_value: @ADMIN_PORT@}}}
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: @PORT@}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: @DIR@/access.log
              log_format: {text_format_source: {inline_string: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"}}
          route_config:
            validate_clusters: false
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: /ghost404}, route: {cluster: ghost, cluster_not_found_response_code: NOT_FOUND}}
              - {match: {prefix: /ghost}, route: {cluster: ghost}}
              - match: {prefix: /w}
                route: {weighted_clusters: {clusters: [{name: ghost, weight: 1}]}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#;

fn static_answers(port: u16, dir: &Path) -> (Vec<String>, Vec<String>) {
    let answers = vec![ask(port, "/ghost"), ask(port, "/ghost404"), ask(port, "/w")];
    (answers, lines(&dir.join("access.log"), 3))
}

fn expected_xds() -> (Vec<String>, Vec<String>) {
    (
        vec!["503 0".into(), "404 0".into(), "503 0".into()],
        vec![
            "/ 200 - via_upstream".into(),
            "/ghost 503 NC cluster_not_found".into(),
            "/ghost404 404 NC cluster_not_found".into(),
            "/ 503 NC cluster_not_found".into(),
        ],
    )
}

/// The log lines after the first (how many `/` polls it took to see 200 varies).
fn settle(mut seen: (Vec<String>, Vec<String>)) -> (Vec<String>, Vec<String>) {
    seen.1.retain(|l| !l.starts_with("/ 200"));
    seen.1.insert(0, "/ 200 - via_upstream".into());
    seen.1.truncate(4);
    seen
}

#[test]
fn an_rds_route_to_a_missing_or_removed_cluster_is_nc_sotw() {
    let seen = settle(xds_scenario(Proxy::start, false));
    assert_eq!(seen, expected_xds());
}

#[test]
fn an_rds_route_to_a_missing_or_removed_cluster_is_nc_delta() {
    let seen = settle(xds_scenario(Proxy::start, true));
    assert_eq!(seen, expected_xds());
}

#[test]
fn validate_clusters_false_loads_a_route_to_a_missing_cluster() {
    let p = Proxy::start(STATIC);
    let seen = static_answers(p.listen.port(), p.dir.path());
    assert_eq!(
        seen,
        (
            vec!["503 0".into(), "404 0".into(), "503 0".into()],
            vec![
                "/ghost 503 NC cluster_not_found".into(),
                "/ghost404 404 NC cluster_not_found".into(),
                "/w 503 NC cluster_not_found".into(),
            ]
        )
    );
}

#[test]
fn an_inline_route_table_validates_its_clusters_by_default() {
    let dir = TempDir::new("nc-validate");
    let path = dir.join("b.yaml");
    let text = STATIC
        .replace("            validate_clusters: false\n", "")
        .replace("@ADMIN_PORT@", "0")
        .replace("@PORT@", "0")
        .replace("@DIR@", &dir.path().display().to_string());
    write_atomic(&path, &text);
    let out = run_cli(
        &["validate", "-c", &path.display().to_string()],
        Duration::from_secs(30),
    );
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("no cluster named `ghost`"), "{text}");
    if let Some(bin) = envoy_binary() {
        let (ok, envoy) = envoy_validate(&bin, &path);
        assert!(!ok, "envoy accepted it: {envoy}");
        assert!(envoy.contains("unknown cluster 'ghost'"), "{envoy}");
    }
}

#[test]
fn nc_behaves_as_envoy() {
    let Some(bin) = envoy_or_skip("xds_nc") else {
        return;
    };
    for delta in [false, true] {
        let envoy = settle(xds_scenario(|b| Envoy::start(&bin, b), delta));
        let ours = settle(xds_scenario(Proxy::start, delta));
        assert_eq!(ours, envoy, "delta: {delta}");
    }
    let e = Envoy::start(&bin, STATIC);
    let envoy = static_answers(e.listen.port(), e.dir.path());
    let p = Proxy::start(STATIC);
    let ours = static_answers(p.listen.port(), p.dir.path());
    assert_eq!(ours, envoy);
}

/// Listener `name` on `port` with an inline route table (validating its clusters, the
/// default for an inline one): `/` to `cluster`.
fn inline_listener(name: &str, port: u16, cluster: &str) -> Vec<u8> {
    encode(
        LISTENER,
        json!({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": name,
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": cluster}}
                    ]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                }
            }]}]
        }),
    )
}

/// What a proxy did with a listener whose inline route names a warming cluster.
#[derive(Debug, PartialEq)]
struct Warming {
    /// The first answer on the new listener while the cluster warms.
    while_warming: String,
    listener_nacked: bool,
    /// The listener reaches the upstream once the cluster's endpoints arrive.
    serves_once_warm: bool,
}

/// A TCP proxy listener to `cluster` (Envoy checks no cluster of a TCP proxy).
fn tcp_listener(name: &str, port: u16, cluster: &str) -> Vec<u8> {
    encode(
        LISTENER,
        json!({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": name,
                    "cluster": cluster
                }
            }]}]
        }),
    )
}

type MakeListener = fn(&str, u16, &str) -> Vec<u8>;

fn warming_scenario<P>(start: impl Fn(&str) -> P, delta: bool) -> Warming {
    warming_with(start, delta, inline_listener)
}

/// `warming_scenario` with the new listener made by `make` (an HTTP or a TCP one).
fn warming_with<P>(start: impl Fn(&str) -> P, delta: bool, make: MakeListener) -> Warming {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nup".to_string(),
    ));
    let mgmt = Mgmt::start();
    let (port, port2) = (free_port(), free_port());
    mgmt.set(CLUSTER, &[("c1", eds_cluster("c1"))]);
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[up.addr.port()]))]);
    mgmt.set(LISTENER, &[("main", inline_listener("main", port, "c1"))]);
    let api = if delta { "DELTA_GRPC" } else { "GRPC" };
    let proxy = start(&bootstrap(mgmt.addr, api));
    assert!(wait_until(T, || (ask(port, "/") == "200 2").then_some(())).is_some());
    // A new EDS cluster whose endpoints the server withholds; once the proxy asks for
    // them (it has the cluster), a listener whose inline route names it.
    mgmt.set(CLUSTER, &[("c2", eds_cluster("c2"))]);
    let asked = wait_until(T, || {
        mgmt.seen()
            .iter()
            .any(|s| s.type_url == ENDPOINT && s.names.iter().any(|n| n == "c2"))
            .then_some(())
    });
    assert!(asked.is_some(), "no EDS request for c2");
    mgmt.set(LISTENER, &[("warm", make("warm", port2, "c2"))]);
    let while_warming = wait_until(T, || {
        let nacked = mgmt
            .seen()
            .iter()
            .any(|s| s.type_url == LISTENER && s.error.is_some());
        Some(ask(port2, "/")).filter(|a| a != "refused" || nacked)
    })
    .unwrap_or_default();
    let listener_nacked = mgmt
        .seen()
        .iter()
        .any(|s| s.type_url == LISTENER && s.error.is_some());
    mgmt.set(ENDPOINT, &[("c2", endpoints("c2", &[up.addr.port()]))]);
    let serves_once_warm = wait_until(T, || (ask(port2, "/") == "200 2").then_some(())).is_some();
    drop(proxy);
    Warming {
        while_warming,
        listener_nacked,
        serves_once_warm,
    }
}

fn expected_warming() -> Warming {
    Warming {
        while_warming: "503 0".into(),
        listener_nacked: false,
        serves_once_warm: true,
    }
}

#[test]
fn an_inline_route_to_a_warming_cluster_is_accepted_and_nc_until_warm_sotw() {
    assert_eq!(warming_scenario(Proxy::start, false), expected_warming());
}

#[test]
fn an_inline_route_to_a_warming_cluster_is_accepted_and_nc_until_warm_delta() {
    assert_eq!(warming_scenario(Proxy::start, true), expected_warming());
}

#[test]
fn an_inline_route_to_a_warming_cluster_behaves_as_envoy() {
    let Some(bin) = envoy_or_skip("xds_nc") else {
        return;
    };
    for delta in [false, true] {
        let envoy = warming_scenario(|b| Envoy::start(&bin, b), delta);
        let ours = warming_scenario(Proxy::start, delta);
        assert_eq!(ours, envoy, "delta: {delta}");
    }
}

/// A TCP proxy to a warming cluster is accepted; its connections are closed until the
/// cluster warms (Envoy: "Cluster not found", the connection closed).
#[test]
fn a_tcp_proxy_to_a_warming_cluster_is_accepted_and_closes_until_warm() {
    for delta in [false, true] {
        let want = Warming {
            while_warming: "reset".into(),
            listener_nacked: false,
            serves_once_warm: true,
        };
        assert_eq!(warming_with(Proxy::start, delta, tcp_listener), want);
    }
}

#[test]
fn a_tcp_proxy_to_a_warming_cluster_behaves_as_envoy() {
    let Some(bin) = envoy_or_skip("xds_nc") else {
        return;
    };
    let envoy = warming_with(|b| Envoy::start(&bin, b), false, tcp_listener);
    let ours = warming_with(Proxy::start, false, tcp_listener);
    assert_eq!(ours, envoy);
}

/// What a proxy did when CDS removed the cluster that an accepted listener's inline
/// route names: the answer on that listener afterwards, whether CDS was NACKed, and
/// whether a new listener naming the removed cluster is NACKed (its route is checked).
fn removal_scenario<P>(start: impl Fn(&str) -> P, delta: bool) -> (String, bool, bool) {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nup".to_string(),
    ));
    let mgmt = Mgmt::start();
    let port = free_port();
    mgmt.set(CLUSTER, &[("c1", eds_cluster("c1"))]);
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[up.addr.port()]))]);
    mgmt.set(LISTENER, &[("main", inline_listener("main", port, "c1"))]);
    let api = if delta { "DELTA_GRPC" } else { "GRPC" };
    let proxy = start(&bootstrap(mgmt.addr, api));
    assert!(wait_until(T, || (ask(port, "/") == "200 2").then_some(())).is_some());
    mgmt.remove(CLUSTER, "c1");
    let nacked = || {
        mgmt.seen()
            .iter()
            .any(|s| s.type_url == CLUSTER && s.error.is_some())
    };
    let after = wait_until(T, || {
        Some(ask(port, "/")).filter(|a| a != "200 2" || nacked())
    })
    .unwrap_or_default();
    let cds_nacked = nacked();
    mgmt.set(
        LISTENER,
        &[("late", inline_listener("late", free_port(), "c1"))],
    );
    let lds_nacked = wait_until(T, || {
        mgmt.seen()
            .iter()
            .any(|s| s.type_url == LISTENER && s.error.is_some())
            .then_some(())
    })
    .is_some();
    drop(proxy);
    (after, cds_nacked, lds_nacked)
}

#[test]
fn removing_a_cluster_an_accepted_inline_route_names_is_nc() {
    for delta in [false, true] {
        let seen = removal_scenario(Proxy::start, delta);
        assert_eq!(seen, ("503 0".to_string(), false, true), "delta: {delta}");
    }
}

#[test]
fn removing_a_cluster_an_accepted_inline_route_names_behaves_as_envoy() {
    let Some(bin) = envoy_or_skip("xds_nc") else {
        return;
    };
    for delta in [false, true] {
        let envoy = removal_scenario(|b| Envoy::start(&bin, b), delta);
        let ours = removal_scenario(Proxy::start, delta);
        assert_eq!(ours, envoy, "delta: {delta}");
    }
}

/// An RDS route configuration that sets `validate_clusters: true`, with `extra` routes
/// before the one to `c1`.
fn validating_routes(extra: &[serde_json::Value]) -> Vec<u8> {
    let mut routes = extra.to_vec();
    routes.push(json!({"match": {"prefix": "/"}, "route": {"cluster": "c1"}}));
    encode(
        ROUTE,
        json!({"name": "r1", "validate_clusters": true,
               "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]}),
    )
}

/// What a proxy did when CDS removed the cluster that an accepted RDS route
/// configuration with `validate_clusters: true` names: the answer afterwards, whether
/// CDS was NACKed, and whether a changed version of that route configuration (checked
/// again as it arrives) is NACKed.
fn rds_removal_scenario<P>(start: impl Fn(&str) -> P, delta: bool) -> (String, bool, bool) {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nup".to_string(),
    ));
    let mgmt = Mgmt::start();
    let port = free_port();
    mgmt.set(CLUSTER, &[("c1", eds_cluster("c1"))]);
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[up.addr.port()]))]);
    mgmt.set(ROUTE, &[("r1", validating_routes(&[]))]);
    mgmt.set(LISTENER, &[("main", listener("main", port, "r1"))]);
    let api = if delta { "DELTA_GRPC" } else { "GRPC" };
    let proxy = start(&bootstrap(mgmt.addr, api));
    assert!(wait_until(T, || (ask(port, "/") == "200 2").then_some(())).is_some());
    mgmt.remove(CLUSTER, "c1");
    let nacked = |t: &str| {
        mgmt.seen()
            .iter()
            .any(|s| s.type_url == t && s.error.is_some())
    };
    let after = wait_until(T, || {
        Some(ask(port, "/")).filter(|a| a != "200 2" || nacked(CLUSTER))
    })
    .unwrap_or_default();
    let cds_nacked = nacked(CLUSTER);
    let direct = json!({"match": {"prefix": "/direct"}, "direct_response": {"status": 204}});
    mgmt.set(ROUTE, &[("r1", validating_routes(&[direct]))]);
    let rds_nacked = wait_until(T, || nacked(ROUTE).then_some(())).is_some();
    drop(proxy);
    (after, cds_nacked, rds_nacked)
}

#[test]
fn removing_a_cluster_a_validating_rds_route_names_is_nc() {
    for delta in [false, true] {
        let seen = rds_removal_scenario(Proxy::start, delta);
        assert_eq!(seen, ("503 0".to_string(), false, true), "delta: {delta}");
    }
}

#[test]
fn removing_a_cluster_a_validating_rds_route_names_behaves_as_envoy() {
    let Some(bin) = envoy_or_skip("xds_nc") else {
        return;
    };
    let envoy = rds_removal_scenario(|b| Envoy::start(&bin, b), false);
    let ours = rds_removal_scenario(Proxy::start, false);
    assert_eq!(ours, envoy);
}
