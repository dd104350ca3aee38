//! The same Envoy bootstrap with a retry policy, handed to Envoy 1.40 and to Outrigger:
//! case by case, the client's status, the `x-envoy-attempt-count` it got back, how
//! many tries the scripted upstream saw, and the access log's flags must be the same. Each case gets its own
//! upstream for each proxy, so the counts are each proxy's own.

mod common;

use std::net::SocketAddr;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

/// A bootstrap with one route to the upstream; `route_policy` goes under the route's
/// `route:` (indented to its fields), `vhost_extra` under the virtual host.
fn bootstrap(up: SocketAddr, route_policy: &str, vhost_extra: &str) -> String {
    bootstrap_with(up, route_policy, vhost_extra, false)
}

/// The connection manager of an `internal` bootstrap trusts loopback clients: their
/// `x-envoy-*` request headers are honoured (Envoy's `internal_address_config`).
const INTERNAL: &str = "          use_remote_address: true
          internal_address_config:
            cidr_ranges: [{address_prefix: 127.0.0.0, prefix_len: 8}]
";

fn bootstrap_with(up: SocketAddr, route_policy: &str, vhost_extra: &str, internal: bool) -> String {
    let hcm = if internal { INTERNAL } else { "" };
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
{hcm}          access_log:
          - name: log
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "@DIR@/access.log"
              log_format: {{ text_format_source: {{ inline_string: "%RESPONSE_FLAGS%\n" }} }}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
{vhost_extra}              routes:
              - match: {{ prefix: / }}
                route:
                  cluster: up
                  timeout: 5s
{route_policy}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#,
        port = up.port()
    )
}

/// A trailers-only gRPC answer with `code` (its `grpc-status` in the head).
fn grpc_status(code: u8) -> Handler {
    fixed(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: {code}\r\ncontent-length: 0\r\n\r\n"
    ))
}

fn route_policy(lines: &str) -> String {
    let mut out = String::from("                  retry_policy:\n");
    for l in lines.lines() {
        out.push_str("                    ");
        out.push_str(l);
        out.push('\n');
    }
    out
}

struct Case {
    name: &'static str,
    upstream: fn() -> Handler,
    route: &'static str,
    vhost: &'static str,
    request_headers: &'static str,
    /// The client is internal (`INTERNAL`).
    internal: bool,
}

/// What one proxy did with one case.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    attempt_count: Option<String>,
    tries: usize,
    /// The access log's `%RESPONSE_FLAGS%` (`UC,URX` when the retries ran out on a reset).
    flags: String,
}

fn run(addr: SocketAddr, up: &Upstream, c: &Case, log: &std::path::Path) -> Seen {
    let req = format!(
        "GET /x HTTP/1.1\r\nHost: svc\r\n{}connection: close\r\n\r\n",
        c.request_headers
    );
    let mut conn = Conn::connect(addr);
    conn.send(&req);
    let r = conn.read_response().expect("a response");
    Seen {
        status: r.status,
        attempt_count: r.header("x-envoy-attempt-count").map(str::to_string),
        tries: up.request_count(),
        flags: wait_until(std::time::Duration::from_secs(5), || {
            read_lossy(log).lines().next().map(str::to_string)
        })
        .unwrap_or_default(),
    }
}

#[test]
fn envoy_and_outrigger_retry_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_retry_alike") else {
        return;
    };
    let cases = [
        Case {
            name: "5xx retried until it succeeds",
            upstream: || fail_first(2, status_oops(503)),
            route: "retry_on: 5xx\nnum_retries: 2\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "retries exhausted: the last 503 goes to the client",
            upstream: || status_oops(503),
            route: "retry_on: 5xx\nnum_retries: 1\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "gateway-error does not retry a 500",
            upstream: || fail_first(1, status_oops(500)),
            route: "retry_on: gateway-error",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "gateway-error retries a 502",
            upstream: || fail_first(1, status_oops(502)),
            route: "retry_on: gateway-error\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "retriable-status-codes",
            upstream: || fail_first(1, status_oops(409)),
            route: "retry_on: retriable-status-codes\nretriable_status_codes: [409]\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "retriable-4xx retries only a 409",
            upstream: || fail_first(1, status_oops(404)),
            route: "retry_on: retriable-4xx",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "reset: a connection closed before the response",
            upstream: || fail_first(1, close_without_response()),
            route: "retry_on: reset\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "reset: the retries run out (UC,URX)",
            upstream: close_without_response,
            route: "retry_on: reset\nnum_retries: 1\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "gRPC cancelled: a trailers-only grpc-status 1 is retried",
            upstream: || fail_first(1, grpc_status(1)),
            route: "retry_on: cancelled\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "gRPC deadline-exceeded: a trailers-only grpc-status 4 is retried",
            upstream: || fail_first(1, grpc_status(4)),
            route: "retry_on: deadline-exceeded\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "gRPC resource-exhausted: a trailers-only grpc-status 8 is retried",
            upstream: || fail_first(1, grpc_status(8)),
            route: "retry_on: resource-exhausted\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "gRPC internal: a trailers-only grpc-status 13 is retried",
            upstream: || fail_first(1, grpc_status(13)),
            route: "retry_on: internal\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "gRPC: unavailable is not retried under cancelled,deadline-exceeded",
            upstream: || fail_first(1, grpc_status(14)),
            route: "retry_on: cancelled,deadline-exceeded\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "x-envoy-retry-grpc-on from an internal client",
            upstream: || fail_first(1, grpc_status(4)),
            route: "",
            vhost: "",
            request_headers: "x-envoy-retry-grpc-on: deadline-exceeded\r\n",
            internal: true,
        },
        Case {
            name: "the virtual host's policy, with the attempt count in the response",
            upstream: || fail_first(1, status_oops(503)),
            route: "",
            vhost: "              retry_policy: { retry_on: 5xx, retry_back_off: { base_interval: 0.001s } }\n              include_attempt_count_in_response: true\n",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "x-envoy-retry-on from an untrusted client is ignored",
            upstream: || fail_first(1, status_oops(503)),
            route: "",
            vhost: "",
            request_headers: "x-envoy-retry-on: 5xx\r\n",
            internal: false,
        },
        Case {
            name: "x-envoy-max-retries from an untrusted client is ignored",
            upstream: || fail_first(2, status_oops(503)),
            route: "retry_on: 5xx\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "x-envoy-max-retries: 3\r\n",
            internal: false,
        },
        Case {
            name: "retriable_request_headers: a GET is retried when the route names GET",
            upstream: || fail_first(1, status_oops(503)),
            route: "retry_on: 5xx\nretry_back_off: { base_interval: 0.001s }\nretriable_request_headers: [{ name: \":method\", string_match: { exact: GET } }]",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "retriable_request_headers: a GET is not retried when the route names POST",
            upstream: || fail_first(1, status_oops(503)),
            route: "retry_on: 5xx\nretry_back_off: { base_interval: 0.001s }\nretriable_request_headers: [{ name: \":method\", string_match: { exact: POST } }, { name: x-retry-ok }]",
            vhost: "",
            request_headers: "",
            internal: false,
        },
        Case {
            name: "retriable_request_headers: a request header the route names",
            upstream: || fail_first(1, status_oops(503)),
            route: "retry_on: 5xx\nretry_back_off: { base_interval: 0.001s }\nretriable_request_headers: [{ name: \":method\", string_match: { exact: POST } }, { name: x-retry-ok }]",
            vhost: "",
            request_headers: "x-retry-ok: 1\r\n",
            internal: false,
        },
        Case {
            name: "x-envoy-retriable-header-names from an internal client",
            upstream: || fail_first(1, fixed("HTTP/1.1 200 OK\r\nx-try-again: no\r\ncontent-length: 2\r\n\r\nno")),
            route: "retry_on: retriable-headers\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "x-envoy-retriable-header-names: x-other, X-Try-Again\r\n",
            internal: true,
        },
        Case {
            name: "x-envoy-retriable-header-names from an external client is ignored",
            upstream: || fail_first(1, fixed("HTTP/1.1 200 OK\r\nx-try-again: no\r\ncontent-length: 2\r\n\r\nno")),
            route: "retry_on: retriable-headers\nretry_back_off: { base_interval: 0.001s }",
            vhost: "",
            request_headers: "x-envoy-retriable-header-names: x-try-again\r\nx-forwarded-for: 10.0.0.1\r\n",
            internal: false,
        },
    ];
    let mut diffs = Vec::new();
    for c in &cases {
        let route = if c.route.is_empty() {
            String::new()
        } else {
            route_policy(c.route)
        };
        let envoy_up = Upstream::start((c.upstream)());
        let envoy = Envoy::start(
            &bin,
            &bootstrap_with(envoy_up.addr, &route, c.vhost, c.internal),
        );
        let from_envoy = run(envoy.listen, &envoy_up, c, &envoy.dir.join("access.log"));
        drop(envoy);
        let ours_up = Upstream::start((c.upstream)());
        let proxy = Proxy::start(&bootstrap_with(ours_up.addr, &route, c.vhost, c.internal));
        let from_outrigger = run(proxy.listen, &ours_up, c, &proxy.dir.join("access.log"));
        // The gRPC cases do what they say (not only alike).
        if c.name.ends_with("is retried") {
            assert_eq!(from_outrigger.tries, 2, "{}", c.name);
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

/// Retry fields Outrigger does not implement are refused with their path, and a bad
/// value with the Envoy field that holds it.
#[test]
fn unsupported_retry_fields_are_refused_by_path() {
    let dir = TempDir::new("retry-refused");
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let at = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0]";
    for (i, (policy, want)) in [
        (
            "retry_on: 5xx\nretry_priority: { name: x }",
            format!("{at}.routes[0].route.retry_policy.retry_priority: not supported by Outrigger"),
        ),
        (
            "retry_on: 5xx\nrate_limited_retry_back_off: { reset_headers: [{ name: retry-after }] }",
            format!("{at}.routes[0].route.retry_policy.rate_limited_retry_back_off: not supported by Outrigger"),
        ),
        (
            "retry_on: 5xx,bogus",
            format!("{at}.routes[0].route.retry_policy.retry_on: unknown retry condition `bogus`"),
        ),
        (
            "retry_on: 5xx\nretry_back_off: { base_interval: 0.1s, max_interval: 0.01s }",
            format!("{at}.routes[0].route.retry_policy.retry_back_off.max_interval: must not be less than base_interval"),
        ),
    ]
    .iter()
    .enumerate()
    {
        let (ok, text) = validate(&dir, &format!("b{i}"), &bootstrap(up, &route_policy(policy), ""));
        assert!(!ok, "case {i} accepted");
        assert!(text.contains(want.as_str()), "case {i}: want `{want}` in:\n{text}");
    }
}

/// `outrigger validate` on a bootstrap: whether it passed, and what it printed.
fn validate(dir: &TempDir, name: &str, bootstrap: &str) -> (bool, String) {
    let path = dir.join(&format!("{name}.yaml"));
    let text = bootstrap
        .replace("@ADMIN_PORT@", "9901")
        .replace("@PORT@", "10000");
    write_atomic(&path, &text);
    let out = run_cli(
        &["validate", "-c", &path.display().to_string()],
        std::time::Duration::from_secs(20),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A `hedge_policy` loads on a route and on a virtual host, with or without hedging on
/// a per-try timeout (tests/hedging.rs runs it); the fields Envoy 1.40 accepts but does
/// not implement (more than one initial request, an additional request chance) are
/// refused by their paths.
#[test]
fn hedge_policy_loads_and_refuses_what_envoy_does_not_implement() {
    let dir = TempDir::new("hedge-refused");
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let at = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0]";
    let route = |h: &str| format!("                  hedge_policy: {h}\n");
    let vhost = |h: &str| format!("              hedge_policy: {h}\n");
    let none = "{ initial_requests: 1, hedge_on_per_try_timeout: false }";
    let hedge = "{ hedge_on_per_try_timeout: true }";
    for (i, b) in [
        bootstrap(up, &route(none), ""),
        bootstrap(up, "", &vhost(none)),
        bootstrap(up, &route(hedge), ""),
        bootstrap(up, "", &vhost(hedge)),
    ]
    .iter()
    .enumerate()
    {
        let (ok, text) = validate(&dir, &format!("ok{i}"), b);
        assert!(ok, "case {i} refused:\n{text}");
    }
    let rp = format!("{at}.routes[0].route.hedge_policy");
    for (i, (b, want)) in [
        (
            bootstrap(up, &route("{ initial_requests: 2 }"), ""),
            format!("{rp}.initial_requests: more than 1 initial request is not supported by Outrigger"),
        ),
        (
            bootstrap(up, &route("{ additional_request_chance: { numerator: 10 } }"), ""),
            format!("{rp}.additional_request_chance: not supported by Outrigger"),
        ),
        (
            bootstrap(up, "", &vhost("{ initial_requests: 3 }")),
            format!("{at}.hedge_policy.initial_requests: more than 1 initial request is not supported by Outrigger"),
        ),
    ]
    .iter()
    .enumerate()
    {
        let (ok, text) = validate(&dir, &format!("no{i}"), b);
        assert!(!ok, "case {i} accepted");
        assert!(text.contains(want.as_str()), "case {i}: want `{want}` in:\n{text}");
    }
}

/// The timeout the upstream is told to expect, with the same bootstrap through Envoy
/// 1.40 and Outrigger: `x-envoy-expected-rq-timeout-ms` is the per-try timeout when one
/// is set below the route timeout (5 s here) and the request does not hedge, else the
/// route timeout; under `max_grpc_timeout` a gRPC request's `grpc-timeout` is that
/// value too (Envoy's `setTimeoutHeaders`).
#[test]
fn the_expected_timeout_headers_follow_the_per_try_timeout_as_in_envoy() {
    let Some(bin) =
        envoy_or_skip("the_expected_timeout_headers_follow_the_per_try_timeout_as_in_envoy")
    else {
        return;
    };
    const GRPC: &str = "POST /svc/M HTTP/1.1\r\nHost: svc\r\ncontent-type: application/grpc\r\ngrpc-timeout: 10S\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const GET: &str = "GET /x HTTP/1.1\r\nHost: svc\r\nconnection: close\r\n\r\n";
    let cases: [(&str, &str, &str); 6] = [
        (
            "per-try below the route timeout",
            "retry_on: 5xx\nper_try_timeout: 1s",
            GET,
        ),
        (
            "per-try not below the route timeout",
            "retry_on: 5xx\nper_try_timeout: 6s",
            GET,
        ),
        ("no per-try timeout", "retry_on: 5xx", GET),
        (
            "hedging on the per-try timeout",
            "retry_on: 5xx\nper_try_timeout: 1s\n@hedge_policy: { hedge_on_per_try_timeout: true }",
            GET,
        ),
        (
            "gRPC under max_grpc_timeout with a per-try timeout",
            "retry_on: 5xx\nper_try_timeout: 1s\n@max_grpc_timeout: 3s",
            GRPC,
        ),
        (
            "gRPC under max_grpc_timeout alone",
            "retry_on: 5xx\n@max_grpc_timeout: 3s",
            GRPC,
        ),
    ];
    let seen = |addr: SocketAddr, up: &Upstream, req: &str| {
        let r = exchange(addr, req);
        let got = up.last_request();
        (
            r.status,
            got.header("x-envoy-expected-rq-timeout-ms")
                .map(str::to_string),
            got.header("grpc-timeout").map(str::to_string),
        )
    };
    let mut diffs = Vec::new();
    for (name, policy, req) in cases {
        // Lines starting with `@` are route fields, the others the retry policy's.
        let (route_fields, retry): (Vec<&str>, Vec<&str>) =
            policy.lines().partition(|l| l.starts_with('@'));
        let mut route = route_policy(&retry.join("\n"));
        for f in route_fields {
            route.push_str(&format!("                  {}\n", &f[1..]));
        }
        let up = Upstream::start(echo());
        let envoy = Envoy::start(&bin, &bootstrap(up.addr, &route, ""));
        let from_envoy = seen(envoy.listen, &up, req);
        drop(envoy);
        let proxy = Proxy::start(&bootstrap(up.addr, &route, ""));
        let from_outrigger = seen(proxy.listen, &up, req);
        if from_envoy != from_outrigger {
            diffs.push(format!(
                "{name}:\n  Envoy:     {from_envoy:?}\n  Outrigger: {from_outrigger:?}"
            ));
        }
        if name == "per-try below the route timeout" {
            assert_eq!(from_outrigger.1.as_deref(), Some("1000"), "{name}");
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// A retry's `x-envoy-expected-rq-timeout-ms` is what is left of the route timeout when
/// that is less than the per-try timeout (Envoy's `doRetry`), from an HTTP/1.1 client
/// and an HTTP/2 one: a 1 s route timeout (the internal client's
/// `x-envoy-upstream-rq-timeout-ms`), a 0.8 s per-try timeout, and a first try answered
/// 503 after 0.4 s. The first try expects 800 ms, the retry about 600.
#[test]
fn a_retry_expects_what_is_left_of_the_route_timeout_as_in_envoy() {
    let Some(bin) = envoy_or_skip("a_retry_expects_what_is_left_of_the_route_timeout_as_in_envoy")
    else {
        return;
    };
    let slow_503: fn() -> Handler = || {
        fail_first(
            1,
            std::sync::Arc::new(|ctx, req, s| {
                ctx.sleep(std::time::Duration::from_millis(400));
                status_oops(503)(ctx, req, s)
            }),
        )
    };
    let route = route_policy(
        "retry_on: 5xx\nper_try_timeout: 0.8s\nretry_back_off: { base_interval: 0.001s, max_interval: 0.002s }",
    );
    let expected = |up: &Upstream| -> Vec<u64> {
        up.requests()
            .iter()
            .filter_map(|r| r.header("x-envoy-expected-rq-timeout-ms")?.parse().ok())
            .collect()
    };
    let h1 = |addr: SocketAddr| {
        exchange(
            addr,
            "GET /x HTTP/1.1\r\nHost: svc\r\nx-envoy-upstream-rq-timeout-ms: 1000\r\nconnection: close\r\n\r\n",
        )
        .status
    };
    let h2 = |addr: SocketAddr| {
        let out = std::process::Command::new("curl")
            .args(["-s", "--http2-prior-knowledge", "-o", "/dev/null"])
            .args(["-w", "%{http_code}", "--max-time", "10"])
            .args(["-H", "x-envoy-upstream-rq-timeout-ms: 1000"])
            .arg(format!("http://{addr}/x"))
            .output()
            .expect("these tests need curl with HTTP/2");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u16>()
            .unwrap_or(0)
    };
    let clients: [(&str, &dyn Fn(SocketAddr) -> u16); 2] = [("HTTP/1.1", &h1), ("HTTP/2", &h2)];
    for (client, send) in clients {
        let envoy_up = Upstream::start(slow_503());
        let envoy = Envoy::start(&bin, &bootstrap_with(envoy_up.addr, &route, "", true));
        let envoy_status = send(envoy.listen);
        drop(envoy);
        let ours_up = Upstream::start(slow_503());
        let proxy = Proxy::start(&bootstrap_with(ours_up.addr, &route, "", true));
        let our_status = send(proxy.listen);
        let (e, o) = (expected(&envoy_up), expected(&ours_up));
        assert_eq!((envoy_status, our_status), (200, 200), "{client}");
        assert_eq!(e.len(), 2, "{client}: Envoy's tries {e:?}");
        assert_eq!(o.len(), 2, "{client}: Outrigger's tries {o:?}");
        assert_eq!((e[0], o[0]), (800, 800), "{client}: the first try");
        // The retry: 1000 less the time since the request was complete (at least the
        // first try's 400 ms), not the per-try 800.
        for (who, v) in [("Envoy", e[1]), ("Outrigger", o[1])] {
            assert!(
                (1..=600).contains(&v),
                "{client}: {who}'s retry expects {v}"
            );
        }
    }
}
