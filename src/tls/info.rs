//! What a finished handshake tells about a downstream connection, kept on the
//! connection for the access log (`%DOWNSTREAM_PEER_URI_SAN%`, `%DOWNSTREAM_TLS_VERSION%`,
//! ...), for `x-forwarded-proto: https`, and for policy that needs the peer's identity
//! (RBAC principals, x-forwarded-client-cert). Made once per TLS connection, after the
//! handshake; a plain connection has none.

use rustls::ConnectionCommon;

use super::der;
use super::stats::{cipher_name, version_name};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// BoringSSL's name for the suite, as Envoy logs it.
    pub cipher: &'static str,
    /// The SNI the client asked for (empty without one).
    pub sni: String,
    /// The client certificate's SANs (empty without a certificate).
    pub peer: der::Sans,
}

impl TlsInfo {
    pub fn of<D>(c: &ConnectionCommon<D>, sni: Option<&str>) -> TlsInfo {
        TlsInfo {
            version: c.protocol_version().map_or("", version_name),
            cipher: c
                .negotiated_cipher_suite()
                .map_or("", |s| cipher_name(s.suite())),
            sni: sni.unwrap_or_default().to_string(),
            peer: c
                .peer_certificates()
                .and_then(|p| p.first())
                .map(|c| der::Sans {
                    subject: super::dn::subject(c),
                    ..der::sans(c)
                })
                .unwrap_or_default(),
        }
    }

    /// The peer's SPIFFE ID, if its certificate has one.
    pub fn spiffe_id(&self) -> Option<&str> {
        self.peer.spiffe_id()
    }
}
