//! What a finished handshake tells about a downstream connection, kept on the
//! connection for the access log (`%DOWNSTREAM_PEER_URI_SAN%`, `%DOWNSTREAM_TLS_VERSION%`,
//! ...), for `x-forwarded-proto: https`, and for policy that needs the peer's identity
//! (RBAC principals, x-forwarded-client-cert). Made once per TLS connection, after the
//! handshake; a plain connection has none.

use std::cell::RefCell;
use std::rc::Rc;

use rustls::ConnectionCommon;

use super::config::CertDetails;
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
    /// The certificates the client presented, DER, its own first (empty: none).
    pub peer_chain: Vec<Vec<u8>>,
    /// The first URI SAN of the certificate this side presented (XFCC's `By`).
    pub local_uri_san: Option<String>,
    /// This connection's `x-forwarded-client-cert` element, made on first use for the
    /// details it was made with (`http::xfcc`).
    pub xfcc: RefCell<Option<(CertDetails, Rc<str>)>>,
}

impl TlsInfo {
    /// The facts of handshake `c`; `local_uri_san` is the first URI SAN of the
    /// certificate the chain presents.
    pub fn of<D>(
        c: &ConnectionCommon<D>,
        sni: Option<&str>,
        local_uri_san: Option<&str>,
    ) -> TlsInfo {
        let peer_chain: Vec<Vec<u8>> = c
            .peer_certificates()
            .map(|p| p.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default();
        TlsInfo {
            version: c.protocol_version().map_or("", version_name),
            cipher: c
                .negotiated_cipher_suite()
                .map_or("", |s| cipher_name(s.suite())),
            sni: sni.unwrap_or_default().to_string(),
            peer: peer_chain
                .first()
                .map(|c| der::Sans {
                    subject: super::subject::subject(c).unwrap_or_default(),
                    ..der::sans(c)
                })
                .unwrap_or_default(),
            peer_chain,
            local_uri_san: local_uri_san.map(str::to_string),
            xfcc: RefCell::default(),
        }
    }

    /// The peer's SPIFFE ID, if its certificate has one.
    pub fn spiffe_id(&self) -> Option<&str> {
        self.peer.spiffe_id()
    }

    /// The client presented a certificate (a mutual-TLS connection).
    pub fn peer_presented(&self) -> bool {
        !self.peer_chain.is_empty()
    }
}
