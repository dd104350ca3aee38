//! Crash containment: a panic while serving one connection or stream closes that
//! connection (or resets that stream), is counted and logged, and never stops the worker;
//! a worker executor that dies anyway makes /ready fail and the process exit non-zero.
//! The panics are triggered through the test-only hooks in `src/test_hooks.rs`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn a_panicking_http1_connection_is_closed_and_the_worker_keeps_serving() {
    let up = Upstream::echo();
    // One worker: if the panic took it down, nothing would answer afterwards.
    let proxy = Proxy::start_env(
        &proxy_config(up.addr),
        1,
        &[("OUTRIGGER_TEST_PANIC_PATH", "/boom")],
    );
    // A keep-alive connection that has already served a request, then panics.
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    c.send("GET /boom?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "the panicking connection must be closed"
    );
    // Other connections, new and old, are unaffected.
    for _ in 0..3 {
        let r = get(proxy.listen, "a", "/after");
        assert_eq!(r.status, 200);
    }
    let l = proxy.listener_stats("main");
    assert_eq!(l["cx_panic"], 1, "{l}");
    assert!(
        wait_until(Duration::from_secs(5), || (proxy.listener_stats("main")
            ["cx_active"]
            == 0)
            .then_some(()))
        .is_some(),
        "the panicked connection must not stay counted as active"
    );
    let err = proxy.stderr();
    assert!(
        err.contains("connection handler panicked") && err.contains("/boom"),
        "{err}"
    );
    assert!(proxy.admin_get("/ready").status == 200);
    let prom = proxy.prometheus();
    assert_eq!(
        metric(
            &prom,
            "outrigger_downstream_cx_panic_total{listener=\"main\"}"
        ),
        Some(1.0),
        "{prom}"
    );
}

#[test]
fn a_panicking_http2_stream_is_reset_and_the_connection_keeps_serving() {
    let up = Upstream::echo();
    let proxy = Proxy::start_env(
        &proxy_config(up.addr),
        1,
        &[("OUTRIGGER_TEST_PANIC_PATH", "/boom")],
    );
    // One nghttp client, one HTTP/2 connection, three streams: the middle one panics.
    // (curl 7.88 cannot reuse a prior-knowledge connection, so nghttp is the client.)
    let out = Command::new("nghttp")
        .args(["-v", "-t", "10"])
        .arg(proxy.url("/one"))
        .arg(proxy.url("/boom"))
        .arg(proxy.url("/two"))
        .output()
        .expect("these tests need `nghttp` (Debian nghttp2-client) on PATH");
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text.matches(":status: 200").count();
    let resets = text.matches("recv RST_STREAM").count();
    assert_eq!(ok, 2, "the other streams are answered: {text}");
    assert_eq!(resets, 1, "the panicking stream is reset: {text}");
    assert!(
        !text.contains("recv GOAWAY"),
        "the connection is not closed: {text}"
    );
    let l = proxy.listener_stats("main");
    assert_eq!(l["cx_panic"], 1, "{l}");
    assert!(proxy.stderr().contains("HTTP/2 stream handler panicked"));
}

#[test]
fn a_dead_worker_turns_ready_off_and_the_process_exits_non_zero() {
    // Slow requests keep the surviving worker draining for a while, so that /ready can
    // be seen turning 503 before the process exits.
    let echo = echo();
    let up = Upstream::start(std::sync::Arc::new(move |ctx, req, s| {
        if req.target.starts_with("/slow") {
            std::thread::sleep(Duration::from_secs(3));
        }
        echo(ctx, req, s)
    }));
    let config = proxy_config(up.addr).replace("drain_timeout: 1s", "drain_timeout: 10s");
    let mut proxy = Proxy::start_env(&config, 2, &[("OUTRIGGER_TEST_WORKER_PANIC_PATH", "/die")]);
    // Sixteen connections spread over both workers by SO_REUSEPORT: the chance that none
    // lands on the surviving worker is 2^-16.
    let slow: Vec<_> = (0..16)
        .map(|_| {
            let addr = proxy.listen;
            std::thread::spawn(move || {
                let mut c = Conn::connect(addr);
                c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
                c.read_response().map(|r| r.status).ok()
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || (up.heads() >= 16).then_some(())).is_some(),
        "the slow requests must reach the upstream"
    );
    assert_eq!(proxy.admin_get("/ready").status, 200);
    let _ = Conn::try_connect(proxy.listen).map(|mut c| {
        c.set_timeout(Duration::from_secs(2));
        let _ = c.try_send("GET /die HTTP/1.1\r\nHost: a\r\n\r\n");
        let _ = c.read_response();
    });
    assert!(
        wait_until(Duration::from_secs(5), || {
            (proxy.admin_get("/ready").status == 503).then_some(())
        })
        .is_some(),
        "/ready must turn 503 once a worker died"
    );
    let status = proxy
        .wait_exit(Duration::from_secs(20))
        .expect("the process must exit after a worker died");
    assert!(!status.success(), "exit status must be non-zero: {status}");
    // The surviving worker's requests finished during the drain.
    let answered = slow
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .filter(|&s| s == 200)
        .count();
    assert!(
        answered >= 1,
        "the surviving worker must finish its requests"
    );
    let err = proxy.stderr();
    assert!(
        err.contains("worker executor stopped unexpectedly"),
        "{err}"
    );
    assert!(err.contains("died"), "{err}");
}
