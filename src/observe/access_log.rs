//! Access log: workers format lines into a per-core batch; a dedicated flush thread
//! writes batches to files or stdout. A worker never touches a file and never blocks:
//! when the flush thread falls behind and its queue is full, the batch is dropped and
//! its lines are counted in `access_log_dropped`.
//!
//! A batch goes to the flush thread when it is full, or [`FLUSH_DELAY`] after its first
//! line: the first line of a batch asks the worker's housekeeping alarm to flush then,
//! so a worker that logs nothing arms no timer.

use super::stream_info::{StreamInfo, StreamLog};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::alarm::Alarm;

use crate::config::access_log_format::{LogField, LogFormat};
use crate::http::flags::ResponseFlag;
use crate::http::h1::encode::push_u64;

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

/// Starts the flush thread; the returned sender is cloned into every worker.
pub fn start_flush_thread() -> std::io::Result<SyncSender<Batch>> {
    let (tx, rx) = sync_channel(QUEUE_BATCHES);
    std::thread::Builder::new()
        .name("outrigger-log".into())
        .spawn(move || flush_loop(rx))?;
    Ok(tx)
}

fn flush_loop(rx: Receiver<Batch>) {
    let mut files: HashMap<Arc<str>, File> = HashMap::new();
    while let Ok(batch) = rx.recv() {
        let result = match &batch.path {
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&batch.bytes).and_then(|_| out.flush())
            }
            Some(p) => {
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
    listener_name: String,
    buf: RefCell<Vec<u8>>,
    lines: Cell<u64>,
    tx: SyncSender<Batch>,
    stats: Rc<ListenerStats>,
    /// The worker's housekeeping alarm, which flushes this sink when it rings.
    alarm: Rc<Alarm>,
}

impl LogSink {
    pub fn new(
        path: Option<&str>,
        format: LogFormat,
        listener_name: &str,
        tx: SyncSender<Batch>,
        stats: Rc<ListenerStats>,
        alarm: Rc<Alarm>,
    ) -> Self {
        LogSink {
            path: path.map(Arc::from),
            format,
            listener_name: listener_name.to_string(),
            buf: RefCell::new(Vec::with_capacity(BATCH_BYTES)),
            lines: Cell::new(0),
            tx,
            stats,
            alarm,
        }
    }

    /// True if this sink writes where and how `cfg` asks.
    pub fn serves(&self, cfg: &crate::config::AccessLog) -> bool {
        self.path.as_deref() == cfg.path.as_deref() && self.format == cfg.format
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
        {
            let mut b = self.buf.borrow_mut();
            if b.is_empty() {
                // A new batch: have the worker's housekeeping hand it over soon.
                self.alarm.ring_at(Instant::now() + FLUSH_DELAY);
            }
            format_line(&mut b, &self.format, rec, peer, &self.listener_name);
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

/// Envoy's list rendering: values joined by `,`, `-` when there are none.
fn push_joined(out: &mut Vec<u8>, values: Option<&Vec<String>>) {
    match values {
        Some(v) if !v.is_empty() => {
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(s.as_bytes());
            }
        }
        _ => out.push(b'-'),
    }
}

fn push_str_or_dash(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.push(b'-');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Appends one formatted line (with trailing newline) to `out`.
pub fn format_line(
    out: &mut Vec<u8>,
    f: &LogFormat,
    r: &StreamInfo,
    peer: SocketAddr,
    listener: &str,
) {
    use std::io::Write as _;
    for field in &f.fields {
        match field {
            LogField::Literal(s) => out.extend_from_slice(s.as_bytes()),
            LogField::StartTime => match r.start {
                Some(t) => rfc3339(out, t),
                None => out.push(b'-'),
            },
            LogField::Method => push_str_or_dash(out, &r.method),
            LogField::Path => push_str_or_dash(out, &r.path),
            LogField::Protocol => push_str_or_dash(out, r.protocol),
            LogField::ResponseCode => push_u64(out, u64::from(r.status)),
            LogField::ResponseFlags => {
                let main = r.flag.unwrap_or(ResponseFlag::None);
                match r.filter_flag.filter(|f| *f != main) {
                    None => out.extend_from_slice(main.as_str().as_bytes()),
                    Some(f) if main == ResponseFlag::None => {
                        out.extend_from_slice(f.as_str().as_bytes())
                    }
                    // Both, in Envoy's order (`DI` is the only filter flag).
                    Some(f) => {
                        let (a, b) = if main.before_delay_injected() {
                            (main, f)
                        } else {
                            (f, main)
                        };
                        out.extend_from_slice(a.as_str().as_bytes());
                        out.push(b',');
                        out.extend_from_slice(b.as_str().as_bytes());
                    }
                }
            }
            LogField::BytesReceived => push_u64(out, r.bytes_received),
            LogField::BytesSent => push_u64(out, r.bytes_sent),
            LogField::Duration => push_u64(out, r.duration.as_millis() as u64),
            LogField::UpstreamHost => match r.upstream {
                Some(a) => {
                    let _ = write!(out, "{a}");
                }
                None => out.push(b'-'),
            },
            LogField::DownstreamRemoteAddress => {
                let _ = write!(out, "{peer}");
            }
            LogField::Authority => push_str_or_dash(out, &r.authority),
            LogField::UserAgent => push_str_or_dash(out, &r.user_agent),
            LogField::ListenerName => out.extend_from_slice(listener.as_bytes()),
            LogField::ClusterName => push_str_or_dash(out, r.cluster.as_deref().unwrap_or("")),
            LogField::DownstreamPeerUriSan => push_joined(out, r.tls.as_ref().map(|t| &t.peer.uri)),
            LogField::DownstreamPeerDnsSan => push_joined(out, r.tls.as_ref().map(|t| &t.peer.dns)),
            LogField::DownstreamTlsVersion => {
                push_str_or_dash(out, r.tls.as_ref().map_or("", |t| t.version))
            }
            LogField::DownstreamTlsCipher => {
                push_str_or_dash(out, r.tls.as_ref().map_or("", |t| t.cipher))
            }
            LogField::RequestedServerName => {
                push_str_or_dash(out, r.tls.as_ref().map_or("", |t| t.sni.as_str()))
            }
        }
    }
    out.push(b'\n');
}

/// Formats a time as `2026-11-24T04:05:06.789Z`.
pub fn rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let two = |out: &mut Vec<u8>, n: u64| {
        out.push(b'0' + (n / 10 % 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    push_u64(out, year.max(0) as u64);
    out.push(b'-');
    two(out, month as u64);
    out.push(b'-');
    two(out, day as u64);
    out.push(b'T');
    two(out, rem / 3600);
    out.push(b':');
    two(out, rem / 60 % 60);
    out.push(b':');
    two(out, rem % 60);
    out.push(b'.');
    let ms = u64::from(d.subsec_millis());
    out.push(b'0' + (ms / 100) as u8);
    two(out, ms % 100);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::access_log_format::DEFAULT_FORMAT;
    use std::time::Duration;

    #[test]
    fn formats_time() {
        let mut out = Vec::new();
        rfc3339(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(1_795_838_706_789),
        );
        assert_eq!(String::from_utf8(out).unwrap(), "2026-11-28T04:05:06.789Z");
    }

    #[test]
    fn formats_default_line() {
        let rec = StreamInfo {
            start: Some(UNIX_EPOCH),
            method: "GET".into(),
            path: "/x".into(),
            protocol: "HTTP/1.1",
            status: 503,
            flag: Some(ResponseFlag::UpstreamConnectFailure),
            bytes_received: 10,
            bytes_sent: 20,
            duration: Duration::from_millis(7),
            ..Default::default()
        };
        let mut out = Vec::new();
        let f = LogFormat::parse(DEFAULT_FORMAT).unwrap();
        format_line(&mut out, &f, &rec, "127.0.0.1:1".parse().unwrap(), "l");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[1970-01-01T00:00:00.000Z] \"GET /x HTTP/1.1\" 503 UF 10 20 7 \"-\"\n"
        );
    }
}
