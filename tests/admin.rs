//! The admin API: /ready, /stats (JSON), /stats/prometheus, /config_dump, /clusters and
//! POST /reload, with counters that move after traffic.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;

fn config(up: SocketAddr) -> String {
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
          - match: {{ prefix: /ok }}
            cluster: backend
          - match: {{ path: /direct }}
            direct_response: {{ status: 200, body: \"direct\" }}
clusters:
  - name: backend
    endpoints:
      - address: 127.0.0.1
        port: {}
",
        up.port()
    )
}

/// 5 proxied 200s, 1 direct 200, 2 no-route 404s, each on its own connection.
fn traffic(proxy: &Proxy) {
    for i in 0..5 {
        assert_eq!(get(proxy.listen, "t", &format!("/ok/{i}")).status, 200);
    }
    assert_eq!(get(proxy.listen, "t", "/direct").status, 200);
    assert_eq!(get(proxy.listen, "t", "/missing").status, 404);
    assert_eq!(get(proxy.listen, "t", "/missing").status, 404);
}

#[test]
fn ready_reports_live() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let r = proxy.admin_get("/ready");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str().trim(), "LIVE");
    let r = http_request(proxy.admin, "HEAD", "/ready", Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn stats_json_counts_traffic() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let l = proxy.listener_stats("main");
    assert_eq!(l["rq_total"], 0, "{l}");
    traffic(&proxy);

    let l = proxy.listener_stats("main");
    assert_eq!(l["rq_total"], 8, "{l}");
    assert_eq!(l["cx_total"], 8, "{l}");
    assert_eq!(l["rq_class"], serde_json::json!([0, 6, 0, 2, 0]), "{l}");
    assert_eq!(flag_count(&l, "NR"), 2, "{l}");
    assert!(l["bytes_received"].as_u64().unwrap() > 8 * 20, "{l}");
    assert!(l["bytes_sent"].as_u64().unwrap() > 8 * 20, "{l}");
    let buckets: u64 = l["rq_time"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .sum();
    assert_eq!(buckets, 8, "{l}");

    let c = proxy.cluster_stats("backend");
    assert_eq!(c["rq_total"], 5, "{c}");
    assert_eq!(c["rq_class"], serde_json::json!([0, 5, 0, 0, 0]), "{c}");
    assert_eq!(
        c["cx_total"], 1,
        "sequential requests share one upstream connection: {c}"
    );
    assert_eq!(c["cx_reused"], 4, "{c}");
    let ep = &c["endpoints"][0];
    assert_eq!(ep["address"], up.addr.to_string(), "{c}");
    assert_eq!(ep["rq_total"], 5, "{c}");
    assert_eq!(ep["rq_active"], 0, "{c}");
    assert_eq!(ep["cx_idle"], 1, "{c}");

    // Connections close: the active gauge goes back to zero.
    let settled = wait_until(Duration::from_secs(5), || {
        (proxy.listener_stats("main")["cx_active"] == 0).then_some(())
    });
    assert!(settled.is_some(), "{}", proxy.listener_stats("main"));
}

#[test]
fn stats_are_merged_across_workers() {
    let up = Upstream::echo();
    let proxy = Proxy::start_with(&config(up.addr), 2);
    for i in 0..20 {
        assert_eq!(get(proxy.listen, "t", &format!("/ok/{i}")).status, 200);
    }
    let l = proxy.listener_stats("main");
    assert_eq!(l["rq_total"], 20, "{l}");
    assert_eq!(l["cx_total"], 20, "{l}");
    let c = proxy.cluster_stats("backend");
    assert_eq!(c["rq_total"], 20, "{c}");
    assert_eq!(proxy.stats()["listeners"].as_array().unwrap().len(), 1);
}

#[test]
fn prometheus_counters_move_after_traffic() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let r = proxy.admin_get("/stats/prometheus");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    let before = r.body_str();
    let m = |text: &str, s: &str| {
        metric(text, s).unwrap_or_else(|| panic!("no sample {s} in:\n{text}"))
    };
    assert_eq!(
        m(&before, "outrigger_downstream_rq_total{listener=\"main\"}"),
        0.0
    );

    traffic(&proxy);
    let after = proxy.prometheus();
    assert_eq!(
        m(&after, "outrigger_downstream_rq_total{listener=\"main\"}"),
        8.0
    );
    assert_eq!(
        m(&after, "outrigger_downstream_cx_total{listener=\"main\"}"),
        8.0
    );
    assert_eq!(
        m(
            &after,
            "outrigger_downstream_rq_xx_total{listener=\"main\",class=\"2xx\"}"
        ),
        6.0
    );
    assert_eq!(
        m(
            &after,
            "outrigger_downstream_rq_xx_total{listener=\"main\",class=\"4xx\"}"
        ),
        2.0
    );
    assert_eq!(
        m(
            &after,
            "outrigger_downstream_rq_flag_total{listener=\"main\",flag=\"NR\"}"
        ),
        2.0
    );
    assert!(
        m(
            &after,
            "outrigger_downstream_bytes_sent_total{listener=\"main\"}"
        ) > 0.0
    );
    assert_eq!(
        m(&after, "outrigger_upstream_rq_total{cluster=\"backend\"}"),
        5.0
    );
    assert_eq!(
        m(
            &after,
            "outrigger_upstream_rq_xx_total{cluster=\"backend\",class=\"2xx\"}"
        ),
        5.0
    );
    assert_eq!(
        m(
            &after,
            "outrigger_upstream_rq_xx_total{cluster=\"backend\",class=\"5xx\"}"
        ),
        0.0
    );
    assert_eq!(
        m(&after, "outrigger_upstream_cx_total{cluster=\"backend\"}"),
        1.0
    );
    assert_eq!(
        m(
            &after,
            "outrigger_upstream_cx_reused_total{cluster=\"backend\"}"
        ),
        4.0
    );

    // The histogram: cumulative buckets ending in +Inf == _count == requests.
    let buckets: Vec<(String, f64)> = after
        .lines()
        .filter(|l| l.starts_with("outrigger_downstream_rq_time_seconds_bucket{listener=\"main\""))
        .map(|l| {
            let (name, v) = l.rsplit_once(' ').unwrap();
            let le = name
                .split("le=\"")
                .nth(1)
                .unwrap()
                .trim_end_matches("\"}")
                .to_string();
            (le, v.parse().unwrap())
        })
        .collect();
    assert!(buckets.len() >= 2, "{after}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets not cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last().unwrap(), &("+Inf".to_string(), 8.0));
    assert_eq!(
        m(
            &after,
            "outrigger_downstream_rq_time_seconds_count{listener=\"main\"}"
        ),
        8.0
    );
    assert!(
        m(
            &after,
            "outrigger_downstream_rq_time_seconds_sum{listener=\"main\"}"
        ) > 0.0
    );
}

#[test]
fn prometheus_text_is_well_formed() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    traffic(&proxy);
    let text = proxy.prometheus();
    let mut typed = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            let kind = it.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "family {name} typed twice");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(
            typed.contains(family),
            "sample {name} has no # TYPE line before it"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
            }
        }
    }
}

#[test]
fn config_dump_has_version_and_config() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let r = proxy.admin_get("/config_dump");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["config"]["listeners"][0]["name"], "main", "{v}");
    assert_eq!(
        v["config"]["listeners"][0]["port"],
        proxy.listen.port(),
        "{v}"
    );
    assert_eq!(
        v["config"]["clusters"][0]["endpoints"][0]["port"],
        up.addr.port(),
        "{v}"
    );
}

#[test]
fn clusters_lists_endpoints() {
    let up = Upstream::echo();
    let other = refused_addr();
    let yaml = config(up.addr).replace(
        "    endpoints:\n",
        &format!(
            "    endpoints:\n      - {{ address: 127.0.0.1, port: {}, weight: 3 }}\n",
            other.port()
        ),
    );
    let proxy = Proxy::start(&yaml);
    let r = proxy.admin_get("/clusters?format=json");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let clusters = v["clusters"].as_array().unwrap_or_else(|| panic!("{v}"));
    let backend = clusters
        .iter()
        .find(|c| c["name"] == "backend")
        .unwrap_or_else(|| panic!("{v}"));
    let addrs: Vec<(String, u64)> = backend["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_string(),
                e["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        addrs,
        vec![(other.to_string(), 3), (up.addr.to_string(), 1)]
    );
}

#[test]
fn reload_endpoint_bumps_the_version() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let r = proxy.reload();
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.body_str().contains("version 2"), "{}", r.body_str());
    assert_eq!(proxy.config_version(), 2);
    let ready = wait_until(Duration::from_secs(5), || {
        (proxy.admin_get("/ready").status == 200).then_some(())
    });
    assert!(ready.is_some(), "the workers did not apply version 2");
}

#[test]
fn wrong_methods_and_unknown_paths() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    assert_eq!(proxy.admin_get("/reload").status, 405);
    assert_eq!(proxy.admin_post("/stats").status, 405);
    assert_eq!(proxy.admin_get("/nope").status, 404);
    assert_eq!(proxy.config_version(), 1, "GET /reload must not reload");
}

#[test]
fn stats_stay_available_while_draining() {
    // During a drain the operator watches connections go down; /stats must answer.
    let up = Upstream::start(delayed(Duration::from_secs(2)));
    let proxy = Proxy::start(&config(up.addr).replace("drain_timeout: 1s", "drain_timeout: 5s"));
    let mut busy = Conn::connect(proxy.listen);
    busy.send("GET /ok/slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(Duration::from_secs(5), || (up.heads() == 1).then_some(())).is_some());
    proxy.signal(libc::SIGTERM);
    let draining = wait_until(Duration::from_secs(2), || {
        http_request(proxy.admin, "GET", "/ready", Duration::from_millis(500))
            .ok()
            .filter(|r| r.status == 503)
    });
    assert!(draining.is_some(), "the proxy did not start draining");
    let start = std::time::Instant::now();
    let r = http_request(proxy.admin, "GET", "/stats", Duration::from_secs(1));
    let r = r.unwrap_or_else(|e| {
        panic!(
            "/stats did not answer during the drain within 1s ({e}, {:?})",
            start.elapsed()
        )
    });
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["listeners"][0]["cx_active"], 1, "{v}");
    // The in-flight request still completes.
    let done = busy.read_response().unwrap();
    assert_eq!(done.status, 200);
}

#[test]
fn logging_changes_log_levels_at_run_time_as_envoy_does() {
    // An upstream that answers garbage: the proxy logs that at debug level (in `http`).
    let up = Upstream::start(std::sync::Arc::new(|_ctx, _req, s| {
        use std::io::Write;
        s.write_all(b"garbage\r\n\r\n")?;
        Ok(false)
    }));
    let proxy = Proxy::start(&config(up.addr));
    const LINE: &str = "invalid upstream response";
    let listing = proxy.admin_post("/logging");
    assert_eq!(listing.status, 200);
    let text = listing.body_str();
    assert!(text.starts_with("active loggers:\n"), "{text}");
    assert!(text.contains("  http: info\n"), "{text}");
    assert_eq!(get(proxy.listen, "t", "/ok/a").status, 502);
    assert_eq!(
        proxy.admin_get("/logging").status,
        405,
        "POST only, as Envoy"
    );
    // One logger to debug: its debug lines appear; the listing says so.
    let r = proxy.admin_post("/logging?http=debug");
    assert_eq!(r.status, 200);
    assert!(r.body_str().contains("  http: debug\n"));
    assert!(r.body_str().contains("  tls: info\n"));
    assert!(!proxy.stderr().contains(LINE), "logged before the change");
    assert_eq!(get(proxy.listen, "t", "/ok/b").status, 502);
    let seen = wait_until(Duration::from_secs(5), || {
        proxy.stderr().contains(LINE).then_some(())
    });
    assert!(seen.is_some(), "no debug line: {}", proxy.stderr());
    // Several at once (percent-encoded, as a browser sends it), then all of them.
    let r = proxy.admin_post("/logging?paths=tls%3Adebug%2Cupstream:error");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(
        r.body_str().contains("  tls: debug\n") && r.body_str().contains("  upstream: error\n")
    );
    let r = proxy.admin_post("/logging?level=warning");
    assert_eq!(r.status, 200);
    assert!(
        r.body_str()
            .lines()
            .skip(1)
            .all(|l| l.ends_with(": warning")),
        "{}",
        r.body_str()
    );
    // Refusals change nothing and say why, with Envoy's usage text.
    for (q, why) in [
        ("/logging?http=loud", "error: unknown logger level"),
        ("/logging?nope=debug", "error: unknown logger name"),
        (
            "/logging?http=debug&tls=debug",
            "error: invalid number of parameters",
        ),
        (
            "/logging?paths=http:",
            "error: empty logger name or empty logger level",
        ),
    ] {
        let r = proxy.admin_post(q);
        assert_eq!(r.status, 400, "{q}");
        let body = r.body_str();
        assert!(body.starts_with(why), "{q}: {body}");
        assert!(body.contains("usage: /logging?level=<level> (change all levels)"));
        assert!(body.contains("  http: warning\n"), "{q}: {body}");
    }
}
