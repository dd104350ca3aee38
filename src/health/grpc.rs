//! The gRPC health check of one endpoint (Envoy's `GrpcHealthCheckerImpl`): a
//! `grpc.health.v1.Health/Check` call over HTTP/2 (h2c, or TLS when the cluster has it;
//! the cluster's TLS settings give the ALPN), on a connection kept between checks
//! (`reuse_connection`). Healthy only on HTTP 200 with a gRPC content type, one
//! `HealthCheckResponse` saying `SERVING` and `grpc-status: 0`; anything else the
//! upstream answers is an active failure, a reset stream or a lost connection a network
//! failure. Runs on the control executor; the caller bounds each check by the check's
//! `timeout` and drops the connection when it runs out.

use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::SendRequest;

use super::session::Outcome;
use crate::config::{Cluster, GrpcCheck, HealthCheck};
use crate::http::grpc_frame;
use crate::rt::Task;
use crate::upstream::{Connector, TcpConnector};

/// Most response bytes read (a health response is a few bytes).
const MAX_BODY: usize = 64 * 1024;

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

#[derive(Default)]
pub(super) struct GrpcProbe {
    conn: Option<Live>,
}

/// A kept HTTP/2 connection: its handle and its driver (dropped with it).
struct Live {
    send: SendRequest<Bytes>,
    _driver: Task<()>,
}

impl GrpcProbe {
    /// Forgets the connection (after a timeout cut a check short).
    pub fn reset(&mut self) {
        self.conn = None;
    }

    pub async fn check(
        &mut self,
        cluster: &Cluster,
        addr: SocketAddr,
        hc: &HealthCheck,
        c: &GrpcCheck,
    ) -> Outcome {
        let mut live = match self.conn.take() {
            Some(l) => Some(l),
            None => match connect(cluster, addr, hc).await {
                Some(l) => Some(l),
                None => return Outcome::Network,
            },
        };
        // A kept connection the upstream went away from (GOAWAY, close) is replaced once.
        let send = match live.as_ref().map(|l| l.send.clone().ready()) {
            Some(ready) => match ready.await {
                Ok(s) => s,
                Err(_) => {
                    live = connect(cluster, addr, hc).await;
                    let Some(l) = &live else {
                        return Outcome::Network;
                    };
                    match l.send.clone().ready().await {
                        Ok(s) => s,
                        Err(_) => return Outcome::Network,
                    }
                }
            },
            None => return Outcome::Network,
        };
        let outcome = call(send, cluster, addr, hc, c).await;
        if hc.reuse_connection && outcome != Outcome::Network {
            self.conn = live;
        }
        outcome
    }
}

/// A new HTTP/2 connection to the endpoint, its driver running on the control executor.
async fn connect(cluster: &Cluster, addr: SocketAddr, hc: &HealthCheck) -> Option<Live> {
    let io = match TcpConnector.connect_to(cluster, addr, hc.timeout).await {
        Ok(io) => io,
        Err(e) => {
            tracing::debug!(upstream = %addr, error = %e, "health check connect failed");
            return None;
        }
    };
    let (send, conn) = match h2::client::handshake(crate::http::io::TokioIo::new(io)).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(upstream = %addr, error = %e, "health check h2 handshake failed");
            return None;
        }
    };
    let driver = crate::rt::spawn_local(async move {
        // The driver reads the upstream's bytes: a panic in it ends this connection only.
        let _ = crate::contain::contain(async {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %addr, error = %e, "health check h2 connection ended");
            }
        })
        .await;
    });
    Some(Live {
        send,
        _driver: driver,
    })
}

/// One `Check` call on a ready connection.
async fn call(
    mut send: SendRequest<Bytes>,
    cluster: &Cluster,
    addr: SocketAddr,
    hc: &HealthCheck,
    c: &GrpcCheck,
) -> Outcome {
    let authority = c.authority.as_deref().unwrap_or(&cluster.name);
    let scheme = if cluster.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!(
            "{scheme}://{authority}/grpc.health.v1.Health/Check"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        // Envoy's headers: its health-check user agent and the check's timeout.
        .header("user-agent", "Envoy/HC")
        .header(
            "grpc-timeout",
            crate::upstream::grpc_call::grpc_timeout(hc.timeout),
        );
    for (k, v) in &c.initial_metadata {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = match req.body(()) {
        Ok(r) => r,
        Err(e) => {
            // The config checked names and values; an authority no URI takes lands here.
            tracing::debug!(upstream = %addr, error = %e, "health check request not built");
            return Outcome::Active { retriable: false };
        }
    };
    let (response, mut stream) = match send.send_request(req, false) {
        Ok(x) => x,
        Err(_) => return Outcome::Network,
    };
    if stream
        .send_data(request_frame(&c.service_name), true)
        .is_err()
    {
        return Outcome::Network;
    }
    let response = match response.await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(upstream = %addr, error = %e, "health check stream reset");
            return Outcome::Network;
        }
    };
    let grpc_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if response.status() != http::StatusCode::OK || !grpc_type {
        tracing::debug!(upstream = %addr, status = %response.status(), "health check: not a gRPC response");
        return Outcome::Active { retriable: false };
    }
    let mut body = response.into_body();
    if body.is_end_stream() {
        // Trailers-only: an error status, and no response message either way.
        return Outcome::Active { retriable: false };
    }
    let mut buf = Vec::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            return Outcome::Network;
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        if buf.len() + chunk.len() > MAX_BODY {
            return Outcome::Active { retriable: false };
        }
        buf.extend_from_slice(&chunk);
    }
    let trailers = match body.trailers().await {
        Ok(t) => t,
        Err(_) => return Outcome::Network,
    };
    let ok = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .is_some_and(|v| v.as_bytes() == b"0");
    if ok && serving(&buf) {
        Outcome::Success
    } else {
        tracing::debug!(upstream = %addr, grpc_ok = ok, "health check: not SERVING");
        Outcome::Active { retriable: false }
    }
}

/// The gRPC message frame of `HealthCheckRequest { service }` (field 1, a string; left
/// out when empty, as protobuf does).
fn request_frame(service: &str) -> Bytes {
    let mut msg = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        msg.push(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(grpc_frame::PREFIX + msg.len());
    grpc_frame::put_prefix(msg.len(), &mut frame);
    frame.extend_from_slice(&msg);
    Bytes::from(frame)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Whether the body is exactly one uncompressed gRPC message, a `HealthCheckResponse`
/// whose `status` is `SERVING` (as Envoy, more than one message is a failure).
fn serving(body: &[u8]) -> bool {
    grpc_frame::one_message(body).and_then(response_status) == Some(SERVING)
}

/// `HealthCheckResponse.status` (field 1, a varint; 0 when absent, the last one wins),
/// other fields skipped; `None` when the message does not parse.
fn response_status(mut msg: &[u8]) -> Option<u64> {
    let mut status = 0;
    while !msg.is_empty() {
        let key = varint(&mut msg)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = varint(&mut msg)?,
            (_, 0) => {
                varint(&mut msg)?;
            }
            (_, 1) => msg = msg.get(8..)?,
            (_, 2) => {
                let n = usize::try_from(varint(&mut msg)?).ok()?;
                msg = msg.get(n..)?;
            }
            (_, 5) => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{request_frame, response_status, serving};

    #[test]
    fn request_frames() {
        assert_eq!(&request_frame("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &request_frame("a.B")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b'a', b'.', b'B']
        );
    }

    #[test]
    fn responses() {
        assert!(serving(&[0, 0, 0, 0, 2, 0x08, 1]));
        // NOT_SERVING, UNKNOWN (empty message), compressed, two messages, truncated.
        assert!(!serving(&[0, 0, 0, 0, 2, 0x08, 2]));
        assert!(!serving(&[0, 0, 0, 0, 0]));
        assert!(!serving(&[1, 0, 0, 0, 2, 0x08, 1]));
        assert!(!serving(&[0, 0, 0, 0, 2, 0x08, 1, 0, 0, 0, 0, 2, 0x08, 1]));
        assert!(!serving(&[0, 0, 0, 0, 2, 0x08]));
        assert!(!serving(&[]));
        // Unknown fields are skipped; bad wire types and overlong varints do not parse.
        assert_eq!(response_status(&[0x12, 1, 0xff, 0x08, 1]), Some(1));
        assert_eq!(response_status(&[0x0b]), None);
        assert_eq!(
            response_status(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }
}
