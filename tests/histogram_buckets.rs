//! Configured histogram buckets through the real binary: a bootstrap's
//! `stats_config.histogram_bucket_settings` (the first rule whose `StringMatcher` takes a
//! histogram's name gives its buckets; the others keep Envoy's defaults) and the native
//! `stats.histogram_buckets`, shown by `/stats?histogram_buckets=cumulative|disjoint`
//! (text and JSON) and by the Prometheus `le` labels. With Envoy 1.40 installed the
//! same bootstrap runs under it and the bucket bounds it shows are compared.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::*;
use common::*;
use serde_json::Value;

fn bootstrap(up: SocketAddr) -> String {
    let cluster = |name: &str| {
        format!(
            "  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
",
            up.port()
        )
    };
    const TOP: &str = r#"stats_config:
  histogram_bucket_settings:
  - match: { prefix: cluster.backend. }
    buckets: [3600000, 1, 5]
  - match: { suffix: downstream_rq_time }
    buckets: [0.5, 2, 250]
  - match: { prefix: cluster. }
    buckets: [7, 70]
"#;
    let head = hcm_head(TOP, "web");
    format!(
        r#"{head}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /other }}
                route: {{ cluster: other }}
              - match: {{ prefix: / }}
                route: {{ cluster: backend }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{}{}"#,
        cluster("backend"),
        cluster("other"),
    )
}

fn requests(listen: SocketAddr) {
    for path in ["/a", "/b", "/c", "/other"] {
        let mut c = Conn::connect(listen);
        c.send(format!(
            "GET {path} HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n"
        ));
        assert_eq!(c.read_response().unwrap().status, 200);
    }
}

fn get(admin: SocketAddr, path: &str) -> String {
    let r = http_request(admin, "GET", path, IO_TIMEOUT).unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body_str());
    r.body_str()
}

/// The `B<bound>` labels of a histogram's line in `/stats?histogram_buckets=...`, and
/// its last (total) count, once it has samples (Envoy merges histograms every few
/// seconds: polled, bounded).
fn bucket_line(admin: SocketAddr, name: &str, mode: &str) -> (Vec<String>, Vec<u64>) {
    let path = format!("/stats?histogram_buckets={mode}&filter=^{name}$");
    let line = wait_until(Duration::from_secs(20), || {
        let text = get(admin, &path);
        let line = text.lines().find(|l| l.starts_with(&format!("{name}: ")))?;
        (!line.contains("No recorded values")).then(|| line.to_string())
    })
    .unwrap_or_else(|| panic!("{name} has no samples: {}", get(admin, &path)));
    let (labels, counts) = line
        .split_once(": ")
        .unwrap()
        .1
        .split(' ')
        .map(|b| {
            let (label, rest) = b.split_once('(').unwrap();
            let total = rest.trim_end_matches(')').rsplit(',').next().unwrap();
            (label.to_string(), total.parse::<u64>().unwrap())
        })
        .unzip();
    (labels, counts)
}

/// The `le` bounds (in milliseconds) of a Prometheus histogram family's series whose
/// labels contain `label`, `+Inf` left out.
fn le_ms(text: &str, family: &str, label: &str, seconds: bool) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}_bucket{{")) && l.contains(label))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let v: f64 = le.parse().ok()?;
            v.is_finite()
                .then_some(if seconds { v * 1000.0 } else { v })
        })
        .collect()
}

fn labels(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn configured_buckets_show_in_stats_and_prometheus() {
    let up = Upstream::start(echo());
    let proxy = Proxy::start(&bootstrap(up.addr));
    requests(proxy.listen);
    let (backend, counts) = bucket_line(
        proxy.admin,
        "cluster.backend.upstream_rq_time",
        "cumulative",
    );
    // The first matching rule, sorted as Envoy sorts them; every request under 1 h.
    assert_eq!(backend, labels(&["B1", "B5", "B3.6e+06"]));
    assert_eq!(counts.last(), Some(&3));
    let (other, _) = bucket_line(proxy.admin, "cluster.other.upstream_rq_time", "disjoint");
    assert_eq!(other, labels(&["B7", "B70"]));
    // The listener's histogram answers to Envoy's name for it too
    // (`http.web.downstream_rq_time`).
    let (listener, counts) =
        bucket_line(proxy.admin, "listener.web.downstream_rq_time", "cumulative");
    assert_eq!(listener, labels(&["B0.5", "B2", "B250"]));
    assert_eq!(counts.last(), Some(&4));
    // JSON: Envoy's bucket view.
    let json: Value = serde_json::from_str(&get(
        proxy.admin,
        "/stats?format=json&type=Histograms&histogram_buckets=cumulative&filter=cluster.backend",
    ))
    .unwrap();
    let h = &json["stats"][0]["histograms"][0];
    assert_eq!(h["name"], "cluster.backend.upstream_rq_time");
    let bounds: Vec<f64> = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["upper_bound"].as_f64().unwrap())
        .collect();
    assert_eq!(bounds, vec![1.0, 5.0, 3_600_000.0]);
    assert_eq!(h["buckets"][2]["cumulative"], 3);
    // Prometheus: the configured bounds as `le`, in seconds.
    let prom = get(proxy.admin, "/stats/prometheus");
    assert_eq!(
        le_ms(
            &prom,
            "outrigger_upstream_rq_time_seconds",
            "cluster=\"backend\"",
            true
        ),
        vec![1.0, 5.0, 3_600_000.0]
    );
    assert_eq!(
        le_ms(
            &prom,
            "outrigger_downstream_rq_time_seconds",
            "listener=\"web\"",
            true
        ),
        vec![0.5, 2.0, 250.0]
    );
    // The default view is unchanged: quantiles.
    let text = get(
        proxy.admin,
        "/stats?filter=cluster.backend.upstream_rq_time",
    );
    assert!(text.contains("P50(nan,"), "{text}");
}

#[test]
fn native_stats_histogram_buckets() {
    let up = Upstream::start(echo());
    let config = proxy_config(up.addr).replacen(
        "listeners:",
        "stats:\n  histogram_buckets:\n    - match: { exact: cluster.backend.upstream_rq_time }\n      buckets: [2.5, 10]\n    - match: { prefix: listener.main.phase. }\n      buckets: [0.05, 1]\nlisteners:",
        1,
    );
    let proxy = Proxy::start(&config);
    let mut c = Conn::connect(proxy.listen);
    c.send("GET / HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    let (backend, counts) = bucket_line(
        proxy.admin,
        "cluster.backend.upstream_rq_time",
        "cumulative",
    );
    assert_eq!(backend, labels(&["B2.5", "B10"]));
    assert!(counts.last().is_some_and(|n| *n <= 1));
    // Unmatched histograms keep their defaults.
    let (listener, _) = bucket_line(
        proxy.admin,
        "listener.main.downstream_rq_time",
        "cumulative",
    );
    assert_eq!(listener.first().map(String::as_str), Some("B0.25"));
    // The self-time phases take rules by `listener.<name>.phase.<phase>`.
    let (phase, counts) = bucket_line(proxy.admin, "listener.main.phase.parse", "cumulative");
    assert_eq!(phase, labels(&["B0.05", "B1"]));
    assert!(counts.last().is_some_and(|n| *n <= 1));
    let prom = get(proxy.admin, "/stats/prometheus");
    assert_eq!(
        le_ms(
            &prom,
            "outrigger_downstream_rq_phase_seconds",
            "phase=\"upstream_wait\"",
            true
        ),
        [0.05, 1.0],
        "{prom}"
    );
}

#[test]
fn bad_buckets_are_refused_with_the_field() {
    let up = Upstream::start(echo());
    let text = bootstrap(up.addr)
        .replace("buckets: [7, 70]", "buckets: [7, 0]")
        .replace("@ADMIN_PORT@", &free_port().to_string())
        .replace("@PORT@", &free_port().to_string());
    let dir = TempDir::new("buckets");
    let path = dir.join("bad.yaml");
    write_atomic(&path, &text);
    let out = run_cli(
        &["validate", "-c", &path.display().to_string()],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains("stats_config.histogram_bucket_settings[2].buckets"),
        "{err}"
    );
}

#[test]
fn the_bounds_match_envoy() {
    let Some(bin) = envoy_or_skip("the_bounds_match_envoy") else {
        return;
    };
    let up = Upstream::start(echo());
    let text = bootstrap(up.addr);
    let envoy = Envoy::start(&bin, &text);
    requests(envoy.listen);
    let theirs = [
        bucket_line(
            envoy.admin,
            "cluster.backend.upstream_rq_time",
            "cumulative",
        ),
        bucket_line(envoy.admin, "cluster.other.upstream_rq_time", "cumulative"),
        bucket_line(envoy.admin, "http.web.downstream_rq_time", "cumulative"),
    ];
    let their_prom = get(envoy.admin, "/stats/prometheus");
    drop(envoy);
    let proxy = Proxy::start(&text);
    requests(proxy.listen);
    let ours = [
        bucket_line(
            proxy.admin,
            "cluster.backend.upstream_rq_time",
            "cumulative",
        ),
        bucket_line(proxy.admin, "cluster.other.upstream_rq_time", "cumulative"),
        bucket_line(proxy.admin, "listener.web.downstream_rq_time", "cumulative"),
    ];
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o.0, t.0, "bucket labels");
        assert_eq!(o.1.last(), t.1.last(), "samples in all");
    }
    let our_prom = get(proxy.admin, "/stats/prometheus");
    assert_eq!(
        le_ms(
            &our_prom,
            "outrigger_upstream_rq_time_seconds",
            "cluster=\"backend\"",
            true
        ),
        le_ms(
            &their_prom,
            "envoy_cluster_upstream_rq_time",
            "envoy_cluster_name=\"backend\"",
            false
        )
    );
}
