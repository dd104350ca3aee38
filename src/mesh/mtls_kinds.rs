//! The mutual-TLS kinds as read and checked: `PeerAuthentication` and a
//! DestinationRule's `trafficPolicy.tls`. What they become is `peer_auth.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::selector::MatchLabels;

/// `PeerAuthentication.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerAuthentication {
    #[serde(default)]
    pub selector: Option<MatchLabels>,
    #[serde(default)]
    pub mtls: Option<MtlsSetting>,
    #[serde(default)]
    pub port_level_mtls: BTreeMap<u16, MtlsSetting>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MtlsSetting {
    #[serde(default)]
    pub mode: Option<String>,
}

/// A DestinationRule's `trafficPolicy.tls` (ClientTLSSettings).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientTls {
    pub mode: String,
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    #[serde(default)]
    pub sni: Option<String>,
    /// `SIMPLE` and `MUTUAL`: the CA bundle that verifies the server (the system's
    /// when absent).
    #[serde(default)]
    pub ca_certificates: Option<String>,
    /// `MUTUAL`: the sidecar's certificate and key.
    #[serde(default)]
    pub client_certificate: Option<String>,
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
    /// Refused: a Kubernetes secret's name.
    #[serde(default)]
    pub credential_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Permissive,
    Strict,
}

/// A mode as written; `None` for UNSET (or absent).
pub fn mode(s: Option<&MtlsSetting>) -> Result<Option<Mode>, String> {
    match s.and_then(|m| m.mode.as_deref()).unwrap_or("UNSET") {
        "UNSET" => Ok(None),
        "DISABLE" => Ok(Some(Mode::Disable)),
        "PERMISSIVE" => Ok(Some(Mode::Permissive)),
        "STRICT" => Ok(Some(Mode::Strict)),
        other => Err(format!(
            "`{other}` is not UNSET, DISABLE, PERMISSIVE or STRICT"
        )),
    }
}

pub fn check(p: &PeerAuthentication) -> Result<(), String> {
    mode(p.mtls.as_ref()).map_err(|e| format!("spec.mtls.mode: {e}"))?;
    for (port, m) in &p.port_level_mtls {
        if *port == 0 {
            return Err("spec.portLevelMtls: port 0 is not a port".into());
        }
        mode(Some(m)).map_err(|e| format!("spec.portLevelMtls.{port}.mode: {e}"))?;
    }
    if !p.port_level_mtls.is_empty() && p.selector.is_none() {
        return Err("spec.portLevelMtls: needs a selector (istiod's rule)".into());
    }
    Ok(())
}

pub fn check_client(t: &ClientTls) -> Result<(), String> {
    if t.credential_name.is_some() {
        return Err(
            "credentialName: Kubernetes secrets are not served; give the files (clientCertificate, privateKey, caCertificates)".into(),
        );
    }
    let files =
        t.ca_certificates.is_some() || t.client_certificate.is_some() || t.private_key.is_some();
    match t.mode.as_str() {
        "DISABLE" | "ISTIO_MUTUAL" if files => Err(format!(
            "mode: {} takes no clientCertificate, privateKey or caCertificates (the mesh's certificates are used)",
            t.mode
        )),
        "DISABLE" | "ISTIO_MUTUAL" => Ok(()),
        "SIMPLE" if t.client_certificate.is_some() || t.private_key.is_some() => Err(
            "clientCertificate: only with mode MUTUAL (SIMPLE sends no client certificate)".into(),
        ),
        "SIMPLE" => Ok(()),
        "MUTUAL" if t.client_certificate.is_none() || t.private_key.is_none() => {
            Err("clientCertificate: MUTUAL needs clientCertificate and privateKey".into())
        }
        "MUTUAL" => Ok(()),
        other => Err(format!(
            "mode: `{other}` is not DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL"
        )),
    }
}
