//! One bidirectional gRPC stream over HTTP/2 (the h2 crate on the control executor's
//! glommio socket, as `upstream/h2conn.rs` does for upstreams): length-prefixed prost
//! messages, with the management server's messages bounded in size; over TLS when the
//! ADS cluster has an upstream TLS context (its files are read when the config is, so a
//! new certificate is used from the next connection on). Control plane only.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::rt::{spawn_local, Task};
use crate::tls::client::ClientTls;
use crate::tls::stream::TlsStream;
use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use prost::Message;

/// The largest message accepted from the management server (gRPC's default receive
/// limit is 4 MiB; Envoy's xDS client sets none, so a control plane may send more).
pub const MAX_MESSAGE: usize = 16 << 20;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An open stream: requests go out on `send`, responses come in on `recv`.
pub struct Stream {
    send: SendStream<Bytes>,
    recv: Option<RecvStream>,
    response: Option<h2::client::ResponseFuture>,
    buf: BytesMut,
    _client: SendRequest<Bytes>,
    _driver: Task<()>,
}

/// Why a stream ended.
pub type Error = String;

/// The management server to connect to: an ADS cluster endpoint, with the cluster's
/// TLS when it has one.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub addr: SocketAddr,
    pub tls: Option<&'a ClientTls>,
}

impl Stream {
    /// Connects to `to` and opens `path` (a gRPC method) with `authority` and the
    /// extra `headers` (checked when the bootstrap was read).
    pub async fn open(
        to: Target<'_>,
        authority: &str,
        path: &str,
        headers: &[(String, String)],
    ) -> Result<Stream, Error> {
        let addr = to.addr;
        let started = std::time::Instant::now();
        let tcp = crate::rt::net::TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        // The TLS and HTTP/2 handshakes share the connect timeout: a server that
        // accepts but never answers must not stall the client.
        let left = CONNECT_TIMEOUT.saturating_sub(started.elapsed());
        let (client, driver) = match to.tls {
            None => h2_handshake(tcp, addr, left).await?,
            Some(tls) => {
                // gRPC over TLS asks for HTTP/2 by ALPN (as Envoy's HTTP/2 pool does
                // when the context names no protocol).
                let mut config = (*tls.config).clone();
                if config.alpn_protocols.is_empty() {
                    config.alpn_protocols = vec![b"h2".to_vec()];
                }
                let session =
                    rustls::ClientConnection::new(Arc::new(config), tls.server_name(addr))
                        .map_err(|e| format!("TLS to {addr}: {e}"))?;
                let mut t = TlsStream::new(tcp, session, &[]);
                let shake = async { Some(t.handshake().await) };
                let expire = async {
                    crate::rt::sleep(left).await;
                    None
                };
                futures_lite::future::or(shake, expire)
                    .await
                    .ok_or_else(|| format!("TLS handshake with {addr} timed out"))?
                    .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
                let left = CONNECT_TIMEOUT.saturating_sub(started.elapsed());
                h2_handshake(t, addr, left).await?
            }
        };
        let mut client = client
            .ready()
            .await
            .map_err(|e| format!("HTTP/2 with {addr}: {e}"))?;
        let mut req = http::Request::post(format!("http://{authority}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(()).map_err(|e| format!("request: {e}"))?;
        let (response, send) = client
            .send_request(req, false)
            .map_err(|e| format!("open stream: {e}"))?;
        Ok(Stream {
            send,
            recv: None,
            response: Some(response),
            buf: BytesMut::new(),
            _client: client,
            _driver: driver,
        })
    }

    /// Queues one message (h2 buffers it until the window allows).
    pub fn send<M: Message>(&mut self, m: &M) -> Result<(), Error> {
        self.send
            .send_data(crate::http::grpc_frame::encode_frame(m), false)
            .map_err(|e| format!("send: {e}"))
    }

    /// The next message; `Ok(None)` when the server ended the stream.
    pub async fn recv<M: Message + Default>(&mut self) -> Result<Option<M>, Error> {
        loop {
            if let Some(frame) = crate::http::grpc_frame::next_frame(&mut self.buf, MAX_MESSAGE)
                .map_err(|e| format!("from the management server: {e}"))?
            {
                return M::decode(frame)
                    .map(Some)
                    .map_err(|e| format!("malformed message from the management server: {e}"));
            }
            if self.recv.is_none() {
                let Some(response) = self.response.take() else {
                    return Ok(None);
                };
                let r = response.await.map_err(|e| format!("response: {e}"))?;
                if r.status() != http::StatusCode::OK {
                    return Err(format!("management server answered {}", r.status()));
                }
                if let Some(s) = grpc_status(r.headers()) {
                    return Err(s);
                }
                self.recv = Some(r.into_body());
            }
            let Some(body) = self.recv.as_mut() else {
                return Ok(None);
            };
            match body.data().await {
                Some(Ok(chunk)) => {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    if self.buf.len().saturating_add(chunk.len()) > MAX_MESSAGE + 5 {
                        return Err(format!(
                            "message from the management server over {MAX_MESSAGE} bytes"
                        ));
                    }
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(format!("stream: {e}")),
                None => {
                    let trailers = body.trailers().await.ok().flatten();
                    return match trailers.as_ref().and_then(grpc_status) {
                        Some(s) => Err(s),
                        None => Ok(None),
                    };
                }
            }
        }
    }
}

/// A non-OK `grpc-status` in headers or trailers, as text.
fn grpc_status(h: &http::HeaderMap) -> Option<String> {
    let status = h.get("grpc-status")?.to_str().ok()?;
    if status == "0" {
        return None;
    }
    let message = h
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("");
    Some(format!("grpc-status {status}: {message}"))
}

/// The HTTP/2 client handshake over `io` within `left`, and the task that drives the
/// connection.
async fn h2_handshake<T>(
    io: T,
    addr: SocketAddr,
    left: Duration,
) -> Result<(SendRequest<Bytes>, Task<()>), Error>
where
    T: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    let handshake = async {
        Some(
            h2::client::Builder::new()
                .max_frame_size(1 << 20)
                .handshake::<_, Bytes>(crate::http::io::TokioIo::new(io))
                .await,
        )
    };
    let expire = async {
        crate::rt::sleep(left).await;
        None
    };
    let (client, conn) = futures_lite::future::or(handshake, expire)
        .await
        .ok_or_else(|| format!("HTTP/2 handshake with {addr} timed out"))?
        .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
    let driver = spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!("xDS connection ended: {e}");
        }
    });
    Ok((client, driver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_taken_whole_and_bounded() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 0, 2, 7][..]);
        assert_eq!(
            crate::http::grpc_frame::next_frame(&mut b, MAX_MESSAGE).unwrap(),
            None
        );
        b.extend_from_slice(&[8, 0]);
        assert_eq!(
            crate::http::grpc_frame::next_frame(&mut b, MAX_MESSAGE)
                .unwrap()
                .unwrap()
                .as_ref(),
            &[7, 8]
        );
        assert_eq!(b.as_ref(), &[0]);
        let mut big = BytesMut::from(&[0u8, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(crate::http::grpc_frame::next_frame(&mut big, MAX_MESSAGE).is_err());
        let mut compressed = BytesMut::from(&[1u8, 0, 0, 0, 0][..]);
        assert!(crate::http::grpc_frame::next_frame(&mut compressed, MAX_MESSAGE).is_err());
    }
}
