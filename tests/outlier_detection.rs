//! Outlier detection through the real binary (issue 11): upstreams that answer 200 or
//! 503 (or refuse connections) behind one round-robin cluster; which endpoint gets the
//! traffic is counted at the upstreams, the ejections in `/stats`, `/clusters` and
//! Prometheus. Times are short; every wait polls, none asserts a duration.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(15);

fn config(endpoints: &[SocketAddr], outlier: &str) -> String {
    let eps: String = endpoints
        .iter()
        .map(|a| format!("      - {{address: 127.0.0.1, port: {}}}\n", a.port()))
        .collect();
    format!(
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
          - match: {{ prefix: / }}
            cluster: backend
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
{eps}    outlier_detection:
{outlier}"
    )
}

fn ok_upstream() -> Upstream {
    Upstream::start(fixed("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
}

fn failing_upstream() -> Upstream {
    Upstream::start(status_oops(503))
}

fn od(p: &Proxy) -> serde_json::Value {
    p.cluster_stats("backend")["outlier_detection"].clone()
}

fn od_stat(p: &Proxy, name: &str) -> u64 {
    od(p)[name].as_u64().unwrap_or(0)
}

fn flag_of(p: &Proxy, addr: SocketAddr) -> String {
    p.health_flag("backend", addr)
}

fn wait_flag(p: &Proxy, addr: SocketAddr, want: &str) {
    p.wait_health_flag("backend", addr, want, WAIT)
}

fn send(p: &Proxy, n: usize) -> Vec<u16> {
    (0..n).map(|_| get(p.listen, "x", "/work").status).collect()
}

/// Sends requests until `done` holds, for at most `WAIT` (bounded by time, not by
/// count: the interval detectors act at an interval's end however many requests fit).
fn send_until(p: &Proxy, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        get(p.listen, "x", "/work");
    }
    done()
}

#[test]
fn consecutive_5xx_ejects_the_endpoint_until_its_ejection_time_has_passed() {
    let good = ok_upstream();
    let bad = failing_upstream();
    let p = Proxy::start_with(
        &config(
            &[good.addr, bad.addr],
            "      consecutive_5xx: 3
      interval: 50ms
      base_ejection_time: 500ms
      max_ejection_percent: 50
",
        ),
        2,
    );
    assert_eq!(flag_of(&p, bad.addr), "healthy");
    // Round robin: the failing endpoint gets its three 503s within a few requests.
    assert!(send_until(&p, || od_stat(&p, "ejections_active") == 1));
    assert_eq!(flag_of(&p, bad.addr), "/failed_outlier_check");
    assert_eq!(flag_of(&p, good.addr), "healthy");
    let before = bad.request_count();
    assert!(
        before >= 3,
        "three 503s in a row eject it: {before} requests"
    );
    // Ejected: every request goes to the other endpoint, and succeeds.
    assert!(send(&p, 10).iter().all(|&s| s == 200));
    let s = od(&p);
    assert_eq!(s["ejections_enforced_total"], 1, "{s}");
    assert_eq!(s["ejections_enforced_consecutive_5xx"], 1, "{s}");
    assert_eq!(s["ejections_detected_consecutive_5xx"], 1, "{s}");
    assert_eq!(s["ejections_overflow"], 0, "{s}");
    // Still ejected (the ejection time is not over while this runs, or it is and the
    // endpoint is back): what matters is that no request reached it while ejected.
    if flag_of(&p, bad.addr) == "/failed_outlier_check" {
        assert_eq!(bad.request_count(), before);
    }
    // It comes back after base_ejection_time, at an interval's check, and gets
    // traffic again.
    wait_flag(&p, bad.addr, "healthy");
    assert_eq!(od_stat(&p, "ejections_active"), 0);
    let back = bad.request_count();
    assert!(send_until(&p, || bad.request_count() > back));
    // Prometheus: the gauge and the counters, by Envoy's names.
    let text = p.prometheus();
    assert_eq!(
        metric(
            &text,
            "outrigger_outlier_detection_ejections_enforced_consecutive_5xx_total{cluster=\"backend\"}"
        ),
        Some(s["ejections_enforced_consecutive_5xx"].as_u64().unwrap() as f64)
    );
    assert!(metric(
        &text,
        "outrigger_outlier_detection_ejections_active{cluster=\"backend\"}"
    )
    .is_some());
}

#[test]
fn max_ejection_percent_caps_the_ejected_endpoints_and_counts_the_overflow() {
    let ups: Vec<Upstream> = (0..3).map(|_| failing_upstream()).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    // One of three is 33%: allowed; a second would be 66%.
    let p = Proxy::start_with(
        &config(
            &addrs,
            "      consecutive_5xx: 2
      interval: 1s
      base_ejection_time: 60s
      max_ejection_percent: 34
",
        ),
        2,
    );
    assert!(send_until(&p, || od_stat(&p, "ejections_overflow") >= 1));
    let s = od(&p);
    assert_eq!(s["ejections_active"], 1, "{s}");
    assert_eq!(s["ejections_enforced_total"], 1, "{s}");
    let ejected = addrs
        .iter()
        .filter(|a| flag_of(&p, **a) == "/failed_outlier_check")
        .count();
    assert_eq!(ejected, 1);
}

#[test]
fn the_default_ten_percent_ejects_nothing_of_two_endpoints() {
    // Envoy's default max_ejection_percent (10) with two endpoints: one would be 50%,
    // so the detection overflows (always_eject_one_host is off by default).
    let good = ok_upstream();
    let bad = failing_upstream();
    let p = Proxy::start_with(
        &config(
            &[good.addr, bad.addr],
            "      consecutive_5xx: 2\n      interval: 1s\n",
        ),
        1,
    );
    assert!(send_until(&p, || od_stat(&p, "ejections_overflow") >= 1));
    assert_eq!(od_stat(&p, "ejections_active"), 0);
    assert_eq!(od_stat(&p, "ejections_detected_consecutive_5xx"), 1);
    assert_eq!(flag_of(&p, bad.addr), "healthy");
}

#[test]
fn always_eject_one_host_ejects_the_first_despite_the_percentage() {
    let good = ok_upstream();
    let bad = failing_upstream();
    let p = Proxy::start_with(
        &config(
            &[good.addr, bad.addr],
            "      consecutive_5xx: 2\n      interval: 1s\n      always_eject_one_host: true\n",
        ),
        1,
    );
    assert!(send_until(&p, || od_stat(&p, "ejections_active") == 1));
    assert_eq!(flag_of(&p, bad.addr), "/failed_outlier_check");
}

#[test]
fn gateway_failures_are_detected_but_not_enforced_by_default() {
    let good = ok_upstream();
    let bad = failing_upstream();
    let p = Proxy::start_with(
        &config(
            &[good.addr, bad.addr],
            "      consecutive_5xx: 1000
      consecutive_gateway_failure: 2
      interval: 1s
      max_ejection_percent: 50
",
        ),
        1,
    );
    assert!(send_until(&p, || od_stat(
        &p,
        "ejections_detected_consecutive_gateway_failure"
    ) >= 1));
    // enforcing_consecutive_gateway_failure defaults to 0.
    assert_eq!(od_stat(&p, "ejections_enforced_total"), 0);
    assert_eq!(od_stat(&p, "ejections_active"), 0);
    assert_eq!(flag_of(&p, bad.addr), "healthy");
}

#[test]
fn split_local_origin_failures_eject_an_endpoint_that_refuses_connections() {
    let good = ok_upstream();
    let refused = refused_addr();
    let p = Proxy::start_with(
        &config(
            &[good.addr, refused],
            "      split_external_local_origin_errors: true
      consecutive_local_origin_failure: 2
      consecutive_5xx: 1000
      interval: 1s
      base_ejection_time: 60s
      max_ejection_percent: 50
",
        ),
        1,
    );
    assert!(send_until(&p, || od_stat(&p, "ejections_active") == 1));
    let s = od(&p);
    assert_eq!(
        s["ejections_enforced_consecutive_local_origin_failure"], 1,
        "{s}"
    );
    assert_eq!(s["ejections_detected_consecutive_5xx"], 0, "{s}");
    assert_eq!(flag_of(&p, refused), "/failed_outlier_check");
    assert!(send(&p, 10).iter().all(|&st| st == 200));
}

#[test]
fn bad_outlier_settings_are_refused_by_path() {
    let dir = TempDir::new("outlier-refused");
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (i, (o, want)) in [
        (
            "      max_ejection_percent: 101\n",
            "clusters[0].outlier_detection.max_ejection_percent",
        ),
        (
            "      base_ejection_time: 10s\n      max_ejection_time: 5s\n",
            "clusters[0].outlier_detection.max_ejection_time",
        ),
        ("      nonsense: 1\n", "nonsense"),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(&format!("c{i}.yaml"));
        let text = config(&[up], o)
            .replace("@ADMIN_PORT@", "9901")
            .replace("@PORT@", "10000");
        write_atomic(&path, &text);
        let out = run_cli(
            &["validate", "-c", &path.display().to_string()],
            Duration::from_secs(20),
        );
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{o} was accepted");
        assert!(err.contains(want), "{o}: {err}");
    }
}

/// An upstream that answers its traffic with 503 but passes `/healthz`.
fn failing_but_checked_healthy() -> Upstream {
    Upstream::start(std::sync::Arc::new(|_, req, s| {
        let raw: &[u8] = if req.target == "/healthz" {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhc"
        } else {
            b"HTTP/1.1 503 Oops\r\ncontent-length: 4\r\n\r\noops"
        };
        std::io::Write::write_all(s, raw)?;
        Ok(true)
    }))
}

fn checked_config(good: &Upstream, bad: &Upstream, uneject: bool) -> String {
    let health_checks = "    health_checks:
      - timeout: 1s
        interval: 100ms
        no_traffic_interval: 100ms
        unhealthy_threshold: 2
        healthy_threshold: 1
        http_health_check: {path: /healthz}
";
    config(
        &[good.addr, bad.addr],
        &format!(
            "      consecutive_5xx: 3
      interval: 1s
      base_ejection_time: 60s
      max_ejection_percent: 50
      successful_active_health_check_uneject_host: {uneject}
{health_checks}"
        ),
    )
}

#[test]
fn a_passing_active_health_check_brings_an_ejected_endpoint_back() {
    let good = ok_upstream();
    let bad = failing_but_checked_healthy();
    let p = Proxy::start_with(&checked_config(&good, &bad, true), 1);
    // Ejected by its 503s, then back at its next passing check, long before its 60s.
    let ejected = send_until(&p, || od_stat(&p, "ejections_enforced_total") >= 1);
    assert!(ejected);
    wait_flag(&p, bad.addr, "healthy");
    assert_eq!(od_stat(&p, "ejections_active"), 0);
}

#[test]
fn without_uneject_on_check_the_ejection_runs_its_time() {
    let good = ok_upstream();
    let bad = failing_but_checked_healthy();
    let p = Proxy::start_with(&checked_config(&good, &bad, false), 1);
    assert!(send_until(&p, || od_stat(&p, "ejections_active") == 1));
    // Several checks pass meanwhile; the endpoint stays out.
    let checks = |u: &Upstream| {
        u.requests()
            .iter()
            .filter(|r| r.target == "/healthz")
            .count()
    };
    let seen = checks(&bad);
    assert!(wait_until(WAIT, || (checks(&bad) >= seen + 3).then_some(())).is_some());
    assert_eq!(flag_of(&p, bad.addr), "/failed_outlier_check");
    assert_eq!(od_stat(&p, "ejections_active"), 1);
}

#[test]
fn ejecting_every_endpoint_puts_the_cluster_in_panic() {
    let a = failing_upstream();
    let b = failing_upstream();
    let p = Proxy::start_with(
        &config(
            &[a.addr, b.addr],
            "      consecutive_5xx: 2
      interval: 1s
      base_ejection_time: 60s
      max_ejection_percent: 100
",
        ),
        1,
    );
    assert!(send_until(&p, || od_stat(&p, "ejections_active") == 2));
    // No endpoint is healthy: below the 50% panic threshold every endpoint is used, so
    // the requests still reach the upstreams (their 503, not a local 503 UH).
    let before = a.request_count() + b.request_count();
    assert!(send(&p, 6).iter().all(|&s| s == 503));
    assert_eq!(a.request_count() + b.request_count(), before + 6);
    assert!(
        p.cluster_stats("backend")["lb_healthy_panic"]
            .as_u64()
            .unwrap()
            >= 6
    );
}

#[test]
fn the_interval_detectors_eject_by_failure_percentage_and_success_rate() {
    for (fields, stat) in [
        (
            "      enforcing_failure_percentage: 100
      failure_percentage_request_volume: 2
      enforcing_success_rate: 0
",
            "ejections_enforced_failure_percentage",
        ),
        (
            "      success_rate_request_volume: 2
",
            "ejections_enforced_success_rate",
        ),
    ] {
        let mut ups: Vec<Upstream> = (0..4).map(|_| ok_upstream()).collect();
        ups.push(failing_upstream());
        let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
        let p = Proxy::start_with(
            &config(
                &addrs,
                &format!(
                    "      consecutive_5xx: 1000
      interval: 300ms
      base_ejection_time: 60s
      max_ejection_percent: 20
{fields}"
                ),
            ),
            2,
        );
        assert!(
            send_until(&p, || od_stat(&p, stat) == 1),
            "{stat}: {}",
            od(&p)
        );
        assert_eq!(flag_of(&p, addrs[4]), "/failed_outlier_check");
        assert_eq!(od_stat(&p, "ejections_active"), 1);
        assert!(send(&p, 10).iter().all(|&s| s == 200));
    }
}

/// HTTP/2 statuses of `n` requests sent on one HTTP/2 connection to `addr`.
fn h2_send(addr: SocketAddr, n: usize) -> Vec<u16> {
    h2client::run(move || async move {
        let mut c = h2client::connect(addr).await;
        let mut out = Vec::new();
        for _ in 0..n {
            let req = h2client::request("GET", &format!("http://{addr}/work"))
                .body(())
                .unwrap();
            out.push(h2client::send(&mut c, req, b"").await.status);
        }
        out
    })
}

#[test]
fn an_http2_cluster_ejects_for_http1_and_http2_clients() {
    let good = h2client::h2_upstream(200);
    let bad = h2client::h2_upstream(503);
    let text = config(
        &[good, bad],
        "      consecutive_5xx: 3
      interval: 1s
      base_ejection_time: 60s
      max_ejection_percent: 50
",
    )
    .replace(
        "    connect_timeout: 1s\n",
        "    connect_timeout: 1s\n    protocol: http2\n",
    );
    // HTTP/1 clients (the HTTP/1 to HTTP/2 path).
    let p = Proxy::start_with(&text, 1);
    assert!(send_until(&p, || od_stat(&p, "ejections_active") == 1));
    assert_eq!(flag_of(&p, bad), "/failed_outlier_check");
    assert!(send(&p, 10).iter().all(|&s| s == 200));
    drop(p);
    // HTTP/2 clients (HTTP/2 to HTTP/2).
    let p = Proxy::start_with(&text, 1);
    let mut acted = false;
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if od_stat(&p, "ejections_active") == 1 {
            acted = true;
            break;
        }
        h2_send(p.listen, 5);
    }
    assert!(acted, "{}", od(&p));
    assert_eq!(flag_of(&p, bad), "/failed_outlier_check");
    assert!(h2_send(p.listen, 10).iter().all(|&s| s == 200));
}
