//! The xDS client beside Envoy 1.40: the same bootstrap and the same management server
//! (`xds_server`, one per proxy, same resources), the same scenario, and the observable
//! behaviour compared: the order of subscriptions, the node on requests, a NACK's
//! version and detail, warming (a route to a cluster still waiting for its endpoints),
//! a listener waiting for its routes, a route change on a live connection, listener
//! removal, and what a delta stream claims after the server restarts. Differences that
//! are known and documented are printed as `KNOWN DIFFERENCE`; skipped without Envoy.

mod common;
mod xds_server;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::*;
use common::*;
use serde_json::json;
use xds_server::resources::*;
use xds_server::*;

const T: Duration = Duration::from_secs(20);

/// What one proxy did in the scenario.
#[derive(Debug, PartialEq)]
struct Seen {
    first_order: Vec<String>,
    node_on_every_request: bool,
    acks_carry_the_nonce: bool,
    nack_keeps_version: bool,
    nack_names_field: bool,
    good_listener_beside_a_bad_one_serves: bool,
    warming_status: String,
    late_listener_listens_before_routes: bool,
    live_connection_sees_new_route: bool,
    removed_listener_refuses: bool,
    delta_resumes_with_versions: bool,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn upstream(body: &str) -> Upstream {
    Upstream::start(fixed(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )))
}

fn answer_on(c: &mut Conn) -> Option<String> {
    c.try_send("GET / HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
    let r = c.read_response().ok()?;
    Some(if r.status == 200 {
        r.body_str()
    } else {
        r.status.to_string()
    })
}

fn answer(port: u16) -> Option<String> {
    let mut c = Conn::try_connect(addr(port)).ok()?;
    c.set_timeout(Duration::from_secs(5));
    answer_on(&mut c)
}

fn wait_answer(port: u16, want: &str) -> bool {
    wait_until(T, || (answer(port).as_deref() == Some(want)).then_some(())).is_some()
}

fn short(t: &str) -> String {
    t.rsplit('.').next().unwrap_or(t).to_string()
}

/// Runs the scenario with `start` launching the proxy on a bootstrap; returns what it saw,
/// the NACK's detail and how long a route change took to reach a request (printed, not
/// compared: it depends on the machine's load).
fn scenario<P>(
    start: impl Fn(&str) -> (P, SocketAddr),
    delta: bool,
) -> (Seen, String, Duration, Vec<String>) {
    let a = upstream("A");
    let b = upstream("B");
    let mut mgmt = Mgmt::start();
    let port = free_port();
    mgmt.set(CLUSTER, &[("c1", eds_cluster("c1"))]);
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[a.addr.port()]))]);
    mgmt.set(CLUSTER, &[("c2", eds_cluster("c2"))]);
    mgmt.set(ENDPOINT, &[("c2", endpoints("c2", &[b.addr.port()]))]);
    mgmt.set(ROUTE, &[("r1", route("r1", "c1"))]);
    mgmt.set(LISTENER, &[("main", listener("main", port, "r1"))]);
    let api = if delta { "DELTA_GRPC" } else { "GRPC" };
    let (proxy, admin) = start(&bootstrap(mgmt.addr, api));
    assert!(wait_answer(port, "A"));
    let seen = mgmt.seen();
    let mut first_order = Vec::new();
    for s in &seen {
        let t = short(&s.type_url);
        if !first_order.contains(&t) {
            first_order.push(t);
        }
    }
    let node_on_every_request = seen.iter().all(|s| s.node_id.is_some());
    // A live keep-alive connection and a route change.
    let mut live = Conn::connect(addr(port));
    assert_eq!(answer_on(&mut live).as_deref(), Some("A"));
    let pushed = std::time::Instant::now();
    mgmt.set(ROUTE, &[("r1", route("r1", "c2"))]);
    assert!(wait_answer(port, "B"));
    let push_to_route = pushed.elapsed();
    let live_connection_sees_new_route = answer_on(&mut live).as_deref() == Some("B");

    // A NACK: a connection manager without its required stat_prefix.
    let good = mgmt.version(LISTENER);
    let bad = encode(
        LISTENER,
        json!({
            "name": "bad",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "rds": {"config_source": {"ads": {}, "resource_api_version": "V3"}, "route_config_name": "r1"},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                }
            }]}]
        }),
    );
    let port3 = free_port();
    mgmt.set(
        LISTENER,
        &[("bad", bad), ("good", listener("good", port3, "r1"))],
    );
    let nack = wait_until(T, || {
        mgmt.seen()
            .into_iter()
            .find(|s| s.type_url == LISTENER && s.error.is_some())
    })
    .expect("no NACK");
    let detail = nack.error.clone().unwrap_or_default();
    let nack_keeps_version = delta || nack.version_info == good;
    let nack_names_field = detail.contains("stat_prefix") || detail.contains("StatPrefix");
    let good_listener_beside_a_bad_one_serves = wait_answer(port3, "B");
    mgmt.remove(LISTENER, "bad");

    // Warming: a new EDS cluster without endpoints, and a route to it.
    mgmt.set(CLUSTER, &[("c3", eds_cluster("c3"))]);
    mgmt.set(ROUTE, &[("r1", route("r1", "c3"))]);
    let warming_status = wait_until(T, || answer(port).filter(|a| a != "B")).unwrap_or_default();
    mgmt.set(ENDPOINT, &[("c3", endpoints("c3", &[a.addr.port()]))]);
    assert!(wait_answer(port, "A"));

    // A listener whose route configuration has not arrived.
    let port2 = free_port();
    mgmt.set(LISTENER, &[("late", listener("late", port2, "r-late"))]);
    wait_until(T, || {
        mgmt.seen()
            .iter()
            .any(|s| s.type_url == ROUTE && s.names.iter().any(|n| n == "r-late"))
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let late_listener_listens_before_routes = Conn::try_connect(addr(port2)).is_ok();
    mgmt.set(ROUTE, &[("r-late", route("r-late", "c1"))]);
    assert!(wait_answer(port2, "A"));

    // Removal.
    mgmt.remove(LISTENER, "late");
    let removed_listener_refuses =
        wait_until(T, || Conn::try_connect(addr(port2)).is_err().then_some(())).is_some();

    let acks_carry_the_nonce = [CLUSTER, ENDPOINT, LISTENER, ROUTE].iter().all(|t| {
        mgmt.seen()
            .iter()
            .any(|s| s.type_url == *t && !s.nonce.is_empty() && s.error.is_none())
    });

    // A restart of the server.
    let streams_before = mgmt.seen().iter().map(|s| s.stream).max().unwrap_or(0);
    mgmt.restart();
    let resumed = wait_until(T, || {
        mgmt.seen()
            .into_iter()
            .find(|s| s.stream > streams_before && s.type_url == CLUSTER)
    });
    let delta_resumes_with_versions = resumed
        .as_ref()
        .is_some_and(|s| !delta || s.initial_versions.contains_key("c1"));
    let dump_shape = dump_shape(admin);
    drop(proxy);
    (
        Seen {
            first_order,
            node_on_every_request,
            acks_carry_the_nonce,
            nack_keeps_version,
            nack_names_field,
            good_listener_beside_a_bad_one_serves,
            warming_status,
            late_listener_listens_before_routes,
            live_connection_sees_new_route,
            removed_listener_refuses,
            delta_resumes_with_versions,
        },
        detail,
        push_to_route,
        dump_shape,
    )
}

/// The field names of the dynamic parts of `/config_dump` (`TYPE.field` and
/// `TYPE.field[].entry_field`), from Outrigger's `{"version", "config"}` wrapper or
/// Envoy's bare `ConfigDump`.
fn dump_shape(admin: SocketAddr) -> Vec<String> {
    let r = http_request(
        admin,
        "GET",
        "/config_dump?include_eds",
        Duration::from_secs(5),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.body_str()).unwrap();
    let configs = v
        .get("config")
        .unwrap_or(&v)
        .get("configs")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for c in configs {
        let t = short(c["@type"].as_str().unwrap_or(""));
        if ![
            "ClustersConfigDump",
            "ListenersConfigDump",
            "RoutesConfigDump",
            "EndpointsConfigDump",
        ]
        .contains(&t.as_str())
        {
            continue;
        }
        for (k, val) in c.as_object().into_iter().flatten() {
            if !(k.starts_with("dynamic") || k == "version_info") {
                continue;
            }
            out.push(format!("{t}.{k}"));
            for e in val.as_array().into_iter().flatten() {
                for ek in e.as_object().into_iter().flatten().map(|(ek, _)| ek) {
                    out.push(format!("{t}.{k}[].{ek}"));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn compare(delta: bool) {
    let Some(bin) = envoy_or_skip("xds_parity") else {
        return;
    };
    let (ours, our_detail, our_push, our_dump) = scenario(
        |b| {
            let p = Proxy::start(b);
            let a = p.admin;
            (p, a)
        },
        delta,
    );
    let (envoy, envoy_detail, envoy_push, envoy_dump) = scenario(
        |b| {
            let e = Envoy::start(&bin, b);
            let a = e.admin;
            (e, a)
        },
        delta,
    );
    // Every dynamic field Outrigger's /config_dump has, Envoy's has too; except that
    // Outrigger gives endpoint configs their version and update time (Envoy leaves both
    // out of `dynamic_endpoint_configs`).
    const OURS_ONLY: &[&str] = &[
        "EndpointsConfigDump.dynamic_endpoint_configs[].last_updated",
        "EndpointsConfigDump.dynamic_endpoint_configs[].version_info",
    ];
    let extra: Vec<&String> = our_dump
        .iter()
        .filter(|f| !envoy_dump.contains(f) && !OURS_ONLY.contains(&f.as_str()))
        .collect();
    eprintln!("KNOWN DIFFERENCE: config_dump fields only Outrigger has: {OURS_ONLY:?}");
    let missing: Vec<&String> = envoy_dump
        .iter()
        .filter(|f| !our_dump.contains(f))
        .collect();
    // Envoy's `draining_state`: a removed listener drains; Outrigger drains its
    // connections too but shows no `draining_state`.
    eprintln!("KNOWN DIFFERENCE: config_dump fields only Envoy has: {missing:?}");
    assert!(
        extra.is_empty(),
        "fields Envoy's /config_dump lacks: {extra:?}"
    );
    eprintln!("outrigger NACK detail: {our_detail}\nenvoy NACK detail: {envoy_detail}");
    eprintln!(
        "route push to first request on the new route (delta: {delta}): outrigger {our_push:?}, envoy {envoy_push:?}"
    );
    eprintln!("outrigger: {ours:#?}\nenvoy: {envoy:#?}");
    assert_eq!(ours, envoy);
}

#[test]
fn state_of_the_world_behaves_as_envoy() {
    compare(false);
}

#[test]
fn delta_behaves_as_envoy() {
    compare(true);
}
