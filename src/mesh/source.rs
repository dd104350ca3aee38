//! The mesh's configuration source: a directory of YAML files in Istio's formats
//! (`*.yaml`, `*.yml`; several documents per file), read whole and watched. A change
//! is applied after a quiet 100 ms (istiod's debounce), and only if the whole
//! directory checks: otherwise every error is logged, with its file and field, and the
//! last good mesh keeps serving.
//!
//! The directory is watched with inotify from a thread blocked in `read` (no wake-up
//! while nothing changes; the executor only hears of a change); where inotify cannot
//! be set up, its files are looked at every 500 ms instead.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use super::istio;
use super::model::Mesh;
use super::plane::Plane;

/// How often the directory is looked at without inotify.
pub const POLL: Duration = Duration::from_millis(500);
/// How long the directory must stay unchanged before a change is applied.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// The YAML files of `dir`, sorted by name.
fn files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| x == "yaml" || x == "yml")
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reads and checks every resource in `dir`.
pub fn load(dir: &Path) -> Result<Vec<istio::Resource>, Vec<String>> {
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for f in files(dir).map_err(|e| vec![e])? {
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(text) => texts.push((name, text)),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    parse_all(texts, errors)
}

/// Reads and checks every resource under the etcd prefix (each key named as a file).
pub fn load_etcd(etcd: &super::etcd::Etcd) -> Result<(i64, Vec<istio::Resource>), Vec<String>> {
    let (revision, kvs) = etcd.list().map_err(|e| vec![e])?;
    parse_all(kvs, Vec::new()).map(|r| (revision, r))
}

/// Parses (name, text) pairs and checks them together; `errors` are reported with
/// theirs.
fn parse_all(
    texts: Vec<(String, String)>,
    mut errors: Vec<String>,
) -> Result<Vec<istio::Resource>, Vec<String>> {
    let mut resources = Vec::new();
    for (name, text) in texts {
        match istio::parse_text(&text, &name) {
            Ok(r) => resources.extend(r),
            Err(e) => errors.extend(e),
        }
    }
    // The resources that parsed are checked too, so that one run reports everything.
    match Mesh::build(resources.clone()) {
        Ok(_) if errors.is_empty() => Ok(resources),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

/// What the directory looks like: each file's name, length and modification time.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?;
            Some((p, m.len(), m.modified().ok()?))
        })
        .collect()
}

/// An inotify descriptor watching `dir` for files written, moved in or out, or deleted.
struct Inotify(std::os::fd::OwnedFd);

impl Inotify {
    fn new(dir: &Path) -> Option<Inotify> {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: plain syscalls; the descriptor is owned by the returned value.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_CLOEXEC);
            if fd < 0 {
                return None;
            }
            let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mask = libc::IN_CLOSE_WRITE
                | libc::IN_MOVED_TO
                | libc::IN_MOVED_FROM
                | libc::IN_DELETE
                | libc::IN_CREATE
                | libc::IN_DELETE_SELF
                | libc::IN_MOVE_SELF;
            if libc::inotify_add_watch(fd, path.as_ptr(), mask) < 0 {
                return None;
            }
            Some(Inotify(owned))
        }
    }

    /// Blocks until something happens in the directory (on a thread of its own).
    fn wait(fd: std::os::fd::RawFd) -> bool {
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer of the given length from a descriptor the
        // watcher keeps open while this runs.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        n > 0
    }
}

/// Watches `dir` for the life of the control plane.
pub async fn watch(dir: PathBuf, plane: Rc<Plane>) {
    on_changes(&dir, fingerprint, || apply(&plane, load(&dir))).await
}

/// What an etcd prefix holds.
#[derive(Clone, Copy)]
pub enum Prefix {
    /// Istio resources, as files would.
    Mesh,
    /// Registered workloads (`registry.rs`).
    Registry,
}

/// Follows an etcd prefix for the life of the control plane: a watch from the revision
/// last read wakes it; after the debounce the whole prefix is read again. A lost watch
/// is opened again (after a second) from a fresh read. A `revision` below zero reads
/// first.
pub async fn watch_etcd(
    etcd: super::etcd::Etcd,
    plane: Rc<Plane>,
    mut revision: i64,
    what: Prefix,
) {
    if revision < 0 {
        revision = reload(&etcd, &plane, revision, what).await;
    }
    loop {
        let e = etcd.clone();
        let opened = crate::rt::blocking("outrigger-etcd", move || e.watch(revision + 1)).await;
        let mut watch = match opened {
            Some(Ok(w)) => w,
            Some(Err(e)) => {
                tracing::warn!("etcd watch: {e}; again in 1 s");
                crate::rt::sleep(Duration::from_secs(1)).await;
                revision = reload(&etcd, &plane, revision, what).await;
                continue;
            }
            None => return,
        };
        loop {
            let next = crate::rt::blocking("outrigger-etcd", move || {
                let r = watch.changed();
                (watch, r)
            })
            .await;
            let Some((w, Ok(()))) = next else {
                if let Some((_, Err(e))) = next {
                    tracing::warn!("etcd watch: {e}; again in 1 s");
                }
                crate::rt::sleep(Duration::from_secs(1)).await;
                revision = reload(&etcd, &plane, revision, what).await;
                break;
            };
            watch = w;
            crate::rt::sleep(DEBOUNCE).await;
            revision = reload(&etcd, &plane, revision, what).await;
        }
    }
}

async fn reload(etcd: &super::etcd::Etcd, plane: &Plane, last: i64, what: Prefix) -> i64 {
    match what {
        Prefix::Mesh => reload_etcd(etcd, plane, last).await,
        Prefix::Registry => reload_registry(etcd, plane, last).await,
    }
}

/// Reads the registrations again; the revision read (or `last` on failure).
async fn reload_registry(etcd: &super::etcd::Etcd, plane: &Plane, last: i64) -> i64 {
    let e = etcd.clone();
    match crate::rt::blocking("outrigger-etcd", move || e.list()).await {
        Some(Ok((revision, kvs))) => {
            if revision != last {
                let r = super::registry::from_etcd(&etcd.prefix, kvs);
                tracing::info!(workloads = r.len(), "registrations read from etcd");
                plane.set_registry(r);
            }
            revision
        }
        Some(Err(e)) => {
            tracing::warn!("etcd registrations: {e}");
            last
        }
        None => last,
    }
}

/// Reads the prefix again and applies it; the revision read (or `last` on failure).
async fn reload_etcd(etcd: &super::etcd::Etcd, plane: &Plane, last: i64) -> i64 {
    let e = etcd.clone();
    let loaded = crate::rt::blocking("outrigger-etcd", move || load_etcd(&e)).await;
    match loaded {
        Some(Ok((revision, files))) => {
            if revision != last {
                apply(plane, Ok(files));
            }
            revision
        }
        Some(Err(errors)) => {
            // Which revision failed is not known here: the next change reads again.
            apply(plane, Err(errors));
            last
        }
        None => last,
    }
}

/// Applies a load: the new mesh, or the errors (the last good mesh keeps serving).
fn apply(plane: &Plane, loaded: Result<Vec<istio::Resource>, Vec<String>>) {
    {
        let started = std::time::Instant::now();
        match loaded.and_then(|files| plane.set_files(files)) {
            Ok(mesh) => {
                tracing::info!(
                    load_ms = started.elapsed().as_millis() as u64,
                    services = mesh.services.len(),
                    workloads = mesh.workloads.len(),
                    sidecars = mesh.sidecars.len(),
                    virtual_services = mesh.virtual_services.len(),
                    destination_rules = mesh.destination_rules.len(),
                    "mesh configuration applied"
                );
                plane.errors.borrow_mut().clear();
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    "mesh configuration refused ({} errors); the last good one keeps serving",
                    errors.len()
                );
                *plane.errors.borrow_mut() = errors;
            }
        }
    }
}

/// Watches the CA's directory (`--ca-dir`): a changed root bundle or signing
/// certificate is loaded, every proxy gets a new certificate and the new bundle (a
/// root rotation, `ca.rs`); files that do not load leave the running CA in place.
pub async fn watch_ca(dir: PathBuf, plane: Rc<Plane>) {
    let pem_files = |d: &Path| {
        [
            "ca-cert.pem",
            "ca-key.pem",
            "root-cert.pem",
            "cert-chain.pem",
        ]
        .iter()
        .filter_map(|n| {
            let p = d.join(n);
            let m = std::fs::metadata(&p).ok()?;
            Some((p, m.len(), m.modified().ok()?))
        })
        .collect()
    };
    on_changes(&dir, pem_files, || plane.reload_ca(&dir)).await
}

/// Calls `apply` after each change of what `fingerprint` sees in `dir`, once the
/// directory has been quiet for the debounce.
async fn on_changes(
    dir: &Path,
    fingerprint: impl Fn(&Path) -> Vec<(PathBuf, u64, SystemTime)>,
    mut apply: impl FnMut(),
) {
    let notify = Inotify::new(dir);
    if notify.is_none() {
        tracing::warn!(dir = %dir.display(), "inotify unavailable: the directory is polled every 500 ms");
    }
    let mut last = fingerprint(dir);
    loop {
        match &notify {
            Some(n) => {
                use std::os::fd::AsRawFd;
                let fd = n.0.as_raw_fd();
                if crate::rt::blocking("outrigger-mesh-watch", move || Inotify::wait(fd)).await
                    != Some(true)
                {
                    crate::rt::sleep(POLL).await;
                }
            }
            None => crate::rt::sleep(POLL).await,
        }
        let now = fingerprint(dir);
        if now == last {
            continue;
        }
        // Wait for the writer to finish: the directory unchanged for the debounce.
        let mut settled = now;
        loop {
            crate::rt::sleep(DEBOUNCE).await;
            let again = fingerprint(dir);
            if again == settled {
                break;
            }
            settled = again;
        }
        last = settled;
        apply();
    }
}
