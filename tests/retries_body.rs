//! Request bodies kept for a retry, as Envoy keeps them: a body streams to the first try
//! while a copy is kept up to `per_request_buffer_limit_bytes` (the route's, else the
//! virtual host's, within the listener's 1 MiB); a retry sends the copy. A body that
//! outgrows the limit is not retried (the try under way goes on, the cluster counts
//! `retry_or_shadow_abandoned`). Each case checks what every try carried to the upstream,
//! not only what the client got; the parity case hands the same bootstrap to Envoy 1.40.

mod common;
mod h2client;

use std::net::SocketAddr;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

/// A bootstrap with one route to the upstream: `route_extra` goes under the route's
/// `route:`, `vhost_extra` under the virtual host, `route_level` under the route itself
/// (each indented to its fields).
fn bootstrap(up: SocketAddr, route_extra: &str, vhost_extra: &str, route_level: &str) -> String {
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
{vhost_extra}              routes:
              - match: {{ prefix: / }}
{route_level}                route:
                  cluster: up
                  timeout: 10s
{route_extra}          http_filters:
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

const RETRY_5XX: &str = "                  retry_policy: { retry_on: 5xx, retry_back_off: { base_interval: 0.001s } }\n";
const RETRY_RESET: &str = "                  retry_policy: { retry_on: reset, retry_back_off: { base_interval: 0.001s } }\n";

/// A POST with a Content-Length body of `len` bytes (a pattern, so a copy that lost or
/// reordered bytes shows).
fn post(len: usize) -> (String, Vec<u8>) {
    let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 23) as u8).collect();
    let head = format!(
        "POST /x HTTP/1.1\r\nHost: svc\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    (head, body)
}

/// What one proxy did: the client's status and each try's body as the upstream got it.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    tries: Vec<(u64, bool)>,
}

fn send(addr: SocketAddr, up: &Upstream, head: &str, body: &[u8]) -> Seen {
    let mut c = Conn::connect(addr);
    c.send(head);
    c.send(body);
    let (_, r) = c.read_final().expect("a response");
    Seen {
        status: r.status,
        tries: up
            .requests()
            .iter()
            .map(|q| {
                (
                    q.body_len,
                    q.body.len() as u64 == q.body_len && q.body == body,
                )
            })
            .collect(),
    }
}

fn abandoned(p: &Proxy) -> u64 {
    p.cluster_stats("up")["retry_or_shadow_abandoned"]
        .as_u64()
        .unwrap_or(0)
}

fn retries(p: &Proxy) -> u64 {
    p.cluster_stats("up")["rq_retry"].as_u64().unwrap_or(0)
}

#[test]
fn a_streamed_body_within_the_limit_is_sent_again_whole() {
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, "", ""));
    // 64 KiB: far past what is read with the head, so it streams to the first try.
    let (head, body) = post(64 * 1024);
    let seen = send(p.listen, &up, &head, &body);
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.tries,
        [(65536, true), (65536, true)],
        "both tries carried it whole"
    );
    assert_eq!(retries(&p), 1);
    assert_eq!(abandoned(&p), 0);
}

#[test]
fn a_chunked_body_is_replayed_with_its_framing() {
    let up = Upstream::start(fail_first(1, close_without_response()));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_RESET, "", ""));
    let mut c = Conn::connect(p.listen);
    c.send(
        "POST /x HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    let chunk = "c".repeat(10_000);
    for _ in 0..3 {
        c.send(format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    c.send("0\r\nx-t: 1\r\n\r\n");
    let (_, r) = c.read_final().expect("a response");
    assert_eq!(r.status, 200);
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].wire_body, reqs[1].wire_body,
        "the same bytes on the wire"
    );
    assert!(reqs.iter().all(|q| q.body_len == 30_000 && q.chunked));
    // The bootstrap leaves `enable_trailers` off: both tries end the body without the
    // client's trailer, as Envoy's HTTP/1 codec (tests/h1_trailers_parity.rs).
    assert!(reqs[1].wire_body.ends_with(b"c\r\n0\r\n\r\n"));
    assert_eq!(first_named(&reqs[1].trailers, "x-t"), None);
}

#[test]
fn a_body_past_the_route_limit_is_not_retried_and_is_counted() {
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let limit = "                per_request_buffer_limit_bytes: 16384\n";
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, "", limit));
    let (head, body) = post(16385);
    let seen = send(p.listen, &up, &head, &body);
    assert_eq!(
        seen.status, 503,
        "the first try's answer goes to the client"
    );
    assert_eq!(
        seen.tries,
        [(16385, true)],
        "the try under way went on whole"
    );
    assert_eq!(retries(&p), 0);
    assert_eq!(abandoned(&p), 1);

    // Exactly at the limit the body is kept.
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, "", limit));
    let (head, body) = post(16384);
    assert_eq!(send(p.listen, &up, &head, &body).status, 200);
    assert_eq!(up.request_count(), 2);
    assert_eq!(abandoned(&p), 0);
}

#[test]
fn the_virtual_host_limit_applies_unless_the_route_has_one() {
    let vhost = "              per_request_buffer_limit_bytes: 8192\n";
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, vhost, ""));
    let (head, body) = post(10_000);
    assert_eq!(send(p.listen, &up, &head, &body).status, 503);
    assert_eq!(up.request_count(), 1);

    let route = "                per_request_buffer_limit_bytes: 65536\n";
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, vhost, route));
    assert_eq!(send(p.listen, &up, &head, &body).status, 200);
    assert_eq!(up.request_count(), 2);
}

#[test]
fn the_listener_limit_of_one_mebibyte_bounds_the_copy() {
    let route = "                per_request_buffer_limit_bytes: 4000000\n";
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, "", route));
    let (head, body) = post((1 << 20) + 1);
    assert_eq!(send(p.listen, &up, &head, &body).status, 503);
    assert_eq!(up.request_count(), 1);
    assert_eq!(abandoned(&p), 1);

    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, "", ""));
    let (head, body) = post(1 << 20);
    let seen = send(p.listen, &up, &head, &body);
    assert_eq!(seen.status, 200);
    assert_eq!(seen.tries, [(1 << 20, true), (1 << 20, true)]);
}

#[test]
fn an_expect_continue_body_is_replayed_without_a_second_100() {
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, "", ""));
    let (head, body) = post(20_000);
    let head = head.replace(
        "Connection: close\r\n",
        "Connection: close\r\nExpect: 100-continue\r\n",
    );
    let mut c = Conn::connect(p.listen);
    c.send(&head);
    let interim = c.read_response().expect("100 Continue");
    assert_eq!(interim.status, 100);
    c.send(&body);
    let (more, r) = c.read_final().expect("a response");
    assert!(more.is_empty(), "one 100 Continue: {more:?}");
    assert_eq!(r.status, 200);
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|q| q.body == body));
}

#[test]
fn a_route_without_a_retry_policy_keeps_nothing_and_counts_nothing() {
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, "", "", ""));
    let (head, body) = post(64 * 1024);
    assert_eq!(send(p.listen, &up, &head, &body).status, 503);
    assert_eq!(up.request_count(), 1);
    assert_eq!(abandoned(&p), 0);
}

/// An HTTP/2 client's streamed body to an HTTP/1.1 upstream: the same copy and limit.
fn h2_post(addr: SocketAddr, body: Vec<u8>) -> u16 {
    h2client::run(move || async move {
        let mut client = h2client::connect(addr).await;
        let req = h2client::request("POST", &format!("http://{addr}/x"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, &body).await.status
    })
}

#[test]
fn an_http2_clients_streamed_body_is_kept_too() {
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, "", ""));
    let (_, body) = post(100_000);
    assert_eq!(h2_post(p.listen, body.clone()), 200);
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs.iter().all(|q| q.body == body),
        "both tries carried it whole"
    );
    assert_eq!(abandoned(&p), 0);

    let limit = "                per_request_buffer_limit_bytes: 40000\n";
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, "", limit));
    let (_, body) = post(40_001);
    assert_eq!(h2_post(p.listen, body), 503);
    assert_eq!(up.request_count(), 1);
    assert_eq!(abandoned(&p), 1);

    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, "", limit));
    let (_, body) = post(40_000);
    assert_eq!(h2_post(p.listen, body), 200);
    assert_eq!(up.request_count(), 2);
}

/// An HTTP/2 body whose first bytes come after the head went up (none was ready to go
/// with it) and that outgrows the limit: the 503 is the answer. It was retried once
/// with the body ended and nothing of it kept, and the upstream waited for the body
/// that never came.
#[test]
fn a_late_http2_body_past_the_limit_is_not_retried() {
    let limit = "                per_request_buffer_limit_bytes: 40000\n";
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let p = Proxy::start(&bootstrap(up.addr, RETRY_5XX, "", limit));
    let (_, body) = post(40_001);
    let addr = p.listen;
    let status = h2client::run(move || async move {
        let client = h2client::connect(addr).await;
        let req = h2client::request("POST", &format!("http://{addr}/x"))
            .body(())
            .unwrap();
        let mut c = client.ready().await.expect("h2 connection ready");
        let (response, mut stream) = c.send_request(req, false).expect("request head");
        // The proxy routes and sends the head upstream before any DATA arrives.
        glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
        stream.reserve_capacity(body.len());
        stream
            .send_data(bytes::Bytes::from(body), true)
            .expect("request body");
        h2client::read_reply(response).await.status
    });
    assert_eq!(status, 503);
    assert_eq!(up.request_count(), 1);
    assert_eq!(abandoned(&p), 1);
}

/// Envoy 1.40 and Outrigger given the same bootstrap: which bodies are retried, and
/// what each try carried.
#[test]
fn envoy_and_outrigger_keep_bodies_for_retries_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_keep_bodies_for_retries_alike") else {
        return;
    };
    struct Case {
        name: &'static str,
        upstream: fn() -> Handler,
        route_extra: &'static str,
        vhost: &'static str,
        route_level: &'static str,
        len: usize,
    }
    let cases = [
        Case {
            name: "64 KiB streamed and retried on a 503",
            upstream: || fail_first(1, status_oops(503)),
            route_extra: RETRY_5XX,
            vhost: "",
            route_level: "",
            len: 64 * 1024,
        },
        Case {
            name: "a reset after the body: retried with it",
            upstream: || fail_first(1, close_without_response()),
            route_extra: RETRY_RESET,
            vhost: "",
            route_level: "",
            len: 48 * 1024,
        },
        Case {
            name: "one byte past the route's limit: not retried",
            upstream: || fail_first(1, status_oops(503)),
            route_extra: RETRY_5XX,
            vhost: "",
            route_level: "                per_request_buffer_limit_bytes: 16384\n",
            len: 16385,
        },
        Case {
            name: "at the route's limit: retried",
            upstream: || fail_first(1, status_oops(503)),
            route_extra: RETRY_5XX,
            vhost: "",
            route_level: "                per_request_buffer_limit_bytes: 16384\n",
            len: 16384,
        },
        Case {
            name: "the virtual host's limit",
            upstream: || fail_first(1, status_oops(503)),
            route_extra: RETRY_5XX,
            vhost: "              per_request_buffer_limit_bytes: 8192\n",
            route_level: "",
            len: 10_000,
        },
        Case {
            name: "past the listener's 1 MiB: not retried",
            upstream: || fail_first(1, status_oops(503)),
            route_extra: RETRY_5XX,
            vhost: "",
            route_level: "",
            len: (1 << 20) + 4096,
        },
    ];
    let mut diffs = Vec::new();
    for c in &cases {
        let (head, body) = post(c.len);
        let envoy_up = Upstream::start((c.upstream)());
        let envoy = Envoy::start(
            &bin,
            &bootstrap(envoy_up.addr, c.route_extra, c.vhost, c.route_level),
        );
        let from_envoy = send(envoy.listen, &envoy_up, &head, &body);
        drop(envoy);
        let ours_up = Upstream::start((c.upstream)());
        let proxy = Proxy::start(&bootstrap(
            ours_up.addr,
            c.route_extra,
            c.vhost,
            c.route_level,
        ));
        let from_outrigger = send(proxy.listen, &ours_up, &head, &body);
        if from_envoy != from_outrigger {
            diffs.push(format!(
                "{}:\n  Envoy:     {from_envoy:?}\n  Outrigger: {from_outrigger:?}",
                c.name
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
