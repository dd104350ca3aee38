//! Reads what a handshake did out of rustls for the listener's `ssl.*` counters
//! (`observe::tls_stats`), by Envoy's (BoringSSL's) names.

use rustls::{CertificateError, CipherSuite, ConnectionCommon, NamedGroup, ProtocolVersion};

use crate::observe::tls_stats::{Failure, Handshake, TlsStats};

/// How a handshake that failed with `e` is counted.
pub fn failure(e: &std::io::Error) -> Failure {
    match super::stream::tls_error(e) {
        Some(rustls::Error::NoCertificatesPresented) => Failure::NoCert,
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)) => Failure::San,
        Some(rustls::Error::InvalidCertificate(_)) => Failure::Verify,
        _ => Failure::Other,
    }
}

/// Counts a completed handshake.
pub fn handshake_done<D>(stats: &TlsStats, c: &ConnectionCommon<D>) {
    stats.handshake_done(Handshake {
        resumed: c.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        client_certificate: c.peer_certificates().is_some_and(|p| !p.is_empty()),
        version: c.protocol_version().map(version_name),
        cipher: c.negotiated_cipher_suite().map(|s| cipher_name(s.suite())),
        curve: c
            .negotiated_key_exchange_group()
            .map(|g| curve_name(g.name())),
    });
}

/// Envoy's (BoringSSL's) version names.
pub fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "unknown",
    }
}

/// BoringSSL's cipher names, as Envoy reports them.
pub fn cipher_name(s: CipherSuite) -> &'static str {
    use CipherSuite::*;
    match s {
        TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => "unknown",
    }
}

fn curve_name(g: NamedGroup) -> &'static str {
    match g {
        NamedGroup::X25519 => "X25519",
        NamedGroup::secp256r1 => "P-256",
        NamedGroup::secp384r1 => "P-384",
        NamedGroup::secp521r1 => "P-521",
        NamedGroup::X25519MLKEM768 => "X25519MLKEM768",
        _ => "unknown",
    }
}
