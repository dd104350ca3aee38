//! HTTP/2 to upstreams (`protocol: http2`): an HTTP/1.1 client through proxy A, which
//! speaks h2c to proxy B (a second outrigger, as the HTTP/2 server), which sends the
//! request on to an HTTP/1.1 echo upstream. Both translations are exercised.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use h2client::{connect, read_reply, request, within, AfterAnswer, STEP};

fn front(b: SocketAddr, timeout: &str, protocol: &str) -> String {
    front_with(b, timeout, protocol, "")
}

/// `front` with extra listener fields (a YAML flow mapping's inner part, e.g.
/// `, stream_idle_timeout: 1s`).
fn front_with(b: SocketAddr, timeout: &str, protocol: &str, listener_extra: &str) -> String {
    format!(
        "{HEADER}listeners:
  - {{ name: main, address: 127.0.0.1, port: @PORT@, route_table: main{listener_extra} }}
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: b
            timeout: {timeout}
clusters:
  - name: b
    protocol: {protocol}
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        b.port()
    )
}

#[test]
fn http1_clients_reach_an_http2_upstream_over_one_connection() {
    let up = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let a = Proxy::start(&front(b.listen, "5s", "http2"));
    let mut c = Conn::connect(a.listen);
    for i in 0..5 {
        c.send(
            format!("GET /n/{i} HTTP/1.1\r\nHost: svc.example\r\nX-Hop: {i}\r\n\r\n").as_bytes(),
        );
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert!(!r.says_close());
    }
    let req = up.last_request();
    assert_eq!(req.target, "/n/4");
    assert_eq!(req.header("host"), Some("svc.example"));
    assert_eq!(req.header("x-hop"), Some("4"));
    // Client IP from A, then from B.
    assert_eq!(req.header("x-forwarded-for"), Some("127.0.0.1,127.0.0.1"));
    let s = a.cluster_stats("b");
    assert_eq!(
        s["cx_total"], 1,
        "requests share one HTTP/2 connection: {s}"
    );
    assert_eq!(s["rq_total"], 5);
}

#[test]
fn request_bodies_and_chunked_responses_cross_both_translations() {
    let up = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let a = Proxy::start(&front(b.listen, "5s", "http2"));
    let mut c = Conn::connect(a.listen);
    let body = "x".repeat(100_000);
    c.send(
        format!(
            "POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().unwrap().status, 200);
    assert_eq!(up.last_request().body_len, body.len() as u64);
    c.send(b"POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    assert_eq!(up.last_request().body_len, 11);

    let chunky = Upstream::start(chunked_response(
        &["ab", "cd", "ef"],
        &[("x-checksum", "abc")],
    ));
    let b2 = Proxy::start(&proxy_config(chunky.addr));
    let a2 = Proxy::start(&front(b2.listen, "5s", "http2"));
    let mut c = Conn::connect(a2.listen);
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "abcdef");
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "no length: chunked to HTTP/1.1"
    );
    // The upstream's chunked trailers became HTTP/2 trailers at B, and A writes them
    // after the chunked body: both sides' `http1_trailers` are on natively (an Envoy
    // bootstrap's default drops them both ways: tests/h1_trailers_parity.rs).
    assert_eq!(r.trailer("x-checksum"), Some("abc"), "{:?}", r.trailers);
}

#[test]
fn http2_upstream_failures_map_to_local_replies() {
    let slow = Upstream::start(delayed(Duration::from_secs(3)));
    let b = Proxy::start(&proxy_config_with(slow.addr, "10s", ""));
    let a = Proxy::start(&front(b.listen, "300ms", "http2"));
    let r = get(a.listen, "h", "/slow");
    assert_eq!(r.status, 504, "{}", r.body_str());
    assert_eq!(flag_count(&a.listener_stats("main"), "UT"), 1);

    let a2 = Proxy::start(&front(refused_addr(), "5s", "http2"));
    let r = get(a2.listen, "h", "/");
    assert_eq!(r.status, 503);
    assert_eq!(flag_count(&a2.listener_stats("main"), "UF"), 1);
}

#[test]
fn downstream_protocol_follows_the_client() {
    let up = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let a = Proxy::start(&front(b.listen, "5s", "downstream"));
    // HTTP/1.1 client: HTTP/1.1 to B.
    assert_eq!(get(a.listen, "h", "/one").status, 200);
    assert_eq!(b.listener_stats("main")["rq_total"], 1);
    // HTTP/2 client: HTTP/2 to B (B counts both, the access path differs).
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg(format!("http://{}/two", a.listen))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2");
    assert_eq!(up.last_request().target, "/two");
}

#[test]
fn a_stalled_h2_stream_to_an_h2_upstream_gets_408_and_resets_the_upstream_stream() {
    let up = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let a = Proxy::start(&front_with(
        b.listen,
        "0s",
        "http2",
        ", stream_idle_timeout: 400ms",
    ));
    let addr = a.listen;
    let reply = h2client::run(move || async move {
        let client = connect(addr).await;
        let mut client = within(STEP, "stream slot", client.ready()).await.unwrap();
        let req = request("POST", &format!("http://{addr}/stall"))
            .body(())
            .unwrap();
        // Headers without END_STREAM, then nothing.
        let (response, _body) = client.send_request(req, false).unwrap();
        read_reply(response).await
    });
    assert_eq!(reply.status, 408, "{reply:?}");
    assert_eq!(reply.body_str(), "stream timeout");
    assert_eq!(flag_count(&a.listener_stats("main"), "SI"), 1);
    // A reset its stream to B, so B gave up its HTTP/1.1 upstream connection.
    assert!(
        wait_until(Duration::from_secs(5), || (up.open_connections() == 0
            && flag_count(&b.listener_stats("main"), "DC") == 1)
            .then_some(()))
        .is_some(),
        "B saw the reset and closed its upstream connection: {} open",
        up.open_connections()
    );
}

#[test]
fn a_whole_request_to_a_silent_h2_upstream_gets_504_stream_timeout() {
    let slow = Upstream::start(delayed(Duration::from_secs(5)));
    let b = Proxy::start(&proxy_config_with(slow.addr, "10s", ""));
    let a = Proxy::start(&front_with(
        b.listen,
        "0s",
        "http2",
        ", stream_idle_timeout: 300ms",
    ));
    let addr = a.listen;
    let reply = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request("GET", &format!("http://{addr}/wait"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, b"").await
    });
    assert_eq!(reply.status, 504, "{reply:?}");
    assert_eq!(reply.body_str(), "stream timeout");
    assert_eq!(flag_count(&a.listener_stats("main"), "SI"), 1);
}

#[test]
fn every_forwarded_for_value_survives_both_translations() {
    let up = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let a = Proxy::start(&front(b.listen, "5s", "http2"));
    let direct = b.listen;
    let through_a = a.listen;
    h2client::run(move || async move {
        for addr in [direct, through_a] {
            let mut client = connect(addr).await;
            let req = request("GET", &format!("http://{addr}/xff"))
                .header("x-forwarded-for", "10.0.0.1")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-for", "10.0.0.2, 10.0.0.3")
                .body(())
                .unwrap();
            let r = h2client::send(&mut client, req, b"").await;
            assert_eq!(r.status, 200, "{r:?}");
        }
    });
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    // HTTP/2 client -> B (HTTP/1.1 upstream): every value kept, the peer appended.
    assert_eq!(
        reqs[0].headers_named("x-forwarded-for"),
        ["10.0.0.1,10.0.0.2, 10.0.0.3,127.0.0.1"]
    );
    assert_eq!(reqs[0].headers_named("x-forwarded-proto"), ["http"]);
    // HTTP/2 client -> A (HTTP/2 upstream) -> B: A keeps every value too, then B.
    assert_eq!(
        reqs[1].headers_named("x-forwarded-for"),
        ["10.0.0.1,10.0.0.2, 10.0.0.3,127.0.0.1,127.0.0.1"]
    );
    assert_eq!(reqs[1].headers_named("x-forwarded-proto"), ["http"]);
}

#[test]
fn statuses_outside_1xx_to_5xx_from_either_upstream_become_502() {
    // An HTTP/1.1 upstream (HTTP/2 client, h2 -> h1 path) and an HTTP/2 upstream
    // (h2 -> h2 path), both answering 600.
    let h1 = Upstream::start(fixed("HTTP/1.1 600 Beyond\r\ncontent-length: 0\r\n\r\n"));
    let h2 = h2client::h2_upstream(600);
    let via_h1 = Proxy::start(&proxy_config(h1.addr));
    let via_h2 = Proxy::start(&front(h2, "5s", "http2"));
    let (a, b) = (via_h1.listen, via_h2.listen);
    let replies = h2client::run(move || async move {
        let mut out = Vec::new();
        for addr in [a, b] {
            let mut client = connect(addr).await;
            let req = request("GET", &format!("http://{addr}/s"))
                .body(())
                .unwrap();
            out.push(h2client::send(&mut client, req, b"").await);
        }
        out
    });
    for (r, p) in replies.iter().zip([&via_h1, &via_h2]) {
        assert_eq!(r.status, 502, "{r:?}");
        // Envoy's text for an upstream protocol error.
        assert_eq!(
            r.body_str(),
            "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
        );
        assert_eq!(flag_count(&p.listener_stats("main"), "UPE"), 1);
    }
    assert_eq!(via_h2.cluster_stats("b")["rq_protocol_error"], 1);
}

#[test]
fn hop_by_hop_headers_of_an_http1_client_never_reach_an_http2_upstream() {
    // A route that passes websocket upgrades, to an HTTP/2 cluster: the upgrade's
    // `upgrade` and `connection` are this hop's own and HTTP/2 has no place for them
    // (RFC 9113 section 8.2.2). Forwarding `upgrade` made the h2 crate refuse the
    // request, and the client got a 503.
    let up = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let a = Proxy::start(&format!(
        "{HEADER}listeners:
  - {{ name: main, address: 127.0.0.1, port: @PORT@, route_table: main }}
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: b
            upgrades: [websocket]
clusters:
  - name: b
    protocol: http2
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        b.listen.port()
    ));
    let mut c = Conn::connect(a.listen);
    c.send(
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade, keep-alive, X-Secret\r\n\
         Upgrade: websocket\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\nTE: trailers, deflate\r\nX-Visible: yes\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    let req = up.last_request();
    for h in [
        "upgrade",
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-connection",
    ] {
        assert!(!req.has_header(h), "`{h}` went on: {:?}", req.headers);
    }
    assert_eq!(req.headers_named("te"), ["trailers"]);
    assert_eq!(req.header("x-visible"), Some("yes"));
    assert_eq!(flag_count(&a.listener_stats("main"), "UC"), 0);
}

#[test]
fn an_early_response_from_an_http2_upstream_reaches_the_http1_client() {
    // The upstream reads a little of a large body, then answers 413 while the client is
    // still sending. It either stops reading (the body is stuck on HTTP/2 flow control:
    // the 413 came only with the route timeout, as a 504) or resets the request stream
    // with NO_ERROR (the failed body write became a 503). Either way the 413 must reach
    // the client, with `connection: close`, and the connection must close, since the
    // rest of the body can no longer be told apart from a next request.
    // 1,000,000 bytes is within the limit up to which the rest of a body is forwarded
    // after an early answer, for a short while: the client here stops sending first.
    for after in [AfterAnswer::Hold, AfterAnswer::Drop] {
        let up = h2client::h2_upstream_early(413, "too big\n", 16 * 1024, after);
        let a = Proxy::start(&front(up, "5s", "http2"));
        let mut c = Conn::connect(a.listen);
        c.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n");
        c.send(vec![b'x'; 200_000]);
        let r = c.read_response().expect("the early response");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (413, "too big\n"),
            "{after:?}: {:?}",
            r.headers
        );
        assert!(r.says_close(), "{after:?}: {:?}", r.headers);
        assert!(c.closed_within(Duration::from_secs(3)), "{after:?}");
        let counted = wait_until(Duration::from_secs(5), || {
            (a.listener_stats("main")["rq_class"][3] == 1).then_some(())
        });
        assert!(counted.is_some(), "{}", a.listener_stats("main"));
    }
}

#[test]
fn an_early_answer_from_an_http2_upstream_to_a_small_body_keeps_the_client_connection() {
    // The upstream answers after 16 KiB of a 256 KiB body (four times the stream's
    // initial window: the proxy is still sending when the answer comes), then reads the
    // rest. The client sent its body at once: the rest goes up before the answer is
    // relayed, so the client's connection stays (Envoy's, having read the body, does
    // too).
    let up = h2client::h2_upstream_early(200, "early\n", 16 * 1024, AfterAnswer::Drain);
    let a = Proxy::start(&front(up, "5s", "http2"));
    let mut c = Conn::connect(a.listen);
    for i in 0..3 {
        let mut request =
            b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 262144\r\n\r\n".to_vec();
        request.extend(std::iter::repeat_n(b'x', 262_144));
        c.send(request);
        let r = c.read_response().expect("the answer");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "early\n"),
            "request {i}: {:?}",
            r.headers
        );
        assert!(!r.says_close(), "request {i}: {:?}", r.headers);
    }
}
