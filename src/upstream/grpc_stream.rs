//! One bidirectional gRPC stream on a worker's per-core HTTP/2 upstream connection
//! (`h2conn.rs`): length-prefixed prost messages both ways, as `xds/grpc.rs` frames
//! them on the control executor. A filter that talks to a service for each request
//! (ext_proc) opens one per request on the multiplexed connection to the service's
//! cluster: no thread, no lock and no connection of its own. Dropping the stream before
//! both sides ended resets it (`CANCEL`), which is how an abandoned call ends.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::{Bytes, BytesMut};
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use prost::Message;

/// The largest message accepted from the service (gRPC's default receive limit).
pub const MAX_MESSAGE: usize = 4 << 20;

/// Why a stream failed, as text for the debug log.
pub type Error = String;

/// An open call: requests go out on `send`, responses come in through `recv`.
pub struct GrpcStream {
    send: SendStream<Bytes>,
    response: Option<ResponseFuture>,
    recv: Option<RecvStream>,
    buf: BytesMut,
    /// The request side was ended (`close_send`).
    closed: bool,
}

/// A finished call: `Ok(None)` from `recv` with the gRPC status the service ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub grpc_status: u32,
}

impl GrpcStream {
    /// Opens `path` (`/package.Service/Method`) with `authority` on a ready connection.
    /// `timeout` becomes the call's `grpc-timeout` (Envoy sends the grpc_service's).
    pub fn open(
        send: &mut SendRequest<Bytes>,
        authority: &str,
        path: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<GrpcStream, Error> {
        let mut req = http::Request::post(format!("http://{authority}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(t) = timeout {
            req = req.header("grpc-timeout", format!("{}m", t.as_millis().max(1)));
        }
        let req = req.body(()).map_err(|e| format!("request: {e}"))?;
        let (response, stream) = send
            .send_request(req, false)
            .map_err(|e| format!("open stream: {e}"))?;
        Ok(GrpcStream {
            send: stream,
            response: Some(response),
            recv: None,
            buf: BytesMut::new(),
            closed: false,
        })
    }

    /// Queues one message (h2 buffers it until the window allows).
    pub fn send<M: Message>(&mut self, m: &M) -> Result<(), Error> {
        self.send
            .send_data(crate::http::grpc_frame::encode_frame(m), false)
            .map_err(|e| format!("send: {e}"))
    }

    /// Ends the request side (an empty DATA frame with END_STREAM), once.
    pub fn close_send(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.send.send_data(Bytes::new(), true);
        }
    }

    /// The next message; `Err(Ended)` when the service ended the call (its status:
    /// 0 is a clean close), `Err` text for a reset, a protocol error or a bad message.
    pub async fn recv<M: Message + Default>(&mut self) -> Result<M, Result<Ended, Error>> {
        loop {
            if let Some(frame) =
                crate::http::grpc_frame::next_frame(&mut self.buf, MAX_MESSAGE).map_err(Err)?
            {
                return M::decode(frame).map_err(|e| Err(format!("malformed message: {e}")));
            }
            if self.recv.is_none() {
                let Some(response) = self.response.take() else {
                    return Err(Err("stream already ended".into()));
                };
                let r = response.await.map_err(|e| Err(format!("response: {e}")))?;
                if r.status() != http::StatusCode::OK {
                    return Err(Err(format!("service answered HTTP {}", r.status())));
                }
                if let Some(s) = grpc_status(r.headers()) {
                    // Trailers-only: the call ended at once.
                    return Err(Ok(Ended { grpc_status: s }));
                }
                self.recv = Some(r.into_body());
            }
            let Some(body) = self.recv.as_mut() else {
                return Err(Err("stream already ended".into()));
            };
            match body.data().await {
                Some(Ok(chunk)) => {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    if self.buf.len().saturating_add(chunk.len()) > MAX_MESSAGE + 5 {
                        return Err(Err(format!("message over {MAX_MESSAGE} bytes")));
                    }
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(Err(format!("stream: {e}"))),
                None => {
                    let trailers = body.trailers().await.ok().flatten();
                    let s = trailers.as_ref().and_then(grpc_status).unwrap_or(2);
                    return Err(Ok(Ended { grpc_status: s }));
                }
            }
        }
    }
}

/// The `grpc-status` in headers or trailers.
fn grpc_status(h: &http::HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}
