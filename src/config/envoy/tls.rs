//! Envoy's TLS transport sockets -> the native `tls:` blocks: a filter chain's
//! `DownstreamTlsContext` and a cluster's `UpstreamTlsContext`, with certificates and
//! CA bundles as files or inline PEM (`filename`, `inline_string`, `inline_bytes`),
//! given in the context or as secrets in SDS files (`sds.rs`). Control plane only.
//!
//! Typed SAN matchers of type DNS and URI map to the native matchers, which check both
//! kinds of SAN (a `spiffe://` URI matcher cannot match a DNS name, and the reverse);
//! other SAN types and the other TLS knobs are refused by the
//! walker or here, with their path.

use envoy_types::pb::envoy::config::core::v3::{
    data_source, transport_socket, DataSource, TransportSocket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
    tls_parameters::TlsProtocol, CertificateValidationContext, CommonTlsContext,
    DownstreamTlsContext, SdsSecretConfig, TlsCertificate, TlsParameters, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use super::super::raw::RawCluster;
use super::convert::{payload, AdsSecrets, R};
use super::err;
use super::sds;
use crate::tls::client::RawUpstreamTls;
use crate::tls::config::{
    RawCertificate, RawDownstreamTls, RawRegex, RawStringMatch, RawValidationContext,
};
use crate::tls::files::{InlinePem, Watched};
use crate::tls::params::RawTlsParams;

const DOWNSTREAM: &str = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const UPSTREAM: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

fn typed_config<'a>(ts: &'a TransportSocket, p: &str) -> R<&'a Any> {
    match &ts.config_type {
        Some(transport_socket::ConfigType::TypedConfig(any)) => Ok(any),
        _ => Err(err(format!("{p}.typed_config"), "is required")),
    }
}

/// A PEM data source: a file, or inline (then named `<inline>`, as Envoy names it).
fn file(d: &Option<DataSource>, p: &str) -> R<(String, Option<InlinePem>)> {
    let inline = |b: &[u8]| Ok(("<inline>".to_string(), Some(InlinePem(b.into()))));
    match d.as_ref().and_then(|d| d.specifier.as_ref()) {
        Some(data_source::Specifier::Filename(f)) => Ok((f.clone(), None)),
        Some(data_source::Specifier::InlineString(s)) => inline(s.as_bytes()),
        Some(data_source::Specifier::InlineBytes(b)) => inline(b),
        _ => Err(err(
            p,
            "must be a `filename`, `inline_string` or `inline_bytes` data source",
        )),
    }
}

fn matcher(m: &Option<StringMatcher>, p: &str) -> R<RawStringMatch> {
    let mut out = RawStringMatch {
        ignore_case: m.as_ref().is_some_and(|m| m.ignore_case),
        ..RawStringMatch::default()
    };
    match m.as_ref().and_then(|m| m.match_pattern.as_ref()) {
        Some(MatchPattern::Exact(v)) => out.exact = Some(v.clone()),
        Some(MatchPattern::Prefix(v)) => out.prefix = Some(v.clone()),
        Some(MatchPattern::Suffix(v)) => out.suffix = Some(v.clone()),
        Some(MatchPattern::Contains(v)) => out.contains = Some(v.clone()),
        Some(MatchPattern::SafeRegex(r)) => {
            out.safe_regex = Some(RawRegex {
                regex: r.regex.clone(),
            })
        }
        _ => {
            return Err(err(
                p,
                "needs `exact`, `prefix`, `suffix`, `contains` or `safe_regex`",
            ))
        }
    }
    Ok(out)
}

/// What a `CommonTlsContext` configures, in the native shape.
struct Common {
    certificates: Vec<RawCertificate>,
    alpn: Vec<String>,
    validation: Option<RawValidationContext>,
    params: Option<TlsParameters>,
    /// The SDS files read for it, stamped before the read.
    sds_files: Watched,
}

/// Envoy's default TLS 1.2 suites for both sides (BoringSSL without FIPS), in order.
const ENVOY_SUITES: [&str; 4] = [
    "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]",
    "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
];
/// Envoy's default key-exchange groups for both sides.
const ENVOY_CURVES: [&str; 2] = ["X25519", "P-256"];

/// `tls_params` with Envoy's defaults filled in: TLS 1.2 to 1.3, except that a client's
/// maximum is TLS 1.2 (`ClientContextConfigImpl::DEFAULT_MAX_VERSION`), and Envoy's
/// suite list and curves when none are given. Checked here, so that an error names the
/// Envoy field (`p`: the typed config's path).
fn params(t: Option<&TlsParameters>, client: bool, p: &str) -> R<RawTlsParams> {
    let name = |v: i32| {
        TlsProtocol::try_from(v)
            .ok()
            .filter(|v| *v != TlsProtocol::TlsAuto)
            .map(|v| v.as_str_name().to_string())
    };
    let list = |l: Option<&Vec<String>>, default: &[&str]| match l {
        Some(l) if !l.is_empty() => l.clone(),
        _ => default.iter().map(|s| s.to_string()).collect(),
    };
    let max = t.and_then(|t| name(t.tls_maximum_protocol_version));
    let raw = RawTlsParams {
        tls_minimum_protocol_version: t.and_then(|t| name(t.tls_minimum_protocol_version)),
        tls_maximum_protocol_version: max.or(client.then(|| "TLSv1_2".to_string())),
        cipher_suites: list(t.map(|t| &t.cipher_suites), &ENVOY_SUITES),
        ecdh_curves: list(t.map(|t| &t.ecdh_curves), &ENVOY_CURVES),
        // BoringSSL's server preference, which Envoy sets on every context (it decides
        // only on a server).
        prefer_server_ciphers: (!client).then_some(true),
    };
    if let Err(e) = crate::tls::params::TlsParams::build(&raw) {
        let (field, why) = e.into_iter().next().unwrap_or_default();
        return Err(err(format!("{p}.common_tls_context.{field}"), why));
    }
    Ok(raw)
}

/// A `TlsCertificate` (inline or from an SDS secret) as file paths.
fn certificate(t: &TlsCertificate, tp: &str) -> R<RawCertificate> {
    let (cert_chain_file, cert_chain_inline) =
        file(&t.certificate_chain, &format!("{tp}.certificate_chain"))?;
    let (private_key_file, private_key_inline) =
        file(&t.private_key, &format!("{tp}.private_key"))?;
    Ok(RawCertificate {
        cert_chain_file,
        private_key_file,
        cert_chain_inline,
        private_key_inline,
    })
}

/// A `CertificateValidationContext` (inline, from an SDS secret, or combined).
fn validation(v: &CertificateValidationContext, vp: &str) -> R<RawValidationContext> {
    let mut sans = Vec::new();
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let mp = format!("{vp}.match_typed_subject_alt_names[{i}]");
        let kind = match SanType::try_from(m.san_type) {
            Ok(SanType::Dns) => "dns",
            Ok(SanType::Uri) => "uri",
            _ => {
                return Err(err(
                    format!("{mp}.san_type"),
                    "only DNS and URI are supported",
                ))
            }
        };
        let mut one = matcher(&m.matcher, &format!("{mp}.matcher"))?;
        one.san_type = Some(kind.to_string());
        sans.push(one);
    }
    // Deprecated in Envoy, still honoured by it.
    #[allow(deprecated)]
    for (i, m) in v.match_subject_alt_names.iter().enumerate() {
        let mp = format!("{vp}.match_subject_alt_names[{i}]");
        sans.push(matcher(&Some(m.clone()), &mp)?);
    }
    let (trusted_ca_file, trusted_ca_inline) = match &v.trusted_ca {
        Some(_) => {
            let (f, inline) = file(&v.trusted_ca, &format!("{vp}.trusted_ca"))?;
            (Some(f), inline)
        }
        None => (None, None),
    };
    Ok(RawValidationContext {
        trusted_ca_file,
        trusted_ca_inline,
        match_subject_alt_names: sans,
    })
}

/// Certificates, ALPN and validation of a `CommonTlsContext`; secrets from SDS files
/// are read here (`sds.rs`).
fn common(c: &Option<CommonTlsContext>, p: &str, ads: &AdsSecrets) -> R<Common> {
    let p = format!("{p}.common_tls_context");
    let mut out = Common {
        certificates: Vec::new(),
        alpn: Vec::new(),
        validation: None,
        params: None,
        sds_files: Vec::new(),
    };
    let Some(c) = c else { return Ok(out) };
    out.alpn = c.alpn_protocols.clone();
    out.params = c.tls_params.clone();
    for (i, t) in c.tls_certificates.iter().enumerate() {
        out.certificates
            .push(certificate(t, &format!("{p}.tls_certificates[{i}]"))?);
    }
    // As in Envoy, inline certificates win: the SDS configs are then not read at all.
    if c.tls_certificates.is_empty() {
        for (i, s) in c.tls_certificate_sds_secret_configs.iter().enumerate() {
            let sp = format!("{p}.tls_certificate_sds_secret_configs[{i}]");
            let t = sds::tls_certificate(s, &sp, &mut out.sds_files, ads)?;
            let in_secret = format!("{sp} (secret `{}`: tls_certificate)", s.name);
            out.certificates.push(certificate(&t, &in_secret)?);
        }
    }
    out.validation = match &c.validation_context_type {
        None => None,
        Some(ValidationContextType::ValidationContext(v)) => {
            Some(validation(v, &format!("{p}.validation_context"))?)
        }
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            let sp = format!("{p}.validation_context_sds_secret_config");
            let v = sds::validation_context(s, &sp, &mut out.sds_files, ads)?;
            let in_secret = format!("{sp} (secret `{}`: validation_context)", s.name);
            Some(validation(&v, &in_secret)?)
        }
        Some(ValidationContextType::CombinedValidationContext(cv)) => {
            let cp = format!("{p}.combined_validation_context");
            let default = cv.default_validation_context.as_ref().ok_or_else(|| {
                err(format!("{cp}.default_validation_context"), "is required")
            })?;
            let s = cv.validation_context_sds_secret_config.as_ref().ok_or_else(|| {
                err(
                    format!("{cp}.validation_context_sds_secret_config"),
                    "is required",
                )
            })?;
            let sp = format!("{cp}.validation_context_sds_secret_config");
            let dynamic = sds::validation_context(s, &sp, &mut out.sds_files, ads)?;
            let in_secret = format!("{cp} (merged with secret `{}`)", s.name);
            Some(validation(&sds::merged(default, dynamic), &in_secret)?)
        }
        Some(_) => {
            return Err(err(
                format!("{p}.validation_context"),
                "only `validation_context`, `validation_context_sds_secret_config` and `combined_validation_context` are supported",
            ))
        }
    };
    Ok(out)
}

/// A filter chain's `transport_socket`.
pub(super) fn downstream(
    ts: &Option<TransportSocket>,
    p: &str,
    ads: &AdsSecrets,
) -> R<Option<RawDownstreamTls>> {
    let Some(ts) = ts else { return Ok(None) };
    let p = format!("{p}.transport_socket");
    let any = typed_config(ts, &p)?;
    let tp = format!("{p}.typed_config");
    let d: DownstreamTlsContext = payload(any, DOWNSTREAM, &tp)?;
    let c = common(&d.common_tls_context, &tp, ads)?;
    Ok(Some(RawDownstreamTls {
        certificates: c.certificates,
        alpn_protocols: c.alpn,
        require_client_certificate: d.require_client_certificate.map(|b| b.value),
        validation_context: c.validation,
        tls_params: Some(params(c.params.as_ref(), false, &tp)?),
        sds_files: c.sds_files,
    }))
}

/// A cluster's `transport_socket`.
pub(super) fn upstream(
    ts: &Option<TransportSocket>,
    p: &str,
    c: &mut RawCluster,
    ads: &AdsSecrets,
) -> R<()> {
    let Some(ts) = ts else { return Ok(()) };
    c.tls = upstream_tls(ts, &format!("{p}.transport_socket"), ads)?;
    Ok(())
}

/// A `transport_socket_matches` entry's Envoy name.
const RAW_BUFFER: &str = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

/// An upstream transport socket at `p`: its TLS, or `None` for `raw_buffer`
/// (plaintext).
pub(super) fn upstream_tls(
    ts: &TransportSocket,
    p: &str,
    ads: &AdsSecrets,
) -> R<Option<RawUpstreamTls>> {
    let any = typed_config(ts, p)?;
    if super::walk::type_name(&any.type_url) == RAW_BUFFER {
        return Ok(None);
    }
    let tp = format!("{p}.typed_config");
    let u: UpstreamTlsContext = payload(any, UPSTREAM, &tp)?;
    let common = common(&u.common_tls_context, &tp, ads)?;
    Ok(Some(RawUpstreamTls {
        sni: (!u.sni.is_empty()).then(|| u.sni.clone()),
        // Envoy offers exactly the configured ALPN list (none if empty).
        alpn_protocols: Some(common.alpn),
        certificates: common.certificates,
        validation_context: common.validation,
        tls_params: Some(params(common.params.as_ref(), true, &tp)?),
        sds_files: common.sds_files,
    }))
}

/// The names of the secrets a transport socket takes over ADS: the ones its translation
/// reads (SDS certificate configs only when no certificate is inline, as in Envoy).
pub(super) fn ads_secret_names(ts: &Option<TransportSocket>) -> Vec<String> {
    ads_secret_configs(ts).into_iter().map(|s| s.name).collect()
}

/// The `SdsSecretConfig`s of a transport socket whose secret comes over ADS.
pub(super) fn ads_secret_configs(ts: &Option<TransportSocket>) -> Vec<SdsSecretConfig> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) =
        ts.as_ref().and_then(|t| t.config_type.as_ref())
    else {
        return Vec::new();
    };
    let common = match super::walk::type_name(&any.type_url) {
        DOWNSTREAM => DownstreamTlsContext::decode(any.value.as_slice())
            .ok()
            .and_then(|d| d.common_tls_context),
        UPSTREAM => UpstreamTlsContext::decode(any.value.as_slice())
            .ok()
            .and_then(|u| u.common_tls_context),
        _ => None,
    };
    let Some(c) = common else {
        return Vec::new();
    };
    let mut configs: Vec<&SdsSecretConfig> = Vec::new();
    if c.tls_certificates.is_empty() {
        configs.extend(&c.tls_certificate_sds_secret_configs);
    }
    match &c.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => configs.push(s),
        Some(ValidationContextType::CombinedValidationContext(cv)) => {
            configs.extend(&cv.validation_context_sds_secret_config)
        }
        _ => {}
    }
    configs
        .into_iter()
        .filter(|s| sds::is_ads(s))
        .cloned()
        .collect()
}
