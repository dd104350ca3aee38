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

pub mod ext_authz;
pub mod inspect;
pub mod original_dst;
pub mod rbac;
pub mod select;
mod server_first;
pub mod tls_inspector;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use crate::config::{CodecType, ListenerFilters, NetworkTerminal};
use crate::http::buf::ReadBuf;
use crate::http::conn;
use crate::http::h2::PREFACE;
use crate::http::io::Io;
use crate::http::view::{ChainRef, ConnSlot, WorkerView};
use crate::observe::stats::Counter;
use crate::tcp;
use crate::tls::TlsStream;
use crate::upstream::Connector;

use crate::tls::Transport;
use inspect::Detected;
use select::{ConnInfo, RAW_BUFFER};
use server_first::Race;

/// What the listener filters found.
#[derive(Default)]
struct Found {
    /// A TLS ClientHello (tls_inspector): SNI and ALPN.
    hello: Option<tls_inspector::Hello>,
    /// The http_inspector's application protocol.
    app: Option<&'static str>,
}

/// Serves one accepted connection until it closes: listener filters, filter chain
/// selection, the chain's transport socket (TLS), then the chain's terminal filter.
/// `local` is the connection's local address (the destination the client connected to).
///
/// The set-up (listener filters, chain selection, the TLS handshake) runs in memory the
/// worker lends for it (`rt::recycle`) and gives back once the connection is
/// established; each terminal filter's future is boxed when it starts. So a connection
/// holds, for its life, only the future of the protocol it speaks: an idle HTTP/1
/// connection is not sized by the handshake's, HTTP/2's or the TCP proxy's state
/// (issue 12).
pub async fn serve<D: Io + 'static, C: Connector + 'static>(
    down: D,
    local: SocketAddr,
    peer: SocketAddr,
    view: Rc<WorkerView<C>>,
    listener: usize,
    slot: Rc<ConnSlot>,
) {
    let (v, s) = (&view, &slot);
    let made = crate::rt::recycle::recycled(move || establish(down, local, peer, v, listener, s));
    // Each step's state ends before the next one's await: what the task keeps for the
    // connection's life is the protocol's box and the `cx_active` guard.
    let (next, _active) = {
        let est = made.await;
        match begin(est, (peer, local), v, s) {
            Some(b) => b,
            None => return,
        }
    };
    let run = match next {
        Begin::Terminal(t) => match t.await {
            Some(run) => run,
            None => return,
        },
        Begin::Run(run) => run,
    };
    run.await;
}

/// What runs after the set-up: the terminal filter's start (network filters, the HTTP
/// codec's choice; in lent memory), or at once a server-first TCP proxy.
enum Begin<'a, T: Future> {
    Terminal(crate::rt::recycle::Recycled<T>),
    Run(Protocol<'a>),
}

/// A step and the connection's `cx_active` guard, which outlives it.
type Next<'a, T> = (Begin<'a, T>, Active<'a>);

/// The established connection's next step.
fn begin<'a, D: Io + 'static, C: Connector + 'static>(
    est: Established<'a, D, C>,
    (peer, local): (SocketAddr, SocketAddr),
    view: &'a Rc<WorkerView<C>>,
    slot: &'a Rc<ConnSlot>,
) -> Option<Next<'a, impl Future<Output = Option<Protocol<'a>>> + 'a>> {
    match est {
        Established::Closed => None,
        Established::Chain {
            down,
            rbuf,
            h2,
            at,
            _active,
        } => {
            let t = move || terminal(down, rbuf, h2, (peer, local), view, at, slot);
            Some((Begin::Terminal(crate::rt::recycle::recycled(t)), _active))
        }
        Established::ServerFirst {
            down,
            early,
            at,
            _active,
        } => {
            let t = tcp::serve(down, &[], local, peer, view.clone(), at, Some(early));
            Some((Begin::Run(Box::pin(t)), _active))
        }
    }
}

/// A connection once a chain took it and its transport socket is up, counted in the
/// listener's `cx_active` while `_active` lives.
enum Established<'a, D: Io, C: Connector> {
    /// For the chain's terminal filter.
    Chain {
        down: Transport<D, rustls::ServerConnection>,
        rbuf: ReadBuf,
        /// What ALPN chose, over TLS: HTTP/2 or not.
        h2: Option<bool>,
        at: ChainRef,
        _active: Active<'a>,
    },
    /// The server spoke first: proxied at once with its greeting (`server_first.rs`).
    ServerFirst {
        down: D,
        early: tcp::Early<C::Conn>,
        at: ChainRef,
        _active: Active<'a>,
    },
    /// Closed: no chain took it, the listener filters or the handshake failed.
    Closed,
}

/// Listener filters, chain selection and the chain's transport socket (see `serve`).
async fn establish<'a, D: Io + 'static, C: Connector + 'static>(
    mut down: D,
    local: SocketAddr,
    peer: SocketAddr,
    view: &'a Rc<WorkerView<C>>,
    listener: usize,
    slot: &Rc<ConnSlot>,
) -> Established<'a, D, C> {
    let (Some(l), Some(selector), Some(stats)) = (
        view.snapshot.listeners.get(listener),
        view.selectors.get(listener),
        view.listener_stats.get(listener),
    ) else {
        return Established::Closed;
    };
    let mut rbuf = view.bufs.take();
    let f = &l.listener_filters;
    // The http_inspector reads only when its answer can change the choice.
    let http = f.http_inspector && selector.uses_application_protocols();
    let found = if http || f.tls_inspector {
        let deadline = (!f.timeout.is_zero()).then(|| Instant::now() + f.timeout);
        // Server-first detection, on the passthrough fallback only (`server_first.rs`).
        let probe = f.server_first_probe.and_then(|p| {
            server_first::passthrough(view, l, selector, (local, peer)).map(|x| (p, x))
        });
        let raced = match probe {
            None => Race::ClientFirst,
            Some((p, (chain, cluster))) => {
                let dst = (cluster, local);
                match server_first::race(&mut down, &mut rbuf, view, dst, p, deadline, slot).await {
                    Race::ServerFirst(early) => {
                        stats.cx_total.inc();
                        stats.cx_active.inc();
                        let _active = Active(&stats.cx_active);
                        let at = ChainRef { listener, chain };
                        *slot.life.borrow_mut() = view.life(at).cloned();
                        view.bufs.put(rbuf);
                        return Established::ServerFirst {
                            down,
                            early,
                            at,
                            _active,
                        };
                    }
                    other => other,
                }
            }
        };
        let detected = match raced {
            Race::ClientFirst => {
                listener_filters(&mut down, &mut rbuf, f, http, deadline, slot).await
            }
            Race::TimedOut => Err(TimedOut),
            Race::Ended | Race::ServerFirst(_) => return Established::Closed,
        };
        match detected {
            Ok(Some(found)) => found,
            Ok(None) => return Established::Closed,
            Err(TimedOut) => {
                stats.pre_cx_timeout.inc();
                if !f.continue_on_timeout {
                    tracing::debug!(peer = %peer, "listener filters timed out: closing");
                    return Established::Closed;
                }
                Found::default()
            }
        }
    } else {
        Found::default()
    };
    let one;
    let alpn: Vec<&str>;
    let (server_name, transport_protocol, application_protocols): (&str, &str, &[&str]) =
        match (&found.hello, found.app) {
            (Some(h), _) => {
                alpn = h.alpn.iter().map(String::as_str).collect();
                (&h.server_name, tls_inspector::TLS, &alpn)
            }
            (None, Some(p)) => {
                one = [p];
                ("", RAW_BUFFER, &one)
            }
            (None, None) => ("", RAW_BUFFER, &[]),
        };
    let info = ConnInfo {
        local,
        peer,
        server_name,
        transport_protocol,
        application_protocols,
    };
    let Some(chain) = selector.select(&info) else {
        stats.no_filter_chain_match.inc();
        tracing::debug!(
            listener = %l.name,
            peer = %peer,
            server_name,
            transport_protocol,
            "no filter chain matches: closing"
        );
        return Established::Closed;
    };
    // Envoy counts a connection (downstream_cx_total, _active) once a chain takes it.
    stats.cx_total.inc();
    stats.cx_active.inc();
    let _active = Active(&stats.cx_active);
    let at = ChainRef { listener, chain };
    // The chain's life: an update that changes the chain drains the connection.
    *slot.life.borrow_mut() = view.life(at).cloned();
    let Some(tls) = l.chain(chain).and_then(|c| c.tls.as_ref()) else {
        return Established::Chain {
            down: Transport::Plain(down),
            rbuf,
            h2: None,
            at,
            _active,
        };
    };
    // The transport socket: the handshake, bounded by the chain's idle timeout.
    let idle = l.chain(chain).map(|c| match &c.terminal {
        NetworkTerminal::Http(h) => h.idle_timeout,
        NetworkTerminal::Tcp(t) => t.idle_timeout,
    });
    down.set_read_timeout(idle);
    down.set_write_timeout(idle);
    // A chain that prefers its own TLS 1.2 order, or lists ALPN protocols, picks its
    // config by the hello's suites and protocols: read here when no tls_inspector did.
    let config = if !tls.needs_hello() {
        &tls.config
    } else {
        let read;
        let hello = match &found.hello {
            Some(h) => h,
            None => match read_hello(&mut down, &mut rbuf).await {
                Some(h) => {
                    read = h;
                    &read
                }
                // The handshake fails on what came (and counts it).
                None => tls_inspector::Hello::none(),
            },
        };
        tls.config_for(&hello.cipher_suites, hello.tls13, &hello.alpn)
    };
    let session = match rustls::ServerConnection::new(config.clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a TLS session");
            return Established::Closed;
        }
    };
    let handshake = async {
        let mut s = TlsStream::new(down, session, rbuf.data());
        s.handshake().await?;
        Ok::<_, std::io::Error>(s)
    };
    let s = match handshake.await {
        Ok(s) => s,
        Err(e) => {
            stats.ssl.failed(crate::tls::stats::failure(&e));
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            return Established::Closed;
        }
    };
    let mut s = s;
    crate::tls::stats::handshake_done(&stats.ssl, s.session());
    let info = crate::tls::TlsInfo::of(
        s.session(),
        s.session().server_name(),
        tls.local_uri_san.as_deref(),
    );
    s.set_info(info);
    let h2 = s.session().alpn_protocol().map(|p| p == b"h2");
    rbuf.consume(rbuf.len());
    Established::Chain {
        down: Transport::Tls(Box::new(s)),
        rbuf,
        h2,
        at,
        _active,
    }
}

/// Reads until the connection's first bytes hold a whole ClientHello (within the read
/// timeouts already set). `None`: it closed, timed out, or sent something else or too
/// much.
async fn read_hello<D: Io>(down: &mut D, rbuf: &mut ReadBuf) -> Option<tls_inspector::Hello> {
    loop {
        match tls_inspector::inspect(rbuf.data()) {
            tls_inspector::Detected::Tls(h) => return Some(h),
            tls_inspector::Detected::NeedMore => {}
            _ => return None,
        }
        if rbuf.is_full() && !rbuf.grow(tls_inspector::MAX_CLIENT_HELLO) {
            return None;
        }
        match rbuf.fill(down).await {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
    }
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

/// Runs the listener filters over the first bytes, until `deadline` (the listener
/// filters timeout): the tls_inspector, then (on a connection that is not TLS) the
/// http_inspector if `http`. `None`: close the connection.
async fn listener_filters<D: Io>(
    down: &mut D,
    rbuf: &mut ReadBuf,
    f: &ListenerFilters,
    http: bool,
    deadline: Option<Instant>,
    slot: &ConnSlot,
) -> Result<Option<Found>, TimedOut> {
    loop {
        let tls = if f.tls_inspector {
            tls_inspector::inspect(rbuf.data())
        } else {
            tls_inspector::Detected::NotTls
        };
        match tls {
            tls_inspector::Detected::Tls(hello) => {
                return Ok(Some(Found {
                    hello: Some(hello),
                    app: None,
                }))
            }
            tls_inspector::Detected::TooLarge => return Ok(None),
            tls_inspector::Detected::NeedMore => {}
            tls_inspector::Detected::NotTls if !http => return Ok(Some(Found::default())),
            tls_inspector::Detected::NotTls => match inspect::inspect(rbuf.data()) {
                Detected::Protocol(p) => {
                    return Ok(Some(Found {
                        hello: None,
                        app: Some(p),
                    }))
                }
                Detected::NotHttp => return Ok(Some(Found::default())),
                Detected::NeedMore => {}
            },
        }
        // Envoy closes a connection whose first line (or hello) does not fit its
        // inspect buffer.
        let max = inspect::MAX_INSPECT_BYTES.max(tls_inspector::MAX_CLIENT_HELLO);
        if rbuf.is_full() && !rbuf.grow(max) {
            return Ok(None);
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
            _ => return Ok(None),
        }
    }
}

/// A connection's protocol (the chain's terminal filter) running: the one future a
/// connection holds for its life, boxed when it starts.
type Protocol<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Runs the chain's network filters, then gives the connection to its terminal filter,
/// with the bytes read so far: that filter's future, or `None` if the connection
/// closed. `(peer, local)`: the client and the connection's (original) destination.
async fn terminal<'a, D: Io + 'static, C: Connector + 'static>(
    mut down: D,
    mut rbuf: ReadBuf,
    alpn_h2: Option<bool>,
    (peer, local): (SocketAddr, SocketAddr),
    view: &'a Rc<WorkerView<C>>,
    at: ChainRef,
    slot: &'a Rc<ConnSlot>,
) -> Option<Protocol<'a>> {
    let chain = view
        .snapshot
        .listeners
        .get(at.listener)
        .and_then(|l| l.chain(at.chain))?;
    if !chain.network_filters.is_empty() {
        let tls = down.tls_info();
        let conn = crate::rbac::Conn {
            peer: peer.ip(),
            local,
            tls: tls.as_deref(),
        };
        if !rbac::allowed(&chain.network_filters, conn, &view.counters) {
            return None;
        }
        for f in &chain.network_filters {
            if let rbac::NetworkFilter::ExtAuthz(e) = f {
                if !e.allowed(conn, peer.port(), &**view, &view.counters).await {
                    return None;
                }
            }
        }
    }
    let hcm = match &chain.terminal {
        NetworkTerminal::Tcp(_) => {
            // A TCP proxy connection is never idle between requests: drain lets it run
            // until it ends or the drain timeout.
            let prefix = rbuf.data().to_vec();
            view.bufs.put(rbuf);
            let tcp = async move {
                tcp::serve(down, &prefix, local, peer, view.clone(), at, None).await;
            };
            return Some(Box::pin(tcp));
        }
        NetworkTerminal::Http(hcm) => hcm,
    };
    down.set_read_timeout(Some(hcm.idle_timeout));
    down.set_write_timeout(Some(hcm.idle_timeout));
    let h2 = match (hcm.codec, alpn_h2) {
        // Over TLS, ALPN chose the protocol (`h2` or `http/1.1`).
        (CodecType::Auto, Some(h2)) => h2,
        (codec, _) => match codec {
            // Envoy's codec_type HTTP1: an HTTP/2 preface is a malformed HTTP/1 request
            // (400 and close, by the HTTP/1 codec).
            CodecType::Http1 => false,
            CodecType::Auto | CodecType::Http2 => {
                match (sniff_h2(&mut down, &mut rbuf, slot).await, hcm.codec) {
                    (Some(h2), CodecType::Auto) => h2,
                    (Some(true), _) => true,
                    // Envoy's codec_type HTTP2: anything but the preface closes the
                    // connection before the server sends a byte (Envoy sends nothing).
                    (Some(false), _) => {
                        tracing::debug!(peer = %peer, "not an HTTP/2 preface on an HTTP/2 codec");
                        return None;
                    }
                    (None, _) => return None,
                }
            }
        },
    };
    if h2 {
        let prefix = rbuf.data().to_vec();
        view.bufs.put(rbuf);
        // An HTTP/2 connection may rightly read nothing for long (a server-streaming
        // call): the h2 side keeps its own idle clock, counting only streamless time.
        down.set_read_timeout(None);
        let h2 = crate::http::h2::serve(down, prefix, (peer, local), view.clone(), at, slot);
        Some(Box::pin(h2))
    } else {
        let h1 = conn::serve(down, rbuf, (peer, local), view.clone(), at, slot.clone());
        Some(Box::pin(h1))
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
