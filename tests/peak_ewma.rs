//! Peak EWMA (`lb_policy: peak_ewma`, issue 11) through the real binary: two in-process
//! upstreams, one of them slow while the test says so; the counts each one saw must
//! show the fast one taking most requests, then the slow one, once fast, getting its
//! share back. Sequential requests on one keep-alive connection (one worker, one core's
//! estimates); a short `decay_time` keeps the recovery within a bounded loop. The Envoy
//! spelling (the contrib `PeakEwma` typed config and its HTTP filter) is handed to
//! Outrigger (Envoy 1.40's release binary does not have the type: checked too).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::envoy::{envoy_binary, envoy_validate, hcm_head, ROUTER_TYPE};
use common::*;

const PEAK_EWMA_TYPE: &str =
    "type.googleapis.com/envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma";
const FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.peak_ewma.v3alpha.PeakEwmaConfig";

/// An upstream that answers `name`, after `delay` while `slow` is set.
struct Scripted {
    up: Upstream,
    slow: Arc<AtomicBool>,
}

impl Scripted {
    fn new(name: &'static str, delay: Duration) -> Scripted {
        let slow = Arc::new(AtomicBool::new(false));
        let s = slow.clone();
        let up = Upstream::start(Arc::new(move |ctx, _req, sock| {
            if s.load(Ordering::SeqCst) {
                ctx.sleep(delay);
            }
            write!(sock, "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n{name}")?;
            Ok(true)
        }));
        Scripted { up, slow }
    }

    fn seen(&self) -> usize {
        self.up.requests().len()
    }
}

fn native(a: SocketAddr, b: SocketAddr, lb: &str) -> String {
    format!(
        r#"{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ prefix: / }}
            cluster: up
            timeout: 10s
clusters:
  - name: up
    connect_timeout: 1s
{lb}    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
      - {{ address: 127.0.0.1, port: {} }}
"#,
        a.port(),
        b.port()
    )
}

fn envoy(a: SocketAddr, b: SocketAddr, lb_fields: &str) -> String {
    let head = hcm_head("", "main");
    format!(
        r#"{head}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: up, timeout: 10s }}
          http_filters:
          - name: envoy.filters.http.peak_ewma
            typed_config: {{"@type": {FILTER_TYPE}}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": {ROUTER_TYPE}}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: envoy.load_balancing_policies.peak_ewma
          typed_config:
            "@type": {PEAK_EWMA_TYPE}
{lb_fields}    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        a.port(),
        b.port()
    )
}

/// Sends `n` requests one after the other on `c`.
fn send(c: &mut Conn, n: usize) {
    for _ in 0..n {
        c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = c.read_response().expect("response");
        assert_eq!(r.status, 200, "{}", r.body_str());
    }
}

/// B is slow (150 ms): of 60 requests A, answering at once, takes most (B is tried
/// first, its `default_rtt` being tiny, and then again only as its estimate decays).
/// Then B is fast again: within a bounded number of requests it gets its part back.
fn fast_wins_and_slow_recovers(listen: SocketAddr, a: &Scripted, b: &Scripted) {
    let mut c = Conn::connect(listen);
    c.set_timeout(Duration::from_secs(10));
    b.slow.store(true, Ordering::SeqCst);
    let (a0, b0) = (a.seen(), b.seen());
    send(&mut c, 60);
    assert!(b.seen() > b0, "the slow endpoint was never tried");
    let (fast, slow) = (a.seen() - a0, b.seen() - b0);
    assert!(
        fast >= 48,
        "the fast endpoint took {fast} of 60, the slow one {slow}"
    );
    b.slow.store(false, Ordering::SeqCst);
    let b1 = b.seen();
    let end = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while b.seen() - b1 < 20 && Instant::now() < end {
        send(&mut c, 10);
        sent += 10;
    }
    assert!(
        b.seen() - b1 >= 20,
        "the recovered endpoint got {} of {sent} requests",
        b.seen() - b1
    );
}

#[test]
fn the_fast_endpoint_takes_most_requests_and_a_slow_one_recovers() {
    let a = Scripted::new("A", Duration::from_millis(150));
    let b = Scripted::new("B", Duration::from_millis(150));
    let proxy = Proxy::start_with(
        &native(
            a.up.addr,
            b.up.addr,
            "    lb_policy: peak_ewma\n    peak_ewma_lb_config: { decay_time: 300ms, default_rtt: 1us }\n",
        ),
        1,
    );
    fast_wins_and_slow_recovers(proxy.listen, &a, &b);
}

/// The Envoy bootstrap: the contrib typed config (with the fields Outrigger accepts
/// and does not use) and its filter, the same behaviour.
#[test]
fn the_envoy_contrib_peak_ewma_config_balances_the_same() {
    let a = Scripted::new("A", Duration::from_millis(150));
    let b = Scripted::new("B", Duration::from_millis(150));
    let fields = "            decay_time: 0.3s\n            default_rtt: 0.000001s\n            penalty_value: 1000000\n            aggregation_interval: 0.1s\n            max_samples_per_host: 1000\n";
    let text = envoy(a.up.addr, b.up.addr, fields);
    // Envoy 1.40's release build has no such type (contrib builds only).
    if let Some(bin) = envoy_binary() {
        let dir = TempDir::new("peak-ewma-envoy");
        let path = dir.join("envoy.yaml");
        write_atomic(
            &path,
            &text
                .replace("@ADMIN_PORT@", "0")
                .replace("@PORT@", &free_port().to_string())
                .replace("@PORT2@", &free_port().to_string()),
        );
        let (ok, out) = envoy_validate(&bin, &path);
        assert!(
            !ok && out.contains("peak_ewma"),
            "Envoy's release binary now knows the contrib type: add a parity case\n{out}"
        );
    }
    let proxy = Proxy::start_with(&text, 1);
    fast_wins_and_slow_recovers(proxy.listen, &a, &b);
}

/// Bad settings are refused with their path, natively and from an Envoy bootstrap.
#[test]
fn peak_ewma_settings_are_checked_by_their_path() {
    let (a, b): (SocketAddr, SocketAddr) = (
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    for (text, path, says) in [
        (
            native(
                a,
                b,
                "    lb_policy: round_robin\n    peak_ewma_lb_config: { decay_time: 1s }\n",
            ),
            "clusters[0].peak_ewma_lb_config",
            "goes with `lb_policy: peak_ewma`",
        ),
        (
            native(
                a,
                b,
                "    lb_policy: peak_ewma\n    peak_ewma_lb_config: { decay_time: 0s }\n",
            ),
            "clusters[0].peak_ewma_lb_config.decay_time",
            "must be greater than zero",
        ),
        (
            native(
                a,
                b,
                "    lb_policy: peak_ewma\n    peak_ewma_lb_config: { penalty_value: -1 }\n",
            ),
            "clusters[0].peak_ewma_lb_config.penalty_value",
            "must be a number above 0",
        ),
        (
            envoy(a, b, "            default_rtt: 0s\n"),
            "load_balancing_policy.policies[0].typed_extension_config.typed_config.default_rtt",
            "must be greater than zero",
        ),
    ] {
        let (ok, out) = validate_config(&text);
        assert!(!ok, "accepted: {text}");
        assert!(out.contains(path) && out.contains(says), "{path}: {out}");
    }
}
