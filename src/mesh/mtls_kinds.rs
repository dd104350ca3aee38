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
    match t.mode.as_str() {
        "DISABLE" | "ISTIO_MUTUAL" => Ok(()),
        "SIMPLE" | "MUTUAL" => Err(format!(
            "mode: `{}` (TLS to a service outside the mesh) is not served yet; DISABLE or ISTIO_MUTUAL",
            t.mode
        )),
        other => Err(format!("mode: `{other}` is not DISABLE or ISTIO_MUTUAL")),
    }
}
