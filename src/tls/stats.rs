//! TLS counters of one listener on one core, with Envoy's names (`ssl.handshake`,
//! `ssl.connection_error`, `ssl.fail_verify_*`, `ssl.no_certificate`,
//! `ssl.versions.*`, `ssl.ciphers.*`, `ssl.curves.*`). Plain cells like the other
//! per-core stats; the version, cipher and curve tables are a handful of entries each.

use std::cell::RefCell;
use std::collections::BTreeMap;

use rustls::{CertificateError, CipherSuite, NamedGroup, ProtocolVersion};
use serde::Serialize;

use crate::observe::stats::Counter;

/// How a handshake ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The client sent no certificate where one is required (`fail_verify_no_cert`).
    NoCert,
    /// The client certificate's SANs matched none allowed (`fail_verify_san`).
    San,
    /// The client certificate did not verify: unknown CA, expired, bad signature
    /// (`fail_verify_error`).
    Verify,
    /// Anything else: a malformed or unacceptable hello, no common suite, a reset
    /// (`connection_error`).
    Other,
}

impl Failure {
    pub fn of(e: &std::io::Error) -> Failure {
        match super::stream::tls_error(e) {
            Some(rustls::Error::NoCertificatesPresented) => Failure::NoCert,
            Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)) => {
                Failure::San
            }
            Some(rustls::Error::InvalidCertificate(_)) => Failure::Verify,
            _ => Failure::Other,
        }
    }
}

#[derive(Default)]
pub struct TlsStats {
    pub handshake: Counter,
    pub connection_error: Counter,
    pub fail_verify_error: Counter,
    pub fail_verify_san: Counter,
    pub fail_verify_no_cert: Counter,
    /// Successful handshakes without a client certificate.
    pub no_certificate: Counter,
    /// Handshakes that resumed a session (a ticket or a session ID).
    pub session_reused: Counter,
    versions: RefCell<Vec<(&'static str, u64)>>,
    ciphers: RefCell<Vec<(&'static str, u64)>>,
    curves: RefCell<Vec<(&'static str, u64)>>,
}

fn bump(table: &RefCell<Vec<(&'static str, u64)>>, name: &'static str) {
    let mut t = table.borrow_mut();
    match t.iter_mut().find(|(n, _)| *n == name) {
        Some((_, c)) => *c += 1,
        None => t.push((name, 1)),
    }
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

impl TlsStats {
    /// A completed handshake.
    pub fn handshake_done<D>(&self, c: &rustls::ConnectionCommon<D>) {
        self.handshake.inc();
        if c.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            self.session_reused.inc();
        }
        if c.peer_certificates().is_none_or(|p| p.is_empty()) {
            self.no_certificate.inc();
        }
        if let Some(v) = c.protocol_version() {
            bump(&self.versions, version_name(v));
        }
        if let Some(s) = c.negotiated_cipher_suite() {
            bump(&self.ciphers, cipher_name(s.suite()));
        }
        if let Some(g) = c.negotiated_key_exchange_group() {
            bump(&self.curves, curve_name(g.name()));
        }
    }

    pub fn failed(&self, f: Failure) {
        match f {
            Failure::NoCert => &self.fail_verify_no_cert,
            Failure::San => &self.fail_verify_san,
            Failure::Verify => &self.fail_verify_error,
            Failure::Other => &self.connection_error,
        }
        .inc();
    }

    pub fn report(&self) -> TlsReport {
        let table = |t: &RefCell<Vec<(&'static str, u64)>>| {
            t.borrow()
                .iter()
                .map(|(n, c)| (n.to_string(), *c))
                .collect()
        };
        TlsReport {
            handshake: self.handshake.get(),
            connection_error: self.connection_error.get(),
            fail_verify_error: self.fail_verify_error.get(),
            fail_verify_san: self.fail_verify_san.get(),
            fail_verify_no_cert: self.fail_verify_no_cert.get(),
            no_certificate: self.no_certificate.get(),
            session_reused: self.session_reused.get(),
            versions: table(&self.versions),
            ciphers: table(&self.ciphers),
            curves: table(&self.curves),
        }
    }
}

/// A listener's `ssl.*` counters (`/stats`: `listeners[].ssl`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsReport {
    pub handshake: u64,
    pub connection_error: u64,
    pub fail_verify_error: u64,
    pub fail_verify_san: u64,
    pub fail_verify_no_cert: u64,
    pub no_certificate: u64,
    pub session_reused: u64,
    pub versions: BTreeMap<String, u64>,
    pub ciphers: BTreeMap<String, u64>,
    pub curves: BTreeMap<String, u64>,
}

impl TlsReport {
    pub fn merge(&mut self, o: TlsReport) {
        self.handshake += o.handshake;
        self.connection_error += o.connection_error;
        self.fail_verify_error += o.fail_verify_error;
        self.fail_verify_san += o.fail_verify_san;
        self.fail_verify_no_cert += o.fail_verify_no_cert;
        self.no_certificate += o.no_certificate;
        self.session_reused += o.session_reused;
        for (mine, theirs) in [
            (&mut self.versions, o.versions),
            (&mut self.ciphers, o.ciphers),
            (&mut self.curves, o.curves),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
    }
}
