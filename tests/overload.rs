//! Overload protection: connection limits per listener (`max_connections`) and for the
//! process (`runtime.max_connections`), and the request-head deadline
//! (`request_headers_timeout`) against slowloris clients.

mod common;

use std::time::Duration;

use common::*;

/// Opens a connection and proves it is being served (one request answered).
fn served(addr: std::net::SocketAddr) -> Conn {
    let mut c = Conn::connect(addr);
    c.send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response().expect("an admitted connection is served");
    assert_eq!(r.status, 200);
    c
}

/// A new connection above a limit is closed at once, without a response.
fn refused(addr: std::net::SocketAddr) {
    let mut c = Conn::connect(addr);
    let _ = c.try_send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "a connection above the limit must be closed"
    );
}

#[test]
fn listener_connection_limit_closes_new_connections_only() {
    let up = Upstream::echo();
    // Two workers: the limit holds over all of them.
    let proxy = Proxy::start_with(
        &proxy_config_with(up.addr, "5s", "    max_connections: 2\n"),
        2,
    );
    let mut a = served(proxy.listen);
    let b = served(proxy.listen);
    refused(proxy.listen);
    refused(proxy.listen);
    // The open ones are unaffected.
    a.send("GET /again HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(a.read_response().unwrap().status, 200);
    let l = proxy.listener_stats("main");
    assert_eq!(l["cx_overflow"], 2, "{l}");
    let prom = proxy.prometheus();
    assert_eq!(
        metric(
            &prom,
            "outrigger_downstream_cx_overflow_total{listener=\"main\"}"
        ),
        Some(2.0),
        "{prom}"
    );
    // A closed connection gives its slot back.
    drop(b);
    assert!(
        wait_until(Duration::from_secs(5), || {
            (proxy.listener_stats("main")["cx_active"] == 1).then_some(())
        })
        .is_some(),
        "the closed connection must be released"
    );
    let _c = served(proxy.listen);
}

#[test]
fn process_connection_limit_counts_every_listener() {
    let up = Upstream::echo();
    let config = proxy_config(up.addr).replace("runtime:\n", "runtime:\n  max_connections: 1\n");
    let proxy = Proxy::start(&config);
    let _a = served(proxy.listen);
    refused(proxy.listen);
    assert_eq!(proxy.listener_stats("main")["cx_overflow"], 1);
}

#[test]
fn zero_connection_limits_are_refused_with_the_field() {
    let up = Upstream::echo();
    let dir = TempDir::new("overload");
    let path = dir.join("bad.yaml");
    let config = proxy_config_with(up.addr, "5s", "    max_connections: 0\n")
        .replace("runtime:\n", "runtime:\n  max_connections: 0\n")
        .replace("@ADMIN_PORT@", "9")
        .replace("@PORT@", "10");
    write_atomic(&path, &config);
    let out = run_cli(
        &["validate", "-c", &path.display().to_string()],
        Duration::from_secs(10),
    );
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(err.contains("runtime.max_connections"), "{err}");
    assert!(err.contains("listeners[0].max_connections"), "{err}");
}

#[test]
fn slowloris_head_gets_408_at_the_request_headers_timeout() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config_with(
        up.addr,
        "5s",
        "    request_headers_timeout: 1s\n",
    ));
    // A complete request in time is served as usual, on the same connection as below.
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /fast HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    drop(c);
    // A head trickled a byte every 100 ms: each byte resets the idle timeout (300 s), but
    // not the head's own deadline.
    let mut s = std::net::TcpStream::connect(proxy.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        use std::io::Write;
        let _ = w.write_all(b"GET /slow HTTP/1.1\r\n");
        for _ in 0..60 {
            if w.write_all(b"X").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut got);
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(text.ends_with("request header timeout"), "{text:?}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text:?}"
    );
    let _ = trickle.join();
    assert_eq!(
        up.request_count(),
        1,
        "the slow request never went upstream"
    );
}

#[test]
fn without_request_headers_timeout_a_slow_head_still_completes() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    for part in ["GET /s", "low HTTP/1.1\r\n", "Host: a\r\n", "\r\n"] {
        c.send(part);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(c.read_response().unwrap().status, 200);
}
