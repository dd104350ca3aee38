//! Admin `/stats` with Envoy's query parameters through the real binary: `filter`
//! (a regex; an invalid one is a 400 with Envoy's text), `usedonly`, `type`, and
//! `format=json` / `text` / `prometheus`; without them `/stats` keeps Outrigger's own
//! JSON report. With Envoy 1.40 installed the same bootstrap runs under it, and the
//! JSON's shape and a filtered set of cluster counters are compared.

mod common;

use std::net::SocketAddr;

use common::envoy::*;
use common::*;
use serde_json::Value;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

fn bootstrap(up: SocketAddr) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: web
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: web
          codec_type: AUTO
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: backend }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
  - name: idle
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: idle
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        up.port(),
        up.port()
    )
}

fn requests(listen: SocketAddr, n: usize) {
    for _ in 0..n {
        let mut c = Conn::connect(listen);
        c.send("GET /x HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n");
        assert_eq!(c.read_response().unwrap().status, 200);
    }
}

fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let r = http_request(admin, "GET", path, IO_TIMEOUT).unwrap();
    (r.status, r.body_str())
}

fn json(admin: SocketAddr, path: &str) -> Value {
    let (status, body) = get(admin, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The counters the filter `^cluster\.backend\.upstream_rq_(2xx|total)$` selects.
const COUNTERS: &str =
    "/stats?format=json&filter=%5Ecluster%5C.backend%5C.upstream_rq_(2xx%7Ctotal)%24";

/// Envoy's per-cluster upstream request time histograms that saw a request.
const RQ_TIME: &str =
    "/stats?format=json&usedonly&filter=%5Ecluster%5C.%5Ba-z%5D%2B%5C.upstream_rq_time%24";

#[test]
fn envoy_query_parameters_filter_and_shape_the_stats() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&bootstrap(up.addr));
    requests(proxy.listen, 3);
    let a = proxy.admin;
    assert_eq!(
        json(a, COUNTERS),
        serde_json::json!({"stats": [
            {"name": "cluster.backend.upstream_rq_2xx", "value": 3},
            {"name": "cluster.backend.upstream_rq_total", "value": 3},
        ]})
    );
    // Text: `name: value`, sorted; `usedonly` leaves out what was never counted.
    let (status, text) = get(a, "/stats?filter=upstream_rq_total&usedonly");
    assert_eq!(status, 200);
    assert_eq!(text, "cluster.backend.upstream_rq_total: 3\n");
    let (_, all) = get(a, "/stats?filter=upstream_rq_total");
    assert!(all.contains("cluster.idle.upstream_rq_total: 0\n"), "{all}");
    // The histograms come last, in Envoy's shape.
    let v = json(a, "/stats?format=json&filter=downstream_rq_time");
    let stats = v["stats"].as_array().unwrap();
    let h = &stats.last().unwrap()["histograms"];
    assert_eq!(h["supported_quantiles"].as_array().unwrap().len(), 10);
    let q = &h["computed_quantiles"][0];
    assert_eq!(q["name"], "listener.web.downstream_rq_time");
    assert!(q["values"][10].is_null() && q["values"][9]["cumulative"].is_number());
    // Only histograms / only counters.
    let v = json(a, "/stats?format=json&type=Histograms");
    assert!(v["stats"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s.get("histograms").is_some()));
    let v = json(
        a,
        "/stats?format=json&type=Counters&filter=downstream_cx_active",
    );
    assert_eq!(v["stats"], serde_json::json!([]));
    // Prometheus, filtered on the series.
    let (status, p) = get(a, "/stats?format=prometheus&filter=cluster%3D%22idle%22");
    assert_eq!(status, 200);
    assert!(
        p.contains("outrigger_upstream_rq_total{cluster=\"idle\"} 0"),
        "{p}"
    );
    assert!(!p.contains("cluster=\"backend\""), "{p}");
    // Errors, as Envoy words them.
    let (status, body) = get(a, "/stats?filter=(");
    assert_eq!(status, 400);
    assert!(body.starts_with("Invalid re2 regex: "), "{body}");
    let (status, body) = get(a, "/stats?format=xml");
    assert_eq!(status, 400);
    assert!(body.starts_with("usage: /stats?format=(html|active-html|json|prometheus|text)"));
    // The per-cluster upstream request time: three samples on `backend` and one from
    // an HTTP/2 client, none on `idle` (left out with usedonly).
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--http2-prior-knowledge"])
        .arg(proxy.url("/h2"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{out:?}");
    let v = json(a, "/stats?format=json&usedonly&filter=upstream_rq_time");
    let q = &v["stats"][0]["histograms"]["computed_quantiles"];
    assert_eq!(q.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(q[0]["name"], "cluster.backend.upstream_rq_time");
    assert!(q[0]["values"][5]["cumulative"].as_f64().unwrap() >= 0.0);
    let p = proxy.prometheus();
    assert!(
        p.contains("outrigger_upstream_rq_time_seconds_count{cluster=\"backend\"} 4\n"),
        "{p}"
    );
    assert!(p.contains("outrigger_upstream_rq_time_seconds_count{cluster=\"idle\"} 0\n"));
    assert!(p.contains(
        "outrigger_upstream_rq_time_seconds_bucket{cluster=\"backend\",le=\"+Inf\"} 4\n"
    ));
    // No Envoy parameter: Outrigger's own report, as before.
    assert!(proxy.stats()["clusters"].is_array());
}

#[test]
fn json_shape_and_cluster_counters_match_envoy() {
    let Some(bin) = envoy_or_skip("json_shape_and_cluster_counters_match_envoy") else {
        return;
    };
    let up = Upstream::echo();
    let text = bootstrap(up.addr);
    let envoy = Envoy::start(&bin, &text);
    requests(envoy.listen, 2);
    let theirs = json(envoy.admin, COUNTERS);
    // Envoy's histogram element (its own names): the same keys and value shape.
    let their_hist = json(envoy.admin, "/stats?format=json&filter=downstream_rq_time");
    // Envoy creates a cluster's histogram with its first sample (and marks it used only
    // at its next stats flush): its list without `usedonly` is ours with it.
    let their_rq_time = json(envoy.admin, &RQ_TIME.replace("&usedonly", ""));
    drop(envoy);
    let proxy = Proxy::start(&text);
    requests(proxy.listen, 2);
    assert_eq!(json(proxy.admin, COUNTERS), theirs);
    let our_hist = json(proxy.admin, "/stats?format=json&filter=downstream_rq_time");
    // The same histogram names for the per-cluster upstream request time.
    let names = |v: &Value| -> Vec<Value> {
        let h = &v["stats"].as_array().unwrap().last().unwrap()["histograms"];
        h["computed_quantiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].clone())
            .collect()
    };
    assert_eq!(names(&json(proxy.admin, RQ_TIME)), names(&their_rq_time));
    let shape = |v: &Value| {
        let h = &v["stats"].as_array().unwrap().last().unwrap()["histograms"];
        let keys: Vec<String> = h.as_object().unwrap().keys().cloned().collect();
        let q = &h["computed_quantiles"][0];
        let qkeys: Vec<String> = q.as_object().unwrap().keys().cloned().collect();
        let vkeys: Vec<String> = q["values"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        (keys, h["supported_quantiles"].clone(), qkeys, vkeys)
    };
    assert_eq!(shape(&our_hist), shape(&their_hist));
}
