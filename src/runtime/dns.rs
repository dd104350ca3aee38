//! STRICT_DNS and LOGICAL_DNS clusters, on the control executor (Envoy's
//! `StrictDnsClusterImpl` and `LogicalDnsCluster`).
//!
//! Each configured name is resolved with the system resolver (`getaddrinfo`, so
//! `/etc/hosts` and `resolv.conf` apply) on a thread of its own (`rt::blocking`): the
//! control executor goes on serving while a lookup blocks, and no worker ever resolves.
//! A cluster's endpoints are filled in before a snapshot that brings it (or changes its
//! names) is published: the first resolution is its warming, as in Envoy. After that
//! each name is resolved again every `dns_refresh_rate` (after a failure: every
//! `dns_failure_refresh_rate`, a jittered exponential back-off, or the refresh rate);
//! when the addresses change, a snapshot with the cluster's new endpoints is published
//! the way an EDS update is (`Control::apply`: the workers keep the pools of the
//! endpoints that stay, the health checker and outlier detector follow).
//!
//! STRICT_DNS makes one endpoint per address of each name; LOGICAL_DNS one endpoint, the
//! first address, for new connections. A failed resolution keeps the name's previous
//! addresses; a name that does not exist (or has no address of the family) resolves to
//! none, as Envoy's resolver reports it. One timer, only while a DNS cluster exists.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::alarm::Alarm;
use crate::config::dns_model::Dns;
use crate::config::{Cluster, Endpoint, Snapshot};
use crate::observe::stats::DnsUpdateReport;

/// What the control executor knows of its DNS clusters, by cluster name.
#[derive(Default)]
pub struct DnsClusters {
    clusters: RefCell<HashMap<String, Resolved>>,
    /// Counts by cluster name, kept across changes of the cluster (Envoy keeps a
    /// cluster's stats by name).
    stats: RefCell<HashMap<String, Counts>>,
    /// Rings when the earliest name is due again.
    alarm: Alarm,
}

#[derive(Default)]
struct Counts {
    attempt: Cell<u64>,
    success: Cell<u64>,
    failure: Cell<u64>,
    no_rebuild: Cell<u64>,
}

/// One cluster's names and what they last resolved to.
struct Resolved {
    spec: Arc<Dns>,
    targets: Vec<Target>,
}

#[derive(Clone)]
struct Target {
    /// The last successful resolution, filtered by the family (`None`: none yet).
    addrs: Option<Vec<IpAddr>>,
    due: Instant,
    /// The failure back-off's current ceiling (Envoy's jittered exponential strategy).
    backoff: Option<Duration>,
}

impl DnsClusters {
    /// Fills the endpoints of `snapshot`'s DNS clusters: from what their names last
    /// resolved to if the cluster's names and settings are unchanged, else by resolving
    /// them now (awaiting the resolver threads).
    pub async fn fill(&self, snapshot: &mut Snapshot) {
        for i in 0..snapshot.clusters.len() {
            let c = snapshot.clusters[i].clone();
            let Some(spec) = c.dns.clone() else { continue };
            let known = self
                .clusters
                .borrow()
                .get(&c.name)
                .is_some_and(|r| r.spec == spec);
            if !known {
                let mut targets = Vec::with_capacity(spec.targets.len());
                for t in &spec.targets {
                    let mut target = Target {
                        addrs: None,
                        due: Instant::now(),
                        backoff: None,
                    };
                    self.resolve(&c.name, &spec, &t.host, &mut target).await;
                    targets.push(target);
                }
                let r = Resolved {
                    spec: spec.clone(),
                    targets,
                };
                self.clusters.borrow_mut().insert(c.name.clone(), r);
            }
            let eps = self.endpoints_of(&c.name);
            snapshot.clusters[i] = with_endpoints(&c, eps);
        }
        self.ring();
    }

    /// Forgets the clusters `snapshot` no longer has (their counts stay).
    pub fn retain(&self, snapshot: &Snapshot) {
        self.clusters.borrow_mut().retain(|name, r| {
            snapshot
                .clusters
                .iter()
                .any(|c| c.name == *name && c.dns.as_ref() == Some(&r.spec))
        });
    }

    /// The cluster's `update_*` counts, for a DNS cluster.
    pub fn report(&self, cluster: &str) -> Option<DnsUpdateReport> {
        let stats = self.stats.borrow();
        let c = stats.get(cluster)?;
        Some(DnsUpdateReport {
            update_attempt: c.attempt.get(),
            update_success: c.success.get(),
            update_failure: c.failure.get(),
            update_no_rebuild: c.no_rebuild.get(),
        })
    }

    /// Resolves the names that are due.
    pub async fn refresh(&self) {
        let now = Instant::now();
        let due: Vec<(String, usize, Arc<Dns>)> = self
            .clusters
            .borrow()
            .iter()
            .flat_map(|(name, r)| {
                r.targets
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.due <= now)
                    .map(|(i, _)| (name.clone(), i, r.spec.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (name, i, spec) in due {
            // Resolve into a copy: the lookup awaits, and a publish meanwhile reads the
            // target (or replaces or drops the cluster).
            let Some(mut target) = self.target_mut(&name, &spec, i).map(|t| t.clone()) else {
                continue;
            };
            self.resolve(&name, &spec, &spec.targets[i].host, &mut target)
                .await;
            if let Some(mut t) = self.target_mut(&name, &spec, i) {
                *t = target;
            }
        }
        self.ring();
    }

    /// The clusters of `current` whose names now resolve to other endpoints, with
    /// those endpoints (to publish).
    pub fn changed(&self, current: &Snapshot) -> Vec<Arc<Cluster>> {
        current
            .clusters
            .iter()
            .filter(|c| {
                self.clusters
                    .borrow()
                    .get(&c.name)
                    .is_some_and(|r| c.dns.as_ref() == Some(&r.spec))
            })
            .filter_map(|c| {
                let eps = self.endpoints_of(&c.name);
                (eps != c.endpoints).then(|| with_endpoints(c, eps))
            })
            .collect()
    }

    /// Resolves when the earliest name is due (without a timer while there is none).
    pub async fn due(&self) {
        self.alarm.rung().await
    }

    fn ring(&self) {
        let next = self
            .clusters
            .borrow()
            .values()
            .flat_map(|r| r.targets.iter().map(|t| t.due))
            .min();
        if let Some(at) = next {
            self.alarm.ring_at(at);
        }
    }

    fn target_mut(
        &self,
        name: &str,
        spec: &Arc<Dns>,
        i: usize,
    ) -> Option<std::cell::RefMut<'_, Target>> {
        let clusters = self.clusters.borrow_mut();
        std::cell::RefMut::filter_map(clusters, |m| {
            m.get_mut(name)
                .filter(|r| Arc::ptr_eq(&r.spec, spec) || r.spec == *spec)
                .and_then(|r| r.targets.get_mut(i))
        })
        .ok()
    }

    /// One lookup of one name: counts it, keeps its addresses on success and sets
    /// when it is due again.
    async fn resolve(&self, cluster: &str, spec: &Dns, host: &str, t: &mut Target) {
        let counts = |f: &dyn Fn(&Counts)| {
            let mut stats = self.stats.borrow_mut();
            f(stats.entry(cluster.to_string()).or_default());
        };
        counts(&|c| c.attempt.set(c.attempt.get() + 1));
        let name = host.to_string();
        let result = crate::rt::blocking("outrigger-dns", move || lookup(&name))
            .await
            .unwrap_or_else(|| Err("the resolver thread did not answer".into()));
        let wait = match result {
            Ok(all) => {
                counts(&|c| c.success.set(c.success.get() + 1));
                let addrs = spec.family.pick(&all);
                if t.addrs.as_ref() == Some(&addrs) {
                    counts(&|c| c.no_rebuild.set(c.no_rebuild.get() + 1));
                }
                t.addrs = Some(addrs);
                t.backoff = None;
                spec.refresh_rate
            }
            Err(e) => {
                counts(&|c| c.failure.set(c.failure.get() + 1));
                tracing::warn!(cluster, host, error = %e, "DNS resolution failed");
                match spec.failure_refresh {
                    None => spec.refresh_rate,
                    Some((base, max)) => {
                        // Envoy's JitteredExponentialBackOffStrategy: a random wait
                        // below the current ceiling, which doubles up to `max`.
                        let ceiling = t.backoff.unwrap_or(base);
                        t.backoff = Some((ceiling * 2).min(max));
                        let ms = ceiling.as_millis().max(1) as u64;
                        Duration::from_millis(fastrand::u64(0..ms).max(1)).min(max)
                    }
                }
            }
        };
        t.due = Instant::now() + wait;
    }

    /// The endpoints the cluster's names resolve to now, in the configured order.
    fn endpoints_of(&self, cluster: &str) -> Vec<Endpoint> {
        let clusters = self.clusters.borrow();
        let Some(r) = clusters.get(cluster) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (spec, t) in r.spec.targets.iter().zip(&r.targets) {
            let addrs = t.addrs.as_deref().unwrap_or_default();
            // LOGICAL_DNS: the first address only.
            let take = if r.spec.logical { 1 } else { addrs.len() };
            for ip in addrs.iter().take(take) {
                out.push(Endpoint {
                    addr: SocketAddr::new(*ip, spec.port),
                    ..spec.template.clone()
                });
            }
        }
        out
    }
}

/// `c` with `endpoints` (and outlier counters sized for them).
fn with_endpoints(c: &Arc<Cluster>, endpoints: Vec<Endpoint>) -> Arc<Cluster> {
    let outlier = c.outlier.as_ref().map(|o| {
        Arc::new(crate::config::outlier::Outlier::new(
            o.cfg.clone(),
            endpoints.len(),
        ))
    });
    Arc::new(Cluster {
        endpoints,
        outlier,
        ..(**c).clone()
    })
}

/// `current` with `changed` in place of its clusters of the same name (a snapshot that
/// changes only endpoints: route tables shared, listeners copied).
pub fn with_clusters(current: &Snapshot, changed: &[Arc<Cluster>]) -> Snapshot {
    Snapshot {
        version: current.version,
        admin: current.admin,
        concurrency: current.concurrency,
        drain_timeout: current.drain_timeout,
        spin_before_park: current.spin_before_park,
        max_connections: current.max_connections,
        listeners: current.listeners.clone(),
        route_tables: current.route_tables.clone(),
        clusters: current
            .clusters
            .iter()
            .map(|c| {
                changed
                    .iter()
                    .find(|n| n.name == c.name)
                    .unwrap_or(c)
                    .clone()
            })
            .collect(),
        counters: current.counters.clone(),
        histogram_buckets: current.histogram_buckets.clone(),
        route_stats: current.route_stats.clone(),
        dump: current.dump.clone(),
    }
}

/// The system resolver's addresses for `host`, in its order, each once. A name that
/// does not exist, or has no address, is an empty answer (Envoy's resolver reports
/// NXDOMAIN and NODATA as a completed resolution without addresses); anything else is
/// an error. Blocks: call it from a thread of its own.
pub fn lookup(host: &str) -> Result<Vec<IpAddr>, String> {
    let name = std::ffi::CString::new(host).map_err(|_| "the name contains a NUL byte")?;
    // SAFETY: zeroed is a valid addrinfo (all integers and null pointers).
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: a NUL-terminated name, valid hints, and an out pointer we own.
    let rc = unsafe { libc::getaddrinfo(name.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc == libc::EAI_NONAME || rc == libc::EAI_NODATA {
        return Ok(Vec::new());
    }
    if rc != 0 {
        // SAFETY: gai_strerror returns a static NUL-terminated string.
        let msg = unsafe { std::ffi::CStr::from_ptr(libc::gai_strerror(rc)) };
        return Err(msg.to_string_lossy().into_owned());
    }
    let mut out: Vec<IpAddr> = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: `p` walks the list getaddrinfo returned, until freeaddrinfo below;
        // each ai_addr is a sockaddr of the family ai_family says.
        let ai = unsafe { &*p };
        let ip = match ai.ai_family {
            libc::AF_INET if !ai.ai_addr.is_null() => {
                let sa = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in) };
                Some(IpAddr::from(u32::from_be(sa.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 if !ai.ai_addr.is_null() => {
                let sa = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in6) };
                Some(IpAddr::from(sa.sin6_addr.s6_addr))
            }
            _ => None,
        };
        if let Some(ip) = ip.filter(|ip| !out.contains(ip)) {
            out.push(ip);
        }
        p = ai.ai_next;
    }
    // SAFETY: `res` came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_reads_the_system_resolver() {
        let a = lookup("127.0.0.1").unwrap();
        assert_eq!(a, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let a = lookup("::1").unwrap();
        assert_eq!(a, vec!["::1".parse::<IpAddr>().unwrap()]);
        // localhost is in every /etc/hosts.
        let a = lookup("localhost").unwrap();
        assert!(a.iter().all(|a| a.is_loopback()) && !a.is_empty(), "{a:?}");
        assert!(lookup("bad\0name").is_err());
    }
}
