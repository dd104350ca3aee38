//! An update that changes a listener's filter chain drains the connections accepted on
//! that chain, and only those (`runtime/chain_drain.rs`): an HTTP/1 connection gets
//! `connection: close` on its next response and is closed when idle, an HTTP/2 one gets
//! GOAWAY, a TCP proxy connection is closed at the drain timeout. Connections on the
//! listener's other chains, and every connection after an update that changes only
//! routes, carry on, on the same connection. Through the binary, with reloads of a
//! static config (an xDS update takes the same path, `Control::apply`).

mod common;
mod h2client;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// One listener `main` whose http_inspector sends HTTP/1 to chain `h1` and h2c to
/// chain `h2`, each with the idle timeout given; a listener `tcp` on `@PORT2@` proxying
/// to the upstream; `/version` answers `tag`, everything else goes to the upstream.
fn config(tag: &str, up: SocketAddr, h1_idle: &str, h2_idle: &str, tcp_idle: &str) -> String {
    format!(
        "admin:
  address: 127.0.0.1
  port: @ADMIN_PORT@
runtime:
  drain_timeout: 3s
listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    listener_filters: [http_inspector]
    filter_chains:
      - name: h1
        filter_chain_match: {{ application_protocols: [http/1.1] }}
        route_table: main
        idle_timeout: {h1_idle}
      - name: h2
        filter_chain_match: {{ application_protocols: [h2c] }}
        route_table: main
        idle_timeout: {h2_idle}
  - name: tcp
    address: 127.0.0.1
    port: @PORT2@
    tcp_proxy: {{ cluster: backend }}
    idle_timeout: {tcp_idle}
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ path: /version }}
            direct_response: {{ status: 200, body: \"{tag}\" }}
          - match: {{ prefix: / }}
            cluster: backend
            timeout: 10s
clusters:
  - name: backend
    endpoints:
      - address: 127.0.0.1
        port: {}
",
        up.port()
    )
}

/// `POST /reload`, then waits until every worker applied it.
fn reload(proxy: &Proxy) {
    let r = proxy.reload();
    assert_eq!(r.status, 200, "{}", r.body_str());
    let ready = wait_until(Duration::from_secs(5), || {
        (proxy.admin_get("/ready").status == 200).then_some(())
    });
    assert!(ready.is_some(), "not applied:\n{}", proxy.stderr());
}

/// `GET /version` on a keep-alive connection.
fn version(c: &mut Conn) -> Response {
    c.send("GET /version HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().expect("a response to /version");
    assert_eq!(r.status, 200);
    r
}

#[test]
fn a_changed_http1_chain_drains_its_connections_and_the_other_chain_serves_on() {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;
    let up = Upstream::start(delayed(Duration::from_secs(3)));
    let proxy = Proxy::start(&config("v1", up.addr, "60s", "60s", "60s"));
    let listen = proxy.listen;

    // An HTTP/2 connection on the chain that stays, on a client thread of its own (a
    // blocking read on the client's executor would be interrupted): one request
    // before the update (step 1), one after it (once step 2 is set).
    let step = Arc::new(AtomicU8::new(0));
    let s = step.clone();
    let h2 = std::thread::spawn(move || {
        h2client::run(move || async move {
            let mut h2 = h2client::connect(listen).await;
            let url = format!("http://{listen}/version");
            let req = || h2client::request("GET", &url).body(()).unwrap();
            let before = h2client::send(&mut h2, req(), b"").await;
            assert_eq!(before.body_str(), "v1");
            s.store(1, Ordering::SeqCst);
            for _ in 0..600 {
                if s.load(Ordering::SeqCst) == 2 {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            let after = h2client::send(&mut h2, req(), b"").await;
            (after.status, after.body_str(), after.reset)
        })
    });
    let first = wait_until(Duration::from_secs(10), || {
        (step.load(Ordering::SeqCst) == 1).then_some(())
    });
    assert!(
        first.is_some(),
        "the HTTP/2 connection did not serve its first request"
    );

    // An idle HTTP/1 keep-alive connection, and a busy one (its request is at the
    // upstream while the update comes).
    let mut idle = Conn::connect(listen);
    assert_eq!(version(&mut idle).body_str(), "v1");
    let mut busy = Conn::connect(listen);
    busy.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(Duration::from_secs(5), || (up.heads() == 1).then_some(())).is_some());

    proxy.write_config(&config("v2", up.addr, "61s", "60s", "60s"));
    reload(&proxy);

    // The idle connection is closed; the busy one's response is its last.
    assert!(
        idle.closed_within(Duration::from_secs(5)),
        "the idle connection of the changed chain was not closed"
    );
    let r = busy
        .read_response()
        .expect("the in-flight request completes");
    assert_eq!(r.status, 200);
    assert!(
        r.says_close(),
        "connection: close on the last response: {:?}",
        r.headers
    );
    assert!(busy.closed_within(Duration::from_secs(5)));

    // The HTTP/2 connection on the unchanged chain serves on, with the new routes.
    step.store(2, Ordering::SeqCst);
    let outcome = h2.join().expect("the HTTP/2 client");
    assert_eq!(outcome, (200, "v2".to_string(), None), "{}", proxy.stderr());
    // New HTTP/1 connections get the new chain.
    let mut fresh = Conn::connect(proxy.listen);
    let r = version(&mut fresh);
    assert_eq!(r.body_str(), "v2");
    assert!(!r.says_close());
}

#[test]
fn a_changed_http2_chain_sends_goaway_and_the_http1_chain_keeps_its_connection() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config("v1", up.addr, "60s", "60s", "60s"));
    let mut h1 = Conn::connect(proxy.listen);
    assert_eq!(version(&mut h1).body_str(), "v1");
    let mut h2 = std::net::TcpStream::connect(proxy.listen).unwrap();
    h2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let seen = h2client::frames_until(&mut h2, 4);
    assert_eq!(seen.last(), Some(&4), "the proxy's SETTINGS: {seen:?}");

    proxy.write_config(&config("v2", up.addr, "60s", "61s", "60s"));
    reload(&proxy);
    let seen = h2client::frames_until(&mut h2, 7);
    assert_eq!(
        seen.last(),
        Some(&7),
        "a GOAWAY (type 7) after the update: {seen:?}"
    );
    // The HTTP/1 connection is on the chain that stayed: same connection, new routes.
    let r = version(&mut h1);
    assert_eq!(r.body_str(), "v2");
    assert!(!r.says_close(), "{:?}", r.headers);
}

#[test]
fn a_route_update_drains_nothing() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config("v1", up.addr, "60s", "60s", "60s"));
    let mut h1 = Conn::connect(proxy.listen);
    assert_eq!(version(&mut h1).body_str(), "v1");
    let mut tcp = Conn::connect(proxy.listen2);
    tcp.send("GET /through HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(tcp.read_response().unwrap().status, 200);
    // Only the route table changes (and a cluster is added ahead of `backend`, which
    // moves its index: the chains are compared as configured, not as built).
    let more = config("v2", up.addr, "60s", "60s", "60s").replace(
        "clusters:\n",
        &format!(
            "clusters:\n  - name: another\n    endpoints:\n      - address: 127.0.0.1\n        port: {}\n",
            up.addr.port()
        ),
    );
    proxy.write_config(&more);
    reload(&proxy);
    for _ in 0..3 {
        let r = version(&mut h1);
        assert_eq!(r.body_str(), "v2");
        assert!(!r.says_close(), "{:?}", r.headers);
    }
    // Past the drain timeout the TCP proxy connection still carries bytes.
    std::thread::sleep(Duration::from_secs(4));
    tcp.send("GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(tcp.read_response().unwrap().status, 200);
    assert!(!proxy
        .stderr()
        .contains("drain timeout of a changed filter chain"));
}

#[test]
fn a_changed_or_removed_tcp_proxy_chain_is_closed_at_the_drain_timeout() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config("v1", up.addr, "60s", "60s", "60s"));
    let mut tcp = Conn::connect(proxy.listen2);
    tcp.send("GET /one HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(tcp.read_response().unwrap().status, 200);
    proxy.write_config(&config("v1", up.addr, "60s", "60s", "61s"));
    reload(&proxy);
    // Left to run until the drain timeout (3s), then closed.
    tcp.send("GET /two HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(tcp.read_response().unwrap().status, 200);
    assert!(
        tcp.closed_within(Duration::from_secs(10)),
        "the TCP proxy connection of the changed chain was not closed"
    );
    assert!(proxy
        .stderr()
        .contains("drain timeout of a changed filter chain"));

    // A listener removed: the same for its connections.
    let mut tcp = Conn::connect(proxy.listen2);
    tcp.send("GET /three HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(tcp.read_response().unwrap().status, 200);
    let without = config("v1", up.addr, "60s", "60s", "61s");
    let start = without.find("  - name: tcp\n").unwrap();
    let end = without.find("route_tables:").unwrap();
    proxy.write_config(&format!("{}{}", &without[..start], &without[end..]));
    reload(&proxy);
    assert!(
        tcp.closed_within(Duration::from_secs(10)),
        "the TCP proxy connection of the removed listener was not closed"
    );
}

/// An Envoy bootstrap whose listener `b` has an inline route table without a name;
/// with `first`, a listener `a` comes before it in the file.
fn bootstrap(first: bool) -> String {
    let listener = |name: &str, port: &str| {
        format!(
            "  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: {name}}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"
        )
    };
    let a = if first {
        listener("a", "@PORT2@")
    } else {
        String::new()
    };
    format!(
        "admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
static_resources:
  listeners:
{a}{}",
        listener("b", "@PORT@")
    )
}

/// A listener added ahead of another leaves the other's chain alone, though its route
/// table has no name of its own (the generated name counts that listener's tables only).
#[test]
fn a_listener_added_ahead_drains_nothing_behind_it() {
    let proxy = Proxy::start(&bootstrap(false));
    let mut c = Conn::connect(proxy.listen);
    assert_eq!(version(&mut c).body_str(), "b");
    proxy.write_config(&bootstrap(true));
    reload(&proxy);
    for _ in 0..3 {
        let r = version(&mut c);
        assert_eq!(r.body_str(), "b");
        assert!(!r.says_close(), "{:?}", r.headers);
    }
}
