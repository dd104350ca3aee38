//! A scripted HTTP/2 upstream and the configs for the retry tests against HTTP/2
//! clusters (`tests/retries_h2.rs`, `tests/retries_h2_body.rs`): the first tries answer
//! 503, refuse the stream, reset it (after the request, or mid-body), or answer gRPC
//! UNAVAILABLE, and every stream is recorded (headers, body, whether it was reset).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::common::envoy::hcm_head;
use crate::common::*;
use crate::h2client::{self, connect, request, STEP};

/// What the scripted upstream does with the stream it is on.
#[derive(Debug, Clone, Copy)]
pub enum Act {
    /// This status, with a body naming it.
    Status(u16),
    /// 200 with `grpc-status` in a trailers-only response.
    Grpc(u32),
    /// RST_STREAM(REFUSED_STREAM) before reading anything.
    Refuse,
    /// RST_STREAM(INTERNAL_ERROR) after reading the request.
    Reset,
    /// RST_STREAM(INTERNAL_ERROR) once this many body bytes were read, mid-body.
    ResetAfter(usize),
}

/// One stream the upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// The upstream reset the stream mid-body (`Act::ResetAfter`).
    pub reset: bool,
    /// The request's trailers, when it ended with them.
    pub trailers: Option<http::HeaderMap>,
}

pub struct H2Up {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl H2Up {
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn header_of_each(&self, name: &str) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| {
                s.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            })
            .collect()
    }
}

/// An h2c upstream whose `n`th stream (0 first, over all connections) gets
/// `script(n)`. It records every stream (a refused one with no body). On its own
/// thread; it stops by itself after a minute.
pub fn h2_scripted(script: fn(usize) -> Act) -> H2Up {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let record = seen.clone();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 * 1024)
            .make()
            .expect("a glommio executor for the test upstream")
            .run(async move {
                let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let _ = tx.send(l.local_addr().expect("local addr"));
                let serve = async {
                    while let Ok(s) = l.accept().await {
                        let record = record.clone();
                        glommio::spawn_local(async move {
                            let Ok(mut conn) = h2::server::handshake(s.compat()).await else {
                                return;
                            };
                            while let Some(Ok((req, respond))) = conn.accept().await {
                                let n = {
                                    let mut seen = record.lock().unwrap();
                                    seen.push(Seen {
                                        headers: req.headers().clone(),
                                        body: Vec::new(),
                                        reset: false,
                                        trailers: None,
                                    });
                                    seen.len() - 1
                                };
                                let record = record.clone();
                                glommio::spawn_local(answer(req, respond, script(n), n, record))
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
    let addr = rx.recv_timeout(STEP).expect("the h2 upstream started");
    H2Up { addr, seen }
}

pub async fn answer(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    act: Act,
    n: usize,
    record: Arc<Mutex<Vec<Seen>>>,
) {
    if let Act::Refuse = act {
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        return;
    }
    let mut body = req.into_body();
    while let Some(Ok(c)) = body.data().await {
        let _ = body.flow_control().release_capacity(c.len());
        let mut seen = record.lock().unwrap();
        if let Some(s) = seen.get_mut(n) {
            s.body.extend_from_slice(&c);
            if let Act::ResetAfter(at) = act {
                if s.body.len() >= at {
                    s.reset = true;
                    respond.send_reset(h2::Reason::INTERNAL_ERROR);
                    return;
                }
            }
        }
    }
    let trailers = body.trailers().await.ok().flatten();
    if let Some(s) = record.lock().unwrap().get_mut(n) {
        s.trailers = trailers;
    }
    match act {
        Act::Refuse | Act::ResetAfter(_) => {}
        Act::Reset => respond.send_reset(h2::Reason::INTERNAL_ERROR),
        Act::Status(status) => {
            let resp = http::Response::builder()
                .status(status)
                .body(())
                .expect("a response");
            if let Ok(mut s) = respond.send_response(resp, false) {
                let _ = s.send_data(Bytes::from(format!("status {status}")), true);
            }
        }
        Act::Grpc(code) => {
            let resp = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .header("grpc-status", code)
                .body(())
                .expect("a response");
            let _ = respond.send_response(resp, true);
        }
    }
}

pub fn fail_first(n: usize) -> fn(usize) -> Act {
    match n {
        1 => |i| {
            if i < 1 {
                Act::Status(503)
            } else {
                Act::Status(200)
            }
        },
        _ => |i| {
            if i < 2 {
                Act::Status(503)
            } else {
                Act::Status(200)
            }
        },
    }
}

/// One listener, one route to the HTTP/2 cluster `backend` (the endpoints given) with
/// `route_extra` under the route and `vhost_extra` under the virtual host.
pub fn config(endpoints: &[SocketAddr], route_extra: &str, vhost_extra: &str) -> String {
    let eps: String = endpoints
        .iter()
        .map(|a| format!("      - address: 127.0.0.1\n        port: {}\n", a.port()))
        .collect();
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
{vhost_extra}        routes:
          - match: {{ prefix: / }}
            cluster: backend
            timeout: 5s
{route_extra}clusters:
  - name: backend
    protocol: http2
    connect_timeout: 1s
    lb_policy: round_robin
    endpoints:
{eps}"
    )
}

pub fn policy(lines: &str) -> String {
    let mut out = String::from("            retry_policy:\n");
    for l in lines.lines() {
        out.push_str("              ");
        out.push_str(l);
        out.push('\n');
    }
    out
}

pub fn stat(p: &Proxy, name: &str) -> u64 {
    p.cluster_stats("backend")[name].as_u64().unwrap_or(0)
}

/// A request from an HTTP/2 client: `(status, body)`.
pub fn h2_get(addr: SocketAddr, method: &'static str, body: &'static [u8]) -> h2client::Reply {
    h2client::run(move || async move {
        let mut client = connect(addr).await;
        let req = request(method, &format!("http://{addr}/x"))
            .body(())
            .unwrap();
        h2client::send(&mut client, req, body).await
    })
}

/// An Envoy v3 bootstrap: one route to an HTTP/2 cluster on `up` with `route_policy`
/// (a flow mapping of the route's `retry_policy`, or empty) and `vhost_extra` fields.
pub fn bootstrap(up: SocketAddr, route_policy: &str, vhost_extra: &str) -> String {
    let policy = if route_policy.is_empty() {
        String::new()
    } else {
        format!("                  retry_policy: {route_policy}\n")
    };
    let head = hcm_head("", "main");
    format!(
        r#"{head}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
{vhost_extra}              routes:
              - match: {{ prefix: / }}
                route:
                  cluster: up
                  timeout: 5s
{policy}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#,
        port = up.port()
    )
}
