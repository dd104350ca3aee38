//! A worker executor: pinned to one core, owns its listeners' accept loops, every
//! connection it accepts, and all per-core state (pools, load balancers, stats).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rt::channel::shared::{SharedReceiver, SharedSender};
use crate::rt::net::TcpListener;
use crate::rt::{spawn_local, Task};

use crate::alarm::Alarm;
use crate::config::{NetworkTerminal, Snapshot};
use crate::contain::contain;
use crate::health::HealthFlags;
use crate::http::buf::BufPool;
use crate::http::view::{ConnSlot, WorkerView};
use crate::listener::original_dst;
use crate::listener::select::ChainSelector;
use crate::observe::access_log::{Batch, LogSink};
use crate::observe::route_stats::RouteStats;
use crate::observe::stats::{ClusterStats, Counter, ListenerStats, StatsReport};
use crate::upstream::cluster::ClusterState;
use crate::upstream::TcpConnector;

use super::admission::{ConnCounts, ListenerCount};
use super::messages::{FromWorker, ToWorker};

type View = WorkerView<TcpConnector>;

/// The read buffers a worker lends: to a downstream connection while it has a request
/// to read (an idle one gives its buffer back, `http/conn.rs`), and to a request for
/// its upstream response. One size for both, so either returns to the same pool.
const BUF_BYTES: usize = crate::http::conn::READ_BUF_BYTES;

/// Buffers kept between uses (`BUF_BYTES` each, 2 MiB): what a burst of requests in
/// flight takes at once; past it, buffers go back to the allocator.
const BUFS_KEPT: usize = 256;

enum Event {
    Message(Option<ToWorker>),
    Drained,
}

struct Worker {
    id: usize,
    current: RefCell<Option<Rc<View>>>,
    /// The newest view, for connections moving to it between requests.
    latest: Rc<RefCell<std::rc::Weak<View>>>,
    draining: Rc<Cell<bool>>,
    bufs: Rc<BufPool>,
    connector: Rc<TcpConnector>,
    log_tx: SyncSender<Batch>,
    /// Stats live by name so they carry across config versions.
    listener_stats: RefCell<HashMap<String, Rc<ListenerStats>>>,
    cluster_stats: RefCell<HashMap<String, Rc<ClusterStats>>>,
    /// Each route stat prefix's stats (`observe::route_stats`), kept across reloads.
    route_stats: RefCell<HashMap<String, Rc<RouteStats>>>,
    /// The latest active health-check flags by cluster name and endpoint address, from
    /// the control executor's checker; a new snapshot's clusters start from them.
    health: RefCell<HashMap<(String, SocketAddr), HealthFlags>>,
    /// The endpoints outlier detection has ejected, by cluster name and address, from
    /// the control executor's detector; a new snapshot's clusters start from them.
    ejected: RefCell<std::collections::HashSet<(String, SocketAddr)>>,
    /// The filters' named counters (`Snapshot::counters`), kept by name.
    counters: RefCell<HashMap<String, Rc<Counter>>>,
    sinks: RefCell<HashMap<String, Rc<LogSink>>>,
    /// Sinks replaced by a reload but still used by connections accepted before it.
    retired_sinks: RefCell<Vec<Rc<LogSink>>>,
    /// Accept loops by listener name; dropping the task closes the socket.
    acceptors: RefCell<HashMap<String, Task<()>>>,
    /// Open connections, for closing idle ones on drain.
    conns: super::chain_drain::Conns,
    next_conn: Cell<u64>,
    /// Open-connection counts shared with the other workers, for connection limits.
    counts: Arc<ConnCounts>,
    /// Counts of the listeners connections are handed to (`use_original_dst`).
    handoff_counts: RefCell<HashMap<String, ListenerCount>>,
    hooks: Rc<crate::test_hooks::TestHooks>,
    /// Rings when housekeeping is due (a log batch to hand over, pooled connections to
    /// age out); nothing else wakes the worker on a timer.
    alarm: Rc<Alarm>,
}

thread_local! {
    static EXIT_FLAG: RefCell<Option<ExitFlag>> = const { RefCell::new(None) };
}

/// Sets its flag when the worker thread ends, however it ends, then wakes the control
/// executor.
struct ExitFlag {
    flag: Arc<std::sync::atomic::AtomicBool>,
    wake: Arc<std::os::unix::net::UnixStream>,
}

impl Drop for ExitFlag {
    fn drop(&mut self) {
        self.flag.store(true, std::sync::atomic::Ordering::Release);
        // Non-blocking: if the socket is full, the control executor has wake-ups
        // pending already and will see the flag.
        let _ = std::io::Write::write(&mut &*self.wake, b"x");
    }
}

/// Arranges for `flag` to be set when the calling thread exits, normally or by a panic,
/// and for a byte to be written to `wake`, the socket the control executor sleeps on.
/// A thread-local's destructor runs in both cases, whatever the executor does with the
/// futures it held; the control executor checks the flag to notice a dead worker.
pub fn flag_exit_on_thread_end(
    flag: Arc<std::sync::atomic::AtomicBool>,
    wake: Arc<std::os::unix::net::UnixStream>,
) {
    EXIT_FLAG.with(|f| *f.borrow_mut() = Some(ExitFlag { flag, wake }));
}

/// Runs a worker until it is told to drain (or the control executor goes away).
pub async fn run(
    id: usize,
    rx: SharedReceiver<ToWorker>,
    tx: SharedSender<FromWorker>,
    log_tx: SyncSender<Batch>,
    counts: Arc<ConnCounts>,
) {
    let rx = rx.connect().await;
    let tx = Rc::new(tx.connect().await);
    let alarm = Rc::new(Alarm::default());
    let w = Rc::new(Worker {
        id,
        current: RefCell::new(None),
        latest: Rc::default(),
        draining: Rc::new(Cell::new(false)),
        bufs: Rc::new(BufPool::new(BUF_BYTES, BUFS_KEPT)),
        connector: Rc::new(TcpConnector),
        log_tx,
        listener_stats: RefCell::default(),
        cluster_stats: RefCell::default(),
        route_stats: RefCell::default(),
        health: RefCell::default(),
        ejected: RefCell::default(),
        counters: RefCell::default(),
        sinks: RefCell::default(),
        retired_sinks: RefCell::default(),
        acceptors: RefCell::default(),
        conns: RefCell::default(),
        next_conn: Cell::new(0),
        counts,
        handoff_counts: RefCell::default(),
        hooks: Rc::new(crate::test_hooks::TestHooks::from_env().with_alarm(alarm.clone())),
        alarm,
    });
    let housekeeping = spawn_local(housekeeping(w.clone(), tx.clone()));
    // While draining, the worker keeps answering control messages (stats scrapes).
    let mut draining: Option<Pin<Box<dyn Future<Output = ()>>>> = None;
    loop {
        let event = match draining.as_mut() {
            None => Event::Message(rx.recv().await),
            Some(d) => {
                let message = async { Event::Message(rx.recv().await) };
                let drained = async {
                    d.as_mut().await;
                    Event::Drained
                };
                futures_lite::future::or(drained, message).await
            }
        };
        let msg = match event {
            Event::Drained | Event::Message(None) => break,
            Event::Message(Some(msg)) => msg,
        };
        match msg {
            ToWorker::Config { snapshot, sockets } => {
                let version = snapshot.version;
                w.apply(snapshot, sockets);
                let _ = tx.send(FromWorker::Applied(version)).await;
            }
            ToWorker::StatsRequest => {
                let _ = tx.send(FromWorker::Stats(Box::new(w.report()))).await;
            }
            ToWorker::Health(u) => w.health_update(u),
            ToWorker::Outlier(u) => w.outlier_update(u),
            ToWorker::Drain { timeout } => {
                if draining.is_none() {
                    let w = w.clone();
                    draining = Some(Box::pin(async move { w.drain(timeout).await }));
                }
            }
        }
    }
    drop(housekeeping);
    for sink in w.sinks.borrow().values() {
        sink.flush();
    }
    tracing::debug!(worker = id, "worker stopped");
}

/// Housekeeping, run when the worker's alarm rings: hand access-log batches to the
/// flush thread, close pooled upstream connections that aged out. Each piece of work
/// asks the alarm for its own time (a batch's first line, a pool's first idle
/// connection), so an idle worker has no timer armed and sleeps.
async fn housekeeping(
    w: Rc<Worker>,
    tx: Rc<crate::rt::channel::shared::ConnectedSender<FromWorker>>,
) {
    loop {
        w.alarm.rung().await;
        w.hooks.on_worker_tick();
        // Clusters that had their first request: the health checker leaves their
        // no-traffic interval (once per cluster name).
        let used: Vec<String> = w
            .cluster_stats
            .borrow()
            .iter()
            .filter(|(_, s)| s.used.get() && !s.used_reported.replace(true))
            .map(|(n, _)| n.clone())
            .collect();
        for name in used {
            let _ = tx.send(FromWorker::ClusterUsed(name)).await;
        }
        // Outlier detection events: a consecutive run reached its threshold here.
        let events: Vec<crate::outlier::Event> = match w.current.borrow().as_ref() {
            Some(view) => view
                .clusters
                .iter()
                .flat_map(|c| {
                    c.take_outlier_events()
                        .into_iter()
                        .map(|(addr, kind)| crate::outlier::Event {
                            cluster: c.cfg.name.clone(),
                            addr,
                            kind,
                        })
                })
                .collect(),
            None => Vec::new(),
        };
        for e in events {
            let _ = tx.send(FromWorker::Outlier(e)).await;
        }
        for sink in w.sinks.borrow().values() {
            sink.flush();
        }
        // A retired sink is flushed until the last connection using it has closed.
        w.retired_sinks.borrow_mut().retain(|s| {
            s.flush();
            Rc::strong_count(s) > 1
        });
        if let Some(view) = w.current.borrow().as_ref() {
            for c in &view.clusters {
                // Asks the alarm again for the next connection to age out, if any.
                c.evict_expired();
            }
        }
    }
}

impl Worker {
    fn apply(self: &Rc<Self>, snapshot: Arc<Snapshot>, sockets: Vec<(String, socket2::Socket)>) {
        let prev = self.current.borrow().clone();
        let clusters: Vec<Rc<ClusterState<_>>> = snapshot
            .clusters
            .iter()
            .enumerate()
            .map(|(i, cfg)| {
                // Keep the pool and LB state of a cluster whose definition did not change.
                let old = prev
                    .as_ref()
                    .and_then(|p| p.clusters.iter().find(|c| c.cfg.name == cfg.name));
                if let Some(old) = old {
                    if *old.cfg == **cfg {
                        return old.clone();
                    }
                }
                let stats = self
                    .cluster_stats
                    .borrow_mut()
                    .entry(cfg.name.clone())
                    .or_default()
                    .clone();
                let seed = (self.id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ (i as u64)
                    ^ snapshot.version;
                let state = ClusterState::new(cfg.clone(), stats, seed);
                state.report_use_to(self.alarm.clone());
                {
                    let health = self.health.borrow();
                    let ejected = self.ejected.borrow();
                    state.init_health(
                        |addr| health.get(&(cfg.name.clone(), addr)).copied(),
                        |addr| ejected.contains(&(cfg.name.clone(), addr)),
                    );
                }
                // Only the endpoints changed (an EDS update): the endpoints kept keep
                // their pooled connections.
                if let Some(old) = old {
                    state.adopt(old);
                }
                Rc::new(state)
            })
            .collect();
        let listener_stats: Vec<Rc<ListenerStats>> = snapshot
            .listeners
            .iter()
            .map(|l| {
                self.listener_stats
                    .borrow_mut()
                    .entry(l.name.clone())
                    .or_default()
                    .clone()
            })
            .collect();
        crate::observe::bucket_rules::configure(
            &snapshot,
            clusters.iter().map(|c| (&*c.cfg.name, &*c.stats)),
            &listener_stats,
        );
        let route_stats: Vec<Rc<RouteStats>> = snapshot
            .route_stats
            .iter()
            .map(|p| {
                self.route_stats
                    .borrow_mut()
                    .entry(p.clone())
                    .or_default()
                    .clone()
            })
            .collect();
        for (p, s) in snapshot.route_stats.iter().zip(&route_stats) {
            crate::observe::bucket_rules::configure_route(&snapshot, p, s);
        }
        let counters = snapshot
            .counters
            .iter()
            .map(|name| {
                self.counters
                    .borrow_mut()
                    .entry(name.clone())
                    .or_default()
                    .clone()
            })
            .collect();
        let mut sinks = self.sinks.borrow_mut();
        let mut retired = self.retired_sinks.borrow_mut();
        // One sink per chain that logs, kept by "listener\0chain" across reloads.
        let mut live = Vec::new();
        let access_logs = snapshot
            .listeners
            .iter()
            .zip(&listener_stats)
            .map(|(l, stats)| {
                l.chains()
                    .map(|(_, c)| {
                        let a = match &c.terminal {
                            NetworkTerminal::Http(h) => h.access_log.as_ref(),
                            NetworkTerminal::Tcp(t) => t.access_log.as_ref(),
                        }?;
                        let key = format!("{}\0{}", l.name, c.name);
                        live.push(key.clone());
                        if let Some(same) = sinks.get(&key).filter(|s| s.serves(a)) {
                            return Some(same.clone());
                        }
                        let sink = Rc::new(LogSink::new(
                            a,
                            &l.name,
                            self.log_tx.clone(),
                            stats.clone(),
                            self.alarm.clone(),
                        ));
                        if let Some(old) = sinks.insert(key, sink.clone()) {
                            retired.push(old);
                        }
                        Some(sink)
                    })
                    .collect()
            })
            .collect();
        let gone: Vec<String> = sinks
            .keys()
            .filter(|key| !live.contains(key))
            .cloned()
            .collect();
        for name in gone {
            if let Some(old) = sinks.remove(&name) {
                retired.push(old);
            }
        }
        drop(sinks);
        // Retired sinks nobody uses any more go now (dropping one flushes it).
        retired.retain(|s| Rc::strong_count(s) > 1);
        drop(retired);
        // The control executor checked every listener's chains before publishing.
        let selectors = snapshot
            .listeners
            .iter()
            .map(|l| ChainSelector::build(l).unwrap_or_default())
            .collect();
        // Chains the update changed or removed: their connections drain.
        let (lives, ended) = super::chain_drain::lives(prev.as_deref(), &snapshot);
        let view = Rc::new(WorkerView {
            lives,
            snapshot: snapshot.clone(),
            selectors,
            clusters,
            listener_stats,
            counters,
            route_stats,
            access_logs,
            connector: self.connector.clone(),
            draining: self.draining.clone(),
            bufs: self.bufs.clone(),
            hooks: self.hooks.clone(),
            latest: self.latest.clone(),
        });
        *self.latest.borrow_mut() = Rc::downgrade(&view);
        let upstreams = crate::upstream::grpc_call::Upstreams::newest(&*view);
        *self.current.borrow_mut() = Some(view);
        start_wasm_vms(&snapshot, upstreams);
        if super::chain_drain::start(&ended, &self.conns) {
            let (w, timeout) = (self.clone(), snapshot.drain_timeout);
            spawn_local(async move {
                crate::rt::sleep(timeout).await;
                let n = super::chain_drain::close_left(&ended, &w.conns);
                if n > 0 {
                    tracing::info!(
                        worker = w.id,
                        connections = n,
                        "drain timeout of a changed filter chain: closing its connections"
                    );
                }
            })
            .detach();
        }

        // Listeners: stop removed ones, start new or moved ones with the sockets sent.
        let mut acceptors = self.acceptors.borrow_mut();
        acceptors.retain(|name, _| {
            snapshot
                .listeners
                .iter()
                .any(|l| &l.name == name && l.bind_to_port)
        });
        for (name, socket) in sockets {
            let listener = match crate::rt::net::listener_from(socket) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(listener = %name, error = %e, "the runtime refused the listening socket");
                    continue;
                }
            };
            let count = self.counts.listener(&name);
            let task = spawn_local(accept_loop(self.clone(), name.clone(), listener, count));
            acceptors.insert(name, task);
        }
    }

    /// An endpoint's new health flags: kept by name and address for later snapshots,
    /// and applied to the current view's cluster.
    fn health_update(&self, u: crate::health::Update) {
        let key = (u.cluster, u.addr);
        let Some(flags) = u.flags else {
            self.health.borrow_mut().remove(&key);
            return;
        };
        if let Some(view) = self.current.borrow().as_ref() {
            if let Some(c) = view.clusters.iter().find(|c| c.cfg.name == key.0) {
                c.set_health(key.1, flags);
            }
        }
        self.health.borrow_mut().insert(key, flags);
    }

    /// An endpoint ejected or brought back by outlier detection: kept by name and
    /// address for later snapshots, and applied to the current view's cluster.
    fn outlier_update(&self, u: crate::outlier::Update) {
        if let Some(view) = self.current.borrow().as_ref() {
            if let Some(c) = view.clusters.iter().find(|c| c.cfg.name == u.cluster) {
                c.set_ejected(u.addr, u.ejected);
            }
        }
        let key = (u.cluster, u.addr);
        if u.ejected {
            self.ejected.borrow_mut().insert(key);
        } else {
            self.ejected.borrow_mut().remove(&key);
        }
    }

    /// The connection count of a listener that takes handed-off connections (it has no
    /// accept loop of its own here), kept per worker so a hand-off takes no lock.
    fn count_of(&self, listener: &str) -> ListenerCount {
        self.handoff_counts
            .borrow_mut()
            .entry(listener.to_string())
            .or_insert_with(|| self.counts.listener(listener))
            .clone()
    }

    fn report(&self) -> StatsReport {
        let mut r = StatsReport::default();
        for (name, s) in self.listener_stats.borrow().iter() {
            r.listeners.push(s.report(name));
            let mut istio = Vec::new();
            s.istio.report(&mut istio);
            crate::observe::istio::cells::merge_into(&mut r.istio, istio);
        }
        let current = self.current.borrow();
        for (name, s) in self.cluster_stats.borrow().iter() {
            let endpoints = current
                .as_ref()
                .and_then(|v| v.clusters.iter().find(|c| &c.cfg.name == name))
                .map(|c| c.endpoint_reports())
                .unwrap_or_default();
            r.clusters.push(s.report(name, endpoints));
        }
        for (name, c) in self.counters.borrow().iter() {
            r.counters.insert(name.clone(), c.get());
        }
        for (prefix, s) in self.route_stats.borrow().iter() {
            s.report_into(prefix, &mut r.counters, &mut r.histograms);
        }
        r
    }

    async fn drain(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.draining.set(true);
        self.acceptors.borrow_mut().clear();
        loop {
            // Idle keep-alive connections are waiting in read: shut their read side so the
            // read returns end-of-stream and they close. Busy ones finish their request
            // and close after it (with `Connection: close`).
            for (fd, slot) in self.conns.borrow().values() {
                if slot.idle.get() {
                    // SAFETY: fd belongs to a live connection that we track; shutdown does
                    // not close it.
                    unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
                }
                // An HTTP/2 connection sleeping on its clocks sends GOAWAY.
                slot.wake_for_drain();
            }
            if self.conns.borrow().is_empty() || Instant::now() >= deadline {
                break;
            }
            crate::rt::sleep(Duration::from_millis(20)).await;
        }
        let left = self.conns.borrow().len();
        if left > 0 {
            tracing::warn!(
                worker = self.id,
                connections = left,
                "drain timeout: closing remaining connections"
            );
        }
    }
}

/// Starts this worker's VM of every wasm filter of `snapshot`, as Envoy starts its
/// VMs when a config is loaded, so that a timer the module sets in
/// `proxy_on_configure` ticks from now on, not from the first request.
fn start_wasm_vms(snapshot: &Snapshot, upstreams: Option<crate::wasm::host::Upstreams>) {
    let hcms = snapshot.listeners.iter().flat_map(|l| &l.filter_chains);
    for hcm in hcms.filter_map(|c| c.hcm()) {
        for f in &hcm.http_filters {
            if let crate::http::filter::FilterKind::Wasm(w) = &f.kind {
                crate::wasm::start_for_worker(&w.0, upstreams.clone());
            }
        }
    }
}

async fn accept_loop(w: Rc<Worker>, name: String, listener: TcpListener, count: ListenerCount) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(listener = %name, error = %e, "accept failed");
                crate::rt::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The `accept_queue` phase starts here (`observe::phases`): one clock read per
        // connection.
        let accepted = std::time::Instant::now();
        let Some(view) = w.current.borrow().clone() else {
            continue;
        };
        let Some(mut index) = view.snapshot.listeners.iter().position(|l| l.name == name) else {
            continue;
        };
        let (Ok(peer), Ok(mut local)) = (stream.peer_addr(), stream.local_addr()) else {
            continue;
        };
        // The original_dst listener filter, and use_original_dst's hand-off to the
        // listener of the original destination (which then counts and admits it).
        let l = &view.snapshot.listeners[index];
        if l.listener_filters.original_dst {
            if let Some(dst) = original_dst::read(stream.as_raw_fd(), local.is_ipv6()) {
                local = dst;
                if l.use_original_dst {
                    index = original_dst::handoff(&view.snapshot.listeners, index, dst);
                }
            }
        }
        let stats = view.listener_stats[index].clone();
        let l = &view.snapshot.listeners[index];
        let handed = (l.name != name).then(|| w.count_of(&l.name));
        let Some(permit) = handed
            .as_ref()
            .unwrap_or(&count)
            .admit(l.max_connections, view.snapshot.max_connections)
        else {
            // Over a connection limit: close at once (dropping the stream), count it.
            stats.cx_overflow.inc();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = w.next_conn.get();
        w.next_conn.set(id + 1);
        let slot = Rc::new(ConnSlot::default());
        slot.accepted.set(Some(accepted));
        w.conns
            .borrow_mut()
            .insert(id, (stream.as_raw_fd(), slot.clone()));
        // The listener layer counts cx_total and cx_active once a filter chain takes
        // the connection.
        let w2 = w.clone();
        spawn_local(async move {
            let v = view.clone();
            // A panic while serving the connection ends this task only: the stream and
            // everything the connection held are dropped, so the peer sees a close.
            // A connection of a changed chain still open at the drain timeout is
            // closed by ending this task (`chain_drain.rs`).
            let serve = contain(crate::listener::serve(
                stream,
                local,
                peer,
                v,
                index,
                slot.clone(),
            ));
            let served = futures_lite::future::or(serve, async {
                slot.killed().await;
                Ok(())
            })
            .await;
            w2.conns.borrow_mut().remove(&id);
            drop(permit);
            if let Err(panic) = served {
                stats.cx_panic.inc();
                tracing::error!(
                    worker = w2.id,
                    listener = %view.snapshot.listeners[index].name,
                    peer = %peer,
                    panic = %panic,
                    "connection handler panicked: connection closed, worker continues"
                );
            }
        })
        .detach();
    }
}
