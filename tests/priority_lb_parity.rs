//! The same Envoy bootstrap with priority levels, EDS-style health statuses, an
//! overprovisioning factor and locality weights, handed to Envoy 1.40 and to
//! Outrigger, against the same four upstreams that answer with their names: each
//! endpoint's share of a bounded number of requests must match Envoy's (within a
//! sampling bound: Envoy draws the priority at random) and Envoy's arithmetic.

mod common;

use std::net::SocketAddr;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

const REQUESTS: usize = 600;
/// Allowed difference of two shares: the priority draw's spread over 600 requests has
/// a standard deviation under 0.03 for each proxy.
const TOLERANCE: f64 = 0.09;

fn named(i: usize) -> Upstream {
    Upstream::start(fixed(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nup-{i}"
    )))
}

/// `groups`: per `LocalityLbEndpoints`, its extra fields (priority, locality, weight)
/// and its endpoints as `(upstream index, health_status)`.
fn bootstrap(
    ups: &[SocketAddr],
    cluster_extra: &str,
    policy: &str,
    groups: &[(&str, &[(usize, &str)])],
) -> String {
    let mut eps = String::new();
    for (extra, members) in groups {
        eps.push_str(&format!("      - {extra}\n        lb_endpoints:\n"));
        for (i, health) in *members {
            eps.push_str(&format!(
                "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}\n          health_status: {health}\n",
                ups[*i].port()
            ));
        }
    }
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
                route: {{ cluster: up }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
{cluster_extra}    load_assignment:
      cluster_name: up
{policy}      endpoints:
{eps}"#
    )
}

struct Case {
    name: &'static str,
    cluster_extra: &'static str,
    policy: &'static str,
    groups: &'static [(&'static str, &'static [(usize, &'static str)])],
    /// Envoy's arithmetic: each upstream's expected share.
    expected: [f64; 4],
}

const CASES: &[Case] = &[
    Case {
        name: "half of P0 unhealthy: 70% stays, 30% spills to P1",
        cluster_extra: "",
        policy: "",
        groups: &[
            ("priority: 0", &[(0, "HEALTHY"), (1, "UNHEALTHY")]),
            ("priority: 1", &[(2, "HEALTHY"), (3, "HEALTHY")]),
        ],
        expected: [0.70, 0.0, 0.15, 0.15],
    },
    Case {
        name: "overprovisioning factor 100: half of P0 keeps 50%",
        cluster_extra: "",
        policy: "      policy: { overprovisioning_factor: 100 }\n",
        groups: &[
            ("priority: 0", &[(0, "UNKNOWN"), (1, "UNHEALTHY")]),
            ("priority: 1", &[(2, "HEALTHY"), (3, "HEALTHY")]),
        ],
        expected: [0.5, 0.0, 0.25, 0.25],
    },
    Case {
        name: "a draining P0 endpoint is excluded (not counted)",
        cluster_extra: "    lb_policy: RANDOM\n",
        policy: "",
        groups: &[
            ("priority: 0", &[(0, "HEALTHY"), (1, "DRAINING")]),
            ("priority: 1", &[(2, "HEALTHY"), (3, "HEALTHY")]),
        ],
        expected: [1.0, 0.0, 0.0, 0.0],
    },
    Case {
        name: "P0 entirely unhealthy, least request: all on P1",
        cluster_extra: "    lb_policy: LEAST_REQUEST\n",
        policy: "",
        groups: &[
            ("priority: 0", &[(0, "UNHEALTHY"), (1, "TIMEOUT")]),
            ("priority: 1", &[(2, "HEALTHY"), (3, "HEALTHY")]),
        ],
        expected: [0.0, 0.0, 0.5, 0.5],
    },
    Case {
        name: "locality weights 3:1",
        cluster_extra: "    common_lb_config: { locality_weighted_lb_config: {} }\n",
        policy: "",
        groups: &[
            (
                "locality: { region: a }\n        load_balancing_weight: 3",
                &[(0, "HEALTHY"), (1, "HEALTHY")],
            ),
            (
                "locality: { region: b }\n        load_balancing_weight: 1",
                &[(2, "HEALTHY"), (3, "HEALTHY")],
            ),
        ],
        expected: [0.375, 0.375, 0.125, 0.125],
    },
    Case {
        name: "locality weights with half of a unhealthy: 2.1 to 1",
        cluster_extra: "    common_lb_config: { locality_weighted_lb_config: {} }\n",
        policy: "",
        groups: &[
            (
                "locality: { region: a }\n        load_balancing_weight: 3",
                &[(0, "UNHEALTHY"), (1, "HEALTHY")],
            ),
            (
                "locality: { region: b }\n        load_balancing_weight: 1",
                &[(2, "HEALTHY"), (3, "HEALTHY")],
            ),
        ],
        expected: [0.0, 2.1 / 3.1, 0.5 / 3.1, 0.5 / 3.1],
    },
];

/// Each upstream's share of `REQUESTS` requests.
fn shares(addr: SocketAddr) -> [f64; 4] {
    let mut n = [0usize; 4];
    for _ in 0..REQUESTS {
        let r = exchange(
            addr,
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200, "{}", r.body_str());
        let body = r.body_str();
        let i: usize = body
            .strip_prefix("up-")
            .and_then(|d| d.parse().ok())
            .unwrap();
        n[i] += 1;
    }
    n.map(|c| c as f64 / REQUESTS as f64)
}

fn close(a: &[f64; 4], b: &[f64; 4]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= TOLERANCE)
}

#[test]
fn per_endpoint_split_matches_envoy() {
    let Some(bin) = envoy_or_skip("per_endpoint_split_matches_envoy") else {
        return;
    };
    let ups: Vec<Upstream> = (0..4).map(named).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let mut diffs = Vec::new();
    for c in CASES {
        let b = bootstrap(&addrs, c.cluster_extra, c.policy, c.groups);
        let envoy = Envoy::start(&bin, &b);
        let from_envoy = shares(envoy.listen);
        drop(envoy);
        let proxy = Proxy::start_with(&b, 2);
        let from_outrigger = shares(proxy.listen);
        if !close(&from_envoy, &c.expected) {
            diffs.push(format!(
                "{}: Envoy {from_envoy:?}, arithmetic {:?}",
                c.name, c.expected
            ));
        }
        if !close(&from_envoy, &from_outrigger) || !close(&from_outrigger, &c.expected) {
            diffs.push(format!(
                "{}: Envoy {from_envoy:?}, Outrigger {from_outrigger:?}, arithmetic {:?}",
                c.name, c.expected
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Slow start in both of Envoy's spellings (the typed policy's and the cluster's legacy
/// `least_request_lb_config`): both proxies accept it, and as every endpoint starts its
/// ramp together, the split stays even.
#[test]
fn slow_start_config_is_accepted_and_ramps_every_endpoint_alike() {
    let Some(bin) = envoy_or_skip("slow_start_config_is_accepted_and_ramps_every_endpoint_alike")
    else {
        return;
    };
    let ups: Vec<Upstream> = (0..4).map(named).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let all: &[(&str, &[(usize, &str)])] = &[(
        "priority: 0",
        &[
            (0, "HEALTHY"),
            (1, "HEALTHY"),
            (2, "HEALTHY"),
            (3, "HEALTHY"),
        ],
    )];
    let typed = r#"    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: envoy.load_balancing_policies.round_robin
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin
            slow_start_config: { slow_start_window: 60s, aggression: { default_value: 2.0, runtime_key: a }, min_weight_percent: { value: 20 } }
"#;
    let legacy = "    lb_policy: LEAST_REQUEST\n    least_request_lb_config: { slow_start_config: { slow_start_window: 60s } }\n";
    let mut diffs = Vec::new();
    for extra in [typed, legacy] {
        let b = bootstrap(&addrs, extra, "", all);
        let envoy = Envoy::start(&bin, &b);
        let from_envoy = shares(envoy.listen);
        drop(envoy);
        let proxy = Proxy::start_with(&b, 2);
        let from_outrigger = shares(proxy.listen);
        let even = [0.25; 4];
        if !close(&from_envoy, &even) || !close(&from_outrigger, &even) {
            diffs.push(format!(
                "{extra}: Envoy {from_envoy:?}, Outrigger {from_outrigger:?}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
