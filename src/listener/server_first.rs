//! Server-first detection on captured connections (Outrigger's own; Envoy and linkerd
//! have none): a server-first protocol (a database or SMTP banner) has a client that
//! sends nothing until the server speaks, so a listener filter that waits for the
//! client's first bytes can only end by its timeout. When the connection would fall
//! back to a TCP proxy to an ORIGINAL_DST cluster (the passthrough chain), this
//! connects to the original destination once the client has been silent for the
//! listener's `server_first_probe`, while the wait goes on: if the server speaks
//! first, the connection goes to that chain at once with the upstream connection and
//! its greeting (`tcp::Early`); if the client speaks first, the upstream connection is
//! closed (unused: the server saw a connection open and close) and detection carries on.
//!
//! Runs in `listener::serve`, before the listener filters, only on listeners that set
//! `server_first_probe`. Anything but the passthrough case is left alone: there the
//! chain, and so the upstream, depends on what the client says.

use std::net::SocketAddr;
use std::time::Instant;

use futures_lite::future;
use futures_lite::io::AsyncReadExt;

use super::select::{ChainSelector, ConnInfo, RAW_BUFFER};
use crate::config::{ClusterKind, Listener, NetworkTerminal};
use crate::http::buf::ReadBuf;
use crate::http::io::{self, Io};
use crate::http::view::{ConnSlot, WorkerView};
use crate::tcp::Early;
use crate::upstream::Connector;

/// The most of a greeting read before the connection is handed over; the rest follows
/// through the tunnel.
const GREETING_BYTES: usize = 16 * 1024;

/// How the race between the client and the server ended.
pub(super) enum Race<U> {
    /// The client sent bytes (they are in the read buffer): detect as usual.
    ClientFirst,
    /// The server spoke first: proxy to it, with this connection and greeting.
    ServerFirst(Early<U>),
    /// The listener filters' timeout passed with neither speaking.
    TimedOut,
    /// The client closed or failed.
    Ended,
}

/// The fallback chain (what the connection gets if the client says nothing) when it is
/// a plain TCP proxy (no TLS, no network filters) to one ORIGINAL_DST cluster, and
/// the destination is not this proxy: `(chain, cluster)`.
pub(super) fn passthrough<C: Connector>(
    view: &WorkerView<C>,
    l: &Listener,
    selector: &ChainSelector,
    (local, peer): (SocketAddr, SocketAddr),
) -> Option<(usize, usize)> {
    let info = ConnInfo {
        local,
        peer,
        server_name: "",
        transport_protocol: RAW_BUFFER,
        application_protocols: &[],
    };
    let chain = selector.select(&info)?;
    let c = l.chain(chain)?;
    let NetworkTerminal::Tcp(t) = &c.terminal else {
        return None;
    };
    let [(Some(cluster), _)] = t.clusters.as_slice() else {
        return None;
    };
    let odst = view.clusters.get(*cluster)?.cfg.kind == ClusterKind::OriginalDst;
    let plain = c.tls.is_none() && c.network_filters.is_empty();
    (odst && plain && !view.is_own_listener(local)).then_some((chain, *cluster))
}

/// Waits for the client's first bytes until `deadline`, racing a connection to `dst`
/// opened after `probe` of silence (see the module docs).
pub(super) async fn race<D: Io, C: Connector>(
    down: &mut D,
    rbuf: &mut ReadBuf,
    view: &WorkerView<C>,
    (cluster, dst): (usize, SocketAddr),
    probe: std::time::Duration,
    deadline: Option<Instant>,
    slot: &ConnSlot,
) -> Race<C::Conn> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if left.is_some_and(|l| l.is_zero()) {
        return Race::TimedOut;
    }
    down.set_read_timeout(left);
    let client = async { Ok(rbuf.fill(down).await) };
    let server = async {
        crate::rt::sleep(probe).await;
        match speculate(view, cluster, dst).await {
            Some(early) => Err(early),
            // No connection, or a server that closed in silence: the client decides.
            None => future::pending().await,
        }
    };
    slot.idle.set(true);
    let first = future::or(client, server).await;
    slot.idle.set(false);
    match first {
        Ok(Ok(n)) if n > 0 => Race::ClientFirst,
        Ok(Err(e)) if io::is_timeout(&e) && deadline.is_some() => Race::TimedOut,
        Ok(_) => Race::Ended,
        Err(early) => Race::ServerFirst(early),
    }
}

/// Connects to the original destination and waits for its first bytes.
async fn speculate<C: Connector>(
    view: &WorkerView<C>,
    cluster: usize,
    dst: SocketAddr,
) -> Option<Early<C::Conn>> {
    let cs = view.clusters.get(cluster)?;
    let connected = view
        .connector
        .connect_to(&cs.cfg, dst, cs.cfg.connect_timeout)
        .await;
    let mut up = match connected {
        Ok(up) => up,
        Err(e) => {
            tracing::debug!(upstream = %dst, error = %e, "server-first probe: connect failed");
            return None;
        }
    };
    let mut greeting = vec![0u8; GREETING_BYTES];
    let n = up.read(&mut greeting).await.ok().filter(|n| *n > 0)?;
    greeting.truncate(n);
    tracing::debug!(upstream = %dst, bytes = n, "server-first probe: the server spoke first");
    Some(Early {
        cluster,
        up,
        greeting,
    })
}
