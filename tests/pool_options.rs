//! Upstream connection-pool options: `max_requests_per_connection` (Envoy's
//! `common_http_protocol_options` field, and the deprecated cluster field it replaces)
//! closes an HTTP/1.1 upstream connection after that many requests, and an HTTP/2 one
//! after that many streams. The same bootstrap goes to Envoy 1.40 and to Outrigger (one
//! worker each); the connections the upstream saw for sequential requests must be the
//! same, and so must the connections each counts in `upstream_cx_max_requests`.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::{envoy_or_skip, one_cluster_bootstrap, Envoy};
use common::*;

const REQUESTS: usize = 5;

fn bootstrap(up: SocketAddr, cluster_extra: &str) -> String {
    one_cluster_bootstrap(up, cluster_extra)
}

const TYPED: &str = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: { max_requests_per_connection: 2 }
        explicit_http_config: { http_protocol_options: {} }
"#;

/// The upstream connections `REQUESTS` sequential requests took.
fn connections(listen: SocketAddr, up: &Upstream) -> usize {
    let before = up.connections();
    for _ in 0..REQUESTS {
        let r = exchange(
            listen,
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200, "{}", r.body_str());
    }
    up.connections() - before
}

#[test]
fn max_requests_per_connection_closes_the_connection_as_envoy_does() {
    let Some(bin) =
        envoy_or_skip("max_requests_per_connection_closes_the_connection_as_envoy_does")
    else {
        return;
    };
    // (name, cluster extra, upstream connections, upstream_cx_max_requests): with a
    // limit of 2, five requests use up two connections and leave a third open.
    let cases = [
        ("no limit", "", 1, 0u64),
        ("common_http_protocol_options: 2", TYPED, 3, 2),
        (
            "the deprecated cluster field: 1",
            "    max_requests_per_connection: 1\n",
            REQUESTS,
            REQUESTS as u64,
        ),
    ];
    let mut diffs = Vec::new();
    for (name, extra, expected, maxed) in &cases {
        let up = Upstream::echo();
        let text = bootstrap(up.addr, extra);
        let envoy = Envoy::start(&bin, &text);
        let from_envoy = connections(envoy.listen, &up);
        let envoy_maxed = envoy_stat(envoy.admin, "upstream_cx_max_requests");
        drop(envoy);
        let up = Upstream::echo();
        let text = bootstrap(up.addr, extra);
        let proxy = Proxy::start_with(&text, 1);
        let from_outrigger = connections(proxy.listen, &up);
        let our_maxed = proxy.cluster_stats("up")["cx_max_requests"]
            .as_u64()
            .unwrap_or(u64::MAX);
        let prom = metric(
            &proxy.prometheus(),
            "outrigger_upstream_cx_max_requests_total{cluster=\"up\"}",
        );
        drop(proxy);
        eprintln!(
            "{name}: connections Envoy {from_envoy}, Outrigger {from_outrigger}; upstream_cx_max_requests Envoy {envoy_maxed}, Outrigger {our_maxed}"
        );
        if from_envoy != *expected || from_outrigger != *expected {
            diffs.push(format!(
                "{name}: upstream connections: Envoy {from_envoy}, Outrigger {from_outrigger}, expected {expected}"
            ));
        }
        if envoy_maxed != *maxed || our_maxed != *maxed || prom != Some(*maxed as f64) {
            diffs.push(format!(
                "{name}: upstream_cx_max_requests: Envoy {envoy_maxed}, Outrigger {our_maxed} (Prometheus {prom:?}), expected {maxed}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // Both fields at once: Envoy refuses the bootstrap, and so does Outrigger.
    let both = bootstrap(
        "127.0.0.1:9".parse().unwrap(),
        &format!("    max_requests_per_connection: 1\n{TYPED}"),
    );
    let dir = TempDir::new("pool-both");
    let path = dir.join("both.yaml");
    write_atomic(
        &path,
        &both
            .replace("@ADMIN_PORT@", "9901")
            .replace("@PORT@", "10000"),
    );
    let (envoy_ok, _) = common::envoy::envoy_validate(&bin, &path);
    assert!(!envoy_ok, "Envoy accepted both fields");
    let out = run_cli(
        &["validate", "-c", &path.display().to_string()],
        Duration::from_secs(20),
    );
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        said.contains("common_http_protocol_options.max_requests_per_connection: only one of"),
        "{said}"
    );
}

const TYPED_H2: &str = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
"#;

/// The upstream connections `REQUESTS` sequential requests took on an HTTP/2 upstream,
/// and how many of them are still open once the proxy has settled (a connection that
/// used up its streams is closed when its last one ends): waits, bounded, for no more
/// than `open` to be left.
fn h2_connections(listen: SocketAddr, seen: &h2client::H2Counts, open: usize) -> (usize, usize) {
    use std::sync::atomic::Ordering::SeqCst;
    for _ in 0..REQUESTS {
        let r = exchange(
            listen,
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200, "{}", r.body_str());
    }
    let total = seen.total.load(SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while seen.open.load(SeqCst) > open && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    (total, seen.open.load(SeqCst))
}

/// An HTTP/2 cluster: a connection carries `max_requests_per_connection` streams, then
/// takes no new one and is closed when its streams are done (Envoy's DRAINING), each
/// counted in `upstream_cx_max_requests`, as Envoy 1.40 does.
#[test]
fn an_http2_connection_carries_max_requests_per_connection_streams_as_in_envoy() {
    let Some(bin) = envoy_or_skip(
        "an_http2_connection_carries_max_requests_per_connection_streams_as_in_envoy",
    ) else {
        return;
    };
    let common2 = TYPED_H2.replace(
        "        explicit_http_config",
        "        common_http_protocol_options: { max_requests_per_connection: 2 }\n        explicit_http_config",
    );
    let deprecated1 = format!("    max_requests_per_connection: 1\n{TYPED_H2}");
    // (name, cluster extra, (upstream connections, still open), upstream_cx_max_requests)
    let cases = [
        ("no limit", TYPED_H2.to_string(), (1, 1), 0u64),
        ("common_http_protocol_options: 2", common2, (3, 1), 2),
        (
            "the deprecated cluster field: 1",
            deprecated1,
            (REQUESTS, 0),
            REQUESTS as u64,
        ),
    ];
    let mut diffs = Vec::new();
    for (name, extra, expected, maxed) in &cases {
        let (up, seen) = h2client::h2_upstream_counted(200);
        let envoy = Envoy::start(&bin, &bootstrap(up, extra));
        let from_envoy = h2_connections(envoy.listen, &seen, expected.1);
        let envoy_maxed = envoy_stat(envoy.admin, "upstream_cx_max_requests");
        drop(envoy);
        let (up, seen) = h2client::h2_upstream_counted(200);
        let proxy = Proxy::start_with(&bootstrap(up, extra), 1);
        let from_outrigger = h2_connections(proxy.listen, &seen, expected.1);
        let our_maxed = proxy.cluster_stats("up")["cx_max_requests"]
            .as_u64()
            .unwrap_or(u64::MAX);
        drop(proxy);
        eprintln!(
            "{name}: connections (total, open) Envoy {from_envoy:?}, Outrigger {from_outrigger:?}; upstream_cx_max_requests Envoy {envoy_maxed}, Outrigger {our_maxed}"
        );
        if from_envoy != *expected || from_outrigger != *expected {
            diffs.push(format!(
                "{name}: upstream connections (total, open): Envoy {from_envoy:?}, Outrigger {from_outrigger:?}, expected {expected:?}"
            ));
        }
        if envoy_maxed != *maxed || our_maxed != *maxed {
            diffs.push(format!(
                "{name}: upstream_cx_max_requests: Envoy {envoy_maxed}, Outrigger {our_maxed}, expected {maxed}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Envoy's `cluster.up.<name>` from its admin `/stats`.
fn envoy_stat(admin: SocketAddr, name: &str) -> u64 {
    common::envoy::stat(admin, &format!("cluster.up.{name}")).unwrap_or(u64::MAX)
}

/// Natively `pool.max_requests_per_connection`, for `http1` and `http2` clusters;
/// Envoy's field on a connection manager is refused by its path.
#[test]
fn native_max_requests_per_connection_and_its_checks() {
    let up = Upstream::echo();
    let config = |addr: SocketAddr, protocol: &str| {
        proxy_config(addr).replace(
            "    connect_timeout: 1s\n",
            &format!(
                "    connect_timeout: 1s\n    protocol: {protocol}\n    pool: {{ max_requests_per_connection: 2 }}\n"
            ),
        )
    };
    let proxy = Proxy::start_with(&config(up.addr, "http1"), 1);
    assert_eq!(connections(proxy.listen, &up), 3);
    drop(proxy);
    let (h2up, seen) = h2client::h2_upstream_counted(200);
    let proxy = Proxy::start_with(&config(h2up, "http2"), 1);
    assert_eq!(h2_connections(proxy.listen, &seen, 1), (3, 1));
    assert_eq!(proxy.cluster_stats("backend")["cx_max_requests"], 2);
    drop(proxy);
    let dir = TempDir::new("pool-options");
    let hcm = bootstrap(up.addr, "").replace(
        "          stat_prefix: main\n",
        "          stat_prefix: main\n          common_http_protocol_options: { max_requests_per_connection: 3 }\n",
    );
    for (i, (text, want)) in [(
        hcm,
        "common_http_protocol_options.max_requests_per_connection: not supported by Outrigger for downstream connections".to_string(),
    )]
    .iter()
    .enumerate()
    {
        let path = dir.join(&format!("c{i}.yaml"));
        let text = text
            .replace("@ADMIN_PORT@", "9901")
            .replace("@PORT@", "10000");
        write_atomic(&path, &text);
        let out = run_cli(
            &["validate", "-c", &path.display().to_string()],
            Duration::from_secs(20),
        );
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "case {i} accepted");
        assert!(said.contains(want.as_str()), "case {i}: want `{want}` in:\n{said}");
    }
}
