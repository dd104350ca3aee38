//! Request bodies kept for a retry to an HTTP/2 cluster (`protocol: http2`), from HTTP/1
//! and HTTP/2 clients, against the scripted HTTP/2 upstream (`h2_scripted`): a streamed
//! body is sent again whole by a retry, up to `per_request_buffer_limit_bytes`, and a
//! stream the upstream resets while the body is still being sent is retried with the
//! whole body. The parity cases hand the same bootstrap to Envoy 1.40.

mod common;
mod h2_scripted;
mod h2client;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use h2_scripted::fail_first;
use h2_scripted::*;
use h2client::{connect, request};

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

/// An HTTP/1 client's chunked trailers go to an HTTP/2 cluster as trailing HEADERS (the
/// listener's `proxy_headers.http1_trailers`, on natively; Envoy's `enable_trailers`),
/// and a retry sends them again after the kept body.
#[test]
fn an_http1_clients_trailers_go_again_with_a_retry() {
    let up = h2_scripted(fail_first(1));
    let p = Proxy::start(&config(&[up.addr], &policy("retry_on: 5xx"), ""));
    let chunk = "c".repeat(10_000);
    let mut raw = String::from(
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..3 {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\nx-t: 1\r\n\r\n");
    let r = exchange(p.listen, &raw);
    assert_eq!(r.status, 200, "{}", r.body_str());
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.body.len(), 30_000);
        let t = s.trailers.as_ref().and_then(|t| t.get("x-t"));
        assert_eq!(t.map(|v| v.as_bytes()), Some(&b"1"[..]), "{:?}", s.trailers);
    }
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

/// The same from an HTTP/1 client with a Content-Length body.
fn h1_reset_mid_body(addr: SocketAddr, up: &H2Up, a: &[u8], b: &[u8]) -> (u16, Vec<usize>) {
    let mut c = Conn::connect(addr);
    c.send(format!(
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        a.len() + b.len()
    ));
    c.send(a);
    let reset = wait_until(Duration::from_secs(10), || {
        up.seen().first().is_some_and(|s| s.reset).then_some(())
    });
    assert!(reset.is_some(), "the upstream never reset the first stream");
    let _ = c.try_send(b);
    let status = c.read_response().map_or(0, |r| r.status);
    (status, up.seen().iter().map(|s| s.body.len()).collect())
}

#[test]
fn an_http1_body_reset_mid_body_by_an_http2_upstream_is_retried_whole() {
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
    let (status, reads) = h1_reset_mid_body(p.listen, &up, &a, &b);
    assert_eq!(status, 200, "{reads:?}");
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_eq!(
        up.seen()[1].body,
        [a, b].concat(),
        "the retry carried it whole"
    );
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
    // From an HTTP/2 client, then from an HTTP/1 one.
    let run = |listen: SocketAddr, up: &H2Up, h2: bool| {
        let (status, reads) = if h2 {
            h2_reset_mid_body(listen, up, a.clone(), b.clone())
        } else {
            h1_reset_mid_body(listen, up, &a, &b)
        };
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
    for h2 in [true, false] {
        let envoy_up = h2_scripted(script);
        let envoy = common::envoy::Envoy::start(&bin, &bootstrap(envoy_up.addr, policy, ""));
        let from_envoy = run(envoy.listen, &envoy_up, h2);
        drop(envoy);
        let ours_up = h2_scripted(script);
        let proxy = Proxy::start(&bootstrap(ours_up.addr, policy, ""));
        let from_outrigger = run(proxy.listen, &ours_up, h2);
        assert_eq!(
            from_envoy, from_outrigger,
            "HTTP/2 client: {h2}; Envoy, then Outrigger"
        );
    }
}
