//! The upstream request's clocks and retry rule on all four protocol combinations
//! (HTTP/1 or HTTP/2 client, HTTP/1 or HTTP/2 upstream): the route timeout starts when
//! the request is complete and covers the response body (504 `UT` before the response
//! head, a closed connection or a reset after, as Envoy's `onResponseTimeout`), the
//! stream idle timeout bounds every wait, and a stale pooled connection is retried once.
//!
//! HTTP/2 upstreams are a second outrigger (B) in front of an HTTP/1.1 upstream.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use h2client::{connect, read_reply, request, within, STEP};

/// Sends a response head and the first 3 of 10 body bytes, then stalls.
fn stalls_mid_body() -> Handler {
    Arc::new(|ctx, _, s| {
        use std::io::Write;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")?;
        ctx.sleep(Duration::from_secs(8));
        Ok(false)
    })
}

/// A front proxy whose cluster `backend` speaks `protocol` to `b`, with this route
/// timeout and extra listener fields (indented by 4).
fn front(b: SocketAddr, timeout: &str, protocol: &str, listener_extra: &str) -> String {
    proxy_config_with(b, timeout, listener_extra).replace(
        "    connect_timeout: 1s\n",
        &format!("    connect_timeout: 1s\n    protocol: {protocol}\n"),
    )
}

/// An HTTP/1.1 GET whose response head arrives and whose body then stalls: the client
/// gets the head and part of the body, then the connection closes (no local reply can
/// follow a head). Returns what the client read.
fn h1_get_cut_mid_body(addr: SocketAddr) -> String {
    let mut c = Conn::connect(addr);
    c.send("GET /slow-body HTTP/1.1\r\nHost: t\r\n\r\n");
    String::from_utf8_lossy(&c.read_all(STEP)).into_owned()
}

/// The same over HTTP/2: the head, part of the body, then a reset.
fn h2_get_cut_mid_body(addr: SocketAddr) -> h2client::Reply {
    h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request("GET", &format!("http://{addr}/slow-body"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, b"").await
    })
}

fn wait_flag(p: &Proxy, flag: &str) -> bool {
    wait_until(Duration::from_secs(5), || {
        (flag_count(&p.listener_stats("main"), flag) == 1).then_some(())
    })
    .is_some()
}

// ------------------------------------------------------------------------------------
// The route timeout covers the response body
// ------------------------------------------------------------------------------------

#[test]
fn h1_to_h1_route_timeout_closes_a_response_whose_body_stalls() {
    let up = Upstream::start(stalls_mid_body());
    let p = Proxy::start(&proxy_config_with(up.addr, "1s", ""));
    let got = h1_get_cut_mid_body(p.listen);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        got.ends_with("abc"),
        "the body was cut, no reply followed: {got}"
    );
    assert!(wait_flag(&p, "UT"), "{}", p.listener_stats("main"));
    assert_eq!(p.cluster_stats("backend")["rq_timeout"], 1);
}

#[test]
fn h1_to_h2_route_timeout_closes_a_response_whose_body_stalls() {
    let up = Upstream::start(stalls_mid_body());
    let b = Proxy::start(&proxy_config_with(up.addr, "20s", ""));
    let a = Proxy::start(&front(b.listen, "1s", "http2", ""));
    let got = h1_get_cut_mid_body(a.listen);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        got.ends_with("abc"),
        "the body was cut, no reply followed: {got}"
    );
    assert!(wait_flag(&a, "UT"), "{}", a.listener_stats("main"));
    assert_eq!(a.cluster_stats("backend")["rq_timeout"], 1);
}

#[test]
fn h2_to_h1_route_timeout_resets_a_response_whose_body_stalls() {
    let up = Upstream::start(stalls_mid_body());
    let p = Proxy::start(&proxy_config_with(up.addr, "1s", ""));
    let reply = h2_get_cut_mid_body(p.listen);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body_str(), "abc");
    assert!(reply.reset.is_some(), "a reset, not END_STREAM: {reply:?}");
    assert!(wait_flag(&p, "UT"), "{}", p.listener_stats("main"));
    assert_eq!(p.cluster_stats("backend")["rq_timeout"], 1);
}

#[test]
fn h2_to_h2_route_timeout_resets_a_response_whose_body_stalls() {
    let up = Upstream::start(stalls_mid_body());
    let b = Proxy::start(&proxy_config_with(up.addr, "20s", ""));
    let a = Proxy::start(&front(b.listen, "1s", "http2", ""));
    let reply = h2_get_cut_mid_body(a.listen);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body_str(), "abc");
    assert!(reply.reset.is_some(), "a reset, not END_STREAM: {reply:?}");
    assert!(wait_flag(&a, "UT"), "{}", a.listener_stats("main"));
    assert_eq!(a.cluster_stats("backend")["rq_timeout"], 1);
}

#[test]
fn a_route_timeout_before_the_response_head_is_504_on_every_combination() {
    let slow = Upstream::start(delayed(Duration::from_secs(5)));
    let b = Proxy::start(&proxy_config_with(slow.addr, "20s", ""));
    for protocol in ["http1", "http2"] {
        let target = if protocol == "http1" {
            slow.addr
        } else {
            b.listen
        };
        let a = Proxy::start(&front(target, "300ms", protocol, ""));
        let r = get(a.listen, "t", "/slow-head");
        assert_eq!(r.status, 504, "HTTP/1 to {protocol}: {}", r.body_str());
        assert_eq!(r.body_str(), "upstream request timeout");
        let addr = a.listen;
        let reply = h2client::run(move || async move {
            let mut client = connect(addr).await;
            let req = request("GET", &format!("http://{addr}/slow-head"))
                .body(())
                .unwrap();
            h2client::send(&mut client, req, b"").await
        });
        assert_eq!(reply.status, 504, "HTTP/2 to {protocol}: {reply:?}");
        assert_eq!(reply.body_str(), "upstream request timeout");
        let s = a.listener_stats("main");
        assert_eq!(flag_count(&s, "UT"), 2, "{protocol}: {s}");
        assert_eq!(a.cluster_stats("backend")["rq_timeout"], 2, "{protocol}");
    }
}

#[test]
fn the_route_timeout_starts_when_an_http1_request_body_is_complete() {
    // Envoy's route timeout runs from the end of the request: a client that takes
    // longer than it to send its body still gets the upstream's answer.
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config_with(up.addr, "1s", ""));
    let mut c = Conn::connect(p.listen);
    c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc");
    // The stall itself (not a wait for readiness): longer than the route timeout.
    std::thread::sleep(Duration::from_millis(1500));
    c.send("def");
    let r = c.read_response().expect("the upstream's answer");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(up.last_request().body_len, 6);
}

// ------------------------------------------------------------------------------------
// The stream idle timeout on every path
// ------------------------------------------------------------------------------------

#[test]
fn h1_to_h1_stream_idle_timeout_ends_a_stalled_response_body_under_a_route_timeout() {
    // The route timeout is long; the stream idle timeout ends the stalled body first.
    let up = Upstream::start(stalls_mid_body());
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "20s",
        "    stream_idle_timeout: 1s\n",
    ));
    let got = h1_get_cut_mid_body(p.listen);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("abc"), "{got}");
    assert!(wait_flag(&p, "SI"), "{}", p.listener_stats("main"));
    assert_eq!(flag_count(&p.listener_stats("main"), "UT"), 0);
}

#[test]
fn h1_to_h1_stream_idle_timeout_answers_a_stalled_request_body_with_408() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "20s",
        "    stream_idle_timeout: 300ms\n",
    ));
    let mut c = Conn::connect(p.listen);
    c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    let r = c.read_response().expect("a 408 at the stream idle timeout");
    assert_eq!(r.status, 408, "{}", r.body_str());
    assert_eq!(r.body_str(), "stream timeout");
    assert!(r.says_close());
    assert!(wait_flag(&p, "SI"), "{}", p.listener_stats("main"));
}

#[test]
fn h1_to_h2_stream_idle_timeout_answers_a_silent_upstream_with_504() {
    let slow = Upstream::start(delayed(Duration::from_secs(5)));
    let b = Proxy::start(&proxy_config_with(slow.addr, "20s", ""));
    let a = Proxy::start(&front(
        b.listen,
        "0s",
        "http2",
        "    stream_idle_timeout: 300ms\n",
    ));
    let mut c = Conn::connect(a.listen);
    c.send("GET /silent HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().expect("a 504 at the stream idle timeout");
    assert_eq!(r.status, 504, "{}", r.body_str());
    assert_eq!(r.body_str(), "stream timeout");
    assert!(wait_flag(&a, "SI"), "{}", a.listener_stats("main"));
}

#[test]
fn h1_to_h2_stream_idle_timeout_closes_a_stalled_response_body() {
    let up = Upstream::start(stalls_mid_body());
    let b = Proxy::start(&proxy_config_with(up.addr, "20s", ""));
    let a = Proxy::start(&front(
        b.listen,
        "20s",
        "http2",
        "    stream_idle_timeout: 1s\n",
    ));
    let got = h1_get_cut_mid_body(a.listen);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(wait_flag(&a, "SI"), "{}", a.listener_stats("main"));
}

#[test]
fn h2_to_h2_stream_idle_timeout_resets_a_stalled_response_body() {
    let up = Upstream::start(stalls_mid_body());
    let b = Proxy::start(&proxy_config_with(up.addr, "20s", ""));
    let a = Proxy::start(&front(
        b.listen,
        "20s",
        "http2",
        "    stream_idle_timeout: 1s\n",
    ));
    let reply = h2_get_cut_mid_body(a.listen);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.reset.is_some(), "a reset, not END_STREAM: {reply:?}");
    assert!(wait_flag(&a, "SI"), "{}", a.listener_stats("main"));
}

// ------------------------------------------------------------------------------------
// Retry
// ------------------------------------------------------------------------------------

/// Answers the first request on each connection; reads the second and closes without
/// answering (an upstream that dies while processing it).
fn dies_on_second_request() -> Handler {
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        usize,
        usize,
    >::new()));
    Arc::new(move |_, req, s| {
        use std::io::Write;
        let n = {
            let mut m = seen.lock().unwrap();
            let n = m.entry(req.conn_id).or_insert(0);
            *n += 1;
            *n
        };
        if n >= 2 {
            return Ok(false);
        }
        write!(s, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")?;
        Ok(true)
    })
}

#[test]
fn h2_to_h1_retries_an_idempotent_request_once_on_a_fresh_connection() {
    let up = Upstream::start(dies_on_second_request());
    let p = Proxy::start(&proxy_config(up.addr));
    let addr = p.listen;
    let (warm, read, post) = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let get = |path: &str| {
            request("GET", &format!("http://{addr}{path}"))
                .body(())
                .unwrap()
        };
        let warm = h2client::send(&mut client, get("/warm-up"), b"").await;
        let read = h2client::send(&mut client, get("/read"), b"").await;
        // Not idempotent: the upstream got it and died; it is never sent twice.
        let c = within(STEP, "stream slot", client.clone().ready())
            .await
            .unwrap();
        let mut c = c;
        let req = request("POST", &format!("http://{addr}/charge"))
            .body(())
            .unwrap();
        let (response, _) = c.send_request(req, true).unwrap();
        let post = read_reply(response).await;
        (warm, read, post)
    });
    assert_eq!(warm.status, 200, "{warm:?}");
    assert_eq!(
        read.status, 200,
        "the stale connection was retried: {read:?}"
    );
    assert_eq!(post.status, 503, "{post:?}");
    let charges = up
        .requests()
        .iter()
        .filter(|q| q.target == "/charge")
        .count();
    assert_eq!(charges, 1, "the POST reached the upstream once");
    assert_eq!(up.connections(), 2);
}
