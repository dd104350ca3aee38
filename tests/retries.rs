//! Envoy's retry policy through the binary, against scripted upstreams: the first N
//! requests fail (503, a closed connection, a refused connection, a hang past the
//! per-try timeout) and the test checks how many tries each upstream saw, not only what
//! the client got; `previous_hosts` with two endpoints; retries asked for by request
//! headers; bodies retried; HTTP/1 and HTTP/2 clients.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use h2client::{connect, request};

/// One listener, one route to `backend` (the endpoints given) with `route_extra` under
/// the route and `vhost_extra` under the virtual host (both indented to their level).
fn config(
    endpoints: &[SocketAddr],
    lb: &str,
    route_extra: &str,
    vhost_extra: &str,
    listener_extra: &str,
) -> String {
    let eps: String = endpoints
        .iter()
        .map(|a| format!("      - address: 127.0.0.1\n        port: {}\n", a.port()))
        .collect();
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    access_log:
      path: @DIR@/access.log
      format: \"%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST%\"
{listener_extra}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
{vhost_extra}        routes:
          - match: {{ prefix: / }}
            cluster: backend
            timeout: 5s
{route_extra}clusters:
  - name: backend
    connect_timeout: 1s
    lb_policy: {lb}
    endpoints:
{eps}"
    )
}

fn policy(lines: &str) -> String {
    let mut out = String::from("            retry_policy:\n");
    for l in lines.lines() {
        out.push_str("              ");
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn stat(p: &Proxy, name: &str) -> u64 {
    p.cluster_stats("backend")[name].as_u64().unwrap_or(0)
}

#[test]
fn a_503_is_retried_until_it_succeeds_and_each_try_reaches_the_upstream() {
    let up = Upstream::start(fail_first(2, status_oops(503)));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &policy("retry_on: 5xx\nnum_retries: 2"),
        "",
        "",
    ));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(up.request_count(), 3);
    assert_eq!(stat(&p, "rq_retry"), 2);
    assert_eq!(stat(&p, "rq_retry_success"), 1);
    assert_eq!(stat(&p, "rq_retry_backoff_exponential"), 2);
    assert_eq!(stat(&p, "rq_retry_limit_exceeded"), 0);
}

#[test]
fn exhausted_retries_forward_the_last_response_with_urx() {
    let up = Upstream::start(status_oops(503));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &policy("retry_on: 5xx\nnum_retries: 2"),
        "",
        "",
    ));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.body_str(), "oops", "the upstream's own response");
    assert_eq!(up.request_count(), 3);
    assert_eq!(stat(&p, "rq_retry_limit_exceeded"), 1);
    assert_eq!(flag_count(&p.listener_stats("main"), "URX"), 1);
}

#[test]
fn num_retries_defaults_to_one_and_other_statuses_are_not_retried() {
    let up = Upstream::start(status_oops(503));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &policy("retry_on: 5xx"),
        "",
        "",
    ));
    assert_eq!(get(p.listen, "a", "/x").status, 503);
    assert_eq!(
        up.request_count(),
        2,
        "one try and Envoy's one default retry"
    );

    let up = Upstream::start(status_oops(500));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &policy("retry_on: gateway-error\nnum_retries: 3"),
        "",
        "",
    ));
    assert_eq!(get(p.listen, "a", "/x").status, 500);
    assert_eq!(up.request_count(), 1, "500 is no gateway error");
}

#[test]
fn a_closed_connection_is_retried_on_reset() {
    let up = Upstream::start(fail_first(1, close_without_response()));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &policy("retry_on: reset\nnum_retries: 1"),
        "",
        "",
    ));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(up.request_count(), 2);

    // Without the policy the same upstream gets one try and the client a 503 UC.
    let up = Upstream::start(fail_first(1, close_without_response()));
    let p = Proxy::start(&config(&[up.addr], "round_robin", "", "", ""));
    assert_eq!(get(p.listen, "a", "/x").status, 503);
    assert_eq!(up.request_count(), 1);
}

#[test]
fn a_refused_connection_is_retried_on_another_endpoint() {
    let up = Upstream::echo();
    let refused = refused_addr();
    let p = Proxy::start(&config(
        &[refused, up.addr],
        "round_robin",
        &policy("retry_on: connect-failure\nnum_retries: 1"),
        "",
        "",
    ));
    for _ in 0..4 {
        assert_eq!(get(p.listen, "a", "/x").status, 200);
    }
    assert_eq!(
        up.request_count(),
        4,
        "every request reached the live endpoint once"
    );
    // Round robin: a retry takes a pick too, so every request's first pick is the
    // refused endpoint (Envoy's load balancer is asked again for each retry as well).
    assert_eq!(stat(&p, "rq_retry"), 4);
}

#[test]
fn exhausted_connect_failures_say_they_were_retried() {
    let refused = refused_addr();
    let p = Proxy::start(&config(
        &[refused],
        "round_robin",
        &policy("retry_on: connect-failure\nnum_retries: 2"),
        "",
        "",
    ));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body_str(),
        "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure"
    );
    assert_eq!(stat(&p, "rq_retry"), 2);
    assert_eq!(stat(&p, "rq_retry_limit_exceeded"), 1);
}

#[test]
fn a_try_that_hangs_past_the_per_try_timeout_is_retried() {
    let up = Upstream::start(fail_first(1, delayed(Duration::from_secs(4))));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &policy("retry_on: 5xx\nnum_retries: 1\nper_try_timeout: 300ms"),
        "",
        "",
    ));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(up.request_count(), 2, "the hung try and the retry");
    assert_eq!(stat(&p, "rq_per_try_timeout"), 1);

    // Not retried (connect-failure only): 504 UT, as a route timeout.
    let up = Upstream::start(delayed(Duration::from_secs(4)));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &policy("retry_on: connect-failure\nper_try_timeout: 300ms"),
        "",
        "",
    ));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 504);
    assert_eq!(r.body_str(), "upstream request timeout");
    assert_eq!(up.request_count(), 1);
}

#[test]
fn previous_hosts_sends_the_retry_to_the_other_endpoint() {
    let bad = Upstream::start(status_oops(503));
    let good = Upstream::echo();
    let p = Proxy::start(&config(
        &[bad.addr, good.addr],
        "random",
        &policy(
            "retry_on: 5xx\nnum_retries: 1\nretry_host_predicate:\n  - name: envoy.retry_host_predicates.previous_hosts\nhost_selection_retry_max_attempts: 40",
        ),
        "",
        "",
    ));
    for _ in 0..20 {
        assert_eq!(get(p.listen, "a", "/x").status, 200);
    }
    // Each request tried the bad endpoint at most once, and only first.
    assert_eq!(good.request_count(), 20);
    assert_eq!(bad.request_count() as u64, stat(&p, "rq_retry"));
}

#[test]
fn request_headers_ask_for_retries_unless_sanitized() {
    let up = Upstream::start(fail_first(2, status_oops(503)));
    let p = Proxy::start(&config(&[up.addr], "round_robin", "", "", ""));
    let asked = "GET /x HTTP/1.1\r\nHost: a\r\nx-envoy-retry-on: 5xx\r\nx-envoy-max-retries: 2\r\nConnection: close\r\n\r\n";
    let r = exchange(p.listen, asked);
    assert_eq!(r.status, 200);
    assert_eq!(up.request_count(), 3);
    // Without the headers: no retry.
    let up = Upstream::start(status_oops(503));
    let p = Proxy::start(&config(&[up.addr], "round_robin", "", "", ""));
    assert_eq!(get(p.listen, "a", "/x").status, 503);
    assert_eq!(up.request_count(), 1);
    // A connection manager that sanitizes x-envoy-* (Envoy's default) ignores them.
    let up = Upstream::start(status_oops(503));
    let sanitize = "    proxy_headers:\n      sanitize_envoy_headers: true\n";
    let p = Proxy::start(&config(&[up.addr], "round_robin", "", "", sanitize));
    assert_eq!(exchange(p.listen, asked).status, 503);
    assert_eq!(up.request_count(), 1);
}

#[test]
fn the_virtual_host_policy_applies_and_attempt_counts_are_sent() {
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let vhost = "        retry_policy:\n          retry_on: 5xx\n        include_request_attempt_count: true\n        include_attempt_count_in_response: true\n";
    let p = Proxy::start(&config(&[up.addr], "round_robin", "", vhost, ""));
    let r = get(p.listen, "a", "/x");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-envoy-attempt-count"), Some("2"));
    let seen: Vec<String> = up
        .requests()
        .iter()
        .map(|q| q.header("x-envoy-attempt-count").unwrap_or("-").to_string())
        .collect();
    assert_eq!(seen, ["1", "2"]);
}

#[test]
fn a_small_body_is_sent_again_and_one_past_the_limit_is_not_retried() {
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &policy("retry_on: 5xx"),
        "",
        "",
    ));
    let r = exchange(
        p.listen,
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(r.status, 200);
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs.iter().all(|q| q.body == b"hello"),
        "both tries carried the body"
    );

    // Beyond what is kept for a retry (`per_request_buffer_limit_bytes`), the body
    // streams and the 503 goes to the client.
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &format!(
            "{}            per_request_buffer_limit_bytes: 32768\n",
            policy("retry_on: 5xx")
        ),
        "",
        "",
    ));
    let big = "b".repeat(64 * 1024);
    let r = exchange(
        p.listen,
        &format!(
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
            big.len()
        ),
    );
    assert_eq!(r.status, 503);
    assert_eq!(up.request_count(), 1);
    assert_eq!(stat(&p, "retry_or_shadow_abandoned"), 1);
}

#[test]
fn an_http2_client_gets_the_same_retries() {
    let up = Upstream::start(fail_first(2, status_oops(503)));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &policy("retry_on: 5xx\nnum_retries: 2"),
        "",
        "",
    ));
    let addr = p.listen;
    let reply = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request("GET", &format!("http://{addr}/x"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, b"").await
    });
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(up.request_count(), 3);

    // A POST whose body arrives with its head is sent again whole.
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&config(
        &[up.addr],
        "round_robin",
        &policy("retry_on: 5xx"),
        "",
        "",
    ));
    let addr = p.listen;
    let reply = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request("POST", &format!("http://{addr}/x"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, b"hello").await
    });
    assert_eq!(reply.status, 200, "{reply:?}");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|q| q.body == b"hello"));
}

/// Every retry header the router reads; with a request id and an unrelated `x-envoy-`
/// header that must pass.
pub const RETRY_HEADERS: &str = "x-envoy-retry-on: 5xx\r\nx-envoy-retry-grpc-on: unavailable\r\nx-envoy-max-retries: 1\r\nx-envoy-hedge-on-per-try-timeout: true\r\nx-envoy-retriable-header-names: x-a\r\nx-envoy-retriable-status-codes: 418\r\nx-envoy-upstream-rq-per-try-timeout-ms: 2000\r\nx-envoy-other: kept\r\n";

const CONSUMED: [&str; 7] = [
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-upstream-rq-per-try-timeout-ms",
];

#[test]
fn the_router_consumes_the_retry_headers_it_honours() {
    // A listener that does not sanitize: the headers are honoured (the 503 is retried)
    // and none of them reaches the upstream, with a route policy or without.
    for route in [String::new(), policy("retry_on: reset")] {
        let up = Upstream::start(fail_first(1, status_oops(503)));
        let p = Proxy::start(&config(&[up.addr], "round_robin", &route, "", ""));
        let r = exchange(
            p.listen,
            &format!("GET /x HTTP/1.1\r\nHost: a\r\n{RETRY_HEADERS}Connection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 200);
        let reqs = up.requests();
        assert_eq!(reqs.len(), 2, "honoured");
        for q in &reqs {
            for name in CONSUMED {
                assert_eq!(q.header(name), None, "{name} went upstream");
            }
            assert_eq!(q.header("x-envoy-other"), Some("kept"));
        }
    }

    // The same from an HTTP/2 client.
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&config(&[up.addr], "round_robin", "", "", ""));
    let addr = p.listen;
    let reply = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let mut req = request("GET", &format!("http://{addr}/x"));
        for line in RETRY_HEADERS.split("\r\n").filter(|l| !l.is_empty()) {
            let (n, v) = line.split_once(": ").unwrap();
            req = req.header(n, v);
        }
        h2client::send(&mut client, req.body(()).unwrap(), b"").await
    });
    assert_eq!(reply.status, 200, "{reply:?}");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2, "honoured");
    for q in &reqs {
        for name in CONSUMED {
            assert_eq!(q.header(name), None, "{name} went upstream");
        }
        assert_eq!(q.header("x-envoy-other"), Some("kept"));
    }
}
