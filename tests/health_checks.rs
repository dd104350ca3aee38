//! Active health checks through the real binary (issue 11): scripted upstreams that
//! pass, fail with 503, hang, close, refuse connections or flap; traffic is counted at
//! the upstreams. Also the same Envoy bootstrap handed to Envoy 1.40 and to Outrigger.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::envoy::hcm_head;
use common::envoy::{envoy_or_skip, Envoy};
use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// What `/healthz` answers: a status, or `HANG` (no answer until the upstream stops), or
/// `CLOSE` (the connection is closed without a response).
const HANG: u16 = 0;
const CLOSE: u16 = 1;

/// An upstream whose `/healthz` answer is scripted; any other path gets `200` and the
/// upstream's name as the body.
struct Scripted {
    up: Upstream,
    health: Arc<AtomicU16>,
}

impl Scripted {
    fn new(name: &'static str, health: u16) -> Scripted {
        let state = Arc::new(AtomicU16::new(health));
        let h = state.clone();
        let up = Upstream::start(Arc::new(move |ctx, req, s| {
            if req.target == "/healthz" {
                match h.load(Ordering::SeqCst) {
                    HANG => {
                        ctx.sleep(Duration::from_secs(30));
                        return Ok(false);
                    }
                    CLOSE => return Ok(false),
                    st => {
                        write!(s, "HTTP/1.1 {st} X\r\ncontent-length: 2\r\n\r\nhc")?;
                        return Ok(true);
                    }
                }
            }
            write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                name.len()
            )?;
            Ok(true)
        }));
        Scripted { up, health: state }
    }

    fn set(&self, v: u16) {
        self.health.store(v, Ordering::SeqCst);
    }

    fn checks(&self) -> usize {
        self.up
            .requests()
            .iter()
            .filter(|r| r.target == "/healthz")
            .count()
    }

    fn traffic(&self) -> usize {
        self.up
            .requests()
            .iter()
            .filter(|r| r.target != "/healthz")
            .count()
    }
}

fn config(endpoints: &[SocketAddr], check: &str, extra: &str) -> String {
    let eps: String = endpoints
        .iter()
        .map(|a| format!("      - {{address: 127.0.0.1, port: {}}}\n", a.port()))
        .collect();
    format!(
        "admin:
  address: 127.0.0.1
  port: @ADMIN_PORT@
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
          - match: {{ prefix: / }}
            cluster: backend
clusters:
  - name: backend
    connect_timeout: 1s
{extra}    endpoints:
{eps}    health_checks:
{check}"
    )
}

/// An HTTP check on `/healthz`.
fn http_check(timeout: &str, interval: &str, unhealthy: u32, healthy: u32) -> String {
    format!(
        "      - timeout: {timeout}
        interval: {interval}
        no_traffic_interval: {interval}
        unhealthy_threshold: {unhealthy}
        healthy_threshold: {healthy}
        http_health_check: {{path: /healthz}}
"
    )
}

/// `health_flags` of each endpoint, by address.
fn flags(p: &Proxy) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&p.admin_get("/clusters?format=json").body_str()).unwrap();
    v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "backend")
        .flat_map(|c| c["endpoints"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_string(),
                e["health_flags"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn flag_of(p: &Proxy, addr: SocketAddr) -> String {
    flags(p)
        .into_iter()
        .find(|(a, _)| *a == addr.to_string())
        .map(|(_, f)| f)
        .unwrap_or_default()
}

fn wait_flag(p: &Proxy, addr: SocketAddr, want: &str) {
    let got = wait_until(WAIT, || (flag_of(p, addr) == want).then_some(()));
    assert!(got.is_some(), "{addr} never showed {want}: {:?}", flags(p));
}

fn send(p: &Proxy, n: usize) -> Vec<u16> {
    (0..n).map(|_| get(p.listen, "x", "/work").status).collect()
}

fn hc_stats(p: &Proxy) -> serde_json::Value {
    p.cluster_stats("backend")["health_check"].clone()
}

#[test]
fn traffic_goes_only_to_endpoints_that_pass_and_clusters_shows_flags() {
    let good = Scripted::new("good", 200);
    let bad = Scripted::new("bad", 503);
    let refused = refused_addr();
    let p = Proxy::start_with(
        &config(
            &[good.up.addr, bad.up.addr, refused],
            &http_check("1s", "100ms", 2, 2),
            // One healthy of three is 33%: not in panic below a 30% threshold.
            "    healthy_panic_threshold: 30\n",
        ),
        2,
    );
    // /ready waited for the first round: every flag is decided already.
    assert_eq!(flag_of(&p, good.up.addr), "healthy");
    assert_eq!(flag_of(&p, bad.up.addr), "/failed_active_hc");
    assert_eq!(flag_of(&p, refused), "/failed_active_hc");
    assert!(send(&p, 30).iter().all(|&s| s == 200));
    assert_eq!(good.traffic(), 30);
    assert_eq!(bad.traffic(), 0);
    // The check itself: Envoy's request line, Host (the cluster's name), user agent.
    let hc = good
        .up
        .requests()
        .into_iter()
        .find(|r| r.target == "/healthz")
        .unwrap();
    assert_eq!(hc.method, "GET");
    assert_eq!(hc.header("host"), Some("backend"));
    assert_eq!(hc.header("user-agent"), Some("Envoy/HC"));
    // Once per process, not per worker: one check of each endpoint per interval, and the
    // kept connection carries them.
    let s = hc_stats(&p);
    assert_eq!(s["healthy"], 1, "{s}");
    assert!(s["attempt"].as_u64().unwrap() >= 3, "{s}");
    assert!(s["success"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["network_failure"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["failure"].as_u64().unwrap() >= 2, "{s}");
    let prom = p.prometheus();
    assert_eq!(
        metric(&prom, "outrigger_health_check_healthy{cluster=\"backend\"}"),
        Some(1.0)
    );
    assert!(wait_until(WAIT, || (good.checks() >= 3).then_some(())).is_some());
    let mut conns: Vec<usize> = good
        .up
        .requests()
        .iter()
        .filter(|r| r.target == "/healthz")
        .map(|r| r.conn_id)
        .collect();
    conns.dedup();
    assert_eq!(conns.len(), 1, "the checks share one connection");
}

#[test]
fn an_unexpected_status_fails_at_once_network_failures_count_to_the_threshold() {
    let a = Scripted::new("a", 200);
    let b = Scripted::new("b", 200);
    let p = Proxy::start(&config(
        &[a.up.addr, b.up.addr],
        &http_check("300ms", "50ms", 3, 2),
        "",
    ));
    assert_eq!(flag_of(&p, b.up.addr), "healthy");
    // Closed connections are network failures: three in a row are needed.
    let before = b.checks();
    b.set(CLOSE);
    wait_flag(&p, b.up.addr, "/failed_active_hc");
    assert!(
        b.checks() - before >= 3,
        "failed after {} checks",
        b.checks() - before
    );
    assert!(send(&p, 10).iter().all(|&s| s == 200));
    assert_eq!(b.traffic(), 0);
    // Back: two successes in a row.
    let before = b.checks();
    b.set(200);
    wait_flag(&p, b.up.addr, "healthy");
    assert!(b.checks() - before >= 2);
    // Hanging past the timeout: network failures too, and the flag says so.
    b.set(HANG);
    wait_flag(&p, b.up.addr, "/failed_active_hc/active_hc_timeout");
    b.set(200);
    wait_flag(&p, b.up.addr, "healthy");
    // A 503 fails at once: with a huge unhealthy threshold nothing else could fail it.
    drop(p);
    let p = Proxy::start(&config(
        &[a.up.addr, b.up.addr],
        &http_check("300ms", "50ms", 1000, 1),
        "",
    ));
    assert_eq!(flag_of(&p, b.up.addr), "healthy");
    b.set(503);
    wait_flag(&p, b.up.addr, "/failed_active_hc");
    let s = hc_stats(&p);
    assert_eq!(s["network_failure"], 0, "{s}");
}

#[test]
fn the_first_check_decides_at_once_and_ready_waits_for_it() {
    let a = Scripted::new("a", 200);
    let hung = Scripted::new("hung", HANG);
    // A healthy threshold of 5 and a long interval: only the first-check rule can make
    // `a` healthy by the time /ready answers, and only a /ready that waited for the
    // timed-out first check of `hung` shows its timeout flag.
    let p = Proxy::start(&config(
        &[a.up.addr, hung.up.addr],
        &http_check("500ms", "60s", 2, 5),
        "",
    ));
    assert_eq!(flag_of(&p, a.up.addr), "healthy");
    assert_eq!(
        flag_of(&p, hung.up.addr),
        "/failed_active_hc/active_hc_timeout"
    );
    assert!(send(&p, 6).iter().all(|&s| s == 200));
    assert_eq!(a.traffic(), 6);
}

#[test]
fn with_every_endpoint_failing_the_panic_threshold_uses_them_all() {
    let a = Scripted::new("a", 503);
    let b = Scripted::new("b", 503);
    let p = Proxy::start(&config(
        &[a.up.addr, b.up.addr],
        &http_check("1s", "60s", 1, 1),
        "",
    ));
    assert!(send(&p, 10).iter().all(|&s| s == 200));
    assert_eq!(a.traffic() + b.traffic(), 10);
    assert!(a.traffic() > 0 && b.traffic() > 0);
    assert_eq!(p.cluster_stats("backend")["lb_healthy_panic"], 10);
    drop(p);
    // A threshold of 0 turns panic mode off: no healthy endpoint, no upstream.
    let p = Proxy::start(&config(
        &[a.up.addr, b.up.addr],
        &http_check("1s", "60s", 1, 1),
        "    healthy_panic_threshold: 0\n",
    ));
    assert!(send(&p, 3).iter().all(|&s| s == 503));
    assert_eq!(a.traffic() + b.traffic(), 10);
    assert_eq!(p.cluster_stats("backend")["rq_no_healthy"], 3);
}

/// A TCP server answering `PONG` to each `PING` (or `reply` instead).
fn tcp_server(reply: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let _ = stop.load(Ordering::Relaxed);
            thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn tcp_checks_send_bytes_and_expect_the_reply_or_just_connect() {
    let pong = tcp_server(b"..PONG..");
    let nope = tcp_server(b"NOPE");
    let refused = refused_addr();
    let check = "      - timeout: 400ms
        interval: 60s
        unhealthy_threshold: 1
        healthy_threshold: 1
        tcp_health_check:
          send: {text: 50494e47}
          receive: [{text: 504f}, {text: 4e47}]
";
    let p = Proxy::start(&config(&[pong, nope, refused], check, ""));
    assert_eq!(flag_of(&p, pong), "healthy");
    assert_eq!(flag_of(&p, nope), "/failed_active_hc/active_hc_timeout");
    assert_eq!(flag_of(&p, refused), "/failed_active_hc");
    drop(p);
    let connect_only = "      - timeout: 400ms
        interval: 60s
        unhealthy_threshold: 1
        healthy_threshold: 1
        tcp_health_check: {}
";
    let p = Proxy::start(&config(&[nope, refused], connect_only, ""));
    assert_eq!(flag_of(&p, nope), "healthy");
    assert_eq!(flag_of(&p, refused), "/failed_active_hc");
}

#[test]
fn a_reload_keeps_health_and_new_endpoints_start_failed_until_checked() {
    let a = Scripted::new("a", 200);
    let b = Scripted::new("b", 503);
    let c = Scripted::new("c", 200);
    // Long intervals: after the first round nothing is checked again, so what the
    // workers show after the reload is what they kept.
    let check = http_check("1s", "60s", 1, 1);
    let p = Proxy::start_with(&config(&[a.up.addr, b.up.addr], &check, ""), 2);
    assert_eq!(flag_of(&p, b.up.addr), "/failed_active_hc");
    let checks = b.checks();
    // The cluster changes (its load balancer), so every worker builds it again.
    p.write_config(&config(
        &[a.up.addr, b.up.addr, c.up.addr],
        &check,
        "    lb_policy: random\n",
    ));
    assert_eq!(p.reload().status, 200);
    assert_eq!(flag_of(&p, b.up.addr), "/failed_active_hc");
    assert_eq!(b.checks(), checks, "b was not checked again");
    // The new endpoint is checked at once and then takes traffic.
    wait_flag(&p, c.up.addr, "healthy");
    assert!(send(&p, 20).iter().all(|&s| s == 200));
    assert_eq!(b.traffic(), 0);
    assert!(a.traffic() > 0 && c.traffic() > 0);
}

#[test]
fn a_bad_health_check_is_refused_with_its_path() {
    let a = Scripted::new("a", 200);
    let text = config(
        &[a.up.addr],
        "      - timeout: 1s\n        interval: 1s\n        healthy_threshold: 1\n        http_health_check: {path: /healthz, expected_statuses: [{start: 200, end: 700}]}\n",
        "",
    );
    let dir = TempDir::new("hc");
    let path = dir.join("bad.yaml");
    write_atomic(
        &path,
        &text.replace("@ADMIN_PORT@", "1").replace("@PORT@", "2"),
    );
    let out = run_cli(&["validate", "-c", path.to_str().unwrap()], WAIT);
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("clusters[0].health_checks[0].unhealthy_threshold"),
        "{err}"
    );
    assert!(
        err.contains("clusters[0].health_checks[0].http_health_check.expected_statuses[0]"),
        "{err}"
    );
    // A gRPC check's metadata may not set a pseudo-header: refused by path.
    let grpc = text.replace(
        "http_health_check: {path: /healthz, expected_statuses: [{start: 200, end: 700}]}",
        "grpc_health_check: {service_name: s, initial_metadata: [{key: \":path\", value: x}]}",
    );
    write_atomic(
        &path,
        &grpc.replace("@ADMIN_PORT@", "1").replace("@PORT@", "2"),
    );
    let out = run_cli(&["validate", "-c", path.to_str().unwrap()], WAIT);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("clusters[0].health_checks[0].grpc_health_check.initial_metadata[0].key"),
        "{err}"
    );
}

/// The same bootstrap for Envoy and Outrigger.
fn bootstrap(good: SocketAddr, bad: SocketAddr) -> String {
    let ep = |a: SocketAddr| {
        format!(
            "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
            a.port()
        )
    };
    let head = hcm_head("", "main");
    format!(
        "{head}          route_config:
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: backend}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    common_lb_config: {{healthy_panic_threshold: {{value: 40}}}}
    health_checks:
    - timeout: 1s
      interval: 0.1s
      no_traffic_interval: 0.1s
      unhealthy_threshold: 2
      healthy_threshold: 2
      http_health_check: {{path: /healthz, expected_statuses: [{{start: 200, end: 300}}]}}
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
{}{}",
        ep(good),
        ep(bad)
    )
}

/// Envoy's text `/clusters`: the `health_flags` of each endpoint.
fn envoy_flags(admin: SocketAddr, addr: SocketAddr) -> String {
    let r = http_request(admin, "GET", "/clusters", Duration::from_secs(2)).unwrap();
    let key = format!("backend::{addr}::health_flags::");
    r.body_str()
        .lines()
        .find_map(|l| l.strip_prefix(&key).map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn the_same_bootstrap_sends_traffic_to_the_same_endpoints_under_envoy() {
    let Some(bin) =
        envoy_or_skip("the_same_bootstrap_sends_traffic_to_the_same_endpoints_under_envoy")
    else {
        return;
    };
    let good = Scripted::new("good", 202);
    let bad = Scripted::new("bad", 503);
    let text = bootstrap(good.up.addr, bad.up.addr);
    let envoy = Envoy::start(&bin, &text);
    let envoy_seen = (
        envoy_flags(envoy.admin, good.up.addr),
        envoy_flags(envoy.admin, bad.up.addr),
    );
    let statuses: Vec<u16> = (0..20)
        .map(|_| get(envoy.listen, "x", "/work").status)
        .collect();
    let envoy_traffic = (good.traffic(), bad.traffic(), statuses);
    drop(envoy);
    let p = Proxy::start(&text);
    let ours = (flag_of(&p, good.up.addr), flag_of(&p, bad.up.addr));
    let statuses = send(&p, 20);
    let our_traffic = (
        good.traffic() - envoy_traffic.0,
        bad.traffic() - envoy_traffic.1,
        statuses,
    );
    assert_eq!(ours, envoy_seen);
    assert_eq!(
        envoy_seen,
        ("healthy".to_string(), "/failed_active_hc".to_string())
    );
    assert_eq!(our_traffic, envoy_traffic);
    // Now both fail: 0% healthy is below the panic threshold, so both take traffic.
    good.set(503);
    wait_flag(&p, good.up.addr, "/failed_active_hc");
    let before = (good.traffic(), bad.traffic());
    assert!(send(&p, 10).iter().all(|&s| s == 200));
    assert!(good.traffic() > before.0 && bad.traffic() > before.1);
}
