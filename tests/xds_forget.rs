//! RDS and EDS resources that nothing watches any more are dropped, as Envoy drops
//! them: when the last listener naming a route configuration goes, the route
//! configuration goes (from `/config_dump` too), and a removed cluster takes its
//! endpoint assignment with it. Through the real binary, state of the world and delta,
//! and beside Envoy 1.40 (run with `--drain-time-s 0`, so that its removed listener is
//! gone at once rather than after ten minutes of draining).

mod common;
#[allow(dead_code)]
mod xds_server;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::*;
use common::*;
use serde_json::Value;
use xds_server::resources::*;
use xds_server::*;

const T: Duration = Duration::from_secs(20);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn upstream(body: &str) -> Upstream {
    Upstream::start(fixed(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )))
}

/// The body of a GET / on a new connection (`None`: no answer).
fn answer(port: u16) -> Option<String> {
    let mut c = Conn::try_connect(addr(port)).ok()?;
    c.set_timeout(Duration::from_secs(5));
    c.try_send("GET / HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
    Some(c.read_response().ok()?.body_str())
}

/// The route configurations and endpoint assignments in `/config_dump?include_eds`
/// (Outrigger's `{"version", "config"}` wrapper or Envoy's bare `ConfigDump`), by name.
fn held(admin: SocketAddr) -> (Vec<String>, Vec<String>) {
    let Ok(r) = http_request(
        admin,
        "GET",
        "/config_dump?include_eds",
        Duration::from_secs(5),
    ) else {
        return (Vec::new(), Vec::new());
    };
    let v: Value = serde_json::from_str(&r.body_str()).unwrap_or(Value::Null);
    let configs = v.get("config").unwrap_or(&v).get("configs").cloned();
    let (mut routes, mut endpoints) = (Vec::new(), Vec::new());
    for c in configs
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let names = |list: &str, field: &str, key: &str| -> Vec<String> {
            c.get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.get(field)?.get(key)?.as_str().map(str::to_string))
                .collect()
        };
        routes.extend(names("dynamic_route_configs", "route_config", "name"));
        endpoints.extend(names(
            "dynamic_endpoint_configs",
            "endpoint_config",
            "cluster_name",
        ));
    }
    routes.sort();
    endpoints.sort();
    (routes, endpoints)
}

/// Two listeners on two routes to two EDS clusters; then one listener and one cluster
/// go. Returns what was held before and, once it stops changing (or after `T`), after.
fn scenario<P>(start: impl Fn(&str) -> (P, SocketAddr), delta: bool) -> (Vec<String>, Vec<String>) {
    let (a, b) = (upstream("A"), upstream("B"));
    let mgmt = Mgmt::start();
    let (port, port2) = (free_port(), free_port());
    mgmt.set(
        CLUSTER,
        &[("c1", eds_cluster("c1")), ("c2", eds_cluster("c2"))],
    );
    mgmt.set(
        ENDPOINT,
        &[
            ("c1", endpoints("c1", &[a.addr.port()])),
            ("c2", endpoints("c2", &[b.addr.port()])),
        ],
    );
    mgmt.set(
        ROUTE,
        &[("r1", route("r1", "c1")), ("r2", route("r2", "c2"))],
    );
    mgmt.set(
        LISTENER,
        &[
            ("main", listener("main", port, "r1")),
            ("extra", listener("extra", port2, "r2")),
        ],
    );
    let api = if delta { "DELTA_GRPC" } else { "GRPC" };
    let (proxy, admin) = start(&bootstrap(mgmt.addr, api));
    let both = || answer(port).as_deref() == Some("A") && answer(port2).as_deref() == Some("B");
    assert!(wait_until(T, || both().then_some(())).is_some());
    let full = (
        vec!["r1".to_string(), "r2".into()],
        vec!["c1".to_string(), "c2".into()],
    );
    let before = wait_until(T, || Some(held(admin)).filter(|h| *h == full));
    assert_eq!(
        before,
        Some(full),
        "both routes and both clusters held at first"
    );
    mgmt.remove(LISTENER, "extra");
    mgmt.remove(CLUSTER, "c2");
    assert!(wait_until(T, || answer(port2).is_none().then_some(())).is_some());
    let left = (vec!["r1".to_string()], vec!["c1".to_string()]);
    let after =
        wait_until(T, || Some(held(admin)).filter(|h| *h == left)).unwrap_or_else(|| held(admin));
    // What stays is still served.
    assert_eq!(answer(port).as_deref(), Some("A"));
    drop(proxy);
    after
}

fn outrigger(b: &str) -> (Proxy, SocketAddr) {
    let p = Proxy::start(b);
    let a = p.admin;
    (p, a)
}

fn expected() -> (Vec<String>, Vec<String>) {
    (vec!["r1".to_string()], vec!["c1".to_string()])
}

#[test]
fn unwatched_routes_and_endpoints_are_forgotten_sotw() {
    assert_eq!(scenario(outrigger, false), expected());
}

#[test]
fn unwatched_routes_and_endpoints_are_forgotten_delta() {
    assert_eq!(scenario(outrigger, true), expected());
}

#[test]
fn forgetting_behaves_as_envoy() {
    let Some(bin) = envoy_or_skip("xds_forget") else {
        return;
    };
    for delta in [false, true] {
        let envoy = scenario(
            |b| {
                let e = Envoy::start_args(&bin, b, free_ports(), &["--drain-time-s", "0"]);
                let a = e.admin;
                (e, a)
            },
            delta,
        );
        let ours = scenario(outrigger, delta);
        assert_eq!(ours, envoy, "delta: {delta}");
    }
}
