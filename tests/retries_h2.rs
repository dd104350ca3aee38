//! Envoy's retry policy on an HTTP/2 cluster (`protocol: http2`), from HTTP/1 and
//! HTTP/2 clients, against a scripted HTTP/2 upstream: the first tries answer 503,
//! refuse the stream (RST_STREAM REFUSED_STREAM), reset it, or answer gRPC UNAVAILABLE,
//! and the test checks what the upstream saw (how many streams, their attempt counts,
//! their bodies), not only what the client got. Request bodies kept for a retry are in
//! `tests/retries_h2_body.rs`.

mod common;
mod h2_scripted;
mod h2client;

use std::net::SocketAddr;

use common::*;
use h2_scripted::fail_first;
use h2_scripted::*;
use h2client::{connect, request};

#[test]
fn an_http2_upstreams_503_is_retried_for_an_http2_client() {
    let up = h2_scripted(fail_first(2));
    let p = Proxy::start(&config(
        &[up.addr],
        &policy("retry_on: 5xx\nnum_retries: 2"),
        "",
    ));
    let r = h2_get(p.listen, "GET", b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_str(), "status 200");
    assert_eq!(up.count(), 3, "each try reached the upstream");
    assert_eq!(stat(&p, "rq_retry"), 2);
    assert_eq!(stat(&p, "rq_retry_success"), 1);
    assert_eq!(stat(&p, "rq_retry_backoff_exponential"), 2);

    // Retries run out: the last 503 goes to the client, flagged URX.
    let up = h2_scripted(|_| Act::Status(503));
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: 5xx"), ""));
    let r = h2_get(p.listen, "GET", b"");
    assert_eq!(r.status, 503);
    assert_eq!(r.body_str(), "status 503", "the upstream's own response");
    assert_eq!(up.count(), 2);
    assert_eq!(stat(&p, "rq_retry_limit_exceeded"), 1);
    assert_eq!(flag_count(&p.listener_stats("main"), "URX"), 1);

    // A POST whose body arrives whole with its head is sent again whole.
    let up = h2_scripted(fail_first(1));
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: 5xx"), ""));
    let r = h2_get(p.listen, "POST", b"hello");
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.body == b"hello"), "{seen:?}");
}

#[test]
fn an_http1_client_to_an_http2_upstream_is_retried_with_attempt_counts() {
    let up = h2_scripted(fail_first(1));
    let vhost = "        include_request_attempt_count: true\n        include_attempt_count_in_response: true\n";
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: 5xx"), vhost));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.header("x-envoy-attempt-count"), Some("2"));
    assert_eq!(up.header_of_each("x-envoy-attempt-count"), ["1", "2"]);
    assert_eq!(stat(&p, "rq_retry"), 1);
    assert_eq!(stat(&p, "rq_retry_success"), 1);

    // The same from an HTTP/2 client.
    let up = h2_scripted(fail_first(1));
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: 5xx"), vhost));
    let r = h2_get(p.listen, "GET", b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-envoy-attempt-count"), Some("2"));
    assert_eq!(up.header_of_each("x-envoy-attempt-count"), ["1", "2"]);
}

#[test]
fn a_refused_stream_is_retried_on_refused_stream_only() {
    let up = h2_scripted(|i| {
        if i == 0 {
            Act::Refuse
        } else {
            Act::Status(200)
        }
    });
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: refused-stream"), ""));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(up.count(), 2);
    assert_eq!(stat(&p, "rq_retry"), 1);

    let up = h2_scripted(|i| {
        if i == 0 {
            Act::Refuse
        } else {
            Act::Status(200)
        }
    });
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: refused-stream"), ""));
    let r = h2_get(p.listen, "GET", b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.count(), 2);

    // An ordinary reset is no refused stream: one try, 503 UC.
    let up = h2_scripted(|i| if i == 0 { Act::Reset } else { Act::Status(200) });
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: refused-stream"), ""));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 503, "{}", r.body_str());
    assert_eq!(up.count(), 1);

    // Without a policy a refused stream is not retried either.
    let up = h2_scripted(|i| {
        if i == 0 {
            Act::Refuse
        } else {
            Act::Status(200)
        }
    });
    let p = Proxy::start(&config(&[up.addr], "", ""));
    assert_eq!(get(p.listen, "a", "/x").status, 503);
    assert_eq!(up.count(), 1);
}

#[test]
fn a_reset_stream_is_retried_on_reset_and_exhausted_resets_say_so() {
    let up = h2_scripted(|i| if i == 0 { Act::Reset } else { Act::Status(200) });
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: reset"), ""));
    let r = h2_get(p.listen, "GET", b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.count(), 2);

    let up = h2_scripted(|_| Act::Reset);
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: reset"), ""));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body_str(),
        "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection termination"
    );
    assert_eq!(up.count(), 2);
    assert_eq!(stat(&p, "rq_retry_limit_exceeded"), 1);
}

#[test]
fn connect_failures_to_an_http2_cluster_are_retried_on_the_other_endpoint() {
    let up = h2_scripted(|_| Act::Status(200));
    let p = Proxy::start(&config(
        &[refused_addr(), up.addr],
        &policy("retry_on: connect-failure"),
        "",
    ));
    for _ in 0..2 {
        assert_eq!(get(p.listen, "a", "/x").status, 200);
        assert_eq!(h2_get(p.listen, "GET", b"").status, 200);
    }
    assert_eq!(
        up.count(),
        4,
        "every request reached the live endpoint once"
    );
}

#[test]
fn grpc_unavailable_is_retried_and_other_codes_are_not() {
    let up = h2_scripted(|i| if i == 0 { Act::Grpc(14) } else { Act::Grpc(0) });
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: unavailable"), ""));
    let r = h2_get(p.listen, "POST", b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("grpc-status"), Some("0"));
    assert_eq!(up.count(), 2);

    let up = h2_scripted(|i| if i == 0 { Act::Grpc(13) } else { Act::Grpc(0) });
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: unavailable"), ""));
    let r = h2_get(p.listen, "POST", b"");
    assert_eq!(r.header("grpc-status"), Some("13"));
    assert_eq!(up.count(), 1);

    // Asked for by the request header instead of the route.
    let up = h2_scripted(|i| if i == 0 { Act::Grpc(14) } else { Act::Grpc(0) });
    let p = Proxy::start(&config(&[up.addr], "", ""));
    let r = exchange(
        p.listen,
        "GET /x HTTP/1.1\r\nHost: a\r\nx-envoy-retry-grpc-on: unavailable\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.header("grpc-status"), Some("0"));
    assert_eq!(up.count(), 2);
}

#[test]
fn the_retry_headers_do_not_reach_an_http2_upstream() {
    let names = [
        "x-envoy-retry-on",
        "x-envoy-retry-grpc-on",
        "x-envoy-max-retries",
        "x-envoy-hedge-on-per-try-timeout",
        "x-envoy-retriable-header-names",
        "x-envoy-retriable-status-codes",
        "x-envoy-upstream-rq-per-try-timeout-ms",
    ];
    let up = h2_scripted(fail_first(1));
    let p = Proxy::start(&config(&[up.addr], "", ""));
    let r = exchange(
        p.listen,
        "GET /x HTTP/1.1\r\nHost: a\r\nx-envoy-retry-on: 5xx\r\nx-envoy-retry-grpc-on: unavailable\r\nx-envoy-max-retries: 1\r\nx-envoy-hedge-on-per-try-timeout: true\r\nx-envoy-retriable-header-names: x-a\r\nx-envoy-retriable-status-codes: 418\r\nx-envoy-upstream-rq-per-try-timeout-ms: 2000\r\nx-envoy-other: kept\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "the headers were honoured");
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        for n in names {
            assert!(!s.headers.contains_key(n), "{n} went upstream");
        }
        assert_eq!(s.headers.get("x-envoy-other").unwrap(), "kept");
    }

    let up = h2_scripted(fail_first(1));
    let p = Proxy::start(&config(&[up.addr], "", ""));
    let addr = p.listen;
    let r = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let mut req = request("GET", &format!("http://{addr}/x"));
        for n in names {
            req = req.header(
                n,
                if n == "x-envoy-retry-on" {
                    "5xx"
                } else {
                    "2000"
                },
            );
        }
        h2client::send(&mut client, req.body(()).unwrap(), b"").await
    });
    assert_eq!(r.status, 200, "{r:?}");
    for s in &up.seen() {
        for n in names {
            assert!(!s.headers.contains_key(n), "{n} went upstream");
        }
    }
}

/// What one proxy did with one case: the client's status, the attempt count it got
/// back, and how many streams the upstream saw.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: u16,
    attempt_count: Option<String>,
    tries: usize,
    grpc_status: Option<String>,
}

#[test]
fn envoy_and_outrigger_retry_an_http2_cluster_alike() {
    let Some(bin) =
        common::envoy::envoy_or_skip("envoy_and_outrigger_retry_an_http2_cluster_alike")
    else {
        return;
    };
    let fast = "retry_back_off: { base_interval: 0.001s }";
    let counted = "              include_attempt_count_in_response: true\n";
    #[allow(clippy::type_complexity)]
    let cases: [(&str, fn(usize) -> Act, String, &str); 8] = [
        (
            "5xx until it succeeds",
            fail_first(2),
            format!("{{ retry_on: 5xx, num_retries: 2, {fast} }}"),
            counted,
        ),
        (
            "5xx exhausted",
            |_| Act::Status(503),
            format!("{{ retry_on: 5xx, {fast} }}"),
            counted,
        ),
        (
            "gateway-error leaves a 500",
            |i| {
                if i == 0 {
                    Act::Status(500)
                } else {
                    Act::Status(200)
                }
            },
            format!("{{ retry_on: gateway-error, {fast} }}"),
            "",
        ),
        (
            "refused stream",
            |i| {
                if i == 0 {
                    Act::Refuse
                } else {
                    Act::Status(200)
                }
            },
            format!("{{ retry_on: refused-stream, {fast} }}"),
            counted,
        ),
        (
            "a reset is no refused stream",
            |i| if i == 0 { Act::Reset } else { Act::Status(200) },
            format!("{{ retry_on: refused-stream, {fast} }}"),
            "",
        ),
        (
            "reset",
            |i| if i == 0 { Act::Reset } else { Act::Status(200) },
            format!("{{ retry_on: reset, {fast} }}"),
            counted,
        ),
        (
            "grpc unavailable",
            |i| if i == 0 { Act::Grpc(14) } else { Act::Grpc(0) },
            format!("{{ retry_on: unavailable, {fast} }}"),
            "",
        ),
        (
            "retriable status codes",
            |i| {
                if i == 0 {
                    Act::Status(418)
                } else {
                    Act::Status(200)
                }
            },
            format!(
                "{{ retry_on: retriable-status-codes, retriable_status_codes: [418], {fast} }}"
            ),
            "",
        ),
    ];
    let run = |listen: SocketAddr, up: &H2Up| {
        let r = exchange(
            listen,
            "GET /x HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n",
        );
        Outcome {
            status: r.status,
            attempt_count: r.header("x-envoy-attempt-count").map(str::to_string),
            tries: up.count(),
            grpc_status: r.header("grpc-status").map(str::to_string),
        }
    };
    let mut diffs = Vec::new();
    for (name, script, policy, vhost) in &cases {
        let envoy_up = h2_scripted(*script);
        let envoy = common::envoy::Envoy::start(&bin, &bootstrap(envoy_up.addr, policy, vhost));
        let from_envoy = run(envoy.listen, &envoy_up);
        drop(envoy);
        let ours_up = h2_scripted(*script);
        let proxy = Proxy::start(&bootstrap(ours_up.addr, policy, vhost));
        let from_outrigger = run(proxy.listen, &ours_up);
        if from_envoy != from_outrigger {
            diffs.push(format!(
                "{name}:\n  Envoy:     {from_envoy:?}\n  Outrigger: {from_outrigger:?}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
