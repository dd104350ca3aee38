//! Access log: workers format lines into a per-core batch; a dedicated flush thread
//! writes batches to files or stdout. A worker never touches a file and never blocks:
//! when the flush thread falls behind and its queue is full, the batch is dropped and
//! its lines are counted in `access_log_dropped`.
//!
//! A batch goes to the flush thread when it is full, or [`FLUSH_DELAY`] after its first
//! line: the first line of a batch asks the worker's housekeeping alarm to flush then,
//! so a worker that logs nothing arms no timer.
//!
//! On SIGUSR1 the flush thread closes its files and opens them again before the next
//! batch it writes (Envoy's log reopen, for rotation: rename the file, send SIGUSR1).
//! `/dev/stdout` and `/dev/stderr` are written to the process's streams.

use super::stream_info::{ResponseWants, StreamInfo, StreamLog, UpstreamWants};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::alarm::Alarm;

use crate::config::access_log_filter::LogFilter;
use crate::config::access_log_json::LogFormat;

use super::access_log_fmt::{format_line, Ctx};
use super::stats::ListenerStats;

/// A batch of complete lines for one destination (`None` is stdout).
pub struct Batch {
    pub path: Option<Arc<str>>,
    pub bytes: Vec<u8>,
}

/// How many batches may wait for the flush thread before workers start dropping.
const QUEUE_BATCHES: usize = 256;
/// A worker hands its batch over once it holds this many bytes...
const BATCH_BYTES: usize = 32 * 1024;
/// ... or this long after the batch's first line.
pub const FLUSH_DELAY: Duration = Duration::from_millis(100);

/// The path of the batch [`finish`] sends: no file can have it (a NUL byte).
const SYNC: &str = "\0sync";

/// Starts the flush thread and its SIGUSR1 handler; the returned sender is cloned into
/// every worker. The receiver hears when the thread reaches a [`finish`] marker, that
/// is, once it has written every batch sent before it.
pub fn start_flush_thread() -> std::io::Result<(SyncSender<Batch>, Receiver<()>)> {
    let (tx, rx) = sync_channel(QUEUE_BATCHES);
    let (done_tx, done_rx) = sync_channel(1);
    let reopen = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, reopen.clone())?;
    std::thread::Builder::new()
        .name("outrigger-log".into())
        .spawn(move || flush_loop(rx, &reopen, &done_tx))?;
    Ok((tx, done_rx))
}

/// At exit, after the workers have handed over their last batches: waits (at most
/// `limit`) until the flush thread has written them, so the last requests' lines are
/// not lost with the process. A marker batch goes behind them on the one queue, and
/// the thread answers when it reaches it.
pub fn finish(tx: &SyncSender<Batch>, done: &Receiver<()>, limit: Duration) {
    let marker = Batch {
        path: Some(Arc::from(SYNC)),
        bytes: Vec::new(),
    };
    if tx.try_send(marker).is_ok() {
        let _ = done.recv_timeout(limit);
    }
}

fn flush_loop(rx: Receiver<Batch>, reopen: &AtomicBool, done: &SyncSender<()>) {
    let mut files: HashMap<Arc<str>, File> = HashMap::new();
    while let Ok(batch) = rx.recv() {
        if batch.path.as_deref() == Some(SYNC) {
            let _ = done.try_send(());
            continue;
        }
        if reopen.swap(false, Ordering::Relaxed) {
            // Closed here; each opens again (by name: a renamed file is left behind)
            // on its next batch.
            files.clear();
        }
        let result = match batch.path.as_deref() {
            None | Some("/dev/stdout") => {
                let mut out = std::io::stdout().lock();
                out.write_all(&batch.bytes).and_then(|_| out.flush())
            }
            Some("/dev/stderr") => {
                let mut out = std::io::stderr().lock();
                out.write_all(&batch.bytes).and_then(|_| out.flush())
            }
            Some(_) => {
                let Some(p) = &batch.path else { continue };
                if !files.contains_key(p) {
                    match OpenOptions::new().create(true).append(true).open(&**p) {
                        Ok(f) => {
                            files.insert(p.clone(), f);
                        }
                        Err(e) => {
                            tracing::warn!(path = %p, error = %e, "cannot open access log");
                            continue;
                        }
                    }
                }
                match files.get_mut(p) {
                    Some(f) => f.write_all(&batch.bytes),
                    None => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "access log write failed");
        }
    }
}

/// One listener's access log on one core.
pub struct LogSink {
    path: Option<Arc<str>>,
    format: LogFormat,
    filter: Option<LogFilter>,
    /// What the format reads of the upstream connection (`config::AccessLog`).
    upstream: UpstreamWants,
    /// What the format prints of the response head and trailers.
    response: ResponseWants,
    listener_name: String,
    buf: RefCell<Vec<u8>>,
    /// The JSON formatter's per-value buffer, reused line after line.
    scratch: RefCell<Vec<u8>>,
    lines: Cell<u64>,
    tx: SyncSender<Batch>,
    stats: Rc<ListenerStats>,
    /// The worker's housekeeping alarm, which flushes this sink when it rings.
    alarm: Rc<Alarm>,
}

impl LogSink {
    pub fn new(
        cfg: &crate::config::AccessLog,
        listener_name: &str,
        tx: SyncSender<Batch>,
        stats: Rc<ListenerStats>,
        alarm: Rc<Alarm>,
    ) -> Self {
        LogSink {
            path: cfg.path.as_deref().map(Arc::from),
            format: cfg.format.clone(),
            filter: cfg.filter.clone(),
            upstream: UpstreamWants {
                local: cfg.upstream_local,
                tls: cfg.upstream_tls,
            },
            response: ResponseWants {
                request: true,
                head: cfg.response_headers,
                trailers: cfg.trailers,
            },
            listener_name: listener_name.to_string(),
            buf: RefCell::new(Vec::with_capacity(BATCH_BYTES)),
            scratch: RefCell::new(Vec::new()),
            lines: Cell::new(0),
            tx,
            stats,
            alarm,
        }
    }

    /// What the format prints of the upstream connection (its local address, its TLS
    /// facts): the streams logged here read those, and only they do.
    pub fn upstream_wants(&self) -> UpstreamWants {
        self.upstream
    }

    /// What the format prints of the response head and trailers: an HTTP/2 stream
    /// logged here copies those, and only those.
    pub fn response_wants(&self) -> ResponseWants {
        self.response
    }

    /// True if this sink writes where and how `cfg` asks.
    pub fn serves(&self, cfg: &crate::config::AccessLog) -> bool {
        self.path.as_deref() == cfg.path.as_deref()
            && self.format == cfg.format
            && self.filter == cfg.filter
    }

    /// Hands the current batch to the flush thread, or drops and counts it.
    pub fn flush(&self) {
        let bytes = {
            let mut b = self.buf.borrow_mut();
            if b.is_empty() {
                return;
            }
            std::mem::replace(&mut *b, Vec::with_capacity(BATCH_BYTES))
        };
        let lines = self.lines.replace(0);
        let batch = Batch {
            path: self.path.clone(),
            bytes,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(batch)
        {
            self.stats.access_log_dropped.add(lines);
        }
    }
}

impl StreamLog for LogSink {
    fn log(&self, rec: &StreamInfo, peer: SocketAddr) {
        if let Some(f) = &self.filter {
            if !super::access_log_filter::passes(f, rec) {
                return;
            }
        }
        {
            let mut b = self.buf.borrow_mut();
            if b.is_empty() {
                // A new batch: have the worker's housekeeping hand it over soon.
                self.alarm.ring_at(Instant::now() + FLUSH_DELAY);
            }
            let cx = Ctx {
                rec,
                peer,
                listener: &self.listener_name,
            };
            format_line(&mut b, &mut self.scratch.borrow_mut(), &self.format, &cx);
            self.lines.set(self.lines.get() + 1);
        }
        if self.buf.borrow().len() >= BATCH_BYTES {
            self.flush();
        }
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.flush();
    }
}

pub use super::access_log_fmt::rfc3339;
