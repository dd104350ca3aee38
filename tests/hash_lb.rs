//! Consistent-hash load balancing through the real binary: ring hash and Maglev
//! clusters with route `hash_policy` entries. Each upstream answers with its own name,
//! so a test sees where a request went. Two workers, and a new connection per request,
//! so the same key must land on the same endpoint whichever core serves it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// An upstream that answers every request (health checks too) with `status` and its
/// name `up-<i>` as the body.
fn named(i: usize, status: u16) -> Upstream {
    Upstream::start(fixed(format!(
        "HTTP/1.1 {status} X\r\ncontent-length: 4\r\n\r\nup-{i}"
    )))
}

fn config(ups: &[SocketAddr], lb: &str, hash_policy: &str, cluster_extra: &str) -> String {
    let eps: String = ups
        .iter()
        .map(|a| format!("      - {{address: 127.0.0.1, port: {}}}\n", a.port()))
        .collect();
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: backend
            hash_policy: {hash_policy}
clusters:
  - name: backend
    connect_timeout: 1s
    lb_policy: {lb}
{cluster_extra}    endpoints:
{eps}"
    )
}

/// One request on a new connection; the answering upstream's name and the response.
fn send(addr: SocketAddr, path: &str, headers: &str) -> Response {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: h\r\n{headers}Connection: close\r\n\r\n"),
    )
}

fn who(addr: SocketAddr, path: &str, headers: &str) -> String {
    let r = send(addr, path, headers);
    assert_eq!(r.status, 200, "{}", r.body_str());
    r.body_str()
}

const LBS: [&str; 2] = ["ring_hash", "maglev"];

#[test]
fn the_same_header_goes_to_the_same_endpoint_on_every_core() {
    let ups: Vec<Upstream> = (0..4).map(|i| named(i, 200)).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    for lb in LBS {
        let p = Proxy::start_with(
            &config(&addrs, lb, "[{header: {header_name: x-user}}]", ""),
            2,
        );
        let mut by_key = BTreeMap::new();
        for k in 0..24 {
            let h = format!("x-user: user-{k}\r\n");
            let first = who(p.listen, "/", &h);
            for _ in 0..6 {
                assert_eq!(who(p.listen, "/", &h), first, "{lb}: key {k} moved");
            }
            by_key.insert(k, first);
        }
        let used: BTreeSet<&String> = by_key.values().collect();
        assert!(used.len() >= 3, "{lb}: keys spread over {used:?}");
    }
}

#[test]
fn no_hash_key_picks_at_random() {
    let ups: Vec<Upstream> = (0..4).map(|i| named(i, 200)).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let p = Proxy::start_with(
        &config(&addrs, "ring_hash", "[{header: {header_name: x-user}}]", ""),
        2,
    );
    let used: BTreeSet<String> = (0..60).map(|_| who(p.listen, "/", "")).collect();
    assert!(
        used.len() >= 3,
        "requests without the header spread: {used:?}"
    );
}

#[test]
fn a_generated_cookie_is_set_and_then_sticks() {
    let ups: Vec<Upstream> = (0..4).map(|i| named(i, 200)).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    for lb in LBS {
        let p = Proxy::start_with(
            &config(
                &addrs,
                lb,
                "[{cookie: {name: sticky, ttl: 3600s, path: /app}}]",
                "",
            ),
            2,
        );
        let r = send(p.listen, "/", "");
        assert_eq!(r.status, 200);
        let set = r.header("set-cookie").expect("a Set-Cookie").to_string();
        let value = set
            .strip_prefix("sticky=\"")
            .and_then(|s| s.strip_suffix("\"; Max-Age=3600; Path=/app; HttpOnly"))
            .unwrap_or_else(|| panic!("{lb}: {set}"));
        assert_eq!(value.len(), 16, "{set}");
        assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{set}");
        // The cookie sent back: the same endpoint every time, and none set again.
        let h = format!("cookie: a=1; sticky=\"{value}\"\r\n");
        let first = send(p.listen, "/", &h);
        assert!(first.header("set-cookie").is_none());
        for _ in 0..10 {
            assert_eq!(who(p.listen, "/", &h), first.body_str(), "{lb}");
        }
        // Without a ttl nothing is generated.
        drop(p);
        let p = Proxy::start(&config(&addrs, lb, "[{cookie: {name: sticky}}]", ""));
        assert!(send(p.listen, "/", "").header("set-cookie").is_none());
    }
}

#[test]
fn source_ip_and_query_parameter_policies() {
    let ups: Vec<Upstream> = (0..4).map(|i| named(i, 200)).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let p = Proxy::start_with(
        &config(
            &addrs,
            "maglev",
            "[{connection_properties: {source_ip: true}}]",
            "",
        ),
        2,
    );
    let first = who(p.listen, "/", "");
    for _ in 0..20 {
        assert_eq!(who(p.listen, "/", ""), first, "every client is 127.0.0.1");
    }
    drop(p);
    let p = Proxy::start_with(
        &config(
            &addrs,
            "ring_hash",
            "[{query_parameter: {name: user}, terminal: true}, {header: {header_name: x-other}}]",
            "",
        ),
        2,
    );
    let mut used = BTreeSet::new();
    for k in 0..16 {
        let path = format!("/x?a=1&user=u{k}");
        let first = who(p.listen, &path, "");
        for j in 0..4 {
            // `terminal`: the header after it changes nothing.
            let h = format!("x-other: {j}\r\n");
            assert_eq!(who(p.listen, &path, &h), first, "key u{k}");
        }
        used.insert(first);
    }
    assert!(used.len() >= 3, "{used:?}");
}

#[test]
fn an_unhealthy_endpoint_is_skipped() {
    let mut ups: Vec<Upstream> = (0..3).map(|i| named(i, 200)).collect();
    ups.push(named(9, 503));
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let check = "    health_checks:
      - timeout: 1s
        interval: 0.1s
        no_traffic_interval: 0.1s
        unhealthy_threshold: 1
        healthy_threshold: 1
        http_health_check: {path: /healthz}
";
    for lb in LBS {
        let mut cfg = config(&addrs, lb, "[{header: {header_name: x-user}}]", "");
        cfg.push_str(check);
        let p = Proxy::start_with(&cfg, 2);
        // Every key answered by a healthy endpoint once the checks have run.
        let settled = wait_until(Duration::from_secs(20), || {
            (0..40)
                .all(|k| send(p.listen, "/", &format!("x-user: k{k}\r\n")).status == 200)
                .then_some(())
        });
        assert!(
            settled.is_some(),
            "{lb}: keys still reach the failing endpoint"
        );
        for k in 0..40 {
            let h = format!("x-user: k{k}\r\n");
            for _ in 0..3 {
                assert_ne!(who(p.listen, "/", &h), "up-9", "{lb}");
            }
        }
    }
}
