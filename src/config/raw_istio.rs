//! The native `istio_stats` block of a listener or filter chain, as written in the YAML
//! (built into `observe::istio::IstioStats` by `config::build::istio`; Envoy's
//! `istio.stats` filters and the bootstrap node's metadata are translated into it by
//! `config::envoy::istio_stats`).

use serde::Deserialize;

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIstioStats {
    /// `destination` (an inbound sidecar listener; the default), `source` (outbound) or
    /// `waypoint` (Istio's SERVER_GATEWAY).
    #[serde(default)]
    pub reporter: Option<String>,
    /// Istio's `disable_host_header_fallback`.
    #[serde(default)]
    pub disable_host_header_fallback: Option<bool>,
    /// This proxy's workload (Istio's node metadata).
    #[serde(default)]
    pub workload: RawWorkload,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkload {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub canonical_service: String,
    #[serde(default)]
    pub canonical_revision: String,
    #[serde(default)]
    pub cluster_id: String,
    #[serde(default)]
    pub mesh_id: String,
}
