//! Circuit breakers per cluster through the binary, with two workers: upstreams that
//! hold requests open until the test releases them fill `max_requests`, and the
//! requests over it get `503 UO` with `x-envoy-overloaded: true` whichever worker they
//! reach (the counts are process-wide); `max_pending_requests` refuses a request that
//! needs a new connection; `max_retries` and a retry budget stop retries, counted at the
//! upstream; the `circuit_breakers.default.*` gauges; HTTP/1 and HTTP/2 clients.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use h2client::{connect, request};

const OVERFLOW_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";

/// One listener to `backend` (one endpoint), with `breakers` under the cluster's
/// `circuit_breakers:` and `route_extra` under the route.
fn config(up: SocketAddr, breakers: &str, route_extra: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    access_log:
      path: @DIR@/access.log
      format: \"%RESPONSE_CODE% %RESPONSE_FLAGS%\"
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: backend
            timeout: 20s
{route_extra}clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
      - address: 127.0.0.1
        port: {port}
    circuit_breakers:
      thresholds:
        - {breakers}
",
        port = up.port()
    )
}

/// Holds every request until `release` is set (or the upstream stops), then echoes.
fn held(release: Arc<AtomicBool>) -> Handler {
    Arc::new(move |ctx, req, s| {
        while !release.load(Ordering::SeqCst) && !ctx.stop.load(Ordering::Relaxed) {
            ctx.sleep(Duration::from_millis(5));
        }
        let body = "held";
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        std::io::Write::write_all(s, head.as_bytes())?;
        std::io::Write::write_all(s, body.as_bytes())?;
        Ok(req.version == "HTTP/1.1")
    })
}

fn breakers(p: &Proxy) -> serde_json::Value {
    p.cluster_stats("backend")["circuit_breakers"].clone()
}

fn stat(p: &Proxy, name: &str) -> u64 {
    p.cluster_stats("backend")[name].as_u64().unwrap_or(0)
}

/// Sends a GET on its own connection and leaves the response to be read later.
fn send_get(addr: SocketAddr, path: &str) -> Conn {
    let mut c = Conn::connect(addr);
    c.set_timeout(Duration::from_secs(20));
    c.send(format!("GET {path} HTTP/1.1\r\nHost: svc\r\n\r\n"));
    c
}

fn assert_overflow(r: &Response) {
    assert_eq!(r.status, 503, "{}", r.body_str());
    assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
    assert_eq!(r.body_str(), OVERFLOW_BODY);
}

#[test]
fn max_requests_holds_for_the_whole_process_over_http1_and_http2() {
    const N: usize = 4;
    const K: usize = 6;
    let release = Arc::new(AtomicBool::new(false));
    let up = Upstream::start(held(release.clone()));
    let p = Proxy::start_with(
        &config(up.addr, "{ max_requests: 4, track_remaining: true }", ""),
        2,
    );
    // N requests on N connections (spread over both workers by the kernel) reach the
    // upstream and stay open there.
    let mut open: Vec<Conn> = (0..N)
        .map(|i| send_get(p.listen, &format!("/held{i}")))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || (up.heads() == N).then_some(())).is_some(),
        "the upstream saw {} of {N} requests",
        up.heads()
    );
    let cb = breakers(&p);
    assert_eq!(cb["rq_open"], 1, "{cb}");
    assert_eq!(cb["remaining_rq"], 0, "{cb}");
    let prom = p.prometheus();
    let labels = "{cluster=\"backend\",priority=\"default\"}";
    assert_eq!(
        metric(
            &prom,
            &format!("outrigger_circuit_breakers_rq_open{labels}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &prom,
            &format!("outrigger_circuit_breakers_remaining_rq{labels}")
        ),
        Some(0.0)
    );
    // K more on their own connections, whichever worker takes them: each overflows.
    let mut over: Vec<Conn> = (0..K)
        .map(|i| send_get(p.listen, &format!("/over{i}")))
        .collect();
    for c in &mut over {
        assert_overflow(&c.read_response().expect("a response"));
    }
    // An HTTP/2 client is refused the same way.
    let addr = p.listen;
    let reply = h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request("GET", &format!("http://{addr}/h2"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, b"").await
    });
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("x-envoy-overloaded"), Some("true"));
    assert_eq!(reply.body_str(), OVERFLOW_BODY);
    assert_eq!(up.heads(), N, "no overflowed request reached the upstream");
    assert_eq!(stat(&p, "rq_active_overflow"), (K + 1) as u64);
    assert_eq!(stat(&p, "rq_pending_overflow"), 0);

    release.store(true, Ordering::SeqCst);
    for c in &mut open {
        let r = c.read_response().expect("a response");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-envoy-overloaded"), None);
    }
    // The slots come back: the gauges show it and a new request goes through.
    let cb = breakers(&p);
    assert_eq!(cb["rq_open"], 0, "{cb}");
    assert_eq!(cb["remaining_rq"], N as u64, "{cb}");
    assert_eq!(get(p.listen, "svc", "/after").status, 200);
    let log = wait_for_line(&p.dir.join("access.log"), Duration::from_secs(5), |l| {
        l == "503 UO"
    });
    assert!(log.is_some(), "no `503 UO` line in the access log");
}

#[test]
fn a_request_needing_a_new_connection_over_max_pending_requests_overflows() {
    let up = Upstream::echo();
    let p = Proxy::start_with(&config(up.addr, "{ max_pending_requests: 0 }", ""), 2);
    let r = get(p.listen, "svc", "/x");
    assert_overflow(&r);
    assert_eq!(up.heads(), 0);
    assert_eq!(stat(&p, "rq_pending_overflow"), 1);
    assert_eq!(breakers(&p)["rq_pending_open"], 1);
}

/// `retry_on: 5xx` with `num_retries: 3` under the route.
const RETRY_5XX: &str = "            retry_policy:
              retry_on: 5xx
              num_retries: 3
              retry_back_off: { base_interval: 0.001s }
";

#[test]
fn max_retries_zero_stops_every_retry() {
    let up = Upstream::start(status_oops(503));
    let p = Proxy::start_with(&config(up.addr, "{ max_retries: 0 }", RETRY_5XX), 2);
    let r = get(p.listen, "svc", "/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.body_str(), "oops", "the upstream's own answer");
    assert_eq!(up.request_count(), 1, "no retry reached the upstream");
    assert_eq!(stat(&p, "rq_retry_overflow"), 1);
    assert_eq!(stat(&p, "rq_retry"), 0);
    // Envoy flags the response UO.
    let log = wait_for_line(&p.dir.join("access.log"), Duration::from_secs(5), |l| {
        l == "503 UO"
    });
    assert!(log.is_some(), "no `503 UO` line in the access log");
}

#[test]
fn a_retry_holds_its_slot_so_a_concurrent_one_overflows() {
    // `/a`: a 503, then its retry is held open; `/b`: always a 503.
    let release = Arc::new(AtomicBool::new(false));
    let first_a = Arc::new(AtomicUsize::new(0));
    let hold = held(release.clone());
    let oops = status_oops(503);
    let fa = first_a.clone();
    let handler: Handler = Arc::new(move |ctx, req, s| {
        if req.target.starts_with("/a") && fa.fetch_add(1, Ordering::SeqCst) > 0 {
            hold(ctx, req, s)
        } else {
            oops(ctx, req, s)
        }
    });
    let up = Upstream::start(handler);
    let p = Proxy::start_with(
        &config(
            up.addr,
            "{ max_retries: 1, track_remaining: true }",
            RETRY_5XX,
        ),
        2,
    );
    let mut a = send_get(p.listen, "/a");
    assert!(
        wait_until(Duration::from_secs(10), || (up.heads() == 2).then_some(())).is_some(),
        "the retry of /a did not reach the upstream"
    );
    let cb = breakers(&p);
    assert_eq!(cb["rq_retry_open"], 1, "{cb}");
    assert_eq!(cb["remaining_retries"], 0, "{cb}");
    let b = get(p.listen, "svc", "/b");
    assert_eq!(b.status, 503);
    assert_eq!(b.body_str(), "oops");
    assert_eq!(up.heads(), 3, "/b was tried once");
    assert_eq!(stat(&p, "rq_retry_overflow"), 1);
    release.store(true, Ordering::SeqCst);
    assert_eq!(a.read_response().expect("a response").status, 200);
    assert_eq!(breakers(&p)["remaining_retries"], 1);
}

#[test]
fn a_retry_budget_replaces_max_retries() {
    // A budget of nothing: no retry, whatever max_retries says.
    let up = Upstream::start(status_oops(503));
    let none = "{ max_retries: 5, retry_budget: { budget_percent: { value: 0 }, min_retry_concurrency: 0 } }";
    let p = Proxy::start_with(&config(up.addr, none, RETRY_5XX), 2);
    assert_eq!(get(p.listen, "svc", "/x").status, 503);
    assert_eq!(up.request_count(), 1);
    assert_eq!(stat(&p, "rq_retry_overflow"), 1);
    assert!(
        breakers(&p).get("remaining_retries").is_none(),
        "no remaining_retries gauge under a budget"
    );
    // The default budget (20%, at least 3 at once) lets a lone request retry 3 times,
    // though max_retries says 0.
    let up = Upstream::start(status_oops(503));
    let dflt = "{ max_retries: 0, retry_budget: {} }";
    let p = Proxy::start_with(&config(up.addr, dflt, RETRY_5XX), 2);
    assert_eq!(get(p.listen, "svc", "/x").status, 503);
    assert_eq!(up.request_count(), 4);
    assert_eq!(stat(&p, "rq_retry_overflow"), 0);
    assert_eq!(stat(&p, "rq_retry_limit_exceeded"), 1);
}

/// A route's `priority: HIGH` is limited by the HIGH thresholds only.
#[test]
fn a_high_priority_route_takes_the_high_thresholds() {
    let high = "            priority: HIGH\n";
    for (t, want) in [
        ("{ max_requests: 0 }", 200),
        ("{ priority: HIGH, max_requests: 0 }", 503),
    ] {
        let up = Upstream::echo();
        let p = Proxy::start_with(&config(up.addr, t, high), 2);
        let r = get(p.listen, "svc", "/x");
        assert_eq!(r.status, want, "{t}");
        let b = &p.cluster_stats("backend")["circuit_breakers_high"];
        assert_eq!(
            b["rq_open"].as_u64(),
            Some(u64::from(want == 503)),
            "{t}: {b}"
        );
    }
}

#[test]
fn unsupported_threshold_fields_are_refused_by_path() {
    let dir = TempDir::new("cb-refused");
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (i, (t, route, want)) in [
        (
            "{ priority: LOW }",
            "",
            "clusters[0].circuit_breakers.thresholds[0].priority: must be `DEFAULT` or `HIGH`",
        ),
        (
            "{}",
            "            priority: MEDIUM\n",
            "routes[0].priority: unknown priority `MEDIUM`",
        ),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(&format!("c{i}.yaml"));
        let text = config(up, t, route)
            .replace("@ADMIN_PORT@", "9901")
            .replace("@PORT@", "10000")
            .replace("@DIR@", &dir.path().display().to_string());
        write_atomic(&path, &text);
        let out = run_cli(
            &["validate", "-c", &path.display().to_string()],
            Duration::from_secs(20),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "case {i} accepted");
        assert!(text.contains(want), "case {i}: want `{want}` in:\n{text}");
    }
}

#[test]
fn at_max_connections_requests_wait_for_a_connection_instead_of_failing() {
    const R: usize = 4;
    let release = Arc::new(AtomicBool::new(false));
    let up = Upstream::start(held(release.clone()));
    let p = Proxy::start_with(
        &config(up.addr, "{ max_connections: 1, track_remaining: true }", ""),
        2,
    );
    let mut conns: Vec<Conn> = (0..R)
        .map(|i| send_get(p.listen, &format!("/c{i}")))
        .collect();
    // Every request but the first finds the limit reached: it is counted, and waits for
    // a connection of its worker's pool (a worker with none opens one anyway, so at
    // most one connection per worker).
    assert!(
        wait_until(Duration::from_secs(10), || {
            (stat(&p, "cx_overflow") >= (R - 1) as u64).then_some(())
        })
        .is_some(),
        "cx_overflow: {}",
        stat(&p, "cx_overflow")
    );
    assert!(up.connections() <= 2, "{} connections", up.connections());
    let cb = breakers(&p);
    assert_eq!(cb["cx_open"], 1, "{cb}");
    assert_eq!(cb["remaining_cx"], 0, "{cb}");
    release.store(true, Ordering::SeqCst);
    for c in &mut conns {
        let r = c.read_response().expect("a response");
        assert_eq!(r.status, 200, "{}", r.body_str());
    }
    assert_eq!(up.request_count(), R);
    assert!(up.connections() <= 2, "{} connections", up.connections());
    assert_eq!(stat(&p, "rq_pending_overflow"), 0);
}

#[test]
fn a_reload_keeps_the_counts_of_a_cluster_changed_only_in_its_endpoints() {
    let release = Arc::new(AtomicBool::new(false));
    let up = Upstream::start(held(release.clone()));
    let other = Upstream::start(held(release.clone()));
    let p = Proxy::start_with(&config(up.addr, "{ max_requests: 2 }", ""), 2);
    let mut open: Vec<Conn> = (0..2)
        .map(|i| send_get(p.listen, &format!("/h{i}")))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || (up.heads() == 2).then_some(())).is_some(),
        "the upstream saw {} of 2",
        up.heads()
    );
    // Another endpoint (an EDS-like update): the two held requests still hold their
    // slots, so the next one overflows.
    let with_other = config(up.addr, "{ max_requests: 2 }", "").replace(
        "    circuit_breakers:",
        &format!(
            "      - address: 127.0.0.1\n        port: {}\n    circuit_breakers:",
            other.addr.port()
        ),
    );
    p.write_config(&with_other);
    assert_eq!(p.reload().status, 200);
    assert_overflow(&get(p.listen, "svc", "/over"));
    // New thresholds: a changed cluster starts from zero.
    p.write_config(&with_other.replace("max_requests: 2", "max_requests: 3"));
    assert_eq!(p.reload().status, 200);
    let mut third = send_get(p.listen, "/third");
    assert!(
        wait_until(Duration::from_secs(10), || {
            (up.heads() + other.heads() == 3).then_some(())
        })
        .is_some(),
        "the third request did not reach an upstream"
    );
    release.store(true, Ordering::SeqCst);
    for c in open.iter_mut().chain([&mut third]) {
        assert_eq!(c.read_response().expect("a response").status, 200);
    }
}

#[test]
fn an_http2_cluster_is_refused_by_max_pending_requests_while_it_connects() {
    let up = h2client::h2_upstream(200);
    let cfg = config(up, "{ max_pending_requests: 0 }", "").replace(
        "    connect_timeout: 1s\n",
        "    connect_timeout: 1s\n    protocol: http2\n",
    );
    let p = Proxy::start_with(&cfg, 2);
    assert_overflow(&get(p.listen, "svc", "/x"));
    assert_eq!(stat(&p, "rq_pending_overflow"), 1);
    assert_eq!(stat(&p, "cx_total"), 0, "no connection was made");
    // With room for it, the same cluster answers.
    let p = Proxy::start_with(
        &cfg.replace("max_pending_requests: 0", "max_pending_requests: 1"),
        2,
    );
    assert_eq!(get(p.listen, "svc", "/x").status, 200);
}

/// `max_connection_pools` on an HTTP/2 cluster: one pool per endpoint and core while it
/// has a connection. With two endpoints, round robin and one worker, the first
/// endpoint's connection stays open, so every request to the second needs a pool past
/// the limit: 503 "no healthy upstream" (UH), counted as `cx_pool_overflow`. The HTTP/1
/// case is compared with Envoy in tests/circuit_breakers_parity.rs.
#[test]
fn an_http2_cluster_counts_its_connection_pools() {
    let (a, b) = (h2client::h2_upstream(200), h2client::h2_upstream(200));
    let cfg = config(a, "{ max_connection_pools: 1, track_remaining: true }", "")
        .replace(
            "    connect_timeout: 1s\n",
            "    connect_timeout: 1s\n    protocol: http2\n",
        )
        .replace(
            &format!("        port: {}\n", a.port()),
            &format!(
                "        port: {}\n      - address: 127.0.0.1\n        port: {}\n",
                a.port(),
                b.port()
            ),
        );
    let p = Proxy::start(&cfg);
    let answers: Vec<(u16, String)> = (0..4)
        .map(|_| {
            let r = get(p.listen, "svc", "/x");
            (r.status, r.body_str())
        })
        .collect();
    let mut oks: Vec<u16> = answers.iter().map(|a| a.0).collect();
    oks.sort_unstable();
    assert_eq!(oks, [200, 200, 503, 503], "{answers:?}");
    assert!(
        answers.contains(&(503, "no healthy upstream".to_string())),
        "{answers:?}"
    );
    assert_eq!(
        stat(&p, "cx_pool_overflow"),
        2,
        "{}",
        p.cluster_stats("backend")
    );
    assert_eq!(
        stat(&p, "cx_total"),
        1,
        "one connection, to the first endpoint"
    );
    let cb = &p.cluster_stats("backend")["circuit_breakers"];
    assert_eq!(cb["cx_pool_open"], 1, "{cb}");
    assert_eq!(cb["remaining_cx_pools"], 0, "{cb}");
    let log = p.dir.join("access.log");
    let uh = wait_until(Duration::from_secs(10), || {
        let text = read_lossy(&log);
        (text.lines().count() >= 4).then(|| text.matches("503 UH").count())
    });
    assert_eq!(uh, Some(2), "{}", read_lossy(&log));
}
