//! The HTTP/2 side of the connection manager: h2c with prior knowledge, detected on the
//! same port as HTTP/1.1 by the connection preface. Streams are routed by the same
//! router and proxied to HTTP/1.1 upstreams (`to_h1`), with end-to-end flow control.
//!
//! The h2 crate runs on glommio through tokio-util's futures-io compat adapter; no tokio
//! runtime exists. Each stream runs as its own task on the worker that accepted the
//! connection; the connection task drives the socket.

pub(crate) mod io;
mod stream;
mod to_h1;
mod to_h2;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::io::Io;
use super::view::WorkerView;
use crate::upstream::Connector;

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum Event<T> {
    Stream(T),
    Drain,
    Closed,
}

/// Serves an HTTP/2 connection whose first bytes (`prefix`) were already read.
pub async fn serve<D: Io + 'static, C: Connector + 'static>(
    down: D,
    prefix: Vec<u8>,
    peer: SocketAddr,
    view: Rc<WorkerView<C>>,
    listener: usize,
) {
    let l = &view.snapshot.listeners[listener];
    let s = l.http2;
    let io = io::Rewind::new(prefix, down).compat();
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(s.max_concurrent_streams)
        .initial_window_size(s.initial_stream_window_size)
        .initial_connection_window_size(s.initial_connection_window_size)
        .max_header_list_size(l.limits.max_header_bytes as u32);
    let mut conn = match builder.handshake::<_, Bytes>(io).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(peer = %peer, error = %e, "h2 handshake failed");
            return;
        }
    };
    let mut draining = false;
    loop {
        let event = if draining {
            match conn.accept().await {
                Some(r) => Event::Stream(r),
                None => Event::Closed,
            }
        } else {
            let accept = async {
                match conn.accept().await {
                    Some(r) => Event::Stream(r),
                    None => Event::Closed,
                }
            };
            let drain = async {
                while !view.draining.get() {
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                }
                Event::Drain
            };
            futures_lite::future::or(accept, drain).await
        };
        match event {
            Event::Stream(Ok((req, respond))) => {
                let v = view.clone();
                glommio::spawn_local(stream::serve(req, respond, v, listener, peer)).detach();
            }
            Event::Stream(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "h2 connection error");
                break;
            }
            Event::Drain => {
                // GOAWAY: no new streams; the ones in flight finish.
                conn.graceful_shutdown();
                draining = true;
            }
            Event::Closed => break,
        }
    }
}
