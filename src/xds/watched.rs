//! What the xDS client watches: the resource names each subscription asks for, and
//! forgetting the RDS and EDS resources nothing watches any more (Envoy drops a route
//! configuration when the last listener that names it goes, and a cluster's endpoints
//! with the cluster). Control plane only; no IO here.

use std::collections::BTreeSet;

use crate::config::xds;

use super::state::{Kind, Store};

impl Store {
    /// The names to subscribe to for `k` (empty for the wildcard types).
    pub fn wanted(&self, k: Kind) -> BTreeSet<String> {
        let statics = self.boot.bootstrap.static_resources.as_ref();
        match k {
            Kind::Cluster | Kind::Listener => BTreeSet::new(),
            Kind::Endpoint => statics
                .map(|s| &s.clusters[..])
                .unwrap_or_default()
                .iter()
                .chain(self.dynamic.clusters.values())
                .filter_map(xds::eds_name)
                .collect(),
            Kind::Route => statics
                .map(|s| &s.listeners[..])
                .unwrap_or_default()
                .iter()
                .chain(self.dynamic.listeners.values())
                .flat_map(xds::rds_names)
                .collect(),
            Kind::Secret => {
                let listeners = statics
                    .map(|s| &s.listeners[..])
                    .unwrap_or_default()
                    .iter()
                    .chain(self.dynamic.listeners.values())
                    .flat_map(xds::sds_names_listener);
                statics
                    .map(|s| &s.clusters[..])
                    .unwrap_or_default()
                    .iter()
                    .chain(self.dynamic.clusters.values())
                    .flat_map(xds::sds_names_cluster)
                    .chain(listeners)
                    .collect()
            }
        }
    }

    /// Drops the route configurations and endpoint assignments that no subscription
    /// asks for and no listener or cluster in force uses (one still serving while its
    /// update warms keeps what it uses), with their `/config_dump` entries and errors.
    /// Called after each accepted update: what it drops is used by nothing, so the
    /// snapshot in force does not change. A later subscription to the same name waits
    /// for the server to send it again, as Envoy's does.
    pub fn forget_unwatched(&mut self) {
        let routes: BTreeSet<String> = self
            .wanted(Kind::Route)
            .into_iter()
            .chain(
                self.dynamic
                    .active_listeners
                    .values()
                    .flat_map(xds::rds_names),
            )
            .collect();
        let endpoints: BTreeSet<String> = self
            .wanted(Kind::Endpoint)
            .into_iter()
            .chain(
                self.dynamic
                    .active_clusters
                    .values()
                    .filter_map(xds::eds_name),
            )
            .collect();
        self.dynamic.routes.retain(|n, _| routes.contains(n));
        self.dynamic.endpoints.retain(|n, _| endpoints.contains(n));
        for (k, keep) in [(Kind::Route, &routes), (Kind::Endpoint, &endpoints)] {
            let t = self.ty(k);
            let gone: Vec<String> = t
                .meta
                .keys()
                .filter(|n| !keep.contains(*n))
                .cloned()
                .collect();
            if !gone.is_empty() {
                tracing::info!(?k, ?gone, "xDS: no longer watched; forgotten");
            }
            t.meta.retain(|n, _| keep.contains(n));
            // The response-wide failure (empty name) stays: it names no resource.
            t.failures.retain(|n, _| n.is_empty() || keep.contains(n));
        }
    }
}
