//! The TCP proxy: a filter chain's terminal network filter that copies bytes between the
//! client and one upstream endpoint until both directions have finished.
//!
//! Each connection picks a cluster by weight, then an endpoint with the cluster's load
//! balancer; the bytes the listener filters already read go first, then `tunnel::run`
//! copies bytes both ways on the worker that accepted it (half-close passed on, the
//! chain's `idle_timeout` for the connection as a whole).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use futures_lite::io::AsyncWriteExt;

use crate::config::{ClusterKind, TcpProxy};
use crate::http::flags::ResponseFlag;
use crate::http::io::Io;
use crate::http::view::{ChainRef, WorkerView};
use crate::observe::stream_info::{self, StreamInfo, UpstreamWants};
use crate::tunnel;
use crate::upstream::Connector;

/// Picks a cluster by weight with a per-connection pseudo-random draw (`Some(None)`: a
/// cluster that is still warming).
fn pick_cluster(t: &TcpProxy, seed: u64) -> Option<Option<usize>> {
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

/// An upstream connection the listener opened while it waited for the client's first
/// bytes, to the connection's original destination, and what that server said first
/// (server-first detection, `listener/server_first.rs`).
pub struct Early<U> {
    /// The chain's ORIGINAL_DST cluster.
    pub cluster: usize,
    pub up: U,
    pub greeting: Vec<u8>,
}

/// Serves one TCP-proxied connection until both directions finish. `prefix` is what
/// the listener filters already read from the client; it goes upstream first. `local`
/// is the connection's destination (its original one, after the original_dst listener
/// filter), where an ORIGINAL_DST cluster connects. `early`: the upstream connection
/// is already open, and its greeting goes to the client first.
pub async fn serve<D: Io, C: Connector>(
    down: D,
    prefix: &[u8],
    local: SocketAddr,
    peer: SocketAddr,
    view: Rc<WorkerView<C>>,
    at: ChainRef,
    early: Option<Early<C::Conn>>,
) {
    let (Some(tcp), Some(stats)) = (view.tcp_proxy(at), view.listener_stats.get(at.listener))
    else {
        return;
    };
    let start = Instant::now();
    let mut rec = StreamInfo {
        start: Some(SystemTime::now()),
        protocol: "TCP",
        tls: down.tls_info(),
        ..StreamInfo::default()
    };
    rec.log.local = Some(local);
    rec.log.connection_id = stream_info::next_connection_id();
    let log = view.access_log(at);
    // What the log prints, or Istio reads, of the upstream connection: only that is read.
    let upstream = view.upstream_wants(at);
    let flag = proxy(down, prefix, local, &view, (tcp, upstream), &mut rec, early).await;
    rec.flag = Some(flag);
    rec.duration = start.elapsed();
    let istio = view
        .istio(at)
        .map(|i| (i, rec.cluster.as_deref().unwrap_or("")));
    stream_info::complete(stats, log, istio, &rec, peer, stream_info::Kind::Connection);
}

async fn proxy<D: Io, C: Connector>(
    mut down: D,
    prefix: &[u8],
    local: SocketAddr,
    view: &WorkerView<C>,
    (tcp, upstream): (&TcpProxy, UpstreamWants),
    rec: &mut StreamInfo,
    early: Option<Early<C::Conn>>,
) -> ResponseFlag {
    let idle = tcp.idle_timeout;
    thread_local! {
        static CONNECTIONS: Cell<u64> = const { Cell::new(0) };
    }
    // A per-core counter through pick_cluster's multiplicative hash: an even spread.
    let seed = CONNECTIONS.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let (cluster, early) = match early {
        Some(e) => (e.cluster, Some((e.up, e.greeting))),
        None => match pick_cluster(tcp, seed) {
            Some(Some(c)) => (c, None),
            // Envoy: "Cluster not found", the connection closed with NC.
            Some(None) => return ResponseFlag::NoClusterFound,
            None => return ResponseFlag::NoHealthyUpstream,
        },
    };
    let cs = &view.clusters[cluster];
    rec.cluster = Some(cs.name.clone());
    cs.stats.rq_total.inc();
    // Where to connect, and the endpoint's counters (an ORIGINAL_DST cluster has no
    // endpoints: each connection goes to its own destination).
    let (addr, es) = match cs.cfg.kind {
        ClusterKind::OriginalDst => {
            if view.is_own_listener(local) {
                // Not redirected (a client connected to the capture port itself):
                // connecting there would loop back into this proxy.
                tracing::debug!(dst = %local, "original_dst cluster: the destination is this proxy");
                cs.stats.rq_no_healthy.inc();
                return ResponseFlag::NoHealthyUpstream;
            }
            (local, None)
        }
        ClusterKind::Static => {
            let Some(ep) = cs.pick(None, 0) else {
                cs.stats.rq_no_healthy.inc();
                return ResponseFlag::NoHealthyUpstream;
            };
            (cs.cfg.endpoints[ep].addr, Some(&cs.endpoints[ep]))
        }
    };
    rec.upstream = Some(addr);
    let count =
        |f: fn(&crate::observe::stats::EndpointStats) -> &crate::observe::stats::Counter| {
            if let Some(es) = es {
                f(es).inc();
            }
        };
    count(|e| &e.rq_total);
    let connected = match early {
        Some((up, greeting)) => Ok((up, greeting)),
        None => (view.connector)
            .connect_to(&cs.cfg, addr, cs.cfg.connect_timeout)
            .await
            .map(|u| (u, Vec::new())),
    };
    let (mut up, greeting) = match connected {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(upstream = %addr, error = %e, "tcp proxy: upstream connect failed");
            cs.stats.cx_connect_fail.inc();
            count(|e| &e.cx_connect_fail);
            return ResponseFlag::UpstreamConnectFailure;
        }
    };
    if upstream.local {
        rec.log.upstream_local = up.local_addr();
    }
    if upstream.tls {
        rec.upstream_tls = up.tls_info();
    }
    cs.stats.cx_total.inc();
    count(|e| &e.cx_total);
    count(|e| &e.rq_active);
    let done = || {
        if let Some(es) = es {
            es.rq_active.dec();
        }
    };
    if !prefix.is_empty() {
        up.set_write_timeout(Some(idle));
        if up.write_all(prefix).await.is_err() {
            done();
            return ResponseFlag::UpstreamConnectionTermination;
        }
    }
    if !greeting.is_empty() {
        // The server spoke first: its words reach the client before anything else.
        down.set_write_timeout(Some(idle));
        if down.write_all(&greeting).await.is_err() {
            done();
            return ResponseFlag::DownstreamConnectionTermination;
        }
    }
    let t = tunnel::run(down, up, idle, None).await;
    done();
    rec.bytes_received = prefix.len() as u64 + t.bytes_a_to_b;
    rec.bytes_sent = greeting.len() as u64 + t.bytes_b_to_a;
    tunnel::flag_for(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn weighted_cluster_pick_follows_weights() {
        let tcp = |clusters| TcpProxy {
            clusters,
            idle_timeout: Duration::from_secs(1),
            access_log: None,
            istio_stats: None,
        };
        let t = tcp(vec![(Some(0), 3), (Some(1), 1)]);
        let mut counts = [0; 2];
        for seed in 0..4000u64 {
            counts[pick_cluster(&t, seed).unwrap().unwrap()] += 1;
        }
        assert!((2800..3200).contains(&counts[0]), "{counts:?}");
        assert_eq!(pick_cluster(&tcp(vec![]), 1), None);
    }
}
