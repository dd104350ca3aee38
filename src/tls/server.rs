//! Downstream TLS: a filter chain's rustls `ServerConfig`, built on the control side
//! from the chain's `DownstreamTlsSpec` (this is where certificate files are read),
//! shared by every worker through the config snapshot.
//!
//! Client certificates are verified by webpki against the trusted CA bundle (chain,
//! validity period, key usage), then by the chain's SAN matchers (`SanVerifier`).

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use super::config::{DownstreamTlsSpec, SanType, StringMatch};
use super::der;
use super::files::{pem, stamp, Watched};
pub use super::params::provider;

/// Session ticket keys: one rotating ticketer for the whole process, so every core
/// (and every config version: a reload keeps resumption working) issues and accepts
/// the same tickets. rustls rotates the key every 6 hours and accepts the previous one.
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, String> {
    static T: OnceLock<Arc<dyn rustls::server::ProducesTickets>> = OnceLock::new();
    if let Some(t) = T.get() {
        return Ok(t.clone());
    }
    let t = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| format!("cannot make session ticket keys: {e}"))?;
    Ok(T.get_or_init(|| t).clone())
}

/// A chain's TLS: the spec and the rustls config built from it. Equal when the spec and
/// the bytes of every file it read are equal, so a reload after a certificate rotation
/// counts as a change.
pub struct ServerTls {
    pub spec: DownstreamTlsSpec,
    pub config: Arc<ServerConfig>,
    /// With `prefer_server_ciphers`: a config per TLS 1.2 suite, to make the server's
    /// order decide (`config_for`).
    prefer: Option<super::preference::ServerOrder>,
    /// With `alpn_protocols`: the same config without ALPN, for a client that offers
    /// none of them. rustls refuses such a handshake (`no_application_protocol`);
    /// Envoy (BoringSSL) goes on without ALPN, and so does this.
    no_alpn: Option<Arc<ServerConfig>>,
    /// The PEM read for it: each certificate's chain and key, then the CA bundle.
    contents: Vec<Vec<u8>>,
    /// Each file's stamp, taken before it was read (the SDS files the spec came from
    /// first): the rotation watch reloads when one changes (`runtime/tls_watch.rs`).
    pub stamps: Watched,
    /// The first URI SAN of the first certificate: x-forwarded-client-cert's `By`.
    pub local_uri_san: Option<String>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("spec", &self.spec)
            .finish()
    }
}

impl ServerTls {
    /// The config for a handshake whose ClientHello offered `suites` (and TLS 1.3 if
    /// `tls13`) and the protocols `alpn`: the chain's, unless it prefers its own TLS
    /// 1.2 order and TLS 1.2 is what this client gets; without ALPN when the client
    /// offers protocols and none is the chain's (that client then gets the chain's
    /// own suite order only on TLS 1.3).
    pub fn config_for(&self, suites: &[u16], tls13: bool, alpn: &[String]) -> &Arc<ServerConfig> {
        if let Some(plain) = &self.no_alpn {
            let ours = &self.spec.alpn_protocols;
            if !alpn.is_empty() && !alpn.iter().any(|a| ours.contains(a)) {
                return plain;
            }
        }
        match &self.prefer {
            Some(p) if !tls13 || self.spec.params.only_12 => p.pick(suites).unwrap_or(&self.config),
            _ => &self.config,
        }
    }

    /// A handshake needs the ClientHello to choose its config: the chain prefers its
    /// own TLS 1.2 order, or lists ALPN protocols a client may not offer.
    pub fn needs_hello(&self) -> bool {
        self.prefer.is_some() || self.no_alpn.is_some()
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, o: &Self) -> bool {
        self.spec == o.spec && self.contents == o.contents
    }
}

/// The certificates in a PEM file.
pub fn pem_certs(path: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{path}`: {e}"))?;
    if certs.is_empty() {
        return Err(format!("`{path}` has no PEM certificate"));
    }
    Ok(certs)
}

/// A certificate chain and its key, checked to belong together.
pub fn certified_key(
    chain_path: &str,
    chain: &[u8],
    key_path: &str,
    key: &[u8],
) -> Result<Arc<CertifiedKey>, String> {
    let certs = pem_certs(chain_path, chain)?;
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("`{key_path}`: no private key: {e}"))?;
    let ck = CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| format!("`{chain_path}` with `{key_path}`: {e}"))?;
    Ok(Arc::new(ck))
}

/// The CA bundle as a root store.
pub fn roots(path: &str, pem: &[u8]) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    let (_, bad) = store.add_parsable_certificates(pem_certs(path, pem)?);
    if store.is_empty() || bad > 0 {
        return Err(format!("`{path}`: {bad} certificate(s) are not usable CAs"));
    }
    Ok(Arc::new(store))
}

impl ServerTls {
    /// Reads the files and builds the rustls config. `sds`: the SDS files the spec's
    /// certificates came from (Envoy bootstraps), stamped when they were read.
    pub fn load(spec: &DownstreamTlsSpec, sds: &Watched) -> Result<ServerTls, String> {
        let mut stamps = sds.clone();
        stamps.extend(spec.files().map(|f| (f.to_string(), stamp(f))));
        let mut contents = Vec::new();
        let mut keys = Vec::new();
        for c in &spec.certificates {
            let chain = pem(&c.cert_chain_file, &c.cert_chain_inline)?;
            let key = pem(&c.private_key_file, &c.private_key_inline)?;
            keys.push(certified_key(
                &c.cert_chain_file,
                &chain,
                &c.private_key_file,
                &key,
            )?);
            contents.extend([chain, key]);
        }
        let verifier: Option<Arc<dyn ClientCertVerifier>> = match &spec.trusted_ca_file {
            Some(path) => {
                let ca = pem(path, &spec.trusted_ca_inline)?;
                let roots = roots(path, &ca)?;
                contents.push(ca);
                let mut v = WebPkiClientVerifier::builder_with_provider(roots, provider());
                if !spec.require_client_certificate {
                    v = v.allow_unauthenticated();
                }
                let inner = v.build().map_err(|e| format!("`{path}`: {e}"))?;
                Some(Arc::new(SanVerifier {
                    inner,
                    sans: spec.match_subject_alt_names.clone(),
                }))
            }
            None => None,
        };
        let local_uri_san = keys
            .first()
            .and_then(|k| k.cert.first())
            .and_then(|c| super::der::sans(c).uri.into_iter().next());
        let algorithms: Vec<_> = keys.iter().map(|k| k.key.algorithm()).collect();
        let resolver = Arc::new(Certificates(keys));
        let ticketer = ticketer()?;
        // One config per crypto provider, sharing the verifier, the certificates, the
        // ticket keys and the session cache.
        let mut sessions = None;
        let mut make = |p: Arc<rustls::crypto::CryptoProvider>| -> Result<ServerConfig, String> {
            let builder = ServerConfig::builder_with_provider(p)
                .with_protocol_versions(spec.params.versions())
                .map_err(|e| e.to_string())?;
            let builder = match &verifier {
                Some(v) => builder.with_client_cert_verifier(v.clone()),
                None => builder.with_no_client_auth(),
            };
            let mut config = builder.with_cert_resolver(resolver.clone());
            config.alpn_protocols = spec
                .alpn_protocols
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect();
            config.ticketer = ticketer.clone();
            // The session cache (TLS 1.2 session IDs) is rustls's default, 256 entries.
            match &sessions {
                Some(s) => config.session_storage = Arc::clone(s),
                None => sessions = Some(config.session_storage.clone()),
            }
            Ok(config)
        };
        let config = make(spec.params.provider())?;
        let no_alpn = (!config.alpn_protocols.is_empty()).then(|| {
            let mut c = config.clone();
            c.alpn_protocols.clear();
            Arc::new(c)
        });
        let prefer = if spec.params.prefer_server_ciphers && !spec.params.only_13 {
            Some(super::preference::ServerOrder::build(
                &spec.params,
                &algorithms,
                &mut make,
            )?)
        } else {
            None
        };
        Ok(ServerTls {
            spec: spec.clone(),
            config: Arc::new(config),
            prefer,
            no_alpn,
            contents,
            stamps,
            local_uri_san,
        })
    }
}

/// A chain's certificates: the first one the client can verify a signature of.
#[derive(Debug)]
struct Certificates(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|c| c.key.choose_scheme(schemes).is_some())
            .or(self.0.first())
            .cloned()
    }
}

/// webpki's verdict, then the SAN match. A mismatch is reported as
/// `CertificateError::NotValidForName` (counted as `ssl.fail_verify_san`).
#[derive(Debug)]
struct SanVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    sans: Vec<StringMatch>,
}

/// True if `cert` has a DNS or URI SAN that one of `matchers` accepts (or there are
/// no matchers).
pub fn san_allowed(cert: &[u8], matchers: &[StringMatch]) -> bool {
    if matchers.is_empty() {
        return true;
    }
    let s = der::sans(cert);
    let typed = |want: SanType| move |m: &&StringMatch| m.san_type.is_none_or(|t| t == want);
    s.dns.iter().any(|n| {
        matchers
            .iter()
            .filter(typed(SanType::Dns))
            .any(|m| m.matches(n))
    }) || s.uri.iter().any(|n| {
        matchers
            .iter()
            .filter(typed(SanType::Uri))
            .any(|m| m.matches(n))
    })
}

impl ClientCertVerifier for SanVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if !san_allowed(end_entity, &self.sans) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ));
        }
        Ok(ok)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
