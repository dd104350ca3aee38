//! What the xDS client holds: the accepted resources of each type with their versions,
//! the last rejection per resource, what is still warming, and how an update becomes a
//! candidate snapshot. Control plane only; no IO here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::Any;
use serde_json::{json, Value};

use crate::config::xds::{self, Dynamic, XdsBootstrap};
use crate::config::Snapshot;

/// Resource types, in Envoy's order of subscription on an ADS stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cluster = 0,
    Endpoint = 1,
    Listener = 2,
    Route = 3,
    Secret = 4,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Cluster,
        Kind::Endpoint,
        Kind::Listener,
        Kind::Route,
        Kind::Secret,
    ];

    pub fn message(self) -> &'static str {
        match self {
            Kind::Cluster => xds::CLUSTER,
            Kind::Endpoint => xds::ENDPOINT,
            Kind::Listener => xds::LISTENER,
            Kind::Route => xds::ROUTE,
            Kind::Secret => xds::SECRET,
        }
    }

    pub fn type_url(self) -> String {
        format!("type.googleapis.com/{}", self.message())
    }

    pub fn from_url(url: &str) -> Option<Kind> {
        let name = url.rsplit('/').next().unwrap_or(url);
        Kind::ALL.into_iter().find(|k| k.message() == name)
    }

    /// LDS and CDS subscribe to everything; RDS, EDS and SDS to the names they need.
    pub fn wildcard(self) -> bool {
        matches!(self, Kind::Cluster | Kind::Listener)
    }

    /// How a resource of this type is named in errors.
    fn label(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Endpoint => "cluster_load_assignment",
            Kind::Listener => "listener",
            Kind::Route => "route_configuration",
            Kind::Secret => "secret",
        }
    }
}

/// An accepted resource, for `/config_dump` and resubscription.
#[derive(Clone, Debug)]
pub struct Meta {
    pub version: String,
    pub updated: SystemTime,
    pub json: Value,
}

/// The last rejected update that carried a resource.
#[derive(Clone, Debug)]
pub struct Failure {
    pub details: String,
    pub version: String,
    pub at: SystemTime,
}

#[derive(Default, Debug)]
pub struct TypeState {
    /// The last accepted version (SotW `version_info`, delta `system_version_info`).
    pub version: String,
    /// The last nonce received on the current stream.
    pub nonce: String,
    pub meta: BTreeMap<String, Meta>,
    pub failures: BTreeMap<String, Failure>,
    /// A response of this type has been handled (accepted or rejected) since start.
    pub received: bool,
    /// The names subscribed on the current stream (`None`: no request yet).
    pub sent: Option<BTreeSet<String>>,
}

/// One resource of a response: its name as the server gave it (delta), its own version
/// (delta), and the payload.
pub struct Incoming {
    pub name: Option<String>,
    pub version: Option<String>,
    pub any: Any,
}

/// A checked update, not yet in force.
pub struct Prepared {
    kind: Kind,
    version: String,
    dynamic: Dynamic,
    metas: Vec<(String, Meta)>,
    removed: Vec<String>,
    pub snapshot: Option<Snapshot>,
    used_listeners: BTreeMap<String, Listener>,
    used_clusters: BTreeMap<String, Cluster>,
    /// Resources refused one by one (name, detail): the update applies without them
    /// and is NACKed.
    errors: Vec<(String, String)>,
}

impl Prepared {
    /// The NACK's detail when some resources were refused.
    pub fn error_detail(&self) -> Option<String> {
        (!self.errors.is_empty()).then(|| {
            self.errors
                .iter()
                .map(|(_, d)| d.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }
}

/// A snapshot of what is held, and the listeners and clusters it uses.
pub type Rebuilt = (
    Snapshot,
    BTreeMap<String, Listener>,
    BTreeMap<String, Cluster>,
);

pub struct Store {
    pub boot: XdsBootstrap,
    pub dynamic: Dynamic,
    pub types: [TypeState; 5],
    /// `cds`, `lds`, `eds:NAME`, `rds:NAME`, `sds:NAME`: subscriptions whose initial
    /// fetch timed out.
    pub expired: BTreeSet<String>,
    /// The same keys, for the subscriptions still awaiting their first response, each
    /// with the time its initial fetch times out (`None`: a zero
    /// `initial_fetch_timeout`, never).
    pending: BTreeMap<String, Option<Instant>>,
}

impl Store {
    pub fn new(boot: XdsBootstrap) -> Store {
        Store {
            boot,
            dynamic: Dynamic::default(),
            types: Default::default(),
            expired: BTreeSet::new(),
            pending: BTreeMap::new(),
        }
    }

    pub fn ty(&mut self, k: Kind) -> &mut TypeState {
        &mut self.types[k as usize]
    }

    /// The subscription of `k` has its first response, or its initial fetch timed out:
    /// what depends on it may start (Envoy's init manager moves on either way).
    pub fn fetched(&self, k: Kind) -> bool {
        let key = match k {
            Kind::Cluster => "cds",
            Kind::Listener => "lds",
            _ => return self.types[k as usize].received,
        };
        self.types[k as usize].received || self.expired.contains(key)
    }

    /// Starts the initial-fetch clock of every subscription that awaits its first
    /// response, each with its own `initial_fetch_timeout` (Envoy's: CDS and LDS from
    /// the bootstrap's `cds_config` and `lds_config`, EDS from the cluster's
    /// `eds_config`, RDS from the connection manager's `rds.config_source`, SDS from the
    /// secret's `sds_config`); stops the satisfied ones. A subscription that goes away
    /// forgets its timeout, so one made again warms again.
    pub fn track_pending(&mut self, now: Instant) {
        let mut awaited: BTreeMap<String, Option<Duration>> = BTreeMap::new();
        if !self.types[Kind::Cluster as usize].received {
            awaited.insert("cds".into(), self.boot.cds_fetch_timeout);
        }
        let statics = self.boot.bootstrap.static_resources.as_ref();
        let clusters: Vec<&Cluster> = statics
            .map(|s| &s.clusters[..])
            .unwrap_or_default()
            .iter()
            .chain(self.dynamic.clusters.values())
            .collect();
        let listeners: Vec<&Listener> = statics
            .map(|s| &s.listeners[..])
            .unwrap_or_default()
            .iter()
            .chain(self.dynamic.listeners.values())
            .collect();
        let mut wanted = BTreeSet::new();
        if self.fetched(Kind::Cluster) {
            for c in &clusters {
                if let Some(n) = xds::eds_name(c) {
                    let key = format!("eds:{n}");
                    wanted.insert(key.clone());
                    if !self.dynamic.endpoints.contains_key(&n) {
                        awaited.entry(key).or_insert(xds::eds_fetch_timeout(c));
                    }
                }
            }
            let secrets = clusters
                .iter()
                .flat_map(|c| xds::sds_sources_cluster(c))
                .chain(listeners.iter().flat_map(|l| xds::sds_sources_listener(l)));
            for (n, t) in secrets {
                let key = format!("sds:{n}");
                wanted.insert(key.clone());
                if !self.dynamic.secrets.contains_key(&n) {
                    awaited.entry(key).or_insert(t);
                }
            }
        }
        let eds_warm = !awaited
            .keys()
            .any(|k| k.starts_with("eds:") && !self.expired.contains(k));
        if self.fetched(Kind::Cluster) && eds_warm && !self.types[Kind::Listener as usize].received
        {
            awaited.insert("lds".into(), self.boot.lds_fetch_timeout);
        }
        if self.fetched(Kind::Listener) {
            for (n, t) in listeners.iter().flat_map(|l| xds::rds_sources(l)) {
                let key = format!("rds:{n}");
                wanted.insert(key.clone());
                if !self.dynamic.routes.contains_key(&n) {
                    awaited.entry(key).or_insert(t);
                }
            }
        }
        self.expired
            .retain(|k| k == "cds" || k == "lds" || wanted.contains(k));
        awaited.retain(|k, _| !self.expired.contains(k));
        self.pending.retain(|k, _| awaited.contains_key(k));
        for (k, t) in awaited {
            self.pending
                .entry(k)
                .or_insert_with(|| t.and_then(|t| now.checked_add(t)));
        }
    }

    /// Whether every cluster that awaits endpoints has them (or gave up waiting).
    pub fn clusters_warm(&self) -> bool {
        !self.pending.keys().any(|k| k.starts_with("eds:"))
    }

    /// Nothing awaits its first response (or all that do have timed out).
    pub fn nothing_pending(&self) -> bool {
        self.pending.is_empty()
    }

    /// When the next initial fetch times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().flatten().min().copied()
    }

    /// Moves timed-out subscriptions to `expired`; true if any did.
    pub fn expire(&mut self, now: Instant) -> bool {
        let gone: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, d)| d.is_some_and(|d| now >= d))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            tracing::warn!("xDS: initial fetch of {k} timed out");
            self.pending.remove(k);
            self.expired.insert(k.clone());
        }
        !gone.is_empty()
    }

    /// Checks an update of `k`: `resources` replace or add, `removed` go, and with
    /// `full_set` (SotW LDS/CDS) every resource of the type not in it goes too. With
    /// `asked`, resources of other names are ignored.
    ///
    /// As in Envoy, resources are judged one by one: one that fails its checks keeps
    /// the version held before (or stays absent) while the others apply, and the update
    /// is then NACKed with every failure (`Prepared::errors`). A response that cannot
    /// even be decoded (not protobuf, a foreign type, duplicate names) is refused whole:
    /// the `Err` is the NACK's `error_detail`. Details name the resource and the field.
    pub fn prepare(
        &mut self,
        k: Kind,
        version: &str,
        resources: Vec<Incoming>,
        removed: Vec<String>,
        full_set: bool,
        asked: Option<&BTreeSet<String>>,
    ) -> Result<Prepared, String> {
        let mut d = self.dynamic.clone();
        let now = SystemTime::now();
        let mut metas = Vec::new();
        let mut names = BTreeSet::new();
        let mut errors: Vec<(String, String)> = Vec::new();
        let url = k.type_url();
        for (i, r) in resources.into_iter().enumerate() {
            let label = |name: &Option<String>| match name {
                Some(n) => format!("{} `{n}`", k.label()),
                None => format!("resources[{i}]"),
            };
            let whole = |s: &mut Store, names: &BTreeSet<String>, detail: String| {
                Err(s.fail(k, version, names, detail))
            };
            if r.any.type_url != url {
                let detail = format!(
                    "{}: type `{}` in a response for `{url}`",
                    label(&r.name),
                    r.any.type_url
                );
                return whole(self, &names, detail);
            }
            let (name, json) = match decode(k, &r.any.value, &mut d) {
                Ok(v) => v,
                // Not asked for (SotW RDS, EDS, SDS): ignored, as Envoy delivers a
                // response's resources only to the watches that name them.
                Err((Some(found), _, _)) if asked.is_some_and(|a| !a.contains(&found)) => continue,
                // Named, but refused by the checks: this resource only.
                Err((Some(found), path, message)) => {
                    let detail = format!("{}: {path}: {message}", label(&Some(found.clone())));
                    if !names.insert(found.clone()) {
                        let detail = format!("{} `{found}`: duplicate resource", k.label());
                        return whole(self, &names, detail);
                    }
                    errors.push((found, detail));
                    continue;
                }
                Err((None, path, message)) => {
                    let detail = format!("{}: {path}: {message}", label(&r.name));
                    return whole(self, &names, detail);
                }
            };
            if let Some(n) = &r.name {
                if *n != name {
                    let detail = format!("{}: the resource is named `{name}`", label(&r.name));
                    return whole(self, &names, detail);
                }
            }
            if asked.is_some_and(|a| !a.contains(&name)) {
                revert(k, &mut d, &self.dynamic, &name);
                continue;
            }
            if !names.insert(name.clone()) {
                let detail = format!("{} `{name}`: duplicate resource", k.label());
                return whole(self, &names, detail);
            }
            metas.push((
                name,
                Meta {
                    version: r.version.unwrap_or_else(|| version.to_string()),
                    updated: now,
                    json,
                },
            ));
        }
        let mut gone = removed;
        if k == Kind::Secret && !gone.is_empty() {
            // Envoy ignores it ("Server sent a delta SDS update attempting to remove a
            // resource"): the secret stays until nothing references it.
            tracing::warn!("xDS: ignoring the removal of secrets {gone:?}, as Envoy does");
            gone.clear();
        }
        if full_set {
            let t = &self.types[k as usize];
            gone.extend(
                t.meta
                    .keys()
                    .chain(t.failures.keys().filter(|n| !n.is_empty()))
                    .filter(|n| !names.contains(*n))
                    .cloned()
                    .collect::<BTreeSet<String>>(),
            );
        }
        for n in &gone {
            revert(k, &mut d, &Dynamic::default(), n);
        }
        // A resource that the assembled config refuses (a route naming no cluster, a
        // listener on a taken address) is set back like one that failed its checks.
        let assembled = loop {
            match xds::assemble(&self.boot, &d, &self.expired, Value::Null) {
                Ok(a) => break a,
                Err(e) => {
                    let culprit = e.0.iter().find_map(|err| {
                        let own = |n: &str| err.path.starts_with(&format!("{} `{n}`", k.label()));
                        metas
                            .iter()
                            .position(|(n, _)| own(n))
                            .map(|i| (i, err.to_string()))
                            .or_else(|| secret_culprit(k, &d, &metas, err))
                    });
                    let Some((i, detail)) = culprit else {
                        return Err(self.fail(k, version, &names, e.to_string()));
                    };
                    let (n, _) = metas.remove(i);
                    revert(k, &mut d, &self.dynamic, &n);
                    errors.push((n, detail));
                }
            }
        };
        Ok(Prepared {
            kind: k,
            version: version.to_string(),
            dynamic: d,
            metas,
            removed: gone,
            snapshot: Some(assembled.snapshot),
            used_listeners: assembled.used_listeners,
            used_clusters: assembled.used_clusters,
            errors,
        })
    }

    /// Records a rejection against the resources it carried; returns the details.
    fn fail(
        &mut self,
        k: Kind,
        version: &str,
        names: &BTreeSet<String>,
        details: String,
    ) -> String {
        let at = SystemTime::now();
        let t = &mut self.types[k as usize];
        let f = Failure {
            details: details.clone(),
            version: version.to_string(),
            at,
        };
        if names.is_empty() {
            t.failures.insert(String::new(), f);
        } else {
            for n in names {
                t.failures.insert(n.clone(), f.clone());
            }
        }
        details
    }

    /// Rejects a prepared update that could not be put in force (a socket that would not
    /// bind); returns the details.
    pub fn reject(&mut self, p: Prepared, details: String) -> String {
        let names: BTreeSet<String> = p.metas.into_iter().map(|(n, _)| n).collect();
        self.fail(p.kind, &p.version, &names, details)
    }

    /// Puts a prepared update in force (its snapshot has been published). With refused
    /// resources, the type keeps its previous version (the NACK carries it) and each of
    /// them records its failure.
    pub fn commit(&mut self, p: Prepared) {
        let at = SystemTime::now();
        let t = &mut self.types[p.kind as usize];
        for (n, details) in &p.errors {
            t.failures.insert(
                n.clone(),
                Failure {
                    details: details.clone(),
                    version: p.version.clone(),
                    at,
                },
            );
        }
        if p.errors.is_empty() {
            t.version = p.version;
        }
        for n in &p.removed {
            t.meta.remove(n);
            t.failures.remove(n);
        }
        for (n, m) in p.metas {
            t.failures.remove(&n);
            t.meta.insert(n, m);
        }
        t.failures.remove("");
        self.dynamic = p.dynamic;
        self.dynamic.active_listeners = p.used_listeners;
        self.dynamic.active_clusters = p.used_clusters;
        self.accept_routes();
    }

    /// A snapshot is in force: its route configurations count as checked.
    pub fn accept_routes(&mut self) {
        let statics = self.boot.bootstrap.static_resources.as_ref();
        let statics = statics.map(|s| &s.listeners[..]).unwrap_or_default();
        self.dynamic.accept_routes(statics);
    }

    /// A snapshot of what is held now (after a warming timeout or at boot).
    pub fn rebuild(&mut self) -> Result<Rebuilt, String> {
        let a = xds::assemble(&self.boot, &self.dynamic, &self.expired, Value::Null)
            .map_err(|e| e.to_string())?;
        Ok((a.snapshot, a.used_listeners, a.used_clusters))
    }

    /// `/config_dump` in Envoy's `ConfigDump` shape: the bootstrap and static resources
    /// as written, and each dynamic resource with its version, last update and the last
    /// rejection that named it.
    pub fn dump(&self) -> Value {
        let mut dump = xds::static_dump(&self.boot);
        let ts = |t: SystemTime| {
            let mut out = Vec::new();
            crate::observe::access_log::rfc3339(&mut out, t);
            Value::String(String::from_utf8_lossy(&out).into_owned())
        };
        let error = |k: Kind, name: &str| {
            self.types[k as usize].failures.get(name).map(|f| {
                json!({
                    "details": f.details,
                    "version_info": f.version,
                    "last_update_attempt": ts(f.at),
                })
            })
        };
        let entries = |k: Kind, field: &str| -> Vec<Value> {
            let t = &self.types[k as usize];
            let mut names: BTreeSet<&String> = t.meta.keys().collect();
            names.extend(t.failures.keys().filter(|n| !n.is_empty()));
            names
                .into_iter()
                .map(|n| {
                    let mut e = serde_json::Map::new();
                    if let Some(m) = t.meta.get(n) {
                        if !m.version.is_empty() {
                            e.insert("version_info".into(), json!(m.version));
                        }
                        e.insert(field.into(), typed(m.json.clone(), k.message()));
                        e.insert("last_updated".into(), ts(m.updated));
                    }
                    if let Some(err) = error(k, n) {
                        e.insert("error_state".into(), err);
                    }
                    if k == Kind::Secret {
                        e.insert("name".into(), json!(n));
                    }
                    if k == Kind::Listener {
                        let mut l = serde_json::Map::new();
                        l.insert("name".into(), json!(n));
                        if let Some(err) = e.remove("error_state") {
                            l.insert("error_state".into(), err);
                        }
                        if !e.is_empty() {
                            l.insert("active_state".into(), Value::Object(e));
                        }
                        return Value::Object(l);
                    }
                    Value::Object(e)
                })
                .collect()
        };
        let warming_clusters: Vec<Value> = self
            .dynamic
            .clusters
            .keys()
            .filter(|n| !self.dynamic.active_clusters.contains_key(*n))
            .filter_map(|n| self.types[0].meta.get(n).map(|m| (n, m)))
            .map(|(_, m)| {
                json!({"version_info": m.version, "cluster": typed(m.json.clone(), xds::CLUSTER), "last_updated": ts(m.updated)})
            })
            .collect();
        let active_clusters: Vec<Value> = entries(Kind::Cluster, "cluster")
            .into_iter()
            .filter(|e| {
                e.get("cluster")
                    .and_then(|c| c.get("name"))
                    .and_then(Value::as_str)
                    .is_none_or(|n| self.dynamic.active_clusters.contains_key(n))
            })
            .collect();
        if let Some(configs) = dump.get_mut("configs").and_then(Value::as_array_mut) {
            for c in configs.iter_mut() {
                let Some(o) = c.as_object_mut() else { continue };
                let t = o
                    .get("@type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                // Proto3 JSON leaves out empty strings and lists, as Envoy's dump does.
                let mut put = |k: &str, v: Value| {
                    let empty = v.as_str().is_some_and(str::is_empty)
                        || v.as_array().is_some_and(Vec::is_empty);
                    if !empty {
                        o.insert(k.into(), v);
                    }
                };
                if t.ends_with("ClustersConfigDump") {
                    put("version_info", json!(self.types[0].version));
                    put("dynamic_active_clusters", json!(active_clusters));
                    put("dynamic_warming_clusters", json!(warming_clusters));
                } else if t.ends_with("ListenersConfigDump") {
                    put("version_info", json!(self.types[2].version));
                    put(
                        "dynamic_listeners",
                        json!(entries(Kind::Listener, "listener")),
                    );
                } else if t.ends_with("RoutesConfigDump") {
                    put(
                        "dynamic_route_configs",
                        json!(entries(Kind::Route, "route_config")),
                    );
                }
            }
            let endpoints = entries(Kind::Endpoint, "endpoint_config");
            let mut e = json!({"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"});
            if !endpoints.is_empty() {
                e["dynamic_endpoint_configs"] = json!(endpoints);
            }
            configs.push(e);
            // Envoy's SecretsConfigDump: each secret with its name.
            let secrets = entries(Kind::Secret, "secret");
            let mut sd = json!({"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump"});
            if !secrets.is_empty() {
                sd["dynamic_active_secrets"] = json!(secrets);
            }
            configs.push(sd);
        }
        dump
    }
}

fn typed(mut v: Value, message: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "@type".into(),
            json!(format!("type.googleapis.com/{message}")),
        );
    }
    v
}

/// A secret's error shows where a listener or cluster reads it (`listener `l`: ...`):
/// the first secret of the update that this listener or cluster takes is the culprit,
/// and the detail names it.
fn secret_culprit(
    k: Kind,
    d: &Dynamic,
    metas: &[(String, Meta)],
    err: &crate::config::ConfigError,
) -> Option<(usize, String)> {
    if k != Kind::Secret {
        return None;
    }
    let taken: Vec<String> = d
        .listeners
        .iter()
        .filter(|(n, _)| err.path.starts_with(&format!("listener `{n}`")))
        .flat_map(|(_, l)| xds::sds_names_listener(l))
        .chain(
            d.clusters
                .iter()
                .filter(|(n, _)| err.path.starts_with(&format!("cluster `{n}`")))
                .flat_map(|(_, c)| xds::sds_names_cluster(c)),
        )
        .collect();
    let i = metas.iter().position(|(n, _)| taken.contains(n))?;
    let name = &metas.get(i)?.0;
    Some((i, format!("secret `{name}`: {err}")))
}

/// Sets resource `n` of type `k` in `d` back to its version in `old` (or removes it).
fn revert(k: Kind, d: &mut Dynamic, old: &Dynamic, n: &str) {
    fn set<T: Clone>(m: &mut BTreeMap<String, T>, old: &BTreeMap<String, T>, n: &str) {
        match old.get(n) {
            Some(v) => drop(m.insert(n.to_string(), v.clone())),
            None => drop(m.remove(n)),
        }
    }
    match k {
        Kind::Listener => set(&mut d.listeners, &old.listeners, n),
        Kind::Cluster => set(&mut d.clusters, &old.clusters, n),
        Kind::Route => set(&mut d.routes, &old.routes, n),
        Kind::Endpoint => set(&mut d.endpoints, &old.endpoints, n),
        Kind::Secret => set(&mut d.secrets, &old.secrets, n),
    }
}

/// Decodes one resource into `d`; returns its name and JSON. An error carries the
/// resource's name when the bytes at least decode (so a NACK names it).
type DecodeError = (Option<String>, String, String);

fn decode(k: Kind, bytes: &[u8], d: &mut Dynamic) -> Result<(String, Value), DecodeError> {
    fn one<M: prost::Message + Default>(
        k: Kind,
        bytes: &[u8],
        name: impl Fn(&M) -> &str,
    ) -> Result<(String, M, Value), DecodeError> {
        match xds::decode_resource::<M>(k.message(), bytes) {
            Ok((m, j)) => {
                let n = name(&m);
                if n.is_empty() {
                    return Err((None, "name".into(), "is required".into()));
                }
                Ok((n.to_string(), m, j))
            }
            Err((path, message)) => {
                let n = M::decode(bytes)
                    .ok()
                    .map(|m| name(&m).to_string())
                    .filter(|n| !n.is_empty());
                Err((n, path, message))
            }
        }
    }
    let (n, j) = match k {
        Kind::Listener => {
            let (n, m, j) = one::<Listener>(k, bytes, |m| &m.name)?;
            d.listeners.insert(n.clone(), m);
            (n, j)
        }
        Kind::Cluster => {
            let (n, m, j) = one::<Cluster>(k, bytes, |m| &m.name)?;
            d.clusters.insert(n.clone(), m);
            (n, j)
        }
        Kind::Route => {
            let (n, m, j) = one::<RouteConfiguration>(k, bytes, |m| &m.name)?;
            d.routes.insert(n.clone(), m);
            (n, j)
        }
        Kind::Endpoint => {
            let (n, m, j) = one::<ClusterLoadAssignment>(k, bytes, |m| &m.cluster_name)?;
            d.endpoints.insert(n.clone(), m);
            (n, j)
        }
        Kind::Secret => {
            let (n, m, j) = one::<Secret>(k, bytes, |m| &m.name)?;
            d.secrets.insert(n.clone(), m);
            (n, redact(j))
        }
    };
    Ok((n, j))
}

/// A secret's JSON for `/config_dump`: inline private keys read `[redacted]`, as in
/// Envoy's dump.
fn redact(mut j: Value) -> Value {
    if let Some(key) = j
        .get_mut("tls_certificate")
        .and_then(|t| t.get_mut("private_key"))
        .and_then(Value::as_object_mut)
    {
        for field in ["inline_string", "inline_bytes"] {
            if let Some(v) = key.get_mut(field) {
                *v = json!("[redacted]");
            }
        }
    }
    j
}
