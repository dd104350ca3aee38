//! What a connection sees of its worker: one config snapshot with the worker's per-core
//! state for it (cluster pools and load balancers, stats, access-log sinks).
//!
//! A connection is accepted under the worker's current `WorkerView`. Between requests
//! (HTTP/1) or streams (HTTP/2) it moves to a newer view when the update left its
//! listener's address and its filter chain unchanged, so route and cluster updates
//! apply from the next request on. An update that changes the chain (or removes its
//! listener) ends the chain's `ChainLife`: its connections are drained
//! (`runtime/chain_drain.rs`), serving what they have in flight under the view they
//! have.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::Waker;

use super::buf::BufPool;
use crate::config::{HttpConnectionManager, Snapshot, TcpProxy};
use crate::observe::access_log::LogSink;
use crate::observe::stats::{Counter, ListenerStats};
use crate::upstream::cluster::ClusterState;
use crate::upstream::Connector;

pub struct WorkerView<C: Connector> {
    pub snapshot: Arc<Snapshot>,
    /// Indexed like `snapshot.clusters`.
    pub(crate) clusters: Vec<Rc<ClusterState<C::Conn>>>,
    /// Each listener's chains arranged for selection; indexed like `snapshot.listeners`.
    pub selectors: Vec<crate::listener::select::ChainSelector>,
    /// Indexed like `snapshot.listeners`.
    pub listener_stats: Vec<Rc<ListenerStats>>,
    /// The filters' named counters, indexed like `snapshot.counters` (kept by name
    /// across reloads, like the listeners' stats).
    pub counters: Vec<Rc<Counter>>,
    /// The routes' stats (`observe::route_stats`), indexed like `snapshot.route_stats`.
    pub route_stats: Vec<Rc<crate::observe::route_stats::RouteStats>>,
    /// Indexed like `snapshot.listeners`, then by chain index (`Listener::chain`): each
    /// chain's terminal filter has its own access log.
    pub access_logs: Vec<Vec<Option<Rc<LogSink>>>>,
    pub connector: Rc<C>,
    /// Set once the worker drains: finish in-flight requests, then close.
    pub draining: Rc<Cell<bool>>,
    /// Upstream response buffers, lent per request (shared by all views of a worker).
    pub(crate) bufs: Rc<BufPool>,
    /// Test-only fault hooks (off unless set in the environment).
    pub hooks: Rc<crate::test_hooks::TestHooks>,
    /// The worker's newest view, shared by all its views.
    pub latest: Rc<RefCell<Weak<WorkerView<C>>>>,
    /// Indexed like `access_logs`: each chain's life on this worker, shared by every
    /// view in which the chain is unchanged (`runtime/chain_drain.rs`).
    pub lives: Vec<Vec<Rc<ChainLife>>>,
}

/// One filter chain's life on a worker: from the update that brings it (or changes it)
/// to the update that changes it again or removes its listener. Views that keep the
/// chain share it; a connection holds the one of the chain it was accepted on.
#[derive(Debug, Default)]
pub struct ChainLife {
    /// Set when an update changed or removed the chain: its connections close once
    /// idle (HTTP/1 after a response with `connection: close`, HTTP/2 after a GOAWAY),
    /// and whatever is left is closed at the drain timeout.
    pub closing: Cell<bool>,
}

/// Where a connection was accepted: its listener and the filter chain chosen for it
/// (indices into `snapshot.listeners` and `Listener::chain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainRef {
    pub listener: usize,
    pub chain: usize,
}

impl<C: Connector> WorkerView<C> {
    /// `dst` is one of this proxy's own listening sockets: a connection there that an
    /// original_dst cluster sent on would loop back into the proxy.
    pub fn is_own_listener(&self, dst: std::net::SocketAddr) -> bool {
        self.snapshot.listeners.iter().any(|l| {
            l.bind_to_port
                && (l.addr == dst
                    || (l.addr.port() == dst.port()
                        && l.addr.ip().is_unspecified()
                        && l.addr.is_ipv4() == dst.is_ipv4()))
        })
    }

    /// The worker's newest view and this chain's place in it, when there is a newer view
    /// that keeps the chain: the same listener (name and address) and a chain of the
    /// same configuration (the worker found it so, by fingerprint, and gave it the same
    /// `ChainLife`). `checked` remembers the newest view already found unsuitable, so a
    /// connection that cannot move checks once per update, not once per request. Costs
    /// one borrow and a pointer comparison when nothing changed (no allocation).
    pub fn newer(
        &self,
        at: ChainRef,
        checked: &mut *const WorkerView<C>,
    ) -> Option<(Rc<WorkerView<C>>, ChainRef)> {
        let latest = self.latest.borrow();
        let ptr = latest.as_ptr();
        if std::ptr::eq(ptr, self) || std::ptr::eq(ptr, *checked) {
            return None;
        }
        *checked = ptr;
        let new = latest.upgrade()?;
        let life = self.life(at)?;
        let (listener, lives) = new
            .lives
            .iter()
            .enumerate()
            .find(|(_, lives)| lives.iter().any(|l| Rc::ptr_eq(l, life)))?;
        let chain = lives.iter().position(|l| Rc::ptr_eq(l, life))?;
        Some((new, ChainRef { listener, chain }))
    }

    /// The life of the chain at `at` on this worker.
    pub fn life(&self, at: ChainRef) -> Option<&Rc<ChainLife>> {
        self.lives.get(at.listener)?.get(at.chain)
    }

    /// A connection on the chain at `at` is to close once idle: the worker drains, or
    /// an update changed or removed the chain.
    pub fn closing(&self, at: ChainRef) -> bool {
        self.draining.get() || self.life(at).is_some_and(|l| l.closing.get())
    }

    /// The HTTP connection manager ending the chain, if it ends in one.
    pub fn hcm(&self, at: ChainRef) -> Option<&HttpConnectionManager> {
        self.snapshot
            .listeners
            .get(at.listener)?
            .chain(at.chain)?
            .hcm()
    }

    /// The TCP proxy ending the chain, if it ends in one.
    pub fn tcp_proxy(&self, at: ChainRef) -> Option<&TcpProxy> {
        match &self
            .snapshot
            .listeners
            .get(at.listener)?
            .chain(at.chain)?
            .terminal
        {
            crate::config::NetworkTerminal::Tcp(t) => Some(t),
            crate::config::NetworkTerminal::Http(_) => None,
        }
    }

    /// The chain's `istio_stats` filter (HTTP or TCP), if it has one.
    pub fn istio(&self, at: ChainRef) -> Option<&crate::observe::istio::IstioStats> {
        match &self
            .snapshot
            .listeners
            .get(at.listener)?
            .chain(at.chain)?
            .terminal
        {
            crate::config::NetworkTerminal::Tcp(t) => t.istio_stats.as_deref(),
            crate::config::NetworkTerminal::Http(h) => h.istio_stats.as_deref(),
        }
    }

    /// What a stream on the chain keeps of its upstream connection: what its access log
    /// prints, and the upstream's TLS facts for an outbound Istio reporter.
    pub fn upstream_wants(&self, at: ChainRef) -> crate::observe::stream_info::UpstreamWants {
        use crate::observe::istio::Reporter;
        let log = self
            .access_log(at)
            .map(LogSink::upstream_wants)
            .unwrap_or_default();
        let istio = self
            .istio(at)
            .is_some_and(|i| i.reporter == Reporter::Source);
        crate::observe::stream_info::UpstreamWants {
            local: log.local,
            tls: log.tls || istio,
        }
    }

    /// What a stream on the chain copies of its response for the access log (HTTP/2;
    /// nothing without a log).
    pub fn response_wants(&self, at: ChainRef) -> crate::observe::stream_info::ResponseWants {
        self.access_log(at)
            .map(LogSink::response_wants)
            .unwrap_or_default()
    }

    /// The access log of the chain's terminal filter.
    pub fn access_log(&self, at: ChainRef) -> Option<&LogSink> {
        self.access_logs.get(at.listener)?.get(at.chain)?.as_deref()
    }

    pub fn listener_name(&self, at: ChainRef) -> &str {
        self.snapshot
            .listeners
            .get(at.listener)
            .map_or("", |l| l.name.as_str())
    }
}

/// Per-connection handle the worker uses to close idle keep-alive connections on drain.
#[derive(Default)]
pub struct ConnSlot {
    /// True while the connection waits for the first byte of its next request.
    pub idle: Cell<bool>,
    /// When the connection was accepted, until its first request takes it (the
    /// `accept_queue` phase, `observe::phases`).
    pub accepted: Cell<Option<std::time::Instant>>,
    /// A connection task that sleeps on more than its socket (HTTP/2: its clocks),
    /// woken when the worker drains so that it sees `WorkerView::draining`.
    drain: Cell<Option<Waker>>,
    /// The life of the chain that took the connection (none before one did).
    pub life: RefCell<Option<Rc<ChainLife>>>,
    /// Set when the connection's chain was drained and the drain timeout passed: the
    /// connection's task ends (`killed`), closing it.
    killed: Cell<bool>,
    kill: Cell<Option<Waker>>,
}

impl ConnSlot {
    /// Has `waker` woken when the worker starts draining.
    pub fn on_drain(&self, waker: &Waker) {
        let w = match self.drain.take() {
            Some(w) if w.will_wake(waker) => w,
            _ => waker.clone(),
        };
        self.drain.set(Some(w));
    }

    /// Called by the worker once it is draining.
    pub fn wake_for_drain(&self) {
        if let Some(w) = self.drain.take() {
            w.wake();
        }
    }

    /// The connection is on a chain that is closing (`ChainLife::closing`).
    pub fn on_closing_chain(&self) -> bool {
        self.life.borrow().as_ref().is_some_and(|l| l.closing.get())
    }

    /// Ends the connection's task: `killed` resolves.
    pub fn kill(&self) {
        self.killed.set(true);
        if let Some(w) = self.kill.take() {
            w.wake();
        }
    }

    /// Resolves once `kill` was called; raced against the connection's task.
    pub async fn killed(&self) {
        std::future::poll_fn(|cx| {
            if self.killed.get() {
                return std::task::Poll::Ready(());
            }
            let w = match self.kill.take() {
                Some(w) if w.will_wake(cx.waker()) => w,
                _ => cx.waker().clone(),
            };
            self.kill.set(Some(w));
            std::task::Poll::Pending
        })
        .await
    }
}

/// ext_proc's gRPC streams go over the same per-core HTTP/2 connections as proxied
/// requests to the cluster: an endpoint picked by its load balancer (counted as a
/// request of the cluster, as Envoy's gRPC client counts its streams), its multiplexed
/// connection opened on first use.
impl<C: Connector> crate::http::filter::ctx::GrpcChannels for WorkerView<C> {
    fn ready(
        &self,
        cluster: usize,
    ) -> crate::http::filter::ctx::LocalBoxFuture<'_, Option<h2::client::SendRequest<bytes::Bytes>>>
    {
        Box::pin(async move {
            let cs = self.clusters.get(cluster)?;
            let ep = cs.start_request(None)?;
            cs.h2_ready(
                ep,
                &*self.connector,
                crate::config::circuit::Priority::Default,
            )
            .await
            .ok()
            .map(|(s, _, _)| s)
        })
    }
}
