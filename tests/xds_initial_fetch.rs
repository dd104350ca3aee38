//! Initial fetch timeouts through the real binary and beside Envoy 1.40: each xDS
//! subscription waits for its first response for its own `initial_fetch_timeout` (CDS
//! and LDS from the bootstrap, EDS from the cluster's `eds_config`, RDS from the
//! connection manager's `rds.config_source`), and when it passes, what depends on it
//! goes on: a server that never answers CDS still gets an LDS request and the
//! listeners serve; a cluster whose endpoints never come serves `503` (no endpoints);
//! a listener whose route configuration never comes serves `404`; `/ready` turns 200.
//! The same bootstraps and management server run under Envoy when it is installed.

mod common;
#[allow(dead_code)]
mod xds_server;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::*;
use common::*;
use serde_json::json;
use xds_server::resources::*;
use xds_server::*;

const T: Duration = Duration::from_secs(20);
const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `bootstrap` with the CDS and LDS initial fetch timeouts given.
fn boot(mgmt: &Mgmt, delta: bool, cds: &str, lds: &str) -> String {
    bootstrap(mgmt.addr, if delta { "DELTA_GRPC" } else { "GRPC" })
        .replace(
            "lds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 2s}",
            &format!(
                "lds_config: {{ads: {{}}, resource_api_version: V3, initial_fetch_timeout: {lds}}}"
            ),
        )
        .replace(
            "cds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 2s}",
            &format!(
                "cds_config: {{ads: {{}}, resource_api_version: V3, initial_fetch_timeout: {cds}}}"
            ),
        )
}

fn router() -> serde_json::Value {
    json!([{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}])
}

/// A listener answering every request `200 direct` from an inline route table.
fn direct_listener(name: &str, port: u16) -> Vec<u8> {
    encode(
        LISTENER,
        json!({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM,
                    "stat_prefix": name,
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "direct"}}}
                    ]}]},
                    "http_filters": router()
                }
            }]}]
        }),
    )
}

/// A listener taking route configuration `rds` with the RDS initial fetch timeout `t`.
fn rds_listener(name: &str, port: u16, rds: &str, t: &str) -> Vec<u8> {
    encode(
        LISTENER,
        json!({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM,
                    "stat_prefix": name,
                    "rds": {"config_source": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": t}, "route_config_name": rds},
                    "http_filters": router()
                }
            }]}]
        }),
    )
}

/// An EDS cluster whose endpoints' initial fetch times out after `t`.
fn eds_cluster_timeout(name: &str, t: &str) -> Vec<u8> {
    encode(
        CLUSTER,
        json!({
            "name": name,
            "type": "EDS",
            "connect_timeout": "1s",
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": t}}
        }),
    )
}

/// `status body` of a GET on a new connection, `None` if it cannot connect.
fn answer(port: u16) -> Option<String> {
    let mut c = Conn::try_connect(addr(port)).ok()?;
    c.set_timeout(Duration::from_secs(5));
    c.try_send("GET / HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
    let r = c.read_response().ok()?;
    Some(format!("{} {}", r.status, r.body_str()))
}

fn ready(admin: SocketAddr) -> u16 {
    http_request(admin, "GET", "/ready", Duration::from_secs(5)).map_or(0, |r| r.status)
}

#[derive(Debug, PartialEq)]
struct Seen {
    answers: Vec<String>,
    lds_requested: bool,
    ready: u16,
}

/// A server that never answers CDS; LDS (answered) has a listener with a direct
/// response. CDS's initial fetch times out after 1 s, and LDS must follow.
fn no_cds<P>(start: impl Fn(&str) -> (P, SocketAddr), delta: bool) -> Seen {
    let mgmt = Mgmt::start();
    mgmt.silence(CLUSTER);
    let port = free_port();
    mgmt.set(LISTENER, &[("main", direct_listener("main", port))]);
    let (proxy, admin) = start(&boot(&mgmt, delta, "1s", "30s"));
    let a = wait_until(T, || answer(port).filter(|a| a == "200 direct"));
    let seen = Seen {
        answers: vec![a.unwrap_or_default()],
        lds_requested: mgmt.seen().iter().any(|s| s.type_url == LISTENER),
        ready: ready(admin),
    };
    drop(proxy);
    seen
}

/// CDS and LDS answer (timeouts 30 s), but the endpoints of `c1` (its `eds_config`
/// times out after 1 s) and route configuration `r-missing` (its `rds.config_source`
/// after 1 s) never come: `main` (route `r1` to `c1`) and `late` (`r-missing`) serve.
fn own_timeouts<P>(start: impl Fn(&str) -> (P, SocketAddr), delta: bool) -> Seen {
    let mgmt = Mgmt::start();
    mgmt.silence(ENDPOINT);
    let (p1, p2) = (free_port(), free_port());
    mgmt.set(CLUSTER, &[("c1", eds_cluster_timeout("c1", "1s"))]);
    mgmt.set(ROUTE, &[("r1", route("r1", "c1"))]);
    mgmt.set(
        LISTENER,
        &[
            ("main", rds_listener("main", p1, "r1", "30s")),
            ("late", rds_listener("late", p2, "r-missing", "1s")),
        ],
    );
    let (proxy, admin) = start(&boot(&mgmt, delta, "30s", "30s"));
    let a1 = wait_until(T, || answer(p1));
    let a2 = wait_until(T, || answer(p2));
    let seen = Seen {
        answers: vec![a1.unwrap_or_default(), a2.unwrap_or_default()],
        lds_requested: mgmt.seen().iter().any(|s| s.type_url == LISTENER),
        ready: ready(admin),
    };
    drop(proxy);
    seen
}

fn ours(b: &str) -> (Proxy, SocketAddr) {
    let p = Proxy::start(b);
    let a = p.admin;
    (p, a)
}

#[test]
fn lds_follows_a_cds_that_never_answers() {
    for delta in [false, true] {
        let seen = no_cds(ours, delta);
        assert_eq!(
            seen,
            Seen {
                answers: vec!["200 direct".into()],
                lds_requested: true,
                ready: 200
            },
            "delta: {delta}"
        );
    }
}

#[test]
fn each_subscription_times_out_on_its_own() {
    for delta in [false, true] {
        let seen = own_timeouts(ours, delta);
        assert_eq!(
            seen,
            Seen {
                answers: vec!["503 no healthy upstream".into(), "404 ".into()],
                lds_requested: true,
                ready: 200
            },
            "delta: {delta}"
        );
    }
}

#[test]
fn initial_fetch_timeouts_behave_as_envoy() {
    let Some(bin) = envoy_or_skip("xds_initial_fetch") else {
        return;
    };
    let envoy = |b: &str| {
        let e = Envoy::start(&bin, b);
        let a = e.admin;
        (e, a)
    };
    for delta in [false, true] {
        assert_eq!(no_cds(ours, delta), no_cds(envoy, delta), "delta: {delta}");
        assert_eq!(
            own_timeouts(ours, delta),
            own_timeouts(envoy, delta),
            "delta: {delta}"
        );
    }
}
