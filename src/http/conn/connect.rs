//! Tunnels on an HTTP/1 connection: CONNECT to a cluster, and the byte copying that
//! follows a CONNECT's `200` or an upgrade's `101`.

use std::time::{Duration, Instant};

use futures_lite::io::AsyncWriteExt;

use crate::observe::stats::ClusterStats;
use crate::upstream::request::bound;
use crate::upstream::Connector;

use super::super::failure::Failure;
use super::super::flags::ResponseFlag;
use super::super::h1::encode::{self, DownFraming, DownstreamResponse};
use super::super::io::Io;
use super::super::view::WorkerView;
use super::exchange::Active;
use super::{Conn, Outcome, Plan};

impl Conn {
    /// CONNECT: open a TCP connection to an endpoint of the cluster, answer 200, then
    /// carry bytes both ways until both sides close.
    pub(super) async fn connect<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        cluster: usize,
    ) -> Outcome {
        let cs = &view.clusters[cluster];
        self.rec.cluster_index = Some(cluster);
        self.rec.route_stats = plan.route_stats;
        let ep = match self.begin_upstream(down, view, plan, cluster).await {
            Ok(ep) => ep,
            Err(uh) => return uh,
        };
        let endpoint = &cs.cfg.endpoints[ep];
        let es = &cs.endpoints[ep];
        let up = match view
            .connector
            .connect_to(&cs.cfg, endpoint.addr, cs.cfg.connect_timeout)
            .await
        {
            Ok(u) => u,
            Err(_) => {
                cs.stats.cx_connect_fail.inc();
                es.cx_connect_fail.inc();
                cs.stats.rq_class[4].inc();
                return self
                    .fail_locally(down, view, plan, Failure::ConnectFailure)
                    .await;
            }
        };
        if self.upstream.local {
            self.rec.log.upstream_local = up.local_addr();
        }
        if self.upstream.tls {
            self.rec.upstream_tls = up.tls_info();
        }
        cs.stats.cx_total.inc();
        es.cx_total.inc();
        cs.stats.rq_class[1].inc();
        es.rq_active.inc();
        let _active = Active(&es.rq_active);
        self.wbuf.clear();
        // With the response edits (route, filters, the connection manager's own
        // `date` and `server`), as Envoy answers a CONNECT.
        encode::write_response(
            &mut self.wbuf,
            &DownstreamResponse {
                status: 200,
                reason: "Connection Established",
                headers: &[],
                has_connection_header: false,
                framing: DownFraming::None,
                close: false,
                http10_keep_alive: false,
                upgrade: None,
                edits: plan.response_edits,
            },
        );
        // Envoy's router bounds a CONNECT's upstream by the cluster's max_stream_duration.
        let ends = bound::ends_unless_zero(cs.cfg.pool.max_stream_duration);
        self.tunnel(
            down,
            up,
            0,
            plan.idle_timeout,
            200,
            ends.map(|e| (e, &*cs.stats)),
        )
        .await
    }

    /// Turns the connection into a tunnel (after a `101 Switching Protocols`, or a
    /// CONNECT's `200`): send the head in `wbuf` on (dropping `head_len` bytes of upstream
    /// head from `ubuf`), pass on bytes that already arrived behind the heads, then copy
    /// both ways until both sides are done. The connection is not reused afterwards.
    /// `bound`: when the cluster's `max_stream_duration` ends the tunnel (closed, flag
    /// `UMSDR`), and the stats that count it.
    pub(super) async fn tunnel<D: Io, U: Io>(
        &mut self,
        down: &mut D,
        mut up: U,
        head_len: usize,
        idle: Duration,
        status: u16,
        bound: Option<(Instant, &ClusterStats)>,
    ) -> Outcome {
        let closed = |flag| Outcome {
            status,
            flag,
            keep_alive: false,
        };
        self.ubuf.consume(head_len);
        if down.write_all(&self.wbuf).await.is_err() {
            return closed(ResponseFlag::DownstreamConnectionTermination);
        }
        self.rec.bytes_sent = self.wbuf.len() as u64;
        // Bytes that arrived with the heads belong to the new protocol already.
        if !self.ubuf.is_empty() && down.write_all(self.ubuf.data()).await.is_err() {
            return closed(ResponseFlag::DownstreamConnectionTermination);
        }
        if !self.rbuf.is_empty() && up.write_all(self.rbuf.data()).await.is_err() {
            return closed(ResponseFlag::UpstreamConnectionTermination);
        }
        self.rec.bytes_sent += self.ubuf.len() as u64;
        self.rec.bytes_received += self.rbuf.len() as u64;
        let (n, m) = (self.ubuf.len(), self.rbuf.len());
        self.ubuf.consume(n);
        self.rbuf.consume(m);
        // The client connection stays the caller's: the tunnel splits a borrow of it.
        let t = crate::tunnel::run(&mut *down, up, idle, bound.map(|(at, _)| at)).await;
        self.rec.bytes_received += t.bytes_a_to_b;
        self.rec.bytes_sent += t.bytes_b_to_a;
        let flag = crate::tunnel::flag_for(t);
        if let Some((_, stats)) =
            bound.filter(|_| flag == ResponseFlag::UpstreamMaxStreamDurationReached)
        {
            stats.rq_max_duration_reached.inc();
        }
        closed(flag)
    }
}
