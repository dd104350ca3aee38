//! HTTP/2 downstream (h2c with prior knowledge, detected on the HTTP/1 port) proxied to
//! HTTP/1.1 upstreams: curl and h2load as clients, gRPC-style local replies, request and
//! response bodies, and bounded memory behind a slow reader.

mod common;
mod h2client;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use h2client::{connect, read_reply, request, within, STEP};

fn curl_h2(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-i", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl must be installed");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn curl_over_h2c_reaches_an_http1_upstream() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let url = format!("http://{}/h2/path?q=1", p.listen);
    let (code, text) = curl_h2(&["-H", "x-custom: yes", "-H", "te: trailers", &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    let req = up.last_request();
    assert_eq!(req.method, "GET");
    assert_eq!(req.target, "/h2/path?q=1");
    assert_eq!(req.version, "HTTP/1.1");
    assert_eq!(
        req.header("host"),
        Some(p.listen.to_string().as_str()),
        "authority becomes Host"
    );
    assert_eq!(req.header("x-custom"), Some("yes"));
    assert_eq!(req.header("te"), Some("trailers"));
    assert_eq!(req.header("x-forwarded-proto"), Some("http"));
    assert_eq!(req.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(req.header("connection"), None);
    // The access log and stats count it as HTTP/2 on the same listener as HTTP/1.
    assert_eq!(p.listener_stats("main")["rq_total"], 1);
}

#[test]
fn request_bodies_stream_to_the_upstream() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let dir = TempDir::new("h2-body");
    let file = dir.join("body.bin");
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &body).unwrap();
    let url = format!("http://{}/upload", p.listen);
    // With a length: forwarded with Content-Length.
    let (code, text) = curl_h2(&["--data-binary", &format!("@{}", file.display()), &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    let req = up.last_request();
    assert_eq!(req.method, "POST");
    assert!(!req.chunked);
    assert_eq!(req.body_len, body.len() as u64);
    // Without a length: forwarded chunked.
    let (code, text) = curl_h2(&[
        "-H",
        "content-length:",
        "-H",
        "transfer-encoding:",
        "-T",
        file.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code, 0, "{text}");
    let req = up.last_request();
    assert_eq!(req.method, "PUT");
    assert_eq!(req.body_len, body.len() as u64);
}

#[test]
fn small_request_bodies_reach_an_http1_upstream_whole_and_in_step() {
    // A body that arrives in the DATA frame ending the stream goes upstream with the
    // head: framed by its Content-Length, or chunked with the last chunk right after it.
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let addr = p.listen;
    let replies = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let mut replies = Vec::new();
        for (path, length) in [
            ("/sized", true),
            ("/chunked", false),
            ("/sized-again", true),
        ] {
            let mut req = request("POST", &format!("http://{addr}{path}"));
            if length {
                req = req.header("content-length", "5");
            }
            replies.push(h2client::send(&mut client, req.body(()).unwrap(), b"hello").await);
        }
        replies
    });
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.body_str());
    }
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert!(!reqs[0].chunked);
    assert_eq!(reqs[0].header("content-length"), Some("5"));
    assert_eq!(reqs[0].body, b"hello");
    assert!(reqs[1].chunked);
    assert_eq!(
        String::from_utf8_lossy(&reqs[1].wire_body),
        "5\r\nhello\r\n0\r\n\r\n"
    );
    assert_eq!(reqs[2].body, b"hello");
    assert_eq!(
        up.connections(),
        1,
        "the upstream connection stayed in step"
    );
}

#[test]
fn h2load_many_streams_all_succeed() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let out = Command::new("h2load")
        .args([
            "-n",
            "400",
            "-c",
            "2",
            "-m",
            "8",
            &format!("http://{}/load", p.listen),
        ])
        .output()
        .expect("h2load (nghttp2-client) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("400 succeeded, 0 failed"), "{text}");
    assert!(text.contains("status codes: 400 2xx"), "{text}");
}

/// The DATA frames nghttp (nghttp2-client) received for `url`, as (length, END_STREAM).
fn data_frames(url: &str) -> Vec<(usize, bool)> {
    let out = Command::new("nghttp")
        .args(["-v", "-t", "20", url])
        .stdin(Stdio::null())
        .output()
        .expect("nghttp (nghttp2-client) must be installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let mut frames = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.split("recv DATA frame <length=").nth(1) else {
            continue;
        };
        let len = rest.split(',').next().unwrap().parse().unwrap();
        let end = lines.get(i + 1).is_some_and(|n| n.contains("END_STREAM"));
        frames.push((len, end));
    }
    frames
}

#[test]
fn a_content_length_response_ends_with_its_last_data_frame() {
    // One DATA frame carries the body and END_STREAM (as Envoy and HAProxy send it),
    // not the body and then an empty frame to end the stream.
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let frames = data_frames(&format!("http://{}/one-frame", p.listen));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(frames[0].0 > 0 && frames[0].1, "{frames:?}");
    // A chunked body's end is not known until its last chunk: an empty frame ends it.
    let up = Upstream::start(chunked_response(&["hello", "world"], &[]));
    let p = Proxy::start(&proxy_config(up.addr));
    let frames = data_frames(&format!("http://{}/chunked", p.listen));
    let body: usize = frames.iter().map(|f| f.0).sum();
    assert_eq!(body, 10, "{frames:?}");
    assert!(frames.last().unwrap().1, "{frames:?}");
    assert_eq!(frames.iter().filter(|f| f.1).count(), 1, "{frames:?}");
}

#[test]
fn grpc_local_replies_carry_grpc_status() {
    let cfg = format!(
        "{HEADER}listeners:
  - {{ name: main, address: 127.0.0.1, port: @PORT@, route_table: main }}
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /pkg.Svc/ }}
            cluster: gone
clusters:
  - name: gone
    endpoints: [{{ address: 127.0.0.1, port: {} }}]
",
        refused_addr().port()
    );
    let p = Proxy::start(&cfg);
    let grpc = [
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        "",
    ];
    let (_, text) =
        curl_h2(&[&grpc[..], &[&format!("http://{}/other.Svc/Call", p.listen)]].concat());
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(
        text.contains("grpc-status: 12"),
        "no route is UNIMPLEMENTED: {text}"
    );
    let (_, text) = curl_h2(&[&grpc[..], &[&format!("http://{}/pkg.Svc/Call", p.listen)]].concat());
    assert!(
        text.contains("grpc-status: 14"),
        "connect failure is UNAVAILABLE: {text}"
    );
    // Envoy's wording, as on every other path.
    let envoy_uf =
        "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";
    assert!(
        text.contains(&format!("grpc-message: {envoy_uf}\r\n")),
        "{text}"
    );
    // A plain HTTP/2 request gets the plain local reply.
    let (_, text) = curl_h2(&[&format!("http://{}/other", p.listen)]);
    assert!(text.starts_with("HTTP/2 404"), "{text}");
    let (_, text) = curl_h2(&[&format!("http://{}/pkg.Svc/Call", p.listen)]);
    assert!(text.starts_with("HTTP/2 503"), "{text}");
    assert!(text.ends_with(&format!("\r\n\r\n{envoy_uf}")), "{text}");
}

#[test]
fn a_slow_h2_reader_keeps_proxy_memory_bounded() {
    let up = Upstream::start(large_body(512 << 20, false));
    let p = Proxy::start(&proxy_config_with(up.addr, "0s", ""));
    let url = format!("http://{}/big", p.listen);
    let start = Instant::now();
    // curl reads at 200 KiB/s for 3 s: the upstream could send 512 MiB meanwhile.
    let (code, _) = curl_h2(&[
        "--limit-rate",
        "200K",
        "--max-time",
        "3",
        "-o",
        "/dev/null",
        &url,
    ]);
    assert_eq!(code, 28, "curl should stop at its own time limit");
    assert!(start.elapsed() < Duration::from_secs(10));
    let hwm = p.vm_hwm_kib();
    assert!(
        hwm < 64 * 1024,
        "proxy peak RSS {hwm} KiB: flow control must push back"
    );
}

/// Opens a raw h2c connection (preface and an empty SETTINGS frame), then reads frames
/// until the proxy closes it or `limit` passes. Returns the frame types seen and how
/// long it took.
fn raw_h2_until_closed(
    addr: std::net::SocketAddr,
    limit: Duration,
    answer_pings: bool,
) -> (Vec<u8>, Duration) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut types = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            types.push(buf[3]);
            // Answer PINGs like a real client, unless told not to.
            if answer_pings && buf[3] == 6 && buf[4] & 1 == 0 && len == 8 {
                let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                ack.extend_from_slice(&buf[9..17]);
                let _ = s.write_all(&ack);
            }
            buf.drain(..9 + len);
        }
    }
    (types, start.elapsed())
}

fn h2_listener_config(extra: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
{extra}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200 }}
"
    )
}

#[test]
fn idle_h2_connections_get_goaway_and_close() {
    let p = Proxy::start(&h2_listener_config("    idle_timeout: 300ms\n"));
    let (types, took) = raw_h2_until_closed(p.listen, Duration::from_secs(10), true);
    assert!(
        types.contains(&7),
        "a GOAWAY (type 7) before closing: {types:?}"
    );
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "idle timeout not applied: {took:?}"
    );
}

#[test]
fn unanswered_keepalive_pings_close_the_connection() {
    let p = Proxy::start(&h2_listener_config(
        "    idle_timeout: 60s\n    http2: { keepalive_interval: 200ms, keepalive_timeout: 300ms }\n",
    ));
    let (types, took) = raw_h2_until_closed(p.listen, Duration::from_secs(10), false);
    assert!(
        types.contains(&6),
        "the proxy sent a PING (type 6): {types:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "an unanswered PING must close the connection: {took:?}"
    );
}

#[test]
fn drain_lets_in_flight_h2_streams_finish() {
    let up = Upstream::start(delayed(Duration::from_millis(800)));
    let mut p = Proxy::start(&proxy_config(up.addr));
    let url = format!("http://{}/slow", p.listen);
    let curl =
        std::thread::spawn(move || curl_h2(&["-o", "/dev/null", "-w", "%{http_code}", &url]));
    assert!(
        up.wait_requests(1, Duration::from_secs(5)),
        "the request reached the upstream"
    );
    p.signal(libc::SIGTERM);
    let (code, text) = curl.join().unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(
        text.ends_with("200"),
        "the in-flight stream finished: {text}"
    );
    let status = p
        .wait_exit(Duration::from_secs(10))
        .expect("drained and exited");
    assert!(status.success());
}

/// Natively, a route's `max_stream_duration.grpc_timeout_header_max` (zero: no cap) makes
/// a gRPC request's `grpc-timeout` its stream's limit: DEADLINE_EXCEEDED, Envoy's
/// `downstream duration timeout`, long before the 30 s route timeout.
#[test]
fn grpc_timeout_bounds_the_stream_when_the_route_says_so() {
    let up = Upstream::start(delayed(Duration::from_secs(3)));
    let route = "30s\n            max_stream_duration: { grpc_timeout_header_max: 0s }";
    let p = Proxy::start(&proxy_config_with(up.addr, route, ""));
    let start = Instant::now();
    let (_, text) = curl_h2(&[
        "-H",
        "content-type: application/grpc",
        "-H",
        "grpc-timeout: 200m",
        "--data-binary",
        "",
        &format!("http://{}/pkg.Svc/Slow", p.listen),
    ]);
    let took = start.elapsed();
    assert!(text.contains("grpc-status: 4"), "DEADLINE_EXCEEDED: {text}");
    assert!(
        text.contains("grpc-message: downstream duration timeout"),
        "{text}"
    );
    assert!(
        took < Duration::from_secs(2),
        "the 200 ms grpc-timeout applied, not the 30 s route timeout: {took:?}"
    );
    assert_eq!(
        up.requests()[0].header("grpc-timeout"),
        Some("200m"),
        "the limit goes upstream as the grpc-timeout"
    );
}

#[test]
fn a_slow_upstream_reader_keeps_proxy_memory_bounded() {
    use std::io::Read;
    // An HTTP/1.1 upstream that reads the request body at about 1.6 MB/s.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 16 * 1024];
            let deadline = Instant::now() + Duration::from_secs(6);
            while Instant::now() < deadline {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    });
    let p = Proxy::start(&proxy_config_with(up, "0s", ""));
    let dir = TempDir::new("h2-slow-upload");
    let file = dir.join("big.bin");
    // A sparse 512 MiB file: curl could push it in well under a second.
    std::fs::File::create(&file)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let url = format!("http://{}/upload", p.listen);
    let (code, _) = curl_h2(&[
        "--max-time",
        "3",
        "-T",
        file.to_str().unwrap(),
        "-o",
        "/dev/null",
        &url,
    ]);
    assert_eq!(
        code, 28,
        "curl stops at its own time limit, the upload still running"
    );
    let hwm = p.vm_hwm_kib();
    assert!(
        hwm < 64 * 1024,
        "proxy peak RSS {hwm} KiB: the client's window must close"
    );
}

#[test]
fn a_stream_may_outlive_the_connection_idle_timeout() {
    // The idle timeout counts only time without open streams; a stream that lasts longer
    // than it (and keeps moving bytes) must neither end the connection nor stall the
    // worker.
    let trickle: Handler = std::sync::Arc::new(|ctx, _, s| {
        use std::io::Write;
        s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")?;
        for _ in 0..12 {
            ctx.sleep(Duration::from_millis(100));
            s.write_all(b"1\r\nx\r\n")?;
        }
        s.write_all(b"0\r\n\r\n")?;
        Ok(true)
    });
    let up = Upstream::start(trickle);
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "10s",
        "    idle_timeout: 300ms\n",
    ));
    let url = format!("http://{}/slow", p.listen);
    let (code, text) = curl_h2(&["--max-time", "8", "-w", "%{http_code}", &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.ends_with("xxxxxxxxxxxx200"), "{text}");
    // The worker still answers the admin side (stats are gathered from it).
    assert_eq!(p.listener_stats("main")["rq_total"], 1);
}

/// Opens `n` streams that send their headers without END_STREAM and then nothing, and
/// returns what each got back.
fn stalled_streams(addr: std::net::SocketAddr, n: usize) -> Vec<h2client::Reply> {
    h2client::run(move || async move {
        let mut client = connect(addr).await;
        let mut pending = Vec::new();
        for i in 0..n {
            client = within(STEP, "stream slot", client.ready()).await.unwrap();
            let req = request("POST", &format!("http://{addr}/stall/{i}"))
                .body(())
                .unwrap();
            // The request body never comes: the stream stays open from the client side.
            let (response, body) = client.send_request(req, false).unwrap();
            pending.push((response, body));
        }
        let mut replies = Vec::new();
        for (response, _body) in pending {
            replies.push(read_reply(response).await);
        }
        replies
    })
}

#[test]
fn a_stalled_h2_stream_gets_408_and_releases_its_upstream_connection() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "0s",
        "    stream_idle_timeout: 400ms\n",
    ));
    let replies = stalled_streams(p.listen, 4);
    for r in &replies {
        assert_eq!(r.status, 408, "{r:?}");
        assert_eq!(r.body_str(), "stream timeout");
    }
    assert_eq!(up.heads(), 4, "each stream had reached the upstream");
    assert!(
        wait_until(Duration::from_secs(5), || (up.open_connections() == 0)
            .then_some(()))
        .is_some(),
        "the upstream connections were closed: {} still open",
        up.open_connections()
    );
    assert_eq!(flag_count(&p.listener_stats("main"), "SI"), 4);
}

#[test]
fn a_whole_request_left_waiting_gets_504_stream_timeout() {
    // The request arrived whole (END_STREAM on its headers); the upstream says nothing:
    // Envoy's stream idle timeout answers 504 then, not 408.
    let up = Upstream::start(delayed(Duration::from_secs(5)));
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "0s",
        "    stream_idle_timeout: 300ms\n",
    ));
    let addr = p.listen;
    let reply = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request("GET", &format!("http://{addr}/wait"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, b"").await
    });
    assert_eq!(reply.status, 504, "{reply:?}");
    assert_eq!(reply.body_str(), "stream timeout");
    assert_eq!(flag_count(&p.listener_stats("main"), "SI"), 1);
}

#[test]
fn the_stream_idle_timeout_resets_a_response_that_stops_moving() {
    let stall: Handler = std::sync::Arc::new(|ctx, _, s| {
        use std::io::Write;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")?;
        ctx.sleep(Duration::from_secs(5));
        Ok(false)
    });
    let up = Upstream::start(stall);
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "0s",
        "    stream_idle_timeout: 300ms\n",
    ));
    let addr = p.listen;
    let reply = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request("GET", &format!("http://{addr}/part"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, b"").await
    });
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body_str(), "abc");
    assert!(reply.reset.is_some(), "a reset, not END_STREAM: {reply:?}");
    assert_eq!(flag_count(&p.listener_stats("main"), "SI"), 1);
}

#[test]
fn streams_follow_stream_idle_timeout_not_the_connection_idle_timeout() {
    // A short connection idle_timeout does not end a stream, and stream_idle_timeout 0s
    // turns the stream clock off: a whole request to a silent upstream lives until the
    // route timeout.
    let up = Upstream::start(delayed(Duration::from_secs(5)));
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "1s",
        "    idle_timeout: 200ms\n    stream_idle_timeout: 0s\n",
    ));
    let addr = p.listen;
    let reply = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request("GET", &format!("http://{addr}/wait"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, b"").await
    });
    assert_eq!(reply.status, 504, "{reply:?}");
    assert_eq!(reply.body_str(), "upstream request timeout");
    let s = p.listener_stats("main");
    assert_eq!(flag_count(&s, "UT"), 1, "{s}");
    assert_eq!(flag_count(&s, "SI"), 0, "{s}");
}

#[test]
fn the_route_timeout_starts_when_the_request_is_complete() {
    // Envoy starts the route timeout when the downstream request is complete: a request
    // body that stalls is not ended by it (300 ms here) but by the stream idle timeout,
    // as a 408 while the request is still arriving.
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "300ms",
        "    stream_idle_timeout: 1s\n",
    ));
    let replies = stalled_streams(p.listen, 1);
    assert_eq!(replies[0].status, 408, "{:?}", replies[0]);
    assert_eq!(replies[0].body_str(), "stream timeout");
    assert!(
        wait_until(Duration::from_secs(5), || (up.open_connections() == 0)
            .then_some(()))
        .is_some(),
        "the upstream connection was closed"
    );
    let s = p.listener_stats("main");
    assert_eq!(flag_count(&s, "SI"), 1, "{s}");
    assert_eq!(flag_count(&s, "UT"), 0, "{s}");
    assert_eq!(p.cluster_stats("backend")["rq_timeout"], 0);
}

#[test]
fn small_bodies_wait_for_a_window_smaller_than_they_are() {
    // A body that comes whole with the upstream's head goes out from the head's copy,
    // and a body's first write skips h2's capacity reservation: either way the client's
    // window (1000 bytes here) still paces the DATA frames, and every byte arrives.
    for n in [3000usize, 8000, 15000] {
        let mut raw = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n").into_bytes();
        raw.extend((0..n).map(|i| b'a' + (i % 26) as u8));
        let up = Upstream::start(fixed(raw));
        let p = Proxy::start(&proxy_config_with(up.addr, "5s", ""));
        let addr = p.listen;
        let (reply, frames) = h2client::run(move || async move {
            let mut settings = h2::client::Builder::new();
            settings.initial_window_size(1000);
            let client = h2client::connect_with(addr, &settings).await;
            let mut client = within(STEP, "stream slot", client.ready()).await.unwrap();
            let req = request("GET", &format!("http://{addr}/small"))
                .body(())
                .unwrap();
            let (response, _) = client.send_request(req, true).unwrap();
            let resp = within(STEP, "response head", response).await.unwrap();
            let mut reply = h2client::Reply {
                status: resp.status().as_u16(),
                ..Default::default()
            };
            let mut body = resp.into_body();
            let mut frames = Vec::new();
            while let Some(chunk) = within(STEP, "response body", body.data()).await {
                let c = chunk.unwrap();
                frames.push(c.len());
                reply.body.extend_from_slice(&c);
                let _ = body.flow_control().release_capacity(c.len());
            }
            (reply, frames)
        });
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.len(), n, "every byte of {n}");
        assert!(
            reply
                .body
                .iter()
                .enumerate()
                .all(|(i, b)| *b == b'a' + (i % 26) as u8),
            "the bytes in order"
        );
        assert!(
            frames.iter().all(|f| *f <= 1000),
            "no DATA frame past the window: {frames:?}"
        );
    }
}

#[test]
fn the_route_timeout_resets_a_response_the_client_does_not_read() {
    let up = Upstream::start(large_body(64 << 20, false));
    let p = Proxy::start(&proxy_config_with(up.addr, "500ms", ""));
    let addr = p.listen;
    let (status, reset) = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request("GET", &format!("http://{addr}/big"))
            .body(())
            .unwrap();
        client = within(STEP, "stream slot", client.ready()).await.unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        let resp = within(STEP, "response head", response).await.unwrap();
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        // Read what the window lets through without ever opening it again.
        let reset = loop {
            match within(STEP, "reset after the route timeout", body.data()).await {
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(e.to_string()),
                None => break None,
            }
        };
        (status, reset)
    });
    assert_eq!(status, 200);
    assert!(
        reset.is_some(),
        "the stream ends in a reset, not END_STREAM"
    );
    assert!(
        wait_until(Duration::from_secs(5), || (up.open_connections() == 0)
            .then_some(()))
        .is_some(),
        "the upstream connection was closed"
    );
    assert_eq!(flag_count(&p.listener_stats("main"), "UT"), 1);
}

#[test]
fn h2_heads_are_checked_like_http1_heads() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "5s",
        "    limits: { max_headers: 4, max_request_line_bytes: 100 }\n",
    ));
    let addr = p.listen;
    let replies = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let mut out = Vec::new();
        let cases: Vec<http::Request<()>> = vec![
            // Host must name the same authority as :authority.
            request("GET", "http://a.example/x")
                .header("host", "b.example")
                .body(())
                .unwrap(),
            // At most one Host.
            request("GET", "http://a.example/x")
                .header("host", "a.example")
                .header("host", "a.example")
                .body(())
                .unwrap(),
            // The authority must be a plain host (as Host on HTTP/1.1).
            request("GET", "http://user@a.example/x").body(()).unwrap(),
            // More header fields than max_headers.
            (0..5)
                .fold(request("GET", "http://a.example/x"), |b, i| {
                    b.header(format!("x-h{i}"), "v")
                })
                .body(())
                .unwrap(),
            // :method + :path longer than max_request_line_bytes.
            request("GET", &format!("http://a.example/{}", "p".repeat(100)))
                .body(())
                .unwrap(),
            // Fine: Host equal to :authority (case aside), four headers, a short path.
            request("GET", "http://a.example/ok")
                .header("host", "A.example")
                .header("x-a", "1")
                .header("x-b", "2")
                .header("x-c", "3")
                .body(())
                .unwrap(),
        ];
        for req in cases {
            out.push(h2client::send(&mut client, req, b"").await);
        }
        out
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 400, 400, 431, 414, 200], "{replies:?}");
    let texts: Vec<String> = replies.iter().map(|r| r.body_str()).collect();
    assert_eq!(
        texts[..5],
        [
            "host differs from :authority",
            "more than one host header",
            "invalid host",
            "request headers too large",
            "request line too long",
        ]
    );
    assert_eq!(up.request_count(), 1, "only the valid request was proxied");
    assert_eq!(up.last_request().target, "/ok");
    assert_eq!(flag_count(&p.listener_stats("main"), "DPE"), 5);
}

#[test]
fn every_trailer_up_to_max_headers_reaches_the_client_and_more_reset_the_stream() {
    let names: Vec<(String, String)> = (0..40)
        .map(|i| (format!("x-t{i}"), format!("v{i}")))
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let up = Upstream::start(chunked_response(&["ab", "cd"], &pairs));
    let roomy = Proxy::start(&proxy_config(up.addr));
    let tight = Proxy::start(&proxy_config_with(
        up.addr,
        "5s",
        "    limits: { max_headers: 39 }\n",
    ));
    let (a, b) = (roomy.listen, tight.listen);
    let (full, cut) = h2client::run(move || async move {
        let mut out = Vec::new();
        for addr in [a, b] {
            let mut client = connect(addr).await;
            let req = request("GET", &format!("http://{addr}/t"))
                .body(())
                .unwrap();
            out.push(h2client::send(&mut client, req, b"").await);
        }
        (out.remove(0), out.remove(0))
    });
    assert_eq!(full.status, 200, "{full:?}");
    assert_eq!(full.body_str(), "abcd");
    assert!(full.reset.is_none(), "{full:?}");
    let t = full.trailers.expect("trailers arrived");
    assert_eq!(t.len(), 40, "all 40 trailers: {t:?}");
    assert_eq!(t.get("x-t39").unwrap(), "v39");
    // One field over the listener's limit: the stream is reset, never ended as if whole.
    // (A reset discards the stream's frames still queued, so the client may see it
    // before the response head.)
    assert!(cut.reset.is_some(), "{cut:?}");
    assert!(cut.body.len() < 4, "{cut:?}");
    assert!(cut.trailers.is_none());
    assert_eq!(flag_count(&tight.listener_stats("main"), "UPE"), 1);
    assert_eq!(tight.cluster_stats("backend")["rq_protocol_error"], 1);
}
