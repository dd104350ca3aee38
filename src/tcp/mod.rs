//! The TCP proxy: a listener's terminal filter that copies bytes between the client and
//! one upstream endpoint until both directions have finished.
//!
//! Each connection picks a cluster by weight, then an endpoint with the cluster's load
//! balancer. Both directions run concurrently on the worker that accepted the
//! connection; each socket is opened twice (a `dup`) so one glommio stream reads while
//! the other writes. End of stream on one side becomes a write shutdown (half-close) on
//! the other, so protocols that half-close keep working. The listener's `idle_timeout`
//! closes the connection when neither direction has moved a byte for that long.

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::config::{ListenerKind, TcpProxy};
use crate::http::flags::ResponseFlag;
use crate::http::view::WorkerView;
use crate::observe::access_log::LogRecord;
use crate::upstream::{Connector, TcpConnector};

/// Copy buffer per direction.
const BUF_BYTES: usize = 16 * 1024;

/// How a direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The reader reached end of stream and the writer was shut down for writing.
    Closed,
    /// Neither direction moved a byte for the idle timeout.
    Idle,
    /// The reader failed or reset.
    ReadError,
    /// The writer failed or reset.
    WriteError,
}

/// Opens a second stream on the same socket, for the other direction.
fn dup(s: &TcpStream) -> std::io::Result<TcpStream> {
    // SAFETY: dup of a descriptor we own; the new one is owned by the returned stream.
    let fd = unsafe { libc::dup(s.as_raw_fd()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, owned, connected TCP socket descriptor.
    Ok(unsafe { TcpStream::from_raw_fd(fd) })
}

/// Picks a cluster by weight with a per-connection pseudo-random draw.
fn pick_cluster(t: &TcpProxy, seed: u64) -> Option<usize> {
    let total: u64 = t.clusters.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut r = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) % total;
    for (c, w) in &t.clusters {
        if r < u64::from(*w) {
            return Some(*c);
        }
        r -= u64::from(*w);
    }
    None
}

/// Copies `from` to `to` until end of stream, an error, or the shared idle timeout.
async fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    idle: Duration,
    last: &Cell<Instant>,
    bytes: &Cell<u64>,
) -> End {
    let mut buf = vec![0u8; BUF_BYTES];
    let _ = from.set_read_timeout(Some(idle));
    let _ = to.set_write_timeout(Some(idle));
    loop {
        match from.read(&mut buf).await {
            Ok(0) => {
                // Half-close: tell the other side we are done sending.
                let _ = to.shutdown(std::net::Shutdown::Write).await;
                return End::Closed;
            }
            Ok(n) => {
                last.set(Instant::now());
                if to.write_all(&buf[..n]).await.is_err() {
                    return End::WriteError;
                }
                bytes.set(bytes.get() + n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                // The other direction may be busy (a long download): only close when
                // the whole connection has been idle.
                let quiet = last.get().elapsed();
                if quiet >= idle {
                    return End::Idle;
                }
                let _ = from.set_read_timeout(Some(idle - quiet));
            }
            Err(_) => return End::ReadError,
        }
    }
}

/// Serves one TCP-proxied connection until both directions finish.
pub async fn serve(
    down: TcpStream,
    peer: SocketAddr,
    view: Rc<WorkerView<TcpConnector>>,
    listener: usize,
) {
    let l = &view.snapshot.listeners[listener];
    let ListenerKind::Tcp(tcp) = &l.kind else {
        return;
    };
    let stats = &view.listener_stats[listener];
    stats.cx_total.inc();
    stats.cx_active.inc();
    let start = Instant::now();
    let mut rec = LogRecord {
        start: Some(SystemTime::now()),
        protocol: "TCP",
        ..LogRecord::default()
    };
    let flag = proxy(down, &view, tcp, l.idle_timeout, &mut rec).await;
    stats.bytes_received.add(rec.bytes_received);
    stats.bytes_sent.add(rec.bytes_sent);
    if flag != ResponseFlag::None {
        stats.rq_flags[flag as usize].inc();
    }
    if let Some(sink) = &view.access_logs[listener] {
        rec.flag = Some(flag);
        rec.duration = start.elapsed();
        sink.log(&rec, peer);
    }
    stats.cx_active.dec();
}

async fn proxy(
    down: TcpStream,
    view: &WorkerView<TcpConnector>,
    tcp: &TcpProxy,
    idle: Duration,
    rec: &mut LogRecord,
) -> ResponseFlag {
    thread_local! {
        static CONNECTIONS: Cell<u64> = const { Cell::new(0) };
    }
    // A per-core counter through pick_cluster's multiplicative hash: an even spread.
    let seed = CONNECTIONS.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let Some(cluster) = pick_cluster(tcp, seed) else {
        return ResponseFlag::NoHealthyUpstream;
    };
    let cs = &view.clusters[cluster];
    rec.cluster = Some(cs.name.clone());
    cs.stats.rq_total.inc();
    let Some(ep) = cs.pick() else {
        cs.stats.rq_no_healthy.inc();
        return ResponseFlag::NoHealthyUpstream;
    };
    let endpoint = &cs.cfg.endpoints[ep];
    let es = &cs.endpoints[ep];
    rec.upstream = Some(endpoint.addr);
    es.rq_total.inc();
    let up = match view
        .connector
        .connect(endpoint.addr, cs.cfg.connect_timeout)
        .await
    {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(upstream = %endpoint.addr, error = %e, "tcp proxy: upstream connect failed");
            cs.stats.cx_connect_fail.inc();
            es.cx_connect_fail.inc();
            return ResponseFlag::UpstreamConnectFailure;
        }
    };
    cs.stats.cx_total.inc();
    es.cx_total.inc();
    es.rq_active.inc();
    let (down_w, up_w) = match (dup(&down), dup(&up)) {
        (Ok(d), Ok(u)) => (d, u),
        _ => {
            es.rq_active.dec();
            return ResponseFlag::UpstreamConnectionTermination;
        }
    };
    let down_fd = down.as_raw_fd();
    let up_fd = up.as_raw_fd();
    let last = Cell::new(Instant::now());
    let (sent_up, sent_down) = (Cell::new(0u64), Cell::new(0u64));
    // A failed direction shuts both sockets down, so the other one ends at once too.
    let abort = || {
        // SAFETY: both descriptors stay open until the pumps return.
        unsafe {
            libc::shutdown(down_fd, libc::SHUT_RDWR);
            libc::shutdown(up_fd, libc::SHUT_RDWR);
        }
    };
    let upstream_dir = async {
        let e = pump(down, up_w, idle, &last, &sent_up).await;
        if e != End::Closed {
            abort();
        }
        e
    };
    let downstream_dir = async {
        let e = pump(up, down_w, idle, &last, &sent_down).await;
        if e != End::Closed {
            abort();
        }
        e
    };
    let (to_up, to_down) = futures_lite::future::zip(upstream_dir, downstream_dir).await;
    es.rq_active.dec();
    rec.bytes_received = sent_up.get();
    rec.bytes_sent = sent_down.get();
    match (to_up, to_down) {
        (End::Closed, End::Closed) => ResponseFlag::None,
        (End::Idle, _) | (_, End::Idle) => ResponseFlag::DownstreamIdleTimeout,
        (End::ReadError, _) | (_, End::WriteError) => ResponseFlag::DownstreamConnectionTermination,
        _ => ResponseFlag::UpstreamConnectionTermination,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_cluster_pick_follows_weights() {
        let t = TcpProxy {
            clusters: vec![(0, 3), (1, 1)],
        };
        let mut counts = [0; 2];
        for seed in 0..4000u64 {
            counts[pick_cluster(&t, seed).unwrap()] += 1;
        }
        assert!((2800..3200).contains(&counts[0]), "{counts:?}");
        assert_eq!(pick_cluster(&TcpProxy { clusters: vec![] }, 1), None);
    }
}
