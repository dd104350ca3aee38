//! Envoy's TLS transport sockets -> the native `tls:` blocks: a filter chain's
//! `DownstreamTlsContext` and a cluster's `UpstreamTlsContext`, with certificates and
//! CA bundles from files (`filename` data sources). Control plane only.
//!
//! Typed SAN matchers of type DNS and URI map to the native matchers, which check both
//! kinds of SAN (a `spiffe://` URI matcher cannot match a DNS name, and the reverse);
//! other SAN types, SDS, inline PEM and the other TLS knobs are refused by the walker or
//! here, with their path.

use envoy_types::pb::envoy::config::core::v3::{
    data_source, transport_socket, DataSource, TransportSocket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType, CommonTlsContext,
    DownstreamTlsContext, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_types::pb::google::protobuf::Any;

use super::super::raw::RawCluster;
use super::convert::{payload, R};
use super::err;
use crate::tls::client::RawUpstreamTls;
use crate::tls::config::{
    RawCertificate, RawDownstreamTls, RawRegex, RawStringMatch, RawValidationContext,
};

const DOWNSTREAM: &str = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const UPSTREAM: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

fn typed_config<'a>(ts: &'a TransportSocket, p: &str) -> R<&'a Any> {
    match &ts.config_type {
        Some(transport_socket::ConfigType::TypedConfig(any)) => Ok(any),
        _ => Err(err(format!("{p}.typed_config"), "is required")),
    }
}

fn file(d: &Option<DataSource>, p: &str) -> R<String> {
    match d.as_ref().and_then(|d| d.specifier.as_ref()) {
        Some(data_source::Specifier::Filename(f)) => Ok(f.clone()),
        _ => Err(err(p, "must be a `filename` data source")),
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

/// Certificates, ALPN and validation of a `CommonTlsContext`.
fn common(
    c: &Option<CommonTlsContext>,
    p: &str,
) -> R<(
    Vec<RawCertificate>,
    Vec<String>,
    Option<RawValidationContext>,
)> {
    let p = format!("{p}.common_tls_context");
    let Some(c) = c else {
        return Ok((Vec::new(), Vec::new(), None));
    };
    let mut certs = Vec::new();
    for (i, t) in c.tls_certificates.iter().enumerate() {
        let tp = format!("{p}.tls_certificates[{i}]");
        certs.push(RawCertificate {
            cert_chain_file: file(&t.certificate_chain, &format!("{tp}.certificate_chain"))?,
            private_key_file: file(&t.private_key, &format!("{tp}.private_key"))?,
        });
    }
    let validation = match &c.validation_context_type {
        None => None,
        Some(ValidationContextType::ValidationContext(v)) => {
            let vp = format!("{p}.validation_context");
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
            let trusted_ca_file = match &v.trusted_ca {
                Some(_) => Some(file(&v.trusted_ca, &format!("{vp}.trusted_ca"))?),
                None => None,
            };
            Some(RawValidationContext {
                trusted_ca_file,
                match_subject_alt_names: sans,
            })
        }
        Some(_) => {
            return Err(err(
                format!("{p}.validation_context"),
                "only an inline `validation_context` is supported",
            ))
        }
    };
    Ok((certs, c.alpn_protocols.clone(), validation))
}

/// A filter chain's `transport_socket`.
pub(super) fn downstream(ts: &Option<TransportSocket>, p: &str) -> R<Option<RawDownstreamTls>> {
    let Some(ts) = ts else { return Ok(None) };
    let p = format!("{p}.transport_socket");
    let any = typed_config(ts, &p)?;
    let tp = format!("{p}.typed_config");
    let d: DownstreamTlsContext = payload(any, DOWNSTREAM, &tp)?;
    let (certificates, alpn_protocols, validation_context) = common(&d.common_tls_context, &tp)?;
    Ok(Some(RawDownstreamTls {
        certificates,
        alpn_protocols,
        require_client_certificate: d.require_client_certificate.map(|b| b.value),
        validation_context,
    }))
}

/// A cluster's `transport_socket`.
pub(super) fn upstream(ts: &Option<TransportSocket>, p: &str, c: &mut RawCluster) -> R<()> {
    let Some(ts) = ts else { return Ok(()) };
    let p = format!("{p}.transport_socket");
    let any = typed_config(ts, &p)?;
    let tp = format!("{p}.typed_config");
    let u: UpstreamTlsContext = payload(any, UPSTREAM, &tp)?;
    let (certificates, alpn, validation_context) = common(&u.common_tls_context, &tp)?;
    c.tls = Some(RawUpstreamTls {
        sni: (!u.sni.is_empty()).then(|| u.sni.clone()),
        // Envoy offers exactly the configured ALPN list (none if empty).
        alpn_protocols: Some(alpn),
        certificates,
        validation_context,
    });
    Ok(())
}
