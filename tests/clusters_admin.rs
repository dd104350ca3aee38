//! `GET /clusters` in Envoy's text format and `?format=json`, beside Envoy 1.40: the same
//! bootstrap (a cluster with outlier detection, circuit breakers and a weighted
//! endpoint, and a plain one), one request through each proxy, then every line's shape
//! (`cluster::host::stat` with the host written `HOST`) compared in order, cluster by
//! cluster, and the values Outrigger counts compared too. Without Envoy, the shapes are
//! still checked against the list Envoy 1.40 prints.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

fn bootstrap(up: SocketAddr, idle: SocketAddr) -> String {
    let ep = |a: SocketAddr, w: u32| {
        format!(
            "      - lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}, load_balancing_weight: {w} }}]\n",
            a.port()
        )
    };
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: backend, timeout: 10s }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    outlier_detection: {{}}
    circuit_breakers:
      thresholds: [{{ max_connections: 7, max_pending_requests: 8, max_requests: 9, max_retries: 2 }}]
    load_assignment:
      cluster_name: backend
      endpoints:
{backend}  - name: plain
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: plain
      endpoints:
{plain}"#,
        backend = ep(up, 3),
        plain = ep(idle, 1),
    )
}

/// The lines of each cluster, in order.
fn by_cluster(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in text.lines() {
        let name = l.split("::").next().unwrap_or("").to_string();
        out.entry(name).or_default().push(l.to_string());
    }
    out
}

/// A line's shape: the value dropped, any `127.0.0.1:port` written `HOST`.
fn shape(line: &str) -> String {
    let mut parts: Vec<String> = line.split("::").map(str::to_string).collect();
    parts.pop();
    for p in &mut parts {
        if p.starts_with("127.0.0.1:") {
            *p = "HOST".into();
        }
    }
    parts.join("::")
}

fn value<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(key))
}

/// What Envoy 1.40 prints for a cluster with outlier detection and one host.
const ENVOY_SHAPE: &[&str] = &[
    "C::observability_name",
    "C::outlier::success_rate_average",
    "C::outlier::success_rate_ejection_threshold",
    "C::outlier::local_origin_success_rate_average",
    "C::outlier::local_origin_success_rate_ejection_threshold",
    "C::default_priority::max_connections",
    "C::default_priority::max_pending_requests",
    "C::default_priority::max_requests",
    "C::default_priority::max_retries",
    "C::high_priority::max_connections",
    "C::high_priority::max_pending_requests",
    "C::high_priority::max_requests",
    "C::high_priority::max_retries",
    "C::added_via_api",
    "C::HOST::cx_active",
    "C::HOST::cx_connect_fail",
    "C::HOST::cx_total",
    "C::HOST::rq_active",
    "C::HOST::rq_error",
    "C::HOST::rq_pending_active",
    "C::HOST::rq_success",
    "C::HOST::rq_timeout",
    "C::HOST::rq_total",
    "C::HOST::hostname",
    "C::HOST::health_flags",
    "C::HOST::weight",
    "C::HOST::region",
    "C::HOST::zone",
    "C::HOST::sub_zone",
    "C::HOST::canary",
    "C::HOST::priority",
    "C::HOST::success_rate",
    "C::HOST::local_origin_success_rate",
];

fn get(admin: SocketAddr, path: &str) -> Response {
    exchange(
        admin,
        &format!("GET {path} HTTP/1.1\r\nHost: a\r\nconnection: close\r\n\r\n"),
    )
}

#[test]
fn clusters_text_has_envoys_lines_and_values() {
    let up = Upstream::echo();
    let idle = refused_addr();
    let boot = bootstrap(up.addr, idle);
    let p = Proxy::start(&boot);
    assert_eq!(
        exchange(p.listen, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    let ours = by_cluster(&p.admin_get("/clusters").body_str());

    let backend = &ours["backend"];
    let shapes: Vec<String> = backend
        .iter()
        .map(|l| shape(l).replacen("backend", "C", 1))
        .collect();
    assert_eq!(shapes, ENVOY_SHAPE, "{backend:#?}");
    let host = format!("backend::{}::", up.addr);
    assert_eq!(value(backend, &format!("{host}rq_total::")), Some("1"));
    assert_eq!(value(backend, &format!("{host}cx_total::")), Some("1"));
    assert_eq!(value(backend, &format!("{host}weight::")), Some("3"));
    assert_eq!(
        value(backend, &format!("{host}health_flags::")),
        Some("healthy")
    );
    assert_eq!(
        value(backend, "backend::default_priority::max_connections::"),
        Some("7")
    );
    assert_eq!(
        value(backend, "backend::default_priority::max_retries::"),
        Some("2")
    );
    assert_eq!(value(backend, "backend::added_via_api::"), Some("false"));
    // No outlier detection: no `outlier::` lines.
    assert!(ours["plain"].iter().all(|l| !l.contains("::outlier::")));

    // `?format=json`: Envoy's ClusterStatuses.
    let v: serde_json::Value =
        serde_json::from_str(&p.admin_get("/clusters?format=json").body_str()).unwrap();
    let statuses = v["cluster_statuses"].as_array().unwrap();
    let b = statuses.iter().find(|s| s["name"] == "backend").unwrap();
    let h = &b["host_statuses"][0];
    assert_eq!(h["address"]["socket_address"]["port_value"], up.addr.port());
    assert_eq!(h["weight"], 3);
    assert_eq!(h["health_status"]["eds_health_status"], "HEALTHY");
    let rq_total = h["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "rq_total")
        .unwrap();
    assert_eq!(rq_total["value"], "1");
    assert_eq!(b["circuit_breakers"]["thresholds"][0]["max_connections"], 7);

    let Some(bin) = envoy_or_skip("clusters_text_has_envoys_lines_and_values") else {
        return;
    };
    let envoy = Envoy::start(&bin, &boot);
    assert_eq!(
        exchange(envoy.listen, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    let theirs = by_cluster(&get(envoy.admin, "/clusters").body_str());
    for (name, lines) in &theirs {
        let mine = ours
            .get(name)
            .unwrap_or_else(|| panic!("no cluster {name}"));
        let s = |l: &Vec<String>| l.iter().map(|l| shape(l)).collect::<Vec<_>>();
        assert_eq!(s(mine), s(lines), "cluster {name}");
        // Every value Outrigger counts or configures is Envoy's too.
        for l in lines {
            let key = l.rsplit_once("::").map(|(k, _)| k).unwrap_or("");
            let counted = [
                "::cx_total",
                "::rq_total",
                "::weight",
                "::health_flags",
                "::max_connections",
                "::max_pending_requests",
                "::max_requests",
                "::max_retries",
                "::added_via_api",
                "::observability_name",
                "::cx_connect_fail",
                "::rq_active",
            ];
            if counted.iter().any(|c| key.ends_with(c)) {
                assert_eq!(
                    value(mine, &format!("{key}::")),
                    value(lines, &format!("{key}::")),
                    "{key}"
                );
            }
        }
    }
    assert_eq!(theirs.len(), ours.len());
}
