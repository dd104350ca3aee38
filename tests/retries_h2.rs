//! Envoy's retry policy on an HTTP/2 cluster (`protocol: http2`), from HTTP/1 and
//! HTTP/2 clients, against a scripted HTTP/2 upstream: the first tries answer 503,
//! refuse the stream (RST_STREAM REFUSED_STREAM), reset it, or answer gRPC UNAVAILABLE,
//! and the test checks what the upstream saw (how many streams, their attempt counts,
//! their bodies), not only what the client got.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use h2client::{connect, request, STEP};
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// What the scripted upstream does with the stream it is on.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// This status, with a body naming it.
    Status(u16),
    /// 200 with `grpc-status` in a trailers-only response.
    Grpc(u32),
    /// RST_STREAM(REFUSED_STREAM) before reading anything.
    Refuse,
    /// RST_STREAM(INTERNAL_ERROR) after reading the request.
    Reset,
    /// RST_STREAM(INTERNAL_ERROR) once this many body bytes were read, mid-body.
    ResetAfter(usize),
}

/// One stream the upstream saw.
#[derive(Debug, Clone)]
struct Seen {
    headers: http::HeaderMap,
    body: Vec<u8>,
    /// The upstream reset the stream mid-body (`Act::ResetAfter`).
    reset: bool,
}

struct H2Up {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl H2Up {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn header_of_each(&self, name: &str) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| {
                s.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            })
            .collect()
    }
}

/// An h2c upstream whose `n`th stream (0 first, over all connections) gets
/// `script(n)`. It records every stream (a refused one with no body). On its own
/// thread; it stops by itself after a minute.
fn h2_scripted(script: fn(usize) -> Act) -> H2Up {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let record = seen.clone();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 * 1024)
            .make()
            .expect("a glommio executor for the test upstream")
            .run(async move {
                let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let _ = tx.send(l.local_addr().expect("local addr"));
                let serve = async {
                    while let Ok(s) = l.accept().await {
                        let record = record.clone();
                        glommio::spawn_local(async move {
                            let Ok(mut conn) = h2::server::handshake(s.compat()).await else {
                                return;
                            };
                            while let Some(Ok((req, respond))) = conn.accept().await {
                                let n = {
                                    let mut seen = record.lock().unwrap();
                                    seen.push(Seen {
                                        headers: req.headers().clone(),
                                        body: Vec::new(),
                                        reset: false,
                                    });
                                    seen.len() - 1
                                };
                                let record = record.clone();
                                glommio::spawn_local(answer(req, respond, script(n), n, record))
                                    .detach();
                            }
                        })
                        .detach();
                    }
                };
                futures_lite::future::or(serve, glommio::timer::sleep(Duration::from_secs(60)))
                    .await;
            })
    });
    let addr = rx.recv_timeout(STEP).expect("the h2 upstream started");
    H2Up { addr, seen }
}

async fn answer(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    act: Act,
    n: usize,
    record: Arc<Mutex<Vec<Seen>>>,
) {
    if let Act::Refuse = act {
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        return;
    }
    let mut body = req.into_body();
    while let Some(Ok(c)) = body.data().await {
        let _ = body.flow_control().release_capacity(c.len());
        let mut seen = record.lock().unwrap();
        if let Some(s) = seen.get_mut(n) {
            s.body.extend_from_slice(&c);
            if let Act::ResetAfter(at) = act {
                if s.body.len() >= at {
                    s.reset = true;
                    respond.send_reset(h2::Reason::INTERNAL_ERROR);
                    return;
                }
            }
        }
    }
    match act {
        Act::Refuse | Act::ResetAfter(_) => {}
        Act::Reset => respond.send_reset(h2::Reason::INTERNAL_ERROR),
        Act::Status(status) => {
            let resp = http::Response::builder()
                .status(status)
                .body(())
                .expect("a response");
            if let Ok(mut s) = respond.send_response(resp, false) {
                let _ = s.send_data(Bytes::from(format!("status {status}")), true);
            }
        }
        Act::Grpc(code) => {
            let resp = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .header("grpc-status", code)
                .body(())
                .expect("a response");
            let _ = respond.send_response(resp, true);
        }
    }
}

fn fail_first(n: usize) -> fn(usize) -> Act {
    match n {
        1 => |i| {
            if i < 1 {
                Act::Status(503)
            } else {
                Act::Status(200)
            }
        },
        _ => |i| {
            if i < 2 {
                Act::Status(503)
            } else {
                Act::Status(200)
            }
        },
    }
}

/// One listener, one route to the HTTP/2 cluster `backend` (the endpoints given) with
/// `route_extra` under the route and `vhost_extra` under the virtual host.
fn config(endpoints: &[SocketAddr], route_extra: &str, vhost_extra: &str) -> String {
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
route_tables:
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
    protocol: http2
    connect_timeout: 1s
    lb_policy: round_robin
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

/// A request from an HTTP/2 client: `(status, body)`.
fn h2_get(addr: SocketAddr, method: &'static str, body: &'static [u8]) -> h2client::Reply {
    h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request(method, &format!("http://{addr}/x"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, body).await
    })
}

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
fn a_small_http1_body_is_sent_again_and_so_is_a_streamed_one() {
    // Small and whole in the read buffer: taken, and each try sends it.
    let up = h2_scripted(fail_first(1));
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: 5xx"), ""));
    let r = exchange(
        p.listen,
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.body == b"hello"), "{seen:?}");

    // A body past what is taken is read from the client as it goes up, and kept: the
    // retry sends the copy.
    let up = h2_scripted(fail_first(1));
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: 5xx"), ""));
    let big: String = (0..64 * 1024)
        .map(|i| (b'a' + (i % 23) as u8) as char)
        .collect();
    let r = exchange(p.listen, &big_post(&big, ""));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.body == big.as_bytes()),
        "both tries carried it whole"
    );
    assert_eq!(stat(&p, "retry_or_shadow_abandoned"), 0);

    // Past the limit the copy is given up: the 503 goes to the client.
    let up = h2_scripted(fail_first(1));
    let limit = "        per_request_buffer_limit_bytes: 16384\n";
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: 5xx"), limit));
    let r = exchange(p.listen, &big_post(&big, ""));
    assert_eq!(r.status, 503);
    assert_eq!(up.count(), 1);
    assert_eq!(stat(&p, "retry_or_shadow_abandoned"), 1);
}

/// A POST of `body` with a Content-Length (`extra` header lines before the blank line).
fn big_post(body: &str, extra: &str) -> String {
    format!(
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// An HTTP/2 client's body in two DATA frames (so it streams), with trailers.
fn h2_two_frames(addr: SocketAddr, a: Vec<u8>, b: Vec<u8>) -> h2client::Reply {
    h2client::run(move || async move {
        let client = connect(addr).await;
        let req = request("POST", &format!("http://{addr}/x"))
            .body(())
            .unwrap();
        let mut c = client.ready().await.expect("h2 connection ready");
        let (response, mut stream) = c.send_request(req, false).expect("request head");
        stream.reserve_capacity(a.len() + b.len());
        stream
            .send_data(Bytes::from(a), false)
            .expect("first frame");
        stream
            .send_data(Bytes::from(b), false)
            .expect("second frame");
        let mut t = http::HeaderMap::new();
        t.insert("x-t", http::HeaderValue::from_static("1"));
        stream.send_trailers(t).expect("trailers");
        h2client::read_reply(response).await
    })
}

#[test]
fn an_http2_clients_streamed_body_is_sent_again_to_an_http2_upstream() {
    let up = h2_scripted(fail_first(1));
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: 5xx"), ""));
    let a: Vec<u8> = (0..30_000).map(|i| b'a' + (i % 23) as u8).collect();
    let b: Vec<u8> = (0..40_000).map(|i| b'k' + (i % 7) as u8).collect();
    let r = h2_two_frames(p.listen, a.clone(), b.clone());
    assert_eq!(r.status, 200, "{}", r.body_str());
    let whole = [a, b].concat();
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.body == whole),
        "both tries carried it whole"
    );
    assert_eq!(stat(&p, "rq_retry"), 1);
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

/// An Envoy v3 bootstrap: one route to an HTTP/2 cluster on `up` with `route_policy`
/// (a flow mapping of the route's `retry_policy`, or empty) and `vhost_extra` fields.
fn bootstrap(up: SocketAddr, route_policy: &str, vhost_extra: &str) -> String {
    let policy = if route_policy.is_empty() {
        String::new()
    } else {
        format!("                  retry_policy: {route_policy}\n")
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
{vhost_extra}              routes:
              - match: {{ prefix: / }}
                route:
                  cluster: up
                  timeout: 5s
{policy}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#,
        port = up.port()
    )
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

/// Envoy 1.40 and Outrigger given the same bootstrap: an HTTP/1 client's streamed body
/// to an HTTP/2 cluster is kept for a retry up to the buffer limit.
#[test]
fn envoy_and_outrigger_resend_streamed_bodies_to_an_http2_cluster_alike() {
    let Some(bin) = common::envoy::envoy_or_skip(
        "envoy_and_outrigger_resend_streamed_bodies_to_an_http2_cluster_alike",
    ) else {
        return;
    };
    let policy = "{ retry_on: 5xx, retry_back_off: { base_interval: 0.001s } }";
    let big: String = (0..64 * 1024)
        .map(|i| (b'a' + (i % 23) as u8) as char)
        .collect();
    let cases = [
        ("64 KiB streamed and retried", ""),
        (
            "past the virtual host's limit: not retried",
            "              per_request_buffer_limit_bytes: 16384\n",
        ),
    ];
    let run = |listen: SocketAddr, up: &H2Up| {
        let r = exchange(listen, &big_post(&big, ""));
        let bodies: Vec<bool> = up.seen().iter().map(|s| s.body == big.as_bytes()).collect();
        (r.status, bodies)
    };
    let mut diffs = Vec::new();
    for (name, vhost) in cases {
        let envoy_up = h2_scripted(fail_first(1));
        let envoy = common::envoy::Envoy::start(&bin, &bootstrap(envoy_up.addr, policy, vhost));
        let from_envoy = run(envoy.listen, &envoy_up);
        drop(envoy);
        let ours_up = h2_scripted(fail_first(1));
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

/// An HTTP/2 client's body whose first part goes before the upstream resets the stream
/// mid-body (`Act::ResetAfter`) and the rest after: `(status, what each stream read)`.
fn h2_reset_mid_body(addr: SocketAddr, up: &H2Up, a: Vec<u8>, b: Vec<u8>) -> (u16, Vec<usize>) {
    let seen = up.seen.clone();
    let status = h2client::run(move || async move {
        let client = connect(addr).await;
        let req = request("POST", &format!("http://{addr}/x"))
            .body(())
            .unwrap();
        let mut c = client.ready().await.expect("h2 connection ready");
        let (response, mut stream) = c.send_request(req, false).expect("request head");
        stream.reserve_capacity(a.len() + b.len());
        stream.send_data(Bytes::from(a), false).expect("first part");
        // The rest goes once the upstream reset the first stream (bounded wait).
        for _ in 0..2000 {
            if seen.lock().unwrap().first().is_some_and(|s| s.reset) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let _ = stream.send_data(Bytes::from(b), true);
        h2client::read_reply(response).await.status
    });
    (status, up.seen().iter().map(|s| s.body.len()).collect())
}

#[test]
fn an_http2_stream_reset_mid_body_is_retried_with_the_whole_body() {
    let up = h2_scripted(|i| {
        if i == 0 {
            Act::ResetAfter(10_000)
        } else {
            Act::Status(200)
        }
    });
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: reset"), ""));
    let a: Vec<u8> = (0..20_000).map(|i| b'a' + (i % 23) as u8).collect();
    let b: Vec<u8> = (0..30_000).map(|i| b'k' + (i % 7) as u8).collect();
    let (status, reads) = h2_reset_mid_body(p.listen, &up, a.clone(), b.clone());
    assert_eq!(status, 200, "{reads:?}");
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads[0] >= 10_000 && reads[0] < 50_000, "{reads:?}");
    assert_eq!(
        up.seen()[1].body,
        [a, b].concat(),
        "the retry carried it whole"
    );
    assert_eq!(stat(&p, "rq_retry"), 1);
}

/// Envoy 1.40 and Outrigger given the same bootstrap: an HTTP/2 stream reset while the
/// request body is still being sent is retried with the whole body.
#[test]
fn envoy_and_outrigger_retry_a_stream_reset_mid_body_alike() {
    let Some(bin) =
        common::envoy::envoy_or_skip("envoy_and_outrigger_retry_a_stream_reset_mid_body_alike")
    else {
        return;
    };
    let policy = "{ retry_on: reset, retry_back_off: { base_interval: 0.001s } }";
    let script = |i| {
        if i == 0 {
            Act::ResetAfter(10_000)
        } else {
            Act::Status(200)
        }
    };
    let a: Vec<u8> = (0..20_000).map(|i| b'a' + (i % 23) as u8).collect();
    let b: Vec<u8> = (0..30_000).map(|i| b'k' + (i % 7) as u8).collect();
    let run = |listen: SocketAddr, up: &H2Up| {
        let (status, reads) = h2_reset_mid_body(listen, up, a.clone(), b.clone());
        let whole = up
            .seen()
            .get(1)
            .map(|s| s.body == [a.clone(), b.clone()].concat());
        (
            status,
            reads.len(),
            reads.first().is_some_and(|n| *n >= 10_000),
            whole,
        )
    };
    let envoy_up = h2_scripted(script);
    let envoy = common::envoy::Envoy::start(&bin, &bootstrap(envoy_up.addr, policy, ""));
    let from_envoy = run(envoy.listen, &envoy_up);
    drop(envoy);
    let ours_up = h2_scripted(script);
    let proxy = Proxy::start(&bootstrap(ours_up.addr, policy, ""));
    let from_outrigger = run(proxy.listen, &ours_up);
    assert_eq!(from_envoy, from_outrigger, "Envoy, then Outrigger");
}
