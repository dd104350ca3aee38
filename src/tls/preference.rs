//! A listener that prefers its own TLS 1.2 suite order (`prefer_server_ciphers`; set
//! by the Envoy translation, since Envoy sets BoringSSL's server preference on every
//! context).
//!
//! rustls picks a suite by the client's order, or strictly by the server's
//! (`ignore_client_order`), for TLS 1.2 and 1.3 alike. BoringSSL with server preference
//! picks a TLS 1.2 suite by the server's list, where an `[A|B]` entry is a group of equal
//! preference inside which the client's order decides, and a TLS 1.3 suite by the
//! client's order (Envoy 1.40 answers curl's TLS 1.3 order with its first suite). Neither
//! rustls mode is that, so the choice is made before the handshake: a config per TLS 1.2
//! suite, offering only that one (and every TLS 1.3 suite), and the ClientHello's list
//! (read by the listener) picks which config the handshake runs with.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ServerConfig, SignatureAlgorithm};

use super::params::TlsParams;

/// The configs by TLS 1.2 suite, in the server's order.
pub struct ServerOrder {
    /// (suite id, equal-preference group, the config offering only that TLS 1.2 suite).
    entries: Vec<(u16, usize, Arc<ServerConfig>)>,
}

impl ServerOrder {
    /// A config per TLS 1.2 suite of `params` (the provider's, each its own group, when
    /// none are listed) that one of the certificates (`algorithms`) can serve.
    pub(super) fn build(
        params: &TlsParams,
        algorithms: &[SignatureAlgorithm],
        make: &mut dyn FnMut(Arc<CryptoProvider>) -> Result<ServerConfig, String>,
    ) -> Result<ServerOrder, String> {
        let base = params.provider();
        let mut entries = Vec::new();
        let tls12 = base
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12);
        for (i, suite) in tls12.enumerate() {
            if !algorithms
                .iter()
                .any(|a| suite.usable_for_signature_algorithm(*a))
            {
                continue;
            }
            let group = params
                .cipher_suites
                .iter()
                .position(|c| *c == suite.suite())
                .and_then(|at| params.suite_groups.get(at).copied())
                .unwrap_or(i);
            let mut p = (*base).clone();
            p.cipher_suites
                .retain(|s| s.version() == &rustls::version::TLS13 || s.suite() == suite.suite());
            entries.push((
                u16::from(suite.suite()),
                group,
                Arc::new(make(Arc::new(p))?),
            ));
        }
        Ok(ServerOrder { entries })
    }

    /// The config of the first suite (by the server's order; inside a group, by the
    /// client's) that the client offers; `None` if it offers none of them.
    pub fn pick(&self, offered: &[u16]) -> Option<&Arc<ServerConfig>> {
        let mut best: Option<(usize, usize, &Arc<ServerConfig>)> = None;
        for (suite, group, config) in &self.entries {
            if best.is_some_and(|(g, _, _)| *group > g) {
                break;
            }
            let Some(at) = offered.iter().position(|s| s == suite) else {
                continue;
            };
            if best.is_none_or(|(_, b, _)| at < b) {
                best = Some((*group, at, config));
            }
        }
        best.map(|(_, _, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::params::RawTlsParams;

    const ECDSA_AES128: u16 = 0xc02b;
    const ECDSA_AES256: u16 = 0xc02c;
    const ECDSA_CHACHA: u16 = 0xcca9;
    const RSA_AES128: u16 = 0xc02f;

    fn order(suites: &[&str], algs: &[SignatureAlgorithm]) -> ServerOrder {
        let raw = RawTlsParams {
            cipher_suites: suites.iter().map(|s| s.to_string()).collect(),
            ..RawTlsParams::default()
        };
        let params = TlsParams::build(&raw).unwrap();
        let mut make = |p: Arc<CryptoProvider>| {
            ServerConfig::builder_with_provider(p)
                .with_protocol_versions(params.versions())
                .map_err(|e| e.to_string())
                .map(|b| {
                    b.with_no_client_auth().with_cert_resolver(Arc::new(
                        rustls::server::ResolvesServerCertUsingSni::new(),
                    ))
                })
        };
        ServerOrder::build(&params, algs, &mut make).unwrap()
    }

    /// The TLS 1.2 suite a picked config offers.
    fn offered12(c: &ServerConfig) -> Vec<u16> {
        c.crypto_provider()
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| u16::from(s.suite()))
            .collect()
    }

    #[test]
    fn the_server_order_decides_and_the_client_inside_a_group() {
        let o = order(
            &[
                "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]",
                "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
            ],
            &[SignatureAlgorithm::ECDSA],
        );
        // The RSA suites are left out: no certificate can serve them.
        assert_eq!(o.entries.len(), 3);
        let pick = |offered: &[u16]| o.pick(offered).map(|c| offered12(c));
        // The client lists AES-256 first: the server's first group wins, and inside it
        // the client's order.
        assert_eq!(
            pick(&[ECDSA_AES256, ECDSA_CHACHA, ECDSA_AES128]),
            Some(vec![ECDSA_CHACHA])
        );
        assert_eq!(
            pick(&[ECDSA_AES256, ECDSA_AES128, ECDSA_CHACHA]),
            Some(vec![ECDSA_AES128])
        );
        assert_eq!(pick(&[ECDSA_AES256]), Some(vec![ECDSA_AES256]));
        assert_eq!(pick(&[RSA_AES128]), None);
        // Every TLS 1.3 suite stays on offer.
        let c = o.pick(&[ECDSA_AES128]).unwrap();
        assert_eq!(c.crypto_provider().cipher_suites.len(), 4);
    }
}
