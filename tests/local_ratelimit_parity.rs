//! One Envoy bootstrap with the local rate-limit filter, run through Envoy 1.40 and
//! through Outrigger (two workers): the same requests get the same statuses, bodies and
//! `x-ratelimit-*` and configured headers, the same numbers are admitted, and the
//! counters under Envoy's names agree; the descriptors read Envoy's downstream remote
//! address (after `x-forwarded-for`), masked or not, and the route's cluster. Skips, saying why, without the Envoy binary.

mod common;

use std::net::SocketAddr;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

const BOOTSTRAP: &str = r#"
admin: { address: { socket_address: { address: 127.0.0.1, port_value: @ADMIN_PORT@ } } }
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: @PORT@ } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: /desc }
                route:
                  cluster: backend
                  rate_limits:
                  - actions:
                    - generic_key: { descriptor_value: api }
                    - request_headers: { header_name: x-user, descriptor_key: user }
              - match: { prefix: /addr }
                route:
                  cluster: backend
                  rate_limits:
                  - actions: [{ remote_address: {} }]
                  - actions: [{ masked_remote_address: { v4_prefix_mask_len: 24 } }]
                typed_per_filter_config:
                  rl:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                    stat_prefix: addr_rl
                    token_bucket: { max_tokens: 100, tokens_per_fill: 1, fill_interval: 60s }
                    filter_enabled: { default_value: { numerator: 100 } }
                    filter_enforced: { default_value: { numerator: 100 } }
                    descriptors:
                    - entries: [{ key: remote_address, value: 10.0.0.9 }]
                      token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 60s }
                    - entries: [{ key: masked_remote_address, value: 10.0.1.0/24 }]
                      token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 60s }
              - match: { prefix: /dest }
                route:
                  weighted_clusters: { clusters: [{ name: backend, weight: 1 }] }
                  rate_limits:
                  - actions: [{ destination_cluster: {} }]
                typed_per_filter_config:
                  rl:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                    stat_prefix: dest_rl
                    token_bucket: { max_tokens: 100, tokens_per_fill: 1, fill_interval: 60s }
                    filter_enabled: { default_value: { numerator: 100 } }
                    filter_enforced: { default_value: { numerator: 100 } }
                    descriptors:
                    - entries: [{ key: destination_cluster, value: backend }]
                      token_bucket: { max_tokens: 2, tokens_per_fill: 1, fill_interval: 60s }
              - match: { prefix: /hv }
                route:
                  cluster: backend
                  rate_limits:
                  - actions:
                    - header_value_match:
                        descriptor_value: vip
                        headers: [{ name: x-vip, string_match: { exact: "1" } }]
                  - actions:
                    - header_value_match:
                        descriptor_key: nonvip
                        descriptor_value: "yes"
                        expect_match: false
                        headers: [{ name: x-vip, present_match: true }]
                  - actions:
                    - query_parameter_value_match:
                        descriptor_value: dbg
                        query_parameters: [{ name: debug, string_match: { exact: "1" } }]
                typed_per_filter_config:
                  rl:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                    stat_prefix: match_rl
                    token_bucket: { max_tokens: 100, tokens_per_fill: 1, fill_interval: 60s }
                    filter_enabled: { default_value: { numerator: 100 } }
                    filter_enforced: { default_value: { numerator: 100 } }
                    descriptors:
                    - entries: [{ key: header_match, value: vip }]
                      token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 60s }
                    - entries: [{ key: nonvip, value: "yes" }]
                      token_bucket: { max_tokens: 2, tokens_per_fill: 1, fill_interval: 60s }
                    - entries: [{ key: query_match, value: dbg }]
                      token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 60s }
              - match: { prefix: /route }
                direct_response: { status: 200, body: { inline_string: ok } }
                typed_per_filter_config:
                  rl:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                    stat_prefix: route_rl
                    token_bucket: { max_tokens: 2, tokens_per_fill: 1, fill_interval: 5s }
                    filter_enabled: { default_value: { numerator: 100 } }
                    filter_enforced: { default_value: { numerator: 100 } }
                    enable_x_ratelimit_headers: DRAFT_VERSION_03
                    status: { code: ServiceUnavailable }
              - match: { prefix: /off }
                direct_response: { status: 200, body: { inline_string: ok } }
                typed_per_filter_config:
                  rl:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - match: { prefix: / }
                direct_response: { status: 200, body: { inline_string: ok } }
          http_filters:
          - name: rl
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: lim
              token_bucket: { max_tokens: 6, tokens_per_fill: 6, fill_interval: 120s }
              filter_enabled: { default_value: { numerator: 100 } }
              filter_enforced: { default_value: { numerator: 100 } }
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              response_headers_to_add: [{ header: { key: x-limited, value: "yes" } }]
              descriptors:
              - entries: [{ key: generic_key, value: api }, { key: user, value: alice }]
                token_bucket: { max_tokens: 2, tokens_per_fill: 1, fill_interval: 60s }
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: @UP@ } } }
"#;

/// What is compared of one answer.
type Seen = (u16, String, Vec<(String, String)>);

fn observe(addr: SocketAddr) -> Vec<(String, Seen)> {
    let cases: &[(&str, &str)] = &[
        ("/desc", "alice"),
        ("/desc", "alice"),
        ("/desc", "alice"),
        ("/desc", "bob"),
        ("/route", ""),
        ("/route", ""),
        ("/route", ""),
        ("/off", ""),
        ("/", ""),
        ("/", ""),
        ("/", ""),
        ("/", ""),
        ("/off", ""),
        // Envoy's downstream remote address (no `use_remote_address`: the last
        // `x-forwarded-for` entry), whole and masked to /24; the route's cluster.
        ("/addr", "x-forwarded-for: 1.1.1.1, 10.0.0.9"),
        ("/addr", "x-forwarded-for: 10.0.0.9"),
        ("/addr", "x-forwarded-for: 10.0.0.8"),
        ("/addr", "x-forwarded-for: 10.0.1.5"),
        ("/addr", "x-forwarded-for: 10.0.1.6"),
        ("/addr", ""),
        ("/dest", ""),
        ("/dest", ""),
        ("/dest", ""),
        // header_value_match (and with expect_match: false), query_parameter_value_match.
        ("/hv", "x-vip: 1"),
        ("/hv", "x-vip: 1"),
        ("/hv?debug=1", "x-vip: 2"),
        ("/hv?debug=1", "x-vip: 2"),
        ("/hv", ""),
        ("/hv", ""),
        ("/hv", ""),
    ];
    let mut c = Conn::connect(addr);
    let mut out = Vec::new();
    for (path, user) in cases {
        let h = if user.is_empty() {
            String::new()
        } else if user.contains(':') {
            format!("{user}\r\n")
        } else {
            format!("x-user: {user}\r\n")
        };
        c.send(format!("GET {path} HTTP/1.1\r\nHost: a\r\n{h}\r\n"));
        let r = c.read_response().unwrap();
        let headers = [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "x-limited",
        ]
        .iter()
        .filter_map(|n| r.header(n).map(|v| (n.to_string(), v.to_string())))
        .collect();
        // The echo upstream's body names the connection and request id: not compared.
        let body = r.body_str();
        let body = if body.starts_with("method:") {
            "(the upstream's)".to_string()
        } else {
            body
        };
        out.push((format!("{path} {user}"), (r.status, body, headers)));
    }
    out
}

const COUNTERS: [&str; 8] = [
    "lim.http_local_rate_limit.enabled",
    "lim.http_local_rate_limit.enforced",
    "lim.http_local_rate_limit.ok",
    "lim.http_local_rate_limit.rate_limited",
    "route_rl.http_local_rate_limit.enabled",
    "route_rl.http_local_rate_limit.enforced",
    "route_rl.http_local_rate_limit.ok",
    "route_rl.http_local_rate_limit.rate_limited",
];

#[test]
fn the_local_rate_limit_behaves_alike() {
    let Some(bin) = envoy_or_skip("the_local_rate_limit_behaves_alike") else {
        return;
    };
    let up = Upstream::echo();
    let text = BOOTSTRAP.replace("@UP@", &up.addr.port().to_string());
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = observe(envoy.listen);
    let stats = http_request(
        envoy.admin,
        "GET",
        "/stats",
        std::time::Duration::from_secs(5),
    )
    .unwrap()
    .body_str();
    let envoy_counters: Vec<u64> = COUNTERS
        .iter()
        .map(|c| {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{c}: ")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(u64::MAX)
        })
        .collect();
    drop(envoy);
    let proxy = Proxy::start_with(&text, 2);
    let ours = observe(proxy.listen);
    for (e, o) in from_envoy.iter().zip(&ours) {
        assert_eq!(o, e, "request {} (ours, then Envoy's)", e.0);
    }
    assert_eq!(ours.len(), from_envoy.len());
    let s = proxy.stats();
    let our_counters: Vec<u64> = COUNTERS
        .iter()
        .map(|c| s["counters"][c].as_u64().unwrap_or(u64::MAX))
        .collect();
    assert_eq!(our_counters, envoy_counters, "{COUNTERS:?}");
}
