//! A filter chain's `tls:` block: checked into a `DownstreamTlsSpec`, then its files
//! read and the rustls config built (`tls::ServerTls::load`). Config building runs on
//! the control side, so this is where certificate files are read; a file that cannot
//! be read or parsed refuses the config, and the running one keeps serving.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Builder;
use crate::config::raw::{RawCluster, RawEndpoint};
use crate::tls::client::{ClientTls, RawUpstreamTls, UpstreamTlsSpec};
use crate::tls::config::{DownstreamTlsSpec, RawDownstreamTls};
use crate::tls::ServerTls;

impl Builder {
    pub(super) fn downstream_tls(
        &mut self,
        p: &str,
        raw: &RawDownstreamTls,
    ) -> Option<Arc<ServerTls>> {
        let spec = match DownstreamTlsSpec::build(raw) {
            Ok(s) => s,
            Err(errs) => {
                for (field, message) in errs {
                    self.err(format!("{p}.{field}"), message);
                }
                return None;
            }
        };
        match ServerTls::load(&spec, &raw.sds_files) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                self.err(p.to_string(), e);
                None
            }
        }
    }

    pub(super) fn upstream_tls(
        &mut self,
        p: &str,
        raw: &RawUpstreamTls,
        h2: bool,
    ) -> Option<Arc<ClientTls>> {
        let spec = match UpstreamTlsSpec::build(raw, h2) {
            Ok(s) => s,
            Err(errs) => {
                for (field, message) in errs {
                    self.err(format!("{p}.{field}"), message);
                }
                return None;
            }
        };
        match ClientTls::load(&spec, &raw.sds_files) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                self.err(p.to_string(), e);
                None
            }
        }
    }

    /// The endpoints a `transport_socket_matches` entry gives another transport than
    /// the cluster's `tls`: (address, its TLS or `None` for plaintext). `placed`: each
    /// static endpoint's address and index in `raw`.
    pub(super) fn endpoint_tls(
        &mut self,
        p: &str,
        c: &RawCluster,
        (raw, placed): (&[RawEndpoint], &[(SocketAddr, usize)]),
        h2: bool,
        dns: bool,
    ) -> Vec<(SocketAddr, Option<Arc<ClientTls>>)> {
        if c.transport_socket_matches.is_empty() {
            return Vec::new();
        }
        if dns {
            self.err(
                format!("{p}.transport_socket_matches"),
                "only on static and EDS clusters in Outrigger (not on DNS clusters)",
            );
            return Vec::new();
        }
        let mut choices = Vec::new();
        for (i, m) in c.transport_socket_matches.iter().enumerate() {
            let at = format!("{p}.transport_socket_matches[{i}]");
            if m.name.is_empty() {
                self.err(format!("{at}.name"), "is required");
            }
            let tls = m
                .tls
                .as_ref()
                .and_then(|t| self.upstream_tls(&format!("{at}.tls"), t, h2));
            choices.push(tls);
        }
        placed
            .iter()
            .filter_map(|(addr, j)| {
                let e = raw.get(*j)?;
                let i = c
                    .transport_socket_matches
                    .iter()
                    .position(|m| m.criteria.iter().all(|(k, v)| e.metadata.get(k) == Some(v)))?;
                Some((*addr, choices.get(i)?.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    const BOOT: &str = r#"
static_resources:
  clusters:
  - name: mixed
    type: @TYPE@
    connect_timeout: 1s
    transport_socket_matches:
    - name: tlsMode-istio
      match: {tlsMode: istio}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, sni: a.test}
    - name: tlsMode-disabled
      match: {}
      transport_socket:
        name: envoy.transport_sockets.raw_buffer
        typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}
    load_assignment:
      cluster_name: mixed
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}
          metadata: {filter_metadata: {envoy.transport_socket_match: {tlsMode: istio}}}
        - endpoint: {address: {socket_address: {address: 127.0.0.2, port_value: 9}}}
"#;

    #[test]
    fn transport_socket_matches_pick_each_endpoints_transport() {
        let s = crate::config::load::parse_str(&BOOT.replace("@TYPE@", "STATIC")).unwrap();
        let c = s.clusters.iter().find(|c| c.name == "mixed").unwrap();
        assert!(c.tls.is_none());
        let tls = c.tls_for("127.0.0.1:9".parse().unwrap()).unwrap();
        assert_eq!(tls.spec.sni.as_deref(), Some("a.test"));
        // The empty match takes the endpoint without metadata: plaintext.
        assert!(c.tls_for("127.0.0.2:9".parse().unwrap()).is_none());
        let err = crate::config::load::parse_str(&BOOT.replace("@TYPE@", "STRICT_DNS"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("transport_socket_matches"), "{err}");
    }
}
