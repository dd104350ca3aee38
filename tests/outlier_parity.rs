//! The same Envoy bootstrap with `outlier_detection` on a two-endpoint cluster (one
//! answering 200, the other failing), handed to Envoy 1.40 and to Outrigger: case by
//! case, once the detector has acted, where the next requests go, what the client
//! got, the `outlier_detection.*` counters, the failing endpoint's health flags in
//! `/clusters`, and whether it comes back after its ejection time. Counts that depend
//! on how fast the ejection reaches the workers (how many requests the failing
//! endpoint got before) are not compared.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

fn bootstrap(good: &[SocketAddr], bad: SocketAddr, outlier: &str) -> String {
    let ep = |a: SocketAddr| {
        format!(
            "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}\n",
            a.port()
        )
    };
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: up, timeout: 10s }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    outlier_detection: {outlier}
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
{good}{bad}"#,
        good = good.iter().map(|a| ep(*a)).collect::<String>(),
        bad = ep(bad),
    )
}

const STATS: [&str; 14] = [
    "ejections_active",
    "ejections_enforced_total",
    "ejections_enforced_consecutive_5xx",
    "ejections_enforced_consecutive_gateway_failure",
    "ejections_enforced_consecutive_local_origin_failure",
    "ejections_detected_consecutive_5xx",
    "ejections_detected_consecutive_gateway_failure",
    "ejections_detected_consecutive_local_origin_failure",
    "ejections_overflow",
    "ejections_total",
    "ejections_enforced_success_rate",
    "ejections_detected_success_rate",
    "ejections_enforced_failure_percentage",
    "ejections_detected_failure_percentage",
];

/// Envoy's `cluster.up.outlier_detection.<name>`.
fn envoy_stat(admin: SocketAddr, name: &str) -> u64 {
    common::envoy::stat(admin, &format!("cluster.up.outlier_detection.{name}")).unwrap_or(0)
}

/// Envoy's `/clusters` line `up::<addr>::health_flags::<flags>`.
fn envoy_flags(admin: SocketAddr, addr: SocketAddr) -> String {
    let r = exchange(
        admin,
        "GET /clusters HTTP/1.1\r\nHost: a\r\nconnection: close\r\n\r\n",
    );
    let want = format!("up::{addr}::health_flags::");
    r.body_str()
        .lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn our_stat(p: &Proxy, name: &str) -> u64 {
    p.cluster_stats("up")["outlier_detection"][name]
        .as_u64()
        .unwrap_or(0)
}

fn our_flags(p: &Proxy, addr: SocketAddr) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&p.admin_get("/clusters?format=json").body_str()).unwrap();
    v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "up")
        .flat_map(|c| c["endpoints"].as_array().unwrap().clone())
        .find(|e| e["address"] == addr.to_string())
        .and_then(|e| e["health_flags"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[derive(Debug, PartialEq)]
struct Seen {
    /// The detector acted within the bounded number of requests.
    acted: bool,
    /// Statuses of the ten requests after it acted, sorted (which endpoint round robin
    /// starts at differs: Envoy starts at a random one, and Outrigger's workers each
    /// keep their own position).
    statuses: Vec<u16>,
    /// How many of those ten the good endpoint got.
    to_good: usize,
    stats: Vec<(&'static str, u64)>,
    flags: String,
    /// The failing endpoint was healthy again within the wait (cases that expect it).
    back: Option<bool>,
}

struct Case {
    name: &'static str,
    outlier: &'static str,
    /// The stat that says the detector acted.
    until: &'static str,
    /// The failing endpoint: a 503 upstream, or a refused port.
    refused: bool,
    /// Wait for the endpoint to come back.
    back: bool,
    /// Endpoints answering 200 (the failing one comes last).
    goods: usize,
}

fn run(
    listen: SocketAddr,
    good: &[Upstream],
    bad: SocketAddr,
    case: &Case,
    stat: &dyn Fn(&str) -> u64,
    flags: &dyn Fn(SocketAddr) -> String,
) -> Seen {
    let mut acted = false;
    // Bounded by time, not by count: the interval detectors act at an interval's end,
    // however many requests fit in it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if stat(case.until) > 0 {
            acted = true;
            break;
        }
        get(listen, "x", "/work");
    }
    let count = || good.iter().map(Upstream::request_count).sum::<usize>();
    let before = count();
    let mut statuses: Vec<u16> = (0..10).map(|_| get(listen, "x", "/work").status).collect();
    statuses.sort_unstable();
    let to_good = count() - before;
    let stats = STATS.iter().map(|n| (*n, stat(n))).collect();
    let flags_now = flags(bad);
    let back = case.back.then(|| {
        wait_until(Duration::from_secs(15), || {
            (flags(bad) == "healthy").then_some(())
        })
        .is_some()
    });
    Seen {
        acted,
        statuses,
        to_good,
        stats,
        flags: flags_now,
        back,
    }
}

#[test]
fn envoy_and_outrigger_eject_outliers_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_eject_outliers_alike") else {
        return;
    };
    let cases = [
        Case {
            name: "consecutive_5xx ejects the failing endpoint within max_ejection_percent",
            outlier: "{ consecutive_5xx: 3, interval: 1s, base_ejection_time: 60s, max_ejection_percent: 50 }",
            until: "ejections_active",
            refused: false,
            back: false,
            goods: 1,
        },
        Case {
            name: "the default max_ejection_percent (10%) of two endpoints overflows",
            outlier: "{ consecutive_5xx: 3, interval: 1s }",
            until: "ejections_overflow",
            refused: false,
            back: false,
            goods: 1,
        },
        Case {
            name: "always_eject_one_host ejects the first one whatever the percentage",
            outlier: "{ consecutive_5xx: 3, interval: 1s, base_ejection_time: 60s, always_eject_one_host: true }",
            until: "ejections_active",
            refused: false,
            back: false,
            goods: 1,
        },
        Case {
            name: "enforcing_consecutive_5xx: 0 detects without ejecting",
            outlier: "{ consecutive_5xx: 3, enforcing_consecutive_5xx: 0, interval: 1s, max_ejection_percent: 50 }",
            until: "ejections_detected_consecutive_5xx",
            refused: false,
            back: false,
            goods: 1,
        },
        Case {
            name: "gateway failures eject when enforced",
            outlier: "{ consecutive_5xx: 1000, consecutive_gateway_failure: 2, enforcing_consecutive_gateway_failure: 100, interval: 1s, base_ejection_time: 60s, max_ejection_percent: 50 }",
            until: "ejections_active",
            refused: false,
            back: false,
            goods: 1,
        },
        Case {
            name: "a refused endpoint is a 503 for consecutive_5xx without the split",
            outlier: "{ consecutive_5xx: 2, interval: 1s, base_ejection_time: 60s, max_ejection_percent: 50 }",
            until: "ejections_active",
            refused: true,
            back: false,
            goods: 1,
        },
        Case {
            name: "with the split, a refused endpoint is a local-origin failure",
            outlier: "{ split_external_local_origin_errors: true, consecutive_local_origin_failure: 2, consecutive_5xx: 1000, interval: 1s, base_ejection_time: 60s, max_ejection_percent: 50 }",
            until: "ejections_active",
            refused: true,
            back: false,
            goods: 1,
        },
        Case {
            name: "the ejected endpoint comes back after base_ejection_time",
            outlier: "{ consecutive_5xx: 3, interval: 0.1s, base_ejection_time: 0.3s, max_ejection_percent: 50 }",
            until: "ejections_active",
            refused: false,
            back: true,
            goods: 1,
        },
        Case {
            name: "failure percentage ejects the endpoint failing every request",
            outlier: "{ consecutive_5xx: 1000, consecutive_gateway_failure: 1000, interval: 0.5s, base_ejection_time: 60s, max_ejection_percent: 20, enforcing_failure_percentage: 100, failure_percentage_request_volume: 2, success_rate_request_volume: 100000 }",
            until: "ejections_active",
            refused: false,
            back: false,
            goods: 4,
        },
        Case {
            name: "success rate ejects the endpoint far below the others",
            outlier: "{ consecutive_5xx: 1000, consecutive_gateway_failure: 1000, interval: 0.5s, base_ejection_time: 60s, max_ejection_percent: 20, success_rate_request_volume: 2, failure_percentage_request_volume: 100000 }",
            until: "ejections_active",
            refused: false,
            back: false,
            goods: 4,
        },
    ];
    let mut diffs = Vec::new();
    for c in &cases {
        let failing = || (!c.refused).then(|| Upstream::start(status_oops(503)));
        let ok = || Upstream::start(fixed("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
        let goods = || (0..c.goods).map(|_| ok()).collect::<Vec<_>>();
        let addrs = |g: &[Upstream]| g.iter().map(|u| u.addr).collect::<Vec<_>>();
        let (good, bad_up) = (goods(), failing());
        let bad = bad_up.as_ref().map_or_else(refused_addr, |u| u.addr);
        let envoy = Envoy::start(&bin, &bootstrap(&addrs(&good), bad, c.outlier));
        let admin = envoy.admin;
        let from_envoy = run(
            envoy.listen,
            &good,
            bad,
            c,
            &|n| envoy_stat(admin, n),
            &|a| envoy_flags(admin, a),
        );
        drop(envoy);
        let (good, bad_up) = (goods(), failing());
        let bad = bad_up.as_ref().map_or_else(refused_addr, |u| u.addr);
        // One worker, as Envoy runs here: one round-robin position, so the good endpoint
        // gets every other request while both are in.
        let proxy = Proxy::start_with(&bootstrap(&addrs(&good), bad, c.outlier), 1);
        let from_outrigger = run(
            proxy.listen,
            &good,
            bad,
            c,
            &|n| our_stat(&proxy, n),
            &|a| our_flags(&proxy, a),
        );
        if from_envoy != from_outrigger {
            diffs.push(format!(
                "{}:\n  Envoy:     {from_envoy:?}\n  Outrigger: {from_outrigger:?}",
                c.name
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
