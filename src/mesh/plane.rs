//! The control plane's state on its executor: the mesh being served, a generation that
//! every change bumps (streams wait on it), and what each connected proxy was sent,
//! ACKed and NACKed. Single-threaded: `Rc` and `RefCell`, no locks.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::model::Mesh;
use super::translate::{self, Proxy};

pub struct Plane {
    mesh: RefCell<Rc<Mesh>>,
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

    /// The resources of `type_url` for `proxy`, encoded, by name.
    pub fn resources(&self, proxy: &Proxy, type_url: &str) -> BTreeMap<String, Encoded> {
        let mesh = self.mesh();
        let mut view = translate::view(&mesh, proxy);
        let Some(of_type) = view.remove(type_url) else {
            return BTreeMap::new();
        };
        let type_name = type_url.rsplit('/').next().unwrap_or(type_url);
        of_type
            .into_iter()
            .filter_map(|(name, json)| match encode(type_name, &json) {
                Ok(bytes) => Some((
                    name.clone(),
                    Encoded {
                        version: version_of(&[(&name, &bytes)]),
                        name,
                        bytes,
                    },
                )),
                Err(e) => {
                    tracing::error!(resource = %name, "translation made a resource that does not encode: {e}");
                    None
                }
            })
            .collect()
    }

    pub fn with_proxy(&self, id: &str, f: impl FnOnce(&mut ProxyStatus)) {
        let mut p = self.proxies.borrow_mut();
        f(p.entry(id.to_string()).or_default());
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

/// A version for a set of resources: a hash of their names and bytes.
pub fn version_of(items: &[(&String, &Vec<u8>)]) -> String {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for (n, b) in items {
        h.update(n.as_bytes());
        h.update(&[0]);
        h.update(b);
        h.update(&(b.len() as u64).to_le_bytes());
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
