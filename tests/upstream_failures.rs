//! Upstream failures: refused connections (503 UF), route timeouts (504 UT), upstreams
//! that close without answering (503 UC), clusters without endpoints (503 UH), stale
//! pooled connections, truncated bodies; and no request is ever silently dropped.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

struct Setup {
    proxy: Proxy,
    ok: Upstream,
    slow: Upstream,
    closer: Upstream,
    bad: Upstream,
    trunc: Upstream,
    refused: SocketAddr,
}

const LOG_FORMAT: &str =
    "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER% %UPSTREAM_HOST%";

fn setup() -> Setup {
    let ok = Upstream::echo();
    let slow = Upstream::start(delayed(Duration::from_secs(3)));
    let closer = Upstream::start(close_without_response());
    let bad = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    ));
    let trunc = Upstream::start(fixed_then_close(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..",
    ));
    let refused = refused_addr();
    let route = |prefix: &str, cluster: &str, timeout: &str| {
        format!("          - match: {{ prefix: {prefix} }}\n            cluster: {cluster}\n            timeout: {timeout}\n")
    };
    let cluster = |name: &str, addr: Option<SocketAddr>| {
        match addr {
        Some(a) => format!(
            "  - name: {name}\n    connect_timeout: 1s\n    endpoints:\n      - {{ address: 127.0.0.1, port: {} }}\n",
            a.port()
        ),
        None => format!("  - name: {name}\n    endpoints: []\n"),
    }
    };
    let yaml = format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    access_log:
      path: @DIR@/access.log
      format: \"{LOG_FORMAT}\"
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
{}{}{}{}{}{}{}clusters:
{}{}{}{}{}{}{}",
        route("/ok", "ok", "5s"),
        route("/refused", "refused", "5s"),
        route("/slow", "slow", "300ms"),
        route("/close", "closer", "5s"),
        route("/empty", "empty", "5s"),
        route("/bad", "bad", "5s"),
        route("/truncated", "trunc", "5s"),
        cluster("ok", Some(ok.addr)),
        cluster("refused", Some(refused)),
        cluster("slow", Some(slow.addr)),
        cluster("closer", Some(closer.addr)),
        cluster("empty", None),
        cluster("bad", Some(bad.addr)),
        cluster("trunc", Some(trunc.addr)),
    );
    Setup {
        proxy: Proxy::start(&yaml),
        ok,
        slow,
        closer,
        bad,
        trunc,
        refused,
    }
}

fn access_log_line(s: &Setup, path: &str) -> String {
    let log = s.proxy.dir.join("access.log");
    wait_for_line(&log, Duration::from_secs(5), |l| {
        l.starts_with(&format!("{path} "))
    })
    .unwrap_or_else(|| panic!("no access-log line for {path}:\n{}", read_lossy(&log)))
}

#[test]
fn connect_refused_is_503_uf() {
    let s = setup();
    let r = get(s.proxy.listen, "test", "/refused");
    assert_eq!(r.status, 503, "{}", r.body_str());
    assert_eq!(
        access_log_line(&s, "/refused"),
        format!("/refused 503 UF refused {}", s.refused)
    );
    let l = s.proxy.listener_stats("main");
    assert_eq!(flag_count(&l, "UF"), 1, "{l}");
    let c = s.proxy.cluster_stats("refused");
    assert_eq!(c["cx_connect_fail"], 1, "{c}");
    assert_eq!(c["rq_class"][4], 1, "{c}");
    let prom = s.proxy.prometheus();
    assert_eq!(
        metric(
            &prom,
            "outrigger_downstream_rq_flag_total{listener=\"main\",flag=\"UF\"}"
        ),
        Some(1.0),
        "{prom}"
    );
}

#[test]
fn route_timeout_is_504_ut() {
    let s = setup();
    let start = Instant::now();
    let r = get(s.proxy.listen, "test", "/slow");
    let took = start.elapsed();
    assert_eq!(r.status, 504, "{}", r.body_str());
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
        "a 300ms route timeout answered after {took:?}"
    );
    assert!(access_log_line(&s, "/slow").starts_with("/slow 504 UT slow "));
    assert_eq!(flag_count(&s.proxy.listener_stats("main"), "UT"), 1);
    assert_eq!(s.proxy.cluster_stats("slow")["rq_timeout"], 1);
    // The timed-out upstream connection is not reused for the next request.
    let r = get(s.proxy.listen, "test", "/slow");
    assert_eq!(r.status, 504);
    assert_eq!(s.slow.connections(), 2);
}

#[test]
fn upstream_closing_without_response_is_503_uc() {
    let s = setup();
    let r = get(s.proxy.listen, "test", "/close");
    assert_eq!(r.status, 503, "{}", r.body_str());
    assert!(access_log_line(&s, "/close").starts_with("/close 503 UC closer "));
    assert_eq!(flag_count(&s.proxy.listener_stats("main"), "UC"), 1);
    assert_eq!(s.closer.request_count(), 1);
}

#[test]
fn cluster_without_endpoints_is_503_uh() {
    let s = setup();
    let r = get(s.proxy.listen, "test", "/empty");
    assert_eq!(r.status, 503, "{}", r.body_str());
    // (The cluster name in this line is checked in tests/access_log.rs.)
    let line = access_log_line(&s, "/empty");
    assert!(line.starts_with("/empty 503 UH "), "{line}");
    assert!(line.ends_with(" -"), "no upstream host was picked: {line}");
    assert_eq!(flag_count(&s.proxy.listener_stats("main"), "UH"), 1);
    assert_eq!(s.proxy.cluster_stats("empty")["rq_no_healthy"], 1);
}

#[test]
fn malformed_response_is_502_upe() {
    let s = setup();
    let r = get(s.proxy.listen, "test", "/bad");
    assert_eq!(r.status, 502, "{}", r.body_str());
    assert!(access_log_line(&s, "/bad").starts_with("/bad 502 UPE bad "));
    assert_eq!(s.bad.request_count(), 1);
}

#[test]
fn truncated_response_body_closes_the_client_connection() {
    let s = setup();
    let mut c = Conn::connect(s.proxy.listen);
    c.send("GET /truncated HTTP/1.1\r\nHost: test\r\n\r\n");
    let raw = c.read_all(Duration::from_secs(5));
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("only ten.."), "{text:?}");
    assert!(
        c.closed_within(Duration::from_secs(1)),
        "the client must see the cut"
    );
    assert!(access_log_line(&s, "/truncated").starts_with("/truncated 200 UC trunc "));
    assert_eq!(s.trunc.request_count(), 1);
}

#[test]
fn stale_pooled_connection_is_retried_for_requests_without_body() {
    // The upstream answers as if keeping the connection alive, then closes it at once:
    // the proxy pools a dead connection and must retry on a fresh one.
    let up = Upstream::start(Arc::new(|_, req, s| {
        use std::io::Write;
        let body = req.describe();
        write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        Ok(false)
    }));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    for i in 0..5 {
        c.send(format!("GET /stale/{i} HTTP/1.1\r\nHost: test\r\n\r\n"));
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.body_str());
        // Let the upstream's close reach the proxy before the next request.
        let upstream_closed = wait_until(Duration::from_secs(2), || {
            (up.open_connections() == 0).then_some(())
        });
        assert!(upstream_closed.is_some());
    }
    assert_eq!(up.request_count(), 5);
    assert_eq!(flag_count(&proxy.listener_stats("main"), "UC"), 0);
}

/// What happened to one request.
#[derive(Debug, PartialEq)]
enum Outcome {
    Status(u16),
    /// The connection was closed (after a response head or before any response).
    Closed,
}

fn one_request(addr: SocketAddr, path: &str) -> Result<Outcome, String> {
    let mut c = Conn::try_connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_timeout(Duration::from_secs(8));
    c.try_send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
        .map_err(|e| format!("send: {e}"))?;
    match c.read_response() {
        Ok(r) => Ok(Outcome::Status(r.status)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(Outcome::Closed)
        }
        Err(e) => Err(format!("{path}: {e}")),
    }
}

#[test]
fn no_request_is_silently_dropped() {
    let s = setup();
    let routes: [(&str, Outcome); 8] = [
        ("/ok", Outcome::Status(200)),
        ("/refused", Outcome::Status(503)),
        ("/close", Outcome::Status(503)),
        ("/empty", Outcome::Status(503)),
        ("/bad", Outcome::Status(502)),
        ("/truncated", Outcome::Closed),
        ("/nothing", Outcome::Status(404)),
        ("/slow", Outcome::Status(504)),
    ];
    let routes = Arc::new(routes);
    let sent = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (routes, sent, addr) = (routes.clone(), sent.clone(), s.proxy.listen);
            thread::spawn(move || {
                let mut errors = Vec::new();
                for i in 0..24 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let (path, want) = &routes[(i + t) % routes.len()];
                    sent.fetch_add(1, Ordering::SeqCst);
                    match one_request(addr, path) {
                        Ok(got) if got == *want => {}
                        Ok(got) => errors.push(format!("{path}: expected {want:?}, got {got:?}")),
                        Err(e) => errors.push(e),
                    }
                }
                errors
            })
        })
        .collect();
    let errors: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        errors.is_empty(),
        "{} problems:\n{}",
        errors.len(),
        errors.join("\n")
    );
    let total = sent.load(Ordering::SeqCst) as u64;
    let counted = wait_until(Duration::from_secs(5), || {
        let n = s.proxy.listener_stats("main")["rq_total"].as_u64().unwrap();
        (n == total).then_some(n)
    });
    assert_eq!(
        counted,
        Some(total),
        "every request is counted exactly once"
    );
    assert!(s.ok.request_count() > 0);
}

#[test]
fn expect_100_continue_to_a_failing_upstream_gets_the_final_status() {
    let s = setup();
    for (path, status) in [("/refused", 503), ("/empty", 503), ("/nothing", 404)] {
        let mut c = Conn::connect(s.proxy.listen);
        c.send(format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        ));
        let r = c.read_response().unwrap();
        assert_eq!(
            r.status, status,
            "{path}: a client waiting for 100 must get the final status"
        );
        assert!(
            r.says_close(),
            "{path}: the unsent body leaves the connection unusable"
        );
        assert!(c.closed_within(Duration::from_secs(2)));
    }
}

#[test]
fn connect_timeout_is_503_uf() {
    let hole = Blackhole::new();
    let yaml = proxy_config_with(hole.addr, "5s", "")
        .replace("connect_timeout: 1s", "connect_timeout: 300ms");
    let proxy = Proxy::start(&yaml);
    let start = Instant::now();
    let r = get(proxy.listen, "t", "/hang");
    let took = start.elapsed();
    assert_eq!(r.status, 503, "{}", r.body_str());
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
        "a 300ms connect timeout answered after {took:?}"
    );
    assert_eq!(flag_count(&proxy.listener_stats("main"), "UF"), 1);
    assert_eq!(proxy.cluster_stats("backend")["cx_connect_fail"], 1);
}

#[test]
fn route_timeout_shorter_than_connect_timeout_is_504_ut() {
    let hole = Blackhole::new();
    let proxy = Proxy::start(&proxy_config_with(hole.addr, "300ms", ""));
    let start = Instant::now();
    let r = get(proxy.listen, "t", "/hang");
    let took = start.elapsed();
    assert_eq!(r.status, 504, "{}", r.body_str());
    assert!(
        took < Duration::from_millis(900),
        "the route timeout did not cut the connect: {took:?}"
    );
    assert_eq!(flag_count(&proxy.listener_stats("main"), "UT"), 1);
}

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
fn non_idempotent_request_is_not_retried_after_the_upstream_received_it() {
    // RFC 9112 section 9.3.1: a proxy MUST NOT automatically retry non-idempotent
    // requests. The upstream got the POST and died; resending it could charge twice.
    let up = Upstream::start(dies_on_second_request());
    let proxy = Proxy::start(&proxy_config(up.addr));
    assert_eq!(get(proxy.listen, "t", "/warm-up").status, 200);
    let r = exchange(
        proxy.listen,
        "POST /charge HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let seen = up
        .requests()
        .iter()
        .filter(|q| q.target == "/charge")
        .count();
    assert_eq!(
        seen, 1,
        "the POST reached the upstream {seen} times (proxy answered {})",
        r.status
    );
    assert_eq!(r.status, 503);
}

#[test]
fn idempotent_request_is_retried_once_on_a_fresh_connection() {
    let up = Upstream::start(dies_on_second_request());
    let proxy = Proxy::start(&proxy_config(up.addr));
    assert_eq!(get(proxy.listen, "t", "/warm-up").status, 200);
    let r = get(proxy.listen, "t", "/read");
    assert_eq!(r.status, 200);
    assert_eq!(up.connections(), 2);
}

#[test]
fn a_pooled_connection_the_upstream_closed_while_idle_is_not_used() {
    // The upstream answers as if keeping the connection alive, then closes it. A POST
    // is never retried, so each one succeeds only if the proxy saw the close while the
    // connection sat in its pool and opened a new one, instead of sending the request
    // into a dead connection (which would be a 503 UC).
    let up = Upstream::start(Arc::new(|_, req, s| {
        use std::io::Write;
        let body = req.describe();
        write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        Ok(false)
    }));
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    for i in 0..5 {
        c.send(format!(
            "POST /idle-closed/{i} HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
        ));
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.body_str());
        let upstream_closed = wait_until(Duration::from_secs(2), || {
            (up.open_connections() == 0).then_some(())
        });
        assert!(upstream_closed.is_some());
    }
    assert_eq!(up.request_count(), 5);
    assert_eq!(up.connections(), 5);
    assert_eq!(flag_count(&proxy.listener_stats("main"), "UC"), 0);
}

/// A pooled connection still bounds the next request's wait by that request's own
/// clock (300 ms), whether the last request on it ran under a longer clock (5 s) or
/// under one as short that ended earlier. The next request comes from another client
/// connection, so another task: monoio 0.2.4's timer keeps waking the task that armed
/// it, and the request waited for the upstream's answer 2 s later (sometimes after a
/// longer clock, every time after a shorter one that ended earlier).
#[test]
fn a_pooled_connection_keeps_the_next_requests_clock() {
    let up = Upstream::start(Arc::new(|ctx, req, s| {
        use std::io::Write;
        if req.target.ends_with("/slow") {
            ctx.sleep(Duration::from_secs(2));
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")?;
        Ok(true)
    }));
    let yaml = format!(
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
        routes:
          - match: {{ prefix: /slow }}
            cluster: up
            timeout: 300ms
          - match: {{ prefix: /short }}
            cluster: up
            timeout: 300ms
          - match: {{ prefix: / }}
            cluster: up
            timeout: 5s
clusters:
  - name: up
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        up.addr.port()
    );
    let p = Proxy::start(&yaml);
    for round in 0..4 {
        for first in ["/fast", "/short"] {
            assert_eq!(get(p.listen, "test", first).status, 200);
            let start = Instant::now();
            let r = get(p.listen, "test", "/slow");
            let took = start.elapsed();
            assert_eq!(
                r.status,
                504,
                "round {round}, after {first}: {}",
                r.body_str()
            );
            assert!(
                took < Duration::from_millis(1500),
                "round {round}, after {first}: a 300 ms route timeout answered after {took:?}"
            );
        }
    }
    // Each slow request went on the connection the request before left in the pool.
    assert_eq!(up.connections(), 8);
}
