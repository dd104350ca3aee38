//! HTTP/2 upstream connections per endpoint: when every connection to the endpoint has
//! as many streams open as its limit allows (the upstream's
//! SETTINGS_MAX_CONCURRENT_STREAMS, or the cluster's
//! `http2_protocol_options.max_concurrent_streams` when lower), a new stream opens a
//! new connection instead of queueing on a full one, as Envoy's pool does. The
//! upstream holds every response until the test lets them go, so the requests are in
//! flight together; each is sent once the upstream saw the one before (a request
//! queued on a full connection never reaches it). The same bootstrap goes to Envoy 1.40
//! and to Outrigger, and the connections the upstream saw are compared.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::envoy::{envoy_or_skip, one_cluster_bootstrap, Envoy};
use common::*;
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// An h2c upstream that advertises `max_streams` (none: h2's default, no limit), counts
/// its connections and streams, and answers every stream 200 once released.
struct H2Hold {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    streams: Arc<AtomicUsize>,
    release: Arc<AtomicBool>,
}

impl H2Hold {
    fn start(max_streams: Option<u32>) -> H2Hold {
        let connections = Arc::new(AtomicUsize::new(0));
        let streams = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let (c, s, r) = (connections.clone(), streams.clone(), release.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(128 * 1024)
                .make()
                .expect("a glommio executor for the test upstream")
                .run(async move {
                    let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                    let _ = tx.send(l.local_addr().expect("local addr"));
                    let serve = async {
                        while let Ok(sock) = l.accept().await {
                            c.fetch_add(1, Ordering::SeqCst);
                            let (s, r) = (s.clone(), r.clone());
                            glommio::spawn_local(async move {
                                let mut b = h2::server::Builder::new();
                                if let Some(n) = max_streams {
                                    b.max_concurrent_streams(n);
                                }
                                let Ok(mut conn) = b.handshake(sock.compat()).await else {
                                    return;
                                };
                                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                                    s.fetch_add(1, Ordering::SeqCst);
                                    let r = r.clone();
                                    glommio::spawn_local(async move {
                                        while !r.load(Ordering::SeqCst) {
                                            glommio::timer::sleep(Duration::from_millis(10)).await;
                                        }
                                        let resp = http::Response::new(());
                                        if let Ok(mut body) = respond.send_response(resp, false) {
                                            let _ = body.send_data(Bytes::from_static(b"ok"), true);
                                        }
                                    })
                                    .detach();
                                }
                            })
                            .detach();
                        }
                    };
                    futures_lite::future::or(serve, glommio::timer::sleep(Duration::from_secs(60)))
                        .await;
                })
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the h2 upstream started");
        H2Hold {
            addr,
            connections,
            streams,
            release,
        }
    }

    fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Sends `n` requests through `listen`, each once the upstream saw the one before, then
/// lets the responses go. Returns the streams the upstream saw while all were in
/// flight, and the connections it saw.
fn in_flight(listen: SocketAddr, up: &H2Hold, n: usize) -> (usize, usize) {
    let mut clients = Vec::new();
    for i in 0..n {
        clients.push(std::thread::spawn(move || {
            exchange(
                listen,
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            )
            .status
        }));
        if wait_until(Duration::from_secs(3), || (up.streams() > i).then_some(())).is_none() {
            break;
        }
        // The upstream's SETTINGS on a new connection reach the proxy with its first
        // stream; a moment for it to read them.
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = up.streams();
    up.release.store(true, Ordering::SeqCst);
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    (seen, up.connections())
}

fn bootstrap(up: SocketAddr, h2_options: &str, cluster_extra: &str) -> String {
    one_cluster_bootstrap(
        up,
        &format!(
            r#"{cluster_extra}    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {h2_options} }}
"#
        ),
    )
}

/// (name, the upstream's limit, `http2_protocol_options`, cluster extra, requests,
/// streams the upstream saw in flight, connections).
type Case = (
    &'static str,
    Option<u32>,
    &'static str,
    &'static str,
    usize,
    usize,
    usize,
);

#[test]
fn a_full_http2_connection_gets_a_new_one_as_in_envoy() {
    let Some(bin) = envoy_or_skip("a_full_http2_connection_gets_a_new_one_as_in_envoy") else {
        return;
    };
    let cases: [Case; 3] = [
        ("upstream advertises 1", Some(1), "{}", "", 3, 3, 3),
        (
            "cluster max_concurrent_streams 2",
            None,
            "{ max_concurrent_streams: 2 }",
            "",
            4,
            4,
            2,
        ),
        (
            "max_connections 1: the second request waits",
            Some(1),
            "{}",
            "    circuit_breakers: { thresholds: [ { max_connections: 1 } ] }\n",
            2,
            1,
            1,
        ),
    ];
    let mut diffs = Vec::new();
    for (name, limit, h2, extra, n, streams, conns) in cases {
        let up = H2Hold::start(limit);
        let envoy = Envoy::start(&bin, &bootstrap(up.addr, h2, extra));
        let from_envoy = in_flight(envoy.listen, &up, n);
        drop(envoy);
        let up = H2Hold::start(limit);
        let proxy = Proxy::start_with(&bootstrap(up.addr, h2, extra), 1);
        let from_outrigger = in_flight(proxy.listen, &up, n);
        drop(proxy);
        eprintln!("{name}: (streams in flight, connections) Envoy {from_envoy:?}, Outrigger {from_outrigger:?}");
        let want = (streams, conns);
        if from_envoy != want || from_outrigger != want {
            diffs.push(format!(
                "{name}: Envoy {from_envoy:?}, Outrigger {from_outrigger:?}, expected {want:?}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Natively `pool.max_concurrent_streams` on an `http2` cluster; refused on `http1`.
#[test]
fn native_max_concurrent_streams_and_its_checks() {
    let up = H2Hold::start(None);
    let config = |protocol: &str, n: u32| {
        proxy_config(up.addr).replace(
            "    connect_timeout: 1s\n",
            &format!(
                "    connect_timeout: 1s\n    protocol: {protocol}\n    pool: {{ max_concurrent_streams: {n} }}\n"
            ),
        )
    };
    let proxy = Proxy::start_with(&config("http2", 1), 1);
    assert_eq!(in_flight(proxy.listen, &up, 3), (3, 3));
    drop(proxy);
    let dir = TempDir::new("h2-pool");
    for (i, (text, want)) in [
        (config("http1", 2), "clusters[0].pool.max_concurrent_streams: is for `http2` and `downstream` clusters only"),
        (config("http2", 0), "clusters[0].pool.max_concurrent_streams: must be between 1 and 2147483647"),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(&format!("c{i}.yaml"));
        write_atomic(
            &path,
            &text.replace("@ADMIN_PORT@", "9901").replace("@PORT@", "10000"),
        );
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
        assert!(said.contains(want), "case {i}: want `{want}` in:\n{said}");
    }
}

/// A route at `priority: HIGH` gets its own HTTP/2 connections to the cluster, as in
/// Envoy (a pool per host and priority): `/x`, `/hi/x`, `/x`, `/hi/x` one after
/// another make two upstream connections, one per priority, with each proxy.
#[test]
fn each_priority_has_its_own_http2_connections_as_in_envoy() {
    let Some(bin) = envoy_or_skip("each_priority_has_its_own_http2_connections_as_in_envoy") else {
        return;
    };
    let text = |up: SocketAddr| {
        bootstrap(up, "{}", "").replacen(
            "              - match: { prefix: / }\n",
            "              - match: { prefix: /hi }\n                route: { cluster: up, priority: HIGH }\n              - match: { prefix: / }\n",
            1,
        )
    };
    let run = |listen: SocketAddr, up: &H2Hold| -> (Vec<u16>, usize) {
        up.release.store(true, Ordering::SeqCst);
        let statuses = ["/x", "/hi/x", "/x", "/hi/x"]
            .iter()
            .map(|p| {
                exchange(
                    listen,
                    &format!("GET {p} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
                )
                .status
            })
            .collect();
        (statuses, up.connections())
    };
    let up = H2Hold::start(None);
    let envoy = Envoy::start(&bin, &text(up.addr));
    let from_envoy = run(envoy.listen, &up);
    drop(envoy);
    let up = H2Hold::start(None);
    let proxy = Proxy::start_with(&text(up.addr), 1);
    let ours = run(proxy.listen, &up);
    assert_eq!(ours, from_envoy, "Outrigger, then Envoy");
    assert_eq!(ours, (vec![200; 4], 2), "two connections, one per priority");
}
