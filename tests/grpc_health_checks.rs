//! Active gRPC health checks through the real binary (issue 11): in-test HTTP/2 upstreams
//! (the h2 crate on a tokio runtime) answer `grpc.health.v1.Health/Check` with a status
//! the test flips; the endpoint leaves and rejoins the load-balancing set. Also the same
//! Envoy bootstrap handed to Envoy 1.40 and to Outrigger.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::envoy::hcm_head;
use common::envoy::{envoy_or_skip, Envoy};
use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// What the health service answers: a `ServingStatus`, or a gRPC error status.
const SERVING: u8 = 1;
const NOT_SERVING: u8 = 2;
/// `grpc-status: 14` (UNAVAILABLE) with no message.
const UNAVAILABLE: u8 = 100;
/// HTTP 503, not gRPC at all.
const HTTP_503: u8 = 101;
/// No answer (the stream stays open until the upstream stops).
const HANG: u8 = 102;

/// One `Check` call as the upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    authority: String,
    body: Vec<u8>,
    content_type: String,
    te: String,
    metadata: Option<String>,
    /// Every header, `name: value`, sorted.
    names: Vec<String>,
}

struct GrpcUp {
    addr: SocketAddr,
    state: Arc<AtomicU8>,
    checks: Arc<Mutex<Vec<Seen>>>,
    traffic: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl GrpcUp {
    fn new(name: &'static str, state: u8) -> GrpcUp {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let st = Arc::new(AtomicU8::new(state));
        let checks = Arc::new(Mutex::new(Vec::new()));
        let traffic = Arc::new(AtomicUsize::new(0));
        let (s, c, t) = (st.clone(), checks.clone(), traffic.clone());
        rt.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (s, c, t) = (s.clone(), c.clone(), t.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(sock).await else {
                        return;
                    };
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        let (s, c, t) = (s.clone(), c.clone(), t.clone());
                        tokio::spawn(serve(name, req, respond, s, c, t));
                    }
                });
            }
        });
        GrpcUp {
            addr,
            state: st,
            checks,
            traffic,
            _rt: rt,
        }
    }

    fn set(&self, v: u8) {
        self.state.store(v, Ordering::SeqCst);
    }

    fn checks(&self) -> Vec<Seen> {
        self.checks.lock().unwrap().clone()
    }

    fn traffic(&self) -> usize {
        self.traffic.load(Ordering::SeqCst)
    }
}

async fn serve(
    name: &'static str,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    state: Arc<AtomicU8>,
    checks: Arc<Mutex<Vec<Seen>>>,
    traffic: Arc<AtomicUsize>,
) {
    let (parts, mut body) = req.into_parts();
    let mut data = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    if parts.uri.path() != "/grpc.health.v1.Health/Check" {
        traffic.fetch_add(1, Ordering::SeqCst);
        let resp = http::Response::builder().status(200).body(()).unwrap();
        if let Ok(mut s) = respond.send_response(resp, false) {
            let _ = s.send_data(Bytes::from_static(name.as_bytes()), true);
        }
        return;
    }
    let h = |n: &str| {
        parts
            .headers
            .get(n)
            .map(|v| v.to_str().unwrap_or("").to_string())
    };
    checks.lock().unwrap().push(Seen {
        authority: parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        body: data,
        content_type: h("content-type").unwrap_or_default(),
        te: h("te").unwrap_or_default(),
        metadata: h("x-hc-token"),
        names: {
            let mut n: Vec<String> = parts
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                .collect();
            n.sort();
            n
        },
    });
    let st = state.load(Ordering::SeqCst);
    if st == HANG {
        tokio::time::sleep(Duration::from_secs(30)).await;
        return;
    }
    if st == HTTP_503 {
        let resp = http::Response::builder().status(503).body(()).unwrap();
        let _ = respond.send_response(resp, true);
        return;
    }
    let resp = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let Ok(mut s) = respond.send_response(resp, false) else {
        return;
    };
    let mut trailers = http::HeaderMap::new();
    if st == UNAVAILABLE {
        trailers.insert("grpc-status", "14".parse().unwrap());
    } else {
        // HealthCheckResponse { status } in one gRPC frame.
        let _ = s.send_data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, st]), false);
        trailers.insert("grpc-status", "0".parse().unwrap());
    }
    let _ = s.send_trailers(trailers);
}

fn config(a: SocketAddr, b: SocketAddr) -> String {
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
    protocol: http2
    endpoints:
      - {{address: 127.0.0.1, port: {}}}
      - {{address: 127.0.0.1, port: {}}}
    health_checks:
      - timeout: 1s
        interval: 100ms
        no_traffic_interval: 100ms
        unhealthy_threshold: 2
        healthy_threshold: 2
        grpc_health_check:
          service_name: shop.Cart
          authority: health.internal
          initial_metadata: [{{key: X-Hc-Token, value: t1}}]
",
        a.port(),
        b.port()
    )
}

fn flag_of(p: &Proxy, addr: SocketAddr) -> String {
    p.health_flag("backend", addr)
}

fn wait_flag(p: &Proxy, addr: SocketAddr, want: &str) {
    p.wait_health_flag("backend", addr, want, WAIT)
}

fn send(p: &Proxy, n: usize) -> Vec<u16> {
    (0..n).map(|_| get(p.listen, "x", "/work").status).collect()
}

#[test]
fn an_endpoint_that_stops_serving_leaves_the_set_and_rejoins() {
    let a = GrpcUp::new("a", SERVING);
    let b = GrpcUp::new("b", NOT_SERVING);
    let p = Proxy::start_with(&config(a.addr, b.addr), 2);
    // /ready waited for the first round.
    assert_eq!(flag_of(&p, a.addr), "healthy");
    assert_eq!(flag_of(&p, b.addr), "/failed_active_hc");
    assert!(send(&p, 10).iter().all(|&s| s == 200));
    assert_eq!((a.traffic(), b.traffic()), (10, 0));
    // The call itself: the configured authority and metadata, gRPC headers, and
    // HealthCheckRequest { service: "shop.Cart" } in one uncompressed frame.
    let seen = a.checks().first().cloned().unwrap();
    assert_eq!(seen.authority, "health.internal");
    assert_eq!(seen.content_type, "application/grpc");
    assert_eq!(seen.te, "trailers");
    assert_eq!(seen.metadata.as_deref(), Some("t1"));
    let mut want = vec![0, 0, 0, 0, 11, 0x0a, 9];
    want.extend_from_slice(b"shop.Cart");
    assert_eq!(seen.body, want);
    // b starts serving: back after healthy_threshold passes; a stops: out at once (an
    // active failure, as Envoy).
    b.set(SERVING);
    wait_flag(&p, b.addr, "healthy");
    a.set(NOT_SERVING);
    wait_flag(&p, a.addr, "/failed_active_hc");
    let before = (a.traffic(), b.traffic());
    assert!(send(&p, 10).iter().all(|&s| s == 200));
    assert_eq!((a.traffic() - before.0, b.traffic() - before.1), (0, 10));
    // A gRPC error status and a non-200 answer fail too; SERVING brings it back.
    a.set(SERVING);
    wait_flag(&p, a.addr, "healthy");
    a.set(UNAVAILABLE);
    wait_flag(&p, a.addr, "/failed_active_hc");
    a.set(SERVING);
    wait_flag(&p, a.addr, "healthy");
    a.set(HTTP_503);
    wait_flag(&p, a.addr, "/failed_active_hc");
    let s = p.cluster_stats("backend")["health_check"].clone();
    assert!(s["failure"].as_u64().unwrap() >= 4, "{s}");
    assert!(s["success"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["network_failure"], 0, "{s}");
    // Kept connections: far fewer than one per check.
    assert!(a.checks().len() > 4);
}

#[test]
fn refused_connections_and_timeouts_are_network_failures() {
    let a = GrpcUp::new("a", HANG);
    let refused = refused_addr();
    let p = Proxy::start_with(&config(a.addr, refused), 1);
    // /ready waited for both first checks (the hanging one until its 1s timeout).
    assert_eq!(flag_of(&p, a.addr), "/failed_active_hc/active_hc_timeout");
    assert_eq!(flag_of(&p, refused), "/failed_active_hc");
    // A new connection after the timeout, and the endpoint passes again.
    a.set(SERVING);
    wait_flag(&p, a.addr, "healthy");
    let s = p.cluster_stats("backend")["health_check"].clone();
    assert!(s["network_failure"].as_u64().unwrap() >= 1, "{s}");
}

/// The same bootstrap for Envoy and Outrigger.
fn bootstrap(a: SocketAddr, b: SocketAddr, c: SocketAddr) -> String {
    let ep = |a: SocketAddr| {
        format!(
            "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
            a.port()
        )
    };
    let head = hcm_head("", "main");
    format!(
        "{head}          route_config:
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: backend}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    # One healthy of three is 33%: not in panic below a 30% threshold.
    common_lb_config: {{healthy_panic_threshold: {{value: 30}}}}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    health_checks:
    - timeout: 1s
      interval: 0.1s
      no_traffic_interval: 0.1s
      unhealthy_threshold: 2
      healthy_threshold: 2
      grpc_health_check:
        service_name: shop.Cart
        initial_metadata: [{{header: {{key: x-hc-token, value: t1}}}}]
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
{}{}{}",
        ep(a),
        ep(b),
        ep(c)
    )
}

/// Envoy's text `/clusters`: the `health_flags` of each endpoint.
fn envoy_flags(admin: SocketAddr, addr: SocketAddr) -> String {
    let r = http_request(admin, "GET", "/clusters", Duration::from_secs(2)).unwrap();
    let key = format!("backend::{addr}::health_flags::");
    r.body_str()
        .lines()
        .find_map(|l| l.strip_prefix(&key).map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn the_same_grpc_check_marks_the_same_endpoints_under_envoy() {
    let Some(bin) = envoy_or_skip("the_same_grpc_check_marks_the_same_endpoints_under_envoy")
    else {
        return;
    };
    let a = GrpcUp::new("a", SERVING);
    let b = GrpcUp::new("b", NOT_SERVING);
    let c = GrpcUp::new("c", UNAVAILABLE);
    let text = bootstrap(a.addr, b.addr, c.addr);
    let envoy = Envoy::start(&bin, &text);
    let flags_of = |get: &dyn Fn(SocketAddr) -> String| [get(a.addr), get(b.addr), get(c.addr)];
    let envoy_seen = flags_of(&|x| envoy_flags(envoy.admin, x));
    let statuses: Vec<u16> = (0..10)
        .map(|_| get(envoy.listen, "x", "/work").status)
        .collect();
    let envoy_traffic = (a.traffic(), b.traffic(), c.traffic(), statuses);
    let envoy_call = a.checks().first().cloned().unwrap();
    drop(envoy);
    let p = Proxy::start(&text);
    let ours = flags_of(&|x| flag_of(&p, x));
    let statuses = send(&p, 10);
    let our_traffic = (
        a.traffic() - envoy_traffic.0,
        b.traffic() - envoy_traffic.1,
        c.traffic() - envoy_traffic.2,
        statuses,
    );
    assert_eq!(ours, envoy_seen);
    assert_eq!(
        envoy_seen,
        ["healthy", "/failed_active_hc", "/failed_active_hc"].map(String::from)
    );
    assert_eq!(our_traffic, envoy_traffic);
    // The same call: Envoy's authority (the cluster's name), headers and message.
    let ours = a
        .checks()
        .into_iter()
        .rev()
        .find(|s| s.authority == "backend")
        .unwrap();
    assert_eq!(
        (
            ours.names,
            ours.body,
            ours.content_type,
            ours.te,
            ours.metadata
        ),
        (
            envoy_call.names,
            envoy_call.body,
            envoy_call.content_type,
            envoy_call.te,
            envoy_call.metadata
        )
    );
    assert_eq!(envoy_call.authority, "backend");
}
