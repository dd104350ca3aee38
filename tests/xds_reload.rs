//! `POST /reload` (and SIGHUP) with a bootstrap that has `dynamic_resources`: the static
//! resources are read again and published with the dynamic ones the client holds; a
//! change to `node` or `dynamic_resources` is refused by name and changes nothing.

mod common;
#[allow(dead_code)]
mod xds_server;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use xds_server::resources::*;
use xds_server::*;

const T: Duration = Duration::from_secs(20);

fn answer(addr: SocketAddr) -> Option<String> {
    let mut c = Conn::try_connect(addr).ok()?;
    c.set_timeout(Duration::from_secs(5));
    c.try_send("GET / HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
    let r = c.read_response().ok()?;
    Some(if r.status == 200 {
        r.body_str()
    } else {
        r.status.to_string()
    })
}

fn wait_answer(addr: SocketAddr, want: &str) {
    let got = wait_until(T, || (answer(addr).as_deref() == Some(want)).then_some(()));
    assert!(
        got.is_some(),
        "{addr} never answered {want:?} (last: {:?})",
        answer(addr)
    );
}

/// The test bootstrap with a static listener `static` on `@PORT@` answering `body`.
fn with_static(mgmt: SocketAddr, node: &str, body: &str) -> String {
    let boot = bootstrap(mgmt, "GRPC").replace("id: test-node", &format!("id: {node}"));
    boot.replace(
        "static_resources:\n",
        &format!(
            r#"static_resources:
  listeners:
  - name: static
    address: {{socket_address: {{address: 127.0.0.1, port_value: @PORT@}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: static
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: {body}}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
        ),
    )
}

#[test]
fn reload_publishes_static_changes_and_keeps_the_dynamic_resources() {
    let up = Upstream::start(fixed("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nA"));
    let mgmt = Mgmt::start();
    let port = free_port();
    mgmt.set(CLUSTER, &[("c1", eds_cluster("c1"))]);
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[up.addr.port()]))]);
    mgmt.set(ROUTE, &[("r1", route("r1", "c1"))]);
    mgmt.set(LISTENER, &[("main", listener("main", port, "r1"))]);
    let p = Proxy::start(&with_static(mgmt.addr, "test-node", "one"));
    let dynamic = SocketAddr::from(([127, 0, 0, 1], port));
    wait_answer(dynamic, "A");
    assert_eq!(answer(p.listen).as_deref(), Some("one"));

    p.write_config(&with_static(mgmt.addr, "test-node", "two"));
    let r = p.reload();
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(answer(p.listen).as_deref(), Some("two"));
    // The dynamic listener, route and cluster are still served.
    assert_eq!(answer(dynamic).as_deref(), Some("A"));

    // What the stream was opened with is not reloaded: refused by name, nothing changes.
    p.write_config(&with_static(mgmt.addr, "other-node", "three"));
    let r = p.reload();
    assert_eq!(r.status, 400, "{}", r.body_str());
    assert!(r.body_str().contains("`node` changed"), "{}", r.body_str());
    assert_eq!(answer(p.listen).as_deref(), Some("two"));

    let changed = with_static(mgmt.addr, "test-node", "three").replace(
        "initial_fetch_timeout: 2s}\n  cds",
        "initial_fetch_timeout: 3s}\n  cds",
    );
    assert!(changed.contains("3s"));
    p.write_config(&changed);
    let r = p.reload();
    assert_eq!(r.status, 400, "{}", r.body_str());
    assert!(
        r.body_str().contains("`dynamic_resources` changed"),
        "{}",
        r.body_str()
    );

    // A static part that does not build is refused like any reload.
    p.write_config(&with_static(mgmt.addr, "test-node", "four").replace(
        "          stat_prefix: static\n",
        "          stat_prefix: static\n          use_remote_address: maybe\n",
    ));
    let r = p.reload();
    assert_eq!(r.status, 400, "{}", r.body_str());
    assert!(
        r.body_str().contains("use_remote_address"),
        "{}",
        r.body_str()
    );
    assert_eq!(answer(p.listen).as_deref(), Some("two"));
    assert_eq!(answer(dynamic).as_deref(), Some("A"));

    // SIGHUP does the same as POST /reload.
    p.write_config(&with_static(mgmt.addr, "test-node", "five"));
    p.signal(libc::SIGHUP);
    wait_answer(p.listen, "five");
    assert_eq!(answer(dynamic).as_deref(), Some("A"));
}
