//! A retry policy's per-try clocks as Envoy runs them: they start when the request is
//! complete (a try that began while its body streamed gets them then, not never), and
//! the per-try idle timeout goes on after the response head: a response body that
//! stalls for that long is cut (the client sees the connection close, or its stream
//! reset), counted in `rq_per_try_idle_timeout`. Checked against scripted upstreams
//! (what each saw) and, for the HTTP/1.1 cases, against Envoy 1.40 with the same
//! bootstrap.

mod common;
mod h2client;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

/// A bootstrap with one route (route timeout `timeout`) to the upstream, with
/// `policy` as its retry policy.
fn bootstrap(up: SocketAddr, timeout: &str, policy: &str) -> String {
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
                  timeout: {timeout}
                  retry_policy: {policy}
          http_filters:
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

const IDLE: &str = "{ retry_on: 5xx, per_try_idle_timeout: 0.3s }";
const PER_TRY: &str =
    "{ retry_on: 5xx, per_try_timeout: 0.3s, retry_back_off: { base_interval: 0.001s } }";

/// A 200 head and half its body, then silence until the upstream stops.
fn stalls_mid_body() -> Handler {
    Arc::new(|ctx, _, s| {
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")?;
        s.flush()?;
        ctx.sleep(Duration::from_secs(60));
        Ok(false)
    })
}

fn stat(p: &Proxy, name: &str) -> u64 {
    p.cluster_stats("up")[name].as_u64().unwrap_or(0)
}

/// What a client saw of a response cut mid-body, or of a whole one.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    /// The response arrived whole (else the connection closed part way).
    whole: bool,
    tries: usize,
}

/// A GET whose response is read until the connection closes (at most 10 s).
fn get_until_closed(addr: SocketAddr, up: &Upstream) -> Seen {
    let mut c = Conn::connect(addr);
    c.send("GET /x HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n");
    let raw = c.read_all(Duration::from_secs(10));
    let text = String::from_utf8_lossy(&raw);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body_len = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    let declared = text.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    Seen {
        status,
        whole: declared == Some(body_len),
        tries: up.request_count(),
    }
}

/// A POST with a 64 KiB body, which streams to the first try.
fn post_streamed(addr: SocketAddr, up: &Upstream) -> Seen {
    let body = "p".repeat(64 * 1024);
    let mut c = Conn::connect(addr);
    c.send(format!(
        "POST /x HTTP/1.1\r\nHost: svc\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    c.send(&body);
    let r = c.read_response().expect("a response");
    Seen {
        status: r.status,
        whole: true,
        tries: up.request_count(),
    }
}

#[test]
fn a_response_body_that_stalls_past_the_per_try_idle_timeout_is_cut() {
    let up = Upstream::start(stalls_mid_body());
    // No route timeout: without the per-try idle clock the response would hang.
    let p = Proxy::start(&bootstrap(up.addr, "0s", IDLE));
    let seen = get_until_closed(p.listen, &up);
    assert_eq!(
        seen,
        Seen {
            status: 200,
            whole: false,
            tries: 1
        },
        "the head and half the body, then the connection closed"
    );
    assert!(
        wait_until(Duration::from_secs(5), || (stat(
            &p,
            "rq_per_try_idle_timeout"
        ) == 1)
            .then_some(()))
        .is_some(),
        "counted"
    );
    assert_eq!(stat(&p, "rq_retry"), 0, "nothing is retried after the head");
}

#[test]
fn an_http2_clients_stalled_response_body_is_reset() {
    let up = Upstream::start(stalls_mid_body());
    let p = Proxy::start(&bootstrap(up.addr, "0s", IDLE));
    let addr = p.listen;
    let reply = h2client::run(move || async move {
        let mut client = h2client::connect(addr).await;
        let req = h2client::request("GET", &format!("http://{addr}/x"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, b"").await
    });
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"hello");
    assert!(reply.reset.is_some(), "the stream was reset: {reply:?}");
    assert_eq!(stat(&p, "rq_per_try_idle_timeout"), 1);
}

#[test]
fn a_streamed_bodys_try_gets_its_per_try_timeout_once_the_body_is_sent() {
    let up = Upstream::start(fail_first(1, delayed(Duration::from_secs(60))));
    let p = Proxy::start(&bootstrap(up.addr, "10s", PER_TRY));
    let seen = post_streamed(p.listen, &up);
    assert_eq!(seen.status, 200, "the hung first try was cut and retried");
    assert_eq!(seen.tries, 2);
    assert_eq!(stat(&p, "rq_per_try_timeout"), 1);
    let reqs = up.requests();
    assert!(reqs.iter().all(|q| q.body_len == 64 * 1024));
}

#[test]
fn envoy_and_outrigger_run_per_try_clocks_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_run_per_try_clocks_alike") else {
        return;
    };
    type Client = fn(SocketAddr, &Upstream) -> Seen;
    type Case = (
        &'static str,
        fn() -> Handler,
        &'static str,
        &'static str,
        Client,
    );
    let cases: [Case; 2] = [
        (
            "a response body stalled past per_try_idle_timeout",
            stalls_mid_body,
            "0s",
            IDLE,
            get_until_closed,
        ),
        (
            "a streamed body's try hung past per_try_timeout",
            || fail_first(1, delayed(Duration::from_secs(60))),
            "10s",
            PER_TRY,
            post_streamed,
        ),
    ];
    let mut diffs = Vec::new();
    for (name, upstream, timeout, policy, client) in cases {
        let envoy_up = Upstream::start(upstream());
        let envoy = Envoy::start(&bin, &bootstrap(envoy_up.addr, timeout, policy));
        let from_envoy = client(envoy.listen, &envoy_up);
        drop(envoy);
        let ours_up = Upstream::start(upstream());
        let proxy = Proxy::start(&bootstrap(ours_up.addr, timeout, policy));
        let from_outrigger = client(proxy.listen, &ours_up);
        if from_envoy != from_outrigger {
            diffs.push(format!(
                "{name}:\n  Envoy:     {from_envoy:?}\n  Outrigger: {from_outrigger:?}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
