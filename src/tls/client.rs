//! Upstream TLS origination: a cluster's `tls:` block (Envoy's `UpstreamTlsContext`)
//! and the rustls `ClientConfig` built from it on the control side, shared by every
//! worker (so its session cache resumes sessions across cores).
//!
//! Server verification follows Envoy: with `validation_context.trusted_ca_file` the
//! server's chain must lead to one of those CAs, and with `match_subject_alt_names` a
//! DNS or URI SAN must match; the SNI is not checked against the certificate (Envoy
//! does not either, unless told to). Without a validation context any certificate is
//! accepted, as in Envoy; the handshake signature is always verified.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::Deserialize;

use super::config::{CertificateFiles, RawCertificate, RawValidationContext, StringMatch};
use super::files::{pem, stamp, InlinePem, Watched};
use super::params::{RawTlsParams, TlsParams};
use super::server::{certified_key, pem_certs, provider, roots, san_allowed};

/// `tls:` on a cluster.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default)]
    pub alpn_protocols: Option<Vec<String>>,
    /// The proxy's client certificate (at most one).
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    #[serde(default)]
    pub validation_context: Option<RawValidationContext>,
    #[serde(default)]
    pub tls_params: Option<RawTlsParams>,
    /// The SDS files these settings came from (Envoy bootstraps only), stamped before
    /// they were read: the rotation watch reloads when one changes.
    #[serde(skip)]
    pub sds_files: Watched,
}

/// A cluster's upstream TLS, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTlsSpec {
    pub sni: Option<String>,
    pub alpn_protocols: Vec<String>,
    pub certificate: Option<CertificateFiles>,
    pub trusted_ca_file: Option<String>,
    /// The CA bundle inline, read instead of `trusted_ca_file`.
    pub trusted_ca_inline: Option<InlinePem>,
    pub match_subject_alt_names: Vec<StringMatch>,
    /// Versions, TLS 1.2 suites and curves (`tls_params`; default: rustls's).
    pub params: TlsParams,
}

impl UpstreamTlsSpec {
    /// `h2`: the cluster speaks HTTP/2, the ALPN default when none is configured.
    pub(crate) fn build(r: &RawUpstreamTls, h2: bool) -> Result<Self, Vec<(String, String)>> {
        let mut errs = Vec::new();
        if r.certificates.len() > 1 {
            errs.push((
                "certificates".to_string(),
                "at most one client certificate".to_string(),
            ));
        }
        if let Some(s) = &r.sni {
            if s.is_empty() || ServerName::try_from(s.as_str()).is_err() {
                errs.push(("sni".to_string(), format!("`{s}` is not a host name")));
            }
        }
        let alpn = match &r.alpn_protocols {
            Some(a) => a.clone(),
            None if h2 => vec!["h2".to_string()],
            None => Vec::new(),
        };
        let v = r.validation_context.as_ref();
        let mut sans = Vec::new();
        for (i, m) in v
            .map(|v| v.match_subject_alt_names.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match StringMatch::build(m) {
                Ok(m) => sans.push(m),
                Err(e) => errs.push((
                    format!("validation_context.match_subject_alt_names[{i}]"),
                    e,
                )),
            }
        }
        let trusted_ca_file = v.and_then(|v| v.trusted_ca_file.clone());
        if !sans.is_empty() && trusted_ca_file.is_none() {
            errs.push((
                "validation_context.match_subject_alt_names".to_string(),
                "needs validation_context.trusted_ca_file".to_string(),
            ));
        }
        let params =
            TlsParams::build(&r.tls_params.clone().unwrap_or_default()).unwrap_or_else(|e| {
                errs.extend(e);
                TlsParams::default()
            });
        if params.prefer_server_ciphers {
            errs.push((
                "tls_params.prefer_server_ciphers".to_string(),
                "the server picks the suite: only a listener's tls can prefer its own order"
                    .to_string(),
            ));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(UpstreamTlsSpec {
            params,
            sni: r.sni.clone(),
            alpn_protocols: alpn,
            certificate: r.certificates.first().map(CertificateFiles::of),
            trusted_ca_file,
            trusted_ca_inline: v.and_then(|v| v.trusted_ca_inline.clone()),
            match_subject_alt_names: sans,
        })
    }
}

impl UpstreamTlsSpec {
    /// Every file the spec reads, for the rotation watch.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        let ca = match self.trusted_ca_inline {
            None => self.trusted_ca_file.as_deref(),
            Some(_) => None,
        };
        ca.into_iter()
            .chain(self.certificate.iter().flat_map(CertificateFiles::files))
    }
}

/// A cluster's TLS: the spec and the rustls config. Equal when the spec and the file
/// contents are (a cluster whose certificates changed gets new pools).
pub struct ClientTls {
    pub spec: UpstreamTlsSpec,
    pub config: Arc<ClientConfig>,
    contents: Vec<Vec<u8>>,
    /// Each file's stamp, taken before it was read (the SDS files first), for the
    /// rotation watch: new connections to the cluster use the new files.
    pub stamps: Watched,
    /// The first URI SAN of the client certificate, for `TlsInfo::local_uri_san`
    /// (`%UPSTREAM_LOCAL_URI_SAN%`, an outbound Istio reporter's `source_principal`).
    pub local_uri_san: Option<String>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("spec", &self.spec)
            .finish()
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, o: &Self) -> bool {
        self.spec == o.spec && self.contents == o.contents
    }
}

impl ClientTls {
    /// Reads the files and builds the rustls config (control side only). `sds`: the
    /// SDS files the spec came from, stamped when they were read.
    pub fn load(spec: &UpstreamTlsSpec, sds: &Watched) -> Result<ClientTls, String> {
        let mut stamps = sds.clone();
        stamps.extend(spec.files().map(|f| (f.to_string(), stamp(f))));
        let mut contents = Vec::new();
        let roots = match &spec.trusted_ca_file {
            Some(path) => {
                let pem = pem(path, &spec.trusted_ca_inline)?;
                let r = roots(path, &pem)?;
                contents.push(pem);
                Some(r)
            }
            None => None,
        };
        let verifier = Arc::new(Verifier {
            roots,
            sans: spec.match_subject_alt_names.clone(),
            schemes: provider().signature_verification_algorithms,
        });
        let builder = ClientConfig::builder_with_provider(spec.params.provider())
            .with_protocol_versions(spec.params.versions())
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut local_uri_san = None;
        let mut config = match &spec.certificate {
            Some(c) => {
                let chain = pem(&c.cert_chain_file, &c.cert_chain_inline)?;
                let key = pem(&c.private_key_file, &c.private_key_inline)?;
                // Checks that the key belongs to the certificate.
                certified_key(&c.cert_chain_file, &chain, &c.private_key_file, &key)?;
                let certs = pem_certs(&c.cert_chain_file, &chain)?;
                local_uri_san = certs
                    .first()
                    .and_then(|c| super::der::sans(c).uri.into_iter().next());
                let der = PrivateKeyDer::from_pem_slice(&key)
                    .map_err(|e| format!("`{}`: no private key: {e}", c.private_key_file))?;
                contents.extend([chain, key]);
                builder
                    .with_client_auth_cert(certs, der)
                    .map_err(|e| format!("`{}`: {e}", c.cert_chain_file))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = spec
            .alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        config.enable_sni = spec.sni.is_some();
        Ok(ClientTls {
            spec: spec.clone(),
            config: Arc::new(config),
            contents,
            stamps,
            local_uri_san,
        })
    }

    /// The name to hand rustls: the SNI, or (with none) the endpoint's address, which
    /// rustls never sends.
    pub fn server_name(&self, addr: std::net::SocketAddr) -> ServerName<'static> {
        self.spec
            .sni
            .as_deref()
            .and_then(|s| ServerName::try_from(s.to_string()).ok())
            .unwrap_or(ServerName::IpAddress(addr.ip().into()))
    }
}

/// Envoy's upstream verification (see the module docs).
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    sans: Vec<StringMatch>,
    schemes: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.schemes.all,
        )?;
        if !san_allowed(end_entity, &self.sans) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.supported_schemes()
    }
}
