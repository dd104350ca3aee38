//! Per-core HTTP/2 upstream connections: one multiplexed connection per endpoint per
//! core, opened on first use and replaced when it fails. Many downstream streams share
//! it; the h2 connection driver runs as its own task on the worker.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use h2::client::SendRequest;

use super::Connector;
use crate::tls::TlsInfo;

/// What a stream's record may keep of its shared connection: the local address and
/// the TLS facts.
pub(crate) type Facts = (Option<SocketAddr>, Option<Rc<TlsInfo>>);

/// Flow-control windows the proxy grants its HTTP/2 upstreams: how much response data
/// may be in flight per stream and per connection before the proxy has passed it on.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

pub(crate) struct H2Conns {
    conns: RefCell<Vec<Option<Live>>>,
}

/// A live connection: the handle streams are opened on, and the connection's local
/// address (`%UPSTREAM_LOCAL_ADDRESS%`). The socket belongs to the h2 driver once the
/// handshake starts, so the address is read when the connection opens: one
/// `getsockname` per HTTP/2 connection, which many requests share, never per request.
/// Its TLS facts likewise (a TLS cluster's connection; shared, not copied, per request).
#[derive(Clone)]
struct Live {
    send: SendRequest<Bytes>,
    local: Option<SocketAddr>,
    tls: Option<Rc<TlsInfo>>,
}

/// `ready`'s answer: a handle ready for a new stream, the connection's local address,
/// whether the connection was opened for it, and whether that went past the cluster's
/// `max_connections`.
pub(crate) struct Ready {
    pub send: SendRequest<Bytes>,
    pub local: Option<SocketAddr>,
    pub tls: Option<Rc<TlsInfo>>,
    pub opened: bool,
    pub over: bool,
}

impl H2Conns {
    pub fn new(endpoints: usize) -> Self {
        H2Conns {
            conns: RefCell::new(vec![None; endpoints]),
        }
    }

    /// Shares `other`'s connection to its endpoint `from` as this one's `to`.
    pub fn adopt(&self, other: &H2Conns, from: usize, to: usize) {
        let c = other.conns.borrow().get(from).cloned().flatten();
        if let Some(slot) = self.conns.borrow_mut().get_mut(to) {
            *slot = c;
        }
    }

    /// A handle ready for a new stream to endpoint `ep`, connecting if there is no live
    /// connection. `Ready::over`: the new connection went past the cluster's
    /// `max_connections` (opened anyway: as in Envoy, a pool with no connection always
    /// gets one); `Err` is a connect or handshake failure.
    pub async fn ready<C: Connector>(
        &self,
        ep: usize,
        connector: &C,
        cluster: &crate::config::Cluster,
        addr: SocketAddr,
    ) -> std::io::Result<Ready>
    where
        C::Conn: 'static,
    {
        let existing = self.conns.borrow().get(ep).cloned().flatten();
        if let Some(Live { send, local, tls }) = existing {
            if let Ok(send) = send.ready().await {
                return Ok(Ready {
                    send,
                    local,
                    tls,
                    opened: false,
                    over: false,
                });
            }
            // The connection is gone (GOAWAY, reset): forget it and open another.
            if let Some(slot) = self.conns.borrow_mut().get_mut(ep) {
                *slot = None;
            }
        }
        // The request is pending while the connection is made (for HTTP/2 the only time
        // `max_pending_requests` comes into play, as in Envoy).
        let Some(_pending) = cluster.breakers.try_pending() else {
            return Err(std::io::Error::other(PendingOverflow));
        };
        // The connection's `max_connections` slot, held by its driver task below.
        let breakers = cluster.breakers.clone();
        let over = !breakers.open_cx();
        if over {
            breakers.force_cx();
        }
        let slot = OpenCx(breakers);
        let io = connector
            .connect_to(cluster, addr, cluster.connect_timeout)
            .await?;
        let local = crate::http::io::Io::local_addr(&io);
        let tls = crate::http::io::Io::tls_info(&io);
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        let (send, conn) = builder
            .handshake::<_, Bytes>(crate::http::io::TokioIo::new(io))
            .await
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e))?;
        crate::rt::spawn_local(async move {
            let _slot = slot;
            // The driver reads the upstream's bytes: a panic in it must end this
            // connection only (its streams then fail as resets), never the worker.
            let driven = crate::contain::contain(async {
                if let Err(e) = conn.await {
                    tracing::debug!(upstream = %addr, error = %e, "upstream h2 connection ended");
                }
            })
            .await;
            if let Err(panic) = driven {
                tracing::error!(upstream = %addr, panic = %panic, "upstream HTTP/2 connection driver panicked: connection closed");
            }
        })
        .detach();
        if let Some(slot) = self.conns.borrow_mut().get_mut(ep) {
            *slot = Some(Live {
                send: send.clone(),
                local,
                tls: tls.clone(),
            });
        }
        let send = send
            .ready()
            .await
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e))?;
        Ok(Ready {
            send,
            local,
            tls,
            opened: true,
            over,
        })
    }
}

/// `ready`'s error when `max_pending_requests` refused the request (503 UO).
#[derive(Debug)]
pub(crate) struct PendingOverflow;

impl std::fmt::Display for PendingOverflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("max_pending_requests reached")
    }
}

impl std::error::Error for PendingOverflow {}

impl PendingOverflow {
    pub fn is(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<PendingOverflow>())
    }
}

/// The `max_connections` slot of an HTTP/2 connection, given back when its driver task
/// ends (or the connect fails).
struct OpenCx(std::sync::Arc<crate::config::circuit::Breakers>);

impl Drop for OpenCx {
    fn drop(&mut self) {
        self.0.close_cx();
    }
}
