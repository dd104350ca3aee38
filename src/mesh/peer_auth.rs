//! Mutual TLS between sidecars: `PeerAuthentication` (what an inbound port accepts),
//! a DestinationRule's `trafficPolicy.tls` (what an outbound cluster sends), and the
//! TLS contexts istiod writes for both, with the workload certificate (`default`) and
//! the mesh's trust bundle (`ROOTCA`) delivered over SDS on the ADS stream.
//!
//! istiod's rules, followed here:
//! - the mode of an inbound port: the workload's policy (a `selector` that picks it in
//!   its namespace), its port-level setting first, else the namespace's policy (no
//!   selector), else the mesh's (no selector, in the root namespace); `UNSET` defers to
//!   the next; PERMISSIVE when none sets it. Port-level settings need a selector.
//! - STRICT: one filter chain, TLS with a client certificate from the mesh required;
//!   PERMISSIVE: a TLS chain (chosen by the TLS inspector) beside a plaintext one;
//!   DISABLE: plaintext.
//! - outbound: `ISTIO_MUTUAL` sends the workload certificate, SNI
//!   `outbound_.PORT_.SUBSET_.HOST`, and checks the server's SPIFFE ID against the
//!   service accounts of the service's workloads; `DISABLE` sends plaintext; without a
//!   setting (auto mTLS), ISTIO_MUTUAL when every endpoint of the cluster has a sidecar
//!   (`security.istio.io/tlsMode: istio` on the WorkloadEntry) and plaintext otherwise.
//!   istiod splits a mixed cluster with `transport_socket_matches`, which the
//!   Outrigger data plane does not implement yet: a mixed cluster is plaintext.
//!
//! A proxy that has not authenticated (no token) has no certificate: its PERMISSIVE
//! ports are plaintext only and its auto-mTLS clusters plaintext; STRICT ports and
//! explicit ISTIO_MUTUAL clusters keep TLS and fail closed.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::istio::Metadata;
use super::model::{Mesh, ROOT_NAMESPACE};
use super::mtls_kinds::mode;
pub use super::mtls_kinds::{ClientTls, Mode, PeerAuthentication};

/// The label that marks a workload with a sidecar (istiod's auto-mTLS signal).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// The SDS names istiod uses: the workload certificate and the trust bundle.
pub const CERT_SECRET: &str = "default";
pub const ROOT_SECRET: &str = "ROOTCA";

const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

/// The mode of a workload's inbound `port`.
pub fn inbound_mode(
    mesh: &Mesh,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u16,
) -> Mode {
    let pick = |ns: &str, selected: bool| -> Option<&(Metadata, PeerAuthentication)> {
        mesh.peer_authentications.iter().find(|(m, p)| {
            m.namespace == ns
                && match &p.selector {
                    Some(s) => selected && s.selects(labels),
                    None => !selected,
                }
        })
    };
    let of = |p: Option<&(Metadata, PeerAuthentication)>| {
        p.and_then(|(_, p)| mode(p.mtls.as_ref()).ok().flatten())
    };
    let workload = pick(namespace, true);
    let port_level = workload
        .and_then(|(_, p)| p.port_level_mtls.get(&port))
        .and_then(|m| mode(Some(m)).ok().flatten());
    port_level
        .or_else(|| of(workload))
        .or_else(|| of(pick(namespace, false)))
        .or_else(|| of(pick(ROOT_NAMESPACE, false)))
        .unwrap_or(Mode::Permissive)
}

fn sds(name: &str) -> Value {
    json!({"name": name, "sds_config": {"ads": {}, "resource_api_version": "V3"}})
}

/// The certificate and the validation of the peer's: its chain to `ROOTCA`, and its
/// URI SAN one of `peers` (exact), or any in the trust domain when `peers` is empty.
fn common(trust_domain: &str, peers: &[String]) -> Value {
    let sans: Vec<Value> = if peers.is_empty() {
        vec![json!({"san_type": "URI", "matcher": {"prefix": format!("spiffe://{trust_domain}/")}})]
    } else {
        peers
            .iter()
            .map(|p| json!({"san_type": "URI", "matcher": {"exact": p}}))
            .collect()
    };
    json!({
        "tls_certificate_sds_secret_configs": [sds(CERT_SECRET)],
        "combined_validation_context": {
            "default_validation_context": {"match_typed_subject_alt_names": sans},
            "validation_context_sds_secret_config": sds(ROOT_SECRET)
        }
    })
}

/// An inbound listener's TLS: a client certificate from the mesh required.
pub fn downstream(trust_domain: &str) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": DOWNSTREAM_TLS,
            "require_client_certificate": true,
            "common_tls_context": common(trust_domain, &[])
        }
    })
}

/// The ALPN values a PERMISSIVE port's mTLS chain takes (istiod's
/// `allIstioMtlsALPNs`): what mesh clients offer.
pub const MESH_ALPNS: [&str; 5] = [
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// An outbound cluster's ISTIO_MUTUAL TLS, offering istiod's in-mesh ALPN (and `h2`
/// for an HTTP/2 cluster), which tells a PERMISSIVE server the mesh's TLS from an
/// application's own.
pub fn upstream(trust_domain: &str, sni: &str, peers: &[String], h2: bool) -> Value {
    let mut common = common(trust_domain, peers);
    common["alpn_protocols"] = if h2 {
        json!(["istio-peer-exchange", "istio", "h2"])
    } else {
        json!(["istio-peer-exchange", "istio"])
    };
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": UPSTREAM_TLS,
            "sni": sni,
            "common_tls_context": common
        }
    })
}

/// Debian's bundle of the system's CAs: what SIMPLE and MUTUAL verify the server with
/// when `caCertificates` is not given (istiod's `VERIFY_CERTIFICATE_AT_CLIENT`).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `SIMPLE` or `MUTUAL`: TLS to a service outside the mesh with certificates from
/// files; SNI the rule's `sni` or the host, the server checked against
/// `caCertificates` (or the system's CAs) and `subjectAltNames`, unless
/// `insecureSkipVerify`. `None` for the other modes.
pub fn external(t: &ClientTls, host: &str) -> Option<Value> {
    if t.mode != "SIMPLE" && t.mode != "MUTUAL" {
        return None;
    }
    let mut common = json!({});
    if let (Some(cert), Some(key)) = (&t.client_certificate, &t.private_key) {
        common["tls_certificates"] = json!([{
            "certificate_chain": {"filename": cert},
            "private_key": {"filename": key}
        }]);
    }
    if !t.insecure_skip_verify.unwrap_or(false) {
        let ca = t.ca_certificates.as_deref().unwrap_or(SYSTEM_ROOTS);
        let mut v = json!({"trusted_ca": {"filename": ca}});
        if !t.subject_alt_names.is_empty() {
            let sans: Vec<Value> = t
                .subject_alt_names
                .iter()
                .map(|s| json!({"exact": s}))
                .collect();
            v["match_subject_alt_names"] = json!(sans);
        }
        common["validation_context"] = v;
    }
    let mut ctx = json!({"@type": UPSTREAM_TLS, "common_tls_context": common});
    let sni = t
        .sni
        .clone()
        .or_else(|| (!host.starts_with('*')).then(|| host.to_string()));
    if let Some(sni) = sni {
        ctx["sni"] = json!(sni);
    }
    Some(json!({"name": "envoy.transport_sockets.tls", "typed_config": ctx}))
}

/// istiod's SNI for a mesh cluster.
pub fn sni(port: u16, subset: &str, host: &str) -> String {
    format!("outbound_.{port}_.{subset}_.{host}")
}

/// What an outbound cluster sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// mTLS to every endpoint.
    Mtls,
    /// mTLS to the endpoints with a sidecar, plaintext to the others (istiod's
    /// `transport_socket_matches`: `tlsMode-istio`, `tlsMode-disabled`).
    Mixed,
    /// No mesh TLS (plaintext, or the DestinationRule's own TLS).
    Plain,
}

/// Whether `labels` mark a workload with a sidecar.
pub fn has_sidecar(labels: &BTreeMap<String, String>) -> bool {
    labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio")
}

/// How an outbound cluster sends: its DestinationRule's `tls` when set, else auto
/// mTLS (with a certificate to send: mTLS to the endpoints labelled as having a
/// sidecar; `mixed` says whether the cluster can split, an EDS cluster).
pub fn outbound_mtls(
    tls: Option<&ClientTls>,
    endpoint_labels: &[&BTreeMap<String, String>],
    has_identity: bool,
    mixed: bool,
) -> Outbound {
    match tls.map(|t| t.mode.as_str()) {
        Some("ISTIO_MUTUAL") => Outbound::Mtls,
        Some(_) => Outbound::Plain,
        None => {
            let with = endpoint_labels.iter().filter(|l| has_sidecar(l)).count();
            if !has_identity || with == 0 {
                Outbound::Plain
            } else if with == endpoint_labels.len() {
                Outbound::Mtls
            } else if mixed {
                Outbound::Mixed
            } else {
                Outbound::Plain
            }
        }
    }
}

/// istiod's `transport_socket_matches` for a cluster whose endpoints are mixed: mTLS
/// (`tls`) to the endpoints whose metadata says `tlsMode: istio`, plaintext to the rest.
pub fn socket_matches(tls: Value) -> Value {
    json!([
        {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": tls},
        {"name": "tlsMode-disabled", "match": {}, "transport_socket": {
            "name": "envoy.transport_sockets.raw_buffer",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}
        }}
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::istio::Spec;
    use crate::mesh::mtls_kinds::{check, check_client, MtlsSetting};

    fn mesh(yaml: &str) -> Mesh {
        let resources = crate::mesh::istio::parse_text(yaml, "t.yaml").unwrap();
        assert!(resources
            .iter()
            .all(|r| matches!(r.spec, Spec::PeerAuthentication(_))));
        Mesh::build(resources).unwrap()
    }

    #[test]
    fn the_workload_port_namespace_and_mesh_policies_apply_in_istiods_order() {
        let m = mesh(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: mesh, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n---\n\
             apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: demo}\nspec: {mtls: {mode: UNSET}}\n---\n\
             apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: web, namespace: demo}\nspec: {selector: {matchLabels: {app: web}}, portLevelMtls: {9000: {mode: DISABLE}}}\n",
        );
        let web: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert_eq!(inbound_mode(&m, "demo", &web, 8080), Mode::Strict);
        assert_eq!(inbound_mode(&m, "demo", &web, 9000), Mode::Disable);
        assert_eq!(
            inbound_mode(&m, "other", &BTreeMap::new(), 80),
            Mode::Strict
        );
        assert_eq!(
            inbound_mode(&Mesh::default(), "demo", &web, 80),
            Mode::Permissive
        );
    }

    #[test]
    fn port_level_settings_need_a_selector_and_modes_are_checked() {
        let p = PeerAuthentication {
            port_level_mtls: [(
                80,
                MtlsSetting {
                    mode: Some("STRICT".into()),
                },
            )]
            .into(),
            ..Default::default()
        };
        assert!(check(&p).unwrap_err().contains("needs a selector"));
        let p = PeerAuthentication {
            mtls: Some(MtlsSetting {
                mode: Some("ON".into()),
            }),
            ..Default::default()
        };
        assert!(check(&p).unwrap_err().starts_with("spec.mtls.mode: `ON`"));
    }

    #[test]
    fn simple_and_mutual_originate_tls_from_files_and_bad_settings_are_named() {
        let simple = ClientTls {
            mode: "SIMPLE".into(),
            ..Default::default()
        };
        let ts = external(&simple, "api.example").unwrap();
        let ctx = &ts["typed_config"];
        assert_eq!(ctx["sni"], "api.example");
        assert_eq!(
            ctx["common_tls_context"]["validation_context"]["trusted_ca"]["filename"],
            SYSTEM_ROOTS
        );
        assert!(ctx["common_tls_context"].get("tls_certificates").is_none());
        let mutual = ClientTls {
            mode: "MUTUAL".into(),
            client_certificate: Some("/c.pem".into()),
            private_key: Some("/k.pem".into()),
            ca_certificates: Some("/ca.pem".into()),
            insecure_skip_verify: Some(true),
            ..Default::default()
        };
        let ts = external(&mutual, "*.example").unwrap();
        let common = &ts["typed_config"]["common_tls_context"];
        assert_eq!(
            common["tls_certificates"][0]["private_key"]["filename"],
            "/k.pem"
        );
        assert!(common.get("validation_context").is_none());
        assert!(ts["typed_config"].get("sni").is_none());
        assert!(external(
            &ClientTls {
                mode: "ISTIO_MUTUAL".into(),
                ..Default::default()
            },
            "x"
        )
        .is_none());
        assert!(check_client(&ClientTls {
            mode: "MUTUAL".into(),
            ..Default::default()
        })
        .unwrap_err()
        .starts_with("clientCertificate: MUTUAL needs"));
        let istio_with_files = ClientTls {
            mode: "ISTIO_MUTUAL".into(),
            ca_certificates: Some("/ca.pem".into()),
            ..Default::default()
        };
        assert!(check_client(&istio_with_files).is_err());
        let secret = ClientTls {
            mode: "SIMPLE".into(),
            credential_name: Some("s".into()),
            ..Default::default()
        };
        assert!(check_client(&secret)
            .unwrap_err()
            .starts_with("credentialName:"));
    }

    #[test]
    fn auto_mtls_splits_mixed_endpoints_and_needs_a_certificate() {
        let istio: BTreeMap<String, String> =
            [(TLS_MODE_LABEL.to_string(), "istio".to_string())].into();
        let plain = BTreeMap::new();
        use Outbound::*;
        assert_eq!(outbound_mtls(None, &[&istio, &istio], true, true), Mtls);
        assert_eq!(outbound_mtls(None, &[&istio, &plain], true, true), Mixed);
        // A DNS cluster cannot split: plaintext, as before.
        assert_eq!(outbound_mtls(None, &[&istio, &plain], true, false), Plain);
        assert_eq!(outbound_mtls(None, &[&istio], false, true), Plain);
        assert_eq!(outbound_mtls(None, &[], true, true), Plain);
        let explicit = ClientTls {
            mode: "ISTIO_MUTUAL".into(),
            ..Default::default()
        };
        assert_eq!(outbound_mtls(Some(&explicit), &[&plain], false, true), Mtls);
    }
}
