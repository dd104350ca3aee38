//! `tls_params` (Envoy's `TlsParameters`) on either side: the protocol versions, the
//! TLS 1.2 cipher suites and the key-exchange groups a context allows, checked on the
//! control side and turned into the versions and crypto provider its rustls config is
//! built with.
//!
//! rustls implements TLS 1.2 and 1.3 only, and for TLS 1.2 only the forward-secret
//! AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305). So:
//! - a minimum of TLSv1_0 or TLSv1_1 is accepted and means TLS 1.2 (no peer that can
//!   speak 1.2 is turned away); a maximum below TLSv1_2 is refused;
//! - BoringSSL's names of the suites rustls lacks (`AES128-SHA`, `ECDHE-RSA-AES128-SHA`,
//!   ...) are skipped; an unknown name is refused (Envoy refuses it too), and so is a
//!   list that leaves no TLS 1.2 suite while TLS 1.2 is allowed;
//! - as in BoringSSL, the list orders TLS 1.2 suites only; TLS 1.3's are always on.
//!
//! Envoy's defaults (a client's maximum is TLS 1.2, its suite list and curves) belong to
//! the Envoy translation (`config/envoy/tls.rs`); the native defaults are rustls's.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, NamedGroup, SupportedProtocolVersion};
use serde::Deserialize;

/// The crypto provider: aws-lc-rs (rustls's default and its fastest; it builds here
/// with the C compiler alone).
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// `tls_params:` natively, with Envoy's field names and values.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsParams {
    /// `TLS_AUTO`, `TLSv1_0`, `TLSv1_1`, `TLSv1_2` or `TLSv1_3`.
    #[serde(default)]
    pub tls_minimum_protocol_version: Option<String>,
    #[serde(default)]
    pub tls_maximum_protocol_version: Option<String>,
    /// BoringSSL suite names; an entry may be an equal-preference group `[A|B]`.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// `X25519`, `P-256`, `P-384`, `X25519MLKEM768`.
    #[serde(default)]
    pub ecdh_curves: Vec<String>,
    /// A listener's TLS 1.2 suite is the first of `cipher_suites` the client offers (an
    /// `[A|B]` group: the one the client lists first), as BoringSSL's server preference
    /// does (Envoy sets it on every context); `false`: the client's order, rustls's
    /// default. Not an Envoy field: the Envoy translation sets it on listeners.
    #[serde(default)]
    pub prefer_server_ciphers: Option<bool>,
}

/// A context's checked `tls_params`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsParams {
    /// The minimum is TLS 1.3.
    pub only_13: bool,
    /// The maximum is TLS 1.2.
    pub only_12: bool,
    /// TLS 1.2 suites in preference order (empty: the provider's).
    pub cipher_suites: Vec<CipherSuite>,
    /// Key-exchange groups in preference order (empty: the provider's).
    pub ecdh_curves: Vec<NamedGroup>,
    /// The equal-preference group of each of `cipher_suites` (its entry's index).
    pub suite_groups: Vec<usize>,
    /// The server picks the TLS 1.2 suite by `cipher_suites` (`prefer_server_ciphers`).
    pub prefer_server_ciphers: bool,
}

/// BoringSSL's names of the TLS 1.2 suites rustls implements.
const SUITES: &[(&str, CipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// BoringSSL's names of suites rustls does not implement (static RSA key exchange, CBC,
/// PSK): skipped.
const SKIPPED: &[&str] = &[
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-PSK-AES256-CBC-SHA",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "PSK-AES128-CBC-SHA",
    "PSK-AES256-CBC-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

const CURVES: &[(&str, NamedGroup)] = &[
    ("X25519", NamedGroup::X25519),
    ("P-256", NamedGroup::secp256r1),
    ("P-384", NamedGroup::secp384r1),
    ("X25519MLKEM768", NamedGroup::X25519MLKEM768),
];

/// A version name: `Some(true)` TLS 1.3, `Some(false)` TLS 1.2 (or an older one, for a
/// minimum), `None` TLS_AUTO.
fn version(v: &Option<String>, path: &str, max: bool) -> Result<Option<bool>, (String, String)> {
    match v.as_deref() {
        None | Some("TLS_AUTO") => Ok(None),
        Some("TLSv1_3") => Ok(Some(true)),
        Some("TLSv1_2") => Ok(Some(false)),
        Some("TLSv1_0" | "TLSv1_1") if !max => Ok(Some(false)),
        Some("TLSv1_0" | "TLSv1_1") => Err((
            path.to_string(),
            "TLS 1.0 and 1.1 are not implemented (rustls: TLS 1.2 and 1.3); use TLSv1_2 or TLSv1_3"
                .to_string(),
        )),
        Some(o) => Err((
            path.to_string(),
            format!("`{o}` is not one of TLS_AUTO, TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3"),
        )),
    }
}

impl TlsParams {
    /// Checks `r`; errors carry paths under `tls_params`.
    pub(crate) fn build(r: &RawTlsParams) -> Result<TlsParams, Vec<(String, String)>> {
        let mut errs = Vec::new();
        let min = version(
            &r.tls_minimum_protocol_version,
            "tls_params.tls_minimum_protocol_version",
            false,
        )
        .unwrap_or_else(|e| {
            errs.push(e);
            None
        });
        let max = version(
            &r.tls_maximum_protocol_version,
            "tls_params.tls_maximum_protocol_version",
            true,
        )
        .unwrap_or_else(|e| {
            errs.push(e);
            None
        });
        if min == Some(true) && max == Some(false) {
            errs.push((
                "tls_params.tls_minimum_protocol_version".to_string(),
                "is above tls_maximum_protocol_version".to_string(),
            ));
        }
        let mut cipher_suites = Vec::new();
        let mut suite_groups = Vec::new();
        for (i, entry) in r.cipher_suites.iter().enumerate() {
            let names = entry.trim().trim_start_matches('[').trim_end_matches(']');
            for name in names.split('|').map(str::trim) {
                match SUITES.iter().find(|(n, _)| *n == name) {
                    Some((_, s)) if !cipher_suites.contains(s) => {
                        cipher_suites.push(*s);
                        suite_groups.push(i);
                    }
                    Some(_) => {}
                    None if SKIPPED.contains(&name) => {}
                    None => errs.push((
                        format!("tls_params.cipher_suites[{i}]"),
                        format!("`{name}` is not a known cipher suite"),
                    )),
                }
            }
        }
        if !r.cipher_suites.is_empty() && cipher_suites.is_empty() && min != Some(true) {
            errs.push((
                "tls_params.cipher_suites".to_string(),
                "none of these is a TLS 1.2 suite rustls implements (ECDHE with AES-GCM or ChaCha20-Poly1305)".to_string(),
            ));
        }
        let mut ecdh_curves = Vec::new();
        for (i, name) in r.ecdh_curves.iter().enumerate() {
            match CURVES.iter().find(|(n, _)| n == name) {
                Some((_, g)) if !ecdh_curves.contains(g) => ecdh_curves.push(*g),
                Some(_) => {}
                None => errs.push((
                    format!("tls_params.ecdh_curves[{i}]"),
                    format!(
                        "`{name}` is not one of {}",
                        CURVES.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
                    ),
                )),
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(TlsParams {
            only_13: min == Some(true),
            only_12: max == Some(false),
            cipher_suites,
            ecdh_curves,
            suite_groups,
            prefer_server_ciphers: r.prefer_server_ciphers.unwrap_or(false),
        })
    }

    /// The protocol versions to build the rustls config with.
    pub fn versions(&self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: &[&SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        static V12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
        static V13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match (self.only_13, self.only_12) {
            (true, _) => V13,
            (false, true) => V12,
            (false, false) => BOTH,
        }
    }

    /// The crypto provider: the process's one, or (with suites or curves given) a copy
    /// with those, in that order.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        let base = provider();
        if self.cipher_suites.is_empty() && self.ecdh_curves.is_empty() {
            return base;
        }
        let mut p = (*base).clone();
        if !self.cipher_suites.is_empty() {
            let tls13 = base
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13);
            let tls12 = self
                .cipher_suites
                .iter()
                .filter_map(|c| base.cipher_suites.iter().find(|s| s.suite() == *c));
            p.cipher_suites = tls13.chain(tls12).copied().collect();
        }
        if !self.ecdh_curves.is_empty() {
            p.kx_groups = self
                .ecdh_curves
                .iter()
                .filter_map(|g| {
                    rustls::crypto::aws_lc_rs::ALL_KX_GROUPS
                        .iter()
                        .find(|k| k.name() == *g)
                        .copied()
                })
                .collect();
        }
        Arc::new(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(min: &str, max: &str, suites: &[&str], curves: &[&str]) -> RawTlsParams {
        let s = |v: &str| (!v.is_empty()).then(|| v.to_string());
        RawTlsParams {
            tls_minimum_protocol_version: s(min),
            tls_maximum_protocol_version: s(max),
            cipher_suites: suites.iter().map(|x| x.to_string()).collect(),
            ecdh_curves: curves.iter().map(|x| x.to_string()).collect(),
            prefer_server_ciphers: None,
        }
    }

    #[test]
    fn versions() {
        let p = TlsParams::build(&raw("", "TLSv1_2", &[], &[])).unwrap();
        assert_eq!(p.versions().len(), 1);
        assert_eq!(p.versions()[0], &rustls::version::TLS12);
        let p = TlsParams::build(&raw("TLSv1_3", "TLS_AUTO", &[], &[])).unwrap();
        assert_eq!(p.versions()[0], &rustls::version::TLS13);
        // An older floor is TLS 1.2's.
        let p = TlsParams::build(&raw("TLSv1_0", "", &[], &[])).unwrap();
        assert_eq!(p.versions().len(), 2);
        let e = TlsParams::build(&raw("", "TLSv1_1", &[], &[])).unwrap_err();
        assert_eq!(e[0].0, "tls_params.tls_maximum_protocol_version");
        let e = TlsParams::build(&raw("TLSv1_3", "TLSv1_2", &[], &[])).unwrap_err();
        assert_eq!(e[0].0, "tls_params.tls_minimum_protocol_version");
        let e = TlsParams::build(&raw("TLSv9", "", &[], &[])).unwrap_err();
        assert!(e[0].1.contains("TLSv9"), "{e:?}");
    }

    #[test]
    fn suites_follow_the_list_and_skip_what_rustls_lacks() {
        let p = TlsParams::build(&raw(
            "",
            "",
            &[
                "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]",
                "AES128-SHA",
                "ECDHE-RSA-AES256-GCM-SHA384",
            ],
            &["P-256", "X25519"],
        ))
        .unwrap();
        let provider = p.provider();
        let tls12: Vec<_> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            tls12,
            [
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ]
        );
        // TLS 1.3's suites stay.
        assert_eq!(provider.cipher_suites.len(), 6);
        let groups: Vec<_> = provider.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(groups, [NamedGroup::secp256r1, NamedGroup::X25519]);

        let e = TlsParams::build(&raw("", "", &["ECDHE-ECDSA-AES128-GCM"], &[])).unwrap_err();
        assert_eq!(e[0].0, "tls_params.cipher_suites[0]");
        let e = TlsParams::build(&raw("", "", &["AES128-SHA"], &[])).unwrap_err();
        assert_eq!(e[0].0, "tls_params.cipher_suites");
        // Only TLS 1.3 allowed: no TLS 1.2 suite needed.
        assert!(TlsParams::build(&raw("TLSv1_3", "", &["AES128-SHA"], &[])).is_ok());
        let e = TlsParams::build(&raw("", "", &[], &["P-521"])).unwrap_err();
        assert_eq!(e[0].0, "tls_params.ecdh_curves[0]");
    }
}
