//! Building a chain's `istio_stats` (`observe::istio::IstioStats`). Part of
//! `config::build`.

use std::sync::Arc;

use super::super::raw_istio::RawIstioStats;
use super::Builder;
use crate::observe::istio::{IstioStats, Reporter, Workload};

impl Builder {
    pub(super) fn istio_stats(
        &mut self,
        p: &str,
        raw: &Option<RawIstioStats>,
    ) -> Option<Arc<IstioStats>> {
        let r = raw.as_ref()?;
        let reporter = match r.reporter.as_deref() {
            None | Some("destination") => Reporter::Destination,
            Some("source") => Reporter::Source,
            Some("waypoint") => Reporter::Waypoint,
            Some(other) => {
                self.err(
                    format!("{p}.istio_stats.reporter"),
                    format!("unknown reporter `{other}` (use destination, source or waypoint)"),
                );
                Reporter::Destination
            }
        };
        let w = &r.workload;
        let workload = Workload {
            name: w.name.clone(),
            namespace: w.namespace.clone(),
            app: w.app.clone(),
            version: w.version.clone(),
            canonical_service: w.canonical_service.clone(),
            canonical_revision: w.canonical_revision.clone(),
            cluster_id: w.cluster_id.clone(),
            mesh_id: w.mesh_id.clone(),
        };
        Some(Arc::new(IstioStats::new(
            reporter,
            workload,
            r.disable_host_header_fallback.unwrap_or(false),
        )))
    }
}
