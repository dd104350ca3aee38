//! Least request's `active_request_bias` with unequal weights, handed to Envoy 1.40 and
//! to Outrigger (one worker each): endpoint A (weight 3) holds two requests in flight,
//! B (weight 1) none, and each proxy's share of sequential requests to A must match
//! Envoy's arithmetic, `3 / 3^bias` against `1`: bias 1.0 (the default) splits evenly,
//! 0.0 keeps 3:1, 0.5 gives sqrt(3):1. The counts are what the upstreams saw.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::envoy::{envoy_or_skip, hcm_head, Envoy, ROUTER_TYPE};
use common::*;

const REQUESTS: usize = 200;
/// Envoy's EDF scheduler starts from the weights without load; both proxies settle
/// within a few picks, so 200 requests land within this of the arithmetic.
const TOLERANCE: f64 = 0.07;

/// A: holds `/hold` until the test ends (counted in `held`); answers anything else.
fn holding(held: Arc<AtomicUsize>) -> Handler {
    Arc::new(move |ctx, req, s| {
        use std::io::Write;
        if req.target == "/hold" {
            held.fetch_add(1, Ordering::SeqCst);
            ctx.sleep(Duration::from_secs(20));
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nA")?;
        Ok(true)
    })
}

fn bootstrap(a: SocketAddr, b: SocketAddr, lb: &str) -> String {
    let head = hcm_head("", "main");
    format!(
        r#"{head}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: up, timeout: 30s }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": {ROUTER_TYPE}}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
{lb}    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
          load_balancing_weight: 3
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
          load_balancing_weight: 1
"#,
        a.port(),
        b.port()
    )
}

/// Pins two `/hold` requests on A (the ones B gets come back at once), then returns
/// A's share of `REQUESTS` sequential requests, with the held connections still open.
fn share_of_a(listen: SocketAddr, held: &AtomicUsize) -> f64 {
    let start = held.load(Ordering::SeqCst);
    let mut holds = Vec::new();
    for _ in 0..40 {
        if held.load(Ordering::SeqCst) - start >= 2 {
            break;
        }
        let mut c = Conn::connect(listen);
        c.send("GET /hold HTTP/1.1\r\nHost: h\r\n\r\n");
        let before = held.load(Ordering::SeqCst);
        // Either B answers, or A counts it as held.
        let _ = wait_until(Duration::from_secs(5), || {
            (held.load(Ordering::SeqCst) > before || !c.pending().is_empty() || {
                c.set_timeout(Duration::from_millis(20));
                c.read_response().is_ok()
            })
            .then_some(())
        });
        holds.push(c);
    }
    assert_eq!(
        held.load(Ordering::SeqCst) - start,
        2,
        "two requests held on A"
    );
    let mut on_a = 0;
    for _ in 0..REQUESTS {
        let r = exchange(
            listen,
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200, "{}", r.body_str());
        if r.body_str() == "A" {
            on_a += 1;
        }
    }
    drop(holds);
    on_a as f64 / REQUESTS as f64
}

#[test]
fn active_request_bias_divides_the_weight_by_the_requests_in_flight_as_in_envoy() {
    let Some(bin) = envoy_or_skip(
        "active_request_bias_divides_the_weight_by_the_requests_in_flight_as_in_envoy",
    ) else {
        return;
    };
    let held = Arc::new(AtomicUsize::new(0));
    let a = Upstream::start(holding(held.clone()));
    let b = Upstream::start(fixed("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nB"));
    let typed = |bias: &str| {
        format!(
            r#"    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: envoy.load_balancing_policies.least_request
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest
            active_request_bias: {{ default_value: {bias}, runtime_key: lr.bias }}
"#
        )
    };
    let root3 = 3f64.sqrt();
    let cases = [
        ("default bias".to_string(), "    lb_policy: LEAST_REQUEST\n".to_string(), 0.5),
        (
            "legacy config, bias 0".into(),
            "    lb_policy: LEAST_REQUEST\n    least_request_lb_config: { active_request_bias: { default_value: 0.0, runtime_key: lr.bias } }\n".into(),
            0.75,
        ),
        ("typed policy, bias 0.5".into(), typed("0.5"), root3 / (root3 + 1.0)),
        // Envoy uses 1.0 for a negative bias, with a warning.
        ("typed policy, bias -2".into(), typed("-2.0"), 0.5),
    ];
    let mut diffs = Vec::new();
    for (name, lb, expected) in &cases {
        let text = bootstrap(a.addr, b.addr, lb);
        let envoy = Envoy::start(&bin, &text);
        let from_envoy = share_of_a(envoy.listen, &held);
        drop(envoy);
        let proxy = Proxy::start_with(&text, 1);
        let from_outrigger = share_of_a(proxy.listen, &held);
        drop(proxy);
        eprintln!("{name}: Envoy {from_envoy:.3}, Outrigger {from_outrigger:.3}, arithmetic {expected:.3}");
        if (from_envoy - expected).abs() > TOLERANCE
            || (from_outrigger - expected).abs() > TOLERANCE
        {
            diffs.push(format!(
                "{name}: A's share: Envoy {from_envoy:.3}, Outrigger {from_outrigger:.3}, arithmetic {expected:.3}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// The native spelling, and its checks: the bias goes with least request only, and is
/// a number not below 0.
#[test]
fn native_least_request_lb_config_is_checked_by_its_path() {
    let held = Arc::new(AtomicUsize::new(0));
    let a = Upstream::start(holding(held.clone()));
    let b = Upstream::start(fixed("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nB"));
    let native = |lb: &str| {
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
            timeout: 30s
clusters:
  - name: up
    connect_timeout: 1s
{lb}    endpoints:
      - {{ address: 127.0.0.1, port: {}, weight: 3 }}
      - {{ address: 127.0.0.1, port: {}, weight: 1 }}
"#,
            a.addr.port(),
            b.addr.port()
        )
    };
    let proxy = Proxy::start_with(
        &native("    lb_policy: least_request\n    least_request_lb_config: { active_request_bias: 0.0 }\n"),
        1,
    );
    let share = share_of_a(proxy.listen, &held);
    assert!(
        (share - 0.75).abs() <= TOLERANCE,
        "bias 0: A's share {share}"
    );
    drop(proxy);
    for (lb, path, says) in [
        (
            "    lb_policy: round_robin\n    least_request_lb_config: { active_request_bias: 1.0 }\n",
            "clusters[0].least_request_lb_config",
            "goes with `lb_policy: least_request`",
        ),
        (
            "    lb_policy: least_request\n    least_request_lb_config: { active_request_bias: -1.0 }\n",
            "clusters[0].least_request_lb_config.active_request_bias",
            "must be a number not below 0",
        ),
    ] {
        let dir = TempDir::new("lr-bias");
        let path_cfg = dir.join("c.yaml");
        let text = native(lb)
            .replace("@ADMIN_PORT@", "9901")
            .replace("@PORT@", "10000");
        write_atomic(&path_cfg, &text);
        let out = run_cli(
            &["validate", "-c", &path_cfg.display().to_string()],
            Duration::from_secs(20),
        );
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{lb} was accepted");
        assert!(text.contains(&format!("{path}: {says}")), "{lb}: {text}");
    }
}
