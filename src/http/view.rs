//! What a connection sees of its worker: one config snapshot with the worker's per-core
//! state for it (cluster pools and load balancers, stats, access-log sinks).
//!
//! A connection pins the `WorkerView` it was accepted under, so a config update never
//! changes the rules under a live connection.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use super::buf::BufPool;
use crate::config::{HttpConnectionManager, Snapshot, TcpProxy};
use crate::observe::access_log::LogSink;
use crate::observe::stats::ListenerStats;
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
}

/// Where a connection was accepted: its listener and the filter chain chosen for it
/// (indices into `snapshot.listeners` and `Listener::chain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainRef {
    pub listener: usize,
    pub chain: usize,
}

impl<C: Connector> WorkerView<C> {
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
}
