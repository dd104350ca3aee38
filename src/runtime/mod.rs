//! Process start-up: preflight checks, sockets, the worker executors (one per core,
//! pinned), the control executor, the access-log flush thread and signal handlers.

pub mod admission;
pub mod chain_drain;
pub mod control;
pub mod dns;
pub mod messages;
pub mod preflight;
pub mod sockets;
pub mod tls_watch;
pub mod worker;

use std::sync::Arc;

use crate::rt::channel::shared;
use crate::rt::executor::{LocalExecutorBuilder, Placement};

use control::{ConfigSource, SignalFlags, WorkerLink, XdsStart};

/// Locked io memory per executor: we do no direct file IO, so keep glommio's pool small.
const IO_MEMORY: usize = 128 * 1024;

/// Runs the proxy until SIGTERM/SIGINT has drained it. Errors are one line for the user.
pub fn run(
    source: ConfigSource,
    concurrency: Option<usize>,
    state_dir: Option<std::path::PathBuf>,
) -> Result<(), String> {
    let (snapshot, xds) = match xds_start(&source, state_dir)? {
        Some((s, x)) => (s, Some(x)),
        None => (
            source.load().map_err(|e| format!("invalid config:\n{e}"))?,
            None,
        ),
    };
    preflight::check_io_uring().map_err(|e| e.to_string())?;
    let workers = concurrency
        .or(snapshot.concurrency)
        .unwrap_or_else(preflight::default_concurrency)
        .max(1);
    preflight::check_memlock(workers + 1).map_err(|e| e.to_string())?;
    let cpus = preflight::allowed_cpus();

    let mut first_sockets: Vec<Vec<(String, socket2::Socket)>> =
        (0..workers).map(|_| Vec::new()).collect();
    // A virtual listener (bind_to_port: false) has no socket.
    for l in snapshot.listeners.iter().filter(|l| l.bind_to_port) {
        for (w, s) in sockets::bind_group(&l.name, l.addr, l.backlog, workers)?
            .into_iter()
            .enumerate()
        {
            first_sockets[w].push((l.name.clone(), s));
        }
    }
    let admin = match snapshot.admin {
        Some(a) => {
            Some(sockets::bind_single(a).map_err(|e| format!("admin: cannot bind {a}: {e}"))?)
        }
        None => None,
    };
    let (log_tx, log_done) = crate::observe::access_log::start_flush_thread()
        .map_err(|e| format!("cannot start log thread: {e}"))?;

    // Signal handlers set a flag, then write a byte to the control executor's wake
    // socket (registered in that order, so they run in that order); an ending worker
    // thread writes there too. The control executor sleeps on the socket: no polling.
    let (wake_rx, wake_tx) =
        std::os::unix::net::UnixStream::pair().map_err(|e| format!("control wake socket: {e}"))?;
    wake_tx
        .set_nonblocking(true)
        .map_err(|e| format!("control wake socket: {e}"))?;
    let signals = SignalFlags {
        reload: Arc::default(),
        terminate: Arc::default(),
        wake: wake_rx,
    };
    let handlers = [
        (signal_hook::consts::SIGHUP, &signals.reload),
        (signal_hook::consts::SIGTERM, &signals.terminate),
        (signal_hook::consts::SIGINT, &signals.terminate),
    ];
    for (sig, flag) in handlers {
        signal_hook::flag::register(sig, Arc::clone(flag))
            .map_err(|e| format!("signal handler: {e}"))?;
        let tx = wake_tx
            .try_clone()
            .map_err(|e| format!("control wake socket: {e}"))?;
        signal_hook::low_level::pipe::register(sig, tx)
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let wake_tx = Arc::new(wake_tx);

    let counts = Arc::new(admission::ConnCounts::default());
    let mut exits = Vec::with_capacity(workers);
    let mut links = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for id in 0..workers {
        let (to_tx, to_rx) = shared::new_bounded(64);
        let (from_tx, from_rx) = shared::new_bounded(64);
        links.push(WorkerLink {
            to: to_tx,
            from: from_rx,
        });
        let cpu = cpus.get(id % cpus.len().max(1)).copied().unwrap_or(0);
        let log_tx = log_tx.clone();
        let counts = counts.clone();
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("outrigger-w{id}"))
            .io_memory(IO_MEMORY);
        if !snapshot.spin_before_park.is_zero() {
            builder = builder.spin_before_park(snapshot.spin_before_park);
        }
        let exit = Arc::new(std::sync::atomic::AtomicBool::new(false));
        exits.push(exit.clone());
        let wake = wake_tx.clone();
        let h = builder
            .spawn(move || {
                worker::flag_exit_on_thread_end(exit, wake);
                worker::run(id, to_rx, from_tx, log_tx, counts)
            })
            .map_err(|e| format!("cannot start worker {id} on cpu {cpu}: {e}"))?;
        handles.push(h);
    }
    let listeners = snapshot.listeners.len();
    let admin_addr = snapshot.admin;
    let control = LocalExecutorBuilder::new(Placement::Unbound)
        .name("outrigger-control")
        .io_memory(IO_MEMORY)
        .spawn(move || {
            control::run(
                source,
                snapshot,
                first_sockets,
                links,
                exits,
                admin,
                signals,
                xds,
            )
        })
        .map_err(|e| format!("cannot start the control executor: {e}"))?;
    tracing::info!(
        workers,
        listeners,
        admin = %admin_addr.map_or("disabled".to_string(), |a| a.to_string()),
        "outrigger started"
    );
    let mut died = Vec::new();
    for (id, h) in handles.into_iter().enumerate() {
        if h.join().is_err() {
            died.push(id);
        }
    }
    let control = control
        .join()
        .map_err(|e| format!("control executor failed: {e}"));
    // Every worker has handed its last batch over: wait, a bounded while, for the log
    // thread to write them.
    crate::observe::access_log::finish(&log_tx, &log_done, std::time::Duration::from_secs(1));
    control?;
    if !died.is_empty() {
        // The others were drained; exit non-zero so that a supervisor restarts us.
        return Err(format!(
            "worker executor {died:?} died (see the panic above); the other workers were drained"
        ));
    }
    Ok(())
}

/// For a bootstrap with ADS: the first snapshot (the static resources, or the
/// last-known-good config from `state_dir` when there is one) and the xDS client's start.
fn xds_start(
    source: &ConfigSource,
    state_dir: Option<std::path::PathBuf>,
) -> Result<Option<(crate::config::Snapshot, XdsStart)>, String> {
    use crate::xds::state::{Kind, Store};
    let text = source.text().map_err(|e| format!("cannot read {e}"))?;
    let Some(boot) =
        crate::config::xds::xds_bootstrap(&text).map_err(|e| format!("invalid config:\n{e}"))?
    else {
        return Ok(None);
    };
    let mut store = Store::new(boot.clone());
    let mut lkg = false;
    if let Some(dir) = &state_dir {
        match crate::xds::persist::load(dir, &mut store) {
            Ok(found) => lkg = found,
            Err(e) => {
                tracing::error!("xDS: ignoring the last-known-good config: {e}");
                store = Store::new(boot);
            }
        }
    }
    if lkg {
        tracing::info!(
            "xDS: serving the last-known-good config until the management server answers"
        );
        for k in Kind::ALL {
            let t = store.ty(k);
            // A new process has seen no response: a state-of-the-world server must send
            // everything again. Every type is subscribed at once, as on a reconnect.
            t.received = !t.meta.is_empty() || k == Kind::Cluster;
            if !store.boot.delta {
                store.ty(k).version.clear();
            }
        }
    }
    let (snapshot, listeners, clusters) = store
        .rebuild()
        .map_err(|e| format!("invalid config:\n{e}"))?;
    control::check_selectors(&snapshot).map_err(|e| format!("invalid config:\n{e}"))?;
    store.dynamic.active_listeners = listeners;
    store.dynamic.active_clusters = clusters;
    Ok(Some((
        snapshot,
        XdsStart {
            store,
            state_dir,
            from_last_known_good: lkg,
        },
    )))
}
