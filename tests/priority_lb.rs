//! Priority levels and locality weights through the real binary (issue 11): in-process
//! upstreams that count the requests they get; priority 0 endpoints fail their health
//! checks and the load spills to priority 1 in Envoy's proportions (overprovisioning
//! factor 140), then comes back; locality weights split a priority's load.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// An upstream whose `/healthz` answers the scripted status; other paths get 200.
struct Scripted {
    up: Upstream,
    health: Arc<AtomicU16>,
}

impl Scripted {
    fn new() -> Scripted {
        let state = Arc::new(AtomicU16::new(200));
        let h = state.clone();
        let up = Upstream::start(Arc::new(move |_ctx, req, s| {
            let st = if req.target == "/healthz" {
                h.load(Ordering::SeqCst)
            } else {
                200
            };
            write!(s, "HTTP/1.1 {st} X\r\ncontent-length: 2\r\n\r\nok")?;
            Ok(true)
        }));
        Scripted { up, health: state }
    }

    fn set(&self, v: u16) {
        self.health.store(v, Ordering::SeqCst);
    }

    fn traffic(&self) -> usize {
        self.up
            .requests()
            .iter()
            .filter(|r| r.target != "/healthz")
            .count()
    }
}

/// `(address, priority, locality)` per endpoint.
fn config(eps: &[(SocketAddr, u32, &str)], cluster_extra: &str, checks: bool) -> String {
    let eps: String = eps
        .iter()
        .map(|(a, p, l)| {
            format!(
                "      - {{address: 127.0.0.1, port: {}, priority: {p}, locality: \"{l}\"}}\n",
                a.port()
            )
        })
        .collect();
    let checks = if checks {
        "    health_checks:
      - timeout: 1s
        interval: 100ms
        no_traffic_interval: 100ms
        unhealthy_threshold: 1
        healthy_threshold: 1
        http_health_check: {path: /healthz}
"
    } else {
        ""
    };
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
{cluster_extra}    endpoints:
{eps}{checks}"
    )
}

fn wait_flag(p: &Proxy, addr: SocketAddr, want: &str) {
    p.wait_health_flag("backend", addr, want, WAIT)
}

/// Sends `n` requests (each on its own connection, so every worker takes some).
fn send(p: &Proxy, n: usize) {
    for _ in 0..n {
        assert_eq!(get(p.listen, "x", "/work").status, 200);
    }
}

fn counts(ups: &[Scripted]) -> Vec<usize> {
    ups.iter().map(Scripted::traffic).collect()
}

fn delta(after: &[usize], before: &[usize]) -> Vec<usize> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

#[test]
fn failing_priority_0_spills_to_priority_1_in_envoys_proportions() {
    for policy in ["round_robin", "least_request", "random"] {
        let ups: Vec<Scripted> = (0..4).map(|_| Scripted::new()).collect();
        let eps: Vec<(SocketAddr, u32, &str)> = ups
            .iter()
            .enumerate()
            .map(|(i, u)| (u.up.addr, (i / 2) as u32, ""))
            .collect();
        let p = Proxy::start_with(
            &config(&eps, &format!("    lb_policy: {policy}\n"), true),
            2,
        );
        // All healthy: priority 0 takes everything.
        send(&p, 40);
        let c0 = counts(&ups);
        assert_eq!(c0[2] + c0[3], 0, "{policy}: {c0:?}");
        assert_eq!(c0[0] + c0[1], 40, "{policy}: {c0:?}");
        // One of two P0 endpoints fails: P0 keeps 140% * 1/2 = 70%, P1 gets 30%.
        ups[0].set(503);
        wait_flag(&p, ups[0].up.addr, "/failed_active_hc");
        let before = counts(&ups);
        send(&p, 400);
        let d = delta(&counts(&ups), &before);
        assert_eq!(d[0], 0, "{policy}: {d:?}");
        // Expected 280 of 400 (sd 9): well inside 230..=330.
        assert!((230..=330).contains(&d[1]), "{policy}: {d:?}");
        assert!(d[2] > 0 && d[3] > 0, "{policy}: {d:?}");
        // Both fail: P1 carries everything (it is fully available: no panic).
        ups[1].set(503);
        wait_flag(&p, ups[1].up.addr, "/failed_active_hc");
        let before = counts(&ups);
        send(&p, 40);
        let d = delta(&counts(&ups), &before);
        assert_eq!(d[0] + d[1], 0, "{policy}: {d:?}");
        assert_eq!(p.cluster_stats("backend")["lb_healthy_panic"], 0);
        // They pass again: the load comes back.
        ups[0].set(200);
        ups[1].set(200);
        wait_flag(&p, ups[0].up.addr, "healthy");
        wait_flag(&p, ups[1].up.addr, "healthy");
        let before = counts(&ups);
        send(&p, 40);
        let d = delta(&counts(&ups), &before);
        assert_eq!(d[2] + d[3], 0, "{policy}: {d:?}");
    }
}

#[test]
fn locality_weights_split_a_priority() {
    let ups: Vec<Scripted> = (0..4).map(|_| Scripted::new()).collect();
    let eps: Vec<(SocketAddr, u32, &str)> = ups
        .iter()
        .enumerate()
        .map(|(i, u)| (u.up.addr, 0, if i < 2 { "a" } else { "b" }))
        .collect();
    let p = Proxy::start_with(
        &config(
            &eps,
            "    locality_weighted_lb: true\n    locality_weights: {a: 3, b: 1}\n",
            false,
        ),
        2,
    );
    send(&p, 400);
    let c = counts(&ups);
    // 3:1 by locality, even within it: 150/150/50/50, each core's scheduler exact.
    let a = c[0] + c[1];
    assert!((280..=320).contains(&a), "{c:?}");
    assert!(c.iter().all(|&n| n >= 30), "{c:?}");
}

#[test]
fn configured_health_status_counts_for_the_priority_load() {
    // P0: one healthy, one `unhealthy` by config; P1: two healthy. The unhealthy one
    // gets nothing but still counts: P0's availability is 70%.
    let ups: Vec<Scripted> = (0..4).map(|_| Scripted::new()).collect();
    let eps: String = ups
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let status = if i == 1 {
                ", health_status: unhealthy"
            } else {
                ""
            };
            format!(
                "      - {{address: 127.0.0.1, port: {}, priority: {}{status}}}\n",
                u.up.addr.port(),
                i / 2
            )
        })
        .collect();
    let cfg = config(&[], "", false).replace("    endpoints:\n", &format!("    endpoints:\n{eps}"));
    let p = Proxy::start_with(&cfg, 2);
    send(&p, 400);
    let c = counts(&ups);
    assert_eq!(c[1], 0, "{c:?}");
    assert!((230..=330).contains(&c[0]), "{c:?}");
}

#[test]
fn bad_priority_and_locality_settings_are_refused() {
    let up = Scripted::new();
    for (extra, ep, want) in [
        (
            "    overprovisioning_factor: 0\n",
            "",
            "overprovisioning_factor",
        ),
        ("    locality_weights: {zz: 2}\n", "", "locality_weights.zz"),
        ("", ", health_status: sick", "health_status"),
        (
            "    lb_policy: ring_hash\n    locality_weighted_lb: true\n",
            "",
            "locality_weighted_lb",
        ),
        (
            "    lb_policy: maglev\n    slow_start: {slow_start_window: 10s}\n",
            "",
            "slow_start",
        ),
        ("    slow_start: {aggression: 2}\n", "", "slow_start_window"),
        (
            "    slow_start: {slow_start_window: 10s, aggression: 0}\n",
            "",
            "aggression",
        ),
    ] {
        let cfg = config(&[], extra, false).replace(
            "    endpoints:\n",
            &format!(
                "    endpoints:\n      - {{address: 127.0.0.1, port: {}{ep}}}\n",
                up.up.addr.port()
            ),
        );
        let cfg = cfg.replace("@ADMIN_PORT@", "0").replace("@PORT@", "0");
        let dir = TempDir::new("prio");
        let path = dir.join("c.yaml");
        write_atomic(&path, &cfg);
        let out = run_cli(&["validate", "-c", &path.display().to_string()], WAIT);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{extra}{ep}: {text}");
        assert!(text.contains(want), "{extra}{ep}: {text}");
    }
}

#[test]
fn slow_start_accepts_envoys_settings_and_serves_every_endpoint() {
    // The ramp itself is time-based (unit tests in src/upstream/lb check it with a
    // given clock); here: the config loads and every endpoint, all ramping together
    // from the start, keeps an even share.
    let ups: Vec<Scripted> = (0..2).map(|_| Scripted::new()).collect();
    let eps: Vec<(SocketAddr, u32, &str)> = ups.iter().map(|u| (u.up.addr, 0, "")).collect();
    for policy in ["round_robin", "least_request"] {
        let before = counts(&ups);
        let p = Proxy::start_with(
            &config(
                &eps,
                &format!(
                    "    lb_policy: {policy}\n    slow_start: {{slow_start_window: 60s, aggression: 1.5, min_weight_percent: 20}}\n"
                ),
                false,
            ),
            2,
        );
        send(&p, 200);
        let d = delta(&counts(&ups), &before);
        assert!(
            d.iter().all(|&n| (60..=140).contains(&n)),
            "{policy}: {d:?}"
        );
    }
}
