//! Per-route stats (Envoy's route `stat_prefix`) through the real binary, on one Envoy
//! v3 bootstrap: `vhost.<vhost>.route.<stat_prefix>.upstream_rq_total`, `_completed`,
//! `_<class>`, `_<code>`, the retry counters, `upstream_rq_timeout` and the
//! `upstream_rq_time` histogram, for a route that answers, one whose upstream fails
//! and is retried, one whose upstream refuses connections, one that hits its route
//! timeout and one whose per-try timeouts use up its retries, and a direct response;
//! HTTP/1 and HTTP/2 clients. A route without `stat_prefix` keeps none; the native
//! `stat_prefix` does the same. With Envoy 1.40 installed the same bootstrap runs
//! under it and the `vhost.` stats are compared line by line.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::*;
use common::*;

fn cluster(name: &str, addr: SocketAddr) -> String {
    format!(
        "  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]
",
        addr.port()
    )
}

fn bootstrap(ok: SocketAddr, fail: SocketAddr, slow: SocketAddr) -> String {
    let head = hcm_head("", "web");
    format!(
        r#"{head}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /ok }}
                stat_prefix: ok
                route: {{ cluster: ok }}
              - match: {{ prefix: /also }}
                stat_prefix: ok
                route: {{ cluster: ok }}
              - match: {{ prefix: /fail }}
                stat_prefix: fail
                route:
                  cluster: fail
                  retry_policy: {{ retry_on: 5xx, num_retries: 1 }}
              - match: {{ prefix: /slow/route }}
                stat_prefix: slow_route
                route: {{ cluster: slow, timeout: 0.2s }}
              - match: {{ prefix: /slow/try }}
                stat_prefix: slow_try
                route:
                  cluster: slow
                  timeout: 5s
                  retry_policy: {{ retry_on: 5xx, num_retries: 1, per_try_timeout: 0.2s }}
              - match: {{ prefix: /dead }}
                stat_prefix: dead
                route: {{ cluster: dead }}
              - match: {{ prefix: /direct }}
                stat_prefix: direct
                direct_response: {{ status: 200 }}
              - match: {{ prefix: / }}
                route: {{ cluster: ok }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{}{}{}{}"#,
        cluster("ok", ok),
        cluster("fail", fail),
        cluster("slow", slow),
        cluster("dead", refused_addr()),
    )
}

fn requests(listen: SocketAddr) {
    for (path, status) in [
        ("/ok/1", 200),
        ("/ok/2", 200),
        ("/also", 200),
        ("/fail", 503),
        ("/dead", 503),
        ("/slow/route", 504),
        ("/slow/try", 504),
        ("/direct", 200),
        ("/plain", 200),
    ] {
        let mut c = Conn::connect(listen);
        c.send(format!(
            "GET {path} HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n"
        ));
        assert_eq!(c.read_response().unwrap().status, status, "{path}");
    }
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--max-time", "10", "--http2-prior-knowledge"])
        .arg(format!("http://{listen}/ok/h2"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

fn get(admin: SocketAddr, path: &str) -> String {
    let r = http_request(admin, "GET", path, IO_TIMEOUT).unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body_str());
    r.body_str()
}

/// The `vhost.` counters, and the names of the `vhost.` histograms that have samples
/// (polled: Envoy merges its histograms every few seconds; bounded).
fn vhost_stats(admin: SocketAddr, histograms: usize) -> (BTreeMap<String, u64>, Vec<String>) {
    wait_until(Duration::from_secs(20), || {
        let text = get(admin, "/stats?filter=^vhost\\.");
        let mut counters = BTreeMap::new();
        let mut hists = Vec::new();
        for line in text.lines() {
            let (name, value) = line.split_once(": ")?;
            match value.parse::<u64>() {
                Ok(v) => {
                    counters.insert(name.to_string(), v);
                }
                Err(_) if !value.contains("No recorded values") => hists.push(name.to_string()),
                Err(_) => {}
            }
        }
        hists.sort();
        (hists.len() >= histograms).then_some((counters, hists))
    })
    .unwrap_or_else(|| {
        panic!(
            "no route histograms: {}",
            get(admin, "/stats?filter=^vhost")
        )
    })
}

fn check_ours(c: &BTreeMap<String, u64>, hists: &[String]) {
    let n = |k: &str| {
        *c.get(&format!("vhost.all.route.{k}"))
            .unwrap_or_else(|| panic!("no {k}: {c:#?}"))
    };
    // Two routes share `ok`; the HTTP/2 request counts as the HTTP/1 ones.
    assert_eq!(n("ok.upstream_rq_total"), 4);
    assert_eq!(n("ok.upstream_rq_completed"), 4);
    assert_eq!(n("ok.upstream_rq_2xx"), 4);
    assert_eq!(n("ok.upstream_rq_200"), 4);
    assert_eq!(n("ok.upstream_rq_retry"), 0);
    // One retry of the 503, then the limit: two tries, one answer.
    assert_eq!(n("fail.upstream_rq_total"), 2);
    assert_eq!(n("fail.upstream_rq_retry"), 1);
    assert_eq!(n("fail.upstream_rq_retry_limit_exceeded"), 1);
    assert_eq!(n("fail.upstream_rq_retry_success"), 0);
    assert_eq!(n("fail.upstream_rq_completed"), 1);
    assert_eq!(n("fail.upstream_rq_503"), 1);
    // The route timeout counts; per-try timeouts that used up the retries do not (the
    // cluster's upstream_rq_per_try_timeout has them), though both answer 504 UT.
    assert_eq!(n("slow_route.upstream_rq_timeout"), 1);
    assert_eq!(n("slow_route.upstream_rq_504"), 1);
    assert_eq!(n("slow_try.upstream_rq_timeout"), 0);
    assert_eq!(n("slow_try.upstream_rq_total"), 2);
    assert_eq!(n("slow_try.upstream_rq_504"), 1);
    // No connection: no try upstream, the router's 503 all the same.
    assert_eq!(n("dead.upstream_rq_total"), 0);
    assert_eq!(n("dead.upstream_rq_503"), 1);
    assert!(
        !c.keys().any(|k| k.contains("direct.upstream_rq_2")),
        "{c:#?}"
    );
    assert!(!c.keys().any(|k| k.contains("route.plain")), "{c:#?}");
    assert!(
        hists.contains(&"vhost.all.route.ok.upstream_rq_time".to_string()),
        "{hists:?}"
    );
}

#[test]
fn route_stats_count_what_the_router_did() {
    let ok = Upstream::start(echo());
    let fail = Upstream::start(status_oops(503));
    let slow = Upstream::start(delayed(Duration::from_secs(1)));
    let proxy = Proxy::start(&bootstrap(ok.addr, fail.addr, slow.addr));
    requests(proxy.listen);
    let (c, hists) = vhost_stats(proxy.admin, 2);
    check_ours(&c, &hists);
    // Prometheus: the counters by name, the histogram per route.
    let prom = get(proxy.admin, "/stats/prometheus");
    assert!(
        prom.contains("outrigger_route_upstream_rq_total{virtual_host=\"all\",route=\"ok\"} 4"),
        "{prom}"
    );
    assert!(
        prom.contains(
            "outrigger_route_upstream_rq_time_seconds_count{virtual_host=\"all\",route=\"ok\"} 4"
        ),
        "{prom}"
    );
}

#[test]
fn native_stat_prefix() {
    let up = Upstream::start(echo());
    let config = proxy_config(up.addr).replacen(
        "cluster: backend",
        "cluster: backend\n            stat_prefix: main_route",
        1,
    );
    let proxy = Proxy::start(&config);
    let r = get(proxy.listen, "/x");
    assert!(!r.is_empty());
    let text = get(proxy.admin, "/stats?filter=^vhost\\.");
    assert!(
        text.contains("vhost.all.route.main_route.upstream_rq_200: 1"),
        "{text}"
    );
    assert!(
        text.contains("vhost.all.route.main_route.upstream_rq_total: 1"),
        "{text}"
    );
}

#[test]
fn the_stats_match_envoy() {
    let Some(bin) = envoy_or_skip("the_stats_match_envoy") else {
        return;
    };
    let ok = Upstream::start(echo());
    let fail = Upstream::start(status_oops(503));
    let slow = Upstream::start(delayed(Duration::from_secs(1)));
    let text = bootstrap(ok.addr, fail.addr, slow.addr);
    let envoy = Envoy::start(&bin, &text);
    requests(envoy.listen);
    let theirs = vhost_stats(envoy.admin, 2);
    drop(envoy);
    let proxy = Proxy::start(&text);
    requests(proxy.listen);
    let ours = vhost_stats(proxy.admin, 2);
    assert_eq!(ours.0, theirs.0, "counters");
    assert_eq!(ours.1, theirs.1, "histograms with samples");
}
