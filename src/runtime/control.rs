//! The control executor: owns the config, compiles and fans out snapshots, answers the
//! admin server, and turns signals into reloads and drains.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::rt::channel::local::{self, LocalReceiver, LocalSender};
use crate::rt::channel::shared::{ConnectedSender, SharedReceiver, SharedSender};
use crate::rt::spawn_local;
use crate::rt::Semaphore;
use futures_lite::io::AsyncReadExt;
use socket2::Socket;

use crate::config::{self, ConfigErrors, Snapshot};
use crate::observe::stats::StatsReport;

use super::messages::{FromWorker, ToWorker};
use super::sockets;
use super::tls_watch;

/// Where the config comes from; a reload reads it again.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    File(String),
    /// Config text built from command-line flags (one-line mode, demo).
    Inline(String),
}

impl ConfigSource {
    /// The config's text: the file read now, or the inline text.
    pub fn text(&self) -> Result<String, String> {
        match self {
            ConfigSource::File(p) => std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}")),
            ConfigSource::Inline(t) => Ok(t.clone()),
        }
    }

    pub fn load(&self) -> Result<Snapshot, ConfigErrors> {
        let s = match self {
            ConfigSource::File(p) => config::load_file(p),
            ConfigSource::Inline(t) => config::parse_str(t),
        }?;
        check_selectors(&s)?;
        Ok(s)
    }
}

/// Whatever the source, a listener whose chains cannot be told apart is refused before
/// any worker builds its selector.
pub fn check_selectors(s: &Snapshot) -> Result<(), ConfigErrors> {
    {
        let errors: Vec<config::ConfigError> = s
            .listeners
            .iter()
            .filter_map(|l| {
                let e = crate::listener::select::ChainSelector::build(l).err()?;
                Some(config::ConfigError {
                    path: format!("listener `{}`", l.name),
                    line: None,
                    message: e,
                })
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// Signals noted by the main thread's handlers, read by the control executor.
pub struct SignalFlags {
    pub reload: Arc<AtomicBool>,
    pub terminate: Arc<AtomicBool>,
    /// Receives a byte after each signal's flag is set and when a worker thread ends:
    /// the control executor sleeps on it instead of polling the flags.
    pub wake: std::os::unix::net::UnixStream,
}

pub struct Control {
    source: ConfigSource,
    workers: usize,
    pub current: RefCell<Arc<Snapshot>>,
    applied: RefCell<Vec<u64>>,
    pub draining: Cell<bool>,
    /// A worker executor stopped without being told to: not ready, drain, exit non-zero.
    pub worker_died: Cell<bool>,
    /// Listener name -> address the workers have sockets for.
    bound: RefCell<HashMap<String, SocketAddr>>,
    senders: Vec<ConnectedSender<ToWorker>>,
    stats_rx: LocalReceiver<Box<StatsReport>>,
    stats_lock: Semaphore,
    /// With an xDS bootstrap: `/ready` waits for the initial fetch (as Envoy's server
    /// initialisation does), and `/config_dump` shows the dynamic resources.
    xds: Option<XdsStatus>,
    /// Active health checks, once per process; its updates go to every worker.
    health: crate::health::Checker,
    /// Outlier detection, once per process; its ejections go to every worker.
    outlier: crate::outlier::Detector,
    /// STRICT_DNS and LOGICAL_DNS clusters: their names, resolved here.
    dns: super::dns::DnsClusters,
}

struct XdsStatus {
    initialized: Cell<bool>,
    dump: RefCell<serde_json::Value>,
    /// The client, for a reload (`xds/reload.rs`).
    client: RefCell<Option<Rc<crate::xds::Client>>>,
}

/// What the control executor starts an xDS client with.
pub struct XdsStart {
    pub store: crate::xds::state::Store,
    pub state_dir: Option<std::path::PathBuf>,
    /// The last-known-good config was loaded: serve it and count as initialised.
    pub from_last_known_good: bool,
}

impl Control {
    pub fn is_ready(&self) -> bool {
        let v = self.current.borrow().version;
        self.xds.as_ref().is_none_or(|x| x.initialized.get())
            && !self.draining.get()
            && !self.worker_died.get()
            && self.applied.borrow().iter().all(|&a| a == v)
            // Envoy initialises a health-checked cluster with the first round of checks
            // before it serves; each check ends within its timeout.
            && self.health.first_round_done()
    }

    /// Re-reads the source. A bad config is refused whole and the old one keeps serving.
    pub async fn reload(&self) -> Result<u64, String> {
        if let Some(x) = &self.xds {
            // The static resources again, with the dynamic ones the client holds.
            let client = x.client.borrow().clone();
            let Some(client) = client else {
                return Err("the xDS client has not started yet".into());
            };
            let text = self.source.text()?;
            return crate::xds::reload::reload(self, &client, &text).await;
        }
        let snapshot = self.source.load().map_err(|e| e.to_string())?;
        self.apply(snapshot).await
    }

    /// Publishes a new snapshot (reload, xDS): binds new or moved listeners first (a
    /// failure refuses the config), then waits until every worker serves it.
    pub async fn apply(&self, mut snapshot: Snapshot) -> Result<u64, String> {
        check_selectors(&snapshot).map_err(|e| e.to_string())?;
        // New DNS names are resolved first (the cluster's warming); nothing below
        // awaits until the snapshot is current, so it is compared with the latest one.
        self.dns.fill(&mut snapshot).await;
        let old = self.current.borrow().clone();
        if snapshot.admin != old.admin {
            tracing::warn!("admin address changes take effect only on restart");
        }
        if snapshot.concurrency != old.concurrency {
            tracing::warn!("runtime.concurrency changes take effect only on restart");
        }
        snapshot.version = old.version + 1;
        keep_breakers(&old, &mut snapshot);
        let per_worker = self.bind_new(&snapshot)?;
        let version = snapshot.version;
        self.publish(Arc::new(snapshot), per_worker).await;
        // Answer once every worker serves the new version, so a client that connects after
        // a successful reload is routed by the new config.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !self.applied.borrow().iter().all(|&a| a >= version) {
            if std::time::Instant::now() >= deadline {
                tracing::warn!(version, "workers are slow to apply the new config");
                break;
            }
            crate::rt::sleep(Duration::from_millis(1)).await;
        }
        Ok(version)
    }

    /// Binds sockets for listeners that are new or moved, one per worker.
    fn bind_new(&self, snapshot: &Snapshot) -> Result<Vec<Vec<(String, Socket)>>, String> {
        let bound = self.bound.borrow();
        let mut per_worker: Vec<Vec<(String, Socket)>> =
            (0..self.workers).map(|_| Vec::new()).collect();
        for l in &snapshot.listeners {
            // A virtual listener (bind_to_port: false) has no socket.
            if bound.get(&l.name) == Some(&l.addr) || !l.bind_to_port {
                continue;
            }
            let group = sockets::bind_group(&l.name, l.addr, l.backlog, self.workers)?;
            for (w, s) in group.into_iter().enumerate() {
                per_worker[w].push((l.name.clone(), s));
            }
        }
        Ok(per_worker)
    }

    async fn publish(&self, snapshot: Arc<Snapshot>, per_worker: Vec<Vec<(String, Socket)>>) {
        {
            let mut bound = self.bound.borrow_mut();
            bound.clear();
            for l in snapshot.listeners.iter().filter(|l| l.bind_to_port) {
                bound.insert(l.name.clone(), l.addr);
            }
        }
        *self.current.borrow_mut() = snapshot.clone();
        self.dns.retain(&snapshot);
        self.health.apply(&snapshot);
        self.outlier.apply(&snapshot);
        for (tx, sockets) in self.senders.iter().zip(per_worker) {
            let _ = tx
                .send(ToWorker::Config {
                    snapshot: snapshot.clone(),
                    sockets,
                })
                .await;
        }
        tracing::info!(version = snapshot.version, "config published");
    }

    /// Gathers and merges every worker's counters.
    pub async fn stats(&self) -> StatsReport {
        let _guard = self.stats_lock.acquire_permit(1).await;
        let mut asked = 0;
        for tx in &self.senders {
            if tx.send(ToWorker::StatsRequest).await.is_ok() {
                asked += 1;
            }
        }
        let mut merged = StatsReport::default();
        for _ in 0..asked {
            match self.stats_rx.recv().await {
                Some(r) => merged.merge(*r),
                None => break,
            }
        }
        merged.listeners.sort_by(|a, b| a.name.cmp(&b.name));
        merged.clusters.sort_by(|a, b| a.name.cmp(&b.name));
        let snapshot = self.current.borrow().clone();
        let dynamic = self.dynamic_clusters();
        for c in &mut merged.clusters {
            c.health_check = self.health.report(&c.name);
            c.outlier_detection = self.outlier.report(&c.name);
            c.dns = self.dns.report(&c.name);
            let configured = snapshot.clusters.iter().find(|s| s.name == c.name);
            c.circuit_breakers = configured.map(|s| s.breakers.default.report());
            c.circuit_breakers_high = configured.map(|s| s.breakers.high.report());
            c.thresholds = configured.map(|s| {
                [&s.breakers.default, &s.breakers.high].map(|b| {
                    let l = &b.limits;
                    [
                        l.max_connections,
                        l.max_pending_requests,
                        l.max_requests,
                        l.max_retries,
                    ]
                })
            });
            c.added_via_api = dynamic.contains(&c.name);
        }
        merged
    }

    /// The clusters that came over xDS (Envoy's `added_via_api`), read from the dump.
    fn dynamic_clusters(&self) -> Vec<String> {
        let Some(x) = &self.xds else {
            return Vec::new();
        };
        let dump = x.dump.borrow();
        let configs = dump.get("configs").and_then(|c| c.as_array());
        configs
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("dynamic_active_clusters")?.as_array())
            .flatten()
            .filter_map(|c| Some(c.get("cluster")?.get("name")?.as_str()?.to_string()))
            .collect()
    }

    async fn drain(&self, timeout: Duration) {
        self.draining.set(true);
        tracing::info!(timeout_ms = timeout.as_millis() as u64, "draining");
        for tx in &self.senders {
            let _ = tx.send(ToWorker::Drain { timeout }).await;
        }
    }
}

impl crate::admin::AdminApi for Control {
    fn is_ready(&self) -> bool {
        Control::is_ready(self)
    }

    fn is_draining(&self) -> bool {
        self.draining.get()
    }

    fn config_dump(&self, include_eds: bool) -> serde_json::Value {
        let s = self.current.borrow().clone();
        match &self.xds {
            Some(x) => {
                let mut dump = x.dump.borrow().clone();
                // Envoy lists endpoints only when asked (`?include_eds`).
                if !include_eds {
                    if let Some(c) = dump.get_mut("configs").and_then(|c| c.as_array_mut()) {
                        c.retain(|c| {
                            c["@type"] != "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"
                        });
                    }
                }
                serde_json::json!({ "version": s.version, "config": dump })
            }
            None => serde_json::json!({ "version": s.version, "config": s.dump }),
        }
    }

    async fn stats(&self) -> StatsReport {
        Control::stats(self).await
    }

    async fn reload(&self) -> Result<u64, String> {
        Control::reload(self).await
    }
}

impl crate::xds::Publish for Control {
    async fn apply(&self, s: Snapshot) -> Result<u64, String> {
        Control::apply(self, s).await
    }

    fn set_dump(&self, dump: serde_json::Value) {
        if let Some(x) = &self.xds {
            *x.dump.borrow_mut() = dump;
        }
    }

    fn set_initialized(&self) {
        if let Some(x) = &self.xds {
            x.initialized.set(true);
        }
    }

    fn ads_cluster(&self, cluster: &str) -> crate::xds::AdsCluster {
        let s = self.current.borrow();
        s.clusters
            .iter()
            .find(|c| c.name == cluster)
            .map(|c| crate::xds::AdsCluster {
                addrs: c.endpoints.iter().map(|e| e.addr).collect(),
                tls: c.tls.clone(),
            })
            .unwrap_or_default()
    }
}

/// Channels for one worker, control side.
pub struct WorkerLink {
    pub to: SharedSender<ToWorker>,
    pub from: SharedReceiver<FromWorker>,
}

/// Runs the control executor until every worker has stopped.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    source: ConfigSource,
    first: Snapshot,
    first_sockets: Vec<Vec<(String, Socket)>>,
    links: Vec<WorkerLink>,
    exits: Vec<Arc<AtomicBool>>,
    admin: Option<Socket>,
    signals: SignalFlags,
    xds: Option<XdsStart>,
) {
    let workers = links.len();
    let mut senders = Vec::with_capacity(workers);
    let mut receivers = Vec::with_capacity(workers);
    for link in links {
        senders.push(link.to.connect().await);
        receivers.push(link.from);
    }
    let (stats_tx, stats_rx) = local::new_bounded(workers.max(1));
    let (health_tx, health_rx) = local::new_unbounded();
    let (outlier_tx, outlier_rx) = local::new_unbounded();
    let outlier = crate::outlier::Detector::new(outlier_tx);
    let health = crate::health::Checker::new(health_tx);
    // An active health check that passes brings an ejected endpoint back (Envoy's
    // successful_active_health_check_uneject_host).
    let detector = outlier.clone();
    health.on_passed(Box::new(move |cluster, addr| {
        detector.on_check_passed(cluster, addr)
    }));
    let control = Rc::new(Control {
        source,
        workers,
        current: RefCell::new(Arc::new(first_placeholder())),
        applied: RefCell::new(vec![0; workers]),
        draining: Cell::new(false),
        worker_died: Cell::new(false),
        bound: RefCell::new(HashMap::new()),
        senders,
        stats_rx,
        stats_lock: Semaphore::new(1),
        xds: xds.as_ref().map(|x| XdsStatus {
            initialized: Cell::new(x.from_last_known_good),
            dump: RefCell::new(serde_json::Value::Null),
            client: RefCell::new(None),
        }),
        health,
        outlier,
        dns: Default::default(),
    });
    // Health-check results to every worker, in order.
    let forward = control.clone();
    let _health = spawn_local(async move {
        while let Some(u) = health_rx.recv().await {
            for tx in &forward.senders {
                let _ = tx.send(ToWorker::Health(u.clone())).await;
            }
        }
    });
    // Ejections to every worker, in order.
    let forward = control.clone();
    let _outlier = spawn_local(async move {
        while let Some(u) = outlier_rx.recv().await {
            for tx in &forward.senders {
                let _ = tx.send(ToWorker::Outlier(u.clone())).await;
            }
        }
    });
    // Outlier detection's intervals: only while some cluster has it (no timer without
    // work); the interval detectors read the workers' counts through the stats path.
    let ticking = control.clone();
    let _outlier_ticks = spawn_local(async move {
        let d = ticking.outlier.clone();
        loop {
            d.alarm().rung().await;
            let counts = if d.wants_counts(std::time::Instant::now()) {
                Some(ticking.stats().await)
            } else {
                None
            };
            d.tick(std::time::Instant::now(), counts.as_ref());
            if let Some(at) = d.next_due() {
                d.alarm().ring_at(at);
            }
        }
    });
    let stats_tx = Rc::new(stats_tx);
    let mut listeners = Vec::new();
    for (i, rx) in receivers.into_iter().enumerate() {
        let rx = rx.connect().await;
        let c = control.clone();
        let stats_tx: Rc<LocalSender<Box<StatsReport>>> = stats_tx.clone();
        listeners.push(spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    FromWorker::Applied(v) => c.applied.borrow_mut()[i] = v,
                    FromWorker::Stats(r) => {
                        let _ = stats_tx.send(r).await;
                    }
                    FromWorker::ClusterUsed(name) => c.health.mark_used(name),
                    FromWorker::Outlier(e) => c.outlier.on_event(e),
                }
            }
        }));
    }
    let mut first = first;
    first.version = 1;
    control.dns.fill(&mut first).await;
    control.publish(Arc::new(first), first_sockets).await;
    // DNS clusters' names, resolved again as they fall due; a change is published as
    // an EDS update is.
    let refreshing = control.clone();
    let _dns = spawn_local(async move {
        loop {
            refreshing.dns.due().await;
            refreshing.dns.refresh().await;
            let current = refreshing.current.borrow().clone();
            let changed = refreshing.dns.changed(&current);
            if changed.is_empty() || refreshing.draining.get() {
                continue;
            }
            let next = super::dns::with_clusters(&current, &changed);
            match refreshing.apply(next).await {
                Ok(v) => tracing::info!(version = v, "DNS clusters' endpoints changed"),
                Err(e) => tracing::error!("DNS update refused:\n{e}"),
            }
        }
    });

    let _admin = admin.map(|s| spawn_local(crate::admin::serve(control.clone(), s)));
    let _xds = xds.map(|x| {
        let client = Rc::new(crate::xds::Client {
            store: RefCell::new(x.store),
            state_dir: x.state_dir,
            initialized: Cell::new(x.from_last_known_good),
            streaming: Cell::new(false),
        });
        if let Some(x) = &control.xds {
            *x.client.borrow_mut() = Some(client.clone());
        }
        spawn_local(crate::xds::run(control.clone(), client))
    });

    // Signals arrive as flags set by the main thread's handlers, each followed by a byte
    // on the wake socket; a worker thread that ends writes one too.
    // Should the runtime refuse the socket, the flags are polled instead.
    let mut wake = crate::rt::net::unix_from(signals.wake)
        .map_err(|e| tracing::error!(error = %e, "control wake socket refused: polling the flags"))
        .ok();
    // Certificate rotation: the stamps a refused reload saw, so it is not retried
    // until a file changes again.
    let mut refused_stamps = None;
    loop {
        if signals.terminate.load(Ordering::Relaxed) {
            break;
        }
        // A worker thread that ended without a drain died: a panic outside any
        // connection's containment. Its state is gone; the process stops serving, drains
        // the others and exits non-zero so that a supervisor restarts it whole.
        if let Some(i) = exits.iter().position(|e| e.load(Ordering::Acquire)) {
            tracing::error!(
                worker = i,
                "worker executor stopped unexpectedly: not ready, draining the other workers, then exiting non-zero"
            );
            control.worker_died.set(true);
            break;
        }
        if signals.reload.swap(false, Ordering::Relaxed) {
            match control.reload().await {
                Ok(v) => tracing::info!(version = v, "reloaded on SIGHUP"),
                Err(e) => tracing::error!("reload refused, keeping the running config:\n{e}"),
            }
        }
        let current = control.current.borrow().clone();
        if let Some(now) =
            tls_watch::changed(&current).filter(|n| Some(n) != refused_stamps.as_ref())
        {
            match control.reload().await {
                Ok(v) => {
                    refused_stamps = None;
                    tracing::info!(version = v, "reloaded: a TLS certificate file changed")
                }
                Err(e) => {
                    refused_stamps = Some(now);
                    tracing::error!(
                        "a TLS certificate file changed but the reload was refused, keeping the running config:\n{e}"
                    )
                }
            }
        }
        if tls_watch::watches(&control.current.borrow()) {
            futures_lite::future::or(wait_for_wake(&mut wake), crate::rt::sleep(tls_watch::POLL))
                .await;
        } else {
            wait_for_wake(&mut wake).await;
        }
    }
    let timeout = control.current.borrow().drain_timeout;
    control.drain(timeout).await;
    // Wait for every worker thread to end (a dead one already has).
    while !exits.iter().all(|e| e.load(Ordering::Acquire)) {
        wait_for_wake(&mut wake).await;
    }
    drop(listeners);
    tracing::info!("all workers stopped");
}

/// Sleeps until a signal handler or an ending worker thread writes to the wake socket,
/// and consumes what they wrote (the flags say what happened).
async fn wait_for_wake(wake: &mut Option<crate::rt::net::UnixStream>) {
    let mut buf = [0u8; 64];
    let Some(wake) = wake else {
        crate::rt::sleep(Duration::from_millis(50)).await;
        return;
    };
    match wake.read(&mut buf).await {
        Ok(n) if n > 0 => {}
        // Cannot happen while the process holds the other end; if it does, fall back to
        // polling the flags rather than spinning.
        _ => crate::rt::sleep(Duration::from_millis(50)).await,
    }
}

/// An empty snapshot, the state before the first publish.
fn first_placeholder() -> Snapshot {
    Snapshot {
        version: 0,
        admin: None,
        concurrency: None,
        drain_timeout: Duration::from_secs(10),
        spin_before_park: Duration::ZERO,
        max_connections: None,
        listeners: Vec::new(),
        route_tables: Default::default(),
        clusters: Vec::new(),
        counters: Vec::new(),
        histogram_buckets: Vec::new(),
        route_stats: Vec::new(),
        dump: serde_json::Value::Null,
    }
}

/// A cluster whose definition is unchanged but for its endpoints (an EDS update, a
/// reload that left it alone) keeps its circuit breakers' counts: the requests in
/// flight still hold their slots, as in Envoy, where such an update keeps the
/// cluster's resource manager. A changed cluster starts with fresh counts.
fn keep_breakers(old: &Snapshot, new: &mut Snapshot) {
    for c in &mut new.clusters {
        let Some(prev) = old.clusters.iter().find(|o| o.name == c.name) else {
            continue;
        };
        if Arc::ptr_eq(&prev.breakers, &c.breakers) {
            continue;
        }
        let same = crate::config::Cluster {
            endpoints: Vec::new(),
            ..(**prev).clone()
        } == crate::config::Cluster {
            endpoints: Vec::new(),
            ..(**c).clone()
        };
        if same {
            Arc::make_mut(c).breakers = prev.breakers.clone();
        }
        // The outlier counters are by endpoint index: kept when the endpoints are too,
        // so that workers that keep the old cluster and the detector share them.
        if same && prev.endpoints == c.endpoints {
            Arc::make_mut(c).outlier = prev.outlier.clone();
        }
    }
}
