//! Life cycle: reloads (SIGHUP and POST /reload, valid and invalid), reloads under
//! load, and the SIGTERM drain.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A config whose `/version` route answers `tag`, `/proxy` goes to `up`, and whose
/// drain timeout is `drain`.
fn versioned(tag: &str, up: SocketAddr, drain: &str, route_timeout: &str) -> String {
    format!(
        "admin:
  address: 127.0.0.1
  port: @ADMIN_PORT@
runtime:
  drain_timeout: {drain}
listeners:
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
          - match: {{ path: /version }}
            direct_response: {{ status: 200, body: \"{tag}\" }}
          - match: {{ prefix: / }}
            cluster: backend
            timeout: {route_timeout}
clusters:
  - name: backend
    endpoints:
      - address: 127.0.0.1
        port: {}
",
        up.port()
    )
}

fn v(tag: &str, up: SocketAddr) -> String {
    versioned(tag, up, "1s", "5s")
}

fn version_body(proxy: &Proxy) -> String {
    let r = get(proxy.listen, "t", "/version");
    assert_eq!(r.status, 200);
    r.body_str()
}

/// Waits until `/ready` is 200, i.e. every worker serves the current config version.
/// (A reload answers, and `/config_dump` shows the new version, as soon as the config
/// is published; the workers apply it a moment later.)
fn wait_applied(proxy: &Proxy) {
    let ready = wait_until(Duration::from_secs(5), || {
        (proxy.admin_get("/ready").status == 200).then_some(())
    });
    assert!(
        ready.is_some(),
        "the workers did not apply the config:\n{}",
        proxy.stderr()
    );
}

fn wait_version(proxy: &Proxy, want: u64) {
    let got = wait_until(Duration::from_secs(5), || {
        let v = proxy.config_version();
        (v == want).then_some(v)
    });
    assert_eq!(
        got,
        Some(want),
        "config version did not become {want}:\n{}",
        proxy.stderr()
    );
    wait_applied(proxy);
}

/// `POST /reload`, expecting success, then waits until every worker applied it.
fn reload_ok(proxy: &Proxy) -> Response {
    let r = proxy.reload();
    assert_eq!(r.status, 200, "{}", r.body_str());
    wait_applied(proxy);
    r
}

#[test]
fn sighup_reload_applies_new_routes_to_new_connections() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&v("one", up.addr));
    let mut old = Conn::connect(proxy.listen);
    old.send("GET /version HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(old.read_response().unwrap().body_str(), "one");
    assert_eq!(proxy.config_version(), 1);

    proxy.write_config(&v("two", up.addr));
    proxy.signal(libc::SIGHUP);
    wait_version(&proxy, 2);
    assert_eq!(version_body(&proxy), "two");
    assert_eq!(proxy.admin_get("/ready").status, 200);
    // A connection accepted before the reload still works.
    old.send("GET /version HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(old.read_response().unwrap().status, 200);
}

#[test]
fn post_reload_applies_new_routes() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&v("one", up.addr));
    assert_eq!(version_body(&proxy), "one");
    proxy.write_config(&v("two", up.addr));
    let r = proxy.reload();
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.body_str().contains("version 2"), "{}", r.body_str());
    assert_eq!(proxy.config_version(), 2);
    // Every worker serves it once /ready is 200 again.
    assert!(wait_until(Duration::from_secs(5), || (proxy
        .admin_get("/ready")
        .status
        == 200)
        .then_some(()))
    .is_some());
    assert_eq!(version_body(&proxy), "two");
    let dump: serde_json::Value =
        serde_json::from_slice(&proxy.admin_get("/config_dump").body).unwrap();
    assert_eq!(dump["version"], 2);
    assert_eq!(
        dump["config"]["route_tables"][0]["virtual_hosts"][0]["routes"][0]["direct_response"]
            ["body"],
        "two",
        "{dump}"
    );
}

#[test]
fn reload_switches_cluster_endpoints() {
    let a = Upstream::echo();
    let b = Upstream::echo();
    let proxy = Proxy::start_with(&v("x", a.addr), 2);
    assert_eq!(get(proxy.listen, "t", "/p").status, 200);
    assert_eq!(a.request_count(), 1);
    proxy.write_config(&v("x", b.addr));
    reload_ok(&proxy);
    for _ in 0..6 {
        assert_eq!(get(proxy.listen, "t", "/p").status, 200);
    }
    assert_eq!(
        a.request_count(),
        1,
        "requests still went to the old endpoint"
    );
    assert_eq!(b.request_count(), 6);
}

#[test]
fn invalid_reload_is_refused_and_the_old_config_keeps_serving() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&v("one", up.addr));
    let bad = v("bad", up.addr)
        .replace("cluster: backend", "cluster: nowhere")
        .replace("drain_timeout: 1s", "drain_timeout: soon");
    proxy.write_config(&bad);
    let r = proxy.reload();
    let body = r.body_str();
    assert_eq!(r.status, 400, "{body}");
    assert!(
        body.contains("route_tables[0].virtual_hosts[0].routes[1].cluster"),
        "the field path is missing: {body}"
    );
    assert!(
        body.contains("runtime.drain_timeout"),
        "every error is reported: {body}"
    );
    let expected_line = proxy
        .render(&bad)
        .lines()
        .position(|l| l.contains("cluster: nowhere"))
        .unwrap()
        + 1;
    assert!(
        body.contains(&format!("line {expected_line}")),
        "expected line {expected_line}: {body}"
    );
    assert_eq!(proxy.config_version(), 1);
    assert_eq!(version_body(&proxy), "one");

    // The same through SIGHUP: refused, logged, still serving.
    proxy.signal(libc::SIGHUP);
    let logged = wait_until(Duration::from_secs(5), || {
        proxy.stderr().contains("reload refused").then_some(())
    });
    assert!(logged.is_some(), "{}", proxy.stderr());
    assert_eq!(proxy.config_version(), 1);
    assert_eq!(version_body(&proxy), "one");
    assert_eq!(proxy.admin_get("/ready").status, 200);

    // YAML that does not parse at all.
    proxy.write_config("listeners: [\n  - name: x\n    port: {{\n");
    let r = proxy.reload();
    assert_eq!(r.status, 400, "{}", r.body_str());
    assert!(r.body_str().contains("line "), "{}", r.body_str());
    assert_eq!(version_body(&proxy), "one");

    // A fixed file is accepted.
    proxy.write_config(&v("two", up.addr));
    reload_ok(&proxy);
    assert_eq!(version_body(&proxy), "two");
}

#[test]
fn reload_adds_and_removes_listeners() {
    let up = Upstream::echo();
    let base = v("one", up.addr);
    let proxy = Proxy::start(&base);
    assert!(
        Conn::try_connect(proxy.listen2).is_err(),
        "nothing should listen on @PORT2@ yet"
    );
    let with_second = base.replace(
        "route_tables:",
        "  - name: second
    address: 127.0.0.1
    port: @PORT2@
    route_table: main
route_tables:",
    );
    proxy.write_config(&with_second);
    reload_ok(&proxy);
    let r = get(proxy.listen2, "t", "/version");
    assert_eq!((r.status, r.body_str().as_str()), (200, "one"));
    assert!(proxy.listener_stats("second")["rq_total"] == 1);

    proxy.write_config(&base);
    reload_ok(&proxy);
    let gone = wait_until(Duration::from_secs(5), || {
        Conn::try_connect(proxy.listen2).is_err().then_some(())
    });
    assert!(
        gone.is_some(),
        "the removed listener still accepts connections"
    );
    assert_eq!(version_body(&proxy), "one");
}

#[test]
fn reload_to_a_taken_port_is_refused() {
    let up = Upstream::echo();
    let base = v("one", up.addr);
    let proxy = Proxy::start(&base);
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    proxy.write_config(&base.replace(
        "route_tables:",
        &format!("  - name: second\n    address: 127.0.0.1\n    port: {taken}\n    route_table: main\nroute_tables:"),
    ));
    let r = proxy.reload();
    assert_eq!(r.status, 400, "{}", r.body_str());
    assert!(r.body_str().contains("cannot bind"), "{}", r.body_str());
    assert_eq!(proxy.config_version(), 1);
    assert_eq!(version_body(&proxy), "one");
    assert_eq!(proxy.admin_get("/ready").status, 200);
    drop(holder);
}

#[test]
fn reload_under_steady_load_fails_no_request() {
    let up = Upstream::echo();
    // Alternate between configs that change a route and the cluster definition (which
    // rebuilds its pool), so reloads really swap state under the traffic.
    let cfg = |i: usize| {
        versioned(
            &format!("v{i}"),
            up.addr,
            "1s",
            if i.is_multiple_of(2) { "5s" } else { "6s" },
        )
    };
    let proxy = Proxy::start_with(&cfg(0), 2);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut threads = Vec::new();
    for t in 0..4 {
        let (stop, ok, failures, addr) = (stop.clone(), ok.clone(), failures.clone(), proxy.listen);
        threads.push(thread::spawn(move || {
            let keep_alive = t % 2 == 0;
            let mut conn: Option<Conn> = None;
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && n < 20_000 {
                n += 1;
                let path = if n.is_multiple_of(2) {
                    "/version"
                } else {
                    "/proxy"
                };
                let result = (|| -> Result<(), String> {
                    if conn.is_none() {
                        conn = Some(Conn::try_connect(addr).map_err(|e| format!("connect: {e}"))?);
                    }
                    let c = conn.as_mut().unwrap();
                    let close = if keep_alive {
                        ""
                    } else {
                        "Connection: close\r\n"
                    };
                    c.try_send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{close}\r\n"))
                        .map_err(|e| format!("send: {e}"))?;
                    let r = c.read_response().map_err(|e| format!("{path}: {e}"))?;
                    if r.status != 200 {
                        return Err(format!("{path}: status {} {}", r.status, r.body_str()));
                    }
                    if !keep_alive || r.says_close() {
                        conn = None;
                    }
                    Ok(())
                })();
                match result {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        conn = None;
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("thread {t} request {n}: {e}"));
                    }
                }
            }
        }));
    }
    let mut reloads = 0;
    let start = Instant::now();
    for i in 1..=6 {
        // Spread the reloads over ~3 s of traffic.
        while start.elapsed() < Duration::from_millis(450 * i as u64) {
            thread::sleep(Duration::from_millis(10));
        }
        proxy.write_config(&cfg(i));
        if i % 3 == 0 {
            proxy.signal(libc::SIGHUP);
            wait_version(&proxy, 1 + i as u64);
        } else {
            let r = proxy.reload();
            assert_eq!(r.status, 200, "{}", r.body_str());
        }
        reloads += 1;
    }
    while start.elapsed() < Duration::from_millis(3200) {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let ok = ok.load(Ordering::SeqCst);
    eprintln!(
        "reload under load: {ok} requests succeeded, {} failed, {reloads} reloads",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(ok > 200, "too little traffic to mean anything: {ok}");
    assert_eq!(proxy.config_version(), 1 + reloads);
    wait_applied(&proxy);
    assert_eq!(version_body(&proxy), format!("v{reloads}"));
}

#[test]
fn sigterm_drains_in_flight_requests_and_closes_idle_connections() {
    let up = Upstream::start(delayed(Duration::from_millis(1500)));
    let mut proxy = Proxy::start(&versioned("v", up.addr, "5s", "10s"));

    // An idle keep-alive connection.
    let mut idle = Conn::connect(proxy.listen);
    idle.send("GET /version HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.read_response().unwrap().status, 200);

    // A busy connection: its request is at the upstream.
    let mut busy = Conn::connect(proxy.listen);
    busy.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(Duration::from_secs(5), || (up.heads() == 1).then_some(())).is_some());

    let t0 = Instant::now();
    proxy.signal(libc::SIGTERM);

    assert!(
        idle.closed_within(Duration::from_secs(2)),
        "the idle connection was not closed"
    );
    let idle_closed = t0.elapsed();
    assert!(
        idle_closed < Duration::from_millis(1400),
        "idle connection closed only after {idle_closed:?}"
    );

    let ready = wait_until(Duration::from_millis(1000), || {
        http_request(proxy.admin, "GET", "/ready", Duration::from_millis(500))
            .ok()
            .filter(|r| r.status == 503)
    });
    assert!(ready.is_some(), "/ready should be 503 while draining");

    let refused = wait_until(Duration::from_millis(1000), || {
        Conn::try_connect(proxy.listen).is_err().then_some(())
    });
    assert!(
        refused.is_some(),
        "new connections are still accepted while draining"
    );

    let r = busy
        .read_response()
        .expect("the in-flight request must complete");
    assert_eq!(r.status, 200);
    assert!(Echoed::parse(&r.body).text.contains("target: /slow"));
    assert!(
        r.says_close(),
        "the last response must carry Connection: close: {:?}",
        r.headers
    );
    assert!(busy.closed_within(Duration::from_secs(2)));

    let status = proxy
        .wait_exit(Duration::from_secs(6))
        .expect("the proxy did not exit within the drain timeout");
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?}, drain timeout is 5s"
    );
}

#[test]
fn drain_timeout_bounds_the_exit() {
    let up = Upstream::start(delayed(Duration::from_secs(20)));
    let mut proxy = Proxy::start(&versioned("v", up.addr, "1s", "30s"));
    let mut busy = Conn::connect(proxy.listen);
    busy.send("GET /very-slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(Duration::from_secs(5), || (up.heads() == 1).then_some(())).is_some());
    let t0 = Instant::now();
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_exit(Duration::from_secs(5));
    let took = t0.elapsed();
    assert!(status.is_some(), "the proxy ignored its 1s drain timeout");
    assert!(
        took < Duration::from_millis(2500),
        "exit took {took:?} with a 1s drain timeout"
    );
    // The client is not left hanging.
    let mut c = busy;
    c.set_timeout(Duration::from_secs(3));
    match c.read_response() {
        Ok(r) => assert!(r.status >= 500, "unexpected {}", r.status),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "the client connection was left open: {e}"
        ),
    }
}

#[test]
fn idle_proxy_exits_promptly_on_sigterm_and_sigint() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let up = Upstream::echo();
        let mut proxy = Proxy::start(&versioned("v", up.addr, "5s", "5s"));
        assert_eq!(get(proxy.listen, "t", "/x").status, 200);
        let t0 = Instant::now();
        proxy.signal(sig);
        let status = proxy.wait_exit(Duration::from_secs(6)).expect("no exit");
        assert_eq!(status.code(), Some(0), "signal {sig}: {}", proxy.stderr());
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "signal {sig}: exit took {:?}",
            t0.elapsed()
        );
    }
}

/// `runtime.spin_before_park` is a glommio setting: a monoio build serves with it and
/// says once that it is ignored; a glommio build uses it and says nothing.
#[test]
fn spin_before_park_is_used_on_glommio_and_named_as_ignored_on_monoio() {
    let up = Upstream::echo();
    let config = v("spin", up.addr).replace(
        "runtime:\n  drain_timeout: 1s\n",
        "runtime:\n  drain_timeout: 1s\n  spin_before_park: 20us\n",
    );
    assert!(config.contains("spin_before_park"));
    let proxy = Proxy::start_with(&config, 2);
    assert_eq!(version_body(&proxy), "spin");
    let said = proxy
        .stderr()
        .matches("spin_before_park is ignored")
        .count();
    if cfg!(feature = "rt-glommio") {
        assert_eq!(said, 0, "{}", proxy.stderr());
    } else {
        assert_eq!(said, 1, "once, not per worker:\n{}", proxy.stderr());
    }
}
