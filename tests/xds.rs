//! The xDS client (issue 8) through the real binary, against a tonic management server
//! in the test process (`xds_server`): state of the world and delta over ADS, ACK and
//! NACK (the NACK names the resource and field), warming (a cluster is used only once
//! its endpoints arrive, a listener once its routes do), listeners added and removed,
//! route and endpoint changes applied to the next request, a reconnect after the server
//! restarts, no failed request while routes and endpoints change, and last-known-good
//! boot with the server down.

mod common;
mod h2client;
mod xds_server;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use xds_server::resources::*;
use xds_server::*;

const T: Duration = Duration::from_secs(20);

/// An upstream that answers 200 with `body`.
fn named_upstream(body: &str) -> Upstream {
    Upstream::start(fixed(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )))
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The body (or status) a new connection's GET / gets, `None` if it cannot connect.
fn answer(port: u16) -> Option<String> {
    let mut c = Conn::try_connect(addr(port)).ok()?;
    c.set_timeout(Duration::from_secs(5));
    c.try_send("GET / HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
    let r = c.read_response().ok()?;
    Some(if r.status == 200 {
        r.body_str()
    } else {
        r.status.to_string()
    })
}

fn wait_answer(port: u16, want: &str) {
    let got = wait_until(T, || (answer(port).as_deref() == Some(want)).then_some(()));
    assert!(
        got.is_some(),
        "port {port} never answered {want:?} (last: {:?})",
        answer(port)
    );
}

/// A management server with listener `main` on `port` -> route `r1` -> EDS cluster `c1`.
fn base(mgmt: &Mgmt, port: u16, up: &Upstream) {
    mgmt.set(CLUSTER, &[("c1", eds_cluster("c1"))]);
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[up.addr.port()]))]);
    mgmt.set(ROUTE, &[("r1", route("r1", "c1"))]);
    mgmt.set(LISTENER, &[("main", listener("main", port, "r1"))]);
}

fn dump(p: &Proxy) -> Value {
    serde_json::from_str(&p.admin_get("/config_dump?include_eds").body_str()).unwrap()
}

#[test]
fn sotw_subscribes_in_order_acks_and_applies_changes() {
    let a = named_upstream("A");
    let b = named_upstream("B");
    let mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    let p = Proxy::start(&bootstrap(mgmt.addr, "GRPC"));
    wait_answer(port, "A");

    // Envoy's order: CDS first, EDS for the EDS cluster, then LDS, then RDS; the node on
    // each request; every response ACKed with its version and nonce.
    let seen = mgmt.seen();
    let first = |t: &str| seen.iter().position(|s| s.type_url == t).unwrap();
    assert!(first(CLUSTER) < first(ENDPOINT), "{seen:#?}");
    assert!(first(ENDPOINT) < first(LISTENER), "{seen:#?}");
    assert!(first(LISTENER) < first(ROUTE), "{seen:#?}");
    assert_eq!(seen[first(ENDPOINT)].names, vec!["c1"]);
    assert_eq!(seen[first(ROUTE)].names, vec!["r1"]);
    assert!(seen
        .iter()
        .all(|s| s.node_id.as_deref() == Some("test-node")));
    for t in [CLUSTER, ENDPOINT, LISTENER, ROUTE] {
        let v = mgmt.version(t);
        assert!(
            wait_until(T, || mgmt
                .seen()
                .iter()
                .any(|s| s.type_url == t
                    && s.version_info == v
                    && !s.nonce.is_empty()
                    && s.error.is_none())
                .then_some(()))
            .is_some(),
            "no ACK of {t} {v}: {:#?}",
            mgmt.seen()
        );
    }

    // RDS: the next request goes where the new route says (a static-free, second cluster).
    mgmt.set(CLUSTER, &[("c2", eds_cluster("c2"))]);
    mgmt.set(ENDPOINT, &[("c2", endpoints("c2", &[b.addr.port()]))]);
    mgmt.set(ROUTE, &[("r1", route("r1", "c2"))]);
    wait_answer(port, "B");

    // EDS: c2's endpoint moves to A.
    mgmt.set(ENDPOINT, &[("c2", endpoints("c2", &[a.addr.port()]))]);
    wait_answer(port, "A");

    // LDS: a second listener is added, then the first removed (absent from the set).
    let port2 = free_port();
    mgmt.set(LISTENER, &[("second", listener("second", port2, "r1"))]);
    wait_answer(port2, "A");
    mgmt.remove(LISTENER, "main");
    assert!(
        wait_until(T, || Conn::try_connect(addr(port)).is_err().then_some(())).is_some(),
        "the removed listener still accepts"
    );
    wait_answer(port2, "A");

    // /config_dump: dynamic resources with their versions (the dump is updated once
    // the workers have applied the update, so it may trail the listener's close).
    let v = format!("\"{}\"", mgmt.version(LISTENER));
    let text = wait_until(T, || Some(dump(&p).to_string()).filter(|t| t.contains(&v)))
        .unwrap_or_else(|| dump(&p).to_string());
    assert!(text.contains("dynamic_listeners"), "{text}");
    assert!(text.contains("dynamic_active_clusters"), "{text}");
    assert!(text.contains("dynamic_route_configs"), "{text}");
    assert!(text.contains("dynamic_endpoint_configs"), "{text}");
    assert!(text.contains(&v), "{text}");
    assert!(!text.contains("\"name\":\"main\""), "removed: {text}");
}

#[test]
fn a_route_change_applies_to_the_next_request_on_a_live_connection() {
    let a = named_upstream("A");
    let b = named_upstream("B");
    let mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    mgmt.set(CLUSTER, &[("c2", eds_cluster("c2"))]);
    mgmt.set(ENDPOINT, &[("c2", endpoints("c2", &[b.addr.port()]))]);
    let _p = Proxy::start(&bootstrap(mgmt.addr, "GRPC"));
    wait_answer(port, "A");
    let mut keep = Conn::connect(addr(port));
    let mut ask = || {
        keep.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
        let r = keep.read_response().unwrap();
        // A route update drains no connection (runtime/chain_drain.rs).
        assert!(!r.says_close(), "{:?}", r.headers);
        r.body_str()
    };
    assert_eq!(ask(), "A");
    mgmt.set(ROUTE, &[("r1", route("r1", "c2"))]);
    // The same connection, not a new one, sees the new route (Envoy applies RDS to the
    // next request on existing connections).
    wait_answer(port, "B");
    assert_eq!(ask(), "B");
    assert_eq!(ask(), "B");
    assert_eq!(a.connections(), 1, "one upstream connection to A, reused");
}

#[test]
fn a_route_change_applies_to_the_next_stream_on_a_live_http2_connection() {
    let a = named_upstream("A");
    let b = named_upstream("B");
    let mgmt = std::sync::Arc::new(Mgmt::start());
    let port = free_port();
    base(&mgmt, port, &a);
    mgmt.set(CLUSTER, &[("c2", eds_cluster("c2"))]);
    mgmt.set(ENDPOINT, &[("c2", endpoints("c2", &[b.addr.port()]))]);
    let _p = Proxy::start(&bootstrap(mgmt.addr, "GRPC"));
    wait_answer(port, "A");
    let m = mgmt.clone();
    let (first, later) = h2client::run(move || async move {
        let mut client = h2client::connect(addr(port)).await;
        let uri = format!("http://127.0.0.1:{port}/");
        let mut ask = async || {
            let req = h2client::request("GET", &uri).body(()).unwrap();
            h2client::send(&mut client, req, b"").await.body_str()
        };
        let first = ask().await;
        m.set(ROUTE, &[("r1", route("r1", "c2"))]);
        let mut later = String::new();
        for _ in 0..200 {
            later = ask().await;
            if later == "B" {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        (first, later)
    });
    assert_eq!(first, "A");
    assert_eq!(
        later, "B",
        "the live HTTP/2 connection never saw the new route"
    );
}

#[test]
fn a_rejected_update_is_nacked_with_the_field_and_the_old_config_serves() {
    let a = named_upstream("A");
    let mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    let p = Proxy::start(&bootstrap(mgmt.addr, "GRPC"));
    wait_answer(port, "A");
    let good = mgmt.version(LISTENER);

    let bad = json!({
        "name": "bad",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
        "per_connection_buffer_limit_bytes": 1024,
        "filter_chains": []
    });
    // In the same response, a good listener: it applies (Envoy applies the valid
    // resources of a response it NACKs).
    let port3 = free_port();
    mgmt.set(
        LISTENER,
        &[
            ("bad", encode(LISTENER, bad)),
            ("good", listener("good", port3, "r1")),
        ],
    );
    wait_answer(port3, "A");
    let nack = wait_until(T, || {
        mgmt.seen()
            .into_iter()
            .find(|s| s.type_url == LISTENER && s.error.is_some())
    })
    .expect("no NACK");
    let detail = nack.error.unwrap();
    assert!(detail.contains("listener `bad`"), "{detail}");
    assert!(
        detail.contains("per_connection_buffer_limit_bytes"),
        "{detail}"
    );
    assert_eq!(
        nack.version_info, good,
        "a NACK carries the version in force"
    );
    assert!(!nack.nonce.is_empty());
    assert_eq!(answer(port).as_deref(), Some("A"));
    let text = dump(&p).to_string();
    assert!(text.contains("error_state"), "{text}");
    assert!(text.contains("per_connection_buffer_limit_bytes"), "{text}");
}

#[test]
fn garbage_and_oversized_messages_from_the_server_do_not_hurt() {
    let a = named_upstream("A");
    let b = named_upstream("B");
    let mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    let p = Proxy::start(&bootstrap(mgmt.addr, "GRPC"));
    wait_answer(port, "A");
    // Bytes that are no protobuf: NACKed, the proxy serves on.
    mgmt.set(LISTENER, &[("junk", vec![0xff; 7])]);
    let nack = wait_until(T, || {
        mgmt.seen()
            .into_iter()
            .find(|s| s.type_url == LISTENER && s.error.is_some())
    })
    .expect("no NACK for a malformed resource");
    assert!(nack.error.unwrap().contains("cannot decode"));
    mgmt.remove(LISTENER, "junk");
    // A message over the 16 MiB bound ends the stream; the client reconnects.
    let streams = mgmt.seen().iter().map(|s| s.stream).max().unwrap();
    let mut huge = json!({"name": "r-huge", "virtual_hosts": []});
    huge["request_headers_to_remove"] = json!(vec!["x".repeat(1024); 17 * 1024]);
    mgmt.set(ROUTE, &[("r1", encode(ROUTE, huge))]);
    assert!(
        wait_until(T, || mgmt
            .seen()
            .iter()
            .any(|s| s.stream > streams)
            .then_some(()))
        .is_some(),
        "no reconnect after an oversized message:\n{}",
        p.stderr()
    );
    assert!(p.stderr().contains("16777216"), "{}", p.stderr());
    assert_eq!(answer(port).as_deref(), Some("A"));
    mgmt.set(CLUSTER, &[("c2", eds_cluster("c2"))]);
    mgmt.set(ENDPOINT, &[("c2", endpoints("c2", &[b.addr.port()]))]);
    mgmt.set(ROUTE, &[("r1", route("r1", "c2"))]);
    wait_answer(port, "B");
}

#[test]
fn removing_an_endpoint_keeps_the_pooled_connections_of_the_others() {
    let a = named_upstream("A");
    let b = named_upstream("B");
    let mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    mgmt.set(
        ENDPOINT,
        &[("c1", endpoints("c1", &[a.addr.port(), b.addr.port()]))],
    );
    let _p = Proxy::start(&bootstrap(mgmt.addr, "GRPC"));
    // Round robin over A and B: each gets a pooled connection. One keep-alive client
    // connection, so that each upstream connection is pooled before the next request.
    wait_answer(port, "A");
    let mut c = Conn::connect(addr(port));
    let mut ask = || {
        c.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
        c.read_response().unwrap().body_str()
    };
    let both: std::collections::BTreeSet<String> = (0..4).map(|_| ask()).collect();
    assert_eq!(both.len(), 2, "{both:?}");
    let a_conns = a.connections();
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[a.addr.port()]))]);
    let only_a = wait_until(T, || (0..4).all(|_| ask() == "A").then_some(()));
    assert!(only_a.is_some());
    assert_eq!(
        a.connections(),
        a_conns,
        "A's pooled connection was not kept across the EDS update"
    );
}

#[test]
fn a_cluster_is_used_only_once_its_endpoints_arrive() {
    let a = named_upstream("A");
    let b = named_upstream("B");
    let mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    let _p = Proxy::start(&bootstrap(mgmt.addr, "GRPC"));
    wait_answer(port, "A");
    // c3 has no ClusterLoadAssignment yet: it is warming, and a route to it gets what
    // Envoy gives a route to an unknown cluster, a 503.
    mgmt.set(CLUSTER, &[("c3", eds_cluster("c3"))]);
    mgmt.set(ROUTE, &[("r1", route("r1", "c3"))]);
    wait_answer(port, "503");
    mgmt.set(ENDPOINT, &[("c3", endpoints("c3", &[b.addr.port()]))]);
    wait_answer(port, "B");
}

#[test]
fn a_listener_waits_for_its_route_configuration() {
    let a = named_upstream("A");
    let mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    let _p = Proxy::start(&bootstrap(mgmt.addr, "GRPC"));
    wait_answer(port, "A");
    let port2 = free_port();
    mgmt.set(LISTENER, &[("late", listener("late", port2, "r-late"))]);
    // The RDS subscription goes out, and until the route arrives nothing listens.
    assert!(wait_until(T, || mgmt
        .seen()
        .iter()
        .any(|s| s.type_url == ROUTE && s.names.contains(&"r-late".to_string()))
        .then_some(()))
    .is_some());
    assert!(Conn::try_connect(addr(port2)).is_err());
    mgmt.set(ROUTE, &[("r-late", route("r-late", "c1"))]);
    wait_answer(port2, "A");
}

#[test]
fn delta_subscribes_acks_removes_and_resumes_with_versions() {
    let a = named_upstream("A");
    let b = named_upstream("B");
    let mut mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    let _p = Proxy::start(&bootstrap(mgmt.addr, "DELTA_GRPC"));
    wait_answer(port, "A");
    let seen = mgmt.seen();
    let first_eds = seen.iter().find(|s| s.type_url == ENDPOINT).unwrap();
    assert_eq!(first_eds.names, vec!["c1"]);
    assert_eq!(seen[0].node_id.as_deref(), Some("test-node"));
    let acked = wait_until(T, || {
        mgmt.seen()
            .iter()
            .any(|s| s.type_url == LISTENER && !s.nonce.is_empty() && s.error.is_none())
            .then_some(())
    });
    assert!(
        acked.is_some(),
        "no ACK of the listeners: {:#?}",
        mgmt.seen()
    );

    // EDS change and a route change.
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[b.addr.port()]))]);
    wait_answer(port, "B");

    // removed_resources: the listener goes.
    let port2 = free_port();
    mgmt.set(LISTENER, &[("second", listener("second", port2, "r1"))]);
    wait_answer(port2, "B");
    mgmt.remove(LISTENER, "second");
    assert!(wait_until(T, || Conn::try_connect(addr(port2)).is_err().then_some(())).is_some());

    // The server restarts: the new stream says what the proxy holds.
    mgmt.restart();
    let resumed = wait_until(T, || {
        mgmt.seen()
            .into_iter()
            .find(|s| s.stream >= 2 && s.type_url == CLUSTER && s.nonce.is_empty())
    })
    .expect("no resubscription after the restart");
    assert!(resumed.initial_versions.contains_key("c1"), "{resumed:#?}");
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[a.addr.port()]))]);
    wait_answer(port, "A");
}

#[test]
fn sotw_reconnects_after_the_server_restarts() {
    let a = named_upstream("A");
    let b = named_upstream("B");
    let mut mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    let _p = Proxy::start(&bootstrap(mgmt.addr, "GRPC"));
    wait_answer(port, "A");
    let held = mgmt.version(CLUSTER);
    mgmt.stop();
    // While the server is down the proxy keeps serving.
    assert_eq!(answer(port).as_deref(), Some("A"));
    mgmt.restart();
    let again = wait_until(T, || {
        mgmt.seen()
            .into_iter()
            .find(|s| s.stream >= 2 && s.type_url == CLUSTER)
    })
    .expect("no new stream");
    assert_eq!(
        again.version_info, held,
        "resubscribes with the version it holds"
    );
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[b.addr.port()]))]);
    wait_answer(port, "B");
}

#[test]
fn no_request_fails_while_routes_and_endpoints_change() {
    let a = named_upstream("A");
    let b = named_upstream("B");
    let mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    mgmt.set(CLUSTER, &[("c2", eds_cluster("c2"))]);
    mgmt.set(ENDPOINT, &[("c2", endpoints("c2", &[b.addr.port()]))]);
    let _p = Proxy::start(&bootstrap(mgmt.addr, "GRPC"));
    wait_answer(port, "A");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let churn = std::thread::spawn(move || {
        for i in 0..20 {
            if s.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let (c, e) = if i % 2 == 0 {
                ("c2", "c1")
            } else {
                ("c1", "c2")
            };
            mgmt.set(ROUTE, &[("r1", route("r1", c))]);
            let ports = if i % 3 == 0 {
                vec![a.addr.port(), b.addr.port()]
            } else {
                vec![b.addr.port()]
            };
            mgmt.set(ENDPOINT, &[(e, endpoints(e, &ports))]);
            std::thread::sleep(Duration::from_millis(20));
        }
        mgmt
    });
    let mut bodies = std::collections::BTreeMap::new();
    let mut failed = Vec::new();
    // Keep-alive and new connections alike.
    let mut keep = Conn::connect(addr(port));
    for i in 0..400 {
        let got = if i % 2 == 0 {
            answer(port)
        } else {
            keep.try_send("GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .ok()
                .and_then(|_| keep.read_response().ok())
                .map(|r| {
                    if r.status == 200 {
                        r.body_str()
                    } else {
                        r.status.to_string()
                    }
                })
        };
        match got.as_deref() {
            Some("A") | Some("B") => *bodies.entry(got.unwrap()).or_insert(0) += 1,
            other => failed.push((i, other.map(str::to_string))),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _mgmt = churn.join().unwrap();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert_eq!(bodies.len(), 2, "both upstreams served: {bodies:?}");
}

#[test]
fn last_known_good_serves_at_once_when_the_server_is_down() {
    let a = named_upstream("A");
    let state = TempDir::new("xds-state");
    let dir = state.path().display().to_string();
    let mut mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    let boot = bootstrap(mgmt.addr, "GRPC");
    {
        let mut p = Proxy::start_extra(&boot, &["--state-dir", &dir]);
        wait_answer(port, "A");
        assert!(state.join("xds-last-known-good.pb").exists());
        p.terminate(T);
    }
    mgmt.stop();
    // Server down: the proxy is ready with the saved listener, route and endpoints.
    let p = Proxy::start_extra(&boot, &["--state-dir", &dir]);
    wait_answer(port, "A");
    assert!(p.stderr().contains("last-known-good"), "{}", p.stderr());
    // And it keeps retrying: once the server is back, updates flow again.
    let b = named_upstream("B");
    mgmt.restart();
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[b.addr.port()]))]);
    wait_answer(port, "B");
}

#[test]
fn a_corrupt_state_file_is_ignored() {
    let a = named_upstream("A");
    let state = TempDir::new("xds-state-bad");
    std::fs::write(
        state.join("xds-last-known-good.pb"),
        b"\xff\xff\xff not protobuf",
    )
    .unwrap();
    let mgmt = Mgmt::start();
    let port = free_port();
    base(&mgmt, port, &a);
    let dir = state.path().display().to_string();
    let p = Proxy::start_extra(&bootstrap(mgmt.addr, "GRPC"), &["--state-dir", &dir]);
    wait_answer(port, "A");
    assert!(
        p.stderr().contains("ignoring the last-known-good config"),
        "{}",
        p.stderr()
    );
    // The next accepted update replaces the file with a good one.
    let bytes = std::fs::read(state.join("xds-last-known-good.pb")).unwrap();
    assert!(!bytes.starts_with(b"\xff\xff\xff"));
}
