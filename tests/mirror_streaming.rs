//! Mirroring of request bodies that stream (Envoy's streaming shadows): a chunked
//! HTTP/1 body, a body over 1 MiB, and an HTTP/2 body without `content-length` (and its
//! trailers) reach the shadow whole, to HTTP/1 and HTTP/2 mirror clusters, teed as they
//! go to the
//! primary; a shadow whose upstream stops reading falls behind, is abandoned and
//! counted (`rq_shadow_abandoned`), and the primary's request completes regardless. No
//! test asserts a timing.

mod common;
mod h2client;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bodies::*;
use common::*;

const WAIT: Duration = Duration::from_secs(20);

const CONFIG: &str = r#"
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: { prefix: /h1 }
            cluster: primary
            request_mirror_policies: [{ cluster: mirror }]
          - match: { prefix: /h2 }
            cluster: primary
            request_mirror_policies: [{ cluster: mirror_h2 }]
          - match: { prefix: /stall }
            cluster: primary
            request_mirror_policies: [{ cluster: stalled }]
clusters:
  - name: primary
    endpoints: [{ address: 127.0.0.1, port: @PRIMARY@ }]
  - name: mirror
    endpoints: [{ address: 127.0.0.1, port: @MIRROR@ }]
  - name: mirror_h2
    protocol: http2
    endpoints: [{ address: 127.0.0.1, port: @MIRROR_H2@ }]
  - name: stalled
    endpoints: [{ address: 127.0.0.1, port: @STALLED@ }]
"#;

/// A server that accepts connections and never reads from them.
struct Stalled {
    addr: SocketAddr,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Stalled {
    fn new() -> Stalled {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                keep.lock().unwrap().push(s);
            }
        });
        Stalled { addr, _held: held }
    }
}

struct Setup {
    proxy: Proxy,
    primary: Upstream,
    mirror: Upstream,
    /// What the HTTP/2 mirror cluster's endpoint (a second proxy speaking h2c) passed on.
    mirror_h2: Upstream,
    _b: Proxy,
    _stalled: Stalled,
}

fn setup() -> Setup {
    let primary = Upstream::echo();
    let mirror = Upstream::echo();
    let mirror_h2 = Upstream::echo();
    let stalled = Stalled::new();
    let b = Proxy::start(&proxy_config(mirror_h2.addr));
    let routes = CONFIG
        .replace("@PRIMARY@", &primary.addr.port().to_string())
        .replace("@MIRROR@", &mirror.addr.port().to_string())
        .replace("@MIRROR_H2@", &b.listen.port().to_string())
        .replace("@STALLED@", &stalled.addr.port().to_string());
    let cfg = format!(
        "{HEADER}listeners:\n  - name: main\n    address: 127.0.0.1\n    port: @PORT@\n    route_table: main\n{routes}"
    );
    Setup {
        proxy: Proxy::start(&cfg),
        primary,
        mirror,
        mirror_h2,
        _b: b,
        _stalled: stalled,
    }
}

fn stat(s: &Setup, cluster: &str, name: &str) -> u64 {
    s.proxy.cluster_stats(cluster)[name].as_u64().unwrap_or(0)
}

/// The last request `up` got on `target`, once it has one.
fn got(up: &Upstream, target: &str) -> Recorded {
    wait_until(WAIT, || {
        up.requests().into_iter().rev().find(|r| r.target == target)
    })
    .unwrap_or_else(|| panic!("no {target} upstream"))
}

#[test]
fn a_chunked_http1_body_reaches_both_kinds_of_mirror_whole() {
    let s = setup();
    for (path, mirror) in [("/h1/c", &s.mirror), ("/h2/c", &s.mirror_h2)] {
        let mut c = Conn::connect(s.proxy.listen);
        c.send(format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        ));
        assert_eq!(c.read_response().unwrap().status, 200);
        assert_eq!(got(&s.primary, path).body, b"hello world");
        let m = got(mirror, path);
        assert_eq!(m.body, b"hello world", "{}", m.describe());
        assert!(m.header("host").is_some_and(|h| h.ends_with("-shadow")));
    }
    assert_eq!(stat(&s, "mirror", "rq_shadow"), 1);
    assert_eq!(stat(&s, "mirror", "rq_shadow_dropped"), 0);
    assert_eq!(stat(&s, "mirror_h2", "rq_shadow_dropped"), 0);
}

#[test]
fn a_body_over_a_mebibyte_reaches_the_mirror_whole() {
    let s = setup();
    let n = (2 << 20) + 7;
    let mut body = vec![0u8; n];
    fill_pattern(&mut body, 0);
    for path in ["/h1/big", "/h2/big"] {
        let mirror = if path.starts_with("/h1") {
            &s.mirror
        } else {
            &s.mirror_h2
        };
        let mut c = Conn::connect(s.proxy.listen);
        c.send(format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\ncontent-length: {n}\r\n\r\n"
        ));
        // Paced by the mirror: the client never runs more than 512 KiB ahead of what
        // the mirror upstream has read, so the shadow stays within the tee's 1 MiB
        // bound however slowly this machine runs it (a shadow further behind is
        // abandoned: the last test).
        let start = mirror.body_bytes();
        let mut sent = 0;
        for piece in body.chunks(256 << 10) {
            let caught_up =
                || (mirror.body_bytes() - start + (512 << 10) >= sent as u64).then_some(());
            assert!(wait_until(WAIT, caught_up).is_some(), "the shadow stalled");
            c.send(piece);
            sent += piece.len();
        }
        assert_eq!(c.read_response().unwrap().status, 200);
        let m = got(mirror, path);
        assert_eq!(m.body_len, n as u64, "{}", m.describe());
        assert!(
            matches_pattern(&m.body, 0),
            "the shadow's body is the client's"
        );
        assert_eq!(got(&s.primary, path).body_len, n as u64);
    }
}

#[test]
fn an_http2_body_without_a_length_reaches_both_kinds_of_mirror_whole() {
    let s = setup();
    let data = letters(300_000);
    for (path, mirror) in [("/h1/s", &s.mirror), ("/h2/s", &s.mirror_h2)] {
        let (status, _) = h2_stream_post(&s.proxy.url(path), &data);
        assert_eq!(status, 200);
        let m = got(mirror, path);
        assert_eq!(m.body_len, data.len() as u64, "{}", m.describe());
        assert_eq!(m.body, data.as_bytes());
    }
    assert_eq!(stat(&s, "mirror", "rq_shadow_dropped"), 0);
}

#[test]
fn a_shadow_that_stops_reading_is_abandoned_and_the_primary_completes() {
    let s = setup();
    // More than the shadow's socket buffers and the tee's bound can take.
    let n: usize = 48 << 20;
    let mut body = vec![0u8; n];
    fill_pattern(&mut body, 0);
    for (path, h2) in [("/stall/h1", false), ("/stall/h2", true)] {
        if h2 {
            let text: String = body.iter().map(|&b| (b'a' + b % 26) as char).collect();
            let (status, _) = h2_stream_post(&s.proxy.url(path), &text);
            assert_eq!(status, 200);
        } else {
            let mut c = Conn::connect(s.proxy.listen);
            c.set_timeout(WAIT);
            c.send(format!(
                "POST {path} HTTP/1.1\r\nHost: a\r\ncontent-length: {n}\r\n\r\n"
            ));
            c.send(&body);
            assert_eq!(c.read_response().unwrap().status, 200);
        }
        assert_eq!(got(&s.primary, path).body_len, n as u64);
    }
    let abandoned = || (stat(&s, "stalled", "rq_shadow_abandoned") == 2).then_some(());
    assert!(
        wait_until(WAIT, abandoned).is_some(),
        "{}",
        s.proxy.cluster_stats("stalled")
    );
}

#[test]
fn an_http2_requests_trailers_follow_its_body_to_an_http2_mirror() {
    let s = setup();
    let uri = s.proxy.url("/h2/t");
    let listen = s.proxy.listen;
    let status = h2client::run(move || async move {
        let client = h2client::connect(listen).await;
        let mut c = h2client::within(h2client::STEP, "stream slot", client.ready())
            .await
            .expect("h2 connection ready");
        let req = h2client::request("POST", &uri).body(()).expect("request");
        let (response, mut stream) = c.send_request(req, false).expect("headers");
        stream.reserve_capacity(10);
        stream
            .send_data(bytes::Bytes::from_static(b"hello"), false)
            .expect("data");
        let mut t = http::HeaderMap::new();
        t.insert("x-t1", "one".parse().unwrap());
        stream.send_trailers(t).expect("trailers");
        h2client::read_reply(response).await.status
    });
    assert_eq!(status, 200);
    // The HTTP/2 mirror cluster is a second proxy, which passes the body on chunked
    // (it has no length) with the trailers as chunked trailers.
    let m = got(&s.mirror_h2, "/h2/t");
    assert_eq!(m.body, b"hello", "{}", m.describe());
    assert_eq!(m.trailers, [("x-t1".to_string(), "one".to_string())]);
}

#[test]
fn an_http2_body_that_ends_with_a_late_empty_frame_still_reaches_the_mirror() {
    // HEADERS without END_STREAM, then, after the request was routed and its upstream
    // connected, an empty DATA frame that ends the stream: the shadow's copy ends too,
    // and nothing counts against the mirror. (The same frame landing during the
    // upstream connect, which `h2/to_h1.rs` now also finishes the tee for, is a race
    // this test cannot force; it passes without that fix.)
    let s = setup();
    let uri = s.proxy.url("/h1/late");
    let listen = s.proxy.listen;
    let status = h2client::run(move || async move {
        let client = h2client::connect(listen).await;
        let mut c = h2client::within(h2client::STEP, "stream slot", client.ready())
            .await
            .expect("h2 connection ready");
        let req = h2client::request("POST", &uri).body(()).expect("request");
        let (response, mut stream) = c.send_request(req, false).expect("headers");
        glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
        stream
            .send_data(bytes::Bytes::new(), true)
            .expect("empty end");
        h2client::read_reply(response).await.status
    });
    assert_eq!(status, 200);
    let m = got(&s.mirror, "/h1/late");
    assert_eq!(m.body_len, 0, "{}", m.describe());
    assert_eq!(stat(&s, "mirror", "rq_shadow_failed"), 0);
}
