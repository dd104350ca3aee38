//! A request body and an upstream that does not wait for it: the upstream fails after
//! the body was (partly) forwarded, or answers before the body is complete. The client
//! always gets an answer at once, and the connection closes, since the rest of its
//! request body can no longer be told apart from a next request.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::raw::*;
use common::*;

fn post(len: usize) -> String {
    format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n")
}

/// Checks a 503 local reply that says and does close.
fn assert_503_and_close(c: &mut Conn, what: &str) {
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("{what}: no immediate answer: {e}"));
    assert_eq!(r.status, 503, "{what}: {}", r.body_str());
    assert!(r.says_close(), "{what}: {:?}", r.headers);
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "{what}: not closed"
    );
}

#[test]
fn upstream_closing_after_the_whole_body_gets_an_immediate_reply() {
    // The upstream reads the whole request, then closes without a response. The body is
    // gone; reading it again to "discard" it waited for the idle timeout (300 s).
    let up = Upstream::start(close_without_response());
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send(format!("{}hello", post(5)));
    assert_503_and_close(&mut c, "content-length body");
    let mut c = Conn::connect(proxy.listen);
    c.send("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_503_and_close(&mut c, "chunked body");
    assert_eq!(up.request_count(), 2, "both bodies reached the upstream");
}

#[test]
fn upstream_closing_mid_body_gets_an_immediate_reply() {
    // The upstream reads the head and a little of the body, then closes. The client has
    // sent half of its body and waits for an answer.
    let up = raw_upstream(1, |mut s| {
        read_head_and(&mut s, 1000);
    });
    let proxy = Proxy::start(&proxy_config(up));
    let mut c = Conn::connect(proxy.listen);
    c.send(post(200_000));
    c.send(vec![b'x'; 100_000]);
    assert_503_and_close(&mut c, "half-sent body");
}

/// Answers 413 as soon as the head has arrived, without reading the body (with
/// `connection: close` if `close`), then behaves as `after` says.
fn early_413(after: After, close: bool) -> SocketAddr {
    raw_upstream(4, move |mut s| {
        read_head_and(&mut s, 0);
        let connection = if close { "connection: close\r\n" } else { "" };
        let _ = s.write_all(
            format!(
                "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n{connection}\r\ntoo big\n"
            )
            .as_bytes(),
        );
        match after {
            // A careful server: half-close, keep reading the body for a while, close.
            After::Drain => {
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut sink = [0u8; 65536];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            }
            // Keep the connection open without reading, until the proxy closes it.
            After::Hold => {
                let mut one = [0u8; 1];
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let _ = s.peek(&mut one);
                thread::sleep(Duration::from_secs(1));
            }
        }
    })
}

#[derive(Clone, Copy)]
enum After {
    Drain,
    Hold,
}

/// Checks that the early 413 reached the client with `connection: close` and that the
/// connection then closed.
fn assert_early_413(c: &mut Conn) {
    let r = c.read_response().expect("the early response");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (413, "too big\n"),
        "{:?}",
        r.headers
    );
    assert!(r.says_close(), "{:?}", r.headers);
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn early_response_while_the_client_is_still_sending_is_forwarded() {
    // The client sends part of its body and waits: the upstream's 413 must reach it,
    // not a 503, not a hang.
    // 1,000,000 bytes: within the limit up to which the rest of a body is forwarded
    // after an early answer, which waits for it briefly; 2,000,000: past it, cut at once.
    for (after, len) in [
        (After::Hold, 1_000_000),
        (After::Drain, 1_000_000),
        (After::Hold, 2_000_000),
    ] {
        let up = early_413(after, true);
        let proxy = Proxy::start(&proxy_config(up));
        let mut c = Conn::connect(proxy.listen);
        c.send(post(len));
        c.send(vec![b'x'; 10_000]);
        assert_early_413(&mut c);
        let counted = wait_until(Duration::from_secs(5), || {
            (proxy.listener_stats("main")["rq_class"][3] == 1).then_some(())
        });
        assert!(counted.is_some(), "{}", proxy.listener_stats("main"));
    }
}

#[test]
fn early_response_ends_the_upstream_connection() {
    // After an early response the upstream connection is out of step (the request body
    // was cut, here because the client stops sending): the next request must open a
    // new one. The upstream does not say `connection: close` and keeps its connection
    // open.
    let up = early_413(After::Hold, false);
    let proxy = Proxy::start(&proxy_config(up));
    for _ in 0..2 {
        let mut c = Conn::connect(proxy.listen);
        c.send(post(100));
        c.send(b"0123456789");
        assert_early_413(&mut c);
    }
    let cs = proxy.cluster_stats("backend");
    assert_eq!(cs["cx_total"], 2, "{cs}");
    assert_eq!(cs["cx_reused"], 0, "{cs}");
}

#[test]
fn an_early_answer_to_a_small_body_sent_at_once_keeps_both_connections() {
    // The client sends each 64 KiB body whole; the upstream answers after the head and
    // reads the body afterwards. The rest of the body is forwarded before the answer
    // goes out, so neither connection is cut (Envoy keeps both too, having read the
    // body by the time the response ends).
    let bodies = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let up = answers_before_reading(bodies.clone());
    let proxy = Proxy::start(&proxy_config(up));
    let mut c = Conn::connect(proxy.listen);
    for i in 0..3 {
        let mut request = post(65_536).into_bytes();
        request.extend(std::iter::repeat_n(b'x', 65_536));
        c.send(request);
        let r = c.read_response().expect("the answer");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "ok\n"),
            "request {i}"
        );
        assert!(!r.says_close(), "request {i}: {:?}", r.headers);
    }
    let cs = proxy.cluster_stats("backend");
    assert_eq!(
        (&cs["cx_total"], &cs["cx_reused"]),
        (&1.into(), &2.into()),
        "{cs}"
    );
    let read = wait_until(Duration::from_secs(5), || {
        (bodies.load(std::sync::atomic::Ordering::SeqCst) == 3).then_some(())
    });
    assert!(read.is_some(), "the upstream read every body whole");
}

/// The same bootstrap through Envoy 1.40 and Outrigger: three 64 KiB uploads on one
/// connection, each request in one client write, to an upstream that answers after the
/// head and reads the body afterwards (as nginx's `return 200`). Both answer all three
/// on the one connection without `connection: close`, and the upstream reads every body
/// whole. Skips, saying why, when Envoy is not installed.
#[test]
fn an_early_answer_to_small_uploads_behaves_like_envoy() {
    let Some(bin) = common::envoy::envoy_or_skip("early answer parity") else {
        return;
    };
    let run = |start: &dyn Fn(SocketAddr) -> (SocketAddr, Box<dyn std::any::Any>)| {
        let bodies = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (listen, _proxy) = start(answers_before_reading(bodies.clone()));
        let mut c = Conn::connect(listen);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut request = post(65_536).into_bytes();
            request.extend(std::iter::repeat_n(b'x', 65_536));
            c.send(request);
            seen.push(match c.read_response() {
                Ok(r) => format!("{} {:?} close={}", r.status, r.body_str(), r.says_close()),
                Err(e) => format!("no answer: {e}"),
            });
        }
        let read = wait_until(Duration::from_secs(5), || {
            let n = bodies.load(std::sync::atomic::Ordering::SeqCst);
            (n == 3).then_some(n)
        });
        seen.push(format!("bodies read whole: {read:?}"));
        seen
    };
    let theirs = run(&|up| {
        let e = common::envoy::Envoy::start(&bin, &common::envoy::one_cluster_bootstrap(up, ""));
        (e.listen, Box::new(e))
    });
    let ours = run(&|up| {
        let p = Proxy::start(&common::envoy::one_cluster_bootstrap(up, ""));
        (p.listen, Box::new(p))
    });
    assert_eq!(ours, theirs, "Outrigger vs Envoy");
    assert_eq!(ours[0], "200 \"ok\\n\" close=false", "{ours:?}");
}
