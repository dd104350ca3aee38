//! The same Envoy bootstrap with a ring hash or Maglev cluster and route hash
//! policies, handed to Envoy 1.40 and to Outrigger, against the same four weighted
//! upstreams (each answers with its own name): for each key, the endpoint it lands
//! on must be the one Envoy picks, as both build the ring / table from the endpoints'
//! `ip:port` with xxHash64 and hash the key with xxHash64. The `Set-Cookie` of a
//! generated cookie is compared with its value masked (it hashes the client's port).

mod common;

use std::net::SocketAddr;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

fn named(i: usize) -> Upstream {
    Upstream::start(fixed(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nup-{i}"
    )))
}

fn bootstrap(ups: &[SocketAddr], weights: &[u32], lb: &str, hash_policy: &str) -> String {
    let eps: String = ups
        .iter()
        .zip(weights)
        .map(|(a, w)| {
            format!(
                "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}\n          load_balancing_weight: {w}\n",
                a.port()
            )
        })
        .collect();
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
                route:
                  cluster: up
                  hash_policy: {hash_policy}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
{lb}    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
{eps}"#
    )
}

struct Case {
    name: &'static str,
    lb: &'static str,
    hash_policy: &'static str,
    /// `(path, extra header lines)` per request.
    requests: fn() -> Vec<(String, String)>,
}

fn users() -> Vec<(String, String)> {
    (0..48)
        .map(|k| ("/".to_string(), format!("x-user: user-{k}\r\n")))
        .collect()
}

fn two_headers() -> Vec<(String, String)> {
    (0..24)
        .map(|k| {
            (
                "/".to_string(),
                format!("x-user: u{k}\r\nx-tenant: t{}\r\n", k % 5),
            )
        })
        .collect()
}

fn multi_valued() -> Vec<(String, String)> {
    (0..24)
        .map(|k| ("/".to_string(), format!("x-user: b{k}\r\nx-user: a{k}\r\n")))
        .collect()
}

fn queries() -> Vec<(String, String)> {
    (0..32)
        .map(|k| (format!("/p?z=1&user=q{k}&user=other"), String::new()))
        .collect()
}

fn cookies() -> Vec<(String, String)> {
    (0..32)
        .map(|k| ("/".to_string(), format!("cookie: a=1; sid=\"s{k}\"\r\n")))
        .collect()
}

fn fresh() -> Vec<(String, String)> {
    vec![("/".to_string(), String::new())]
}

const RING: &str = "    lb_policy: RING_HASH\n";
const RING_SMALL: &str =
    "    lb_policy: RING_HASH\n    ring_hash_lb_config: { minimum_ring_size: 64, maximum_ring_size: 256 }\n";
const MAGLEV: &str = "    lb_policy: MAGLEV\n";
const MAGLEV_SMALL: &str = "    lb_policy: MAGLEV\n    maglev_lb_config: { table_size: 251 }\n";

const TYPED_RING: &str = r#"    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: envoy.load_balancing_policies.ring_hash
          typed_config: {"@type": type.googleapis.com/envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash, minimum_ring_size: 128}
"#;
const TYPED_MAGLEV: &str = r#"    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: envoy.load_balancing_policies.maglev
          typed_config: {"@type": type.googleapis.com/envoy.extensions.load_balancing_policies.maglev.v3.Maglev, table_size: 1021}
"#;

const CASES: &[Case] = &[
    Case {
        name: "typed ring hash policy, header",
        lb: TYPED_RING,
        hash_policy: "[{header: {header_name: x-user}}]",
        requests: users,
    },
    Case {
        name: "typed maglev policy, header",
        lb: TYPED_MAGLEV,
        hash_policy: "[{header: {header_name: x-user}}]",
        requests: users,
    },
    Case {
        name: "ring hash, header",
        lb: RING,
        hash_policy: "[{header: {header_name: x-user}}]",
        requests: users,
    },
    Case {
        name: "ring hash (small ring), header",
        lb: RING_SMALL,
        hash_policy: "[{header: {header_name: x-user}}]",
        requests: users,
    },
    Case {
        name: "maglev, header",
        lb: MAGLEV,
        hash_policy: "[{header: {header_name: x-user}}]",
        requests: users,
    },
    Case {
        name: "maglev (small table), header",
        lb: MAGLEV_SMALL,
        hash_policy: "[{header: {header_name: x-user}}]",
        requests: users,
    },
    Case {
        name: "ring hash, two headers combined",
        lb: RING,
        hash_policy: "[{header: {header_name: x-user}}, {header: {header_name: x-tenant}}]",
        requests: two_headers,
    },
    Case {
        name: "ring hash, a header with two values",
        lb: RING,
        hash_policy: "[{header: {header_name: x-user}}]",
        requests: multi_valued,
    },
    Case {
        name: "maglev, query parameter",
        lb: MAGLEV,
        hash_policy: "[{query_parameter: {name: user}}]",
        requests: queries,
    },
    Case {
        name: "ring hash, cookie",
        lb: RING,
        hash_policy: "[{cookie: {name: sid}}]",
        requests: cookies,
    },
    Case {
        name: "maglev, terminal header before source ip",
        lb: MAGLEV,
        hash_policy: "[{header: {header_name: x-user}, terminal: true}, {connection_properties: {source_ip: true}}]",
        requests: users,
    },
    Case {
        name: "ring hash, source ip",
        lb: RING,
        hash_policy: "[{connection_properties: {source_ip: true}}]",
        requests: fresh,
    },
];

/// Each request's `(upstream, Set-Cookie with its 16 hex digits masked)`.
fn run(addr: SocketAddr, requests: &[(String, String)]) -> Vec<(String, Option<String>)> {
    requests
        .iter()
        .map(|(path, headers)| {
            let r = exchange(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: h\r\n{headers}Connection: close\r\n\r\n"),
            );
            // The value hashes the client's port: masked.
            let cookie = r.header("set-cookie").map(|c| {
                let parts = c
                    .split_once("=\"")
                    .and_then(|(n, rest)| Some((n, rest.split_once('"')?)));
                match parts {
                    Some((n, (v, tail)))
                        if v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit()) =>
                    {
                        format!("{n}=\"<hex16>\"{tail}")
                    }
                    _ => c.to_string(),
                }
            });
            (format!("{} {}", r.status, r.body_str()), cookie)
        })
        .collect()
}

#[test]
fn keys_land_on_the_endpoints_envoy_picks() {
    let Some(bin) = envoy_or_skip("keys_land_on_the_endpoints_envoy_picks") else {
        return;
    };
    let ups: Vec<Upstream> = (0..4).map(named).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let weights = [1, 2, 3, 1];
    let mut diffs = Vec::new();
    for c in CASES {
        let b = bootstrap(&addrs, &weights, c.lb, c.hash_policy);
        let requests = (c.requests)();
        let envoy = Envoy::start(&bin, &b);
        let from_envoy = run(envoy.listen, &requests);
        drop(envoy);
        let proxy = Proxy::start_with(&b, 2);
        let from_outrigger = run(proxy.listen, &requests);
        let spread: std::collections::BTreeSet<&String> =
            from_envoy.iter().map(|(u, _)| u).collect();
        if requests.len() > 1 {
            assert!(spread.len() >= 3, "{}: keys spread over {spread:?}", c.name);
        }
        if from_envoy != from_outrigger {
            diffs.push(format!(
                "{}:\n  Envoy:     {from_envoy:?}\n  Outrigger: {from_outrigger:?}",
                c.name
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn a_generated_cookie_has_envoys_shape() {
    let Some(bin) = envoy_or_skip("a_generated_cookie_has_envoys_shape") else {
        return;
    };
    let ups: Vec<Upstream> = (0..4).map(named).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let b = bootstrap(
        &addrs,
        &[1, 1, 1, 1],
        RING,
        "[{cookie: {name: sticky, ttl: 600s, path: /shop}}]",
    );
    let envoy = Envoy::start(&bin, &b);
    let from_envoy: Vec<Option<String>> = run(envoy.listen, &fresh())
        .into_iter()
        .map(|r| r.1)
        .collect();
    drop(envoy);
    let proxy = Proxy::start_with(&b, 2);
    let from_outrigger: Vec<Option<String>> = run(proxy.listen, &fresh())
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(
        from_envoy,
        vec![Some(
            "sticky=\"<hex16>\"; Max-Age=600; Path=/shop; HttpOnly".to_string()
        )]
    );
    assert_eq!(from_envoy, from_outrigger);
}
