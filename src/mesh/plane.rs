//! The control plane's state on its executor: the mesh being served, a generation that
//! every change bumps (streams wait on it), and what each connected proxy was sent,
//! ACKed and NACKed. Single-threaded: `Rc` and `RefCell`, no locks.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::ca::{Ca, Issued};
use super::istio::{Resource, WorkloadEntry};
use super::model::Mesh;
use super::peer_auth::{CERT_SECRET, ROOT_SECRET};
use super::registry::Registry;
use super::tokens::{Identity, Tokens};
use super::translate::Proxy;

/// A proxy's view, encoded: type URL -> name -> resource.
pub type EncodedView = BTreeMap<&'static str, BTreeMap<String, Encoded>>;

/// What decides a proxy's view: its namespace, labels, whether it has a certificate,
/// and whether its traffic is captured.
type ViewKey = (String, BTreeMap<String, String>, bool, bool);

/// The secrets of one proxy (`default`, `ROOTCA`), encoded.
pub type Secrets = BTreeMap<String, Encoded>;

pub struct Plane {
    mesh: RefCell<Rc<Mesh>>,
    /// The directory's resources as last loaded; the mesh is these and the registry's.
    files: RefCell<Vec<Resource>>,
    pub registry: RefCell<Registry>,
    /// Bumped when a workload registers: the expiry task looks again.
    registered: Signal,
    /// Views by what decides them (namespace and labels), for the current mesh: the
    /// proxies of one workload kind share one translation per change.
    views: RefCell<HashMap<ViewKey, Rc<EncodedView>>>,
    generation: Signal,
    nonce: Cell<u64>,
    pub proxies: RefCell<BTreeMap<String, ProxyStatus>>,
    /// The last load's errors (empty once a load succeeds).
    pub errors: RefCell<Vec<String>>,
    pub trust_domain: String,
    /// Replaced whole when `--ca-dir` changes (a root rotation).
    ca: RefCell<Rc<Ca>>,
    /// With `--etcd`, where registrations are kept (shared by the replicas).
    pub registry_store: Option<super::etcd::Etcd>,
    /// `None`: no `--tokens`, no proxy authenticates and none gets a certificate.
    tokens: RefCell<Option<Tokens>>,
    /// Node id -> its certificate.
    certs: RefCell<HashMap<String, Rc<Certs>>>,
    /// Bumped when a certificate is issued: the renewal task looks again.
    issued: Signal,
}

/// One proxy's certificate, and its secrets as sent.
pub struct Certs {
    pub issued: Issued,
    pub secrets: Rc<Secrets>,
}

/// One proxy (by node id) as the status reports it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ProxyStatus {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub streams: u32,
    /// Type URL -> the version last sent.
    pub sent: BTreeMap<String, String>,
    /// Type URL -> the version last ACKed.
    pub acked: BTreeMap<String, String>,
    /// Type URL -> the last NACK: the version refused and the proxy's message.
    pub nacked: BTreeMap<String, Nack>,
    /// The SPIFFE ID its token stands for.
    pub identity: Option<String>,
    pub certificate: Option<CertStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    pub serial: String,
    pub not_after_unix_ms: u128,
    pub renew_at_unix_ms: u128,
}

#[derive(Debug, Clone, Serialize)]
pub struct Nack {
    pub version: String,
    pub message: String,
    pub at_unix_ms: u128,
}

/// One resource ready to send: its name, version and encoded bytes.
pub struct Encoded {
    pub name: String,
    pub version: String,
    pub bytes: Vec<u8>,
}

impl Plane {
    /// The plane serving `files` (checked: they build a mesh).
    pub fn new(
        files: Vec<Resource>,
        ca: Ca,
        tokens: Option<Tokens>,
        registry_store: Option<super::etcd::Etcd>,
    ) -> Result<Rc<Plane>, String> {
        let mesh = Mesh::build(files.clone()).map_err(|e| e.join("\n"))?;
        Ok(Rc::new(Plane {
            registry_store,
            files: RefCell::new(files),
            registry: RefCell::new(Registry::default()),
            registered: Signal::new(0),
            trust_domain: ca.trust_domain.clone(),
            ca: RefCell::new(Rc::new(ca)),
            tokens: RefCell::new(tokens),
            certs: RefCell::new(HashMap::new()),
            issued: Signal::new(0),
            mesh: RefCell::new(Rc::new(mesh)),
            views: RefCell::new(HashMap::new()),
            generation: Signal::new(1),
            nonce: Cell::new(0),
            proxies: RefCell::new(BTreeMap::new()),
            errors: RefCell::new(Vec::new()),
        }))
    }

    /// The directory's resources changed: serves them with the registered workloads, or
    /// refuses them (the last good mesh keeps serving).
    pub fn set_files(&self, files: Vec<Resource>) -> Result<Rc<Mesh>, Vec<String>> {
        let mut all = files.clone();
        all.extend(self.registry.borrow().resources());
        let mesh = Mesh::build(all)?;
        *self.files.borrow_mut() = files;
        self.replace(mesh);
        Ok(self.mesh())
    }

    /// A workload registers (or beats): `Ok(true)` when the mesh changed, `Ok(false)`
    /// for a heartbeat of the same spec; an error when the mesh would not build with it
    /// (a name the directory has, for one).
    pub fn register(
        &self,
        namespace: &str,
        name: &str,
        spec: WorkloadEntry,
        ttl: Duration,
    ) -> Result<bool, String> {
        if self.registry.borrow().get(namespace, name) == Some(&spec) {
            self.registry.borrow_mut().renew(namespace, name, ttl);
            return Ok(false);
        }
        if self.registry.borrow().len() >= super::registry::MAX_ENTRIES
            && self.registry.borrow().get(namespace, name).is_none()
        {
            return Err(format!(
                "the registry is full ({} workloads)",
                super::registry::MAX_ENTRIES
            ));
        }
        let mut next = self.registry.borrow().clone();
        next.put(namespace, name, spec, Some(ttl));
        let mut all = self.files.borrow().clone();
        all.extend(next.resources());
        let mesh = Mesh::build(all).map_err(|e| e.join("; "))?;
        *self.registry.borrow_mut() = next;
        self.replace(mesh);
        self.registered.bump();
        Ok(true)
    }

    /// Whether the mesh builds with `spec` registered as NAMESPACE/NAME (the check made
    /// before a registration is written to etcd).
    pub fn check_registration(
        &self,
        namespace: &str,
        name: &str,
        spec: &WorkloadEntry,
    ) -> Result<(), String> {
        let mut next = self.registry.borrow().clone();
        next.put(namespace, name, spec.clone(), None);
        let mut all = self.files.borrow().clone();
        all.extend(next.resources());
        Mesh::build(all).map(|_| ()).map_err(|e| e.join("; "))
    }

    /// The registry as etcd holds it now; the mesh follows.
    pub fn set_registry(&self, registry: Registry) {
        *self.registry.borrow_mut() = registry;
        self.rebuild();
    }

    /// A workload leaves; false when it was not registered.
    pub fn deregister(&self, namespace: &str, name: &str) -> bool {
        if !self.registry.borrow_mut().remove(namespace, name) {
            return false;
        }
        self.rebuild();
        true
    }

    /// The mesh again from the files and the registry (after a workload left, which
    /// cannot make it fail to build).
    fn rebuild(&self) {
        let mut all = self.files.borrow().clone();
        all.extend(self.registry.borrow().resources());
        match Mesh::build(all) {
            Ok(mesh) => self.replace(mesh),
            Err(e) => tracing::error!(
                "the mesh without a workload does not build: {}",
                e.join("; ")
            ),
        }
    }

    /// Removes the registered workloads whose heartbeats stopped, when they expire;
    /// never returns. No timer is armed while nothing is registered.
    pub async fn expire_registrations(&self) {
        loop {
            let gone = self.registry.borrow_mut().expire(std::time::Instant::now());
            if !gone.is_empty() {
                tracing::info!(workloads = ?gone, "registrations expired");
                self.rebuild();
            }
            let next = self.registry.borrow().next_expiry();
            let registered = self.registered.after(self.registered.get());
            match next {
                None => registered.await,
                Some(t) => {
                    let wait = t.saturating_duration_since(std::time::Instant::now());
                    futures_lite::future::or(registered, crate::rt::sleep(wait)).await;
                }
            }
        }
    }

    pub fn mesh(&self) -> Rc<Mesh> {
        self.mesh.borrow().clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Serves `mesh` from now on and wakes every stream to push what changed.
    pub fn replace(&self, mesh: Mesh) {
        *self.mesh.borrow_mut() = Rc::new(mesh);
        self.views.borrow_mut().clear();
        self.bump();
    }

    /// Wakes every stream to look at what it sends again.
    fn bump(&self) {
        self.generation.bump();
    }

    /// The identity of a proxy that showed `token` (`None` when the control plane has
    /// no tokens: nobody authenticates). The token must be for the proxy's namespace
    /// and, when its WorkloadEntry names one, its service account.
    pub fn authenticate(
        &self,
        token: Option<&str>,
        namespace: &str,
        service_account: Option<&str>,
    ) -> Result<Option<Identity>, String> {
        let mut tokens = self.tokens.borrow_mut();
        let Some(tokens) = tokens.as_mut() else {
            return Ok(None);
        };
        let token = token.ok_or("no `authorization: Bearer TOKEN` on the stream")?;
        let id = tokens.identify(token).ok_or("unknown token")?;
        if id.namespace != namespace {
            return Err(format!(
                "the token is for namespace {}, the workload is in {namespace}",
                id.namespace
            ));
        }
        if let Some(sa) = service_account.filter(|sa| **sa != id.service_account) {
            return Err(format!(
                "the token is for service account {}, the WorkloadEntry names {sa}",
                id.service_account
            ));
        }
        Ok(Some(id))
    }

    /// The secrets of proxy `node` with `identity`: its certificate, issued on first
    /// use and kept until renewed, and the trust bundle.
    pub fn secrets(&self, node: &str, identity: &Identity) -> Result<Rc<Secrets>, String> {
        let spiffe = self
            .ca
            .borrow()
            .spiffe_id(&identity.namespace, &identity.service_account);
        if let Some(c) = self.certs.borrow().get(node) {
            if c.issued.spiffe_id == spiffe {
                return Ok(c.secrets.clone());
            }
        }
        let c = self.issue(node, &spiffe)?;
        self.issued.bump();
        Ok(c.secrets.clone())
    }

    fn issue(&self, node: &str, spiffe: &str) -> Result<Rc<Certs>, String> {
        let ca = self.ca.borrow().clone();
        let issued = ca.issue(spiffe)?;
        let cert = serde_json::json!({"name": CERT_SECRET, "tls_certificate": {
            "certificate_chain": {"inline_string": issued.chain_pem},
            "private_key": {"inline_string": issued.key_pem}
        }});
        let root = serde_json::json!({"name": ROOT_SECRET, "validation_context": {
            "trusted_ca": {"inline_string": ca.roots_pem}
        }});
        let mut secrets = Secrets::new();
        for (name, json) in [(CERT_SECRET, cert), (ROOT_SECRET, root)] {
            let bytes = encode(SECRET_TYPE, &json)?;
            let version = resource_version(name, &bytes);
            secrets.insert(
                name.to_string(),
                Encoded {
                    name: name.to_string(),
                    version,
                    bytes,
                },
            );
        }
        tracing::info!(node = %node, identity = %spiffe, serial = %issued.serial, "certificate issued");
        let status = CertStatus {
            serial: issued.serial.clone(),
            not_after_unix_ms: unix_ms(issued.not_after),
            renew_at_unix_ms: unix_ms(issued.renew_at()),
        };
        self.with_proxy(node, |st| {
            st.identity = Some(spiffe.to_string());
            st.certificate = Some(status);
        });
        let c = Rc::new(Certs {
            issued,
            secrets: Rc::new(secrets),
        });
        self.certs.borrow_mut().insert(node.to_string(), c.clone());
        Ok(c)
    }

    /// The CA as it is now (replaced whole by a root rotation).
    pub fn ca(&self) -> Rc<Ca> {
        self.ca.borrow().clone()
    }

    /// Loads the CA from `dir` again; on success every proxy gets a certificate from
    /// it and its trust bundle (the next look at its secrets issues them).
    pub fn reload_ca(&self, dir: &std::path::Path) {
        let (td, ttl) = {
            let ca = self.ca.borrow();
            (ca.trust_domain.clone(), ca.ttl)
        };
        match Ca::load(dir, &td, ttl) {
            Ok(ca) => {
                tracing::info!(dir = %dir.display(), "CA reloaded: every certificate is issued again");
                *self.ca.borrow_mut() = Rc::new(ca);
                self.certs.borrow_mut().clear();
                self.bump();
            }
            Err(e) => tracing::error!("CA not reloaded, the running one stays: {e}"),
        }
    }

    /// Renews the certificates due, then waits for the next one due or a new one
    /// issued; never returns. No timer is armed while no certificate exists.
    pub async fn renew_certificates(&self) {
        loop {
            let now = SystemTime::now();
            // A proxy gone keeps no certificate: the next connection gets a new one.
            {
                let proxies = self.proxies.borrow();
                let connected = |n: &String| proxies.get(n).is_some_and(|p| p.streams > 0);
                self.certs.borrow_mut().retain(|n, _| connected(n));
            }
            let due: Vec<(String, String)> = self
                .certs
                .borrow()
                .iter()
                .filter(|(_, c)| c.issued.renew_at() <= now)
                .map(|(n, c)| (n.clone(), c.issued.spiffe_id.clone()))
                .collect();
            for (node, spiffe) in &due {
                if let Err(e) = self.issue(node, spiffe) {
                    tracing::error!(node = %node, "certificate not renewed: {e}");
                }
            }
            if !due.is_empty() {
                self.bump();
            }
            let next = self
                .certs
                .borrow()
                .values()
                .map(|c| c.issued.renew_at())
                .min();
            let issued = self.issued.after(self.issued.get());
            match next {
                None => issued.await,
                Some(t) => {
                    let wait = t
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    // A renewal that fails is tried again a second later, not in a loop.
                    let wait =
                        wait.max(Duration::from_millis(if due.is_empty() { 0 } else { 1000 }));
                    futures_lite::future::or(issued, crate::rt::sleep(wait)).await;
                }
            }
        }
    }

    /// Ready once the generation differs from `seen`.
    pub fn changed(&self, seen: u64) -> Signalled<'_> {
        self.generation.after(seen)
    }

    pub fn nonce(&self) -> String {
        self.nonce.set(self.nonce.get() + 1);
        self.nonce.get().to_string()
    }

    /// Everything `proxy` is sent, encoded; translated once per mesh for every proxy
    /// with the same namespace and labels.
    pub fn view(&self, proxy: &Proxy) -> Rc<EncodedView> {
        let key = (
            proxy.namespace.clone(),
            proxy.labels.clone(),
            proxy.authenticated,
            proxy.capture,
        );
        if let Some(v) = self.views.borrow().get(&key) {
            return v.clone();
        }
        let mesh = self.mesh();
        let view = super::capture::proxy_view(&mesh, proxy, &self.trust_domain);
        let encoded: EncodedView = view
            .into_iter()
            .map(|(type_url, of_type)| {
                let type_name = type_url.rsplit('/').next().unwrap_or(type_url);
                let resources = of_type
                    .into_iter()
                    .filter_map(|(name, json)| match encode(type_name, &json) {
                        Ok(bytes) => Some((
                            name.clone(),
                            Encoded {
                                version: resource_version(&name, &bytes),
                                name,
                                bytes,
                            },
                        )),
                        Err(e) => {
                            tracing::error!(resource = %name, "translation made a resource that does not encode: {e}");
                            None
                        }
                    })
                    .collect();
                (type_url, resources)
            })
            .collect();
        let v = Rc::new(encoded);
        self.views.borrow_mut().insert(key, v.clone());
        v
    }

    pub fn with_proxy(&self, id: &str, f: impl FnOnce(&mut ProxyStatus)) {
        let mut p = self.proxies.borrow_mut();
        f(p.entry(id.to_string()).or_default());
    }

    /// A NACK from proxy `id`: logged, and kept as the type's last NACK.
    pub fn record_nack(&self, id: &str, type_url: &str, version: &str, message: &str) {
        tracing::warn!(node = %id, type_url = %type_url, "NACK: {message}");
        self.with_proxy(id, |st| {
            st.nacked.insert(
                type_url.to_string(),
                Nack {
                    version: version.to_string(),
                    message: message.to_string(),
                    at_unix_ms: now_ms(),
                },
            );
        });
    }

    /// `/proxies` on the admin port.
    pub fn status(&self) -> Value {
        serde_json::json!({
            "generation": self.generation(),
            "errors": *self.errors.borrow(),
            "proxies": *self.proxies.borrow(),
        })
    }
}

fn encode(type_name: &str, json: &Value) -> Result<Vec<u8>, String> {
    crate::config::xds::encode_json(type_name, json)
}

/// A resource's version: a hash of its name and bytes.
fn resource_version(name: &str, bytes: &[u8]) -> String {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    h.update(name.as_bytes());
    h.update(&[0]);
    h.update(bytes);
    format!("{:016x}", h.digest())
}

/// The version of a set of resources, from their names and own versions (each already
/// a hash of its bytes): a stream does not hash the bytes again on every push.
pub fn set_version<'a>(items: impl Iterator<Item = &'a Encoded>) -> String {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for e in items {
        h.update(e.name.as_bytes());
        h.update(&[0]);
        h.update(e.version.as_bytes());
    }
    format!("{:016x}", h.digest())
}

pub fn now_ms() -> u128 {
    unix_ms(SystemTime::now())
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

const SECRET_TYPE: &str = "envoy.extensions.transport_sockets.tls.v3.Secret";

/// A counter that tasks wait on (the mesh's generation, certificates issued,
/// workloads registered): `bump` moves it and wakes every waiter.
struct Signal {
    n: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Signal {
    fn new(n: u64) -> Signal {
        Signal {
            n: Cell::new(n),
            waiters: RefCell::new(Vec::new()),
        }
    }

    fn get(&self) -> u64 {
        self.n.get()
    }

    fn bump(&self) {
        self.n.set(self.n.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Ready once the counter differs from `seen`.
    fn after(&self, seen: u64) -> Signalled<'_> {
        Signalled { signal: self, seen }
    }
}

pub struct Signalled<'a> {
    signal: &'a Signal,
    seen: u64,
}

impl Future for Signalled<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.get() != self.seen {
            return Poll::Ready(());
        }
        // A stream waits again after each message it reads: keep one waker per task.
        let mut w = self.signal.waiters.borrow_mut();
        if !w.iter().any(|w| w.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
