//! A cluster's connection options: the pool's limits (`pool`: idle connections and
//! their timeout, `max_requests_per_connection`, HTTP/2's `max_concurrent_streams`,
//! `max_stream_duration`, each try's bound) and the TCP keepalive of its upstream
//! connections (`tcp_keepalive`).

use super::super::raw::RawCluster;
use super::super::{PoolLimits, TcpKeepalive, UpstreamProtocol};
use super::Builder;

/// The kernel's ceilings for the keepalive options (Linux: `MAX_TCP_KEEPCNT`,
/// `MAX_TCP_KEEPIDLE`, `MAX_TCP_KEEPINTVL`); a value past one, or 0, fails `setsockopt`.
const MAX_PROBES: u32 = 127;
const MAX_SECONDS: u32 = 32767;

impl Builder {
    pub(super) fn pool(
        &mut self,
        p: &str,
        c: &RawCluster,
        protocol: UpstreamProtocol,
    ) -> PoolLimits {
        let d = PoolLimits::default();
        let rp = c.pool.as_ref();
        let pool = PoolLimits {
            max_idle_per_endpoint: rp
                .and_then(|r| r.max_idle_per_endpoint)
                .unwrap_or(d.max_idle_per_endpoint),
            idle_timeout: self.positive_duration(
                format!("{p}.pool.idle_timeout"),
                &rp.and_then(|r| r.idle_timeout.clone()),
                d.idle_timeout,
            ),
            max_requests_per_connection: rp
                .and_then(|r| r.max_requests_per_connection)
                .filter(|&n| n > 0),
            max_concurrent_streams: rp
                .and_then(|r| r.max_concurrent_streams)
                .unwrap_or(d.max_concurrent_streams),
            tcp_keepalive: self.tcp_keepalive(p, c),
            max_stream_duration: self.duration(
                format!("{p}.pool.max_stream_duration"),
                &rp.and_then(|r| r.max_stream_duration.clone()),
                d.max_stream_duration,
            ),
        };
        if let Some(n) = rp.and_then(|r| r.max_concurrent_streams) {
            let at = format!("{p}.pool.max_concurrent_streams");
            if protocol == UpstreamProtocol::Http1 {
                self.err(at, "is for `http2` and `downstream` clusters only");
            } else if !(1..=d.max_concurrent_streams).contains(&n) {
                // Envoy's range for `Http2ProtocolOptions.max_concurrent_streams`.
                self.err(at, "must be between 1 and 2147483647");
            }
        }
        pool
    }

    fn tcp_keepalive(&mut self, p: &str, c: &RawCluster) -> Option<TcpKeepalive> {
        let k = c.tcp_keepalive.as_ref()?;
        let at = format!("{p}.tcp_keepalive");
        let mut check = |field: &str, v: Option<u32>, max: u32| {
            if let Some(n) = v.filter(|n| !(1..=max).contains(n)) {
                self.err(
                    format!("{at}.{field}"),
                    format!("must be between 1 and {max} (the kernel refuses {n})"),
                );
            }
        };
        check("keepalive_probes", k.keepalive_probes, MAX_PROBES);
        check("keepalive_time", k.keepalive_time, MAX_SECONDS);
        check("keepalive_interval", k.keepalive_interval, MAX_SECONDS);
        Some(TcpKeepalive {
            probes: k.keepalive_probes,
            time: k.keepalive_time,
            interval: k.keepalive_interval,
        })
    }
}
