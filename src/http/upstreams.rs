//! The worker's view as `upstream::grpc_call::Upstreams`: how a filter (ext_authz)
//! reaches a cluster from the request path, on this worker's own pools. An endpoint is
//! picked by the cluster's load balancer; a gRPC call gets a stream on the per-core
//! HTTP/2 connection to it (`ClusterState::h2_ready`), an HTTP/1.1 call a connection
//! from the per-core pool (or a new one, counted against `max_connections`), put back
//! after a clean exchange. No lock, no cross-core message.

use bytes::Bytes;
use h2::client::SendRequest;

use super::view::WorkerView;
use crate::config::circuit::Priority;
use crate::upstream::counted::Connecting;
use crate::upstream::grpc_call::{BoxFuture, H1Response, Newest, Upstreams};
use crate::upstream::Connector;

fn gone(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, what.to_string())
}

impl<C: Connector> Upstreams for WorkerView<C> {
    fn cluster_index(&self, name: &str) -> Option<usize> {
        self.snapshot.cluster_index(name)
    }

    fn cluster_stats(&self, name: &str) -> Option<&crate::observe::stats::ClusterStats> {
        let i = self.snapshot.cluster_index(name)?;
        self.clusters.get(i).map(|c| &*c.stats)
    }

    fn newest(&self) -> Option<Newest> {
        let latest = self.latest.clone();
        Some(std::rc::Rc::new(move || {
            let v: std::rc::Rc<dyn Upstreams> = latest.borrow().upgrade()?;
            Some(v)
        }))
    }

    fn h2_stream(
        &self,
        cluster: usize,
    ) -> BoxFuture<'_, std::io::Result<(SendRequest<Bytes>, &str)>> {
        Box::pin(async move {
            let cs = self
                .clusters
                .get(cluster)
                .ok_or_else(|| gone("no such cluster"))?;
            let ep = cs
                .start_request(None)
                .ok_or_else(|| gone("no healthy endpoint"))?;
            let (send, _, _) = cs.h2_ready(ep, &*self.connector, Priority::Default).await?;
            Ok((send, &*cs.name))
        })
    }

    fn h1_exchange<'a>(
        &'a self,
        cluster: usize,
        head: Vec<u8>,
        body: &'a [u8],
        max_body: usize,
    ) -> BoxFuture<'a, std::io::Result<H1Response>> {
        Box::pin(async move {
            let cs = self
                .clusters
                .get(cluster)
                .ok_or_else(|| gone("no such cluster"))?;
            let ep = cs
                .start_request(None)
                .ok_or_else(|| gone("no healthy endpoint"))?;
            let mut pooled = None;
            // Side calls (authorization, processing) go at the default priority, as
            // Envoy's async client's.
            let pools = cs.pools(Priority::Default);
            while let Some(mut c) = pools.pool.take(ep) {
                if crate::http::io::idle_is_clean(&mut c).await {
                    cs.stats.cx_reused.inc();
                    pooled = Some(c);
                    break;
                }
            }
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let breakers = &cs.cfg.breakers.default;
                    // As Envoy's pool, a connection is opened even past the limit when
                    // none is at hand (counted as an overflow).
                    let host = cs.host_cx(ep);
                    if !breakers.open_cx(host) {
                        breakers.force_cx(host);
                        cs.stats.cx_overflow.inc();
                    }
                    let connecting = Connecting::new(
                        breakers,
                        Priority::Default,
                        pools.pool.live(),
                        ep,
                        host.clone(),
                    );
                    let addr = cs
                        .cfg
                        .endpoints
                        .get(ep)
                        .map(|e| e.addr)
                        .ok_or_else(|| gone("no such endpoint"))?;
                    let io = match self
                        .connector
                        .connect_to(&cs.cfg, addr, cs.cfg.connect_timeout)
                        .await
                    {
                        Ok(io) => io,
                        Err(e) => {
                            cs.stats.cx_connect_fail.inc();
                            return Err(e);
                        }
                    };
                    cs.stats.cx_total.inc();
                    connecting.connected(io)
                }
            };
            let (resp, reuse) =
                crate::upstream::h1_call::exchange(&mut conn, &head, body, max_body).await?;
            if reuse {
                cs.put(ep, conn);
            }
            Ok(resp)
        })
    }
}
