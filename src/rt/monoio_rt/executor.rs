//! Executor threads: a monoio runtime per thread, its io_uring set up with
//! `COOP_TASKRUN | SINGLE_ISSUER`, pinned to a CPU when asked.

use std::future::Future;
use std::io;
use std::time::Duration;

/// Where an executor's thread runs.
pub enum Placement {
    /// On this CPU only.
    Fixed(usize),
    /// Wherever the scheduler puts it.
    Unbound,
}

/// Starts an executor thread.
pub struct LocalExecutorBuilder {
    placement: Placement,
    name: Option<String>,
}

/// The thread of a started executor.
pub struct ExecutorJoinHandle<T>(std::thread::JoinHandle<Option<T>>);

/// Why an executor thread gave no output: it panicked.
#[derive(Debug)]
pub struct JoinError(String);

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<T> ExecutorJoinHandle<T> {
    /// The future's output once the thread ends; `Err` if it panicked.
    pub fn join(self) -> Result<T, JoinError> {
        match self.0.join() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(JoinError("the executor ended before running".into())),
            Err(p) => Err(JoinError(
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the executor thread panicked".into()),
            )),
        }
    }
}

type Runtime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

/// A runtime on a ring set up with `COOP_TASKRUN | SINGLE_ISSUER` (Linux 6.0); on a
/// kernel that refuses them, a ring without (slower, docs/benchmarks/
/// runtime-prototypes.md, but serving).
fn runtime() -> io::Result<Runtime> {
    let build = |flags: bool| {
        let mut ring = io_uring::IoUring::builder();
        if flags {
            ring.setup_coop_taskrun().setup_single_issuer();
        }
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(1024)
            .uring_builder(ring)
            .enable_timer()
            .build()
    };
    build(true).or_else(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => {
            tracing::warn!(
                "io_uring: the kernel refuses COOP_TASKRUN | SINGLE_ISSUER; running without"
            );
            build(false)
        }
        _ => Err(e),
    })
}

impl LocalExecutorBuilder {
    pub fn new(placement: Placement) -> Self {
        LocalExecutorBuilder {
            placement,
            name: None,
        }
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// glommio's registered-buffer size; monoio has none.
    pub fn io_memory(self, _bytes: usize) -> Self {
        self
    }

    /// glommio's spin before parking; not offered by monoio. A config that sets it is
    /// told so once, instead of the setting vanishing without a word.
    pub fn spin_before_park(self, d: Duration) -> Self {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!(
                spin_before_park = ?d,
                "runtime.spin_before_park is ignored: it applies to rt-glommio builds only"
            );
        });
        self
    }

    /// Starts the thread, builds its runtime and runs the future `make` returns on it.
    /// Fails if the thread or its io_uring cannot be set up.
    pub fn spawn<G, F, T>(self, make: G) -> io::Result<ExecutorJoinHandle<T>>
    where
        G: FnOnce() -> F + Send + 'static,
        F: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
        let cpu = match self.placement {
            Placement::Fixed(c) => Some(c),
            Placement::Unbound => None,
        };
        let mut thread = std::thread::Builder::new();
        if let Some(n) = self.name {
            thread = thread.name(n);
        }
        // The sysctl a stream's writes are measured against, read here rather than by
        // the first request that needs it (a file read on the request path).
        super::net::quiet_send();
        let handle = thread.spawn(move || {
            if let Some(id) = cpu {
                if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                    let _ = ready_tx.send(Err(io::Error::other(format!("cannot pin to cpu {id}"))));
                    return None;
                }
            }
            let mut rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return None;
                }
            };
            let _ = ready_tx.send(Ok(()));
            Some(rt.block_on(crate::rt::poll_clock::Polled(make())))
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(ExecutorJoinHandle(handle)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("the executor thread ended while starting")),
        }
    }
}

/// Runs `f` to its end on a runtime on the calling thread (unit tests).
pub fn block_on<T>(f: impl Future<Output = T>) -> T {
    runtime()
        .expect("an io_uring runtime (RLIMIT_MEMLOCK, kernel support)")
        .block_on(f)
}
