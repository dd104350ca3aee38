//! The listener layer: what happens to an accepted connection before any protocol runs.
//!
//! ```text
//! accept (runtime::worker) ─► listener filters (http_inspector: read the first bytes)
//!   ─► choose a filter chain (select: destination, server name, transport and
//!      application protocol, source) ─► no chain: close, count no_filter_chain_match
//!   ─► the chain's terminal network filter:
//!        HTTP connection manager ─► codec (auto: sniff the HTTP/2 preface)
//!            ─► http::conn (HTTP/1) or http::h2 (HTTP/2)
//!        TCP proxy ─► tcp (the bytes already read go first)
//! ```
//!
//! Bytes a listener filter reads are not lost: they stay in the connection's read
//! buffer, which the terminal filter takes over. A new listener filter goes in
//! `listener_filters` below (and a field in `config::ListenerFilters`); a new network
//! filter goes between the chosen chain and its terminal in `terminal`.

pub mod inspect;
pub mod select;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use crate::config::{CodecType, ListenerFilters, NetworkTerminal};
use crate::http::buf::ReadBuf;
use crate::http::conn::{self, READ_BUF_BYTES};
use crate::http::h2::PREFACE;
use crate::http::io::Io;
use crate::http::view::{ChainRef, ConnSlot, WorkerView};
use crate::observe::stats::Counter;
use crate::tcp;
use crate::upstream::Connector;

use inspect::Detected;
use select::{ConnInfo, RAW_BUFFER};

/// How the listener filters ended.
enum Filtered {
    /// Carry on, with the application protocol if one was detected.
    Continue(Option<&'static str>),
    /// The connection is done (closed by the peer, timed out, or refused).
    Close,
}

/// Serves one accepted connection until it closes: listener filters, filter chain
/// selection, then the chain's terminal filter. `local` is the connection's local
/// address (the destination the client connected to).
pub async fn serve<D: Io + 'static, C: Connector + 'static>(
    mut down: D,
    local: SocketAddr,
    peer: SocketAddr,
    view: Rc<WorkerView<C>>,
    listener: usize,
    slot: Rc<ConnSlot>,
) {
    let (Some(l), Some(selector), Some(stats)) = (
        view.snapshot.listeners.get(listener),
        view.selectors.get(listener),
        view.listener_stats.get(listener),
    ) else {
        return;
    };
    let mut rbuf = ReadBuf::new(READ_BUF_BYTES);
    // The http_inspector reads only when its answer can change the choice.
    let inspect = l.listener_filters.http_inspector && selector.uses_application_protocols();
    let application_protocol = if inspect {
        match listener_filters(&mut down, &mut rbuf, &l.listener_filters, &slot).await {
            Ok(Filtered::Continue(p)) => p,
            Ok(Filtered::Close) => return,
            Err(TimedOut) => {
                stats.pre_cx_timeout.inc();
                if !l.listener_filters.continue_on_timeout {
                    tracing::debug!(peer = %peer, "listener filters timed out: closing");
                    return;
                }
                None
            }
        }
    } else {
        None
    };
    let info = ConnInfo {
        local,
        peer,
        server_name: "",
        transport_protocol: RAW_BUFFER,
        application_protocol,
    };
    let Some(chain) = selector.select(&info) else {
        stats.no_filter_chain_match.inc();
        tracing::debug!(
            listener = %l.name,
            peer = %peer,
            application_protocol = application_protocol.unwrap_or(""),
            "no filter chain matches: closing"
        );
        return;
    };
    // Envoy counts a connection (downstream_cx_total, _active) once a chain takes it.
    stats.cx_total.inc();
    stats.cx_active.inc();
    let _active = Active(&stats.cx_active);
    let at = ChainRef { listener, chain };
    terminal(down, rbuf, peer, view.clone(), at, slot).await;
}

/// Takes a connection out of `cx_active` however it ends (a panic included: the
/// connection's future is dropped).
struct Active<'a>(&'a Counter);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The listener filter timeout passed.
struct TimedOut;

/// Runs the listener filters (today the http_inspector) over the first bytes, within
/// the listener filters timeout.
async fn listener_filters<D: Io>(
    down: &mut D,
    rbuf: &mut ReadBuf,
    f: &ListenerFilters,
    slot: &ConnSlot,
) -> Result<Filtered, TimedOut> {
    let deadline = (!f.timeout.is_zero()).then(|| Instant::now() + f.timeout);
    loop {
        match inspect::inspect(rbuf.data()) {
            Detected::Protocol(p) => return Ok(Filtered::Continue(Some(p))),
            Detected::NotHttp => return Ok(Filtered::Continue(None)),
            Detected::NeedMore => {}
        }
        // Envoy closes a connection whose first line does not fit its inspect buffer.
        if rbuf.is_full() && !rbuf.grow(inspect::MAX_INSPECT_BYTES) {
            return Ok(Filtered::Close);
        }
        let left = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(TimedOut);
                }
                Some(left)
            }
            None => None,
        };
        down.set_read_timeout(left);
        slot.idle.set(rbuf.is_empty());
        let read = rbuf.fill(down).await;
        slot.idle.set(false);
        match read {
            Ok(n) if n > 0 => {}
            Err(e) if crate::http::io::is_timeout(&e) && deadline.is_some() => {
                return Err(TimedOut)
            }
            _ => return Ok(Filtered::Close),
        }
    }
}

/// Hands the connection to the chain's terminal filter, with the bytes read so far.
async fn terminal<D: Io + 'static, C: Connector + 'static>(
    mut down: D,
    mut rbuf: ReadBuf,
    peer: SocketAddr,
    view: Rc<WorkerView<C>>,
    at: ChainRef,
    slot: Rc<ConnSlot>,
) {
    let Some(chain) = view
        .snapshot
        .listeners
        .get(at.listener)
        .and_then(|l| l.chain(at.chain))
    else {
        return;
    };
    let hcm = match &chain.terminal {
        NetworkTerminal::Tcp(_) => {
            // A TCP proxy connection is never idle between requests: drain lets it run
            // until it ends or the drain timeout.
            tcp::serve(down, rbuf.data(), peer, view.clone(), at).await;
            return;
        }
        NetworkTerminal::Http(hcm) => hcm,
    };
    down.set_read_timeout(Some(hcm.idle_timeout));
    down.set_write_timeout(Some(hcm.idle_timeout));
    let h2 = match hcm.codec {
        // Envoy's codec_type HTTP1: an HTTP/2 preface is a malformed HTTP/1 request
        // (400 and close, by the HTTP/1 codec).
        CodecType::Http1 => false,
        CodecType::Auto | CodecType::Http2 => {
            match (sniff_h2(&mut down, &mut rbuf, &slot).await, hcm.codec) {
                (Some(h2), CodecType::Auto) => h2,
                (Some(true), _) => true,
                // Envoy's codec_type HTTP2: anything but the preface closes the
                // connection before the server sends a byte (Envoy sends nothing).
                (Some(false), _) => {
                    tracing::debug!(peer = %peer, "not an HTTP/2 preface on an HTTP/2 codec");
                    return;
                }
                (None, _) => return,
            }
        }
    };
    if h2 {
        let prefix = rbuf.data().to_vec();
        drop(rbuf);
        // An HTTP/2 connection may rightly read nothing for long (a server-streaming
        // call): the h2 side keeps its own idle clock, counting only streamless time.
        down.set_read_timeout(None);
        crate::http::h2::serve(down, prefix, peer, view.clone(), at).await;
    } else {
        conn::serve(down, rbuf, peer, view.clone(), at, slot).await;
    }
}

/// Codec AUTO: HTTP/2 with prior knowledge starts with the connection preface; anything
/// else is HTTP/1. Reads just enough to tell (nothing more if a listener filter already
/// read enough). `None`: the connection ended first.
async fn sniff_h2<D: Io>(down: &mut D, rbuf: &mut ReadBuf, slot: &ConnSlot) -> Option<bool> {
    loop {
        let d = rbuf.data();
        if d.len() >= PREFACE.len() {
            return Some(d.starts_with(PREFACE));
        }
        if !PREFACE.starts_with(d) {
            return Some(false);
        }
        slot.idle.set(d.is_empty());
        let read = rbuf.fill(down).await;
        slot.idle.set(false);
        if !matches!(read, Ok(n) if n > 0) {
            return None;
        }
    }
}
