//! Active health checking, once per process, on the control executor (issue 11).
//!
//! Off the request path. For every endpoint of every cluster with `health_checks`, one
//! task runs that endpoint's checks (`http.rs`, `tcp.rs`, `grpc.rs`) through its state
//! machine (`session.rs`, Envoy's `ActiveHealthCheckSession`). A change of an endpoint's
//! flags becomes an [`Update`], which the control executor sends to every worker over
//! the existing channels; a worker keeps the latest flags by cluster name and address
//! (so a reload or an EDS update keeps them) and its load balancer skips failed
//! endpoints. The checker keeps its sessions across snapshots the same way: by cluster
//! name and address, restarted only when the check itself changed.

mod flags;
mod grpc;
mod http;
mod session;
mod tcp;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use crate::rt::channel::local::LocalSender;
use crate::rt::{spawn_local, Task};
use rustls::ClientConnection;

pub use flags::HealthFlags;
use session::{Outcome, Session};

use crate::config::{CheckKind, Cluster, HealthCheck, Snapshot};
use crate::observe::stats::HealthCheckReport;

/// A health-check connection: plain TCP or TLS, as the cluster's.
type Conn = crate::tls::Transport<crate::rt::net::TcpStream, ClientConnection>;

/// An endpoint's new flags, for every worker. `flags: None`: forget the endpoint (it
/// left the cluster, or the cluster lost its health checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub cluster: String,
    pub addr: SocketAddr,
    pub flags: Option<HealthFlags>,
}

type Key = (String, SocketAddr);

/// Envoy's `health_check.*` counters of one cluster.
#[derive(Default)]
struct Counters {
    attempt: Cell<u64>,
    success: Cell<u64>,
    failure: Cell<u64>,
    network_failure: Cell<u64>,
    verify_cluster: Cell<u64>,
}

struct Running {
    /// What the session runs: restarted when this changes.
    cluster: Arc<Cluster>,
    _task: Task<()>,
}

struct Inner {
    updates: LocalSender<Update>,
    /// Current flags by cluster and endpoint.
    hosts: RefCell<HashMap<Key, HealthFlags>>,
    sessions: RefCell<HashMap<Key, Running>>,
    counters: RefCell<HashMap<String, Rc<Counters>>>,
    /// Clusters that have had traffic on some worker (Envoy: `upstream_cx_total` used).
    used: RefCell<HashSet<String>>,
    /// Endpoints of the first snapshot whose first check has not finished: `/ready`
    /// waits for them (Envoy initialises its clusters before it serves).
    first_round: RefCell<HashSet<Key>>,
    started: Cell<bool>,
    /// Told of every passed check of an endpoint that is not failing its checks (outlier
    /// detection brings an ejected endpoint back then).
    on_passed: RefCell<Option<PassedHook>>,
}

/// What the checker calls after a passed check: `(cluster, endpoint)`.
pub type PassedHook = Box<dyn Fn(&str, SocketAddr)>;

/// The process's health checker. Cheap to clone.
#[derive(Clone)]
pub struct Checker(Rc<Inner>);

impl Checker {
    pub fn new(updates: LocalSender<Update>) -> Self {
        Checker(Rc::new(Inner {
            updates,
            hosts: RefCell::default(),
            sessions: RefCell::default(),
            counters: RefCell::default(),
            used: RefCell::default(),
            first_round: RefCell::default(),
            started: Cell::new(false),
            on_passed: RefCell::new(None),
        }))
    }

    /// Sets what is called after each passed check of a healthy endpoint.
    pub fn on_passed(&self, hook: PassedHook) {
        *self.0.on_passed.borrow_mut() = Some(hook);
    }

    /// Follows a new snapshot: starts sessions for new endpoints (and for changed
    /// checks), stops those of endpoints that left, and tells the workers to forget them.
    pub fn apply(&self, snapshot: &Snapshot) {
        let first = !self.0.started.replace(true);
        let mut want: HashMap<Key, Arc<Cluster>> = HashMap::new();
        for c in &snapshot.clusters {
            if c.health_checks.is_empty() {
                continue;
            }
            for e in &c.endpoints {
                want.insert((c.name.clone(), e.addr), c.clone());
            }
        }
        let gone: Vec<Key> = self
            .0
            .hosts
            .borrow()
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            self.0.hosts.borrow_mut().remove(&k);
            self.0.sessions.borrow_mut().remove(&k);
            self.0.first_round.borrow_mut().remove(&k);
            self.send(Update {
                cluster: k.0,
                addr: k.1,
                flags: None,
            });
        }
        for (key, cluster) in want {
            let same = self
                .0
                .sessions
                .borrow()
                .get(&key)
                .is_some_and(|r| same_check(&r.cluster, &cluster));
            if same {
                continue;
            }
            // A new endpoint starts failed (Envoy's new hosts of a health-checked
            // cluster); one whose check changed keeps what it had.
            let flags = *self
                .0
                .hosts
                .borrow_mut()
                .entry(key.clone())
                .or_insert(HealthFlags::INITIAL);
            if first {
                self.0.first_round.borrow_mut().insert(key.clone());
            }
            self.0
                .counters
                .borrow_mut()
                .entry(key.0.clone())
                .or_default();
            let task = spawn_local(run(self.clone(), key.clone(), cluster.clone(), flags));
            self.0.sessions.borrow_mut().insert(
                key,
                Running {
                    cluster,
                    _task: task,
                },
            );
        }
        let names: HashSet<&str> = snapshot.clusters.iter().map(|c| c.name.as_str()).collect();
        self.0
            .counters
            .borrow_mut()
            .retain(|n, _| names.contains(n.as_str()));
    }

    /// A worker saw the cluster's first request.
    pub fn mark_used(&self, cluster: String) {
        self.0.used.borrow_mut().insert(cluster);
    }

    /// Every endpoint of the first config has had its first check.
    pub fn first_round_done(&self) -> bool {
        self.0.first_round.borrow().is_empty()
    }

    /// The cluster's `health_check.*` stats, if it has health checks.
    pub fn report(&self, cluster: &str) -> Option<HealthCheckReport> {
        let counters = self.0.counters.borrow();
        let c = counters.get(cluster)?;
        let healthy = self
            .0
            .hosts
            .borrow()
            .iter()
            .filter(|((n, _), f)| n == cluster && !f.failed())
            .count() as u64;
        Some(HealthCheckReport {
            attempt: c.attempt.get(),
            success: c.success.get(),
            failure: c.failure.get(),
            network_failure: c.network_failure.get(),
            verify_cluster: c.verify_cluster.get(),
            healthy,
        })
    }

    fn send(&self, u: Update) {
        // Unbounded local channel: the control executor forwards to the workers.
        let _ = self.0.updates.try_send(u);
    }
}

/// Sessions restart only when what they do changed: the check, the connect timeout and
/// the transport socket.
fn same_check(a: &Cluster, b: &Cluster) -> bool {
    a.health_checks == b.health_checks
        && a.connect_timeout == b.connect_timeout
        && a.tls == b.tls
        && a.protocol == b.protocol
}

enum Probe {
    Http(http::HttpProbe),
    Tcp(tcp::TcpProbe),
    Grpc(grpc::GrpcProbe),
}

/// One endpoint's checks, until the task is dropped.
async fn run(checker: Checker, key: Key, cluster: Arc<Cluster>, flags: HealthFlags) {
    let Some(hc) = cluster.health_checks.first() else {
        return;
    };
    let counters = checker
        .0
        .counters
        .borrow()
        .get(&key.0)
        .cloned()
        .unwrap_or_default();
    let mut session = Session::new(flags);
    let mut probe = match &hc.kind {
        CheckKind::Http(_) => Probe::Http(http::HttpProbe::default()),
        CheckKind::Tcp(_) => Probe::Tcp(tcp::TcpProbe::default()),
        CheckKind::Grpc(_) => Probe::Grpc(grpc::GrpcProbe::default()),
    };
    let delay = session::initial_delay(hc, fastrand::u64(..));
    if !delay.is_zero() {
        crate::rt::sleep(delay).await;
    }
    loop {
        counters.attempt.set(counters.attempt.get() + 1);
        let outcome = check_once(&mut probe, &cluster, key.1, hc).await;
        match outcome {
            Outcome::Success => counters.success.set(counters.success.get() + 1),
            Outcome::Active { .. } => counters.failure.set(counters.failure.get() + 1),
            Outcome::Network | Outcome::Timeout => {
                counters.failure.set(counters.failure.get() + 1);
                counters
                    .network_failure
                    .set(counters.network_failure.get() + 1);
            }
        }
        let before = session.flags;
        let t = session.record(outcome, hc);
        if session.flags != before {
            if session.flags.failed() != before.failed() {
                tracing::info!(
                    cluster = %key.0,
                    endpoint = %key.1,
                    health_flags = %session.flags.envoy_text(),
                    ?outcome,
                    "health check changed an endpoint's health"
                );
            }
            checker
                .0
                .hosts
                .borrow_mut()
                .insert(key.clone(), session.flags);
            checker.send(Update {
                cluster: key.0.clone(),
                addr: key.1,
                flags: Some(session.flags),
            });
        }
        if outcome == Outcome::Success && !session.flags.failed_active_hc() {
            if let Some(hook) = checker.0.on_passed.borrow().as_ref() {
                hook(&key.0, key.1);
            }
        }
        checker.0.first_round.borrow_mut().remove(&key);
        let used = checker.0.used.borrow().contains(&key.0);
        let wait = session.next_interval(hc, t, used, fastrand::u64(..));
        crate::rt::sleep(wait).await;
    }
}

/// One check, bounded by the check's timeout; a timeout drops the connection.
async fn check_once(
    probe: &mut Probe,
    cluster: &Cluster,
    addr: SocketAddr,
    hc: &HealthCheck,
) -> Outcome {
    let timed_out = async {
        crate::rt::sleep(hc.timeout).await;
        Outcome::Timeout
    };
    let outcome = match (&mut *probe, &hc.kind) {
        (Probe::Http(p), CheckKind::Http(c)) => {
            futures_lite::future::or(p.check(cluster, addr, hc, c), timed_out).await
        }
        (Probe::Tcp(p), CheckKind::Tcp(c)) => {
            futures_lite::future::or(p.check(cluster, addr, hc, c), timed_out).await
        }
        (Probe::Grpc(p), CheckKind::Grpc(c)) => {
            futures_lite::future::or(p.check(cluster, addr, hc, c), timed_out).await
        }
        _ => Outcome::Network,
    };
    if outcome == Outcome::Timeout {
        match probe {
            Probe::Http(p) => p.reset(),
            Probe::Tcp(p) => p.reset(),
            Probe::Grpc(p) => p.reset(),
        }
    }
    outcome
}
