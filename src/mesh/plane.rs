//! The control plane's state on its executor: the mesh being served, a generation that
//! every change bumps (streams wait on it), and what each connected proxy was sent,
//! ACKed and NACKed. Single-threaded: `Rc` and `RefCell`, no locks.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::model::Mesh;
use super::translate::{self, Proxy};

/// A proxy's view, encoded: type URL -> name -> resource.
pub type EncodedView = BTreeMap<&'static str, BTreeMap<String, Encoded>>;

/// What decides a proxy's view: its namespace and labels.
type ViewKey = (String, BTreeMap<String, String>);

pub struct Plane {
    mesh: RefCell<Rc<Mesh>>,
    /// Views by what decides them (namespace and labels), for the current mesh: the
    /// proxies of one workload kind share one translation per change.
    views: RefCell<HashMap<ViewKey, Rc<EncodedView>>>,
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    nonce: Cell<u64>,
    pub proxies: RefCell<BTreeMap<String, ProxyStatus>>,
    /// The last load's errors (empty once a load succeeds).
    pub errors: RefCell<Vec<String>>,
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
    pub fn new(mesh: Mesh) -> Rc<Plane> {
        Rc::new(Plane {
            mesh: RefCell::new(Rc::new(mesh)),
            views: RefCell::new(HashMap::new()),
            generation: Cell::new(1),
            waiters: RefCell::new(Vec::new()),
            nonce: Cell::new(0),
            proxies: RefCell::new(BTreeMap::new()),
            errors: RefCell::new(Vec::new()),
        })
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
        self.generation.set(self.generation.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Ready once the generation differs from `seen`.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed { plane: self, seen }
    }

    pub fn nonce(&self) -> String {
        self.nonce.set(self.nonce.get() + 1);
        self.nonce.get().to_string()
    }

    /// Everything `proxy` is sent, encoded; translated once per mesh for every proxy
    /// with the same namespace and labels.
    pub fn view(&self, proxy: &Proxy) -> Rc<EncodedView> {
        let key = (proxy.namespace.clone(), proxy.labels.clone());
        if let Some(v) = self.views.borrow().get(&key) {
            return v.clone();
        }
        let mesh = self.mesh();
        let view = translate::view(&mesh, proxy);
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
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

pub struct Changed<'a> {
    plane: &'a Plane,
    seen: u64,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.plane.generation.get() != self.seen {
            return Poll::Ready(());
        }
        // A stream waits again after each message it reads: keep one waker per task.
        let mut w = self.plane.waiters.borrow_mut();
        if !w.iter().any(|w| w.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
